//! The bus: relays every publisher's outbox to the subscribed consumers' inboxes, runs the
//! consumers' handlers, retries, parks, replays and purges.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use db_kit::wake::{Wake, Woken};
use kernel::{Clock, EventEnvelope};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, LockBehavior, LockType, Query};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    DbBackend, DbErr, EntityTrait, IntoActiveModel, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};
use serde::Serialize;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff;
use crate::broker::{Broker, BrokerError};
use crate::consumer::{Consumer, Retry};
use crate::outbox::Outbox;
use crate::store::{
    self, DISCARDED, DISPATCHED, DONE, FAILED, HANDLED, OUTBOX_CLAIMABLE, OUTBOX_UNFINISHED,
    PENDING, inbox, outbox,
};

#[derive(Debug, Clone)]
pub struct BusConfig {
    /// Rows claimed per pass.
    pub batch_size: u64,
    /// Attempts before a delivery or a handler is parked as failed.
    pub max_attempts: i32,
    /// First retry delay; doubles per attempt up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// A safety-net pass this often even when nothing wakes the bus; zero (the default):
    /// none, so an idle bus issues no query.
    pub poll_interval: Duration,
    /// How long dispatched outbox rows and handled inbox rows are kept.
    pub retention: Duration,
    pub purge_interval: Duration,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            batch_size: 50,
            max_attempts: 8,
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            poll_interval: Duration::ZERO,
            retention: Duration::from_secs(7 * 24 * 3600),
            purge_interval: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, Clone)]
struct Publisher {
    context: &'static str,
    db: DatabaseConnection,
    wake: Arc<Notify>,
    /// What its outbox's wake-ups to other processes carry.
    sender: String,
}

#[derive(Debug)]
pub struct BusBuilder {
    config: BusConfig,
    clock: Arc<dyn Clock>,
    publishers: Vec<Publisher>,
    /// The publishers' outboxes, told at `build` which events anyone takes.
    outboxes: Vec<Outbox>,
    consumers: Vec<Consumer>,
    broker: Option<Broker>,
    publish_to_broker: bool,
    subscribed: Vec<Consumer>,
}

impl BusBuilder {
    /// Relays `outbox`'s events, stored in `db` (the publishing context's own connection).
    pub fn publisher(mut self, outbox: &Outbox, db: DatabaseConnection) -> Self {
        self.outboxes.push(outbox.clone());
        self.publishers.push(Publisher {
            context: outbox.context(),
            db,
            wake: outbox.wake(),
            sender: outbox.sender().to_owned(),
        });
        self
    }

    pub fn consumer(mut self, consumer: Consumer) -> Self {
        self.consumers.push(consumer);
        self
    }

    /// Also publishes every publisher's events to `broker`, for consumers in other processes.
    pub fn publish_to(mut self, broker: Broker) -> Self {
        self.broker = Some(broker);
        self.publish_to_broker = true;
        self
    }

    /// A consumer whose events (some or all) are published in other processes: besides what
    /// this process's relay hands it, it takes them from `broker`.
    pub fn consumer_of(mut self, broker: Broker, consumer: Consumer) -> Self {
        self.broker = Some(broker);
        self.subscribed.push(consumer.clone());
        self.consumers.push(consumer);
        self
    }

