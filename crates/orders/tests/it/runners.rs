//! One runner per order, decisions before compensations, a sweep that cannot be jammed, a
//! bound on each customer's checkouts in flight, and order details that say what they miss.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use kernel::{IdempotencyKey, ManualClock, OrderId, PageRequest, ProductId, UserId};
use orders::{CheckoutHook, Moment, NoFaults, OrdersConfig, OrdersModule, RetryPolicy, Step};
use orders_api::{
    DetailSource, LineRequest, OrderFailure, OrderStatus, OrdersApi, OrdersError, PlaceOrder,
    ShippingAddress, Viewer,
};
use testkit::TestStore;

use crate::doubles::{Catalog, Gate, Payments};

/// Stops the saga at one (step, moment), as if the process died there.
#[derive(Debug)]
struct CrashAt(Step, Moment);

impl CheckoutHook for CrashAt {
    fn proceed(&self, _: OrderId, step: Step, moment: Moment) -> bool {
        (step, moment) != (self.0, self.1)
    }
}

struct Rig {
    module: OrdersModule,
    catalog: Arc<Catalog>,
    payments: Arc<Payments>,
    clock: Arc<ManualClock>,
    db: sea_orm::DatabaseConnection,
    store: TestStore,
}

fn config() -> OrdersConfig {
    OrdersConfig {
        charge_timeout: Duration::from_millis(200),
        lease: Duration::from_secs(30),
        recovery_batch: 50,
        recovery_concurrency: 4,
        retry: RetryPolicy {
            base: Duration::from_secs(1),
            max: Duration::from_secs(8),
            max_attempts: 4,
        },
        detail_timeout: Duration::from_millis(200),
        ..OrdersConfig::default()
    }
}

async fn rig_with(store: TestStore, payments: Payments, hook: Arc<dyn CheckoutHook>) -> Rig {
    rig_configured(store, payments, hook, config()).await
}

async fn rig_configured(
    store: TestStore,
    payments: Payments,
    hook: Arc<dyn CheckoutHook>,
    config: OrdersConfig,
) -> Rig {
    let db = store.connect(orders::CONTEXT).await;
    orders::migrate(&db).await.expect("migrate");
    let catalog = Arc::new(Catalog::default());
    let payments = Arc::new(payments);
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let module = OrdersModule::with_hook(
        db.clone(),
        clock.clone(),
        catalog.clone(),
        payments.clone(),
        config,
        hook,
    );
    Rig {
        module,
        catalog,
        payments,
        clock,
        db,
        store,
    }
}

async fn rig(store: TestStore) -> Rig {
    rig_with(store, Payments::default(), Arc::new(NoFaults)).await
}

impl Rig {
    /// The same store and doubles as a new process would see them, after `later`.
    fn restarted(&self, later: Duration, hook: Arc<dyn CheckoutHook>) -> OrdersModule {
        self.clock
            .advance(chrono::Duration::from_std(later).expect("short"));
        OrdersModule::with_hook(
            self.db.clone(),
            self.clock.clone(),
            self.catalog.clone(),
            self.payments.clone(),
            config(),
            hook,
        )
    }

    fn api(&self) -> Arc<dyn OrdersApi> {
        self.module.api()
    }

    async fn status(&self, id: OrderId) -> OrderStatus {
        self.api()
            .get_order(admin(), id)
            .await
            .expect("order")
            .order
            .status
    }
}

fn admin() -> Viewer {
    Viewer {
        user_id: UserId::new(),
        admin: true,
    }
}

fn order(customer: UserId, key: &str, product_id: ProductId, token: &str) -> PlaceOrder {
    PlaceOrder {
        customer_id: customer,
        idempotency_key: IdempotencyKey::parse(key).expect("a valid key"),
        lines: vec![LineRequest {
            product_id,
            quantity: 1,
        }],
        shipping_address: ShippingAddress {
            name: "Ada".into(),
            line1: "1 Main St".into(),
            line2: None,
            city: "London".into(),
            postal_code: "N1".into(),
            country: "GB".into(),
        },
        payment_token: token.into(),
    }
}

