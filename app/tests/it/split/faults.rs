//! Faults across processes, on loopback, each bounded in time: a test waits at most
//! `PATIENCE` for anything, and asserts states, never durations.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement, TransactionTrait};
use serde_json::Value;
use testkit::Backend;

use crate::split::harness::{Layout, Split, sample};

/// Short deadlines and a small, quick breaker, so faults show within seconds.
fn tight() -> Vec<(&'static str, String)> {
    [
        ("SHOP__REMOTE__DEADLINE_MS", "1500"),
        ("SHOP__REMOTE__BREAKER_WINDOW", "4"),
        ("SHOP__REMOTE__BREAKER_OPEN_MS", "300"),
        ("SHOP__REMOTE__BREAKER_PROBES", "1"),
        ("SHOP__PAYMENTS__PROVIDER_TIMEOUT_MS", "500"),
        ("SHOP__ORDERS__CHARGE_TIMEOUT_MS", "3000"),
    ]
    .into_iter()
    .map(|(key, value)| (key, value.to_owned()))
    .collect()
}

/// Every order of the customer, by id: its status and, from its detail, the money payments
/// holds for it.
async fn orders_of(split: &Split, customer: &str) -> BTreeMap<String, (String, i64)> {
    let listed = split
        .get_json("/api/orders?per_page=100", Some(customer))
        .await;
    let mut orders = BTreeMap::new();
    for order in listed["items"].as_array().expect("items") {
        let id = order["id"].as_str().expect("id").to_owned();
        let detail = split
            .get_json(&format!("/api/orders/{id}"), Some(customer))
            .await;
        let held = detail["payment"]["captured"]["amount_minor"]
            .as_i64()
            .unwrap_or(0)
            - detail["payment"]["refunded"]["amount_minor"]
                .as_i64()
                .unwrap_or(0);
        orders.insert(
            id,
            (
                detail["order"]["status"]
                    .as_str()
                    .expect("status")
                    .to_owned(),
                held,
            ),
        );
    }
    orders
}

