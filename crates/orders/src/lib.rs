//! The orders context: what customers bought, and the checkout that makes it so.
//!
//! Published language: `orders-api` ([`orders_api::OrdersApi`]). orders calls catalog
//! (`CatalogApi`: prices in one batch call, stock reservation) and payments (`PaymentsApi`:
//! charges, refunds) through their traits only, and keeps its own snapshot of what was
//! bought. Inside:
//! - `domain`: request rules, the fingerprint behind idempotency keys, the status machine;
//! - `store`: the `orders` and `order_lines` tables, and all of orders' SQL (its `outbox`
//!   belongs to `messaging`);
//! - `checkout`: the saga (reserve → charge → confirm; compensations; cancellation);
//! - `service`: [`OrdersService`], the implementation of `OrdersApi`;
//! - `http`: the `/api/orders` routes.
//!
//! Architecture invariants: no order stays unfinished (every step is persisted and
//! idempotent, and the recovery sweep re-runs unfinished checkouts); no stock stays reserved
//! for a failed order; no payment stays captured without a confirmed order; no other
//! context's table is ever named here.

mod checkout;
mod domain;
mod http;
mod service;
mod store;

use std::sync::Arc;
use std::time::Duration;

use catalog_api::CatalogApi;
use kernel::Clock;
use messaging::Outbox;
use orders_api::{OrdersApi, OrdersError};
use payments_api::PaymentsApi;
use sea_orm::{DatabaseConnection, DbErr};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use checkout::{CheckoutHook, Moment, NoFaults, Step};
pub use http::{OrdersDoc, configure};
pub use service::OrdersService;

/// The context's name, which is also its schema, its SQLite file and its role suffix.
pub const CONTEXT: &str = "orders";

/// Applies orders' migrations to orders' own store.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    db_kit::migrate::<orders_migrations::Migrator>(db, CONTEXT).await
}

#[derive(Debug, Clone)]
pub struct OrdersConfig {
    /// How long checkout waits for a charge before giving the payment up.
    pub charge_timeout: Duration,
    /// How often the recovery sweep looks for unfinished checkouts.
    pub recovery_interval: Duration,
    /// How long a checkout must have been idle before the sweep takes it over (a live
    /// request is normally still driving it before that).
    pub stuck_after: Duration,
}

impl Default for OrdersConfig {
    fn default() -> Self {
        Self {
            charge_timeout: Duration::from_secs(5),
            recovery_interval: Duration::from_secs(15),
            stuck_after: Duration::from_secs(30),
        }
    }
}

/// The assembled context, as the composition root sees it.
#[derive(Debug, Clone)]
pub struct OrdersModule {
    service: Arc<OrdersService>,
    outbox: Outbox,
    config: OrdersConfig,
}

impl OrdersModule {
    pub fn new(
        db: DatabaseConnection,
        clock: Arc<dyn Clock>,
        catalog: Arc<dyn CatalogApi>,
        payments: Arc<dyn PaymentsApi>,
        config: OrdersConfig,
    ) -> Self {
        Self::with_hook(db, clock, catalog, payments, config, Arc::new(NoFaults))
    }

    /// Like `new`, with a fault-injection hook (tests stop the saga at chosen steps).
    pub fn with_hook(
        db: DatabaseConnection,
        clock: Arc<dyn Clock>,
        catalog: Arc<dyn CatalogApi>,
        payments: Arc<dyn PaymentsApi>,
        config: OrdersConfig,
        hook: Arc<dyn CheckoutHook>,
    ) -> Self {
        let outbox = Outbox::new(CONTEXT);
        let checkout = Arc::new(checkout::Checkout {
            db: db.clone(),
            catalog: catalog.clone(),
            payments: payments.clone(),
            outbox: outbox.clone(),
            clock: clock.clone(),
            charge_timeout: config.charge_timeout,
            hook,
        });
        let service = OrdersService {
            db,
            catalog,
            payments,
            outbox: outbox.clone(),
            clock,
            checkout,
        };
        Self {
            service: Arc::new(service),
            outbox,
            config,
        }
    }

    pub fn api(&self) -> Arc<dyn OrdersApi> {
        self.service.clone()
    }

    /// The service behind orders' own routes.
    pub fn service(&self) -> Arc<OrdersService> {
        self.service.clone()
    }

    /// Where orders' events wait for the relay; the composition root registers it on the bus.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Finishes every unfinished checkout now, whatever its age: what a process does at
    /// start for the checkouts a previous process left behind. Returns how many it ran.
    pub async fn recover(&self) -> Result<usize, OrdersError> {
        self.service.recover(chrono::Duration::zero()).await
    }

    /// Recovers at once, then sweeps for stuck checkouts every `recovery_interval`.
    pub fn spawn_recovery(&self, shutdown: CancellationToken) -> JoinHandle<()> {
        let service = self.service.clone();
        let interval = self.config.recovery_interval;
        let stuck_after =
            chrono::Duration::from_std(self.config.stuck_after).unwrap_or(chrono::Duration::MAX);
        tokio::spawn(async move {
            let mut first = true;
            let mut ticks = tokio::time::interval(interval);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = ticks.tick() => {}
                }
                let age = if first {
                    chrono::Duration::zero()
                } else {
                    stuck_after
                };
                first = false;
                if let Err(error) = service.recover(age).await {
                    tracing::error!(error = %error, "checkout recovery failed");
                }
            }
        })
    }
}
