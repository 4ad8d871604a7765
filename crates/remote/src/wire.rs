//! What travels between a port's client and its server: the route of each method, the
//! headers, and the shape of an answer.
//!
//! A call is `POST /internal/<context>/v<version>/<method>` with the method's arguments as a
//! JSON object. A call that reached the port answers `200` with either `{"ok": <result>}` or
//! `{"err": <the port's error>}`: a refusal is an answer, not a transport failure. Every other
//! status means the call did not get through (no credential, unknown method, arguments of
//! another version, deadline passed): the client reports it as the port's `unavailable`.

use serde::{Deserialize, Serialize};

/// The service credential: `Authorization: Bearer <internal.token>`.
pub const AUTHORIZATION: &str = "authorization";
/// How long the caller still waits, in milliseconds: the callee stops working past it.
pub const DEADLINE_MS: &str = "x-shop-deadline-ms";
/// The calling context, for the callee's logs and metrics.
pub const CALLER: &str = "x-shop-caller";
/// The request id of the call that led here, so one checkout reads as one story in the logs.
pub const REQUEST_ID: &str = "x-request-id";

/// Which ports a process serves (`GET`, with the service credential): a caller's readiness
/// check asks it, so a base URL that points at the wrong process shows up before the first
/// call.
pub const PORTS_PATH: &str = "/internal/ports";

/// Whether a header value may go into logs and labels as it is: short and printable, so it
/// cannot forge log lines (the rule the public request ids follow too).
pub fn is_label(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// The answer of a call that reached the port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply<T, E> {
    Ok(T),
    Err(E),
}

impl<T, E> From<Result<T, E>> for Reply<T, E> {
    fn from(result: Result<T, E>) -> Self {
        match result {
            Ok(value) => Self::Ok(value),
            Err(error) => Self::Err(error),
        }
    }
}

impl<T, E> From<Reply<T, E>> for Result<T, E> {
    fn from(reply: Reply<T, E>) -> Self {
        match reply {
            Reply::Ok(value) => Ok(value),
            Reply::Err(error) => Err(error),
        }
    }
}

/// The path of a method of a port, below the internal listener's root.
pub fn path(context: &str, version: u32, method: &str) -> String {
    format!("/internal/{context}/v{version}/{method}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_say_ok_or_err() {
        let ok: Reply<u32, String> = Ok(3).into();
        assert_eq!(
            serde_json::to_value(&ok).expect("json"),
            serde_json::json!({"ok": 3})
        );
        let err: Reply<u32, String> = Err("no".to_owned()).into();
        assert_eq!(
            serde_json::to_value(&err).expect("json"),
            serde_json::json!({"err": "no"})
        );
        assert_eq!(
            path("catalog", 1, "reserve_stock"),
            "/internal/catalog/v1/reserve_stock"
        );
    }
}
