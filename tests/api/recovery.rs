//! Checkout interrupted at every step, then restarted: every order ends terminal, with stock
//! and money consistent. The interruption is a fault hook that stops the saga exactly where
//! a crash would (the dead runner keeps its hold on the order); the restart is a second set
//! of contexts opened on the same stores once that hold has expired, running the recovery a
//! new process runs at start.

use std::sync::Arc;

use catalog_api::{NewProduct, StockLevel};
use kernel::{Clock, Currency, Money, ProductId, UserId};
use orders::{CheckoutHook, Moment, Step};
use orders_api::{LineRequest, OrderStatus, PlaceOrder, ShippingAddress, Viewer};
use payments_api::PaymentStatus;
use shop::{Contexts, Options};
use testkit::TestStore;

use crate::helpers::test_settings;

/// Stops every checkout at one point.
#[derive(Debug)]
struct CrashAt(Step, Moment);

impl CheckoutHook for CrashAt {
    fn proceed(&self, _: kernel::OrderId, step: Step, moment: Moment) -> bool {
        (step, moment) != (self.0, self.1)
    }
}

/// The wall clock, `ahead` later: a process that starts after the crashed one's leases on
/// its orders have expired.
#[derive(Debug)]
struct Later(chrono::Duration);

impl Clock for Later {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now() + self.0
    }
}

async fn open(store: &TestStore, hook: Option<(Step, Moment)>) -> Contexts {
    let mut options = Options::default();
    if let Some((step, moment)) = hook {
        options.checkout_hook = Arc::new(CrashAt(step, moment));
    }
    Contexts::open_with(&test_settings(store), options)
        .await
        .expect("open contexts")
}

/// A process started after every lease of the previous one expired.
async fn restart(store: &TestStore) -> Contexts {
    let settings = test_settings(store);
    let options = Options {
        clock: Arc::new(Later(chrono::Duration::seconds(
            i64::try_from(settings.orders.lease_secs).expect("small") + 1,
        ))),
        ..Options::default()
    };
    Contexts::open_with(&settings, options)
        .await
        .expect("open contexts")
}

fn eur(cents: i64) -> Money {
    Money::new(cents, Currency::EUR).expect("valid")
}

async fn product(contexts: &Contexts, stock: u32) -> ProductId {
    let sku = format!("R-{}", uuid::Uuid::new_v4().simple());
    contexts
        .catalog_module()
        .service()
        .create_product(NewProduct {
            sku,
            name: "Recoverable".into(),
            description: String::new(),
            price: eur(1000),
            category: "things".into(),
            initial_stock: stock,
            active: true,
        })
        .await
        .expect("create product")
        .id
}

fn order(customer: UserId, product_id: ProductId, token: &str) -> PlaceOrder {
    PlaceOrder {
        customer_id: customer,
        idempotency_key: kernel::IdempotencyKey::parse(&uuid::Uuid::new_v4().to_string())
            .expect("a valid key"),
        lines: vec![LineRequest {
            product_id,
            quantity: 2,
        }],
        shipping_address: ShippingAddress {
            name: "Crash Test".into(),
            line1: "1 Restart Road".into(),
            line2: None,
            city: "Recovery".into(),
            postal_code: "R1".into(),
            country: "GB".into(),
        },
        payment_token: token.into(),
    }
}

async fn stock(contexts: &Contexts, product_id: ProductId) -> StockLevel {
    contexts
        .catalog_module()
        .service()
        .get_product(product_id)
        .await
        .expect("product")
        .stock
}

/// Where checkout can stop, and how each order must end after the restart.
const CHECKOUT_CRASHES: &[(&str, Step, Moment, OrderStatus)] = &[
    (
        "tok_visa",
        Step::Reserve,
        Moment::Before,
        OrderStatus::Confirmed,
    ),
    (
        "tok_visa",
        Step::Reserve,
        Moment::After,
        OrderStatus::Confirmed,
    ),
    (
        "tok_visa",
        Step::Charge,
        Moment::Before,
        OrderStatus::Confirmed,
    ),
    (
        "tok_visa",
        Step::Charge,
        Moment::After,
        OrderStatus::Confirmed,
    ),
    (
        "tok_visa",
        Step::Confirm,
        Moment::Before,
        OrderStatus::Confirmed,
    ),
    (
        "tok_visa",
        Step::Confirm,
        Moment::After,
        OrderStatus::Confirmed,
    ),
    (
        "tok_declined",
        Step::Charge,
        Moment::After,
        OrderStatus::PaymentFailed,
    ),
    (
        "tok_declined",
        Step::ReleaseStock,
        Moment::Before,
        OrderStatus::PaymentFailed,
    ),
    (
        "tok_declined",
        Step::ReleaseStock,
        Moment::After,
        OrderStatus::PaymentFailed,
    ),
    (
        "tok_provider_error",
        Step::ReleaseStock,
        Moment::After,
        OrderStatus::PaymentFailed,
    ),
];

