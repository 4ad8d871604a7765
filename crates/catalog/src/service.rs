//! `CatalogService`: the catalog's application service. It implements the port
//! (`CatalogApi`, what orders asks) and the operations of the catalog's own routes (search,
//! categories, administration). It orchestrates: `domain` decides what is valid, `store`
//! holds the SQL. Stock and reservations are in `stock.rs`.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use catalog_api::{
    CatalogApi, CatalogError, Category, NewProduct, Product, ProductPatch, ProductQuery,
    Reservation, StockLevel, StockLine,
};
use kernel::{Clock, FieldError, FieldErrors, OrderId, Page, ProductId};
use sea_orm::{DatabaseConnection, TransactionTrait};

use crate::cache::{self, CacheConfig, Listening, ProductCache, Source};
use crate::domain::{self, MAX_BATCH};
use crate::store::{self, ChangeListener, SearchFilter};

#[derive(Debug)]
pub struct CatalogService {
    pub(crate) db: DatabaseConnection,
    pub(crate) clock: Arc<dyn Clock>,
    /// Product pages for the public reads; never consulted by reservations nor by the
    /// port (`cache.rs`).
    pub(crate) cache: Arc<ProductCache>,
    /// The task that invalidates pages other processes change, once started.
    listening: OnceLock<Listening>,
}

/// How fresh a product read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// The cached page will do: it may be up to `catalog.cache.ttl_ms` behind another
    /// process's write (and its stock behind other processes' reservations), never behind
    /// a write of this process that returned.
    Cached,
    /// Read the database (and refresh the cached page): `Cache-Control: no-cache`.
    Fresh,
}

/// A search query's values, checked: every problem at once, as `invalid_query`.
fn check_query(query: &ProductQuery) -> Result<SearchFilter, CatalogError> {
    let mut errors = FieldErrors::new();
    if query
        .text
        .as_ref()
        .is_some_and(|text| text.chars().count() > 100)
    {
        errors.push(FieldError::new(
            "q",
            "too_long",
            "must be at most 100 characters",
        ));
    }
    for (field, value) in [
        ("min_price", query.min_price),
        ("max_price", query.max_price),
    ] {
        if value.is_some_and(|value| value < 0) {
            errors.push(FieldError::new(
                field,
                "invalid_price",
                "must not be negative",
            ));
        }
    }
    // A range whose minimum is above its maximum is not an error: it matches nothing, as
    // any empty range does (and JSON Schema cannot say "min_price <= max_price").
    let category = query
        .category
        .as_deref()
        .and_then(|category| errors.check(domain::parse_category(category)));
    if !errors.is_empty() {
        return Err(CatalogError::InvalidQuery {
            fields: errors.into_vec(),
        });
    }
    Ok(SearchFilter {
        text: query
            .text
            .as_deref()
            .map(str::trim)
            .filter(|text| !text.is_empty())
            .map(str::to_owned),
        category,
        min_price: query.min_price,
        max_price: query.max_price,
    })
}

impl CatalogService {
    /// A service whose product cache is `cache` (`CacheConfig::OFF` for none).
    pub fn new(db: DatabaseConnection, clock: Arc<dyn Clock>, cache: CacheConfig) -> Self {
        Self {
            cache: Arc::new(ProductCache::new(cache, clock.clone())),
            db,
            clock,
            listening: OnceLock::new(),
        }
    }

    /// Starts following other processes' writes (Postgres `LISTEN catalog_changed`) to
    /// invalidate their products' pages, until this service is dropped. Answers whether it
    /// listens now; when it could not connect it keeps trying in the background (the
    /// cache's time to live bounds staleness meanwhile). Nothing to do without a cache or
    /// on SQLite (false). Must run inside a Tokio runtime; a second call does nothing.
    pub async fn listen_for_changes(&self) -> bool {
        if !self.cache.is_on() || self.listening.get().is_some() {
            return false;
        }
        let (listener, listening) = match ChangeListener::connect(&self.db).await {
            Ok(None) => return false,
            Ok(Some(listener)) => (Some(listener), true),
            Err(error) => {
                tracing::warn!(%error, "cannot listen for catalog changes yet; retrying");
                (None, false)
            }
        };
        let task = tokio::spawn(cache::follow(
            Arc::downgrade(&self.cache),
            listener,
            self.db.clone(),
        ));
        if self.listening.set(Listening::new(task)).is_err() {
            return false;
        }
        listening
    }

