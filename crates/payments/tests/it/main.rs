//! payments' behaviour through `PaymentsApi`, on SQLite and on Postgres.

mod cancel;
mod charges;
mod reconcile;
mod refunds;
mod routes;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kernel::{Currency, IdempotencyKey, ManualClock, Money, OrderId, UserId};
use payments::{
    FakeProvider, LookupOutcome, PaymentProvider, PaymentsConfig, PaymentsModule, PaymentsService,
    ProviderError, ProviderOutcome,
};
use payments_api::{ChargeRequest, Payment, PaymentToken, PaymentsApi};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use testkit::TestStore;
use tokio::sync::{Notify, mpsc};

/// Long enough that no test ever waits for it: a `tok_slow` charge under this delay is
/// only ever abandoned.
pub const NEVER: Duration = Duration::from_secs(600);
/// Short enough to wait for.
pub const QUICK: Duration = Duration::from_millis(20);
/// Payments' deadline on the provider in tests that never reach it.
pub const PATIENT: Duration = Duration::from_secs(600);
/// Payments' deadline in tests whose provider never answers: short, so that waiting for it
/// to pass costs little. (A provider that answers at all answers on its first poll, so this
/// deadline never races an answer.)
pub const IMPATIENT: Duration = Duration::from_millis(100);

/// Payments' settings in tests: a deadline on the provider no test reaches unless it means to.
pub fn config() -> PaymentsConfig {
    PaymentsConfig {
        provider_timeout: PATIENT,
        ..PaymentsConfig::default()
    }
}

/// A clock that moves only when a test moves it (reconciliation's schedule reads it).
pub fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(chrono::Utc::now()))
}

/// Payments on a test store, with a handle on its fake provider and its connection.
pub struct Harness {
    /// The port, as orders calls it.
    pub api: Arc<dyn PaymentsApi>,
    /// The service, for payments' own operations (partial refunds) and the sweeps.
    pub service: Arc<PaymentsService>,
    pub provider: Arc<FakeProvider>,
    pub db: DatabaseConnection,
    pub clock: Arc<ManualClock>,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

pub async fn connect(store: &TestStore) -> DatabaseConnection {
    let db = store.connect(payments::CONTEXT).await;
    payments::migrate(&db).await.expect("migrate");
    db
}

/// Payments whose fake provider answers `tok_slow` after `slow_delay`.
pub async fn harness_with(store: &TestStore, slow_delay: Duration) -> Harness {
    let db = connect(store).await;
    let provider = Arc::new(FakeProvider::new(slow_delay));
    let clock = clock();
    let module =
        PaymentsModule::with_provider(db.clone(), clock.clone(), provider.clone(), config());
    Harness {
        api: module.api(),
        service: module.service(),
        provider,
        db,
        clock,
    }
}

pub async fn harness(store: &TestStore) -> Harness {
    harness_with(store, QUICK).await
}

/// Payments whose charge was abandoned by its caller while the provider was deciding, as
/// when the caller's timeout fires: the charge is started, reaches the provider (so its
/// pending row is committed), and is then dropped. No clock is involved.
pub async fn with_abandoned_charge(store: &TestStore, request: ChargeRequest) -> Harness {
    let payments = harness_with(store, NEVER).await;
    let gated = Arc::new(Gated::new(payments.provider.clone()));
    let api = PaymentsModule::with_provider(
        payments.db.clone(),
        payments.clock.clone(),
        gated.clone(),
        config(),
    )
    .api();
    let charging = tokio::spawn(async move { api.charge(request).await });
    gated.arrived.notified().await;
    charging.abort();
    assert!(
        charging.await.is_err_and(|error| error.is_cancelled()),
        "the charge was abandoned while the provider decided"
    );
    payments
}

pub fn eur(cents: i64) -> Money {
    Money::new(cents, Currency::EUR).expect("valid money")
}

pub fn key(key: &str) -> IdempotencyKey {
    IdempotencyKey::parse(key).expect("a valid idempotency key")
}

pub fn charge_request(
    order_id: OrderId,
    token: &str,
    cents: i64,
    idempotency_key: &str,
) -> ChargeRequest {
    ChargeRequest {
        order_id,
        customer_id: UserId::new(),
        amount: eur(cents),
        payment_token: PaymentToken::parse(token).expect("a valid token"),
        idempotency_key: key(idempotency_key),
    }
}

/// A fresh order charged `cents` with `tok_visa`.
pub async fn captured(harness: &Harness, cents: i64) -> Payment {
    let order_id = OrderId::new();
    harness
        .api
        .charge(charge_request(
            order_id,
            "tok_visa",
            cents,
            &format!("charge-{order_id}"),
        ))
        .await
        .expect("charge")
}

async fn count(
    db: &DatabaseConnection,
    postgres: &str,
    sqlite: &str,
    values: Vec<sea_orm::Value>,
) -> i64 {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => postgres,
        _ => sqlite,
    };
    db.query_one_raw(Statement::from_sql_and_values(backend, sql, values))
        .await
        .expect("count query")
        .expect("a row")
        .try_get::<i64>("", "n")
        .expect("a count")
}