    pub fn build(self) -> Bus {
        // Events nobody takes are recorded dispatched: with a broker anyone may take any
        // event; without one, only this process's consumers take events.
        let wanted = if self.publish_to_broker && self.broker.is_some() {
            None
        } else {
            Some(
                self.consumers
                    .iter()
                    .flat_map(|consumer| consumer.subscriptions().iter())
                    .map(|name| (*name).to_owned())
                    .collect(),
            )
        };
        for outbox in &self.outboxes {
            outbox.set_wanted(wanted.clone());
        }
        Bus {
            config: self.config,
            clock: self.clock,
            publishers: self.publishers,
            consumers: self.consumers,
            broker: self.broker,
            publish_to_broker: self.publish_to_broker,
            subscribed: self.subscribed,
            handled: Arc::new(Notify::new()),
            sleeping: Arc::new(watch::Sender::new(Sleeping::default())),
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub relayed: usize,
    pub handled: usize,
}

impl Progress {
    pub fn is_idle(&self) -> bool {
        self.relayed == 0 && self.handled == 0
    }
}

/// What one relay batch did.
#[derive(Debug, Clone, Default)]
struct Relayed {
    /// Which of this process's consumers (by index) it stored events for.
    delivered_to: Vec<bool>,
    /// Rows dispatched, or whose delivery failed.
    relayed: usize,
    /// Whether more rows may be due now: the batch was full, or rows were held back behind
    /// the ones it dispatched.
    more: bool,
    /// When the next row waiting for a retry becomes due.
    next_due: Option<DateTime<Utc>>,
    /// The broker could not take events: they wait for the next wake-up or due time.
    waiting: bool,
}

/// Why a delivery failed.
#[derive(Debug, thiserror::Error)]
enum DeliveryError {
    #[error(transparent)]
    Db(#[from] DbErr),
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// Where a parked event is stuck.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Leaving the publisher's outbox (a consumer's inbox could not be reached).
    Delivery,
    /// In a consumer's inbox (its handler kept failing).
    Handling,
    /// In a consumer's inbox, its handler's work committed; the effects after the commit
    /// (sending a message) kept failing. A retry runs only those.
    AfterCommit,
}

/// What became of an event that failed every allowed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ParkedStatus {
    /// Parked: it holds back the later events of its aggregate until an operator retries or
    /// discards it.
    Failed,
    /// Given up by an operator: never delivered or handled; kept until purged.
    Discarded,
}

impl ParkedStatus {
    fn stored(self) -> &'static str {
        match self {
            Self::Failed => FAILED,
            Self::Discarded => DISCARDED,
        }
    }
}

/// A parked or discarded event, as the admin endpoints show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedEvent {
    /// The id to pass to [`Bus::retry`] or [`Bus::discard`].
    pub id: uuid::Uuid,
    pub status: ParkedStatus,
    pub stage: Stage,
    /// The publishing context (delivery) or the consumer (handling).
    pub owner: String,
    pub event_id: uuid::Uuid,
    pub event_name: String,
    pub aggregate_id: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub occurred_at: DateTime<Utc>,
}

/// Which parked events an operator means: every one, or those of one owner (a publishing
/// context or a consumer), of one event name, or both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub owner: Option<String>,
    pub event_name: Option<String>,
}

impl EventFilter {
    fn owns(&self, owner: &str) -> bool {
        self.owner.as_deref().is_none_or(|wanted| wanted == owner)
    }
}

/// Delivery of integration events between the contexts of this process, and, through a
/// broker, to and from the contexts of others.
#[derive(Debug)]
pub struct Bus {
    config: BusConfig,
    clock: Arc<dyn Clock>,
    publishers: Vec<Publisher>,
    consumers: Vec<Consumer>,
    broker: Option<Broker>,
    /// Whether the relay also publishes to the broker.
    publish_to_broker: bool,
    /// Consumers that take events from the broker.
    subscribed: Vec<Consumer>,
    /// Woken after a broker subscriber stored something or an operator put an event back
    /// in line, so processors start at once.
    handled: Arc<Notify>,
    /// The background loop's state each time it goes to sleep.
    sleeping: Arc<watch::Sender<Sleeping>>,
}

/// The background loop's state when it last went to sleep ([`Bus::sleeping`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sleeping {
    /// How many times it went to sleep since it started.
    pub sleeps: u64,
    /// How many times it woke (before the pass that follows issues any statement).
    pub wakes: u64,
    /// Whether it sleeps until a due time (a retry, a safety-net pass), rather than until
    /// something wakes it (or the purge, which runs only after events were handled).
    pub until_due: bool,
    /// Whether it listens for other processes' commits (Postgres only).
    pub listening: bool,
}

impl Bus {
    pub fn builder(config: BusConfig, clock: Arc<dyn Clock>) -> BusBuilder {
        BusBuilder {
            config,
            clock,
            publishers: Vec::new(),
            outboxes: Vec::new(),
            consumers: Vec::new(),
            broker: None,
            publish_to_broker: false,
            subscribed: Vec::new(),
        }
    }

    fn retry_policy(&self) -> Retry {
        Retry {
            max_attempts: self.config.max_attempts,
            base: self.config.retry_base,
            max: self.config.retry_max,
        }
    }

    /// One pass: relay every publisher's due events, then run every consumer's due handlers.
    pub async fn run_once(&self) -> Result<Progress, DbErr> {
        let mut progress = Progress::default();
        for publisher in &self.publishers {
            progress.relayed += self.relay(publisher).await?.relayed;
        }
        let now = self.clock.now();
        for consumer in &self.consumers {
            progress.handled += consumer
                .process_once(now, self.config.batch_size, self.retry_policy())
                .await?
                .claimed;
        }
        Ok(progress)
    }

    /// Runs passes until one finds nothing due: everything committed before the call has
    /// been delivered and handled (or scheduled for a later retry) when it returns.
    pub async fn run_until_idle(&self) -> Result<Progress, DbErr> {
        let mut total = Progress::default();
        loop {
            let pass = self.run_once().await?;
            if pass.is_idle() {
                return Ok(total);
            }
            total.relayed += pass.relayed;
            total.handled += pass.handled;
        }
    }

