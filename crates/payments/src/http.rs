//! The `/api/payments` routes: payments' own public API. Today that is the fake provider's
//! list of test tokens, served only in test mode; charges and refunds happen only through
//! the port, on orders' behalf.

use actix_web::{HttpResponse, web};
use payments_api::TEST_TOKENS;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};
use web_kit::{ErrorBody, resource};

/// The path prefixes of this context's public routes: each is one `web::scope` below. A
/// process that sends the context's routes to another process (strangler fig) matches them.
pub const PUBLIC_SCOPES: &[&str] = &["/api/payments"];

/// Mounts payments' routes. With `test_mode` off there are none: the test tokens do not
/// work, so they are not listed either, and the path answers as an unknown route (404).
pub fn configure(test_mode: bool) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        if test_mode {
            cfg.service(
                web::scope(PUBLIC_SCOPES[0]).service(resource("/test-tokens").get(test_tokens)),
            );
        }
    }
}

#[derive(Debug, OpenApi)]
#[openapi(
    paths(test_tokens),
    components(schemas(TestToken)),
    tags((name = "payments", description = "Charges and refunds; the fake provider's test tokens"))
)]
pub struct PaymentsDoc;

/// A payment token the built-in fake provider understands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TestToken {
    /// Use it as `payment_token` when placing an order.
    #[schema(example = "tok_visa")]
    pub token: String,
    /// What the provider does with it.
    #[schema(example = "approved")]
    pub behaviour: String,
}

/// The test tokens of the fake provider and what each does (public). Served only while
/// `payments.test_mode` is on.
#[utoipa::path(
    get, path = "/api/payments/test-tokens", tag = "payments",
    responses(
        (status = 200, description = "Every test token and its behaviour", body = Vec<TestToken>),
        (status = 404, description = "`route_not_found`: `payments.test_mode` is off, so there are no test tokens", body = ErrorBody),
    )
)]
async fn test_tokens() -> HttpResponse {
    let tokens: Vec<TestToken> = TEST_TOKENS
        .iter()
        .map(|(token, behaviour)| TestToken {
            token: (*token).to_owned(),
            behaviour: (*behaviour).to_owned(),
        })
        .collect();
    HttpResponse::Ok().json(tokens)
}
