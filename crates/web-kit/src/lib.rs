//! HTTP plumbing shared by every context's routes and by the composition root.
//!
//! The rule this crate exists for: **HTTP status codes are decided here and nowhere else.**
//! Contexts return their own error enums (with a stable `code` and a [`kernel::ErrorKind`]);
//! [`HttpError`] turns any of them into the JSON error body and the status. Request-level
//! failures that never reach a handler (malformed JSON, oversized bodies, bad query strings,
//! unknown routes) are answered in the same shape by the extractor configuration here.

pub mod auth;
pub mod error;
pub mod extract;
pub mod idempotency;
pub mod json;
pub mod limits;
pub mod openapi;
pub mod paging;
pub mod rate_limit;
pub mod request_id;
pub mod runtime;

pub use auth::{AdminUser, Caller, CurrentUser};
pub use error::{ErrorBody, ErrorDetail, HttpError};
pub use extract::{Endpoint, configure_extractors, created, resource, route_not_found};
pub use idempotency::{IDEMPOTENCY_KEY, RequiredIdempotencyKey};
pub use json::Json;
pub use limits::{RequestLimits, close_after_unread_body, configure_limits};
pub use openapi::{BearerSecurity, TransportResponses};
pub use paging::{Paging, page_request};
pub use rate_limit::{ClientAddress, RateLimit, RateQuota};
pub use request_id::{RequestId, request_id_middleware};
pub use runtime::StoreRuntime;
