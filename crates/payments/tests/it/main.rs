//! payments' behaviour through `PaymentsApi`, on SQLite and on Postgres.

mod cancel;
mod charges;
mod refunds;
mod routes;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kernel::{Currency, IdempotencyKey, Money, OrderId, SystemClock, UserId};
use payments::{
    FakeProvider, PaymentProvider, PaymentsModule, PaymentsService, ProviderError, ProviderOutcome,
};
use payments_api::{ChargeRequest, Payment, PaymentToken, PaymentsApi};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use testkit::TestStore;
use tokio::sync::Notify;

/// Long enough that no test ever waits for it: a `tok_slow` charge under this delay is
/// only ever abandoned.
pub const NEVER: Duration = Duration::from_secs(600);
/// Short enough to wait for.
pub const QUICK: Duration = Duration::from_millis(20);

/// Payments on a test store, with a handle on its fake provider and its connection.
pub struct Harness {
    /// The port, as orders calls it.
    pub api: Arc<dyn PaymentsApi>,
    /// The service, for payments' own operations (partial refunds).
    pub service: Arc<PaymentsService>,
    pub provider: Arc<FakeProvider>,
    pub db: DatabaseConnection,
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

/// Payments whose fake provider approves `tok_slow` after `slow_delay`.
pub async fn harness_with(store: &TestStore, slow_delay: Duration) -> Harness {
    let db = connect(store).await;
    let provider = Arc::new(FakeProvider::new(slow_delay));
    let module = PaymentsModule::with_provider(db.clone(), Arc::new(SystemClock), provider.clone());
    Harness {
        api: module.api(),
        service: module.service(),
        provider,
        db,
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
    let api =
        PaymentsModule::with_provider(payments.db.clone(), Arc::new(SystemClock), gated.clone())
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
    async fn charge(&self, key: &str, amount: Money, token: &str) -> ProviderOutcome {
        self.arrived.notify_one();
        self.open.notified().await;
        self.inner.charge(key, amount, token).await
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
