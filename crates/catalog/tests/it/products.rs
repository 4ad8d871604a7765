//! Products, search, paging and categories.

use catalog_api::CatalogApi;
use catalog_api::{CatalogError, ProductPatch, ProductQuery};
use kernel::{PageRequest, ProductId};
use testkit::TestStore;

use crate::{catalog, eur, new_product};

fn page(page: u32, per_page: u32) -> PageRequest {
    PageRequest::new(Some(page), Some(per_page)).expect("valid page")
}

async fn products_are_created_and_read_back(store: TestStore) {
    let catalog = catalog(&store).await;
    let created = catalog
        .create_product(new_product("tea-01", "  Green tea ", 450, "Kitchen", 7))
        .await
        .expect("create");
    assert_eq!(created.sku, "TEA-01");
    assert_eq!(created.name, "Green tea");
    assert_eq!(created.category, "kitchen");
    assert_eq!(created.price, eur(450));
    assert_eq!(created.stock.available, 7);
    assert_eq!(created.stock.reserved, 0);
    assert_eq!(catalog.get_product(created.id).await, Ok(created.clone()));

    let missing = ProductId::new();
    assert_eq!(
        catalog.get_product(missing).await,
        Err(CatalogError::ProductNotFound {
            product_id: missing
        })
    );
    let batch = catalog
        .get_products(vec![created.id, missing, created.id])
        .await
        .expect("batch");
    assert_eq!(batch, vec![created]);
}

async fn skus_are_unique(store: TestStore) {
    let catalog = catalog(&store).await;
    catalog
        .create_product(new_product("DUP-1", "One", 100, "things", 1))
        .await
        .expect("first");
    assert_eq!(
        catalog
            .create_product(new_product("dup-1", "Two", 100, "things", 1))
            .await,
        Err(CatalogError::SkuTaken {
            sku: "DUP-1".into()
        })
    );
}

async fn invalid_products_are_refused_with_every_field(store: TestStore) {
    let catalog = catalog(&store).await;
    let mut product = new_product("bad sku!", "", 1000, "no spaces allowed", 1);
    product.price = eur(0);
    let Err(CatalogError::ValidationFailed { fields }) = catalog.create_product(product).await
    else {
        panic!("expected validation errors");
    };
    let fields: Vec<_> = fields.iter().map(|f| f.field.as_str()).collect();
    assert_eq!(fields, ["sku", "name", "price", "category"]);
    let page = catalog
        .search_products(ProductQuery::default())
        .await
        .expect("search");
    assert_eq!(page.total, 0, "nothing was written");
}

async fn search_filters_and_pages(store: TestStore) {
    let catalog = catalog(&store).await;
    for (sku, name, cents, category) in [
        ("B-1", "Rust in Action", 3900, "books"),
        ("B-2", "Programming Rust", 4500, "books"),
        ("B-3", "100% Pure Cotton", 2000, "textiles"),
        ("K-1", "Rusty pan", 2500, "kitchen"),
        ("K-2", "Kettle", 5000, "kitchen"),
    ] {
        catalog
            .create_product(new_product(sku, name, cents, category, 3))
            .await
            .expect("create");
    }
    let search = |text: Option<&str>,
                  category: Option<&str>,
                  min: Option<i64>,
                  max: Option<i64>,
                  p: PageRequest| {
        let catalog = catalog.clone();
        let query = ProductQuery {
            text: text.map(Into::into),
            category: category.map(Into::into),
            min_price: min,
            max_price: max,
            page: p,
        };
        async move {
            let found = catalog.search_products(query).await.expect("search");
            (
                found.total,
                found.items.into_iter().map(|p| p.sku).collect::<Vec<_>>(),
            )
        }
    };
    // Text is case-insensitive, matched in name, description and sku, ordered by name.
    assert_eq!(
        search(Some("RUST"), None, None, None, page(1, 20)).await,
        (3, vec!["B-2".into(), "B-1".into(), "K-1".into()])
    );
    // `%` and `_` are matched literally.
    assert_eq!(
        search(Some("100%"), None, None, None, page(1, 20)).await,
        (1, vec!["B-3".into()])
    );
    assert_eq!(search(Some("_"), None, None, None, page(1, 20)).await.0, 0);
    assert_eq!(
        search(None, Some("Kitchen"), Some(2500), Some(4999), page(1, 20)).await,
        (1, vec!["K-1".into()])
    );
    // Paging: total counts all matches, items only the page.
    assert_eq!(
        search(None, None, None, None, page(2, 2)).await,
        (5, vec!["B-2".into(), "B-1".into()])
    );
    assert_eq!(
        search(None, None, None, None, page(9, 2)).await,
        (5, vec![])
    );

    // An empty range matches nothing; a negative bound is a mistake.
    assert_eq!(
        search(None, None, Some(10), Some(5), page(1, 20)).await,
        (0, vec![])
    );
    let bad = catalog
        .search_products(ProductQuery {
            min_price: Some(-1),
            ..ProductQuery::default()
        })
        .await;
    assert!(
        matches!(bad, Err(CatalogError::InvalidQuery { .. })),
        "{bad:?}"
    );
}