/// Outbox rows named `name`.
pub async fn events(db: &DatabaseConnection, name: &str) -> i64 {
    count(
        db,
        "SELECT COUNT(*) AS n FROM outbox WHERE name = $1",
        "SELECT COUNT(*) AS n FROM outbox WHERE name = ?",
        vec![name.into()],
    )
    .await
}

/// Outbox rows named `name` about `order_id`.
pub async fn events_of(db: &DatabaseConnection, name: &str, order_id: OrderId) -> i64 {
    count(
        db,
        "SELECT COUNT(*) AS n FROM outbox WHERE name = $1 AND aggregate_id = $2",
        "SELECT COUNT(*) AS n FROM outbox WHERE name = ? AND aggregate_id = ?",
        vec![name.into(), order_id.to_string().into()],
    )
    .await
}

/// Rows of the `payments` table.
pub async fn payment_rows(db: &DatabaseConnection) -> i64 {
    count(
        db,
        "SELECT COUNT(*) AS n FROM payments",
        "SELECT COUNT(*) AS n FROM payments",
        vec![],
    )
    .await
}

/// A provider that holds every charge until the test opens the gate, and says when a charge
/// arrived: the test decides exactly what happens while the provider is deciding.
#[derive(Debug)]
pub struct Gated {
    pub inner: Arc<FakeProvider>,
    pub arrived: Notify,
    pub open: Notify,
}

impl Gated {
    pub fn new(inner: Arc<FakeProvider>) -> Self {
        Self {
            inner,
            arrived: Notify::new(),
            open: Notify::new(),
        }
    }
}

#[async_trait]
impl PaymentProvider for Gated {
    async fn charge(
        &self,
        key: &str,
        amount: Money,
        token: &str,
    ) -> Result<ProviderOutcome, ProviderError> {
        self.arrived.notify_one();
        self.open.notified().await;
        self.inner.charge(key, amount, token).await
    }

    async fn lookup(&self, key: &str) -> Result<LookupOutcome, ProviderError> {
        self.inner.lookup(key).await
    }

    async fn refund(
        &self,
        reference: &str,
        amount: Money,
        key: &str,
    ) -> Result<String, ProviderError> {
        self.inner.refund(reference, amount, key).await
    }
}

/// How a charge goes wrong between payments and the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The charge never reaches the provider; an error comes back.
    FailBeforeReceiving,
    /// The provider decides; the answer is lost on the way back and an error comes back.
    LoseAnswer,
    /// The charge never reaches the provider, and nothing comes back.
    HangBeforeReceiving,
    /// The provider decides, and nothing comes back.
    HangAfterDeciding,
}

/// The fake provider behind a line that fails as the test says: the first charge of a key
/// meets that key's [`Fault`] (later charges of the key go through), lookups and refunds
/// fail while they are switched off. It reports when a charge reached its fault point, so a
/// test can "crash" the caller exactly there, and counts lookups.
#[derive(Debug)]
pub struct Faulty {
    pub inner: Arc<FakeProvider>,
    faults: Mutex<HashMap<String, Fault>>,
    pub lookups_down: AtomicBool,
    pub refunds_down: AtomicBool,
    pub lookups: AtomicUsize,
    reached: mpsc::UnboundedSender<String>,
    reached_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<String>>,
}

impl Faulty {
    pub fn new(inner: Arc<FakeProvider>) -> Self {
        let (reached, reached_rx) = mpsc::unbounded_channel();
        Self {
            inner,
            faults: Mutex::new(HashMap::new()),
            lookups_down: AtomicBool::new(false),
            refunds_down: AtomicBool::new(false),
            lookups: AtomicUsize::new(0),
            reached,
            reached_rx: tokio::sync::Mutex::new(reached_rx),
        }
    }

