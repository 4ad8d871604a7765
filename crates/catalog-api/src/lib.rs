//! The published language of the catalog context: products, prices, categories and stock.
//!
//! Other contexts learn prices and names only through [`CatalogApi`] (one batch call per
//! request, never one call per line) and reserve stock through it, keyed by their order id.
//! Everything is remotable: owned serde types in and out, a serializable error enum.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kernel::{ContextError, ErrorKind, FieldError, Money, OrderId, Page, PageRequest, ProductId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[async_trait]
pub trait CatalogApi: Send + Sync + 'static {
    /// Active products matching the query, one page of them, with the total count.
    async fn search_products(&self, query: ProductQuery) -> Result<Page<Product>, CatalogError>;

    async fn get_product(&self, id: ProductId) -> Result<Product, CatalogError>;

    /// Many products in one call. Ids that do not exist are left out of the answer (the
    /// caller compares), so one unknown id does not fail the whole batch.
    async fn get_products(&self, ids: Vec<ProductId>) -> Result<Vec<Product>, CatalogError>;

    /// Categories that have at least one active product.
    async fn list_categories(&self) -> Result<Vec<Category>, CatalogError>;

    async fn create_product(&self, product: NewProduct) -> Result<Product, CatalogError>;

    async fn update_product(
        &self,
        id: ProductId,
        patch: ProductPatch,
    ) -> Result<Product, CatalogError>;

    /// Adds `delta` units (negative to remove) to a product's available stock. Refused if
    /// available stock would go below zero.
    async fn adjust_stock(&self, id: ProductId, delta: i64) -> Result<StockLevel, CatalogError>;

    /// Reserves every line or none. Idempotent per order: reserving again for an order that
    /// already holds a reservation returns that reservation and takes no more stock.
    async fn reserve_stock(
        &self,
        order_id: OrderId,
        lines: Vec<StockLine>,
    ) -> Result<Reservation, CatalogError>;

    /// Turns a reservation into a sale. Idempotent.
    async fn commit_reservation(&self, order_id: OrderId) -> Result<Reservation, CatalogError>;

    /// Returns a reservation's units to available stock. Idempotent.
    async fn release_reservation(&self, order_id: OrderId) -> Result<Reservation, CatalogError>;

    /// Puts the units of a committed (sold) reservation back into available stock, as when
    /// a confirmed order is cancelled. The reservation ends `released`. Idempotent.
    async fn restock_reservation(&self, order_id: OrderId) -> Result<Reservation, CatalogError>;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Product {
    pub id: ProductId,
    #[schema(example = "KB-001")]
    pub sku: String,
    #[schema(example = "Mechanical keyboard")]
    pub name: String,
    pub description: String,
    pub price: Money,
    #[schema(example = "electronics")]
    pub category: String,
    /// Inactive products are hidden from search and cannot be ordered.
    pub active: bool,
    pub stock: StockLevel,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StockLevel {
    /// Units that can be reserved now.
    pub available: u32,
    /// Units held by reservations that are neither committed nor released yet.
    pub reserved: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Category {
    #[schema(example = "electronics")]
    pub name: String,
    pub product_count: u64,
}

/// Search criteria; every field is optional.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ProductQuery {
    /// Case-insensitive text matched against name, description and sku.
    pub text: Option<String>,
    pub category: Option<String>,
    /// Inclusive bounds in minor units.
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
    pub page: PageRequest,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProduct {
    /// Letters, digits and `-_.`, unique across the catalog.
    #[schema(example = "KB-001")]
    pub sku: String,
    #[schema(example = "Mechanical keyboard")]
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub price: Money,
    #[schema(example = "electronics")]
    pub category: String,
    /// Units in stock at creation; defaults to 0.
    #[serde(default)]
    pub initial_stock: u32,
    /// Defaults to true.
    #[serde(default = "default_active")]
    pub active: bool,
}

fn default_active() -> bool {
    true
}

/// A partial update: absent fields are left as they are. The sku cannot change.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub price: Option<Money>,
    pub category: Option<String>,
    pub active: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StockLine {
    pub product_id: ProductId,
    pub quantity: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReservationStatus {
    /// Units are held for the order.
    Reserved,
    /// The order was confirmed; the units are sold.
    Committed,
    /// The units went back to available stock (before or, by restocking, after the sale).
    Released,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Reservation {
    pub order_id: OrderId,
    pub status: ReservationStatus,
    pub lines: Vec<StockLine>,
}

#[derive(
    Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize, strum::IntoStaticStr,
)]
#[serde(tag = "code", rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum CatalogError {
    #[error("some fields are invalid")]
    ValidationFailed { fields: Vec<FieldError> },
    #[error("the query parameters are invalid")]
    InvalidQuery { fields: Vec<FieldError> },
    #[error("no product with id {product_id}")]
    ProductNotFound { product_id: ProductId },
    #[error("a product with sku {sku} already exists")]
    SkuTaken { sku: String },
    #[error("only {available} units of product {product_id} are available")]
    InsufficientStock {
        product_id: ProductId,
        available: u32,
    },
    #[error("not enough stock for some products")]
    OutOfStock { product_ids: Vec<ProductId> },
    #[error("product {product_id} is not for sale")]
    ProductInactive { product_id: ProductId },
    #[error("no stock reservation for order {order_id}")]
    ReservationNotFound { order_id: OrderId },
    #[error("the reservation for order {order_id} is {status:?} and cannot change that way")]
    ReservationClosed {
        order_id: OrderId,
        status: ReservationStatus,
    },
    #[error("catalog is unavailable: {reason}")]
    Unavailable { reason: String },
    #[error("internal error")]
    Internal,
}

impl ContextError for CatalogError {
    fn code(&self) -> &'static str {
        self.into()
    }

    fn kind(&self) -> ErrorKind {
        match self {
            Self::ValidationFailed { .. } => ErrorKind::Validation,
            Self::InvalidQuery { .. } => ErrorKind::InvalidInput,
            Self::ProductNotFound { .. } | Self::ReservationNotFound { .. } => ErrorKind::NotFound,
            Self::SkuTaken { .. }
            | Self::InsufficientStock { .. }
            | Self::OutOfStock { .. }
            | Self::ReservationClosed { .. } => ErrorKind::Conflict,
            Self::ProductInactive { .. } => ErrorKind::Rejected,
            Self::Unavailable { .. } => ErrorKind::Unavailable,
            Self::Internal => ErrorKind::Internal,
        }
    }

    fn internal() -> Self {
        Self::Internal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_match_their_wire_tag() {
        let product_id = ProductId::new();
        let order_id = OrderId::new();
        let all = [
            CatalogError::ValidationFailed { fields: vec![] },
            CatalogError::InvalidQuery { fields: vec![] },
            CatalogError::ProductNotFound { product_id },
            CatalogError::SkuTaken { sku: "A-1".into() },
            CatalogError::InsufficientStock {
                product_id,
                available: 2,
            },
            CatalogError::OutOfStock {
                product_ids: vec![product_id],
            },
            CatalogError::ProductInactive { product_id },
            CatalogError::ReservationNotFound { order_id },
            CatalogError::ReservationClosed {
                order_id,
                status: ReservationStatus::Released,
            },
            CatalogError::Unavailable {
                reason: "timeout".into(),
            },
            CatalogError::Internal,
        ];
        for error in all {
            let wire = serde_json::to_value(&error).expect("serializable");
            assert_eq!(wire["code"], error.code(), "{error:?}");
            let back: CatalogError = serde_json::from_value(wire).expect("deserializable");
            assert_eq!(back, error);
        }
    }
}
