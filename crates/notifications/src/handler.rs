//! The reaction to other contexts' events: keep the recipients up to date, and record, then
//! send, one message per (event, recipient).
//!
//! `handle` runs on the transaction the bus hands over, which also marks the inbox row
//! handled: the recipient, the check for an earlier message and the new notification,
//! rendered and stored but not sent (`sent_at` empty), commit together, or not at all and
//! the event is retried. Nothing leaves the shop from there, since that transaction can still
//! fail to commit.
//!
//! `after_commit` then sends the event's notifications that are not sent yet, exactly as
//! they were stored (so every attempt sends the same message under the same id), and marks
//! them sent: the bus hands over the events of a batch together (`after_commit_batch`), and
//! one statement marks every message the batch sent, those of its failed events included.
//! A failed send is retried by the bus, with backoff and then parked at the
//! `after_commit` stage, without handling the event again. A process that dies between a
//! send and its mark sends that message again on the next attempt: at least once, never a
//! different message, and a sender treats a repeated id as the same message (the file sender
//! overwrites its file).
//!
//! The messages a handling just stored are kept in memory for its `after_commit`, which then
//! sends them without reading them back; an `after_commit` that finds none kept (a retry
//! after a restart, another process, a kept list dropped) reads the unsent ones as before.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use auth_api::UserRegistered;
use kernel::{Clock, EventEnvelope, IntegrationEvent, UserId};
use messaging::{EventHandler, HandlerError};
use notifications_api::Channel;
use orders_api::{OrderCancelled, OrderConfirmed, OrderPaymentFailed};
use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr};

use crate::domain::{self, Message, Recipient};
use crate::sender::{OutgoingMessage, Sender};
use crate::store::{self, NewNotification};
use crate::templates::Templates;

#[derive(Debug)]
pub(crate) struct NotificationHandler {
    templates: Templates,
    sender: Arc<dyn Sender>,
    clock: Arc<dyn Clock>,
    /// The messages each event's handling stored, by event id, for its `after_commit`;
    /// `None` when the handling met a message stored earlier, which only the database
    /// knows the state of. An entry whose transaction did not commit is replaced when the
    /// event is handled again, and the map is emptied if it ever holds `MAX_KEPT` events
    /// (the senders then read the database): a memory bound, not a correctness one.
    kept: Mutex<Kept>,
}

type Kept = HashMap<uuid::Uuid, Option<Vec<OutgoingMessage>>>;

/// Events whose stored messages are kept in memory at most.
const MAX_KEPT: usize = 4096;

fn decode<E: IntegrationEvent>(event: &EventEnvelope) -> Result<E, HandlerError> {
    event
        .decode()
        .map_err(|error| HandlerError::new(format!("cannot decode {}: {error}", event.name)))
}

fn database(error: DbErr) -> HandlerError {
    HandlerError::new(format!("database: {error}"))
}

