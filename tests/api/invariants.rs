//! The checkout's promise about money and stock, checked over a thousand orders with faults
//! everywhere: answers the provider gave but nobody heard, charges that never reached it,
//! lookups and refunds it did not answer, and processes that die at every step of the saga.
//! After a restart and the recovery and reconciliation sweeps:
//!
//! - money captured and not refunded (in payments' books *and* at the provider) ⇔ the order
//!   is confirmed, and then it is exactly the order's total;
//! - stock reserved ⇔ an order in flight, so none is reserved, and each product has sold
//!   exactly what its confirmed orders bought;
//! - no order is left unfinished, no payment's outcome unknown.
//!
//! Faults come from a seeded generator, so a failure replays: `SHOP_INVARIANT_SEED=<n>`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use catalog_api::NewProduct;
use chrono::Utc;
use futures::future::join_all;
use kernel::{
    Currency, IdempotencyKey, ManualClock, Money, OrderId, PageRequest, ProductId, UserId,
};
use orders::{CheckoutHook, Moment, Step};
use orders_api::{LineRequest, Order, OrderStatus, PlaceOrder, ShippingAddress, Viewer};
use payments::{FakeProvider, LookupOutcome, PaymentProvider, ProviderError, ProviderOutcome};
use payments_api::{PaymentStatus, PaymentsError};
use shop::{Contexts, Options};
use testkit::TestStore;

use crate::helpers::test_settings;

const ORDERS: usize = 1_000;
const AT_ONCE: usize = 25;
const PRODUCTS: usize = 8;
const STOCK: u32 = 90;

/// A small deterministic generator (xorshift64*): the same seed, the same faults.
#[derive(Debug)]
struct Dice(Mutex<u64>);

impl Dice {
    fn new(seed: u64) -> Self {
        Self(Mutex::new(seed.max(1)))
    }

    /// A number in `0..n`.
    fn roll(&self, n: u64) -> u64 {
        let mut state = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }

    /// True with probability `percent` %.
    fn chance(&self, percent: u64) -> bool {
        self.roll(100) < percent
    }
}

/// What the chaos did, so the test can show it was not vacuous.
#[derive(Debug, Default)]
struct Injected {
    lost_answers: AtomicUsize,
    not_received: AtomicUsize,
    failed_lookups: AtomicUsize,
    failed_refunds: AtomicUsize,
    crashes: AtomicUsize,
}

/// The fake provider (the external system: it outlives every restart of the shop) behind a
/// faulty network while `faulty` is on.
#[derive(Debug)]
struct ChaosProvider {
    inner: FakeProvider,
    dice: Arc<Dice>,
    faulty: AtomicBool,
    injected: Arc<Injected>,
}

impl ChaosProvider {
    fn fault(&self, percent: u64) -> bool {
        self.faulty.load(Ordering::SeqCst) && self.dice.chance(percent)
    }
}

fn down(why: &str) -> ProviderError {
    ProviderError::Unavailable {
        reason: why.to_owned(),
    }
}

#[async_trait]
impl PaymentProvider for ChaosProvider {
    async fn charge(
        &self,
        key: &str,
        amount: Money,
        token: &str,
    ) -> Result<ProviderOutcome, ProviderError> {
        if self.fault(8) {
            // Decided at the provider; the answer never comes back.
            self.inner.charge(key, amount, token).await?;
            self.injected.lost_answers.fetch_add(1, Ordering::SeqCst);
            return Err(down("the answer was lost"));
        }
        if self.fault(5) {
            self.injected.not_received.fetch_add(1, Ordering::SeqCst);
            return Err(down("the charge never arrived"));
        }
        self.inner.charge(key, amount, token).await
    }

    async fn lookup(&self, key: &str) -> Result<LookupOutcome, ProviderError> {
        if self.fault(30) {
            self.injected.failed_lookups.fetch_add(1, Ordering::SeqCst);
            return Err(down("the lookup was not answered"));
        }
        self.inner.lookup(key).await
    }

    async fn refund(
        &self,
        reference: &str,
        amount: Money,
        key: &str,
    ) -> Result<String, ProviderError> {
        if self.fault(30) {
            self.injected.failed_refunds.fetch_add(1, Ordering::SeqCst);
            return Err(down("the refund was not answered"));
        }
        self.inner.refund(reference, amount, key).await
    }
}

