//! Malformed requests: always a 4xx JSON error with a stable code, never a 500, nothing
//! written.

use reqwest::StatusCode;
use serde_json::json;
use testkit::TestStore;

use crate::helpers::{TestApp, spawn_app};

async fn product_count(app: &TestApp) -> u64 {
    app.get("/api/catalog/products", None)
        .await
        .ok(StatusCode::OK)["total"]
        .as_u64()
        .expect("total")
}

fn raw(
    app: &TestApp,
    token: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::RequestBuilder {
    app.client
        .post(app.url("/api/catalog/products"))
        .bearer_auth(token)
        .header("Content-Type", content_type)
        .body(body)
}

async fn malformed_bodies(store: TestStore) {
    let app = spawn_app(store).await;
    let admin = app.admin_token().await;

    let cases: Vec<(&str, String, StatusCode, &str)> = vec![
        ("application/json", "{not json".into(), StatusCode::BAD_REQUEST, "malformed_json"),
        ("application/json", String::new(), StatusCode::BAD_REQUEST, "malformed_json"),
        (
            "application/json",
            json!({"sku": 5, "name": "x", "price": {"amount_minor": 1, "currency": "EUR"}, "category": "c"}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "application/json",
            json!({"sku": "S", "name": "x", "price": {"amount_minor": -5, "currency": "EUR"}, "category": "c"}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "application/json",
            json!({"sku": "S", "name": "x", "price": {"amount_minor": 1.5, "currency": "EUR"}, "category": "c"}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "application/json",
            json!({"sku": "S", "name": "x", "price": {"amount_minor": 1, "currency": "EUR"}, "category": "c", "colour": "red"}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        ("text/plain", "hello".into(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
        (
            "application/json",
            format!("{{\"sku\": \"{}\"}}", "x".repeat(100_000)),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
    ];
    for (content_type, body, status, code) in cases {
        let answer = app
            .send(raw(&app, &admin, content_type, body.clone()))
            .await;
        assert_eq!(answer.status, status, "{body:.80}: {:#}", answer.body);
        assert_eq!(
            answer.body["error"]["code"], code,
            "{body:.80}: {:#}",
            answer.body
        );
    }
    assert_eq!(product_count(&app).await, 0, "nothing was written");

    let register = app
        .send(
            app.client
                .post(app.url("/api/auth/register"))
                .header("Content-Type", "application/json")
                .body(r#"{"email": "a@b.co", "password": ["not", "a", "string"], "display_name": "A"}"#),
        )
        .await;
    register.error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
    app.login("a@b.co", "whatever1")
        .await
        .error(StatusCode::UNAUTHORIZED, "invalid_credentials");
}

async fn error_bodies_have_the_house_shape(store: TestStore) {
    let app = spawn_app(store).await;
    let answer = app
        .send(
            app.client
                .post(app.url("/api/auth/login"))
                .header("Content-Type", "application/json")
                .body("["),
        )
        .await;
    let error = answer.error(StatusCode::BAD_REQUEST, "malformed_json");
    assert_eq!(answer.headers["content-type"], "application/json");
    let keys: Vec<_> = error.as_object().expect("object").keys().cloned().collect();
    assert_eq!(keys, ["code", "message"]);
}

testkit::backend_tests!(malformed_bodies, error_bodies_have_the_house_shape);
