//! The catalog context: what the shop sells, at what price, and how many are left.
//!
//! Published language: `catalog-api` ([`catalog_api::CatalogApi`]). Inside:
//! - `domain`: rules for skus, names, categories, prices and reservation lines (no I/O);
//! - `store`: the `products`, `stock`, `reservations` and `reservation_lines` tables, and all
//!   of the catalog's SQL (a product page is one prepared statement: product joined with
//!   stock), the `catalog_changed` notifications and the connection that listens to them;
//! - `service`: [`CatalogService`] (products and search) and `stock` (stock and
//!   reservations): the implementation of `CatalogApi` and the operations of the routes;
//! - `cache`: the in-process cache of product pages the public product read is served
//!   from, invalidated by this process's writes and by other processes' notifications,
//!   bounded in age by `catalog.cache.ttl_ms`;
//! - `http`: the `/api/catalog` routes;
//! - `seed`: the demo catalog.
//!
//! Architecture invariants: stock never goes negative (conditional updates plus `CHECK`
//! constraints); no other context reads these tables — orders learns prices through
//! `CatalogApi::get_products` and keeps its own snapshot; cached stock never decides
//! anything — reservations and `get_products` read the database, the cache only serves
//! pages, and no page is older than a write of this process that returned.

mod cache;
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

pub use cache::{CacheConfig, HITS, INVALIDATIONS, MISSES};
pub use http::{CatalogDoc, PUBLIC_SCOPES, configure};
pub use service::{CatalogService, Freshness};
#[doc(hidden)]
pub use store::product_read_sql;
pub use store::{CHANGES_CHANNEL, LISTENER_NAME};

/// The context's name, which is also its schema, its SQLite file and its role suffix.
pub const CONTEXT: &str = "catalog";

/// What no code can say about catalog: its purpose, its language and its invariants. The
/// console's context page and `docs/contexts/catalog.md` are made from it and from the code.
pub const CANVAS: &str = include_str!("../canvas.toml");

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
    /// The catalog with the default product cache (`CacheConfig::default()`).
    pub fn new(db: DatabaseConnection, clock: Arc<dyn Clock>) -> Self {
        Self::with_cache(db, clock, CacheConfig::default())
    }

    /// The catalog with its product cache as `cache` says (`CacheConfig::OFF`: none).
    pub fn with_cache(db: DatabaseConnection, clock: Arc<dyn Clock>, cache: CacheConfig) -> Self {
        Self {
            service: Arc::new(CatalogService::new(db, clock, cache)),
        }
    }

    /// Starts invalidating the pages other processes change (Postgres notifications), for
    /// as long as the service lives; see [`CatalogService::listen_for_changes`].
    pub async fn listen_for_changes(&self) -> bool {
        self.service.listen_for_changes().await
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