/// The reproduction of the review: a request still checking out is replayed with its key.
/// The replay must not start a second runner (nor may the sweep): it answers 409 with
/// `Retry-After`, and the first request confirms the order with one charge.
async fn a_replay_of_a_request_in_flight_is_409_and_never_a_second_runner(store: TestStore) {
    let rig = rig_with(
        store,
        Payments {
            gate: Some(Gate::default()),
            ..Payments::default()
        },
        Arc::new(NoFaults),
    )
    .await;
    let tea = rig.catalog.add("tea", 450, 5);
    let customer = UserId::new();
    let first = tokio::spawn({
        let api = rig.api();
        async move {
            api.place_order(order(customer, "k-1", tea, "tok_visa"))
                .await
        }
    });
    let gate = rig.payments.gate.as_ref().expect("gated");
    gate.arrived.notified().await;

    let replay = rig
        .api()
        .place_order(order(customer, "k-1", tea, "tok_visa"))
        .await;
    let Err(OrdersError::RequestInProgress {
        retry_after_secs, ..
    }) = replay
    else {
        panic!("expected request_in_progress, got {replay:?}");
    };
    assert!((1..=30).contains(&retry_after_secs), "{retry_after_secs}");
    assert_eq!(
        rig.module.sweep_once().await.expect("sweep"),
        0,
        "held by a live runner"
    );
    assert_eq!(rig.module.recover().await.expect("recover"), 0);

    gate.open.notify_one();
    let placed = first.await.expect("task").expect("place");
    assert_eq!(placed.order.status, OrderStatus::Confirmed);
    assert_eq!(rig.payments.charge_calls.load(Ordering::SeqCst), 1);
    assert_eq!(rig.payments.cancel_calls.load(Ordering::SeqCst), 0);
    // Once it is done, a replay answers the order.
    let again = rig
        .api()
        .place_order(order(customer, "k-1", tea, "tok_visa"))
        .await
        .expect("replay");
    assert!(again.replayed);
    assert_eq!(again.order.status, OrderStatus::Confirmed);
}

/// A runner that dies keeps its lease: a process starting right away leaves the order
/// alone, and takes it over once the lease has expired.
async fn a_dead_runners_order_is_taken_over_only_after_its_lease(store: TestStore) {
    let rig = rig_with(
        store,
        Payments::default(),
        Arc::new(CrashAt(Step::Charge, Moment::Before)),
    )
    .await;
    let tea = rig.catalog.add("tea", 450, 5);
    let placed = rig
        .api()
        .place_order(order(UserId::new(), "k", tea, "tok_visa"))
        .await
        .expect("place");
    assert_eq!(placed.order.status, OrderStatus::StockReserved);

    let right_away = rig.restarted(Duration::from_secs(1), Arc::new(NoFaults));
    assert_eq!(right_away.recover().await.expect("recover"), 0);
    assert_eq!(
        rig.status(placed.order.id).await,
        OrderStatus::StockReserved
    );

    let later = rig.restarted(Duration::from_secs(31), Arc::new(NoFaults));
    assert_eq!(later.recover().await.expect("recover"), 1);
    assert_eq!(rig.status(placed.order.id).await, OrderStatus::Confirmed);
    assert_eq!(rig.payments.charges.load(Ordering::SeqCst), 1);
}

