//! Checkout across contexts, over HTTP: the journey, failures, concurrency, idempotency.

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::TestStore;

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

pub fn order_body(product_id: &str, quantity: u32, token: &str) -> Value {
    json!({
        "lines": [{"product_id": product_id, "quantity": quantity}],
        "shipping_address": {
            "name": "Ada Lovelace",
            "line1": "12 St James's Square",
            "city": "London",
            "postal_code": "SW1Y 4JH",
            "country": "GB"
        },
        "payment_token": token,
    })
}

impl TestApp {
    pub async fn place_order(
        &self,
        token: &str,
        key: &str,
        body: &Value,
    ) -> crate::helpers::Answer {
        self.send(
            self.client
                .post(self.url("/api/orders"))
                .bearer_auth(token)
                .header("Idempotency-Key", key)
                .json(body),
        )
        .await
    }

    pub async fn stock(&self, product_id: &str) -> Value {
        self.get(&format!("/api/catalog/products/{product_id}"), None)
            .await
            .ok(StatusCode::OK)["stock"]
            .clone()
    }

    pub async fn notification_kinds(&self, token: &str) -> Vec<String> {
        let page = self
            .get("/api/notifications?per_page=100", Some(token))
            .await;
        let mut kinds: Vec<String> = page.ok(StatusCode::OK)["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|n| n["kind"].as_str().expect("kind").to_owned())
            .collect();
        kinds.reverse(); // oldest first reads like the story
        kinds
    }
}

/// register → welcome → browse → order → confirmed → cancel → refunded, with the messages.
async fn the_whole_journey(store: TestStore) {
    let app = spawn_app(store).await;
    let admin = app.admin_token().await;
    let product = app
        .create_product(&admin, "JOURNEY", 2500, "things", 5)
        .await;
    let product_id = product["id"].as_str().expect("id");

    app.register("ada@example.com", "analytical engine", "Ada")
        .await
        .ok(StatusCode::CREATED);
    let ada = app.token("ada@example.com", "analytical engine").await;
    app.deliver_events().await;
    assert_eq!(app.notification_kinds(&ada).await, ["welcome"]);

    let browse = app.get("/api/catalog/products?q=journey", None).await;
    assert_eq!(browse.ok(StatusCode::OK)["total"], 1);

    let placed = app
        .place_order(&ada, "journey-1", &order_body(product_id, 2, "tok_visa"))
        .await;
    let order = placed.ok(StatusCode::CREATED).clone();
    let order_id = order["id"].as_str().expect("id").to_owned();
    assert_eq!(
        placed.headers["location"],
        format!("/api/orders/{order_id}")
    );
    assert_eq!(order["status"], "confirmed");
    assert_eq!(
        order["total"],
        json!({"amount_minor": 5000, "currency": "EUR"})
    );
    assert_eq!(order["lines"][0]["name"], "Product JOURNEY");
    assert_eq!(order["lines"][0]["unit_price"]["amount_minor"], 2500);
    assert_eq!(
        app.stock(product_id).await,
        json!({"available": 3, "reserved": 0})
    );

    let detail = app
        .get(&format!("/api/orders/{order_id}"), Some(&ada))
        .await;
    let detail = detail.ok(StatusCode::OK);
    assert_eq!(detail["payment"]["status"], "captured");
    assert_eq!(detail["payment"]["captured"]["amount_minor"], 5000);
    assert_eq!(detail["products"][0]["available"], 3);

    app.deliver_events().await;
    assert_eq!(
        app.notification_kinds(&ada).await,
        ["welcome", "order_confirmed"]
    );

    // A price change afterwards does not touch the order's snapshot.
    app.patch(
        &format!("/api/catalog/products/{product_id}"),
        Some(&admin),
        json!({"price": {"amount_minor": 9999, "currency": "EUR"}}),
    )
    .await
    .ok(StatusCode::OK);

    let cancelled = app
        .post(
            &format!("/api/orders/{order_id}/cancel"),
            Some(&ada),
            json!({}),
        )
        .await;
    let cancelled = cancelled.ok(StatusCode::OK);
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["lines"][0]["unit_price"]["amount_minor"], 2500);
    assert_eq!(
        app.stock(product_id).await,
        json!({"available": 5, "reserved": 0})
    );
    let detail = app
        .get(&format!("/api/orders/{order_id}"), Some(&ada))
        .await;
    let detail = detail.ok(StatusCode::OK);
    assert_eq!(detail["payment"]["status"], "refunded");
    assert_eq!(detail["payment"]["refunded"]["amount_minor"], 5000);

