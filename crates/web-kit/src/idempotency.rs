//! The `Idempotency-Key` request header (IETF draft "The Idempotency-Key HTTP Header Field").
//!
//! A route that takes [`RequiredIdempotencyKey`] refuses a request without a usable key with
//! `400` before anything else about the request is looked at, as the draft asks: a missing
//! key is a malformed request, whatever the body says.

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::http::header::HeaderName;
use actix_web::{FromRequest, HttpRequest};
use futures::future::{Ready, ready};
use kernel::{IdempotencyKey, IdempotencyKeyError};

use crate::error::HttpError;

pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The request's idempotency key. `400 missing_idempotency_key` without the header,
/// `400 invalid_idempotency_key` when it breaks the rule (1 to 200 visible ASCII characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequiredIdempotencyKey(pub IdempotencyKey);

fn key_of(req: &HttpRequest) -> Result<IdempotencyKey, HttpError> {
    let Some(value) = req.headers().get(&IDEMPOTENCY_KEY) else {
        return Err(missing());
    };
    let value = value.to_str().map_err(|_| invalid())?;
    IdempotencyKey::parse(value).map_err(|error| match error {
        IdempotencyKeyError::Empty => missing(),
        IdempotencyKeyError::Invalid => invalid(),
    })
}

fn missing() -> HttpError {
    HttpError::transport(
        StatusCode::BAD_REQUEST,
        "missing_idempotency_key",
        "send an `Idempotency-Key` header (1 to 200 visible ASCII characters) so that a retried request cannot act twice",
    )
}

fn invalid() -> HttpError {
    HttpError::transport(
        StatusCode::BAD_REQUEST,
        "invalid_idempotency_key",
        "the `Idempotency-Key` header must be 1 to 200 visible ASCII characters without spaces",
    )
}

impl FromRequest for RequiredIdempotencyKey {
    type Error = HttpError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        ready(key_of(req).map(RequiredIdempotencyKey))
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn check(header: Option<&str>, expected: Result<&str, &str>) {
        let mut request = TestRequest::default();
        if let Some(value) = header {
            request = request.insert_header(("Idempotency-Key", value));
        }
        let got = key_of(&request.to_http_request());
        match (got, expected) {
            (Ok(key), Ok(want)) => assert_eq!(key.as_str(), want),
            (Err(error), Err(code)) => {
                assert_eq!(error.code(), code);
                assert_eq!(actix_web::ResponseError::status_code(&error), 400);
            }
            (got, want) => panic!("{header:?}: got {got:?}, wanted {want:?}"),
        }
    }

    #[test]
    fn keys_are_required_and_checked() {
        check(Some("order-1"), Ok("order-1"));
        check(None, Err("missing_idempotency_key"));
        check(Some(""), Err("missing_idempotency_key"));
        check(Some("has space"), Err("invalid_idempotency_key"));
        check(Some(&"k".repeat(201)), Err("invalid_idempotency_key"));
    }
}