async fn checkout_interrupted_at_every_step_recovers(store: TestStore) {
    for &(token, step, moment, expected) in CHECKOUT_CRASHES {
        let crashing = open(&store, Some((step, moment))).await;
        let product_id = product(&crashing, 5).await;
        let placed = crashing
            .orders_api()
            .place_order(order(UserId::new(), product_id, token))
            .await
            .expect("place order");
        assert!(
            !placed.order.status.is_terminal(),
            "{token} {step:?} {moment:?}: the crash left {:?}",
            placed.order.status
        );

        let restarted = restart(&store).await;
        restarted.orders_module().recover().await.expect("recover");
        let viewer = Viewer {
            user_id: placed.order.customer_id,
            admin: false,
        };
        let detail = restarted
            .orders_api()
            .get_order(viewer, placed.order.id)
            .await
            .expect("order");
        let case = format!("{token} {step:?} {moment:?}");
        assert_eq!(detail.order.status, expected, "{case}");
        let payment = restarted
            .payments_api()
            .get_payment(placed.order.id)
            .await
            .expect("a payment");
        let level = stock(&restarted, product_id).await;
        if expected == OrderStatus::Confirmed {
            assert_eq!(payment.status, PaymentStatus::Captured, "{case}");
            assert_eq!(payment.captured, eur(2000), "{case}: charged exactly once");
            assert_eq!(
                level,
                StockLevel {
                    available: 3,
                    reserved: 0
                },
                "{case}: sold"
            );
        } else {
            assert_eq!(
                payment.captured,
                eur(0),
                "{case}: no charge without an order"
            );
            assert_eq!(
                level,
                StockLevel {
                    available: 5,
                    reserved: 0
                },
                "{case}: stock back"
            );
        }
    }
}

async fn cancellation_interrupted_at_every_step_recovers(store: TestStore) {
    for (step, moment) in [
        (Step::Refund, Moment::Before),
        (Step::Refund, Moment::After),
        (Step::Restock, Moment::Before),
        (Step::Restock, Moment::After),
    ] {
        let case = format!("{step:?} {moment:?}");
        let healthy = open(&store, None).await;
        let product_id = product(&healthy, 5).await;
        let placed = healthy
            .orders_api()
            .place_order(order(UserId::new(), product_id, "tok_visa"))
            .await
            .expect("place");
        assert_eq!(placed.order.status, OrderStatus::Confirmed, "{case}");
        let viewer = Viewer {
            user_id: placed.order.customer_id,
            admin: false,
        };

        let crashing = open(&store, Some((step, moment))).await;
        let stopped = crashing
            .orders_api()
            .cancel_order(viewer, placed.order.id)
            .await
            .expect("cancel");
        assert_eq!(stopped.status, OrderStatus::Cancelling, "{case}");

        let restarted = restart(&store).await;
        restarted.orders_module().recover().await.expect("recover");
        let detail = restarted
            .orders_api()
            .get_order(viewer, placed.order.id)
            .await
            .expect("order");
        assert_eq!(detail.order.status, OrderStatus::Cancelled, "{case}");
        let payment = restarted
            .payments_api()
            .get_payment(placed.order.id)
            .await
            .expect("payment");
        assert_eq!(payment.status, PaymentStatus::Refunded, "{case}");
        assert_eq!(
            payment.refunded, payment.captured,
            "{case}: refunded once, in full"
        );
        assert_eq!(
            stock(&restarted, product_id).await,
            StockLevel {
                available: 5,
                reserved: 0
            },
            "{case}: restocked once"
        );
    }
}

/// The outbox survives the crash too: an event committed by a process that died before
/// relaying it is delivered by the next one.
async fn events_committed_before_a_crash_are_delivered_after_restart(store: TestStore) {
    let crashed = open(&store, None).await;
    let user = crashed
        .auth_module()
        .service()
        .register(auth_api::RegisterUser {
            email: "phoenix@example.com".into(),
            password: auth_api::Password::new("rises again"),
            display_name: "Phoenix".into(),
        })
        .await
        .expect("register");
    drop(crashed); // its bus never ran

    let restarted = open(&store, None).await;
    restarted.bus.run_until_idle().await.expect("deliver");
    let page = kernel::PageRequest::default();
    let messages = restarted
        .notifications_api()
        .list_notifications(user.id, page)
        .await
        .expect("list");
    assert_eq!(messages.total, 1);
    assert_eq!(messages.items[0].to, "phoenix@example.com");
}

testkit::backend_tests!(
    checkout_interrupted_at_every_step_recovers,
    cancellation_interrupted_at_every_step_recovers,
    events_committed_before_a_crash_are_delivered_after_restart,
);
