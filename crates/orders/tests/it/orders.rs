//! Placing, replaying, listing, viewing and cancelling orders.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use kernel::{IdempotencyKey, PageRequest, ProductId, SystemClock, UserId};
use orders::{OrdersConfig, OrdersModule};
use orders_api::{
    LineRequest, OrderFailure, OrderStatus, OrdersApi, OrdersError, PaymentState, PlaceOrder,
    ShippingAddress, Viewer,
};
use sea_orm::{ConnectionTrait, Statement};
use testkit::TestStore;

use crate::doubles::{Catalog, Payments, eur};

struct Shop {
    orders: Arc<dyn OrdersApi>,
    catalog: Arc<Catalog>,
    payments: Arc<Payments>,
    db: sea_orm::DatabaseConnection,
    _store: TestStore,
}

async fn shop(store: TestStore) -> Shop {
    let db = store.connect(orders::CONTEXT).await;
    orders::migrate(&db).await.expect("migrate");
    let catalog = Arc::new(Catalog::default());
    let payments = Arc::new(Payments::default());
    let module = OrdersModule::new(
        db.clone(),
        Arc::new(SystemClock),
        catalog.clone(),
        payments.clone(),
        OrdersConfig::default(),
    );
    Shop {
        orders: module.api(),
        catalog,
        payments,
        db,
        _store: store,
    }
}

fn address() -> ShippingAddress {
    ShippingAddress {
        name: "Ada Lovelace".into(),
        line1: "12 St James's Square".into(),
        line2: None,
        city: "London".into(),
        postal_code: "SW1Y 4JH".into(),
        country: "GB".into(),
    }
}

fn request(customer: UserId, key: &str, lines: &[(ProductId, u32)], token: &str) -> PlaceOrder {
    PlaceOrder {
        customer_id: customer,
        idempotency_key: IdempotencyKey::parse(key).expect("a valid key"),
        lines: lines
            .iter()
            .map(|&(product_id, quantity)| LineRequest {
                product_id,
                quantity,
            })
            .collect(),
        shipping_address: address(),
        payment_token: token.into(),
    }
}

fn customer(id: UserId) -> Viewer {
    Viewer {
        user_id: id,
        admin: false,
    }
}

async fn outbox_events(db: &sea_orm::DatabaseConnection, name: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) AS n FROM outbox WHERE name = '{name}'");
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("query")
        .expect("row");
    row.try_get::<i64>("", "n").expect("count")
}

async fn a_paid_order_is_confirmed_with_a_price_snapshot(store: TestStore) {
    let shop = shop(store).await;
    let tea = shop.catalog.add("tea", 450, 10);
    let pot = shop.catalog.add("pot", 2500, 1);
    let buyer = UserId::new();
    let placed = shop
        .orders
        .place_order(request(
            buyer,
            "k1",
            &[(tea, 2), (pot, 1), (tea, 1)],
            "tok_visa",
        ))
        .await
        .expect("place");
    assert!(!placed.replayed);
    let order = placed.order;
    assert_eq!(order.status, OrderStatus::Confirmed);
    assert_eq!(order.total, eur(3 * 450 + 2500));
    assert_eq!(order.lines.len(), 2, "lines of one product are merged");
    assert_eq!(
        (order.lines[0].name.as_str(), order.lines[0].quantity),
        ("tea", 3)
    );
    assert_eq!(order.lines[0].unit_price, eur(450));
    assert_eq!(shop.catalog.available(tea), 7);
    assert_eq!(shop.payments.charges.load(Ordering::SeqCst), 1);
    assert_eq!(outbox_events(&shop.db, "orders.order_placed.v1").await, 1);
    assert_eq!(
        outbox_events(&shop.db, "orders.order_confirmed.v1").await,
        1
    );
}