    /// Relays up to one batch of `publisher`'s due events: one transaction on Postgres that
    /// claims the batch, hands it to each local consumer in one insert, publishes it to the
    /// broker if there is one, marks every dispatched row in one statement and learns when
    /// the next row waiting for a retry is due.
    async fn relay(&self, publisher: &Publisher) -> Result<Relayed, DbErr> {
        let now = self.clock.now();
        let postgres = publisher.db.get_database_backend() == DbBackend::Postgres;
        // On Postgres the claimed rows stay locked until this transaction ends, so another
        // process's relay skips them. SQLite has one connection per context and one process,
        // so there is nobody to lock out, and holding its only connection while delivering
        // would block a consumer that shares it.
        let txn = if postgres {
            Some(publisher.db.begin().await?)
        } else {
            None
        };
        let result = match &txn {
            Some(txn) => self.relay_on(txn, publisher, now).await,
            None => self.relay_on(&publisher.db, publisher, now).await,
        };
        let relayed = result?;
        if let Some(txn) = txn {
            txn.commit().await?;
        }
        Ok(relayed)
    }

    async fn relay_on<C: ConnectionTrait>(
        &self,
        db: &C,
        publisher: &Publisher,
        now: DateTime<Utc>,
    ) -> Result<Relayed, DbErr> {
        let rows = claim_outbox(db, now, self.config.batch_size).await?;
        let claimed = rows.len();
        let mut envelopes = Vec::with_capacity(claimed);
        let mut failures: Vec<(outbox::Model, DeliveryError)> = Vec::new();
        for row in rows {
            match store::envelope(
                row.id,
                &row.name,
                &row.aggregate_id,
                &row.payload,
                row.occurred_at,
            ) {
                Ok(envelope) => envelopes.push((row, envelope)),
                Err(error) => failures.push((row, error.into())),
            }
        }
        // Every local consumer gets its share of the batch in one insert. Should that fail,
        // each event is delivered alone, so that only the ones that cannot be delivered count
        // an attempt.
        let mut delivered: Vec<(outbox::Model, EventEnvelope)> = Vec::new();
        let mut delivered_to = vec![false; self.consumers.len()];
        let mut batch_ok = true;
        for (index, consumer) in self.consumers.iter().enumerate() {
            let share: Vec<(EventEnvelope, i64)> = envelopes
                .iter()
                .filter(|(row, _)| consumer.wants(&row.name))
                .map(|(row, envelope)| (envelope.clone(), row.seq))
                .collect();
            if let Err(error) = consumer.accept_all(&share, now).await {
                tracing::warn!(context = publisher.context, consumer = consumer.name(), error = %error, "delivering a batch failed; delivering its events one at a time");
                batch_ok = false;
                break;
            }
            delivered_to[index] = !share.is_empty();
        }
        for (row, envelope) in envelopes {
            if batch_ok {
                delivered.push((row, envelope));
                continue;
            }
            let mut outcome = Ok(());
            for (index, consumer) in self.consumers.iter().enumerate() {
                if !consumer.wants(&row.name) {
                    continue;
                }
                if let Err(error) = consumer.accept_from(&envelope, row.seq, now).await {
                    outcome = Err(error);
                    break;
                }
                delivered_to[index] = true;
            }
            match outcome {
                Ok(()) => delivered.push((row, envelope)),
                Err(error) => failures.push((row, error.into())),
            }
        }
        // To the broker, in order, each acknowledged before its row is marked dispatched.
        let mut dispatched = Vec::with_capacity(delivered.len());
        let mut waiting = false;
        for (row, envelope) in delivered {
            if waiting {
                break;
            }
            if self.publish_to_broker
                && let Some(broker) = &self.broker
                && let Err(error) = broker.publish(publisher.context, &envelope, row.seq).await
            {
                if error.is_unavailable() {
                    // The broker cannot take events now: no fault of this one. It waits in
                    // the outbox with those behind it, in order, counting no attempt, so an
                    // outage of any length parks nothing; the next pass tries it first again.
                    metrics::counter!(crate::RELAYED, "publisher" => publisher.context, "outcome" => "waiting").increment(1);
                    tracing::warn!(context = publisher.context, error = %error, "the broker cannot take events; they wait in the outbox");
                    outbox::Entity::update_many()
                        .col_expr(outbox::Column::LastError, Expr::value(error.to_string()))
                        .filter(outbox::Column::Seq.eq(row.seq))
                        .exec(db)
                        .await?;
                    waiting = true;
                    continue;
                }
                failures.push((row, error.into()));
                continue;
            }
            dispatched.push(row);
        }
        if !dispatched.is_empty() {
            metrics::counter!(crate::RELAYED, "publisher" => publisher.context, "outcome" => "dispatched")
                .increment(dispatched.len() as u64);
            outbox::Entity::update_many()
                .col_expr(outbox::Column::Status, Expr::value(DISPATCHED))
                .col_expr(outbox::Column::DispatchedAt, Expr::value(now))
                .col_expr(
                    outbox::Column::Attempts,
                    Expr::col(outbox::Column::Attempts).add(1),
                )
                .col_expr(
                    outbox::Column::LastError,
                    Expr::value(Option::<String>::None),
                )
                .filter(outbox::Column::Seq.is_in(dispatched.iter().map(|row| row.seq)))
                .exec(db)
                .await?;
        }
        let relayed = dispatched.len() + failures.len();
        for (row, error) in failures {
            self.record_delivery_failure(db, publisher, row, &error, now)
                .await?;
        }
        // Rows held back behind the ones just dispatched may be taken now.
        let unblocked = !dispatched.is_empty()
            && outbox::Entity::find()
                .filter(outbox::Column::Status.eq(PENDING))
                .filter(
                    outbox::Column::AggregateId
                        .is_in(dispatched.iter().map(|row| row.aggregate_id.clone())),
                )
                .count(db)
                .await?
                > 0;
        let full = u64::try_from(claimed).unwrap_or(u64::MAX) >= self.config.batch_size;
        Ok(Relayed {
            delivered_to,
            relayed,
            more: !waiting && claimed > 0 && (full || unblocked),
            next_due: outbox_next_due(db, now).await?,
            waiting,
        })
    }

