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

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use db_kit::wake::SweepTimes;
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

/// What no code can say about payments: its purpose, its language and its invariants. The
/// console's context page and `docs/contexts/payments.md` are made from it and from the code.
pub const CANVAS: &str = include_str!("../canvas.toml");

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
    /// A safety-net pass of the reconciliation and refund sweeps this often, besides the
    /// wake-ups and due times that drive them; zero: none.
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
            reconcile_interval: Duration::ZERO,
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
    provider_timeout: Duration,
    retry_base: Duration,
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
            provider_timeout: config.provider_timeout,
            retry_base: config.retry_base,
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

    /// Runs the reconciliation and refund sweeps until `shutdown`, without polling: a pass
    /// at start (what a previous process left unknown or unconfirmed), then whenever a
    /// charge of this process ends with its outcome unknown or a refund is sent, and when the
    /// next payment or refund becomes due, as the last pass learnt. With nothing waiting for
    /// the provider it issues no query. Across processes, a commit on payments' wake-up
    /// channel means a charge of that process may become due within a provider deadline,
    /// should it die first: a pass runs then. `reconcile_interval`, when not zero, adds a
    /// safety-net pass.
    pub fn spawn_reconciliation(&self, shutdown: CancellationToken) -> JoinHandle<()> {
        let service = self.service.clone();
        let wake = service.sweep.clone();
        let times = SweepTimes {
            remote_horizon: self.provider_timeout,
            after_error: self.retry_base,
            safety_net: self.reconcile_interval,
        };
        let listener = wake.listen(
            service.db(),
            vec![self.outbox.channel()],
            HashSet::from([self.outbox.sender().to_owned()]),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            let clock = service.clock();
            db_kit::wake::sweep(&wake, &shutdown, clock.as_ref(), times, || {
                let service = service.clone();
                async move { service.sweep_and_learn().await }
            })
            .await;
            if let Some(listener) = listener {
                let _ = listener.await;
            }
        })
    }
}
