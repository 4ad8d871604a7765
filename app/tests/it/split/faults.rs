//! Faults across processes, on loopback, each bounded in time: a test waits at most
//! `PATIENCE` for anything, and asserts states, never durations.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use sea_orm::{
    ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement, TransactionTrait,
};
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

/// The customer whose registration the relay is stopped from marking.
const HELD_EMAIL: &str = "held@example.com";

/// The test's Postgres database as its superuser, the user the split processes connect as
/// (the harness gives contexts no roles of their own, so a `REVOKE` would not stop them).
async fn database(split: &Split) -> DatabaseConnection {
    let url = split.store.database_url().expect("postgres");
    Database::connect(url)
        .await
        .expect("connect to the test database")
}

/// The first column of the one row `sql` answers.
async fn query_one<T: sea_orm::TryGetable>(
    db: &DatabaseConnection,
    sql: &str,
    values: impl IntoIterator<Item = sea_orm::Value>,
) -> T {
    db.query_one_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        sql,
        values,
    ))
    .await
    .unwrap_or_else(|error| panic!("{sql}: {error}"))
    .unwrap_or_else(|| panic!("{sql}: no row"))
    .try_get_by_index(0)
    .unwrap_or_else(|error| panic!("{sql}: {error:?}"))
}

/// The status of the event's row in auth's outbox.
async fn outbox_status(db: &DatabaseConnection, event_id: &str) -> String {
    query_one(
        db,
        "SELECT status FROM auth.outbox WHERE id = $1::uuid",
        [event_id.into()],
    )
    .await
}

/// How many messages of the split's stream carry `event_id` as their `Nats-Msg-Id`: the
/// copies of the event that JetStream kept.
async fn copies_in_stream(split: &Split, event_id: &str) -> usize {
    let env = split.shop.env();
    let client = async_nats::connect(env["SHOP__BROKER__URL"].as_str())
        .await
        .expect("connect to NATS");
    let stream = async_nats::jetstream::new(client)
        .get_stream(env["SHOP__BROKER__STREAM"].as_str())
        .await
        .expect("the events stream");
    let state = stream.get_info().await.expect("stream info").state;
    if state.messages == 0 {
        return 0;
    }
    let mut copies = 0;
    for sequence in state.first_sequence..=state.last_sequence {
        let message = stream
            .get_raw_message(sequence)
            .await
            .unwrap_or_else(|error| panic!("stream message {sequence}: {error}"));
        if message
            .headers
            .get("Nats-Msg-Id")
            .is_some_and(|id| id.as_str() == event_id)
        {
            copies += 1;
        }
    }
    copies
}