/// Kills the checkout at a random step now and then, as a process dying there would: the
/// run stops and keeps its hold on the order until the hold expires.
#[derive(Debug)]
struct Crashes {
    dice: Arc<Dice>,
    injected: Arc<Injected>,
}

impl CheckoutHook for Crashes {
    fn proceed(&self, _: OrderId, _: Step, _: Moment) -> bool {
        if self.dice.chance(3) {
            self.injected.crashes.fetch_add(1, Ordering::SeqCst);
            return false;
        }
        true
    }
}

fn eur(cents: i64) -> Money {
    Money::new(cents, Currency::EUR).expect("valid money")
}

fn seed() -> u64 {
    std::env::var("SHOP_INVARIANT_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(0x005E_ED0F_C4EC)
}

async fn money_and_stock_follow_the_orders_whatever_fails(store: TestStore) {
    let seed = seed();
    let dice = Arc::new(Dice::new(seed));
    let injected = Arc::new(Injected::default());
    let provider = Arc::new(ChaosProvider {
        inner: FakeProvider::new(Duration::from_secs(600)),
        dice: dice.clone(),
        faulty: AtomicBool::new(true),
        injected: injected.clone(),
    });
    let mut settings = test_settings(&store);
    settings.orders.max_in_flight_per_customer = 1_000;
    let started = Utc::now();

    // The shop that crashes and loses answers.
    let crashing = Contexts::open_with(
        &settings,
        Options {
            clock: Arc::new(ManualClock::new(started)),
            checkout_hook: Arc::new(Crashes {
                dice: dice.clone(),
                injected: injected.clone(),
            }),
            payment_provider: Some(provider.clone()),
        },
    )
    .await
    .expect("open contexts");
    let mut products: Vec<(ProductId, i64)> = Vec::new();
    for i in 0..PRODUCTS {
        let cents = 500 + 125 * i64::try_from(i).expect("small");
        let product = crashing
            .catalog_module()
            .service()
            .create_product(NewProduct {
                sku: format!("INV-{i}"),
                name: format!("Product {i}"),
                description: String::new(),
                price: eur(cents),
                category: "things".into(),
                initial_stock: STOCK,
                active: true,
            })
            .await
            .expect("create product");
        products.push((product.id, cents));
    }
    let tokens = [
        "tok_visa",
        "tok_visa",
        "tok_visa",
        "tok_visa",
        "tok_visa",
        "tok_visa",
        "tok_visa",
        "tok_declined",
        "tok_insufficient_funds",
        "tok_provider_error",
        "tok_unknown",
    ];
    let placed_ids = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(AtomicU64::new(0));
    for wave in 0..ORDERS.div_ceil(AT_ONCE) {
        let attempts = (0..AT_ONCE).map(|i| {
            let n = wave * AT_ONCE + i;
            let (product_id, _) =
                products[usize::try_from(dice.roll(PRODUCTS as u64)).expect("small")];
            let token = tokens[usize::try_from(dice.roll(tokens.len() as u64)).expect("small")];
            let quantity = u32::try_from(dice.roll(3) + 1).expect("small");
            let orders = crashing.orders_api();
            let placed_ids = placed_ids.clone();
            let errors = errors.clone();
            async move {
                let request = PlaceOrder {
                    customer_id: UserId::new(),
                    idempotency_key: IdempotencyKey::parse(&format!("inv-{n}")).expect("key"),
                    lines: vec![LineRequest {
                        product_id,
                        quantity,
                    }],
                    shipping_address: ShippingAddress {
                        name: "Chaos".into(),
                        line1: "1 Fault Lane".into(),
                        line2: None,
                        city: "Entropy".into(),
                        postal_code: "E1".into(),
                        country: "GB".into(),
                    },
                    payment_token: token.into(),
                };
                match orders.place_order(request).await {
                    Ok(placed) => placed_ids.lock().expect("lock").push(placed.order.id),
                    Err(error) => {
                        errors.fetch_add(1, Ordering::SeqCst);
                        panic!("placing an order failed: {error}");
                    }
                }
            }
        });
        join_all(attempts).await;
    }
    assert_eq!(errors.load(Ordering::SeqCst), 0);
    let placed: Vec<OrderId> = placed_ids.lock().expect("lock").clone();
    assert_eq!(placed.len(), ORDERS);
    drop(crashing);

    // A new process, after every hold of the dead one expired, with a healthy network, runs
    // its sweeps until nothing is left to do. Time moves on between rounds, past backoffs.
    provider.faulty.store(false, Ordering::SeqCst);
    let clock = Arc::new(ManualClock::new(
        started
            + chrono::Duration::seconds(
                i64::try_from(settings.orders.lease_secs).expect("small") + 1,
            ),
    ));
    let restarted = Contexts::open_with(
        &settings,
        Options {
            clock: clock.clone(),
            payment_provider: Some(provider.clone()),
            ..Options::default()
        },
    )
    .await
    .expect("open contexts");
    for round in 0.. {
        let ran = restarted.orders_module().recover().await.expect("recover");
        let looked_up = restarted
            .payments_module()
            .reconcile_due()
            .await
            .expect("reconcile");
        let refunded = restarted
            .payments_module()
            .confirm_refunds_due()
            .await
            .expect("confirm refunds");
        if ran + looked_up + refunded == 0 {
            break;
        }
        assert!(round < 50, "the sweeps never settle (seed {seed})");
        clock.advance(chrono::Duration::minutes(10));
    }

    // Every order finished, and money and stock agree with it.
    let admin = Viewer {
        user_id: UserId::new(),
        admin: true,
    };
    let mut orders: Vec<Order> = Vec::new();
    for page in 1.. {
        let listed = restarted
            .orders_api()
            .list_orders(
                admin,
                PageRequest::new(Some(page), Some(100)).expect("page"),
            )
            .await
            .expect("list");
        let done = listed.items.len() < 100;
        orders.extend(listed.items);
        if done {
            break;
        }
    }
    assert_eq!(orders.len(), ORDERS, "seed {seed}");
    let mut sold: HashMap<ProductId, u32> = HashMap::new();
    let mut by_status: HashMap<OrderStatus, usize> = HashMap::new();
    for order in &orders {
        *by_status.entry(order.status).or_default() += 1;
        let case = format!("order {} ({:?}, seed {seed})", order.id, order.status);
        assert!(
            matches!(
                order.status,
                OrderStatus::Confirmed | OrderStatus::Rejected | OrderStatus::PaymentFailed
            ),
            "{case}: unfinished"
        );
        let books = match restarted.payments_api().get_payment(order.id).await {
            Ok(payment) => {
                assert_ne!(
                    payment.status,
                    PaymentStatus::Pending,
                    "{case}: outcome unknown"
                );
                payment.captured.amount_minor() - payment.refunded.amount_minor()
            }
            Err(PaymentsError::PaymentNotFound { .. }) => 0,
            Err(error) => panic!("{case}: {error}"),
        };
        let at_provider = provider.inner.held(&format!("order:{}", order.id));
        if order.status == OrderStatus::Confirmed {
            assert_eq!(books, order.total.amount_minor(), "{case}: books");
            assert_eq!(at_provider, order.total.amount_minor(), "{case}: provider");
            for line in &order.lines {
                *sold.entry(line.product_id).or_default() += line.quantity;
            }
        } else {
            assert_eq!(
                books, 0,
                "{case}: money kept without a confirmed order (books)"
            );
            assert_eq!(
                at_provider, 0,
                "{case}: money kept without a confirmed order (provider)"
            );
        }
    }
    let levels = restarted
        .catalog_api()
        .get_products(products.iter().map(|(id, _)| *id).collect())
        .await
        .expect("products");
    for product in levels {
        let sold = sold.get(&product.id).copied().unwrap_or(0);
        assert_eq!(
            product.stock.reserved, 0,
            "{}: reserved after recovery (seed {seed})",
            product.sku
        );
        assert_eq!(
            product.stock.available,
            STOCK - sold,
            "{}: sold {sold} (seed {seed})",
            product.sku
        );
    }

    // The run was not a quiet one.
    let count = |n: &AtomicUsize| n.load(Ordering::SeqCst);
    assert!(count(&injected.lost_answers) >= 20, "{injected:?}");
    assert!(count(&injected.not_received) >= 10, "{injected:?}");
    assert!(count(&injected.crashes) >= 20, "{injected:?}");
    for status in [
        OrderStatus::Confirmed,
        OrderStatus::Rejected,
        OrderStatus::PaymentFailed,
    ] {
        assert!(
            by_status.get(&status).copied().unwrap_or(0) > 0,
            "{by_status:?}"
        );
    }
}

testkit::backend_tests!(money_and_stock_follow_the_orders_whatever_fails);
