//! catalog's behaviour through its service (the port `CatalogApi` and the operations of its
//! routes), on SQLite and on Postgres.

mod cache;
mod products;
mod search;
mod stock;

use std::sync::Arc;

use catalog::{CatalogModule, CatalogService};
use catalog_api::{NewProduct, Product};
use kernel::{Currency, Money, SystemClock};
use testkit::TestStore;

pub async fn catalog(store: &TestStore) -> Arc<CatalogService> {
    let db = store.connect(catalog::CONTEXT).await;
    catalog::migrate(&db).await.expect("migrate");
    CatalogModule::new(db, Arc::new(SystemClock)).service()
}

pub fn eur(cents: i64) -> Money {
    Money::new(cents, Currency::EUR).expect("valid money")
}

pub fn new_product(sku: &str, name: &str, cents: i64, category: &str, stock: u32) -> NewProduct {
    NewProduct {
        sku: sku.into(),
        name: name.into(),
        description: format!("About {name}"),
        price: eur(cents),
        category: category.into(),
        initial_stock: stock,
        active: true,
    }
}

pub async fn create(catalog: &Arc<CatalogService>, sku: &str, stock: u32) -> Product {
    catalog
        .create_product(new_product(sku, sku, 1000, "things", stock))
        .await
        .expect("create product")
}
