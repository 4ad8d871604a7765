//! The notifications context: the messages the shop sends its customers.
//!
//! Published language: `notifications-api` ([`notifications_api::NotificationsApi`]). It
//! publishes no events; it consumes `auth.user_registered.v1` (a welcome message, and the
//! recipient's address and name) and orders' confirmed, payment-failed and cancelled events.
//! Inside:
//! - `domain`: recipients, message kinds, notification ids, failure wording (no I/O);
//! - `store`: the `recipients` and `notifications` tables, and all of notifications' SQL
//!   (its `inbox` belongs to `messaging`);
//! - `templates`: subject and body per kind, from `templates/`, rendered with minijinja;
//! - `sender`: the [`Sender`] port, [`FileSender`] and [`LogSender`];
//! - `handler`: the event handler behind [`NotificationsModule::consumer`];
//! - `service`: [`NotificationsService`], the implementation of `NotificationsApi`;
//! - `http`: the `/api/notifications` routes, over the service.
//!
//! Architecture invariants: one message per (event, recipient), however often an event is
//! delivered (the inbox, a unique key, and deterministic notification ids that make a
//! repeated send overwrite rather than add); a message is recorded in the inbox row's
//! transaction and sent only after it committed; notifications never asks auth or orders
//! for anything: what it needs arrives in their events.

mod domain;
mod handler;
mod http;
mod sender;
mod service;
mod store;
mod templates;

use std::sync::Arc;

use auth_api::UserRegistered;
use kernel::{Clock, IntegrationEvent};
use messaging::Consumer;
use notifications_api::NotificationsApi;
use orders_api::{OrderCancelled, OrderConfirmed, OrderPaymentFailed};
use sea_orm::{DatabaseConnection, DbErr};
use serde::Deserialize;

pub use http::{NotificationsDoc, PUBLIC_SCOPES, configure};
pub use sender::{FileSender, LogSender, OutgoingMessage, SendError, Sender, SenderConfig};
pub use service::NotificationsService;

use crate::handler::NotificationHandler;

/// The context's name, which is also its schema, its SQLite file and its role suffix.
pub const CONTEXT: &str = "notifications";

/// What no code can say about notifications: its purpose, its language and its invariants. The
/// console's context page and `docs/contexts/notifications.md` are made from it and from the code.
pub const CANVAS: &str = include_str!("../canvas.toml");

/// The name of notifications' consumer: it keys its inbox rows, so it never changes.
pub const CONSUMER: &str = "notifications";

/// Applies notifications' migrations to notifications' own store.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    db_kit::migrate::<notifications_migrations::Migrator>(db, CONTEXT).await
}

/// How notifications delivers its messages. In the shop's configuration:
/// `[notifications.sender]` with `kind = "file"` and `dir = "..."`, or `kind = "log"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct NotificationsConfig {
    pub sender: SenderConfig,
}

/// The assembled context, as the composition root sees it.
#[derive(Debug, Clone)]
pub struct NotificationsModule {
    db: DatabaseConnection,
    service: Arc<NotificationsService>,
    handler: Arc<NotificationHandler>,
}

impl NotificationsModule {
    pub fn new(db: DatabaseConnection, clock: Arc<dyn Clock>, config: NotificationsConfig) -> Self {
        Self::with_sender(db, clock, config.sender.build())
    }

    /// Like [`new`](Self::new), with a sender of the caller's (a test's, or a mail relay).
    pub fn with_sender(
        db: DatabaseConnection,
        clock: Arc<dyn Clock>,
        sender: Arc<dyn Sender>,
    ) -> Self {
        Self {
            service: Arc::new(NotificationsService::new(db.clone())),
            handler: Arc::new(NotificationHandler::new(sender, clock)),
            db,
        }
    }

    /// The port (no other context calls notifications today).
    pub fn api(&self) -> Arc<dyn NotificationsApi> {
        self.service.clone()
    }

    /// The service behind notifications' own routes.
    pub fn service(&self) -> Arc<NotificationsService> {
        self.service.clone()
    }

    /// The consumer of the events notifications reacts to; the composition root registers
    /// it on the event bus.
    pub fn consumer(&self) -> Consumer {
        Consumer::new(CONSUMER, self.db.clone(), self.handler.clone())
            .subscribe::<UserRegistered>()
            .subscribe::<OrderConfirmed>()
            .subscribe::<OrderPaymentFailed>()
            .subscribe::<OrderCancelled>()
    }

    /// The events [`consumer`](Self::consumer) subscribes to, by name, without a store:
    /// what the console and the canvases show as notifications' events in.
    pub const SUBSCRIPTIONS: [&'static str; 4] = [
        UserRegistered::NAME,
        OrderConfirmed::NAME,
        OrderPaymentFailed::NAME,
        OrderCancelled::NAME,
    ];
}
