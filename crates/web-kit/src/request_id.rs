//! Request ids and the per-request tracing span.
//!
//! Every request runs inside a `request` span carrying its id, so every log line written
//! while serving it (in any context) carries the id too. The id is taken from the caller's
//! `X-Request-Id` header when it is reasonable, generated otherwise, and always echoed back.

use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use futures::future::{Ready, ready};
use tracing::Instrument;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Requests served, by method, route pattern and status.
pub const REQUESTS: &str = "shop_http_requests_total";
/// How long requests took, by method and route pattern (a histogram, in seconds).
pub const REQUEST_DURATION: &str = "shop_http_request_duration_seconds";

/// The `method` label of the request metrics: one of RFC 9110's methods and PATCH, else
/// `other`, so that callers inventing methods cannot add series. (The `route` label is the
/// matched pattern or `unmatched`, the `status` label one of the statuses the shop answers:
/// every label comes from a closed set.)
fn method_label(method: &Method) -> &'static str {
    static KNOWN: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::CONNECT,
        Method::OPTIONS,
        Method::TRACE,
        Method::PATCH,
    ];
    KNOWN
        .iter()
        .find(|known| *known == method)
        .map_or("other", Method::as_str)
}

/// The current request's id, for handlers that want to mention it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// Accept a caller's id only if it is short and printable, so it cannot forge log lines.
fn acceptable(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

pub async fn request_id_middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let id = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|value| acceptable(value))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));

    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        path = %req.path(),
    );
    let started = Instant::now();
    // Handlers and extractors turn their errors into responses before this point, so an
    // `Err` here is an actix-internal failure; it propagates as is.
    let mut response = next
        .call(req)
        .instrument(span.clone())
        .await?
        .map_into_boxed_body();
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(X_REQUEST_ID, value);
    }
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    // The route's pattern (`/api/orders/{id}`), not its path, so the label set stays small.
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = method_label(response.request().method());
    metrics::counter!(REQUESTS, "method" => method, "route" => route.clone(), "status" => status.to_string())
        .increment(1);
    metrics::histogram!(REQUEST_DURATION, "method" => method, "route" => route)
        .record(elapsed.as_secs_f64());
    span.in_scope(|| {
        tracing::info!(
            status,
            latency_ms = elapsed.as_millis() as u64,
            "request completed"
        );
    });
    Ok(response)
}

impl FromRequest for RequestId {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _payload: &mut actix_web::dev::Payload) -> Self::Future {
        let id = req
            .extensions()
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(|| RequestId(String::new()));
        ready(Ok(id))
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::Method;

    use super::{acceptable, method_label};

    #[test]
    fn method_labels_are_a_closed_set() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        let invented = Method::from_bytes(b"FOO1").expect("a valid token");
        assert_eq!(method_label(&invented), "other");
        let lower = Method::from_bytes(b"get").expect("a valid token");
        assert_eq!(method_label(&lower), "other", "methods are case-sensitive");
    }

    #[test]
    fn only_short_printable_ids_are_taken_from_callers() {
        assert!(acceptable("3f2c-abc_1.2:x"));
        assert!(!acceptable(""));
        assert!(!acceptable("has space"));
        assert!(!acceptable("line\nbreak"));
        assert!(!acceptable(&"a".repeat(129)));
    }
}
