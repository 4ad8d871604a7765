//! Integration events across processes, over NATS JetStream.
//!
//! The outbox stays the source of truth and the inbox keeps its guarantees; the broker only
//! carries an event from one to the other when they live in different processes:
//!
//! - the relay publishes each outbox row to the subject `<prefix>.<event name>`
//!   (`shop.events.orders.order_confirmed.v1`) with the event id as `Nats-Msg-Id`, and marks
//!   the row dispatched only once JetStream acknowledged it. A relay that crashed between the
//!   two publishes the row again, and the server drops the copy (within the stream's
//!   duplicate window); the inbox drops any later one;
//! - each consuming context has one durable pull consumer, filtered to the events it
//!   subscribed to, with explicit acknowledgement: a message is acknowledged once the event is
//!   in the consumer's inbox ([`Consumer::accept`]). A message that cannot be stored is
//!   redelivered with backoff up to `max_deliver` times, then parked in the inbox as failed,
//!   exactly like an event whose handler kept failing (same admin endpoints, same replay).
//!
//! Each message carries the event's sequence in its publisher's outbox (`Shop-Source-Seq`),
//! stored with it in the inbox, which handles an aggregate's events in that order whatever
//! order they arrive in. Messages are also taken in stream order, one batch at a time, and a
//! batch stops at its first failure (the rest are handed back, to come again in order).

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, AckKind, consumer::pull, stream};
use futures::StreamExt;
use kernel::{Clock, EventEnvelope};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::consumer::Consumer;

/// Events published to the broker, by publisher and outcome (`published`, `duplicate`).
pub const PUBLISHED: &str = "shop_events_published_total";
/// Messages taken from the broker, by consumer and outcome (`stored`, `redelivered`,
/// `parked`, `unreadable`).
pub const RECEIVED: &str = "shop_events_received_total";

/// The header carrying an event's sequence in its publisher's outbox.
const SOURCE_SEQ: &str = "Shop-Source-Seq";

/// Where the broker is and how consumers use it.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// `nats://host:port`.
    pub url: String,
    /// The JetStream stream that holds every integration event.
    pub stream: String,
    /// Subjects are `<prefix>.<event name>`.
    pub subject_prefix: String,
    /// How long the server keeps message ids to drop duplicates.
    pub duplicate_window: Duration,
    /// How long the stream keeps an event (the outboxes' retention: the outbox stays the
    /// source of truth).
    pub max_age: Duration,
    /// How long a publish waits for JetStream's acknowledgement.
    pub publish_timeout: Duration,
    /// How long a consumer may hold a message before the server sends it again.
    pub ack_wait: Duration,
    /// Deliveries of a message before it is parked in the consumer's inbox.
    pub max_deliver: i64,
    /// First redelivery delay; it doubles up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// Messages taken at once (also the most a consumer holds unacknowledged).
    pub batch: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot reach the broker at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("broker: {0}")]
    JetStream(String),
    #[error("the broker did not acknowledge the event within {0:?}")]
    Timeout(Duration),
    #[error("the event does not encode: {0}")]
    Encode(String),
}

impl BrokerError {
    /// Whether the broker cannot take events now (unreachable, not answering, without its
    /// stream): no fault of the event at hand, which the relay keeps, with those behind it,
    /// until the broker is back, counting no attempt. Only an event that cannot be encoded
    /// is its own fault.
    pub fn is_unavailable(&self) -> bool {
        !matches!(self, Self::Encode(_))
    }
}

