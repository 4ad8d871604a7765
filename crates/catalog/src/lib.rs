//! The catalog context: what the shop sells, at what price, and how many are left.
//!
//! Published language: `catalog-api` ([`catalog_api::CatalogApi`]). Inside:
//! - `domain`: rules for skus, names, categories, prices and reservation lines (no I/O);
//! - `store`: the `products`, `stock`, `reservations` and `reservation_lines` tables, and all
//!   of the catalog's SQL;
//! - `service`: [`CatalogService`] (products and search) and `stock` (stock and
//!   reservations): the implementation of `CatalogApi` and the operations of the routes;
//! - `http`: the `/api/catalog` routes;
//! - `seed`: the demo catalog.
//!
//! Architecture invariants: stock never goes negative (conditional updates plus `CHECK`
//! constraints); no other context reads these tables — orders learns prices through
//! `CatalogApi::get_products` and keeps its own snapshot.

mod domain;
mod http;
mod seed;
mod service;
mod stock;
mod store;

use std::sync::Arc;

use catalog_api::{CatalogApi, CatalogError};
use kernel::Clock;
use sea_orm::{DatabaseConnection, DbErr};

pub use http::{CatalogDoc, PUBLIC_SCOPES, configure};
pub use service::CatalogService;

/// The context's name, which is also its schema, its SQLite file and its role suffix.
pub const CONTEXT: &str = "catalog";

/// Applies catalog's migrations to catalog's own store, then folds the search text of the
/// products that do not have it yet (those that existed before it did, or were written by
/// an older shop): SQL cannot fold text the way search does (`domain::fold`).
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    db_kit::migrate::<catalog_migrations::Migrator>(db, CONTEXT).await?;
    let mut folded = 0;
    loop {
        let batch = store::fold_products(db, 500).await?;
        if batch == 0 {
            break;
        }
        folded += batch;
    }
    if folded > 0 {
        tracing::info!(products = folded, "product search text folded");
    }
    Ok(())
}

/// The assembled context, as the composition root sees it.
#[derive(Debug, Clone)]
pub struct CatalogModule {
    service: Arc<CatalogService>,
}

impl CatalogModule {
    pub fn new(db: DatabaseConnection, clock: Arc<dyn Clock>) -> Self {
        Self {
            service: Arc::new(CatalogService::new(db, clock)),
        }
    }

    /// The port other contexts use.
    pub fn api(&self) -> Arc<dyn CatalogApi> {
        self.service.clone()
    }

    /// The service behind the catalog's own routes (and the tests that drive them).
    pub fn service(&self) -> Arc<CatalogService> {
        self.service.clone()
    }

    /// Fills an empty catalog with the demo products; does nothing otherwise.
    pub async fn seed_demo_if_empty(&self) -> Result<usize, CatalogError> {
        seed::seed_demo_catalog(&self.service).await
    }
}
