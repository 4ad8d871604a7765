//! The one mapping from errors to HTTP responses.

use std::fmt;
use std::time::Duration;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpResponse, ResponseError};
use kernel::{ContextError, ErrorKind, FieldError};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// The body of every error response: `{"error": {"code": ..., "message": ..., ...}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// Besides `code` and `message`, an error may carry the fields of its variant
/// (`fields` for validation errors, `product_ids` for `out_of_stock`, ...).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable, snake_case.
    #[schema(example = "validation_failed")]
    pub code: String,
    /// For humans; may change between releases.
    pub message: String,
    /// Present on `validation_failed` and `invalid_query`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<FieldError>>,
    /// Present on `too_many_requests`: the seconds of its `Retry-After` header.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub retry_after_secs: Option<u64>,
}

/// The field of a context's error that becomes the `Retry-After` header: any variant with a
/// `retry_after_secs` field (`request_in_progress`, ...) gets the header with that value.
pub const RETRY_AFTER_FIELD: &str = "retry_after_secs";

/// An error on its way to becoming an HTTP response.
#[derive(Debug)]
pub struct HttpError {
    status: StatusCode,
    detail: Map<String, Value>,
    /// Seconds for `Retry-After`. Every 503 has one (a second unless said otherwise), so that
    /// clients and proxies know the failure is temporary.
    retry_after: Option<u64>,
    /// Close the connection after answering (the request's body was not read to its end).
    close: bool,
}

/// `Retry-After` of a 503 that names no other delay, in seconds.
const DEFAULT_RETRY_AFTER_SECS: u64 = 1;

/// The status for each kind of failure. Every error response of the shop goes through here.
pub fn status_for(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorKind::Validation | ErrorKind::Rejected => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl HttpError {
    /// Builds the response for a context's error. The variant's own fields become part of
    /// the body, except for internal errors, whose details stay in the logs.
    pub fn from_context<E: ContextError>(error: &E) -> Self {
        let kind = error.kind();
        if kind == ErrorKind::Internal {
            return Self::internal();
        }
        let mut detail = match serde_json::to_value(error) {
            Ok(Value::Object(fields)) => fields,
            _ => Map::new(),
        };
        detail.insert("code".into(), Value::from(error.code()));
        detail.insert("message".into(), Value::from(error.to_string()));
        let retry_after = detail.get(RETRY_AFTER_FIELD).and_then(Value::as_u64);
        Self {
            status: status_for(kind),
            detail,
            retry_after,
            close: false,
        }
    }

    /// A 500 that says nothing about its cause. Log the cause before calling this.
    pub fn internal() -> Self {
        Self::transport(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal server error",
        )
    }

    /// A 400 `invalid_query` listing the query parameters that are wrong.
    pub fn invalid_query(fields: Vec<FieldError>) -> Self {
        let mut error = Self::transport(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "the query parameters are invalid",
        );
        if let Ok(fields) = serde_json::to_value(fields) {
            error.detail.insert("fields".into(), fields);
        }
        error
    }

    /// A 429 `too_many_requests`: the caller went over a rate limit and may try again in
    /// `retry_after` (rounded up to whole seconds, at least one), which the body repeats as
    /// `retry_after_secs`.
    pub fn too_many_requests(retry_after: Duration) -> Self {
        let secs = whole_seconds(retry_after);
        let mut error = Self::transport(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            format!("too many attempts; try again in {secs} s"),
        );
        error
            .detail
            .insert("retry_after_secs".into(), Value::from(secs));
        error.retry_after = Some(secs);
        error
    }

    /// A 408 `request_timeout`: the request's body did not arrive within `limit`. The
    /// connection is closed after the answer, since the rest of the body is still on its way.
    pub fn request_timeout(limit: Duration) -> Self {
        let mut error = Self::transport(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "the request body did not arrive within {} ms",
                limit.as_millis()
            ),
        );
        error.close = true;
        error
    }

    /// A 503 `deadline_exceeded`: the route did not answer within `limit`. What the request
    /// started may still finish (a checkout runs in a task of its own); retrying with the
    /// same idempotency key answers with its outcome.
    pub fn deadline_exceeded(limit: Duration) -> Self {
        Self::transport(
            StatusCode::SERVICE_UNAVAILABLE,
            "deadline_exceeded",
            format!("no answer within {} ms; try again", limit.as_millis()),
        )
    }

    /// Errors of the HTTP transport itself (size limits, media types, routing), which have
    /// no counterpart in a context's error enum (and of the internal routes: no credential,
    /// no such port).
    pub fn transport(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        let mut detail = Map::new();
        detail.insert("code".into(), Value::from(code));
        detail.insert("message".into(), Value::from(message.into()));
        Self {
            status,
            detail,
            retry_after: None,
            close: false,
        }
    }

    pub fn code(&self) -> &str {
        self.detail
            .get("code")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
}

/// Whole seconds, rounded up, at least one: `Retry-After` has no fractions, and zero would
/// invite an immediate retry that is bound to fail.
fn whole_seconds(duration: Duration) -> u64 {
    let secs = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    secs.max(1)
}

impl<E: ContextError> From<E> for HttpError {
    fn from(error: E) -> Self {
        HttpError::from_context(&error)
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.code())
    }
}