impl NotificationHandler {
    pub(crate) fn new(sender: Arc<dyn Sender>, clock: Arc<dyn Clock>) -> Self {
        Self {
            templates: Templates::new(),
            sender,
            clock,
            kept: Mutex::new(HashMap::new()),
        }
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes a message this handling stored (`Some`), or that the database must be asked.
    fn keep(&self, event_id: uuid::Uuid, message: Option<OutgoingMessage>) {
        let mut kept = self.kept();
        if kept.len() >= MAX_KEPT {
            kept.clear();
        }
        let entry = kept.entry(event_id).or_insert_with(|| Some(Vec::new()));
        match (entry, message) {
            (Some(messages), Some(message)) => messages.push(message),
            (entry, None) => *entry = None,
            (None, Some(_)) => {}
        }
    }

    #[tracing::instrument(skip_all, fields(user_id = %registered.user_id))]
    async fn user_registered(
        &self,
        event: &EventEnvelope,
        registered: UserRegistered,
        txn: &DatabaseTransaction,
    ) -> Result<(), HandlerError> {
        let recipient = Recipient {
            user_id: registered.user_id,
            email: registered.email,
            display_name: registered.display_name,
        };
        store::upsert_recipient(txn, &recipient, self.clock.now())
            .await
            .map_err(database)?;
        self.notify(event, &recipient, &Message::Welcome, txn).await
    }

    /// Order events name a customer that `UserRegistered` normally introduced first; the two
    /// travel independently (different aggregates), so the order event can arrive first. It
    /// then fails and is retried with backoff until the recipient is known.
    #[tracing::instrument(skip_all, fields(customer_id = %customer_id))]
    async fn order_event(
        &self,
        event: &EventEnvelope,
        customer_id: UserId,
        message: Message,
        txn: &DatabaseTransaction,
    ) -> Result<(), HandlerError> {
        let recipient = store::find_recipient(txn, customer_id)
            .await
            .map_err(database)?
            .ok_or_else(|| {
                HandlerError::new(format!("recipient {customer_id} is not known yet"))
            })?;
        self.notify(event, &recipient, &message, txn).await
    }

    /// Renders and records `message` to `recipient`, once per event; `after_commit` sends it.
    async fn notify(
        &self,
        event: &EventEnvelope,
        recipient: &Recipient,
        message: &Message,
        txn: &DatabaseTransaction,
    ) -> Result<(), HandlerError> {
        let kind = message.kind();
        let id = domain::notification_id(event.id, kind, recipient.user_id);
        let rendered = self
            .templates
            .render(recipient, message)
            .map_err(|error| HandlerError::new(error.to_string()))?;
        let outgoing = OutgoingMessage {
            id,
            to: recipient.email.clone(),
            subject: rendered.subject.clone(),
            body: rendered.body.clone(),
        };
        let inserted = store::insert_notification(
            txn,
            NewNotification {
                id,
                event_id: event.id,
                recipient_id: recipient.user_id,
                kind,
                channel: Channel::Email,
                address: recipient.email.clone(),
                subject: rendered.subject,
                body: rendered.body,
            },
            self.clock.now(),
        )
        .await
        .map_err(database)?;
        if inserted {
            self.keep(event.id, Some(outgoing));
            let kind: &'static str = kind.into();
            tracing::info!(notification_id = %id, kind, recipient_id = %recipient.user_id, "notification recorded");
        } else {
            // Recorded already, by an earlier delivery (the inbox normally stops a second
            // one, but its rows are purged after a while) or by a concurrent attempt: same
            // id, same message, sent once. The insert is the check: no read before it.
            tracing::debug!(notification_id = %id, "notification already recorded");
            self.keep(event.id, None);
        }
        Ok(())
    }

    /// Sends `event`'s recorded notifications that are not sent yet (those its handling
    /// kept, or else those the database holds unsent), adding the id of each it sent to
    /// `sent`, for the caller to mark.
    async fn send_unsent(
        &self,
        event: &EventEnvelope,
        db: &DatabaseConnection,
        sent: &mut Vec<uuid::Uuid>,
    ) -> Result<(), HandlerError> {
        let kept = self.kept().remove(&event.id).flatten();
        let messages = match kept {
            Some(messages) => messages,
            None => store::unsent_messages(db, event.id)
                .await
                .map_err(database)?,
        };
        for message in messages {
            self.sender
                .send(&message)
                .await
                .map_err(|error| HandlerError::new(format!("sending failed: {error}")))?;
            sent.push(message.id);
            tracing::info!(notification_id = %message.id, "notification sent");
        }
        Ok(())
    }
}

#[async_trait]
impl EventHandler for NotificationHandler {
    async fn handle(
        &self,
        event: &EventEnvelope,
        txn: &DatabaseTransaction,
    ) -> Result<(), HandlerError> {
        // A handling that did not commit may have kept messages: this one stores its own.
        self.kept().remove(&event.id);
        if event.is::<UserRegistered>() {
            let registered = decode::<UserRegistered>(event)?;
            self.user_registered(event, registered, txn).await
        } else if event.is::<OrderConfirmed>() {
            let confirmed = decode::<OrderConfirmed>(event)?;
            let message = Message::OrderConfirmed {
                order_id: confirmed.order_id,
                total: confirmed.total,
                line_count: confirmed.line_count,
            };
            self.order_event(event, confirmed.customer_id, message, txn)
                .await
        } else if event.is::<OrderPaymentFailed>() {
            let failed = decode::<OrderPaymentFailed>(event)?;
            let message = Message::PaymentFailed {
                order_id: failed.order_id,
                total: failed.total,
                reason: failed.reason,
            };
            self.order_event(event, failed.customer_id, message, txn)
                .await
        } else if event.is::<OrderCancelled>() {
            let cancelled = decode::<OrderCancelled>(event)?;
            let message = Message::OrderCancelled {
                order_id: cancelled.order_id,
                refunded: cancelled.refunded,
            };
            self.order_event(event, cancelled.customer_id, message, txn)
                .await
        } else {
            // Only reachable if a subscription is added without a branch here: fail, so the
            // event is parked and shows up among the failed events instead of vanishing.
            Err(HandlerError::new(format!(
                "notifications has no handler for {}",
                event.name
            )))
        }
    }

    async fn after_commit(
        &self,
        event: &EventEnvelope,
        db: &DatabaseConnection,
    ) -> Result<(), HandlerError> {
        let mut results = self
            .after_commit_batch(std::slice::from_ref(event), db)
            .await;
        results.pop().unwrap_or(Ok(()))
    }

    /// Sends each event's unsent messages, then marks every message sent in one statement.
    /// If that statement fails, every event that sent something fails with it and is
    /// retried: it sends the same messages again, under the same ids.
    async fn after_commit_batch(
        &self,
        events: &[EventEnvelope],
        db: &DatabaseConnection,
    ) -> Vec<Result<(), HandlerError>> {
        let mut sent = Vec::new();
        let mut outcomes = Vec::with_capacity(events.len());
        for event in events {
            let before = sent.len();
            let result = self.send_unsent(event, db, &mut sent).await;
            outcomes.push((result, sent.len() > before));
        }
        let marked = if sent.is_empty() {
            Ok(())
        } else {
            store::mark_sent(db, &sent, self.clock.now())
                .await
                .map_err(database)
        };
        outcomes
            .into_iter()
            .map(|(result, sent_some)| match (&marked, result) {
                (Err(error), Ok(())) if sent_some => Err(error.clone()),
                (_, result) => result,
            })
            .collect()
    }
}
