//! The published language of the orders context: orders, their lines and their lifecycle.
//!
//! orders owns its own model of a purchase. An order line keeps a snapshot of the product's
//! name and unit price at purchase time; the order's customer is a buyer id with a shipping
//! address snapshot. Payment and current product information in [`OrderDetail`] are orders'
//! own view types, translated from the payments and catalog answers: this crate depends on
//! no other context.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kernel::{
    ContextError, ErrorKind, FieldError, IdempotencyKey, IntegrationEvent, MethodSpec, Money,
    OrderId, Page, PageRequest, PortSpec, ProductId, UserId,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[async_trait]
pub trait OrdersApi: Send + Sync + 'static {
    /// Places an order and runs checkout to its end: reserve stock, charge, confirm
    /// (compensating on failure). Idempotent per (customer, `idempotency_key`): a repeat
    /// returns the same order, with `replayed` set.
    async fn place_order(&self, request: PlaceOrder) -> Result<Placed, OrdersError>;

    /// An order with its payment and its products as they are now. Customers see only
    /// their own orders; others' are `order_not_found`.
    async fn get_order(&self, viewer: Viewer, id: OrderId) -> Result<OrderDetail, OrdersError>;

    /// The viewer's orders, newest first (all orders for administrators).
    async fn list_orders(
        &self,
        viewer: Viewer,
        page: PageRequest,
    ) -> Result<Page<Order>, OrdersError>;

    /// Cancels a confirmed order: refunds the payment and returns the units to stock.
    /// Publishes `OrderCancelled`. Cancelling a cancelled order returns it unchanged.
    async fn cancel_order(&self, viewer: Viewer, id: OrderId) -> Result<Order, OrdersError>;
}

/// [`OrdersApi`]'s methods and which of them may be retried. No other context calls orders
/// today; the port is what orders' own routes use, and what an extracted orders serves.
pub const PORT: PortSpec = PortSpec {
    context: "orders",
    trait_name: "OrdersApi",
    version: 1,
    methods: &[
        // Keyed by (customer, idempotency key): a repeat answers the same order.
        MethodSpec::idempotent("place_order"),
        MethodSpec::idempotent("get_order"),
        MethodSpec::idempotent("list_orders"),
        // Cancelling a cancelled order returns it unchanged.
        MethodSpec::idempotent("cancel_order"),
    ],
};

/// Who is asking, as orders needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Viewer {
    pub user_id: UserId,
    pub admin: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PlaceOrder {
    pub customer_id: UserId,
    /// From the `Idempotency-Key` header.
    pub idempotency_key: IdempotencyKey,
    pub lines: Vec<LineRequest>,
    pub shipping_address: ShippingAddress,
    pub payment_token: String,
}

/// The body of `POST /api/orders`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderRequest {
    /// 1 to 50 lines. Lines of the same product are added up (at most 1000 units per
    /// product).
    #[schema(min_items = 1, max_items = 50)]
    pub lines: Vec<LineRequest>,
    pub shipping_address: ShippingAddress,
    /// A payment provider token (1 to 64 visible ASCII characters, the rule of payments'
    /// `PaymentToken`); see `GET /api/payments/test-tokens`.
    #[schema(example = "tok_visa", pattern = "^[!-~]{1,64}$")]
    pub payment_token: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LineRequest {
    pub product_id: ProductId,
    /// 1 to 1000 units.
    #[schema(minimum = 1, maximum = 1000)]
    pub quantity: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShippingAddress {
    /// 1 to 100 characters, not only spaces, no control characters (as every line below).
    #[schema(
        example = "Ada Lovelace",
        max_length = 100,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub name: String,
    #[schema(
        example = "12 St James's Square",
        max_length = 200,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub line1: String,
    /// Optional; empty or blank means none.
    #[serde(default)]
    #[schema(max_length = 200, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    pub line2: Option<String>,
    #[schema(
        example = "London",
        max_length = 100,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub city: String,
    #[schema(
        example = "SW1Y 4JH",
        max_length = 20,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub postal_code: String,
    /// ISO 3166-1 alpha-2; stored upper-case.
    #[schema(example = "GB", pattern = "^[A-Za-z]{2}$")]
    pub country: String,
}

/// Stored and sent as the same snake_case word.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    ToSchema,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum OrderStatus {
    /// Created; stock not yet reserved.
    Pending,
    /// Stock held; charging.
    StockReserved,
    /// Charged; confirming.
    PaymentCaptured,
    /// Done: stock sold, money taken.
    Confirmed,
    /// Not enough stock; nothing charged.
    Rejected,
    /// The charge failed; stock released. See `failure_reason`.
    PaymentFailed,
    /// Refunding and restocking.
    Cancelling,
    /// Refunded and restocked.
    Cancelled,
}

