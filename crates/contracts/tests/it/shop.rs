//! A small orders context in three versions, to generate real contracts from Rust types: `v1`,
//! a compatible `v2`, and an incompatible `v2`. Their names match the fixture sources in
//! `tests/fixtures/shop`, so the completeness check passes for each.

use contracts::Pending;

/// The fixture's type that does not derive `ToSchema` yet.
pub const PENDING: &[Pending] = &[Pending::dto("orders", "Viewer")];

/// What a first release publishes.
pub mod v1 {
    use contracts::{Registry, event, port};
    use kernel::{IntegrationEvent, Money, OrderId, ProductId};
    use serde::{Deserialize, Serialize};
    use utoipa::ToSchema;

    /// Published when checkout failed at the payment step.
    #[derive(Debug, Serialize, Deserialize, ToSchema)]
    pub struct OrderPaymentFailed {
        pub order_id: OrderId,
        pub total: Money,
        pub reason: String,
    }

    impl IntegrationEvent for OrderPaymentFailed {
        const NAME: &'static str = "orders.order_payment_failed.v1";

        fn aggregate_id(&self) -> String {
            self.order_id.to_string()
        }
    }

    #[derive(Debug, Serialize, Deserialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum OrderStatus {
        Pending,
        Confirmed,
    }

    #[derive(Debug, Serialize, Deserialize, ToSchema)]
    pub struct Line {
        pub product_id: ProductId,
        pub quantity: u32,
    }

    #[derive(Debug, Serialize, Deserialize, ToSchema)]
    pub struct Order {
        pub id: OrderId,
        pub status: OrderStatus,
        pub lines: Vec<Line>,
        pub total: Money,
    }

    #[derive(Debug, Serialize, Deserialize, ToSchema)]
    #[serde(tag = "code", rename_all = "snake_case")]
    pub enum OrdersError {
        OrderNotFound { order_id: OrderId },
        Unavailable { reason: String },
        Internal,
    }

    pub fn registry() -> Registry {
        Registry {
            events: vec![event::<OrderPaymentFailed>()],
            ports: vec![
                port("orders", 1)
                    .dto::<Line>()
                    .dto::<Order>()
                    .dto::<OrderStatus>()
                    .dto::<OrdersError>(),
            ],
            pending: super::PENDING,
        }
    }
}

/// A compatible next release: an optional field with `#[serde(default)]`, a new description.
pub mod v2_compatible {
    use contracts::{Registry, event, port};
    use kernel::{Money, OrderId, ProductId};
    use serde::{Deserialize, Serialize};
    use utoipa::ToSchema;

    pub use super::v1::{OrderPaymentFailed, OrderStatus, OrdersError};

    /// One product of an order, and how many.
    #[derive(Debug, Serialize, Deserialize, ToSchema)]
    pub struct Line {
        pub product_id: ProductId,
        pub quantity: u32,
    }

    #[derive(Debug, Serialize, Deserialize, ToSchema)]
    pub struct Order {
        pub id: OrderId,
        pub status: OrderStatus,
        pub lines: Vec<Line>,
        pub total: Money,
        /// A discount code, if the customer gave one.
        #[serde(default)]
        pub coupon: Option<String>,
    }

    pub fn registry() -> Registry {
        Registry {
            events: vec![event::<OrderPaymentFailed>()],
            ports: vec![
                port("orders", 1)
                    .dto::<Line>()
                    .dto::<Order>()
                    .dto::<OrderStatus>()
                    .dto::<OrdersError>(),
            ],
            pending: super::PENDING,
        }
    }
}

/// An incompatible next release, still under the `v1` names.
pub mod v2_breaking {
    use contracts::{Registry, event, port};
    use kernel::{IntegrationEvent, Money, OrderId, ProductId};
    use serde::{Deserialize, Serialize};
    use utoipa::ToSchema;

    pub use super::v1::Line;

    /// `reason` became a numeric code; `total` became optional.
    #[derive(Debug, Serialize, Deserialize, ToSchema)]
    pub struct OrderPaymentFailed {
        pub order_id: OrderId,
        #[serde(default)]
        pub total: Option<Money>,
        pub reason_code: u16,
    }

    impl IntegrationEvent for OrderPaymentFailed {
        const NAME: &'static str = "orders.order_payment_failed.v1";

        fn aggregate_id(&self) -> String {
            self.order_id.to_string()
        }
    }

    #[derive(Debug, Serialize, Deserialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum OrderStatus {
        Pending,
        Confirmed,
        Cancelled,
    }

    #[derive(Debug, Serialize, Deserialize, ToSchema)]
    pub struct Order {
        pub id: OrderId,
        pub status: OrderStatus,
        pub lines: Vec<Line>,
        pub total: Money,
    }

    #[derive(Debug, Serialize, Deserialize, ToSchema)]
    #[serde(tag = "code", rename_all = "snake_case")]
    pub enum OrdersError {
        OrderNotFound { order_id: OrderId },
        OutOfStock { product_ids: Vec<ProductId> },
        Unavailable { reason: String, retry_after: u32 },
        Internal,
    }

    pub fn registry() -> Registry {
        Registry {
            events: vec![event::<OrderPaymentFailed>()],
            ports: vec![
                port("orders", 1)
                    .dto::<Line>()
                    .dto::<Order>()
                    .dto::<OrderStatus>()
                    .dto::<OrdersError>(),
            ],
            pending: super::PENDING,
        }
    }
}
