//! Health, readiness, request ids, unknown routes and the API documentation.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::TestStore;

use crate::helpers::spawn_app;

async fn health_and_readiness(store: TestStore) {
    let app = spawn_app(store).await;
    assert_eq!(
        app.get("/healthz", None).await.ok(StatusCode::OK),
        &json!({"status": "ok"})
    );
    assert_eq!(
        app.get("/readyz", None).await.ok(StatusCode::OK),
        &json!({"status": "ready", "checks": [
            {"context": "auth", "status": "ok"},
            {"context": "catalog", "status": "ok"},
            {"context": "payments", "status": "ok"},
            {"context": "orders", "status": "ok"},
            {"context": "notifications", "status": "ok"},
        ]})
    );
}

async fn every_response_carries_a_request_id(store: TestStore) {
    let app = spawn_app(store).await;
    let generated = app.get("/healthz", None).await;
    let id = generated.headers["x-request-id"].to_str().expect("ascii");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");

    let echoed = app
        .send(
            app.client
                .get(app.url("/api/nope"))
                .header("X-Request-Id", "trace-42"),
        )
        .await;
    assert_eq!(echoed.headers["x-request-id"], "trace-42");
    echoed.error(StatusCode::NOT_FOUND, "route_not_found");

    // A caller's id that could forge log lines is replaced, not echoed.
    let forged = app
        .send(
            app.client
                .get(app.url("/healthz"))
                .header("X-Request-Id", "a b"),
        )
        .await;
    assert_ne!(forged.headers["x-request-id"], "a b");
}

async fn unsupported_methods_get_a_json_405(store: TestStore) {
    let app = spawn_app(store).await;
    let answer = app
        .call(
            reqwest::Method::DELETE,
            "/api/catalog/categories",
            None,
            None,
        )
        .await;
    answer.error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    assert_eq!(answer.headers["allow"], "GET");

    // Every resource says what it does serve (RFC 9110), whatever the method tried.
    for (method, path, allow) in [
        (reqwest::Method::PUT, "/api/catalog/products", "GET, POST"),
        (
            reqwest::Method::DELETE,
            "/api/catalog/products/0195f9a4-0000-7000-8000-000000000000",
            "GET, PATCH",
        ),
        (
            reqwest::Method::GET,
            "/api/orders/0195f9a4-0000-7000-8000-000000000000/cancel",
            "POST",
        ),
        (reqwest::Method::OPTIONS, "/healthz", "GET"),
        (reqwest::Method::TRACE, "/api/orders", "POST, GET"),
    ] {
        let answer = app.call(method.clone(), path, None, None).await;
        answer.error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
        assert_eq!(answer.headers["allow"], allow, "{method} {path}");
    }
}

