//! `CatalogService`, the in-process implementation of `CatalogApi`: products and search.
//! Stock and reservations are in `stock.rs`.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use catalog_api::{
    CatalogApi, CatalogError, Category, NewProduct, Product, ProductPatch, ProductQuery,
    Reservation, StockLevel, StockLine,
};
use kernel::{Clock, FieldError, FieldErrors, OrderId, Page, ProductId};
use sea_orm::sea_query::{Expr, ExprTrait, Func, LikeExpr};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, DatabaseConnection, EntityTrait,
    IntoActiveModel, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};

use crate::domain::{self, MAX_BATCH};
use crate::store::{self, products, stock};

#[derive(Debug)]
pub struct CatalogService {
    pub(crate) db: DatabaseConnection,
    pub(crate) clock: Arc<dyn Clock>,
}

impl CatalogService {
    pub fn new(db: DatabaseConnection, clock: Arc<dyn Clock>) -> Self {
        Self { db, clock }
    }

    pub(crate) async fn count_products(&self) -> Result<u64, CatalogError> {
        products::Entity::find()
            .count(&self.db)
            .await
            .map_err(db_kit::internal)
    }
}

/// Escapes `%`, `_` and the escape character itself, so user text is matched literally.
fn like_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

fn check_query(query: &ProductQuery) -> Result<Option<String>, CatalogError> {
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
    if let (Some(min), Some(max)) = (query.min_price, query.max_price)
        && min > max
    {
        errors.push(FieldError::new(
            "min_price",
            "invalid_range",
            "must not be greater than max_price",
        ));
    }
    let category = query
        .category
        .as_deref()
        .and_then(|category| errors.check(domain::parse_category(category)));
    if errors.is_empty() {
        Ok(category)
    } else {
        Err(CatalogError::InvalidQuery {
            fields: errors.into_vec(),
        })
    }
}

#[async_trait]
impl CatalogApi for CatalogService {
    #[tracing::instrument(skip(self))]
    async fn search_products(&self, query: ProductQuery) -> Result<Page<Product>, CatalogError> {
        let category = check_query(&query)?;
        let mut select = products::Entity::find().filter(products::Column::Active.eq(true));
        if let Some(text) = query
            .text
            .as_deref()
            .map(str::trim)
            .filter(|text| !text.is_empty())
        {
            let pattern = like_pattern(text);
            let matches = |column: products::Column| {
                Expr::expr(Func::lower(Expr::col(column)))
                    .like(LikeExpr::new(pattern.clone()).escape('\\'))
            };
            select = select.filter(
                Condition::any()
                    .add(matches(products::Column::Name))
                    .add(matches(products::Column::Description))
                    .add(matches(products::Column::Sku)),
            );
        }
        if let Some(category) = category {
            select = select.filter(products::Column::Category.eq(category));
        }
        if let Some(min) = query.min_price {
            select = select.filter(products::Column::PriceMinor.gte(min));
        }
        if let Some(max) = query.max_price {
            select = select.filter(products::Column::PriceMinor.lte(max));
        }
        let total = select
            .clone()
            .count(&self.db)
            .await
            .map_err(db_kit::internal)?;
        let rows = select
            .order_by_asc(products::Column::Name)
            .order_by_asc(products::Column::Id)
            .offset(query.page.offset())
            .limit(u64::from(query.page.per_page()))
            .all(&self.db)
            .await
            .map_err(db_kit::internal)?;
        let items = store::with_stock(&self.db, rows)
            .await
            .map_err(db_kit::internal)?;
        Ok(Page::new(items, total, query.page))
    }

    #[tracing::instrument(skip(self))]
    async fn get_product(&self, id: ProductId) -> Result<Product, CatalogError> {
        store::find_product(&self.db, id)
            .await
            .map_err(db_kit::internal)?
            .ok_or(CatalogError::ProductNotFound { product_id: id })
    }

    #[tracing::instrument(skip(self, ids), fields(count = ids.len()))]
    async fn get_products(&self, ids: Vec<ProductId>) -> Result<Vec<Product>, CatalogError> {
        let unique: HashSet<_> = ids.iter().map(ProductId::as_uuid).collect();
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
        let rows = products::Entity::find()
            .filter(products::Column::Id.is_in(unique))
            .order_by_asc(products::Column::Id)
            .all(&self.db)
            .await
            .map_err(db_kit::internal)?;
        store::with_stock(&self.db, rows)
            .await
            .map_err(db_kit::internal)
    }