async fn declines_and_shortages_end_the_checkout(store: TestStore) {
    let shop = shop(store).await;
    let tea = shop.catalog.add("tea", 450, 1);
    let buyer = UserId::new();
    let declined = shop
        .orders
        .place_order(request(buyer, "d", &[(tea, 1)], "tok_declined"))
        .await
        .expect("place");
    assert_eq!(declined.order.status, OrderStatus::PaymentFailed);
    assert_eq!(declined.order.failure_reason, Some(OrderFailure::Declined));
    assert_eq!(
        outbox_events(&shop.db, "orders.order_payment_failed.v1").await,
        1
    );

    let short = shop
        .orders
        .place_order(request(buyer, "s", &[(tea, 5)], "tok_visa"))
        .await
        .expect("place");
    assert_eq!(short.order.status, OrderStatus::Rejected);
    assert_eq!(short.order.failure_reason, Some(OrderFailure::OutOfStock));
    assert_eq!(
        shop.payments.charges.load(Ordering::SeqCst),
        0,
        "nothing charged"
    );
}

async fn idempotency_keys_replay_or_refuse(store: TestStore) {
    let shop = shop(store).await;
    let tea = shop.catalog.add("tea", 450, 10);
    let buyer = UserId::new();
    let first = shop
        .orders
        .place_order(request(buyer, "same", &[(tea, 1)], "tok_visa"))
        .await
        .expect("place");
    let again = shop
        .orders
        .place_order(request(buyer, "same", &[(tea, 1)], "tok_visa"))
        .await
        .expect("replay");
    assert!(again.replayed);
    assert_eq!(again.order.id, first.order.id);
    assert_eq!(
        shop.orders
            .place_order(request(buyer, "same", &[(tea, 2)], "tok_visa"))
            .await,
        Err(OrdersError::IdempotencyKeyReused)
    );
    // Keys are per customer: another customer's "same" is a new order.
    let other = shop
        .orders
        .place_order(request(UserId::new(), "same", &[(tea, 1)], "tok_visa"))
        .await
        .expect("place");
    assert_ne!(other.order.id, first.order.id);
    assert_eq!(shop.payments.charges.load(Ordering::SeqCst), 2);
}

async fn unknown_and_inactive_products_are_field_errors(store: TestStore) {
    let shop = shop(store).await;
    let tea = shop.catalog.add("tea", 450, 10);
    let gone = shop.catalog.add("gone", 100, 10);
    shop.catalog
        .products
        .lock()
        .expect("lock")
        .get_mut(&gone)
        .expect("known")
        .active = false;
    let unknown = ProductId::new();
    let Err(OrdersError::ValidationFailed { fields }) = shop
        .orders
        .place_order(request(
            UserId::new(),
            "k",
            &[(tea, 1), (unknown, 1), (gone, 1)],
            "tok_visa",
        ))
        .await
    else {
        panic!("expected field errors");
    };
    let found: Vec<_> = fields
        .iter()
        .map(|f| (f.field.as_str(), f.code.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            ("lines[1].product_id", "unknown_product"),
            ("lines[2].product_id", "product_unavailable")
        ]
    );
    assert_eq!(
        outbox_events(&shop.db, "orders.order_placed.v1").await,
        0,
        "nothing was written"
    );
}

