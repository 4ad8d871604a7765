//! Administration of the catalog: who may, and what happens to bad input.

use reqwest::StatusCode;
use serde_json::json;
use testkit::TestStore;

use crate::helpers::{TestApp, spawn_app};

fn new_product(sku: &str) -> serde_json::Value {
    json!({
        "sku": sku,
        "name": "Desk lamp",
        "price": {"amount_minor": 2999, "currency": "eur"},
        "category": "Home",
        "initial_stock": 4,
    })
}

async fn total_products(app: &TestApp) -> u64 {
    app.get("/api/catalog/products", None)
        .await
        .ok(StatusCode::OK)["total"]
        .as_u64()
        .expect("total")
}

async fn admins_create_update_and_restock(store: TestStore) {
    let app = spawn_app(store).await;
    let admin = app.admin_token().await;
    let created = app
        .post("/api/catalog/products", Some(&admin), new_product("lamp-1"))
        .await;
    let product = created.ok(StatusCode::CREATED).clone();
    let id = product["id"].as_str().expect("id").to_owned();
    assert_eq!(
        created.headers["location"],
        format!("/api/catalog/products/{id}")
    );
    assert_eq!(product["sku"], "LAMP-1");
    assert_eq!(product["category"], "home");
    assert_eq!(
        product["price"],
        json!({"amount_minor": 2999, "currency": "EUR"})
    );
    assert_eq!(product["active"], true);
    assert_eq!(product["stock"], json!({"available": 4, "reserved": 0}));

    app.post("/api/catalog/products", Some(&admin), new_product("LAMP-1"))
        .await
        .error(StatusCode::CONFLICT, "sku_taken");

    let patched = app
        .patch(
            &format!("/api/catalog/products/{id}"),
            Some(&admin),
            json!({"price": {"amount_minor": 2499, "currency": "EUR"}, "active": false}),
        )
        .await;
    let patched = patched.ok(StatusCode::OK);
    assert_eq!(patched["price"]["amount_minor"], 2499);
    assert_eq!(patched["active"], false);
    assert_eq!(patched["name"], "Desk lamp");

    let stock = format!("/api/catalog/products/{id}/stock");
    // JSON Schema reads 6.0 as the integer 6, and so does the shop; 0.5 is no integer.
    let level = app.post(&stock, Some(&admin), json!({"delta": 6.0})).await;
    assert_eq!(
        level.ok(StatusCode::OK),
        &json!({"available": 10, "reserved": 0})
    );
    let level = app.post(&stock, Some(&admin), json!({"delta": -10})).await;
    assert_eq!(
        level.ok(StatusCode::OK),
        &json!({"available": 0, "reserved": 0})
    );
    app.post(&stock, Some(&admin), json!({"delta": 0.5}))
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
    let refused = app.post(&stock, Some(&admin), json!({"delta": -1})).await;
    let error = refused.error(StatusCode::CONFLICT, "insufficient_stock");
    assert_eq!(error["available"], 0);
    // Zero changes nothing and says so; a delta out of range is a field error; a stock above
    // the limit conflicts with what is there.
    assert_eq!(
        app.post(&stock, Some(&admin), json!({"delta": 0}))
            .await
            .ok(StatusCode::OK),
        &json!({"available": 0, "reserved": 0})
    );
    app.post(&stock, Some(&admin), json!({"delta": i64::MIN}))
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    app.post(&stock, Some(&admin), json!({"delta": 1_000_000_000}))
        .await
        .ok(StatusCode::OK);
    let full = app.post(&stock, Some(&admin), json!({"delta": 1})).await;
    let error = full.error(StatusCode::CONFLICT, "stock_limit_exceeded");
    assert_eq!(error["limit"], 1_000_000_000);
    let unknown = uuid::Uuid::now_v7();
    app.post(
        &format!("/api/catalog/products/{unknown}/stock"),
        Some(&admin),
        json!({"delta": 1}),
    )
    .await
    .error(StatusCode::NOT_FOUND, "product_not_found");
}

async fn customers_get_403_and_strangers_401(store: TestStore) {
    let app = spawn_app(store).await;
    let admin = app.admin_token().await;
    let customer = app.customer_token().await;
    let product = app
        .create_product(&admin, "GUARDED", 1000, "things", 1)
        .await;
    let id = product["id"].as_str().expect("id");
    let before = total_products(&app).await;

    for (token, status, code) in [
        (Some(customer.as_str()), StatusCode::FORBIDDEN, "forbidden"),
        (None, StatusCode::UNAUTHORIZED, "missing_token"),
    ] {
        app.post("/api/catalog/products", token, new_product("NEW-ONE"))
            .await
            .error(status, code);
        app.patch(
            &format!("/api/catalog/products/{id}"),
            token,
            json!({"name": "Hacked"}),
        )
        .await
        .error(status, code);
        app.post(
            &format!("/api/catalog/products/{id}/stock"),
            token,
            json!({"delta": 100}),
        )
        .await
        .error(status, code);
    }
    // Nothing changed.
    assert_eq!(total_products(&app).await, before);
    let unchanged = app.get(&format!("/api/catalog/products/{id}"), None).await;
    assert_eq!(unchanged.ok(StatusCode::OK), &product);
}

async fn invalid_products_are_422_with_fields(store: TestStore) {
    let app = spawn_app(store).await;
    let admin = app.admin_token().await;
    let answer = app
        .post(
            "/api/catalog/products",
            Some(&admin),
            json!({
                "sku": "no spaces",
                "name": "",
                "price": {"amount_minor": 0, "currency": "EUR"},
                "category": "x",
            }),
        )
        .await;
    let error = answer.error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    insta::assert_json_snapshot!("create_product_validation_failed", error);
    assert_eq!(total_products(&app).await, 0);
}

testkit::backend_tests!(
    admins_create_update_and_restock,
    customers_get_403_and_strangers_401,
    invalid_products_are_422_with_fields,
);