/// After recovery: every order finished; money held exactly for the confirmed ones; stock
/// sold for the confirmed ones and nothing left reserved.
async fn assert_settled(split: &Split, customer: &str, product: &str, initial: u64, price: i64) {
    let deadline = std::time::Instant::now() + crate::split::harness::PATIENCE;
    let orders = loop {
        let orders = orders_of(split, customer).await;
        let finished = orders.values().all(|(status, _)| {
            matches!(
                status.as_str(),
                "confirmed" | "rejected" | "payment_failed" | "cancelled"
            )
        });
        if finished {
            break orders;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "orders never finished: {orders:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let mut confirmed = 0;
    for (id, (status, held)) in &orders {
        if status == "confirmed" {
            confirmed += 1;
            assert_eq!(*held, price, "confirmed order {id} is paid in full");
        } else {
            assert_eq!(*held, 0, "order {id} ({status}) holds no money");
        }
    }
    assert_eq!(
        split.stock(product).await,
        (initial - confirmed, 0),
        "stock sold for the {confirmed} confirmed orders, none left reserved: {orders:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_payments_opens_the_breaker_and_checkouts_come_back_after_restart() {
    let mut split = Split::start(Backend::Postgres, Layout::PaymentsOnly, &tight()).await;
    let admin = split.admin().await;
    let product = split.product(&admin, "KETTLE-1", 1500, 100).await;
    let customer = split.customer("ada@example.com").await;

    for n in 0..3 {
        let (status, order) = split
            .checkout(&customer, &product, &format!("before-{n}"))
            .await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(order["status"], "confirmed", "{order}");
    }

    split.payments.kill();
    // A stream of checkouts while payments is gone: each is answered (the client would give
    // up only after PATIENCE), none is confirmed, each names payment_unavailable.
    for n in 0..12 {
        let (status, order) = split
            .checkout(&customer, &product, &format!("during-{n}"))
            .await;
        // 202: the checkout is decided (given up) but not finished: voiding the payment and
        // releasing the stock wait for payments to answer again.
        assert!(
            [StatusCode::CREATED, StatusCode::ACCEPTED].contains(&status),
            "{order}"
        );
        assert_ne!(order["status"], "confirmed", "{order}");
        assert_eq!(order["failure_reason"], "payment_unavailable", "{order}");
    }
    // The breaker opened: later charges failed at once, without trying the network.
    let metrics = split.metrics(&split.shop).await;
    assert!(
        split.shop.logged(|line| line["fields"]["error"]
            .as_str()
            .is_some_and(|error| error.contains("circuit open"))),
        "some charge was refused by the open breaker"
    );
    assert!(
        sample(
            &metrics,
            "shop_boundary_calls_total",
            &[
                "callee=\"payments\"",
                "method=\"charge\"",
                "placement=\"remote\"",
                "outcome=\"unavailable\""
            ],
        ) >= Some(12.0),
        "{metrics}"
    );

    // Payments comes back: the breaker lets a probe through and closes, checkouts succeed,
    // and the recovery sweep finishes the checkouts left half-done (payments voided, stock
    // released).
    split.payments.spawn();
    let deadline = std::time::Instant::now() + crate::split::harness::PATIENCE;
    let mut n = 0;
    loop {
        let (status, order) = split
            .checkout(&customer, &product, &format!("after-{n}"))
            .await;
        assert!(
            [StatusCode::CREATED, StatusCode::ACCEPTED].contains(&status),
            "{order}"
        );
        if order["status"] == "confirmed" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "checkouts never succeeded again: {order}"
        );
        n += 1;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Calls succeed again, so the breaker closes (the recovery sweep's calls may still be
    // probing it for a moment).
    let deadline = std::time::Instant::now() + crate::split::harness::PATIENCE;
    loop {
        let metrics = split.metrics(&split.shop).await;
        let state = sample(
            &metrics,
            "shop_circuit_breaker_state",
            &["caller=\"orders\"", "callee=\"payments\""],
        );
        if state == Some(0.0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the breaker never closed again: {state:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_settled(&split, &customer, &product, 100, 1500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_catalog_is_given_up_at_the_deadline_and_stops_its_work() {
    let split = Split::start(Backend::Postgres, Layout::CatalogAndPayments, &tight()).await;
    let catalog = split.catalog.as_ref().expect("catalog runs apart");
    let admin = split.admin().await;
    let product = split.product(&admin, "TEAPOT-1", 2500, 5).await;
    let customer = split.customer("ada@example.com").await;

    // Stall catalog: hold the product's stock row, so that reserving it waits on the lock.
    let url = split.store.database_url().expect("postgres");
    let db = Database::connect(url).await.expect("connect");
    let holding = db.begin().await.expect("begin");
    holding
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT available FROM catalog.stock WHERE product_id = $1::uuid FOR UPDATE",
            [product.clone().into()],
        ))
        .await
        .expect("lock the stock row");

    // The shop gives up on catalog at its deadline and answers: the order is accepted, not
    // finished.
    let (status, order) = split.checkout(&customer, &product, "stalled-1").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{order}");
    assert_eq!(order["status"], "pending", "{order}");
    // Catalog stopped the work its caller no longer waited for.
    catalog.wait_for_log(|line| {
        line["fields"]["message"] == "stopped an internal call: its caller's deadline passed"
            && line["span"]["method"] == "reserve_stock"
    });
    holding.rollback().await.expect("release the row");

    // Nothing the stopped call began holds stock; the recovery sweep then finishes the
    // order, exactly once.
    let order_id = order["id"].as_str().expect("id");
    let done = split
        .wait_for_order(&customer, order_id, |detail| {
            detail["order"]["status"] == "confirmed"
        })
        .await;
    assert_eq!(done["payment"]["captured"]["amount_minor"], 2500);
    assert_settled(&split, &customer, &product, 5, 2500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shop_killed_mid_checkout_finishes_its_orders_against_the_remote_contexts() {
    let mut split = Split::start(Backend::Postgres, Layout::PaymentsOnly, &tight()).await;
    let admin = split.admin().await;
    let product = split.product(&admin, "MUG-1", 900, 20).await;
    let customer = split.customer("ada@example.com").await;

    // Payments answers nothing: checkouts reserve stock, then wait on the charge.
    split.payments.freeze();
    let mut placing = Vec::new();
    for n in 0..4 {
        let http = split.http.clone();
        let url = format!("{}/api/orders", split.shop.public);
        let customer = customer.clone();
        let body = crate::split::harness::order_body(&product, "tok_visa");
        placing.push(tokio::spawn(async move {
            // The shop dies under these requests; their answers do not matter.
            let _ = http
                .post(url)
                .bearer_auth(customer)
                .header("Idempotency-Key", format!("mid-{n}"))
                .json(&body)
                .send()
                .await;
        }));
    }
    let deadline = std::time::Instant::now() + crate::split::harness::PATIENCE;
    while split.stock(&product).await.1 < 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "the checkouts never reserved their stock"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // The shop is killed mid-checkout; payments runs again; the shop restarts.
    split.shop.kill();
    for placed in placing {
        placed.await.expect("the request task ends");
    }
    split.payments.thaw();
    split.shop.spawn();

    // Recovery finishes every order against payments in the other process: each is
    // confirmed with its money taken, or failed with none held, and no stock stays reserved.
    assert_settled(&split, &customer, &product, 20, 900).await;
    let orders: Vec<Value> = orders_of(&split, &customer)
        .await
        .into_values()
        .map(|(status, _)| Value::from(status))
        .collect();
    assert_eq!(orders.len(), 4, "{orders:?}");
}

/// How many of `kinds` are `kind`.
fn count(kinds: &[String], kind: &str) -> usize {
    kinds.iter().filter(|found| *found == kind).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_killed_and_restarted_gets_every_event_once() {
    let mut split = Split::start(
        Backend::Postgres,
        Layout::PaymentsAndNotifications,
        &tight(),
    )
    .await;
    let admin = split.admin().await;
    let product = split.product(&admin, "LAMP-2", 1200, 50).await;
    let customer = split.customer("ada@example.com").await;
    let welcomed = split
        .notifications_until(&customer, |kinds| !kinds.is_empty())
        .await;
    assert_eq!(welcomed, ["welcome"]);

    // Orders go on while notifications is gone; their events wait in the stream.
    let notifications = split
        .notifications
        .as_mut()
        .expect("notifications runs apart");
    notifications.kill();
    split
        .confirmed_checkouts(&customer, &product, "while-away", 5)
        .await;
    split
        .notifications
        .as_mut()
        .expect("notifications runs apart")
        .spawn();

    let kinds = split
        .notifications_until(&customer, |kinds| kinds.len() >= 6)
        .await;
    assert_eq!(
        count(&kinds, "order_confirmed"),
        5,
        "one per order: {kinds:?}"
    );
    assert_eq!(count(&kinds, "welcome"), 1, "{kinds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_published_while_the_broker_is_down_arrive_after_it_once() {
    let mut nats = crate::split::harness::Nats::start();
    let mut env = tight();
    env.extend([
        ("SHOP__BROKER__URL", nats.url()),
        ("SHOP__BROKER__PUBLISH_TIMEOUT_MS", "500".to_owned()),
        // One failed attempt would park an event that failed for its own sake: an outage
        // must cost none.
        ("SHOP__MESSAGING__MAX_ATTEMPTS", "1".to_owned()),
    ]);
    let split = Split::start(Backend::Postgres, Layout::PaymentsAndNotifications, &env).await;
    let admin = split.admin().await;
    let product = split.product(&admin, "LAMP-3", 1200, 50).await;
    let customer = split.customer("ada@example.com").await;
    let welcomed = split
        .notifications_until(&customer, |kinds| !kinds.is_empty())
        .await;
    assert_eq!(welcomed, ["welcome"]);

    let broker_status = |split: &Split| {
        let url = format!("{}/readyz", split.shop.public);
        async move {
            let answer = reqwest::get(&url).await.expect("readyz answers");
            // Readiness does not depend on the broker: the shop serves while it is away.
            assert_eq!(answer.status(), StatusCode::OK);
            let body: Value = answer.json().await.expect("json");
            body["broker"]["status"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        }
    };
    assert_eq!(broker_status(&split).await, "ok");

    nats.kill();
    split
        .confirmed_checkouts(&customer, &product, "outage", 5)
        .await;
    // The relay could not publish: the events wait in the outbox, none parked.
    split.shop.wait_for_log(|line| {
        line["fields"]["message"] == "the broker cannot take events; they wait in the outbox"
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while broker_status(&split).await != "unavailable" {
        assert!(
            Instant::now() < deadline,
            "/readyz never showed the broker away"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    nats.spawn();

    let kinds = split
        .notifications_until(&customer, |kinds| kinds.len() >= 6)
        .await;
    assert_eq!(
        count(&kinds, "order_confirmed"),
        5,
        "one per order: {kinds:?}"
    );
    assert_eq!(broker_status(&split).await, "ok");
    let parked: Value = split
        .http
        .get(format!("{}/api/admin/events/failed", split.shop.public))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("list parked events")
        .json()
        .await
        .expect("json");
    assert_eq!(parked, serde_json::json!([]), "the outage parked nothing");
}