/// Every route the shop serves is in the OpenAPI document, and every schema it refers to
/// is defined.
async fn the_openapi_document_covers_every_route(store: TestStore) {
    let app = spawn_app(store).await;
    let document = app
        .get("/api-docs/openapi.json", None)
        .await
        .ok(StatusCode::OK)
        .clone();
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3."))
    );
    let mut routes = BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            routes.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    let expected: BTreeSet<String> = [
        "GET /healthz",
        "GET /readyz",
        "GET /metrics",
        "POST /api/auth/register",
        "POST /api/auth/login",
        "GET /api/auth/me",
        "GET /api/catalog/products",
        "POST /api/catalog/products",
        "GET /api/catalog/products/{id}",
        "PATCH /api/catalog/products/{id}",
        "POST /api/catalog/products/{id}/stock",
        "GET /api/catalog/categories",
        "GET /api/payments/test-tokens",
        "POST /api/orders",
        "GET /api/orders",
        "GET /api/orders/{id}",
        "POST /api/orders/{id}/cancel",
        "GET /api/notifications",
        "GET /api/admin/events/failed",
        "GET /api/admin/events/discarded",
        "POST /api/admin/events/retry",
        "POST /api/admin/events/{id}/retry",
        "GET /api/admin/orders/parked",
        "POST /api/admin/orders/{id}/retry",
        "POST /api/admin/events/{id}/discard",
        "GET /api/admin/routing",
        "PUT /api/admin/routing/{context}",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(routes, expected);

    let mut references = BTreeSet::new();
    collect_refs(&document, &mut references);
    let schemas = document["components"]["schemas"]
        .as_object()
        .expect("schemas");
    for reference in &references {
        let name = reference.trim_start_matches("#/components/schemas/");
        assert!(schemas.contains_key(name), "{reference} is not defined");
    }
    for schema in [
        "ErrorBody",
        "RegisterUser",
        "Product",
        "NewProduct",
        "StockLevel",
    ] {
        assert!(schemas.contains_key(schema), "{schema} is missing");
    }
    assert!(document["components"]["securitySchemes"]["bearer"].is_object());

    // The text rules are written as literals in the `-api` crates (utoipa takes no consts):
    // each must be exactly one of the rules the server applies.
    let mut patterns = BTreeSet::new();
    collect_patterns(&document, &mut patterns);
    let known = [
        kernel::text::LINE_PATTERN,
        kernel::text::NO_CONTROL_PATTERN,
        kernel::idempotency::IDEMPOTENCY_KEY_PATTERN,
        payments_api::PAYMENT_TOKEN_PATTERN,
        shop::admin::NAME_PATTERN,
        "^[A-Za-z0-9._-]{1,64}$",
        "^[A-Za-z0-9-]{1,64}$",
        "^[A-Za-z]{2}$",
        "^[A-Za-z]{3}$",
    ];
    for pattern in &patterns {
        assert!(
            known.contains(&pattern.as_str()),
            "undocumented or mistyped pattern {pattern:?}"
        );
    }
    for rule in [
        kernel::text::LINE_PATTERN,
        payments_api::PAYMENT_TOKEN_PATTERN,
    ] {
        assert!(patterns.contains(rule), "{rule:?} is not in the document");
    }

    let docs = app.send(app.client.get(app.url("/docs/"))).await;
    assert_eq!(docs.status, StatusCode::OK);
    assert!(
        docs.body
            .as_str()
            .is_some_and(|html| html.contains("Swagger UI"))
    );
}

fn collect_patterns(value: &Value, into: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("pattern", Value::String(pattern)) => {
                        into.insert(pattern.clone());
                    }
                    _ => collect_patterns(value, into),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_patterns(item, into)),
        _ => {}
    }
}

fn collect_refs(value: &Value, into: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("$ref", Value::String(reference)) => {
                        into.insert(reference.clone());
                    }
                    _ => collect_refs(value, into),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_refs(item, into)),
        _ => {}
    }
}

/// Requests, checkouts and events are counted; routes are labelled by pattern, not path.
async fn metrics_count_requests_checkouts_and_events(store: TestStore) {
    let app = spawn_app(store).await;
    let admin = app.admin_token().await;
    let customer = app.customer_token().await;
    let product = app.create_product(&admin, "METRIC", 500, "things", 3).await;
    let id = product["id"].as_str().expect("id");
    app.get(&format!("/api/catalog/products/{id}"), None)
        .await
        .ok(StatusCode::OK);
    app.place_order(
        &customer,
        "metrics-1",
        &crate::checkout::order_body(id, 1, "tok_visa"),
    )
    .await
    .ok(StatusCode::CREATED);
    app.deliver_events().await;

    let answer = app.send(app.client.get(app.url("/metrics"))).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        answer.headers["content-type"]
            .to_str()
            .is_ok_and(|t| t.starts_with("text/plain"))
    );
    let text = answer.body.as_str().expect("text").to_owned();
    for expected in [
        r#"shop_http_requests_total{method="GET",route="/api/catalog/products/{id}",status="200"}"#,
        r#"shop_http_requests_total{method="POST",route="/api/orders",status="201"}"#,
        r#"shop_http_request_duration_seconds_bucket{method="POST",route="/api/orders",le="0.1"}"#,
        r#"shop_checkouts_total{outcome="confirmed",reason=""}"#,
        r#"shop_events_relayed_total{publisher="orders",outcome="dispatched"}"#,
        r#"shop_events_handled_total{consumer="notifications",outcome="done"}"#,
    ] {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
}

testkit::backend_tests!(
    metrics_count_requests_checkouts_and_events,
    health_and_readiness,
    every_response_carries_a_request_id,
    unsupported_methods_get_a_json_405,
    the_openapi_document_covers_every_route,
);
