//! The payments context: charges and refunds of orders, through a payment provider.
//!
//! Published language: `payments-api` ([`payments_api::PaymentsApi`]). Inside:
//! - `domain`: validation, request fingerprints, repeat and refund rules (no I/O);
//! - `store`: the `payments` and `refunds` tables, and all of payments' SQL;
//! - `provider`: the [`PaymentProvider`] port and the [`FakeProvider`] of the test tokens;
//! - `service`: [`PaymentsService`], the implementation of `PaymentsApi`, and the
//!   reconciliation and refund sweeps;
//! - `http`: the `/api/payments` routes.
//!
//! Architecture invariants: one payment per order and one charge per idempotency key,
//! whatever the concurrency (unique keys, a pending row committed before the provider is
//! called, conditional status updates); refunds never exceed the capture (conditional
//! updates plus `CHECK` constraints); every announced change writes its event to payments'
//! outbox in the transaction that makes it; a charge whose outcome payments did not hear
//! stays due for reconciliation until the provider says what happened, and money the
//! provider took for a voided payment is refunded by a refund that is retried until the
//! provider confirms it. No other context reads these tables.

mod domain;
mod http;
mod provider;
mod service;
mod store;

use std::sync::Arc;
use std::time::Duration;

use kernel::Clock;
use messaging::Outbox;
use payments_api::{PaymentsApi, PaymentsError};
use sea_orm::{DatabaseConnection, DbErr};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use domain::RefundRequest;
pub use http::{PUBLIC_SCOPES, PaymentsDoc, TestToken, configure};
pub use provider::{FakeProvider, LookupOutcome, PaymentProvider, ProviderError, ProviderOutcome};
pub use service::{
    AWAITING_RECONCILIATION, Backlog, OUTCOMES_UNKNOWN, PaymentsService, RECONCILED,
    REFUND_ATTEMPTS, REFUNDS_UNCONFIRMED,
};

/// The context's name, which is also its schema, its SQLite file and its role suffix.
pub const CONTEXT: &str = "payments";

/// Applies payments' migrations to payments' own store.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    db_kit::migrate::<payments_migrations::Migrator>(db, CONTEXT).await
}

/// Settings of the payments context.
#[derive(Debug, Clone)]
pub struct PaymentsConfig {
    /// Whether the built-in fake provider serves its test tokens (and `GET
    /// /api/payments/test-tokens` lists them). Off, every token is declined as
    /// `invalid_token`: no real provider ships with the shop.
    pub test_mode: bool,
    /// How long the fake provider takes to answer `tok_slow` (it decides at once). Set it
    /// longer than `provider_timeout`, so `tok_slow` exercises an answer that never arrives.
    pub slow_delay: Duration,
    /// Payments' deadline on every provider call. Shorter than callers wait for a charge
    /// (orders' `charge_timeout`), so payments records an unknown outcome itself.
    pub provider_timeout: Duration,
    /// How often the reconciliation and refund sweeps run.
    pub reconcile_interval: Duration,
    /// First retry delay of a lookup or refund the provider did not answer; it doubles with
    /// each attempt up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
}

impl Default for PaymentsConfig {
    fn default() -> Self {
        Self {
            test_mode: true,
            slow_delay: Duration::from_secs(10),
            provider_timeout: Duration::from_secs(2),
            reconcile_interval: Duration::from_secs(10),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
        }
    }
}

/// The assembled context, as the composition root sees it.
#[derive(Debug, Clone)]
pub struct PaymentsModule {
    service: Arc<PaymentsService>,
    outbox: Outbox,
    reconcile_interval: Duration,
}

impl PaymentsModule {
    /// Payments with the built-in fake provider.
    pub fn new(db: DatabaseConnection, clock: Arc<dyn Clock>, config: PaymentsConfig) -> Self {
        if !config.test_mode {
            tracing::warn!(
                "payments test mode is off and no real payment provider ships with the shop: \
                 the built-in fake provider declines every token"
            );
        }
        let provider = FakeProvider::new(config.slow_delay).with_test_mode(config.test_mode);
        Self::with_provider(db, clock, Arc::new(provider), config)
    }

    /// Payments with a given provider (tests keep a handle on it to count captures).
    pub fn with_provider(
        db: DatabaseConnection,
        clock: Arc<dyn Clock>,
        provider: Arc<dyn PaymentProvider>,
        config: PaymentsConfig,
    ) -> Self {
        let outbox = Outbox::new(CONTEXT);
        Self {
            service: Arc::new(PaymentsService::new(
                db,
                clock,
                provider,
                outbox.clone(),
                &config,
            )),
            outbox,
            reconcile_interval: config.reconcile_interval,
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

    /// One pass of the reconciliation sweep (see [`PaymentsService::reconcile_due`]):
    /// how many payments whose charge's outcome was unknown it asked the provider about.
    pub async fn reconcile_due(&self) -> Result<usize, PaymentsError> {
        self.service.reconcile_due().await
    }

    /// One pass of the refund sweep (see [`PaymentsService::confirm_refunds_due`]): how
    /// many unconfirmed refunds it sent to the provider.
    pub async fn confirm_refunds_due(&self) -> Result<usize, PaymentsError> {
        self.service.confirm_refunds_due().await
    }

    /// Runs the reconciliation and refund sweeps every `reconcile_interval` until
    /// `shutdown`, starting at once: what a previous process left unknown or unconfirmed is
    /// taken up at start.
    pub fn spawn_reconciliation(&self, shutdown: CancellationToken) -> JoinHandle<()> {
        let service = self.service.clone();
        let interval = self.reconcile_interval;
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = ticks.tick() => {}
                }
                if let Err(error) = service.sweep().await {
                    tracing::error!(%error, "payments reconciliation failed");
                }
            }
        })
    }
}