    /// Drops the cached pages of products a write of this process changed: after its
    /// transaction committed, before it returns.
    /// The last step of every write to a product: tells other processes (`pg_notify` in
    /// `txn`, so only if it commits), commits, and drops this process's cached page, even
    /// when the commit's outcome is unknown (an error may hide a commit).
    pub(crate) async fn commit_changed(
        &self,
        txn: sea_orm::DatabaseTransaction,
        id: ProductId,
    ) -> Result<(), CatalogError> {
        store::notify_changed(&txn, id)
            .await
            .map_err(db_kit::internal)?;
        let committed = txn.commit().await;
        self.changed([id]);
        committed.map_err(db_kit::internal)
    }

    pub(crate) fn changed(&self, ids: impl IntoIterator<Item = ProductId>) {
        for id in ids {
            self.cache.invalidate(id, Source::Write);
        }
    }

    pub(crate) async fn count_products(&self) -> Result<u64, CatalogError> {
        store::count_products(&self.db)
            .await
            .map_err(db_kit::internal)
    }

    /// Active products matching the query, one page of them, with the total count.
    #[tracing::instrument(skip(self))]
    pub async fn search_products(
        &self,
        query: ProductQuery,
    ) -> Result<Page<Product>, CatalogError> {
        let filter = check_query(&query)?;
        store::search(&self.db, &filter, query.page)
            .await
            .map_err(db_kit::internal)
    }

    /// One product, read from the database (one statement: the product joined with its
    /// stock).
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn get_product(&self, id: ProductId) -> Result<Product, CatalogError> {
        store::find_product(&self.db, id)
            .await
            .map_err(db_kit::internal)?
            .ok_or(CatalogError::ProductNotFound { product_id: id })
    }

    /// One product's page, as the public route serves it: from the cache when `freshness`
    /// allows and it holds the page, otherwise from the database, refreshing the cache.
    /// Unknown ids are not cached. The stock it shows informs people and decides nothing:
    /// reservations read the database.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn read_product(
        &self,
        id: ProductId,
        freshness: Freshness,
    ) -> Result<Arc<Product>, CatalogError> {
        match self.cached_product(id, freshness) {
            Some(product) => Ok(product),
            None => self.refresh_product(id).await,
        }
    }

    /// The first half of [`read_product`](Self::read_product), without I/O: the cached page,
    /// when `freshness` allows one and the cache holds it. The public route answers it in
    /// place, and hands only a miss to the store runtime.
    pub fn cached_product(&self, id: ProductId, freshness: Freshness) -> Option<Arc<Product>> {
        match freshness {
            Freshness::Cached => self.cache.get(id),
            Freshness::Fresh => {
                self.cache.bypassed();
                None
            }
        }
    }

    /// The second half of [`read_product`](Self::read_product): the page read from the
    /// database, refreshing the cache.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn refresh_product(&self, id: ProductId) -> Result<Arc<Product>, CatalogError> {
        // Before the read: a write that invalidates the page after this point refuses
        // this fill, whatever the read saw.
        let ticket = self.cache.ticket(id);
        let product = Arc::new(self.get_product(id).await?);
        self.cache.fill(ticket, product.clone());
        Ok(product)
    }

    /// Categories that have at least one active product.
    #[tracing::instrument(skip(self))]
    pub async fn list_categories(&self) -> Result<Vec<Category>, CatalogError> {
        Ok(store::categories(&self.db)
            .await
            .map_err(db_kit::internal)?
            .into_iter()
            .map(|(name, product_count)| Category {
                name,
                product_count,
            })
            .collect())
    }

    #[tracing::instrument(skip(self, product), fields(sku = %product.sku))]
    pub async fn create_product(&self, product: NewProduct) -> Result<Product, CatalogError> {
        let product = domain::validate_new_product(product)
            .map_err(|fields| CatalogError::ValidationFailed { fields })?;
        let id = ProductId::new();
        let sku = product.sku.clone();
        let txn = self.db.begin().await.map_err(db_kit::internal)?;
        store::insert_product(&txn, id, product, self.clock.now())
            .await
            .map_err(|error| {
                if db_kit::is_unique_violation(&error) {
                    CatalogError::SkuTaken { sku }
                } else {
                    db_kit::internal(error)
                }
            })?;
        let created = store::find_product(&txn, id)
            .await
            .map_err(db_kit::internal)?;
        self.commit_changed(txn, id).await?;
        tracing::info!(product_id = %id, "product created");
        created.ok_or_else(db_kit::missing_row)
    }

    /// Changes the fields the patch names; the sku cannot change.
    #[tracing::instrument(skip(self))]
    pub async fn update_product(
        &self,
        id: ProductId,
        patch: ProductPatch,
    ) -> Result<Product, CatalogError> {
        let patch = domain::validate_patch(patch)
            .map_err(|fields| CatalogError::ValidationFailed { fields })?;
        let txn = self.db.begin().await.map_err(db_kit::internal)?;
        if !store::update_product(&txn, id, patch, self.clock.now())
            .await
            .map_err(db_kit::internal)?
        {
            return Err(CatalogError::ProductNotFound { product_id: id });
        }
        let updated = store::find_product(&txn, id)
            .await
            .map_err(db_kit::internal)?;
        self.commit_changed(txn, id).await?;
        updated.ok_or_else(db_kit::missing_row)
    }

    /// Adds `delta` units (negative to remove) to a product's available stock. Refused if
    /// available stock would go below zero or above the limit.
    pub async fn adjust_stock(
        &self,
        id: ProductId,
        delta: i64,
    ) -> Result<StockLevel, CatalogError> {
        self.adjust(id, delta).await
    }
}