async fn customers_see_their_own_orders_admins_see_all(store: TestStore) {
    let shop = shop(store).await;
    let tea = shop.catalog.add("tea", 450, 100);
    let (alice, bob) = (UserId::new(), UserId::new());
    let mut alices = Vec::new();
    for key in ["a1", "a2", "a3"] {
        let placed = shop
            .orders
            .place_order(request(alice, key, &[(tea, 1)], "tok_visa"))
            .await
            .expect("place");
        alices.push(placed.order.id);
    }
    let bobs = shop
        .orders
        .place_order(request(bob, "b1", &[(tea, 1)], "tok_visa"))
        .await
        .expect("place")
        .order
        .id;

    let page = |n| PageRequest::new(Some(n), Some(2)).expect("page");
    let first = shop
        .orders
        .list_orders(customer(alice), page(1))
        .await
        .expect("list");
    assert_eq!(first.total, 3);
    assert_eq!(
        first.items.iter().map(|o| o.id).collect::<Vec<_>>(),
        [alices[2], alices[1]],
        "newest first"
    );
    let second = shop
        .orders
        .list_orders(customer(alice), page(2))
        .await
        .expect("list");
    assert_eq!(
        second.items.iter().map(|o| o.id).collect::<Vec<_>>(),
        [alices[0]]
    );
    let admin = Viewer {
        user_id: UserId::new(),
        admin: true,
    };
    assert_eq!(
        shop.orders
            .list_orders(admin, page(1))
            .await
            .expect("list")
            .total,
        4
    );

    assert_eq!(
        shop.orders.get_order(customer(alice), bobs).await,
        Err(OrdersError::OrderNotFound { order_id: bobs })
    );
    assert!(shop.orders.get_order(admin, bobs).await.is_ok());
    assert_eq!(
        shop.orders.cancel_order(customer(alice), bobs).await,
        Err(OrdersError::OrderNotFound { order_id: bobs })
    );
}

async fn the_detail_costs_one_call_per_context(store: TestStore) {
    let shop = shop(store).await;
    let products: Vec<_> = (0..10)
        .map(|i| shop.catalog.add(&format!("p{i}"), 100, 5))
        .collect();
    let lines: Vec<_> = products.iter().map(|&id| (id, 1)).collect();
    let buyer = UserId::new();
    let order = shop
        .orders
        .place_order(request(buyer, "k", &lines, "tok_visa"))
        .await
        .expect("place")
        .order;
    let catalog_calls = shop.catalog.get_products_calls.load(Ordering::SeqCst);
    let payment_calls = shop.payments.get_payment_calls.load(Ordering::SeqCst);

    let detail = shop
        .orders
        .get_order(customer(buyer), order.id)
        .await
        .expect("detail");
    assert_eq!(detail.products.len(), 10);
    assert_eq!(
        detail.payment.map(|p| p.status),
        Some(PaymentState::Captured)
    );
    assert_eq!(
        shop.catalog.get_products_calls.load(Ordering::SeqCst),
        catalog_calls + 1
    );
    assert_eq!(
        shop.payments.get_payment_calls.load(Ordering::SeqCst),
        payment_calls + 1
    );
}

async fn only_confirmed_orders_can_be_cancelled(store: TestStore) {
    let shop = shop(store).await;
    let tea = shop.catalog.add("tea", 450, 10);
    let buyer = UserId::new();
    let confirmed = shop
        .orders
        .place_order(request(buyer, "c", &[(tea, 2)], "tok_visa"))
        .await
        .expect("place")
        .order;
    let cancelled = shop
        .orders
        .cancel_order(customer(buyer), confirmed.id)
        .await
        .expect("cancel");
    assert_eq!(cancelled.status, OrderStatus::Cancelled);
    let again = shop
        .orders
        .cancel_order(customer(buyer), confirmed.id)
        .await
        .expect("idempotent");
    assert_eq!(again.status, OrderStatus::Cancelled);
    assert_eq!(
        outbox_events(&shop.db, "orders.order_cancelled.v1").await,
        1
    );

    let failed = shop
        .orders
        .place_order(request(buyer, "f", &[(tea, 1)], "tok_declined"))
        .await
        .expect("place")
        .order;
    assert_eq!(
        shop.orders.cancel_order(customer(buyer), failed.id).await,
        Err(OrdersError::NotCancellable {
            status: OrderStatus::PaymentFailed
        })
    );
}

testkit::backend_tests!(
    a_paid_order_is_confirmed_with_a_price_snapshot,
    declines_and_shortages_end_the_checkout,
    idempotency_keys_replay_or_refuse,
    unknown_and_inactive_products_are_field_errors,
    customers_see_their_own_orders_admins_see_all,
    the_detail_costs_one_call_per_context,
    only_confirmed_orders_can_be_cancelled,
);
