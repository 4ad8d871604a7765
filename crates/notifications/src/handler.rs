//! The reaction to other contexts' events: keep the recipients up to date, and send and
//! record one message per (event, recipient).
//!
//! Everything runs on the transaction the bus hands over, which also marks the inbox row
//! done: the recipient, the check for an earlier message and the new row commit together, or
//! not at all and the event is retried. The message is sent before its row is written, so a
//! stored notification has always been sent; a send that succeeded in an attempt that then
//! rolled back is repeated under the same id, which senders treat as the same message.

use std::sync::Arc;

use async_trait::async_trait;
use auth_api::UserRegistered;
use kernel::{Clock, EventEnvelope, IntegrationEvent, UserId};
use messaging::{EventHandler, HandlerError};
use notifications_api::Channel;
use orders_api::{OrderCancelled, OrderConfirmed, OrderPaymentFailed};
use sea_orm::{DatabaseTransaction, DbErr};

use crate::domain::{self, Message, Recipient};
use crate::sender::{OutgoingMessage, Sender};
use crate::store::{self, SentMessage};
use crate::templates::Templates;

#[derive(Debug)]
pub(crate) struct NotificationHandler {
    templates: Templates,
    sender: Arc<dyn Sender>,
    clock: Arc<dyn Clock>,
}

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

    /// Renders, sends and records `message` to `recipient`, once per event.
    async fn notify(
        &self,
        event: &EventEnvelope,
        recipient: &Recipient,
        message: &Message,
        txn: &DatabaseTransaction,
    ) -> Result<(), HandlerError> {
        let kind = message.kind();
        let id = domain::notification_id(event.id, kind, recipient.user_id);
        // The inbox normally stops a second delivery, but its rows are purged after a
        // while; this check keeps a late redelivery from sending the message again.
        if store::notification_exists(txn, event.id, recipient.user_id)
            .await
            .map_err(database)?
        {
            tracing::debug!(notification_id = %id, "notification already sent");
            return Ok(());
        }
        let rendered = self
            .templates
            .render(recipient, message)
            .map_err(|error| HandlerError::new(error.to_string()))?;
        let outgoing = OutgoingMessage {
            id,
            to: recipient.email.clone(),
            subject: rendered.subject,
            body: rendered.body,
        };
        self.sender
            .send(&outgoing)
            .await
            .map_err(|error| HandlerError::new(format!("sending failed: {error}")))?;
        let inserted = store::insert_notification(
            txn,
            SentMessage {
                id,
                event_id: event.id,
                recipient_id: recipient.user_id,
                kind,
                channel: Channel::Email,
                address: outgoing.to,
                subject: outgoing.subject,
                body: outgoing.body,
            },
            self.clock.now(),
        )
        .await
        .map_err(database)?;
        if inserted {
            let kind: &'static str = kind.into();
            tracing::info!(notification_id = %id, kind, recipient_id = %recipient.user_id, "notification sent");
        } else {
            // Another attempt stored it between the check and the insert: same id, same
            // message, and the sender overwrote rather than duplicated it.
            tracing::debug!(notification_id = %id, "notification stored concurrently");
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
}