/// Auth's publishes to the broker that the shop process counted since it started, by
/// outcome (`published`, `duplicate`); `None` before the first.
async fn auth_publishes(split: &Split, outcome: &str) -> Option<f64> {
    let metrics = split.metrics(&split.shop).await;
    sample(
        &metrics,
        "shop_events_published_total",
        &["publisher=\"auth\"", &format!("outcome=\"{outcome}\"")],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_between_publish_and_mark_publishes_again_and_the_copy_is_dropped() {
    // The server must remember the event's id from the first publish to the restarted
    // relay's, across several waits of at most PATIENCE each; the default (120 s) covers a
    // run of seconds, ten minutes covers the worst case. Past the window the copy would be
    // stored (and dropped by the inbox instead), which is not what this test is about.
    let env = [("SHOP__BROKER__DUPLICATE_WINDOW_SECS", "600".to_owned())];
    let mut split = Split::start(Backend::Postgres, Layout::PaymentsAndNotifications, &env).await;
    let db = database(&split).await;

    // The admin's registration leaves first, so that the only event held below is the
    // customer's.
    let deadline = std::time::Instant::now() + crate::split::harness::PATIENCE;
    loop {
        let waiting: i64 = query_one(
            &db,
            "SELECT COUNT(*) FROM auth.outbox WHERE status <> 'dispatched'",
            [],
        )
        .await;
        if waiting == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "auth's outbox never drained: {waiting} rows left"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // Marking the customer's event dispatched fails, and only that: the relay's publish
    // succeeds, its UPDATE of the row raises, and its transaction (the claim and the mark)
    // rolls back. No hook in the shop: the database refuses, as it would if it failed then.
    db.execute_unprepared(&format!(
        "CREATE FUNCTION auth.refuse_to_mark() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN RAISE EXCEPTION 'the test refuses to mark event % dispatched', OLD.id; END $$; \
         CREATE TRIGGER refuse_to_mark BEFORE UPDATE ON auth.outbox FOR EACH ROW \
         WHEN (OLD.status = 'pending' AND NEW.status = 'dispatched' \
               AND OLD.payload::jsonb ->> 'email' = '{HELD_EMAIL}') \
         EXECUTE FUNCTION auth.refuse_to_mark();"
    ))
    .await
    .expect("create the trigger");

    let customer = split.customer(HELD_EMAIL).await;
    let event_id: String = query_one(
        &db,
        "SELECT id::text FROM auth.outbox \
         WHERE name = 'auth.user_registered.v1' AND payload::jsonb ->> 'email' = $1",
        [HELD_EMAIL.into()],
    )
    .await;
    // The relay published the event (the mark comes only after JetStream's acknowledgement)
    // and could not mark it.
    split.shop.wait_for_log(|line| {
        line["fields"]["message"] == "event delivery pass failed"
            && line["fields"]["error"]
                .as_str()
                .is_some_and(|error| error.contains(&event_id))
    });
    // What really happens before the kill: the relay does not give up. Its failed mark rolled
    // back its claim too, so the row is due again at the next poll, and every pass publishes
    // the event again, which JetStream answers is a duplicate. Wait for one such answer.
    let deadline = std::time::Instant::now() + crate::split::harness::PATIENCE;
    while auth_publishes(&split, "duplicate").await < Some(1.0) {
        assert!(
            std::time::Instant::now() < deadline,
            "JetStream never answered a repeated publish as a duplicate"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Notifications, in its own process, took the one stored copy and welcomed the customer.
    let welcomed = split
        .notifications_until(&customer, |kinds| !kinds.is_empty())
        .await;
    assert_eq!(welcomed, ["welcome"]);
    assert_eq!(copies_in_stream(&split, &event_id).await, 1);

    // The shop dies with the event published and its row unmarked; then the database lets
    // marks through again.
    split.shop.kill();
    assert_eq!(outbox_status(&db, &event_id).await, "pending");
    // Dropping the trigger waits for the dead process's sessions to end (Postgres ends them
    // once it sees their sockets closed), so it is bounded too.
    tokio::time::timeout(
        crate::split::harness::PATIENCE,
        db.execute_unprepared(
            "DROP TRIGGER refuse_to_mark ON auth.outbox; DROP FUNCTION auth.refuse_to_mark();",
        ),
    )
    .await
    .expect("the dead process's sessions ended")
    .expect("drop the trigger");

    // The restarted shop's relay publishes the event again, JetStream drops the copy, and
    // this time the row is marked.
    split.shop.spawn();
    split.wait_until_ready(&split.shop).await;
    let deadline = std::time::Instant::now() + crate::split::harness::PATIENCE;
    while outbox_status(&db, &event_id).await != "dispatched" {
        assert!(
            std::time::Instant::now() < deadline,
            "the restarted relay never marked the event"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        auth_publishes(&split, "duplicate").await >= Some(1.0),
        "the restarted relay published the event again, and JetStream said it had it"
    );
    assert_eq!(
        auth_publishes(&split, "published").await,
        None,
        "the restarted relay stored nothing new"
    );

    // Later events still flow.
    let later = split.customer("later@example.com").await;
    let welcomed = split
        .notifications_until(&later, |kinds| !kinds.is_empty())
        .await;
    assert_eq!(welcomed, ["welcome"]);

    // Exactly once. Notifications takes the stream in order, so with the later event handled
    // it has seen everything before it: one copy in the stream, one inbox row, one message.
    assert_eq!(copies_in_stream(&split, &event_id).await, 1);
    let inbox: i64 = query_one(
        &db,
        "SELECT COUNT(*) FROM notifications.inbox WHERE event_id = $1::uuid",
        [event_id.as_str().into()],
    )
    .await;
    assert_eq!(inbox, 1, "one inbox row for the event");
    let messages: i64 = query_one(
        &db,
        "SELECT COUNT(*) FROM notifications.notifications WHERE event_id = $1::uuid",
        [event_id.as_str().into()],
    )
    .await;
    assert_eq!(messages, 1, "one notification for the event");
    let kinds = split.notifications_until(&customer, |_| true).await;
    assert_eq!(kinds, ["welcome"]);
}
