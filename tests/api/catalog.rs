//! Browsing: the demo catalog, search, filters, paging, products and categories.

use reqwest::StatusCode;
use testkit::TestStore;

use crate::helpers::{spawn_app, spawn_app_with};

async fn a_new_shop_has_a_demo_catalog(store: TestStore) {
    let app = spawn_app_with(store, |settings| settings.catalog.seed_demo = true).await;
    let page = app.get("/api/catalog/products?per_page=100", None).await;
    let page = page.ok(StatusCode::OK);
    assert!(
        page["total"].as_u64().is_some_and(|total| total >= 20),
        "{page:#}"
    );
    let products = page["items"].as_array().expect("items");
    assert!(
        products
            .iter()
            .all(|p| p["stock"]["available"].as_u64() > Some(0))
    );
    let categories = app.get("/api/catalog/categories", None).await;
    let categories = categories
        .ok(StatusCode::OK)
        .as_array()
        .expect("list")
        .clone();
    assert!(categories.len() >= 3, "{categories:?}");

    // Seeding happens only into an empty catalog: a restart adds nothing.
    let again = app
        .contexts
        .catalog_module()
        .seed_demo_if_empty()
        .await
        .expect("seed");
    assert_eq!(again, 0);
}

async fn search_filter_and_page(store: TestStore) {
    let app = spawn_app(store).await;
    let admin = app.admin_token().await;
    for (sku, cents, category) in [
        ("TEA-1", 500, "tea"),
        ("TEA-2", 900, "tea"),
        ("POT-1", 2500, "kitchen"),
    ] {
        app.create_product(&admin, sku, cents, category, 3).await;
    }
    let found = app
        .get("/api/catalog/products?q=tea-&per_page=1&page=2", None)
        .await;
    let found = found.ok(StatusCode::OK);
    assert_eq!(
        (
            found["total"].as_u64(),
            found["page"].as_u64(),
            found["per_page"].as_u64()
        ),
        (Some(2), Some(2), Some(1))
    );
    assert_eq!(found["items"][0]["sku"], "TEA-2");

    let cheap = app
        .get(
            "/api/catalog/products?category=tea&min_price=600&max_price=1000",
            None,
        )
        .await;
    let cheap = cheap.ok(StatusCode::OK);
    assert_eq!(cheap["total"], 1);
    assert_eq!(
        cheap["items"][0]["price"],
        serde_json::json!({"amount_minor": 900, "currency": "EUR"})
    );
}

async fn bad_paging_and_filters_are_400s(store: TestStore) {
    let app = spawn_app(store).await;
    for query in [
        "page=0",
        "page=-1",
        "page=abc",
        "per_page=0",
        "per_page=101",
        "per_page=99999999999",
        "page=2147483648",
        "min_price=-1",
        "category=not%20valid!",
    ] {
        let answer = app
            .get(&format!("/api/catalog/products?{query}"), None)
            .await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{query}: {:#}",
            answer.body
        );
        assert_eq!(
            answer.body["error"]["code"], "invalid_query",
            "{query}: {:#}",
            answer.body
        );
    }
    // An empty price range is not a mistake the document could describe: it matches nothing.
    let empty = app
        .get("/api/catalog/products?min_price=10&max_price=5", None)
        .await;
    assert_eq!(empty.ok(StatusCode::OK)["total"], 0);
}

async fn products_by_id(store: TestStore) {
    let app = spawn_app(store).await;
    let admin = app.admin_token().await;
    let created = app.create_product(&admin, "ONE", 1234, "things", 5).await;
    let id = created["id"].as_str().expect("id");
    let fetched = app.get(&format!("/api/catalog/products/{id}"), None).await;
    assert_eq!(fetched.ok(StatusCode::OK), &created);

    let unknown = uuid::Uuid::now_v7();
    let missing = app
        .get(&format!("/api/catalog/products/{unknown}"), None)
        .await;
    let error = missing.error(StatusCode::NOT_FOUND, "product_not_found");
    assert_eq!(error["product_id"], unknown.to_string());
    app.get("/api/catalog/products/not-a-uuid", None)
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_path");
}

/// A product read is served from the catalog's cache; `Cache-Control: no-cache` reads the
/// database (and refreshes the cache). The change here goes behind the cache's back (as
/// another process's would, its notification lost), so only the fresh read must see it.
async fn no_cache_reads_the_database(store: TestStore) {
    use sea_orm::ConnectionTrait;

    let app = spawn_app(store).await;
    let admin = app.admin_token().await;
    let created = app.create_product(&admin, "NC-1", 1234, "things", 5).await;
    let path = format!(
        "/api/catalog/products/{}",
        created["id"].as_str().expect("id")
    );
    assert_eq!(app.get(&path, None).await.ok(StatusCode::OK), &created);

    let db = &app
        .contexts
        .stores
        .iter()
        .find(|(context, _)| *context == "catalog")
        .expect("catalog's store")
        .1;
    db.execute_unprepared("UPDATE products SET price_minor = 4321 WHERE sku = 'NC-1'")
        .await
        .expect("update behind the cache's back");

    let fresh = app
        .send(
            app.client
                .get(app.url(&path))
                .header("Cache-Control", "max-age=0, no-cache"),
        )
        .await;
    assert_eq!(fresh.ok(StatusCode::OK)["price"]["amount_minor"], 4321);
    // The fresh read refreshed the cached page.
    let again = app.get(&path, None).await;
    assert_eq!(again.ok(StatusCode::OK)["price"]["amount_minor"], 4321);
}

testkit::backend_tests!(
    a_new_shop_has_a_demo_catalog,
    search_filter_and_page,
    bad_paging_and_filters_are_400s,
    products_by_id,
    no_cache_reads_the_database,
);