    /// Counts a failed delivery: schedules the next attempt with backoff, or parks the row.
    async fn record_delivery_failure<C: ConnectionTrait>(
        &self,
        db: &C,
        publisher: &Publisher,
        row: outbox::Model,
        error: &DeliveryError,
        now: DateTime<Utc>,
    ) -> Result<(), DbErr> {
        let attempts = row.attempts + 1;
        let parked = attempts >= self.config.max_attempts;
        let counted = if parked { "parked" } else { "retry" };
        metrics::counter!(crate::RELAYED, "publisher" => publisher.context, "outcome" => counted)
            .increment(1);
        let mut update = row.into_active_model();
        update.attempts = Set(attempts);
        if parked {
            tracing::error!(context = publisher.context, error = %error, attempts, "event delivery failed; parked");
            update.status = Set(FAILED.to_owned());
        } else {
            tracing::warn!(context = publisher.context, error = %error, attempts, "event delivery failed; will retry");
            update.next_attempt_at = Set(backoff::next_attempt(
                now,
                attempts,
                self.config.retry_base,
                self.config.retry_max,
            ));
        }
        update.last_error = Set(Some(error.to_string()));
        update.update(db).await?;
        Ok(())
    }

    /// Parked events of every publisher and consumer, oldest first.
    pub async fn failed(&self) -> Result<Vec<FailedEvent>, DbErr> {
        self.list(ParkedStatus::Failed, &EventFilter::default())
            .await
    }

    /// Parked (or discarded) events that `filter` names, oldest first.
    pub async fn list(
        &self,
        status: ParkedStatus,
        filter: &EventFilter,
    ) -> Result<Vec<FailedEvent>, DbErr> {
        let mut listed = Vec::new();
        for publisher in self.publishers_of(filter) {
            let mut select = outbox::Entity::find()
                .filter(outbox::Column::Status.eq(status.stored()))
                .order_by_asc(outbox::Column::Seq);
            if let Some(name) = &filter.event_name {
                select = select.filter(outbox::Column::Name.eq(name));
            }
            let rows = select.all(&publisher.db).await?;
            listed.extend(rows.into_iter().map(|row| FailedEvent {
                id: row.id,
                status,
                stage: Stage::Delivery,
                owner: publisher.context.to_owned(),
                event_id: row.id,
                event_name: row.name,
                aggregate_id: row.aggregate_id,
                attempts: row.attempts,
                last_error: row.last_error,
                occurred_at: row.occurred_at,
            }));
        }
        for consumer in self.consumers_of(filter) {
            let mut select = inbox::Entity::find()
                .filter(inbox::Column::Consumer.eq(consumer.name()))
                .filter(inbox::Column::Status.eq(status.stored()))
                .order_by_asc(inbox::Column::Seq);
            if let Some(name) = &filter.event_name {
                select = select.filter(inbox::Column::Name.eq(name));
            }
            let rows = select.all(consumer.db()).await?;
            listed.extend(rows.into_iter().map(|row| FailedEvent {
                id: row.id,
                status,
                stage: if row.handled_at.is_some() {
                    Stage::AfterCommit
                } else {
                    Stage::Handling
                },
                owner: row.consumer,
                event_id: row.event_id,
                event_name: row.name,
                aggregate_id: row.aggregate_id,
                attempts: row.attempts,
                last_error: row.last_error,
                occurred_at: row.occurred_at,
            }));
        }
        listed.sort_by_key(|event| event.occurred_at);
        Ok(listed)
    }