    /// The next charge of `key` meets `fault`.
    pub fn fail(&self, key: &str, fault: Fault) {
        self.faults
            .lock()
            .expect("faults")
            .insert(key.to_owned(), fault);
    }

    /// Waits until a charge of `key` reached its fault point.
    pub async fn reached(&self, key: &str) {
        let mut reached = self.reached_rx.lock().await;
        while let Some(arrived) = reached.recv().await {
            if arrived == key {
                return;
            }
        }
    }

    pub fn set_lookups_down(&self, down: bool) {
        self.lookups_down.store(down, Ordering::SeqCst);
    }

    pub fn set_refunds_down(&self, down: bool) {
        self.refunds_down.store(down, Ordering::SeqCst);
    }

    fn unavailable() -> ProviderError {
        ProviderError::Unavailable {
            reason: "injected".into(),
        }
    }
}

#[async_trait]
impl PaymentProvider for Faulty {
    async fn charge(
        &self,
        key: &str,
        amount: Money,
        token: &str,
    ) -> Result<ProviderOutcome, ProviderError> {
        let fault = self.faults.lock().expect("faults").remove(key);
        let Some(fault) = fault else {
            return self.inner.charge(key, amount, token).await;
        };
        if matches!(fault, Fault::LoseAnswer | Fault::HangAfterDeciding) {
            self.inner.charge(key, amount, token).await?;
        }
        let _ = self.reached.send(key.to_owned());
        match fault {
            Fault::FailBeforeReceiving | Fault::LoseAnswer => Err(Self::unavailable()),
            Fault::HangBeforeReceiving | Fault::HangAfterDeciding => std::future::pending().await,
        }
    }

    async fn lookup(&self, key: &str) -> Result<LookupOutcome, ProviderError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        if self.lookups_down.load(Ordering::SeqCst) {
            return Err(Self::unavailable());
        }
        self.inner.lookup(key).await
    }

    async fn refund(
        &self,
        reference: &str,
        amount: Money,
        key: &str,
    ) -> Result<String, ProviderError> {
        if self.refunds_down.load(Ordering::SeqCst) {
            return Err(Self::unavailable());
        }
        self.inner.refund(reference, amount, key).await
    }
}

/// Payments in front of a [`Faulty`] provider, with `provider_timeout` as its deadline.
pub struct FaultyHarness {
    pub payments: Harness,
    pub module: PaymentsModule,
    pub faulty: Arc<Faulty>,
}

impl std::fmt::Debug for FaultyHarness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyHarness")
            .field("faulty", &self.faulty)
            .finish_non_exhaustive()
    }
}

pub async fn faulty_harness(store: &TestStore, provider_timeout: Duration) -> FaultyHarness {
    let db = connect(store).await;
    faulty_harness_on(db, clock(), provider_timeout)
}

/// Another process's payments on the same store and clock, in front of its own provider.
pub fn faulty_harness_on(
    db: DatabaseConnection,
    clock: Arc<ManualClock>,
    provider_timeout: Duration,
) -> FaultyHarness {
    let provider = Arc::new(FakeProvider::new(NEVER));
    let faulty = Arc::new(Faulty::new(provider.clone()));
    let module = PaymentsModule::with_provider(
        db.clone(),
        clock.clone(),
        faulty.clone(),
        PaymentsConfig {
            provider_timeout,
            ..config()
        },
    );
    FaultyHarness {
        payments: Harness {
            api: module.api(),
            service: module.service(),
            provider,
            db,
            clock,
        },
        module,
        faulty,
    }
}

/// Runs both sweeps until neither finds anything due, first moving the clock past every
/// deadline and backoff, so everything the provider can settle is settled. Gives up (with a
/// panic) after `rounds` rounds that still found work.
pub async fn sweep_until_idle(service: &PaymentsService, clock: &ManualClock, rounds: usize) {
    for _ in 0..rounds {
        clock.advance(chrono::Duration::hours(1));
        let asked = service.reconcile_due().await.expect("reconcile");
        let sent = service.confirm_refunds_due().await.expect("refunds");
        if asked == 0 && sent == 0 {
            return;
        }
    }
    panic!("the sweeps still found work after {rounds} rounds");
}