impl OrderStatus {
    /// No further step will change the order on its own.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Confirmed | Self::Rejected | Self::PaymentFailed | Self::Cancelled
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderLine {
    pub product_id: ProductId,
    /// Snapshot at purchase time.
    pub sku: String,
    /// Snapshot at purchase time.
    pub name: String,
    /// Snapshot at purchase time.
    pub unit_price: Money,
    pub quantity: u32,
    pub line_total: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Order {
    pub id: OrderId,
    pub customer_id: UserId,
    pub status: OrderStatus,
    pub lines: Vec<OrderLine>,
    pub total: Money,
    pub shipping_address: ShippingAddress,
    /// Why the order was rejected or its payment failed.
    pub failure_reason: Option<OrderFailure>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Why an order was `rejected` or ended `payment_failed`. orders' own words: payments'
/// reasons are translated into them, so a new reason in payments cannot reach orders' clients
/// unannounced. Stored and sent as the same snake_case word.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    ToSchema,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum OrderFailure {
    /// Not enough stock for some line; nothing was charged.
    OutOfStock,
    /// A product was unknown or not for sale when stock was reserved.
    ProductUnavailable,
    /// The card issuer declined the payment.
    Declined,
    InsufficientFunds,
    /// The payment provider failed.
    ProviderError,
    /// The provider did not recognise the payment token.
    InvalidPaymentToken,
    /// Payments refused the charge request itself.
    PaymentRejected,
    /// Payments did not answer.
    PaymentUnavailable,
    /// Payments did not answer in time; the payment was given up.
    PaymentTimedOut,
}

/// The answer to `place_order`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Placed {
    pub order: Order,
    /// True when the idempotency key had been used before and this is that order.
    pub replayed: bool,
}

/// Where an order's payment stands, in orders' words (translated from payments' statuses,
/// so a change there breaks orders' translation, not orders' clients).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    ToSchema,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum PaymentState {
    /// The provider has not answered yet.
    Pending,
    Captured,
    PartiallyRefunded,
    Refunded,
    /// Declined or failed; nothing was taken.
    Failed,
    /// Given up before the provider answered; nothing was (or stays) taken.
    Voided,
}

/// The payment of an order, as orders presents it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PaymentView {
    pub status: PaymentState,
    pub captured: Money,
    pub refunded: Money,
    pub provider_reference: Option<String>,
}

/// A product of the order as the catalog has it now (it may have changed since purchase).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProductView {
    pub product_id: ProductId,
    pub name: String,
    pub current_price: Money,
    pub active: bool,
    pub available: u32,
}

/// An order composed with its payment and products: one call to each context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderDetail {
    pub order: Order,
    /// None when the order has no payment yet, or when payments did not answer (then
    /// `unavailable` says so: an unknown payment is never shown as no payment).
    pub payment: Option<PaymentView>,
    /// Products no longer in the catalog are left out.
    pub products: Vec<ProductView>,
    /// The parts that could not be had in time; empty when the detail is complete.
    #[serde(default)]
    pub unavailable: Vec<DetailSource>,
}

/// A context an order's detail is composed from. Sent as its snake_case name.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    ToSchema,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum DetailSource {
    /// The payment part.
    Payments,
    /// The products part.
    Catalog,
}

/// An unfinished order the recovery sweep gave up on, for an administrator to look at and
/// replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ParkedOrder {
    pub order: Order,
    /// Runs that ended without finishing the checkout.
    pub attempts: u32,
    /// Why the last one did not finish.
    pub last_error: Option<String>,
    pub parked_at: DateTime<Utc>,
}

/// Published when an order is created, before checkout runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderPlaced {
    pub order_id: OrderId,
    pub customer_id: UserId,
    pub total: Money,
    pub lines: Vec<LineRequest>,
    pub placed_at: DateTime<Utc>,
}

impl IntegrationEvent for OrderPlaced {
    const NAME: &'static str = "orders.order_placed.v1";

    fn aggregate_id(&self) -> String {
        self.order_id.to_string()
    }
}

/// Published when checkout succeeded: stock sold, payment captured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderConfirmed {
    pub order_id: OrderId,
    pub customer_id: UserId,
    pub total: Money,
    pub line_count: u32,
    pub confirmed_at: DateTime<Utc>,
}

impl IntegrationEvent for OrderConfirmed {
    const NAME: &'static str = "orders.order_confirmed.v1";

    fn aggregate_id(&self) -> String {
        self.order_id.to_string()
    }
}

