//! What the shop publishes: every integration event and every context's port, by Rust type.
//! Adding an event or a DTO to an `-api` crate means adding it here; the completeness check
//! of `cargo run -p contracts -- check` fails until it is.

use kernel::Page;

use crate::contract::{Event, Pending, Port, Registry, event, port};

/// The shop's contracts.
pub fn registry() -> Registry {
    Registry {
        events: events(),
        ports: ports(),
        pending: PENDING_TO_SCHEMA,
    }
}

/// Every integration event, by type; each is the contract named by its `IntegrationEvent::NAME`.
fn events() -> Vec<Event> {
    vec![
        event::<auth_api::UserRegistered>(),
        event::<orders_api::OrderPlaced>(),
        event::<orders_api::OrderConfirmed>(),
        event::<orders_api::OrderPaymentFailed>(),
        event::<orders_api::OrderCancelled>(),
        event::<payments_api::PaymentCaptured>(),
        event::<payments_api::PaymentFailed>(),
        event::<payments_api::PaymentRefunded>(),
    ]
}

/// Every context's port: the DTOs of its `-api` crate (arguments and results of its trait, the
/// bodies of its routes) and its error enum. The version is the `-api` crate's
/// `PORT.version`, so the contract and the remote adapter speak of the same version.
fn ports() -> Vec<Port> {
    vec![
        port("auth", auth_api::PORT.version)
            .dto::<auth_api::AccessToken>()
            .dto::<auth_api::AuthError>()
            .dto::<auth_api::Login>()
            .dto::<auth_api::Password>()
            .dto::<auth_api::Principal>()
            .dto::<auth_api::RegisterUser>()
            .dto::<auth_api::Role>()
            .dto::<auth_api::TokenType>()
            .dto::<auth_api::User>(),
        port("catalog", catalog_api::PORT.version)
            .dto::<catalog_api::CatalogError>()
            .dto::<catalog_api::Category>()
            .dto::<catalog_api::NewProduct>()
            .dto::<Page<catalog_api::Product>>()
            .dto::<catalog_api::Product>()
            .dto::<catalog_api::ProductPatch>()
            .dto::<catalog_api::ProductQuery>()
            .dto::<catalog_api::Reservation>()
            .dto::<catalog_api::ReservationStatus>()
            .dto::<catalog_api::StockLevel>()
            .dto::<catalog_api::StockLine>(),
        port("orders", orders_api::PORT.version)
            .dto::<orders_api::LineRequest>()
            .dto::<orders_api::Order>()
            .dto::<orders_api::DetailSource>()
            .dto::<orders_api::OrderDetail>()
            .dto::<orders_api::OrderFailure>()
            .dto::<orders_api::OrderLine>()
            .dto::<orders_api::OrderRequest>()
            .dto::<orders_api::OrderStatus>()
            .dto::<orders_api::OrdersError>()
            .dto::<orders_api::ParkedOrder>()
            .dto::<Page<orders_api::Order>>()
            .dto::<orders_api::PaymentState>()
            .dto::<orders_api::PaymentView>()
            .dto::<orders_api::PlaceOrder>()
            .dto::<orders_api::Placed>()
            .dto::<orders_api::ProductView>()
            .dto::<orders_api::ShippingAddress>()
            .dto::<orders_api::Viewer>(),
        port("payments", payments_api::PORT.version)
            .dto::<payments_api::ChargeRequest>()
            .dto::<payments_api::FailureReason>()
            .dto::<payments_api::Payment>()
            .dto::<payments_api::PaymentStatus>()
            .dto::<payments_api::PaymentToken>()
            .dto::<payments_api::PaymentsError>(),
        port("notifications", notifications_api::PORT.version)
            .dto::<notifications_api::Channel>()
            .dto::<notifications_api::Notification>()
            .dto::<notifications_api::NotificationKind>()
            .dto::<notifications_api::NotificationsError>()
            .dto::<Page<notifications_api::Notification>>(),
    ]
}

/// Types of the `-api` crates that belong in a contract but cannot be registered yet. The
/// completeness check accepts them as known and reports an entry that is registered already
/// or names no type any more, so this list only shrinks. Empty: everything is registered.
pub const PENDING_TO_SCHEMA: &[Pending] = &[];