/// `url` (one server or a comma-separated list) without the user and password any of them
/// carries.
pub fn redact_url(url: &str) -> String {
    url.split(',')
        .map(|server| {
            let server = server.trim();
            let (scheme, rest) = server.split_once("://").unwrap_or(("", server));
            let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            if scheme.is_empty() {
                host.to_owned()
            } else {
                format!("{scheme}://{host}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn jetstream_error(error: impl std::fmt::Display) -> BrokerError {
    BrokerError::JetStream(error.to_string())
}

/// A connection to JetStream, shared by a process's relay and consumers.
#[derive(Clone)]
pub struct Broker {
    context: jetstream::Context,
    config: Arc<BrokerConfig>,
    /// Set once the stream is known to exist.
    stream_ready: Arc<tokio::sync::OnceCell<()>>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("url", &self.address())
            .field("stream", &self.config.stream)
            .finish_non_exhaustive()
    }
}

/// What a publish came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// Stored in the stream.
    New,
    /// The server already had a message with this event id and dropped this one.
    Duplicate,
}

impl Broker {
    /// Connects. A server that is not up yet is tried again in the background, so a process
    /// may start before its broker: events wait in the outbox (and in the stream) meanwhile.
    /// The stream is made on first use.
    pub async fn connect(config: BrokerConfig) -> Result<Self, BrokerError> {
        let client = async_nats::ConnectOptions::new()
            .name("shop")
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5))
            .connect(config.url.as_str())
            .await
            .map_err(|error| BrokerError::Connect {
                url: redact_url(&config.url),
                reason: error.to_string(),
            })?;
        Ok(Self {
            context: jetstream::new(client),
            config: Arc::new(config),
            stream_ready: Arc::default(),
        })
    }

    /// Makes the stream if it does not exist yet (once per process, tried again after a
    /// failure).
    async fn ensure_stream(&self) -> Result<(), BrokerError> {
        self.stream_ready
            .get_or_try_init(|| async {
                self.context
                    .get_or_create_stream(stream::Config {
                        name: self.config.stream.clone(),
                        subjects: vec![format!("{}.>", self.config.subject_prefix)],
                        duplicate_window: self.config.duplicate_window,
                        max_age: self.config.max_age,
                        storage: stream::StorageType::File,
                        ..stream::Config::default()
                    })
                    .await
                    .map(|_| ())
                    .map_err(jetstream_error)
            })
            .await
            .copied()
    }

    /// The broker's address, without credentials: what logs and `/readyz` may show.
    pub fn address(&self) -> String {
        redact_url(&self.config.url)
    }

    /// Whether the client is connected to the broker now (it reconnects by itself).
    pub fn is_connected(&self) -> bool {
        self.context.client().connection_state() == async_nats::connection::State::Connected
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// The subject an event is published on.
    pub fn subject(&self, event_name: &str) -> String {
        format!("{}.{event_name}", self.config.subject_prefix)
    }

    /// Publishes one event, with its sequence in the publisher's outbox, and waits for
    /// JetStream to store it.
    pub async fn publish(
        &self,
        publisher: &'static str,
        event: &EventEnvelope,
        source_seq: i64,
    ) -> Result<Published, BrokerError> {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", event.id.to_string().as_str());
        headers.insert(SOURCE_SEQ, source_seq.to_string().as_str());
        let payload =
            serde_json::to_vec(event).map_err(|error| BrokerError::Encode(error.to_string()))?;
        let published = async {
            self.ensure_stream().await?;
            self.context
                .publish_with_headers(self.subject(&event.name), headers, payload.into())
                .await
                .map_err(jetstream_error)?
                .await
                .map_err(jetstream_error)
        };
        let ack = tokio::time::timeout(self.config.publish_timeout, published)
            .await
            .map_err(|_| BrokerError::Timeout(self.config.publish_timeout))??;
        let outcome = if ack.duplicate {
            Published::Duplicate
        } else {
            Published::New
        };
        let label = match outcome {
            Published::New => "published",
            Published::Duplicate => "duplicate",
        };
        metrics::counter!(PUBLISHED, "publisher" => publisher, "outcome" => label).increment(1);
        Ok(outcome)
    }

    /// The redelivery delays: `backoff` doubling up to `max_backoff`, one per delivery after
    /// the first.
    fn backoff(&self) -> Vec<Duration> {
        let config = &self.config;
        let attempts = usize::try_from(config.max_deliver.max(1) - 1).unwrap_or(0);
        (0..attempts)
            .map(|attempt| {
                config
                    .backoff
                    .saturating_mul(1 << attempt.min(16))
                    .min(config.max_backoff.max(config.backoff))
            })
            .collect()
    }

    /// The durable consumer of `consumer`, filtered to the events it subscribed to (made on
    /// first use, and kept by the server across restarts).
    async fn durable(
        &self,
        consumer: &Consumer,
    ) -> Result<jetstream::consumer::PullConsumer, BrokerError> {
        self.ensure_stream().await?;
        let stream = self
            .context
            .get_stream(&self.config.stream)
            .await
            .map_err(jetstream_error)?;
        let filters: Vec<String> = consumer
            .subscriptions()
            .iter()
            .map(|name| self.subject(name))
            .collect();
        stream
            .get_or_create_consumer(
                consumer.name(),
                pull::Config {
                    durable_name: Some(consumer.name().to_owned()),
                    filter_subjects: filters,
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: self.config.ack_wait,
                    max_deliver: self.config.max_deliver,
                    backoff: self.backoff(),
                    max_ack_pending: i64::try_from(self.config.batch).unwrap_or(i64::MAX),
                    ..pull::Config::default()
                },
            )
            .await
            .map_err(jetstream_error)
    }

    /// Takes `consumer`'s events from the broker into its inbox until `shutdown`, waking
    /// `stored` after each event it stored so the consumer's processor starts at once. A lost
    /// broker is tried again with backoff; nothing is lost meanwhile (the messages wait in the
    /// stream).
    pub fn spawn_subscriber(
        &self,
        consumer: Consumer,
        clock: Arc<dyn Clock>,
        stored: Arc<Notify>,
        shutdown: CancellationToken,
    ) -> JoinHandle<()> {
        let broker = self.clone();
        tokio::spawn(async move {
            let mut failures = 0u32;
            loop {
                let error = tokio::select! {
                    () = shutdown.cancelled() => return,
                    error = broker.subscribe(&consumer, &*clock, &stored, &mut failures) => error,
                };
                failures = failures.saturating_add(1);
                tracing::warn!(consumer = consumer.name(), error = %error, "taking events from the broker failed; will retry");
                let wait = broker
                    .config
                    .backoff
                    .saturating_mul(1 << failures.min(6))
                    .min(broker.config.max_backoff.max(broker.config.backoff));
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        })
    }

    /// Takes batches until something fails; returns what did.
    async fn subscribe(
        &self,
        consumer: &Consumer,
        clock: &dyn Clock,
        stored: &Notify,
        failures: &mut u32,
    ) -> BrokerError {
        let durable = match self.durable(consumer).await {
            Ok(durable) => durable,
            Err(error) => return error,
        };
        loop {
            if let Err(error) = self.take_batch(&durable, consumer, clock, stored).await {
                return error;
            }
            *failures = 0;
        }
    }

    /// One batch: waits up to a second for messages, stores them in order, acknowledges
    /// each stored one, and hands back the rest after a failure.
    async fn take_batch(
        &self,
        durable: &jetstream::consumer::PullConsumer,
        consumer: &Consumer,
        clock: &dyn Clock,
        stored: &Notify,
    ) -> Result<(), BrokerError> {
        let mut messages = durable
            .batch()
            .max_messages(self.config.batch)
            .expires(Duration::from_secs(1))
            .messages()
            .await
            .map_err(jetstream_error)?;
        let mut handing_back = false;
        while let Some(message) = messages.next().await {
            let message = message.map_err(jetstream_error)?;
            if handing_back {
                // After a failure in this batch: back to the server, to come again in order.
                message
                    .ack_with(AckKind::Nak(Some(self.config.backoff)))
                    .await
                    .map_err(jetstream_error)?;
                continue;
            }
            match self.store(consumer, clock, &message).await {
                // At once, not at the end of the batch: a batch ends when it is full or after
                // a second, so an event arriving alone would wait for the next poll instead.
                // `notify_one` keeps the wake-up for a processor that is busy right now.
                Ok(()) => stored.notify_one(),
                Err(()) => handing_back = true,
            }
        }
        Ok(())
    }

    /// Stores one message's event in the consumer's inbox and acknowledges it; after the last
    /// allowed delivery, parks it there instead. `Err` when it was handed back.
    async fn store(
        &self,
        consumer: &Consumer,
        clock: &dyn Clock,
        message: &jetstream::Message,
    ) -> Result<(), ()> {
        let name = consumer.name().to_owned();
        let count = |outcome: &'static str| {
            metrics::counter!(RECEIVED, "consumer" => name.clone(), "outcome" => outcome)
                .increment(1);
        };
        let delivered = message.info().map(|info| info.delivered).unwrap_or(1);
        let event: EventEnvelope = match serde_json::from_slice(&message.payload) {
            Ok(event) => event,
            Err(error) => {
                // Not an event of ours: nothing to store it as, nobody to hand it to.
                tracing::error!(consumer = consumer.name(), subject = %message.subject, error = %error, "unreadable message on the events stream; dropped");
                count("unreadable");
                let _ = message.ack_with(AckKind::Term).await;
                return Ok(());
            }
        };
        let source_seq = message
            .headers
            .as_ref()
            .and_then(|headers| headers.get(SOURCE_SEQ))
            .and_then(|value| value.as_str().parse::<i64>().ok());
        let now = clock.now();
        let accepted = match source_seq {
            Some(seq) => consumer.accept_from(&event, seq, now).await,
            None => consumer.accept(&event, now).await,
        };
        let outcome = match accepted {
            Ok(()) => Ok("stored"),
            Err(error) if delivered >= self.config.max_deliver => {
                tracing::error!(consumer = consumer.name(), event_id = %event.id, error = %error, delivered, "event could not be stored; parking it");
                match consumer
                    .park(&event, source_seq, &error.to_string(), now)
                    .await
                {
                    Ok(()) => Ok("parked"),
                    Err(park_error) => Err((error, park_error.to_string())),
                }
            }
            Err(error) => Err((error, String::new())),
        };
        match outcome {
            Ok(label) => {
                if let Err(error) = message.ack().await {
                    // The server sends it again; the inbox keeps one copy.
                    tracing::warn!(consumer = consumer.name(), event_id = %event.id, error = %error, "acknowledging a stored event failed");
                }
                count(label);
                Ok(())
            }
            Err((error, also)) => {
                tracing::warn!(consumer = consumer.name(), event_id = %event.id, error = %error, also, delivered, "event could not be stored; will be redelivered");
                count("redelivered");
                let delay = self
                    .backoff()
                    .get(usize::try_from(delivered - 1).unwrap_or(0))
                    .copied()
                    .unwrap_or(self.config.max_backoff);
                let _ = message.ack_with(AckKind::Nak(Some(delay))).await;
                Err(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url as redacted;

    #[test]
    fn addresses_are_shown_without_credentials() {
        assert_eq!(redacted("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(
            redacted("nats://shop:s3cr3t@nats.internal:4222"),
            "nats://nats.internal:4222"
        );
        assert_eq!(
            redacted("nats://token@a:4222, tls://u:p@b:4222"),
            "nats://a:4222,tls://b:4222"
        );
        assert_eq!(redacted("u:p@localhost:4222"), "localhost:4222");
    }
}