/// The background sweep of another process, which never polls, takes a dead runner's order
/// over once its lease ends: its pass at start learns when (or, started late, finds it
/// due), and it wakes then (a one-second lease, so the test waits that long; nothing else
/// wakes it).
async fn the_sweep_takes_over_a_dead_runners_order_when_its_lease_ends(store: TestStore) {
    let short = OrdersConfig {
        lease: Duration::from_secs(1),
        ..config()
    };
    let rig = rig_configured(
        store,
        Payments::default(),
        Arc::new(CrashAt(Step::Charge, Moment::Before)),
        short.clone(),
    )
    .await;
    let tea = rig.catalog.add("tea", 450, 5);
    let placed = rig
        .api()
        .place_order(order(UserId::new(), "k", tea, "tok_visa"))
        .await
        .expect("place");
    assert_eq!(placed.order.status, OrderStatus::StockReserved);

    let elsewhere = OrdersModule::with_hook(
        rig.db.clone(),
        rig.clock.clone(),
        rig.catalog.clone(),
        rig.payments.clone(),
        short,
        Arc::new(NoFaults),
    );
    let shutdown = tokio_util::sync::CancellationToken::new();
    let sweep = elsewhere.spawn_recovery(shutdown.clone());
    // The lease ends (on the shop's clock) before the sweep's due time comes.
    rig.clock.advance(chrono::Duration::seconds(2));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while rig.status(placed.order.id).await != OrderStatus::Confirmed {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sweep never took it over"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(rig.payments.charges.load(Ordering::SeqCst), 1);
    shutdown.cancel();
    sweep.await.expect("the sweep stops");
}

/// Giving up is decided before anything is undone: a charge that does not answer in time
/// records `payment_timed_out` on the order first; a runner that takes over after a crash
/// in the middle of the compensation carries the decision out and never charges again.
async fn a_checkout_is_given_up_before_it_is_undone(store: TestStore) {
    let rig = rig_with(
        store,
        Payments::default(),
        Arc::new(CrashAt(Step::CancelPayment, Moment::Before)),
    )
    .await;
    rig.payments.hang_charges.store(true, Ordering::SeqCst);
    let tea = rig.catalog.add("tea", 450, 5);
    let placed = rig
        .api()
        .place_order(order(UserId::new(), "k", tea, "tok_visa"))
        .await
        .expect("place");
    assert_eq!(placed.order.status, OrderStatus::StockReserved);
    assert_eq!(
        placed.order.failure_reason,
        Some(OrderFailure::PaymentTimedOut),
        "decided before compensating"
    );
    assert_eq!(rig.payments.cancel_calls.load(Ordering::SeqCst), 0);

    rig.payments.hang_charges.store(false, Ordering::SeqCst);
    let later = rig.restarted(Duration::from_secs(31), Arc::new(NoFaults));
    later.recover().await.expect("recover");
    let detail = rig
        .api()
        .get_order(admin(), placed.order.id)
        .await
        .expect("order");
    assert_eq!(detail.order.status, OrderStatus::PaymentFailed);
    assert_eq!(
        detail.order.failure_reason,
        Some(OrderFailure::PaymentTimedOut)
    );
    assert_eq!(
        rig.payments.charge_calls.load(Ordering::SeqCst),
        1,
        "never charged again"
    );
    assert_eq!(rig.payments.cancel_calls.load(Ordering::SeqCst), 1);
    assert_eq!(rig.catalog.available(tea), 5, "stock back");
}

/// Sixty checkouts that cannot finish (their catalog is down) and a newer one that can: the
/// sweep reaches the newer one within two rounds, however many the old ones are, and parks
/// the old ones after their attempts; an administrator lists and replays them.
async fn orders_that_cannot_finish_never_hide_the_others(store: TestStore) {
    let rig = rig(store).await;
    let broken = rig.catalog.add("broken", 100, 1_000);
    let fine = rig.catalog.add("fine", 100, 10);
    rig.catalog.unavailable.lock().expect("lock").insert(broken);
    let customers: Vec<UserId> = (0..60).map(|_| UserId::new()).collect();
    for customer in &customers {
        let placed = rig
            .api()
            .place_order(order(*customer, "stuck", broken, "tok_visa"))
            .await
            .expect("place");
        assert_eq!(placed.order.status, OrderStatus::Pending);
    }
    rig.catalog.unavailable.lock().expect("lock").insert(fine);
    let newer = rig
        .api()
        .place_order(order(UserId::new(), "newer", fine, "tok_visa"))
        .await
        .expect("place");
    assert_eq!(newer.order.status, OrderStatus::Pending);
    rig.catalog.unavailable.lock().expect("lock").remove(&fine);

    rig.clock.advance(chrono::Duration::seconds(1));
    let mut rounds = 0;
    while rig.status(newer.order.id).await != OrderStatus::Confirmed {
        rounds += 1;
        assert!(rounds <= 2, "the newer order waited {rounds} rounds");
        rig.module.sweep_once().await.expect("sweep");
    }

    // The old ones back off, then park after max_attempts (4).
    for _ in 0..20 {
        rig.clock.advance(chrono::Duration::seconds(10));
        rig.module.sweep_once().await.expect("sweep");
    }
    let parked = rig
        .module
        .service()
        .parked_orders(PageRequest::new(Some(1), Some(100)).expect("page"))
        .await
        .expect("parked");
    assert_eq!(parked.total, 60);
    assert!(parked.items.iter().all(|p| {
        p.attempts == 4
            && p.last_error
                .as_deref()
                .is_some_and(|e| e.contains("catalog"))
    }));
    assert_eq!(
        rig.module.sweep_once().await.expect("sweep"),
        0,
        "parked orders wait"
    );

    rig.catalog
        .unavailable
        .lock()
        .expect("lock")
        .remove(&broken);
    let replayed = rig
        .module
        .service()
        .retry_parked(parked.items[0].order.id)
        .await
        .expect("retry");
    assert_eq!(replayed.status, OrderStatus::Confirmed);
    assert_eq!(
        rig.module.service().retry_parked(replayed.id).await,
        Err(OrdersError::OrderNotParked {
            order_id: replayed.id
        })
    );
}

/// No one can hold all the stock: a customer's fourth checkout in flight is refused, with
/// `Retry-After`; once theirs finish, they may order again.
async fn a_customer_has_a_bounded_number_of_checkouts_in_flight(store: TestStore) {
    let rig = rig_with(
        store,
        Payments {
            gate: Some(Gate::default()),
            ..Payments::default()
        },
        Arc::new(NoFaults),
    )
    .await;
    let tea = rig.catalog.add("tea", 450, 50);
    let customer = UserId::new();
    let gate = rig.payments.gate.as_ref().expect("gated");
    let mut running = Vec::new();
    for i in 0..3 {
        running.push(tokio::spawn({
            let api = rig.api();
            async move {
                api.place_order(order(customer, &format!("k-{i}"), tea, "tok_visa"))
                    .await
            }
        }));
        gate.arrived.notified().await;
    }
    let refused = rig
        .api()
        .place_order(order(customer, "k-3", tea, "tok_visa"))
        .await;
    assert!(
        matches!(
            refused,
            Err(OrdersError::TooManyOrdersInFlight {
                limit: 3,
                retry_after_secs
            }) if retry_after_secs >= 1
        ),
        "{refused:?}"
    );
    // Someone else is not held up.
    let other = tokio::spawn({
        let api = rig.api();
        async move {
            api.place_order(order(UserId::new(), "k", tea, "tok_visa"))
                .await
        }
    });
    gate.arrived.notified().await;
    for _ in 0..4 {
        gate.open.notify_one();
    }
    for task in running {
        let placed = task.await.expect("task").expect("place");
        assert_eq!(placed.order.status, OrderStatus::Confirmed);
    }
    assert_eq!(
        other.await.expect("task").expect("place").order.status,
        OrderStatus::Confirmed
    );
    let fourth = tokio::spawn({
        let api = rig.api();
        async move {
            api.place_order(order(customer, "k-3", tea, "tok_visa"))
                .await
        }
    });
    gate.arrived.notified().await;
    gate.open.notify_one();
    assert_eq!(
        fourth.await.expect("task").expect("place").order.status,
        OrderStatus::Confirmed
    );
}

/// An order's detail says which parts it could not get: a confirmed order whose payment
/// cannot be asked for is never shown as unpaid, and a catalog that does not answer in time
/// does not hold the answer up.
async fn a_partial_detail_says_what_is_missing(store: TestStore) {
    let rig = rig(store).await;
    let tea = rig.catalog.add("tea", 450, 5);
    let placed = rig
        .api()
        .place_order(order(UserId::new(), "k", tea, "tok_visa"))
        .await
        .expect("place");
    let complete = rig
        .api()
        .get_order(admin(), placed.order.id)
        .await
        .expect("detail");
    assert!(complete.unavailable.is_empty());
    assert!(complete.payment.is_some());

    rig.payments.fail_lookups.store(true, Ordering::SeqCst);
    rig.catalog.hang_lookups.store(true, Ordering::SeqCst);
    let partial = rig
        .api()
        .get_order(admin(), placed.order.id)
        .await
        .expect("detail");
    assert_eq!(partial.order.status, OrderStatus::Confirmed);
    assert_eq!(partial.payment, None);
    assert_eq!(
        partial.unavailable,
        [DetailSource::Payments, DetailSource::Catalog]
    );
    assert!(partial.products.is_empty());
    drop(rig.store);
}

testkit::backend_tests!(
    a_replay_of_a_request_in_flight_is_409_and_never_a_second_runner,
    a_dead_runners_order_is_taken_over_only_after_its_lease,
    the_sweep_takes_over_a_dead_runners_order_when_its_lease_ends,
    a_checkout_is_given_up_before_it_is_undone,
    orders_that_cannot_finish_never_hide_the_others,
    a_customer_has_a_bounded_number_of_checkouts_in_flight,
    a_partial_detail_says_what_is_missing,
);
