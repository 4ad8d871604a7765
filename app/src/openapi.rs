//! The shop's OpenAPI document: every context's routes, merged.

use kernel::FieldError;
use utoipa::{Modify, OpenApi};
use web_kit::{BearerSecurity, ErrorBody, ErrorDetail, TransportResponses};

use crate::{admin, metrics, ops, routing};

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "shop",
        description = "A modular monolith: auth, catalog, orders, payments and notifications \
                       in one binary. Every error body is `{\"error\": {\"code\", \"message\", ...}}` \
                       with a stable snake_case code."
    ),
    paths(
        ops::healthz,
        ops::readyz,
        metrics::render,
        admin::failed,
        admin::discarded,
        admin::retry,
        admin::retry_all,
        admin::discard,
        routing::list,
        routing::change,
    ),
    components(schemas(ErrorBody, ErrorDetail, FieldError)),
    modifiers(&BearerSecurity),
    tags(
        (name = "operations", description = "Health and readiness"),
        (name = "admin", description = "Parked integration events: their replay and their discard; \
                                        where public routes are sent (strangler fig)"),
    )
)]
struct ShopDoc;

/// The whole document, served at `/api-docs/openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut document = ShopDoc::openapi();
    document.merge(auth::AuthDoc::openapi());
    document.merge(catalog::CatalogDoc::openapi());
    document.merge(payments::PaymentsDoc::openapi());
    document.merge(orders::OrdersDoc::openapi());
    document.merge(notifications::NotificationsDoc::openapi());
    TransportResponses.modify(&mut document);
    document
}
