//! Search is case-insensitive beyond ASCII, the same on SQLite and Postgres.

use catalog_api::{ProductPatch, ProductQuery};
use sea_orm::ConnectionTrait;
use testkit::TestStore;

use crate::{catalog, new_product};

/// The skus of the active products matching `text`, sorted (the order of names that differ
/// only in case is the database collation's business).
async fn found(catalog: &catalog::CatalogService, text: &str) -> Vec<String> {
    let page = catalog
        .search_products(ProductQuery {
            text: Some(text.into()),
            ..ProductQuery::default()
        })
        .await
        .expect("search");
    let mut skus: Vec<String> = page.items.into_iter().map(|product| product.sku).collect();
    skus.sort();
    skus
}

async fn search_is_case_insensitive_beyond_ascii(store: TestStore) {
    let catalog = catalog(&store).await;
    for (sku, name) in [
        ("CF-1", "Café Crème"),
        ("CF-2", "CAFÉ NOIR"),
        ("OEL-1", "Öl aus der Straße"),
        ("RU-1", "Чай зелёный"),
        ("GR-1", "Ελληνικός ΚΑΦΈΣ"),
        ("TEA-1", "Green tea"),
    ] {
        catalog
            .create_product(new_product(sku, name, 1000, "things", 1))
            .await
            .expect("create");
    }
    let check = |text: &'static str, expected: &'static [&'static str]| {
        let catalog = catalog.clone();
        async move {
            let skus = found(&catalog, text).await;
            assert_eq!(skus, expected, "searching {text:?}");
        }
    };
    check("CAFÉ", &["CF-1", "CF-2"]).await;
    check("café", &["CF-1", "CF-2"]).await;
    check("crÈme", &["CF-1"]).await;
    check("noir", &["CF-2"]).await;
    check("ÖL", &["OEL-1"]).await;
    check("STRASSE", &["OEL-1"]).await;
    check("ЧАЙ ЗЕЛЁНЫЙ", &["RU-1"]).await;
    check("καφές", &["GR-1"]).await;
    check("ＧＲＥＥＮ", &["TEA-1"]).await;
    // Accents are letters of their own: folding is about case, not about diacritics.
    check("cafe", &[]).await;

    // A renamed product is found by its new name only.
    let renamed = catalog
        .search_products(ProductQuery {
            text: Some("Green".into()),
            ..ProductQuery::default()
        })
        .await
        .expect("search")
        .items[0]
        .id;
    catalog
        .update_product(
            renamed,
            ProductPatch {
                name: Some("Thé vert".into()),
                description: Some("FEUILLES ENTIÈRES".into()),
                ..ProductPatch::default()
            },
        )
        .await
        .expect("rename");
    check("THÉ", &["TEA-1"]).await;
    check("entières", &["TEA-1"]).await;
    check("green", &[]).await;
}

/// Products stored before search text was folded (or by an older shop) are folded when
/// the catalog's store is migrated at the next start.
async fn products_not_folded_yet_are_folded_at_start(store: TestStore) {
    let catalog = catalog(&store).await;
    for (sku, name) in [("CF-1", "CAFÉ NOIR"), ("TEA-1", "Green tea")] {
        catalog
            .create_product(new_product(sku, name, 1000, "things", 1))
            .await
            .expect("create");
    }
    let db = store.connect(catalog::CONTEXT).await;
    db.execute_unprepared("UPDATE products SET name_folded = NULL, description_folded = NULL")
        .await
        .expect("unfold");
    // Not folded yet, a product is still found as before, ASCII case-insensitively.
    assert_eq!(found(&catalog, "GREEN").await, ["TEA-1"]);

    catalog::migrate(&db).await.expect("migrate again");
    assert_eq!(found(&catalog, "café noir").await, ["CF-1"]);
    assert_eq!(found(&catalog, "GREEN TEA").await, ["TEA-1"]);
}

testkit::backend_tests!(
    search_is_case_insensitive_beyond_ascii,
    products_not_folded_yet_are_folded_at_start,
);
