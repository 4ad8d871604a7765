//! Parked events, their replay and their discard, as an operator sees them.

use std::path::PathBuf;

use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::TestStore;

use crate::checkout::order_body;
use crate::helpers::{TestApp, spawn_app_with};

/// The shop's mailbox can be blocked (a file where its directory should be), so that no
/// message can be sent until it is unblocked.
struct Mailbox {
    dir: PathBuf,
    aside: PathBuf,
}

impl Mailbox {
    fn of(app: &TestApp) -> Self {
        let data = app.store().dir.path().join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        Self {
            dir: data.join("mail"),
            aside: data.join("mail.aside"),
        }
    }

    fn block(&self) {
        if self.dir.is_dir() {
            std::fs::rename(&self.dir, &self.aside).expect("set the mailbox aside");
        }
        std::fs::write(&self.dir, "not a directory").expect("block the mailbox");
    }

    fn unblock(&self) {
        std::fs::remove_file(&self.dir).expect("unblock the mailbox");
        if self.aside.is_dir() {
            std::fs::rename(&self.aside, &self.dir).expect("put the mailbox back");
        }
    }
}

impl TestApp {
    /// `token`'s notifications that were sent, oldest first.
    async fn sent_notifications(&self, token: &str) -> Vec<Value> {
        let page = self
            .get("/api/notifications?per_page=100", Some(token))
            .await;
        let mut sent: Vec<Value> = page.ok(StatusCode::OK)["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter(|notification| !notification["sent_at"].is_null())
            .cloned()
            .collect();
        sent.reverse();
        sent
    }

    /// Asserts that `/metrics` has the line `sample` (name, labels and value).
    async fn assert_metric(&self, sample: &str) {
        let answer = self.send(self.client.get(self.url("/metrics"))).await;
        let text = answer.body.as_str().expect("text");
        assert!(
            text.lines().any(|line| line == sample),
            "no {sample} in\n{text}"
        );
    }

    async fn parked(&self, admin: &str, query: &str) -> Vec<Value> {
        self.get(&format!("/api/admin/events/failed{query}"), Some(admin))
            .await
            .ok(StatusCode::OK)
            .as_array()
            .expect("list")
            .clone()
    }
}

fn kinds(notifications: &[Value]) -> Vec<&str> {
    notifications
        .iter()
        .map(|notification| notification["kind"].as_str().expect("kind"))
        .collect()
}

/// The mail directory cannot be created (a file sits where it should be), so the welcome
/// message, recorded when the event was handled, cannot be sent: the event is parked after
/// the commit (the customer sees the message as not sent), the operator sees it, fixes the
/// cause and replays it, which sends the message.
async fn failed_handlers_are_listed_and_replayed(store: TestStore) {
    let app = spawn_app_with(store, |settings| settings.messaging.max_attempts = 1).await;
    let admin = app.admin_token().await;
    let data_dir = app.store().dir.path().join("data");
    std::fs::create_dir_all(&data_dir).expect("data dir");
    let blocker = data_dir.join("mail");
    std::fs::write(&blocker, "not a directory").expect("block the mail dir");

    app.register("parked@example.com", "parked password", "Parked")
        .await
        .ok(StatusCode::CREATED);
    let customer = app.token("parked@example.com", "parked password").await;
    app.deliver_events().await;
    assert_eq!(app.notification_kinds(&customer).await, ["welcome"]);
    assert!(
        app.sent_notifications(&customer).await.is_empty(),
        "not sent"
    );

    app.get("/api/admin/events/failed", Some(&customer))
        .await
        .error(StatusCode::FORBIDDEN, "forbidden");
    app.get("/api/admin/events/failed", None)
        .await
        .error(StatusCode::UNAUTHORIZED, "missing_token");
    let failed = app.get("/api/admin/events/failed", Some(&admin)).await;
    let failed = failed.ok(StatusCode::OK).as_array().expect("list").clone();
    // The administrator was created through auth too, so their welcome failed the same way.
    let parked: Vec<_> = failed
        .iter()
        .filter(|event| event["event_name"] == "auth.user_registered.v1")
        .collect();
    assert_eq!(parked.len(), 2, "{failed:#?}");
    for event in &parked {
        assert_eq!(event["stage"], "after_commit");
        assert_eq!(event["owner"], "notifications");
        assert_eq!(event["attempts"], 1);
        assert!(event["last_error"].as_str().is_some_and(|e| !e.is_empty()));
    }

    app.post(
        &format!("/api/admin/events/{}/retry", uuid::Uuid::now_v7()),
        Some(&admin),
        serde_json::json!({}),
    )
    .await
    .error(StatusCode::NOT_FOUND, "event_not_found");

    std::fs::remove_file(&blocker).expect("unblock");
    for event in &parked {
        let id = event["id"].as_str().expect("id");
        let retried = app
            .post(
                &format!("/api/admin/events/{id}/retry"),
                Some(&admin),
                serde_json::json!({}),
            )
            .await;
        assert_eq!(retried.ok(StatusCode::ACCEPTED)["status"], "pending");
    }
    app.deliver_events().await;
    assert_eq!(kinds(&app.sent_notifications(&customer).await), ["welcome"]);
    let failed = app.get("/api/admin/events/failed", Some(&admin)).await;
    assert_eq!(failed.ok(StatusCode::OK), &serde_json::json!([]));
}

/// The confirmation of an order cannot be sent and is parked; the cancellation of the same
/// order waits behind it (even once the mailbox works again) instead of overtaking it, and
/// after the operator's retry both are sent, confirmation first.
async fn a_parked_confirmation_holds_back_the_cancellation_of_its_order(store: TestStore) {
    let app = spawn_app_with(store, |settings| settings.messaging.max_attempts = 1).await;
    let admin = app.admin_token().await;
    let product = app
        .create_product(&admin, "PARKED-1", 1500, "tests", 5)
        .await;
    let product_id = product["id"].as_str().expect("id");
    let ada = app.customer_token().await;
    app.deliver_events().await;
    assert_eq!(kinds(&app.sent_notifications(&ada).await), ["welcome"]);

    let mailbox = Mailbox::of(&app);
    mailbox.block();
    let order = app
        .place_order(&ada, "parked-1", &order_body(product_id, 1, "tok_visa"))
        .await;
    let order_id = order.ok(StatusCode::CREATED)["id"]
        .as_str()
        .expect("id")
        .to_owned();
    app.deliver_events().await;
    let parked = app.parked(&admin, "?owner=notifications").await;
    assert_eq!(parked.len(), 1, "{parked:#?}");
    assert_eq!(parked[0]["event_name"], "orders.order_confirmed.v1");
    assert_eq!(parked[0]["aggregate_id"], order_id.as_str());
    assert_eq!(parked[0]["status"], "failed");

    mailbox.unblock();
    app.post(
        &format!("/api/orders/{order_id}/cancel"),
        Some(&ada),
        json!({}),
    )
    .await
    .ok(StatusCode::OK);
    app.deliver_events().await;
    assert_eq!(
        kinds(&app.sent_notifications(&ada).await),
        ["welcome"],
        "the cancellation waits behind the parked confirmation"
    );
    assert!(
        app.parked(&admin, "?event_name=orders.order_cancelled.v1")
            .await
            .is_empty(),
        "the cancellation is waiting, not parked"
    );

    let id = parked[0]["id"].as_str().expect("id");
    app.post(
        &format!("/api/admin/events/{id}/retry"),
        Some(&admin),
        json!({}),
    )
    .await
    .ok(StatusCode::ACCEPTED);
    app.deliver_events().await;
    let sent = app.sent_notifications(&ada).await;
    assert_eq!(
        kinds(&sent),
        ["welcome", "order_confirmed", "order_cancelled"]
    );
    let timestamp = |notification: &Value, field: &str| {
        chrono::DateTime::parse_from_rfc3339(notification[field].as_str().expect(field))
            .expect("a timestamp")
    };
    assert!(
        timestamp(&sent[1], "sent_at") <= timestamp(&sent[2], "created_at"),
        "the confirmation was sent before the cancellation was handled: {sent:#?}"
    );
    assert!(app.parked(&admin, "").await.is_empty());
}

/// Discard and bulk retry over HTTP: who may, what they answer, what they change.
async fn parked_events_are_discarded_or_retried_in_bulk(store: TestStore) {
    let app = spawn_app_with(store, |settings| settings.messaging.max_attempts = 1).await;
    let mailbox = Mailbox::of(&app);
    mailbox.block();
    let admin = app.admin_token().await;
    let ada = app.customer_token().await;
    let bob = app.customer_token().await;
    app.deliver_events().await;
    // Three welcomes parked: the administrator's, Ada's and Bob's.
    let parked = app
        .parked(&admin, "?event_name=auth.user_registered.v1")
        .await;
    assert_eq!(parked.len(), 3, "{parked:#?}");
    app.assert_metric(r#"shop_events_parked{owner="notifications"} 3"#)
        .await;
    app.assert_metric(r#"shop_events_parked{owner="auth"} 0"#)
        .await;

    let some_id = parked[0]["id"].as_str().expect("id");
    for path in [
        format!("/api/admin/events/{some_id}/discard"),
        "/api/admin/events/retry".to_owned(),
    ] {
        app.post(&path, Some(&ada), json!({}))
            .await
            .error(StatusCode::FORBIDDEN, "forbidden");
        app.post(&path, None, json!({}))
            .await
            .error(StatusCode::UNAUTHORIZED, "missing_token");
    }
    app.get("/api/admin/events/discarded", Some(&ada))
        .await
        .error(StatusCode::FORBIDDEN, "forbidden");
    app.post(
        "/api/admin/events/retry?owner=Not%20a%20name",
        Some(&admin),
        json!({}),
    )
    .await
    .error(StatusCode::BAD_REQUEST, "invalid_query");
    app.get("/api/admin/events/failed?event_name=", Some(&admin))
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_query");
    app.post(
        &format!("/api/admin/events/{}/discard", uuid::Uuid::now_v7()),
        Some(&admin),
        json!({}),
    )
    .await
    .error(StatusCode::NOT_FOUND, "event_not_found");

    // Ada's welcome is given up.
    let ada_id = app.get("/api/auth/me", Some(&ada)).await.ok(StatusCode::OK)["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let adas = parked
        .iter()
        .find(|event| event["aggregate_id"] == ada_id.as_str())
        .expect("Ada's welcome is parked");
    let adas_id = adas["id"].as_str().expect("id");
    let discarded = app
        .post(
            &format!("/api/admin/events/{adas_id}/discard"),
            Some(&admin),
            json!({}),
        )
        .await;
    assert_eq!(
        discarded.ok(StatusCode::OK),
        &json!({"id": adas_id, "status": "discarded"})
    );
    app.post(
        &format!("/api/admin/events/{adas_id}/discard"),
        Some(&admin),
        json!({}),
    )
    .await
    .error(StatusCode::NOT_FOUND, "event_not_found");
    app.post(
        &format!("/api/admin/events/{adas_id}/retry"),
        Some(&admin),
        json!({}),
    )
    .await
    .error(StatusCode::NOT_FOUND, "event_not_found");
    let listed = app.get("/api/admin/events/discarded", Some(&admin)).await;
    let listed = listed.ok(StatusCode::OK).as_array().expect("list").clone();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], adas_id);
    assert_eq!(listed[0]["status"], "discarded");
    assert_eq!(app.parked(&admin, "").await.len(), 2);

    mailbox.unblock();
    let retried = app
        .post(
            "/api/admin/events/retry?owner=orders",
            Some(&admin),
            json!({}),
        )
        .await;
    assert_eq!(retried.ok(StatusCode::ACCEPTED), &json!({"retried": 0}));
    let retried = app
        .post(
            "/api/admin/events/retry?owner=notifications&event_name=auth.user_registered.v1",
            Some(&admin),
            json!({}),
        )
        .await;
    assert_eq!(retried.ok(StatusCode::ACCEPTED), &json!({"retried": 2}));
    let again = app
        .post("/api/admin/events/retry", Some(&admin), json!({}))
        .await;
    assert_eq!(again.ok(StatusCode::ACCEPTED), &json!({"retried": 0}));
    app.deliver_events().await;
    assert_eq!(kinds(&app.sent_notifications(&bob).await), ["welcome"]);
    assert_eq!(kinds(&app.sent_notifications(&admin).await), ["welcome"]);
    assert!(
        app.sent_notifications(&ada).await.is_empty(),
        "a discarded event is never handled"
    );
    assert!(app.parked(&admin, "").await.is_empty());
    app.assert_metric(r#"shop_events_parked{owner="notifications"} 0"#)
        .await;
}

async fn notifications_are_private(store: TestStore) {
    let app = spawn_app_with(store, |_| {}).await;
    let alice = app.customer_token().await;
    let bob = app.customer_token().await;
    app.deliver_events().await;
    let mine = app.get("/api/notifications", Some(&alice)).await;
    let mine = mine.ok(StatusCode::OK);
    assert_eq!(mine["total"], 1);
    let theirs = app.get("/api/notifications", Some(&bob)).await;
    assert_ne!(
        theirs.ok(StatusCode::OK)["items"][0]["id"],
        mine["items"][0]["id"]
    );
    app.get("/api/notifications", None)
        .await
        .error(StatusCode::UNAUTHORIZED, "missing_token");
    app.get("/api/notifications?per_page=0", Some(&alice))
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_query");
}

testkit::backend_tests!(
    failed_handlers_are_listed_and_replayed,
    a_parked_confirmation_holds_back_the_cancellation_of_its_order,
    parked_events_are_discarded_or_retried_in_bulk,
    notifications_are_private
);
