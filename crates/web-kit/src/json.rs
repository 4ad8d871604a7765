//! JSON request bodies, read the way the API document describes them.
//!
//! The document is JSON Schema, where `3497.0` *is* the integer 3497 (a number with no
//! fractional part is an integer). serde reads it as a float and refuses it for an integer
//! field. So [`Json`] reads the body as JSON first, turns every number without a fraction
//! into an integer, and only then builds the typed value: a client that sends `2.0` for a
//! quantity gets what the document promised, and `2.5` is still refused.
//!
//! The body is read within [`crate::RequestLimits::body_read`] when the app has limits: a
//! client that trickles its body gets `408 request_timeout` and the connection is closed.

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest, web};
use futures::future::LocalBoxFuture;
use serde::de::DeserializeOwned;
use serde_json::{Number, Value};

use crate::error::HttpError;
use crate::limits::RequestLimits;

/// A JSON body of type `T`. Size limit, media type and malformed JSON are answered as for
/// `web::Json` (see `configure_extractors`); a body of the wrong shape is
/// `422 invalid_body`; a body that does not arrive in time is `408 request_timeout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Json<T>(pub T);

impl<T> Json<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Json<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = web::Json::<Value>::from_request(req, payload);
        let limit = req
            .app_data::<RequestLimits>()
            .map(|limits| limits.body_read);
        Box::pin(async move {
            let read = match limit {
                Some(limit) => actix_web::rt::time::timeout(limit, body)
                    .await
                    .map_err(|_elapsed| HttpError::request_timeout(limit))?,
                None => body.await,
            };
            let web::Json(mut value) = read?;
            integral_numbers_as_integers(&mut value);
            serde_json::from_value(value).map(Json).map_err(|error| {
                HttpError::transport(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_body",
                    format!("the request body does not match the expected shape: {error}"),
                )
                .into()
            })
        })
    }
}

/// Rewrites every float without a fractional part that fits an `i64` (or a `u64`) as that
/// integer, everywhere in `value`.
fn integral_numbers_as_integers(value: &mut Value) {
    match value {
        Value::Number(number) => {
            if let Some(integer) = integral(number) {
                *number = integer;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_numbers_as_integers),
        Value::Object(fields) => fields.values_mut().for_each(integral_numbers_as_integers),
        Value::Null | Value::Bool(_) | Value::String(_) => {}
    }
}

fn integral(number: &Number) -> Option<Number> {
    if !number.is_f64() {
        return None;
    }
    let float = number.as_f64()?;
    if float.fract() != 0.0 {
        return None;
    }
    // 2^63 and 2^64 are exact in f64; the bounds are exclusive at the top.
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    const TWO_64: f64 = 18_446_744_073_709_551_616.0;
    if (-TWO_63..TWO_63).contains(&float) {
        #[allow(clippy::cast_possible_truncation)]
        return Some(Number::from(float as i64));
    }
    if (0.0..TWO_64).contains(&float) {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        return Some(Number::from(float as u64));
    }
    None
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn numbers_without_a_fraction_are_integers() {
        let mut value = json!({"a": 3497.0, "b": [1.5, -2.0, 1e3], "c": {"d": 0.0}, "e": 7});
        integral_numbers_as_integers(&mut value);
        assert_eq!(
            value,
            json!({"a": 3497, "b": [1.5, -2, 1000], "c": {"d": 0}, "e": 7})
        );
        assert!(value["a"].is_i64());
        let mut huge = json!(1e30);
        integral_numbers_as_integers(&mut huge);
        assert!(
            huge.is_f64(),
            "too large for any integer type: left as it was"
        );
        let mut edge = json!(-9_223_372_036_854_775_808.0);
        integral_numbers_as_integers(&mut edge);
        assert_eq!(edge, json!(i64::MIN));
        let mut past = json!(9_223_372_036_854_775_808.0);
        integral_numbers_as_integers(&mut past);
        assert_eq!(past, json!(9_223_372_036_854_775_808_u64));
    }
}
