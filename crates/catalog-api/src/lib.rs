//! The published language of the catalog context: products, prices, categories and stock.
//!
//! Other contexts learn prices and names only through [`CatalogApi`] (one batch call per
//! request, never one call per line) and reserve stock through it, keyed by their order id.
//! The types of the catalog's public routes (search, categories, administration) live here
//! too, so that clients and the API document share one definition. Everything is remotable:
//! owned serde types in and out, a serializable error enum. [`PORT`] says which methods may
//! be retried.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kernel::{
    ContextError, ErrorKind, FieldError, MethodSpec, Money, OrderId, PageRequest, PortSpec,
    ProductId,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The catalog's port: what orders asks the catalog during checkout and for an order's
/// detail. Browsing, search and administration are the catalog's own public routes; they call
/// the catalog's service directly and do not travel through the port.
#[async_trait]
pub trait CatalogApi: Send + Sync + 'static {
    /// Many products in one call. Ids that do not exist are left out of the answer (the
    /// caller compares), so one unknown id does not fail the whole batch.
    async fn get_products(&self, ids: Vec<ProductId>) -> Result<Vec<Product>, CatalogError>;

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

/// [`CatalogApi`]'s methods and which of them may be retried: all of them, since a lookup
/// reads and every reservation step is keyed by its order.
pub const PORT: PortSpec = PortSpec {
    context: "catalog",
    trait_name: "CatalogApi",
    version: 1,
    methods: &[
        MethodSpec::idempotent("get_products"),
        MethodSpec::idempotent("reserve_stock"),
        MethodSpec::idempotent("commit_reservation"),
        MethodSpec::idempotent("release_reservation"),
        MethodSpec::idempotent("restock_reservation"),
    ],
};

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
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
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
    /// Letters, digits and `-_.`, unique across the catalog; stored upper-case.
    #[schema(example = "KB-001", pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub sku: String,
    /// 1 to 200 characters, not only spaces, no control characters.
    #[schema(
        example = "Mechanical keyboard",
        max_length = 200,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub name: String,
    /// Up to 5000 characters.
    #[serde(default)]
    #[schema(max_length = 5000)]
    pub description: String,
    #[schema(value_type = Price)]
    pub price: Money,
    /// Lower-case letters, digits and `-` (upper-case letters are lowered).
    #[schema(example = "electronics", pattern = "^[A-Za-z0-9-]{1,64}$")]
    pub category: String,
    /// Units in stock at creation; defaults to 0.
    #[serde(default)]
    #[schema(maximum = 1_000_000_000)]
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
    /// As in `NewProduct`.
    #[schema(
        max_length = 200,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub name: Option<String>,
    #[schema(max_length = 5000)]
    pub description: Option<String>,
    #[schema(value_type = Option<Price>)]
    pub price: Option<Money>,
    #[schema(pattern = "^[A-Za-z0-9-]{1,64}$")]
    pub category: Option<String>,
    pub active: Option<bool>,
}

/// A product's price as the catalog accepts it: a `Money` of 1 to 10,000,000,000 minor
/// units. (Schema only: the field's type is `Money`, checked by the catalog's rules.)
#[derive(ToSchema)]
#[allow(dead_code)]
struct Price {
    #[schema(minimum = 1, maximum = 10_000_000_000_i64, example = 1999)]
    amount_minor: i64,
    #[schema(value_type = String, pattern = "^[A-Za-z]{3}$", example = "EUR")]
    currency: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StockLine {
    pub product_id: ProductId,
    pub quantity: u32,
}

/// Stored and sent as the same snake_case word.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    ToSchema,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
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
    Debug,
    Clone,
    PartialEq,
    Eq,
    thiserror::Error,
    Serialize,
    Deserialize,
    ToSchema,
    strum::IntoStaticStr,
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
    #[error("product {product_id} would hold more than {limit} units")]
    StockLimitExceeded {
        product_id: ProductId,
        available: u32,
        limit: u32,
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
            | Self::StockLimitExceeded { .. }
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

    fn unavailable(reason: String) -> Self {
        Self::Unavailable { reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_sets_are_stored_as_sent() {
        kernel::assert_stored_as_sent!(ReservationStatus);
    }

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
            CatalogError::StockLimitExceeded {
                product_id,
                available: 1,
                limit: 1,
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
