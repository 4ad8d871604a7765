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

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use catalog_api::CatalogApi;
use db_kit::wake::{SweepTimes, Wake};
use kernel::Clock;
use messaging::Outbox;
use orders_api::{OrdersApi, OrdersError};
use payments_api::PaymentsApi;
use sea_orm::{DatabaseConnection, DbErr};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use checkout::{CheckoutHook, Moment, NoFaults, RetryPolicy, Step};
pub use http::{OrdersDoc, PUBLIC_SCOPES, configure};
pub use service::OrdersService;

/// The context's name, which is also its schema, its SQLite file and its role suffix.
pub const CONTEXT: &str = "orders";

/// What no code can say about orders: its purpose, its language and its invariants. The
/// console's context page and `docs/contexts/orders.md` are made from it and from the code.
pub const CANVAS: &str = include_str!("../canvas.toml");

/// Applies orders' migrations to orders' own store.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    db_kit::migrate::<orders_migrations::Migrator>(db, CONTEXT).await
}

#[derive(Debug, Clone)]
pub struct OrdersConfig {
    /// How long checkout waits for a charge before giving the payment up.
    pub charge_timeout: Duration,
    /// How long a runner's hold on an order lasts without renewal (it renews before every
    /// step); after a crash, the order waits this long before another runner takes it.
    pub lease: Duration,
    /// A safety-net pass of the recovery sweep this often, besides the wake-ups and due
    /// times that drive it; zero: none (the sweep issues no query while nothing is
    /// unfinished).
    pub recovery_interval: Duration,
    /// Unfinished checkouts the sweep takes per round.
    pub recovery_batch: u64,
    /// Checkouts the sweep runs at once.
    pub recovery_concurrency: usize,
    /// Backoff between attempts, and when to park.
    pub retry: RetryPolicy,
    /// Checkouts one customer may have unfinished at once.
    pub max_in_flight_per_customer: u32,
    /// How long an order's detail waits for payments and catalog before answering without.
    pub detail_timeout: Duration,
}

impl Default for OrdersConfig {
    fn default() -> Self {
        Self {
            charge_timeout: Duration::from_secs(5),
            lease: Duration::from_secs(30),
            recovery_interval: Duration::ZERO,
            recovery_batch: 50,
            recovery_concurrency: 4,
            retry: RetryPolicy {
                base: Duration::from_secs(1),
                max: Duration::from_secs(300),
                max_attempts: 8,
            },
            max_in_flight_per_customer: 3,
            detail_timeout: Duration::from_secs(2),
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
            lease: config.lease,
            retry: config.retry,
            hook,
            sweep: Wake::new(),
        });
        let service = OrdersService {
            db,
            catalog,
            payments,
            outbox: outbox.clone(),
            clock,
            checkout,
            config: config.clone(),
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

    /// Runs every unfinished checkout that is due and that no live runner holds, a batch at
    /// a time, until none is left: what a process does at start for the checkouts a previous
    /// process left behind (once their runners' leases expired). Returns how many runs it
    /// made.
    pub async fn recover(&self) -> Result<usize, OrdersError> {
        let mut total = 0;
        loop {
            let ran = self.service.recover_due().await?;
            total += ran;
            if ran == 0 {
                return Ok(total);
            }
        }
    }

    /// One round of the recovery sweep: up to `recovery_batch` due checkouts that no live
    /// runner holds. Returns how many it ran.
    pub async fn sweep_once(&self) -> Result<usize, OrdersError> {
        self.service.recover_due().await
    }

    /// Runs the recovery sweep until `shutdown`, without polling: a pass at start (what a
    /// previous process left behind), then whenever a checkout of this process ends
    /// unfinished, and when the next unfinished order becomes due (its retry comes or its
    /// runner's lease ends), as the last pass learnt. Each pass runs batches (bounded
    /// concurrency) while they come back full, so orders that cannot finish (backed off,
    /// then parked) never hide the others. With no unfinished order it issues no query.
    ///
    /// Across processes, a commit on orders' wake-up channel (an order placed or finished
    /// elsewhere) means an order may become due when that process's lease ends, should it
    /// die first: the sweep then runs a pass one lease later, not at once.
    /// `recovery_interval`, when not zero, adds a safety-net pass.
    pub fn spawn_recovery(&self, shutdown: CancellationToken) -> JoinHandle<()> {
        let service = self.service.clone();
        let wake = service.checkout.sweep.clone();
        let times = SweepTimes {
            remote_horizon: self.config.lease,
            after_error: self.config.retry.base,
            safety_net: self.config.recovery_interval,
        };
        let listener = wake.listen(
            &service.db,
            vec![self.outbox.channel()],
            HashSet::from([self.outbox.sender().to_owned()]),
            shutdown.clone(),
        );
        let batch = usize::try_from(self.config.recovery_batch).unwrap_or(usize::MAX);
        tokio::spawn(async move {
            let clock = service.clock.clone();
            db_kit::wake::sweep(&wake, &shutdown, clock.as_ref(), times, || {
                let service = service.clone();
                async move {
                    while service.recover_due().await? >= batch.max(1) {}
                    store::next_due_for_recovery(&service.db)
                        .await
                        .map_err(db_kit::internal::<OrdersError>)
                }
            })
            .await;
            if let Some(listener) = listener {
                let _ = listener.await;
            }
        })
    }
}