/// Published when checkout failed at the payment step; the stock was released.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderPaymentFailed {
    pub order_id: OrderId,
    pub customer_id: UserId,
    pub total: Money,
    pub reason: OrderFailure,
    pub failed_at: DateTime<Utc>,
}

impl IntegrationEvent for OrderPaymentFailed {
    const NAME: &'static str = "orders.order_payment_failed.v1";

    fn aggregate_id(&self) -> String {
        self.order_id.to_string()
    }
}

/// Published when a confirmed order was cancelled: refunded and restocked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderCancelled {
    pub order_id: OrderId,
    pub customer_id: UserId,
    pub refunded: Money,
    pub cancelled_at: DateTime<Utc>,
}

impl IntegrationEvent for OrderCancelled {
    const NAME: &'static str = "orders.order_cancelled.v1";

    fn aggregate_id(&self) -> String {
        self.order_id.to_string()
    }
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
pub enum OrdersError {
    #[error("some fields are invalid")]
    ValidationFailed { fields: Vec<FieldError> },
    #[error("this idempotency key was already used for a different order")]
    IdempotencyKeyReused,
    #[error("no order with id {order_id}")]
    OrderNotFound { order_id: OrderId },
    #[error("an order that is {status:?} cannot be cancelled")]
    NotCancellable { status: OrderStatus },
    #[error("the order could not be completed now; it will be completed or undone shortly")]
    CheckoutIncomplete {
        order_id: OrderId,
        status: OrderStatus,
    },
    #[error(
        "order {order_id} is being worked on by another request; retry in {retry_after_secs} s"
    )]
    RequestInProgress {
        order_id: OrderId,
        retry_after_secs: u64,
    },
    #[error("you have {limit} orders whose checkout has not finished; wait for one to finish")]
    TooManyOrdersInFlight { limit: u32, retry_after_secs: u64 },
    #[error("order {order_id} is not parked")]
    OrderNotParked { order_id: OrderId },
    #[error("orders is unavailable: {reason}")]
    Unavailable { reason: String },
    #[error("internal error")]
    Internal,
}

impl ContextError for OrdersError {
    fn code(&self) -> &'static str {
        self.into()
    }

    fn kind(&self) -> ErrorKind {
        match self {
            Self::ValidationFailed { .. } => ErrorKind::Validation,
            Self::IdempotencyKeyReused => ErrorKind::Rejected,
            Self::OrderNotFound { .. } => ErrorKind::NotFound,
            Self::NotCancellable { .. }
            | Self::RequestInProgress { .. }
            | Self::TooManyOrdersInFlight { .. }
            | Self::OrderNotParked { .. } => ErrorKind::Conflict,
            Self::CheckoutIncomplete { .. } | Self::Unavailable { .. } => ErrorKind::Unavailable,
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
    fn error_codes_match_their_wire_tag() {
        let order_id = OrderId::new();
        let all = [
            OrdersError::ValidationFailed { fields: vec![] },
            OrdersError::IdempotencyKeyReused,
            OrdersError::OrderNotFound { order_id },
            OrdersError::NotCancellable {
                status: OrderStatus::Rejected,
            },
            OrdersError::CheckoutIncomplete {
                order_id,
                status: OrderStatus::StockReserved,
            },
            OrdersError::RequestInProgress {
                order_id,
                retry_after_secs: 3,
            },
            OrdersError::TooManyOrdersInFlight {
                limit: 3,
                retry_after_secs: 5,
            },
            OrdersError::OrderNotParked { order_id },
            OrdersError::Unavailable {
                reason: "timeout".into(),
            },
            OrdersError::Internal,
        ];
        for error in all {
            let wire = serde_json::to_value(&error).expect("serializable");
            assert_eq!(wire["code"], error.code(), "{error:?}");
            let back: OrdersError = serde_json::from_value(wire).expect("deserializable");
            assert_eq!(back, error);
        }
    }

    #[test]
    fn closed_sets_are_stored_as_sent() {
        kernel::assert_stored_as_sent!(OrderStatus, OrderFailure, PaymentState, DetailSource);
    }

    #[test]
    fn terminal_statuses() {
        let terminal: Vec<_> = [
            OrderStatus::Pending,
            OrderStatus::StockReserved,
            OrderStatus::PaymentCaptured,
            OrderStatus::Confirmed,
            OrderStatus::Rejected,
            OrderStatus::PaymentFailed,
            OrderStatus::Cancelling,
            OrderStatus::Cancelled,
        ]
        .into_iter()
        .filter(|status| status.is_terminal())
        .collect();
        assert_eq!(
            terminal,
            [
                OrderStatus::Confirmed,
                OrderStatus::Rejected,
                OrderStatus::PaymentFailed,
                OrderStatus::Cancelled
            ]
        );
    }
}
