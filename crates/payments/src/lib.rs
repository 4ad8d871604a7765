//! The payments context: charges and refunds of orders, through a payment provider.
//!
//! Published language: `payments-api` ([`payments_api::PaymentsApi`]). Inside:
//! - `domain`: validation, request fingerprints, repeat and refund rules (no I/O);
//! - `store`: the `payments` and `refunds` tables, and all of payments' SQL;
//! - `provider`: the [`PaymentProvider`] port and the [`FakeProvider`] of the test tokens;
//! - `service`: [`PaymentsService`], the implementation of `PaymentsApi`;
//! - `http`: the `/api/payments` routes.
//!
//! Architecture invariants: one payment per order and one charge per idempotency key,
//! whatever the concurrency (unique keys, a pending row committed before the provider is
//! called, conditional status updates); refunds never exceed the capture (conditional
//! updates plus `CHECK` constraints); every announced change writes its event to payments'
//! outbox in the transaction that makes it. No other context reads these tables.

mod domain;
mod http;
mod provider;
mod service;
mod store;

use std::sync::Arc;
use std::time::Duration;

use kernel::Clock;
use messaging::Outbox;
use payments_api::PaymentsApi;
use sea_orm::{DatabaseConnection, DbErr};

pub use domain::RefundRequest;
pub use http::{PaymentsDoc, TestToken, configure};
pub use provider::{FakeProvider, PaymentProvider, ProviderError, ProviderOutcome};
pub use service::PaymentsService;

/// The context's name, which is also its schema, its SQLite file and its role suffix.
pub const CONTEXT: &str = "payments";

/// Applies payments' migrations to payments' own store.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    db_kit::migrate::<payments_migrations::Migrator>(db, CONTEXT).await
}

/// Settings of the payments context.
#[derive(Debug, Clone)]
pub struct PaymentsConfig {
    /// How long the fake provider takes to approve `tok_slow`. Set it longer than the
    /// time callers (orders) wait for a charge, so `tok_slow` exercises their timeout.
    pub slow_delay: Duration,
}

/// The assembled context, as the composition root sees it.
#[derive(Debug, Clone)]
pub struct PaymentsModule {
    service: Arc<PaymentsService>,
    outbox: Outbox,
}

impl PaymentsModule {
    /// Payments with the built-in fake provider.
    pub fn new(db: DatabaseConnection, clock: Arc<dyn Clock>, config: PaymentsConfig) -> Self {
        Self::with_provider(db, clock, Arc::new(FakeProvider::new(config.slow_delay)))
    }

    /// Payments with a given provider (tests keep a handle on it to count captures).
    pub fn with_provider(
        db: DatabaseConnection,
        clock: Arc<dyn Clock>,
        provider: Arc<dyn PaymentProvider>,
    ) -> Self {
        let outbox = Outbox::new(CONTEXT);
        Self {
            service: Arc::new(PaymentsService::new(db, clock, provider, outbox.clone())),
            outbox,
        }
    }

    /// The port other contexts use.
    pub fn api(&self) -> Arc<dyn PaymentsApi> {
        self.service.clone()
    }

    /// The service itself, for payments' own operations (partial refunds) and its tests.
    pub fn service(&self) -> Arc<PaymentsService> {
        self.service.clone()
    }

    /// Payments' outbox, for the composition root to register with the event bus.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }
}