    app.deliver_events().await;
    assert_eq!(
        app.notification_kinds(&ada).await,
        ["welcome", "order_confirmed", "order_cancelled"]
    );
    // Delivering again changes nothing: one message per event.
    app.deliver_events().await;
    assert_eq!(app.notification_kinds(&ada).await.len(), 3);

    // Every store call of the journey's requests ran on the store runtime: no pooled
    // connection was opened on the HTTP worker's runtime (web_kit::runtime).
    assert_eq!(db_kit::opened::on_http_workers(), 0);
}

/// Declines and provider errors: no capture, stock exactly as before, `payment_failed`.
async fn failed_payments_release_the_stock(store: TestStore) {
    let app = spawn_app(store).await;
    let admin = app.admin_token().await;
    let customer = app.customer_token().await;
    let product = app
        .create_product(&admin, "FRAGILE", 1000, "things", 4)
        .await;
    let product_id = product["id"].as_str().expect("id");

    for (token, reason) in [
        ("tok_declined", "declined"),
        ("tok_insufficient_funds", "insufficient_funds"),
        ("tok_provider_error", "provider_error"),
        ("tok_unknown", "invalid_payment_token"),
        ("tok_slow", "payment_timed_out"),
    ] {
        let placed = app
            .place_order(
                &customer,
                &format!("fail-{token}"),
                &order_body(product_id, 3, token),
            )
            .await;
        let order = placed.ok(StatusCode::CREATED);
        assert_eq!(order["status"], "payment_failed", "{token}");
        assert_eq!(order["failure_reason"], reason, "{token}");
        assert_eq!(
            app.stock(product_id).await,
            json!({"available": 4, "reserved": 0}),
            "{token}"
        );
        let detail = app
            .get(
                &format!("/api/orders/{}", order["id"].as_str().expect("id")),
                Some(&customer),
            )
            .await;
        let payment = &detail.ok(StatusCode::OK)["payment"];
        assert_eq!(payment["captured"]["amount_minor"], 0, "{token}: {payment}");
        assert!(
            matches!(payment["status"].as_str(), Some("failed" | "voided")),
            "{token}: {payment}"
        );
    }
    // A failed order cannot be cancelled.
    let failed = app
        .place_order(
            &customer,
            "fail-again",
            &order_body(product_id, 1, "tok_declined"),
        )
        .await;
    let id = failed.body["id"].as_str().expect("id");
    app.post(
        &format!("/api/orders/{id}/cancel"),
        Some(&customer),
        json!({}),
    )
    .await
    .error(StatusCode::CONFLICT, "not_cancellable");
}

async fn out_of_stock_orders_are_rejected_and_not_charged(store: TestStore) {
    let app = spawn_app(store).await;
    let admin = app.admin_token().await;
    let customer = app.customer_token().await;
    let product = app
        .create_product(&admin, "SCARCE", 1000, "things", 1)
        .await;
    let product_id = product["id"].as_str().expect("id");
    let placed = app
        .place_order(
            &customer,
            "too-many",
            &order_body(product_id, 2, "tok_visa"),
        )
        .await;
    let order = placed.ok(StatusCode::CREATED);
    assert_eq!(order["status"], "rejected");
    assert_eq!(order["failure_reason"], "out_of_stock");
    let detail = app
        .get(
            &format!("/api/orders/{}", order["id"].as_str().expect("id")),
            Some(&customer),
        )
        .await;
    assert_eq!(
        detail.ok(StatusCode::OK)["payment"],
        Value::Null,
        "nothing charged"
    );
    assert_eq!(
        app.stock(product_id).await,
        json!({"available": 1, "reserved": 0})
    );
}

