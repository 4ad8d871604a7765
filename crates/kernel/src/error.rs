//! What every context's error has in common: a stable code and a kind.
//!
//! Each context has its own error enum in its `-api` crate (serializable, so it can cross a
//! process boundary). The enum says *what* went wrong with a stable snake_case `code`, and
//! *which kind* of failure it is. It never says which HTTP status to use: the web layer
//! (`web-kit`) maps kinds to statuses in exactly one place.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The kinds of failure a caller can react to differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request itself is malformed (bad syntax, missing header, bad paging values).
    InvalidInput,
    /// The request is well-formed but some fields are invalid; see the field errors.
    Validation,
    /// No valid credentials were presented.
    Unauthenticated,
    /// Valid credentials, but not allowed to do this.
    Forbidden,
    /// The thing asked for does not exist (or is not visible to the caller).
    NotFound,
    /// The request conflicts with the current state (duplicate, not enough stock).
    Conflict,
    /// The request is understood and valid but refused by a business rule.
    Rejected,
    /// A dependency (another context, a provider) did not answer in time or at all.
    Unavailable,
    /// A bug or an infrastructure failure; details are logged, never returned.
    Internal,
}

/// Implemented by every context's public error enum.
///
/// `code` must equal the serde tag the enum serializes with, so that the code a client sees
/// over HTTP and the code a remote caller deserializes are the same word.
pub trait ContextError: std::error::Error + Serialize + Send + Sync + 'static {
    fn code(&self) -> &'static str;
    fn kind(&self) -> ErrorKind;

    /// The variant that stands for "a bug or an infrastructure failure". Its details are
    /// logged where it happens and never cross the boundary.
    fn internal() -> Self
    where
        Self: Sized;

    /// The variant that stands for "the context did not answer": a remote call that timed
    /// out, could not connect, or met an open circuit breaker. Callers already handle it, so
    /// moving a context to another process changes no caller.
    fn unavailable(reason: String) -> Self
    where
        Self: Sized;
}

/// One invalid field of a request, reported with a 422.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    /// The field's name as the client sent it (`email`, `lines[2].quantity`).
    pub field: String,
    /// A stable snake_case code (`invalid_email`, `too_short`).
    pub code: String,
    /// A human-readable explanation.
    pub message: String,
}

impl FieldError {
    pub fn new(
        field: impl Into<String>,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            code: code.into(),
            message: message.into(),
        }
    }
}

/// Collects field errors while parsing a request, so the client learns every problem at once.
#[derive(Debug, Default)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, error: FieldError) {
        self.0.push(error);
    }

    /// Keeps the parsed value, or records its error and returns `None`.
    pub fn check<T>(&mut self, result: Result<T, FieldError>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.0.push(error);
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_vec(self) -> Vec<FieldError> {
        self.0
    }
}
