//! The shop's OpenAPI document: every context's routes, merged.

use kernel::FieldError;
use utoipa::OpenApi;
use web_kit::{BearerSecurity, ErrorBody, ErrorDetail};

use crate::ops;

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "shop",
        description = "A modular monolith: auth, catalog, orders, payments and notifications \
                       in one binary. Every error body is `{\"error\": {\"code\", \"message\", ...}}` \
                       with a stable snake_case code."
    ),
    paths(ops::healthz, ops::readyz),
    components(schemas(ErrorBody, ErrorDetail, FieldError)),
    modifiers(&BearerSecurity),
    tags((name = "operations", description = "Health and readiness"))
)]
struct ShopDoc;

/// The whole document, served at `/api-docs/openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut document = ShopDoc::openapi();
    document.merge(auth::AuthDoc::openapi());
    document.merge(catalog::CatalogDoc::openapi());
    document
}