    fn publishers_of<'a>(&'a self, filter: &'a EventFilter) -> impl Iterator<Item = &'a Publisher> {
        self.publishers
            .iter()
            .filter(|publisher| filter.owns(publisher.context))
    }

    fn consumers_of<'a>(&'a self, filter: &'a EventFilter) -> impl Iterator<Item = &'a Consumer> {
        self.consumers
            .iter()
            .filter(|consumer| filter.owns(consumer.name()))
    }

    /// Puts a parked event back in line with a fresh set of attempts. Returns false when no
    /// parked event has that id.
    pub async fn retry(&self, id: uuid::Uuid) -> Result<bool, DbErr> {
        let now = self.clock.now();
        for publisher in &self.publishers {
            let reset = requeue_outbox(now)
                .filter(outbox::Column::Id.eq(id))
                .exec(&publisher.db)
                .await?;
            if reset.rows_affected > 0 {
                publisher.wake.notify_one();
                return Ok(true);
            }
        }
        for consumer in &self.consumers {
            let reset = requeue_inbox(consumer, now, |update| {
                update.filter(inbox::Column::Id.eq(id))
            })
            .await?;
            if reset > 0 {
                self.handled.notify_one();
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Puts every parked event `filter` names back in line with a fresh set of attempts;
    /// returns how many.
    pub async fn retry_all(&self, filter: &EventFilter) -> Result<u64, DbErr> {
        let now = self.clock.now();
        let mut retried = 0;
        for publisher in self.publishers_of(filter) {
            let mut update = requeue_outbox(now);
            if let Some(name) = &filter.event_name {
                update = update.filter(outbox::Column::Name.eq(name));
            }
            let reset = update.exec(&publisher.db).await?.rows_affected;
            if reset > 0 {
                publisher.wake.notify_one();
            }
            retried += reset;
        }
        for consumer in self.consumers_of(filter) {
            retried += requeue_inbox(consumer, now, |update| match &filter.event_name {
                Some(name) => update.filter(inbox::Column::Name.eq(name)),
                None => update,
            })
            .await?;
        }
        if retried > 0 {
            self.handled.notify_one();
        }
        Ok(retried)
    }

    /// Gives up on a parked event: it is marked discarded, is never delivered or handled,
    /// and no longer holds back the later events of its aggregate. Returns false when no
    /// parked event has that id.
    pub async fn discard(&self, id: uuid::Uuid) -> Result<bool, DbErr> {
        let now = self.clock.now();
        for publisher in &self.publishers {
            let discarded = outbox::Entity::update_many()
                .col_expr(outbox::Column::Status, Expr::value(DISCARDED))
                .col_expr(outbox::Column::DispatchedAt, Expr::value(now))
                .filter(outbox::Column::Id.eq(id))
                .filter(outbox::Column::Status.eq(FAILED))
                .exec(&publisher.db)
                .await?;
            if discarded.rows_affected > 0 {
                publisher.wake.notify_one();
                return Ok(true);
            }
        }
        for consumer in &self.consumers {
            let discarded = inbox::Entity::update_many()
                .col_expr(inbox::Column::Status, Expr::value(DISCARDED))
                .col_expr(inbox::Column::ProcessedAt, Expr::value(now))
                .filter(inbox::Column::Id.eq(id))
                .filter(inbox::Column::Consumer.eq(consumer.name()))
                .filter(inbox::Column::Status.eq(FAILED))
                .exec(consumer.db())
                .await?;
            if discarded.rows_affected > 0 {
                self.handled.notify_one();
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Deletes dispatched, handled and discarded rows older than the retention.
    pub async fn purge(&self) -> Result<u64, DbErr> {
        let retention =
            chrono::Duration::from_std(self.config.retention).unwrap_or(chrono::Duration::MAX);
        let cutoff = self.clock.now() - retention;
        let mut purged = 0;
        for publisher in &self.publishers {
            purged += outbox::Entity::delete_many()
                .filter(outbox::Column::Status.is_in([DISPATCHED, DISCARDED]))
                .filter(outbox::Column::DispatchedAt.lt(cutoff))
                .exec(&publisher.db)
                .await?
                .rows_affected;
        }
        for consumer in &self.consumers {
            purged += inbox::Entity::delete_many()
                .filter(inbox::Column::Consumer.eq(consumer.name()))
                .filter(inbox::Column::Status.is_in([DONE, DISCARDED]))
                .filter(inbox::Column::ProcessedAt.lt(cutoff))
                .exec(consumer.db())
                .await?
                .rows_affected;
        }
        if purged > 0 {
            tracing::info!(rows = purged, "purged finished events");
        }
        Ok(purged)
    }

    /// Sets the [`PARKED`](crate::PARKED) gauge of every publisher and consumer to its number
    /// of parked events, as the database holds them now (so every process reports the same
    /// value: aggregate with `max`, not `sum`). One count per owner, so it is cheap enough
    /// to run on every scrape of `/metrics`.
    pub async fn record_parked(&self) -> Result<(), DbErr> {
        for publisher in &self.publishers {
            let parked = outbox::Entity::find()
                .filter(outbox::Column::Status.eq(FAILED))
                .count(&publisher.db)
                .await?;
            metrics::gauge!(crate::PARKED, "owner" => publisher.context).set(parked as f64);
        }
        for consumer in &self.consumers {
            let parked = inbox::Entity::find()
                .filter(inbox::Column::Consumer.eq(consumer.name()))
                .filter(inbox::Column::Status.eq(FAILED))
                .count(consumer.db())
                .await?;
            metrics::gauge!(crate::PARKED, "owner" => consumer.name().to_owned())
                .set(parked as f64);
        }
        Ok(())
    }

    /// Rows not yet dispatched or done (effects after the commit included), parked ones
    /// excluded (for tests and metrics).
    pub async fn pending(&self) -> Result<u64, DbErr> {
        let mut pending = 0;
        for publisher in &self.publishers {
            pending += outbox::Entity::find()
                .filter(outbox::Column::Status.eq(PENDING))
                .count(&publisher.db)
                .await?;
        }
        for consumer in &self.consumers {
            pending += inbox::Entity::find()
                .filter(inbox::Column::Consumer.eq(consumer.name()))
                .filter(inbox::Column::Status.is_in([PENDING, HANDLED]))
                .count(consumer.db())
                .await?;
        }
        Ok(pending)
    }

    /// Watches the background loop go to sleep: what an operator's tooling (and the tests
    /// that prove an idle bus issues no query) can observe of it.
    pub fn sleeping(&self) -> watch::Receiver<Sleeping> {
        self.sleeping.subscribe()
    }

    /// Runs the relay, the handlers and the purge in the background until `shutdown`.
    ///
    /// Nothing is polled: a pass runs when a publisher of this process commits (its outbox's
    /// wake-up), when a broker subscriber stored events or an operator put one back in line,
    /// when another process commits events of a context this bus relays (Postgres `LISTEN`,
    /// see `db_kit::wake`), when its listening connection comes back (notifications may have
    /// been missed), and when the earliest retry it learnt of in its last pass is due. While
    /// nothing is due it waits without a query; the purge runs only when events were handled
    /// since the last one. `poll_interval`, when not zero, adds a safety-net pass.
    pub fn spawn(self: Arc<Self>, shutdown: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            let subscribers: Vec<JoinHandle<()>> = match &self.broker {
                Some(broker) => self
                    .subscribed
                    .iter()
                    .map(|consumer| {
                        broker.spawn_subscriber(
                            consumer.clone(),
                            self.clock.clone(),
                            self.handled.clone(),
                            shutdown.clone(),
                        )
                    })
                    .collect(),
                None => Vec::new(),
            };
            let wake = Wake::new();
            let signals = Signals::forward(&self, &wake, &shutdown);
            let listener = self.publishers.first().and_then(|first| {
                wake.listen(
                    &first.db,
                    self.publishers
                        .iter()
                        .map(|publisher| db_kit::wake::channel(publisher.context))
                        .collect(),
                    self.publishers
                        .iter()
                        .map(|publisher| publisher.sender.to_string())
                        .collect(),
                    shutdown.clone(),
                )
            });
            let mut due = vec![None; self.publishers.len() + self.consumers.len()];
            let mut scope = Scope::Everything;
            let mut handled_since_purge = true;
            let mut next_purge = Instant::now();
            let mut failures: u32 = 0;
            loop {
                let mut retry_at = None;
                match self.background_pass(scope, &signals, &mut due).await {
                    Ok(pass) => {
                        failures = 0;
                        handled_since_purge |= pass.worked;
                        if pass.waiting {
                            // The broker cannot take events: try again after a while.
                            retry_at = Some(Instant::now() + self.config.retry_base);
                        }
                    }
                    Err(error) => {
                        tracing::error!(error = %error, "event delivery pass failed");
                        failures = failures.saturating_add(1);
                        let now = self.clock.now();
                        let at = backoff::next_attempt(
                            now,
                            i32::try_from(failures).unwrap_or(i32::MAX),
                            self.config.retry_base,
                            self.config.retry_max,
                        );
                        retry_at = Some(db_kit::wake::deadline_at(at, now));
                    }
                }
                let now = self.clock.now();
                let mut deadline = due
                    .iter()
                    .flatten()
                    .min()
                    .map(|at| db_kit::wake::deadline_at(*at, now));
                deadline = earliest_instant(deadline, retry_at);
                if !self.config.poll_interval.is_zero() {
                    deadline = earliest_instant(
                        deadline,
                        Some(Instant::now() + self.config.poll_interval),
                    );
                }
                let purge_at = handled_since_purge.then_some(next_purge);
                let until = earliest_instant(deadline, purge_at);
                self.sleeping.send_modify(|state| {
                    state.sleeps += 1;
                    state.until_due = deadline.is_some();
                    state.listening = wake.listening();
                });
                let woken = wake.wait(until, &shutdown).await;
                self.sleeping.send_modify(|state| state.wakes += 1);
                scope = match woken {
                    Woken::Shutdown => break,
                    Woken::Local => Scope::Signalled,
                    Woken::Remote => Scope::Publishers,
                    Woken::Reconnected => Scope::Everything,
                    Woken::Deadline => {
                        if purge_at.is_some_and(|at| at <= Instant::now()) {
                            if let Err(error) = self.purge().await {
                                tracing::error!(error = %error, "purging events failed");
                            }
                            handled_since_purge = false;
                            next_purge = Instant::now() + self.config.purge_interval;
                        }
                        if deadline.is_some_and(|at| at <= Instant::now()) {
                            Scope::Everything
                        } else {
                            Scope::Signalled
                        }
                    }
                };
            }
            drop(listener);
            signals.stop().await;
            for subscriber in subscribers {
                if let Err(error) = subscriber.await {
                    tracing::error!(error = %error, "a broker subscriber failed");
                }
            }
            tracing::info!("event bus stopped");
        })
    }

    /// One pass of the background loop over what `scope` names: each publisher relays batch
    /// after batch while more may be due, then each consumer that may have work handles
    /// batch after batch. Each one's next due time (a retry) is written into `due`.
    async fn background_pass(
        &self,
        scope: Scope,
        signals: &Signals,
        due: &mut [Option<DateTime<Utc>>],
    ) -> Result<Pass, DbErr> {
        let mut pass = Pass::default();
        // Consumers run when events were stored for them (events nobody here subscribed to
        // cost no consumer a claim), when signalled, or in a pass over everything.
        let mut delivered = vec![false; self.consumers.len()];
        for (index, publisher) in self.publishers.iter().enumerate() {
            let signalled = signals.publishers[index].swap(false, Ordering::SeqCst);
            if !(signalled || matches!(scope, Scope::Everything | Scope::Publishers)) {
                continue;
            }
            loop {
                let relayed = self.relay(publisher).await?;
                due[index] = relayed.next_due;
                pass.waiting |= relayed.waiting;
                if relayed.relayed > 0 {
                    pass.worked = true;
                }
                for (to, stored) in delivered.iter_mut().zip(&relayed.delivered_to) {
                    *to |= *stored;
                }
                if !relayed.more {
                    break;
                }
            }
        }
        let signalled = signals.consumers.swap(false, Ordering::SeqCst);
        for (index, consumer) in self.consumers.iter().enumerate() {
            if !(delivered[index] || signalled || scope == Scope::Everything) {
                continue;
            }
            loop {
                let processed = consumer
                    .process_once(
                        self.clock.now(),
                        self.config.batch_size,
                        self.retry_policy(),
                    )
                    .await?;
                due[self.publishers.len() + index] = processed.next_due;
                if processed.claimed > 0 {
                    pass.worked = true;
                }
                if !processed.more {
                    break;
                }
            }
        }
        Ok(pass)
    }
}

/// What a background pass looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Every publisher and consumer: at start, after the listening connection came back, at
    /// a due time.
    Everything,
    /// Every publisher (another process committed events), and the consumers they deliver
    /// to.
    Publishers,
    /// Only the publishers and consumers this process signalled.
    Signalled,
}

/// What a background pass did.
#[derive(Debug, Clone, Copy, Default)]
struct Pass {
    worked: bool,
    waiting: bool,
}

/// The in-process wake-ups of a running bus: each publisher's outbox and the consumers'
/// `handled`, each forwarded into the bus's one [`Wake`] and remembered in a flag, so a pass
/// looks at what was signalled only.
struct Signals {
    publishers: Vec<Arc<AtomicBool>>,
    consumers: Arc<AtomicBool>,
    forwarders: Vec<JoinHandle<()>>,
}

impl Signals {
    fn forward(bus: &Bus, wake: &Wake, shutdown: &CancellationToken) -> Self {
        let mut forwarders = Vec::new();
        let mut forward = |notify: Arc<Notify>, flag: Arc<AtomicBool>| {
            let wake = wake.clone();
            let shutdown = shutdown.clone();
            forwarders.push(tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = notify.notified() => {
                            flag.store(true, Ordering::SeqCst);
                            wake.notify();
                        }
                    }
                }
            }));
        };
        let publishers: Vec<Arc<AtomicBool>> = bus
            .publishers
            .iter()
            .map(|publisher| {
                let flag = Arc::new(AtomicBool::new(false));
                forward(publisher.wake.clone(), flag.clone());
                flag
            })
            .collect();
        let consumers = Arc::new(AtomicBool::new(false));
        forward(bus.handled.clone(), consumers.clone());
        Self {
            publishers,
            consumers,
            forwarders,
        }
    }

    async fn stop(self) {
        for forwarder in self.forwarders {
            let _ = forwarder.await;
        }
    }
}