#[async_trait]
impl CatalogApi for CatalogService {
    #[tracing::instrument(skip(self, ids), fields(count = ids.len()))]
    async fn get_products(&self, ids: Vec<ProductId>) -> Result<Vec<Product>, CatalogError> {
        let unique: HashSet<ProductId> = ids.into_iter().collect();
        if unique.len() > MAX_BATCH {
            return Err(CatalogError::InvalidQuery {
                fields: vec![FieldError::new(
                    "ids",
                    "too_many",
                    format!("at most {MAX_BATCH} ids per call"),
                )],
            });
        }
        if unique.is_empty() {
            return Ok(Vec::new());
        }
        store::find_products(&self.db, unique.into_iter().collect())
            .await
            .map_err(db_kit::internal)
    }

    // Each reservation step moves units its products' pages show: their cached pages are
    // dropped once it returns (not announced to other processes, whose pages catch up
    // within the time to live). Reservations themselves never read the cache.

    async fn reserve_stock(
        &self,
        order_id: OrderId,
        lines: Vec<StockLine>,
    ) -> Result<Reservation, CatalogError> {
        let products: Vec<ProductId> = lines.iter().map(|line| line.product_id).collect();
        let reserved = self.reserve(order_id, lines).await;
        self.changed(products);
        reserved
    }

    async fn commit_reservation(&self, order_id: OrderId) -> Result<Reservation, CatalogError> {
        let committed = self.commit(order_id).await;
        self.moved(&committed);
        committed
    }

    async fn release_reservation(&self, order_id: OrderId) -> Result<Reservation, CatalogError> {
        let released = self.release(order_id).await;
        self.moved(&released);
        released
    }

    async fn restock_reservation(&self, order_id: OrderId) -> Result<Reservation, CatalogError> {
        let restocked = self.restock(order_id).await;
        self.moved(&restocked);
        restocked
    }
}

impl CatalogService {
    /// After a reservation step: its lines' pages are stale. When the step failed in a way
    /// that may hide a commit (an internal error), any page may be.
    fn moved(&self, step: &Result<Reservation, CatalogError>) {
        match step {
            Ok(reservation) => self.changed(reservation.lines.iter().map(|line| line.product_id)),
            Err(CatalogError::Internal | CatalogError::Unavailable { .. }) => self.cache.clear(),
            Err(_) => {}
        }
    }
}