/// The issue's race: 100 orders at once for the last 5 units.
async fn a_hundred_concurrent_orders_for_five_units(store: TestStore) {
    // Ten customers with ten orders each in flight at once: above the default bound on a
    // customer's checkouts in flight, which is not what this race is about.
    let app = spawn_app_with(store, |settings| {
        settings.orders.max_in_flight_per_customer = 10;
    })
    .await;
    let admin = app.admin_token().await;
    let product = app
        .create_product(&admin, "LAST-FIVE", 1500, "things", 5)
        .await;
    let product_id = product["id"].as_str().expect("id").to_owned();
    let mut customers = Vec::new();
    for _ in 0..10 {
        customers.push(app.customer_token().await);
    }
    let app = std::sync::Arc::new(app);
    let attempts = (0..100).map(|i| {
        let app = app.clone();
        let token = customers[i % 10].clone();
        let body = order_body(&product_id, 1, "tok_visa");
        tokio::spawn(async move { app.place_order(&token, &format!("race-{i}"), &body).await })
    });
    let answers: Vec<_> = join_all(attempts)
        .await
        .into_iter()
        .map(|a| a.expect("task"))
        .collect();
    let status_of = |wanted: &str| {
        answers
            .iter()
            .filter(|answer| {
                answer.status == StatusCode::CREATED && answer.body["status"] == wanted
            })
            .count()
    };
    assert_eq!(
        (status_of("confirmed"), status_of("rejected")),
        (5, 95),
        "{answers:#?}"
    );
    assert_eq!(
        app.stock(&product_id).await,
        json!({"available": 0, "reserved": 0})
    );
    let all = app.get("/api/orders?per_page=100", Some(&admin)).await;
    let all = all.ok(StatusCode::OK);
    assert_eq!(all["total"], 100);
    let captured = all["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|order| order["status"] == "confirmed")
        .count();
    assert_eq!(captured, 5);
}

/// The issue's idempotency race: 20 identical requests at once → one order, one charge.
async fn twenty_concurrent_requests_with_one_key(store: TestStore) {
    let app = spawn_app(store).await;
    let admin = app.admin_token().await;
    let customer = app.customer_token().await;
    let product = app.create_product(&admin, "ONCE", 1200, "things", 50).await;
    let product_id = product["id"].as_str().expect("id").to_owned();
    let body = order_body(&product_id, 2, "tok_visa");
    let app = std::sync::Arc::new(app);
    let attempts = (0..20).map(|_| {
        let app = app.clone();
        let token = customer.clone();
        let body = body.clone();
        tokio::spawn(async move { app.place_order(&token, "the-one-key", &body).await })
    });
    let answers: Vec<_> = join_all(attempts)
        .await
        .into_iter()
        .map(|a| a.expect("task"))
        .collect();
    // One request creates the order and checks it out. Each of the others either arrives
    // while that runs — 409 `request_in_progress` with `Retry-After`, never a second
    // runner — or after, and replays the finished order.
    let ids: std::collections::BTreeSet<_> = answers
        .iter()
        .filter(|answer| answer.status.is_success())
        .map(|answer| answer.body["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids.len(), 1, "one order");
    let created = answers
        .iter()
        .filter(|a| a.status == StatusCode::CREATED)
        .count();
    assert_eq!(created, 1, "one request created it");
    for answer in &answers {
        match answer.status {
            StatusCode::CREATED => {}
            StatusCode::OK => assert_eq!(answer.headers["idempotent-replayed"], "true"),
            StatusCode::CONFLICT => {
                assert_eq!(
                    answer.body["error"]["code"], "request_in_progress",
                    "{answer:?}"
                );
                assert!(answer.headers.contains_key("retry-after"), "{answer:?}");
            }
            _ => panic!("unexpected answer {answer:?}"),
        }
    }

    let id = ids.into_iter().next().expect("an id");
    let detail = app.get(&format!("/api/orders/{id}"), Some(&customer)).await;
    let detail = detail.ok(StatusCode::OK);
    assert_eq!(detail["order"]["status"], "confirmed");
    assert_eq!(
        detail["payment"]["captured"]["amount_minor"], 2400,
        "charged once, not 20 times"
    );
    assert_eq!(
        app.stock(&product_id).await,
        json!({"available": 48, "reserved": 0})
    );
    let mine = app.get("/api/orders", Some(&customer)).await;
    assert_eq!(mine.ok(StatusCode::OK)["total"], 1);
    let captured_events = app
        .count_events("payments", "payments.payment_captured.v1")
        .await;
    assert_eq!(captured_events, 1, "one capture");

    // The same key with another body is refused; no key at all is a 400.
    app.place_order(
        &customer,
        "the-one-key",
        &order_body(&product_id, 3, "tok_visa"),
    )
    .await
    .error(StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused");
    let no_key = app
        .send(
            app.client
                .post(app.url("/api/orders"))
                .bearer_auth(&customer)
                .json(&body),
        )
        .await;
    no_key.error(StatusCode::BAD_REQUEST, "missing_idempotency_key");
}

async fn customers_only_see_their_own_orders(store: TestStore) {
    let app = spawn_app(store).await;
    let admin = app.admin_token().await;
    let (alice, bob) = (app.customer_token().await, app.customer_token().await);
    let product = app.create_product(&admin, "MINE", 700, "things", 10).await;
    let product_id = product["id"].as_str().expect("id");
    let placed = app
        .place_order(&alice, "alice-1", &order_body(product_id, 1, "tok_visa"))
        .await;
    let id = placed.body["id"].as_str().expect("id").to_owned();

    app.get(&format!("/api/orders/{id}"), Some(&bob))
        .await
        .error(StatusCode::NOT_FOUND, "order_not_found");
    app.post(&format!("/api/orders/{id}/cancel"), Some(&bob), json!({}))
        .await
        .error(StatusCode::NOT_FOUND, "order_not_found");
    assert_eq!(
        app.get("/api/orders", Some(&bob)).await.ok(StatusCode::OK)["total"],
        0
    );
    app.get(&format!("/api/orders/{id}"), Some(&admin))
        .await
        .ok(StatusCode::OK);
    app.get("/api/orders", None)
        .await
        .error(StatusCode::UNAUTHORIZED, "missing_token");
    let unknown = app
        .place_order(
            &alice,
            "unknown",
            &order_body(&uuid::Uuid::now_v7().to_string(), 1, "tok_visa"),
        )
        .await;
    let error = unknown.error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(error["fields"][0]["code"], "unknown_product");
}

/// The `Idempotency-Key` header is checked before anything else (the IETF draft's 400), so a
/// request without a usable key says so whatever its body; nothing is stored.
async fn a_missing_or_malformed_key_is_a_400_before_the_body(store: TestStore) {
    let app = spawn_app(store).await;
    let customer = app.customer_token().await;
    let without_key = |body: &'static str| {
        app.client
            .post(app.url("/api/orders"))
            .bearer_auth(&customer)
            .header("Content-Type", "application/json")
            .body(body)
    };
    for body in ["{not json", "{}", r#"{"lines": []}"#] {
        app.send(without_key(body))
            .await
            .error(StatusCode::BAD_REQUEST, "missing_idempotency_key");
    }
    for key in ["has space", &"k".repeat(201)] {
        app.place_order(&customer, key, &json!({}))
            .await
            .error(StatusCode::BAD_REQUEST, "invalid_idempotency_key");
    }
    let mine = app.get("/api/orders", Some(&customer)).await;
    assert_eq!(mine.ok(StatusCode::OK)["total"], 0);
}

/// Payments' token rule applies before any stock is held: a token payments would refuse is a
/// 422 on the request, not a reservation followed by a failed order and an e-mail.
async fn a_malformed_payment_token_is_refused_before_stock_is_reserved(store: TestStore) {
    let app = spawn_app(store).await;
    let admin = app.admin_token().await;
    let customer = app.customer_token().await;
    let product = app.create_product(&admin, "TOKEN", 500, "things", 3).await;
    let product_id = product["id"].as_str().expect("id");
    for token in ["tok visa", "", &"t".repeat(65), "tök"] {
        let refused = app
            .place_order(&customer, "bad-token", &order_body(product_id, 1, token))
            .await;
        let error = refused.error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert_eq!(error["fields"][0]["field"], "payment_token", "{token:?}");
        assert_eq!(error["fields"][0]["code"], "invalid_payment_token");
    }
    assert_eq!(
        app.stock(product_id).await,
        json!({"available": 3, "reserved": 0})
    );
    let mine = app.get("/api/orders", Some(&customer)).await;
    assert_eq!(mine.ok(StatusCode::OK)["total"], 0);
    assert_eq!(
        app.count_events("orders", "orders.order_placed.v1").await,
        0
    );
}

testkit::backend_tests!(
    a_missing_or_malformed_key_is_a_400_before_the_body,
    a_malformed_payment_token_is_refused_before_stock_is_reserved,
    the_whole_journey,
    failed_payments_release_the_stock,
    out_of_stock_orders_are_rejected_and_not_charged,
    a_hundred_concurrent_orders_for_five_units,
    twenty_concurrent_requests_with_one_key,
    customers_only_see_their_own_orders,
);