fn earliest_instant(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Puts parked outbox rows back in line; the caller narrows it down.
fn requeue_outbox(now: DateTime<Utc>) -> sea_orm::UpdateMany<outbox::Entity> {
    outbox::Entity::update_many()
        .col_expr(outbox::Column::Status, Expr::value(PENDING))
        .col_expr(outbox::Column::Attempts, Expr::value(0))
        .col_expr(outbox::Column::NextAttemptAt, Expr::value(now))
        .filter(outbox::Column::Status.eq(FAILED))
}

/// Puts `consumer`'s parked inbox rows that `narrow` selects back in line, where they were
/// parked: before their handler (`pending`), or with their handler's work committed and
/// only the effects after the commit to run again (`handled`). Returns how many.
async fn requeue_inbox(
    consumer: &Consumer,
    now: DateTime<Utc>,
    narrow: impl Fn(sea_orm::UpdateMany<inbox::Entity>) -> sea_orm::UpdateMany<inbox::Entity>,
) -> Result<u64, DbErr> {
    let mut requeued = 0;
    for (status, handled) in [(PENDING, false), (HANDLED, true)] {
        let handled_at = if handled {
            inbox::Column::HandledAt.is_not_null()
        } else {
            inbox::Column::HandledAt.is_null()
        };
        let update = inbox::Entity::update_many()
            .col_expr(inbox::Column::Status, Expr::value(status))
            .col_expr(inbox::Column::Attempts, Expr::value(0))
            .col_expr(inbox::Column::NextAttemptAt, Expr::value(now))
            .filter(inbox::Column::Consumer.eq(consumer.name()))
            .filter(inbox::Column::Status.eq(FAILED))
            .filter(handled_at);
        requeued += narrow(update).exec(consumer.db()).await?.rows_affected;
    }
    Ok(requeued)
}

/// When the next pending outbox row waiting for a retry becomes due.
async fn outbox_next_due<C: ConnectionTrait>(
    db: &C,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, DbErr> {
    outbox::Entity::find()
        .select_only()
        .column_as(outbox::Column::NextAttemptAt.min(), "due")
        .filter(outbox::Column::Status.eq(PENDING))
        .filter(outbox::Column::NextAttemptAt.gt(now))
        .into_tuple::<Option<DateTime<Utc>>>()
        .one(db)
        .await
        .map(Option::flatten)
}

/// Due pending outbox rows, oldest first, skipping rows with an earlier pending or parked row
/// of the same aggregate, and on Postgres rows another relay holds.
async fn claim_outbox<C: ConnectionTrait>(
    db: &C,
    now: DateTime<Utc>,
    batch: u64,
) -> Result<Vec<outbox::Model>, DbErr> {
    let earlier = Alias::new("earlier");
    let mut blocked = Query::select()
        .expr(Expr::val(1))
        .from_as(outbox::Entity, earlier.clone())
        .and_where(
            Expr::col((earlier.clone(), outbox::Column::AggregateId))
                .eq(Expr::col((outbox::Entity, outbox::Column::AggregateId))),
        )
        .and_where(
            Expr::col((earlier.clone(), outbox::Column::Seq))
                .lt(Expr::col((outbox::Entity, outbox::Column::Seq))),
        )
        // Unfinished: a literal, for the partial index (see `store::OUTBOX_UNFINISHED`).
        .and_where(Expr::cust(OUTBOX_UNFINISHED))
        .to_owned();
    let postgres = db.get_database_backend() == DbBackend::Postgres;
    if postgres {
        store::look_up_per_row(&mut blocked);
    }
    let mut select = outbox::Entity::find()
        .filter(Expr::cust(OUTBOX_CLAIMABLE))
        .filter(outbox::Column::NextAttemptAt.lte(now))
        .filter(Expr::exists(blocked).not())
        .order_by_asc(outbox::Column::Seq)
        .limit(batch);
    if postgres {
        select = select.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    select.all(db).await
}