async fn categories_count_active_products(store: TestStore) {
    let catalog = catalog(&store).await;
    catalog
        .create_product(new_product("A-1", "A", 100, "alpha", 1))
        .await
        .expect("create");
    catalog
        .create_product(new_product("A-2", "B", 100, "alpha", 1))
        .await
        .expect("create");
    let hidden = catalog
        .create_product(new_product("Z-1", "C", 100, "zulu", 1))
        .await
        .expect("create");
    catalog
        .update_product(
            hidden.id,
            ProductPatch {
                active: Some(false),
                ..ProductPatch::default()
            },
        )
        .await
        .expect("deactivate");
    let categories = catalog.list_categories().await.expect("categories");
    let categories: Vec<_> = categories
        .iter()
        .map(|c| (c.name.as_str(), c.product_count))
        .collect();
    assert_eq!(categories, [("alpha", 2)]);
    let found = catalog
        .search_products(ProductQuery::default())
        .await
        .expect("search");
    assert_eq!(found.total, 2, "inactive products are not listed");
}

async fn patches_change_only_what_they_name(store: TestStore) {
    let catalog = catalog(&store).await;
    let product = catalog
        .create_product(new_product("P-1", "Pot", 1000, "kitchen", 2))
        .await
        .expect("create");
    let patched = catalog
        .update_product(
            product.id,
            ProductPatch {
                price: Some(eur(1200)),
                name: Some(" Big pot ".into()),
                ..ProductPatch::default()
            },
        )
        .await
        .expect("patch");
    assert_eq!(patched.name, "Big pot");
    assert_eq!(patched.price, eur(1200));
    assert_eq!(patched.description, product.description);
    assert_eq!(patched.sku, product.sku);
    assert!(patched.updated_at >= product.updated_at);

    let invalid = catalog
        .update_product(
            product.id,
            ProductPatch {
                name: Some(String::new()),
                ..ProductPatch::default()
            },
        )
        .await;
    assert!(matches!(
        invalid,
        Err(CatalogError::ValidationFailed { .. })
    ));
    let missing = ProductId::new();
    assert_eq!(
        catalog
            .update_product(missing, ProductPatch::default())
            .await,
        Err(CatalogError::ProductNotFound {
            product_id: missing
        })
    );
}

/// A batch read is one statement whose size is rounded up (the last id repeated): every
/// size answers each existing product once, in id order, with its stock.
async fn batches_of_every_size_answer_each_product_once(store: TestStore) {
    let catalog = catalog(&store).await;
    let mut products = Vec::new();
    for n in 0..9_u32 {
        let product = catalog
            .create_product(new_product(
                &format!("BATCH-{n}"),
                "Batch",
                100,
                "things",
                n,
            ))
            .await
            .expect("create");
        products.push(product);
    }
    for size in 1..=products.len() {
        let mut ids: Vec<ProductId> = products[..size].iter().map(|p| p.id).collect();
        ids.push(ProductId::new());
        ids.reverse();
        let mut expected = products[..size].to_vec();
        expected.sort_by_key(|product| product.id);
        assert_eq!(
            catalog.get_products(ids).await.expect("batch"),
            expected,
            "{size} products"
        );
    }
}

testkit::backend_tests!(
    products_are_created_and_read_back,
    batches_of_every_size_answer_each_product_once,
    skus_are_unique,
    invalid_products_are_refused_with_every_field,
    search_filters_and_pages,
    categories_count_active_products,
    patches_change_only_what_they_name,
);