impl ResponseError for HttpError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 6750: tell the client which scheme to use.
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        // An error that knows when trying again makes sense says so in a field of its own,
        // `retry_after_secs` (taken from a context error's fields in `from_context`); HTTP
        // clients read it from `Retry-After` (RFC 9110). Every 503 says it, by default 1 s.
        let retry_after = self.retry_after.or_else(|| {
            (self.status == StatusCode::SERVICE_UNAVAILABLE).then_some(DEFAULT_RETRY_AFTER_SECS)
        });
        if let Some(secs) = retry_after {
            response.insert_header((header::RETRY_AFTER, secs));
        }
        if self.close {
            response.force_close();
        }
        response.json(serde_json::json!({ "error": self.detail }))
    }
}

#[cfg(test)]
mod tests {
    use auth_api::AuthError;

    use super::*;

    #[test]
    fn context_errors_keep_their_fields_and_get_a_message() {
        let error = HttpError::from(AuthError::ValidationFailed {
            fields: vec![FieldError::new("email", "invalid_email", "not an email")],
        });
        assert_eq!(error.status_code(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            Value::Object(error.detail),
            serde_json::json!({
                "code": "validation_failed",
                "message": "some fields are invalid",
                "fields": [{"field": "email", "code": "invalid_email", "message": "not an email"}],
            })
        );
    }

    fn header(response: &HttpResponse, name: header::HeaderName) -> Option<&str> {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
    }

    #[test]
    fn every_503_says_when_to_retry() {
        let unavailable = HttpError::from(AuthError::Unavailable {
            reason: "busy".into(),
        })
        .error_response();
        assert_eq!(unavailable.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(header(&unavailable, header::RETRY_AFTER), Some("1"));
        let deadline = HttpError::deadline_exceeded(Duration::from_secs(30));
        assert_eq!(deadline.code(), "deadline_exceeded");
        assert_eq!(
            header(&deadline.error_response(), header::RETRY_AFTER),
            Some("1")
        );
        let refused = HttpError::from(AuthError::InvalidCredentials).error_response();
        assert_eq!(header(&refused, header::RETRY_AFTER), None);
    }

    #[test]
    fn rate_limited_callers_learn_when_to_come_back() {
        let error = HttpError::too_many_requests(Duration::from_millis(2_100));
        let response = error.error_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(header(&response, header::RETRY_AFTER), Some("3"));
        assert_eq!(error.detail["retry_after_secs"], 3);
        let soon = HttpError::too_many_requests(Duration::ZERO);
        assert_eq!(
            header(&soon.error_response(), header::RETRY_AFTER),
            Some("1")
        );
    }

    #[test]
    fn a_body_that_did_not_arrive_closes_the_connection() {
        let response = HttpError::request_timeout(Duration::from_secs(10)).error_response();
        assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(
            response.head().connection_type(),
            actix_web::http::ConnectionType::Close
        );
    }

    #[test]
    fn a_retry_after_field_becomes_the_retry_after_header() {
        #[derive(Debug, thiserror::Error, serde::Serialize)]
        #[serde(tag = "code", rename_all = "snake_case")]
        enum Busy {
            #[error("busy")]
            Busy { retry_after_secs: u64 },
        }
        impl ContextError for Busy {
            fn code(&self) -> &'static str {
                "busy"
            }
            fn kind(&self) -> ErrorKind {
                ErrorKind::Conflict
            }
            fn internal() -> Self {
                Self::Busy {
                    retry_after_secs: 0,
                }
            }
            fn unavailable(_: String) -> Self {
                Self::internal()
            }
        }
        let response = HttpError::from(Busy::Busy {
            retry_after_secs: 7,
        })
        .error_response();
        assert_eq!(response.status(), StatusCode::CONFLICT);
        assert_eq!(
            response
                .headers()
                .get(header::RETRY_AFTER)
                .map(|v| v.as_bytes()),
            Some(&b"7"[..])
        );
        let plain = HttpError::from(AuthError::EmailTaken).error_response();
        assert!(plain.headers().get(header::RETRY_AFTER).is_none());
    }

    #[test]
    fn internal_errors_say_nothing() {
        let error = HttpError::from(AuthError::Internal);
        assert_eq!(error.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            Value::Object(error.detail),
            serde_json::json!({"code": "internal", "message": "internal server error"})
        );
    }
}