    #[tracing::instrument(skip(self))]
    async fn list_categories(&self) -> Result<Vec<Category>, CatalogError> {
        let rows: Vec<(String, i64)> = products::Entity::find()
            .select_only()
            .column(products::Column::Category)
            .column_as(products::Column::Id.count(), "product_count")
            .filter(products::Column::Active.eq(true))
            .group_by(products::Column::Category)
            .order_by_asc(products::Column::Category)
            .into_tuple()
            .all(&self.db)
            .await
            .map_err(db_kit::internal)?;
        Ok(rows
            .into_iter()
            .map(|(name, count)| Category {
                name,
                product_count: u64::try_from(count).unwrap_or_default(),
            })
            .collect())
    }

    #[tracing::instrument(skip(self, product), fields(sku = %product.sku))]
    async fn create_product(&self, product: NewProduct) -> Result<Product, CatalogError> {
        let product = domain::validate_new_product(product)
            .map_err(|fields| CatalogError::ValidationFailed { fields })?;
        let id = ProductId::new();
        let now = self.clock.now();
        let txn = self.db.begin().await.map_err(db_kit::internal)?;
        let inserted = products::ActiveModel {
            id: Set(id.as_uuid()),
            sku: Set(product.sku.clone()),
            name: Set(product.name),
            description: Set(product.description),
            price_minor: Set(product.price.amount_minor()),
            currency: Set(product.price.currency().to_string()),
            category: Set(product.category),
            active: Set(product.active),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&txn)
        .await;
        if let Err(error) = inserted {
            return Err(if db_kit::is_unique_violation(&error) {
                CatalogError::SkuTaken { sku: product.sku }
            } else {
                db_kit::internal(error)
            });
        }
        stock::ActiveModel {
            product_id: Set(id.as_uuid()),
            available: Set(i64::from(product.initial_stock)),
            reserved: Set(0),
        }
        .insert(&txn)
        .await
        .map_err(db_kit::internal)?;
        let created = store::find_product(&txn, id)
            .await
            .map_err(db_kit::internal)?;
        txn.commit().await.map_err(db_kit::internal)?;
        tracing::info!(product_id = %id, "product created");
        created.ok_or_else(db_kit::missing_row)
    }

    #[tracing::instrument(skip(self))]
    async fn update_product(
        &self,
        id: ProductId,
        patch: ProductPatch,
    ) -> Result<Product, CatalogError> {
        let patch = domain::validate_patch(patch)
            .map_err(|fields| CatalogError::ValidationFailed { fields })?;
        let txn = self.db.begin().await.map_err(db_kit::internal)?;
        let row = products::Entity::find_by_id(id.as_uuid())
            .one(&txn)
            .await
            .map_err(db_kit::internal)?
            .ok_or(CatalogError::ProductNotFound { product_id: id })?;
        let mut row = row.into_active_model();
        if let Some(name) = patch.name {
            row.name = Set(name);
        }
        if let Some(description) = patch.description {
            row.description = Set(description);
        }
        if let Some(price) = patch.price {
            row.price_minor = Set(price.amount_minor());
            row.currency = Set(price.currency().to_string());
        }
        if let Some(category) = patch.category {
            row.category = Set(category);
        }
        if let Some(active) = patch.active {
            row.active = Set(active);
        }
        row.updated_at = Set(self.clock.now());
        row.update(&txn).await.map_err(db_kit::internal)?;
        let updated = store::find_product(&txn, id)
            .await
            .map_err(db_kit::internal)?;
        txn.commit().await.map_err(db_kit::internal)?;
        updated.ok_or_else(db_kit::missing_row)
    }

    async fn adjust_stock(&self, id: ProductId, delta: i64) -> Result<StockLevel, CatalogError> {
        self.adjust(id, delta).await
    }

    async fn reserve_stock(
        &self,
        order_id: OrderId,
        lines: Vec<StockLine>,
    ) -> Result<Reservation, CatalogError> {
        self.reserve(order_id, lines).await
    }

    async fn commit_reservation(&self, order_id: OrderId) -> Result<Reservation, CatalogError> {
        self.commit(order_id).await
    }

    async fn release_reservation(&self, order_id: OrderId) -> Result<Reservation, CatalogError> {
        self.release(order_id).await
    }

    async fn restock_reservation(&self, order_id: OrderId) -> Result<Reservation, CatalogError> {
        self.restock(order_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::like_pattern;

    #[test]
    fn like_patterns_match_user_text_literally() {
        assert_eq!(like_pattern("Tea"), "%tea%");
        assert_eq!(like_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
    }
}
