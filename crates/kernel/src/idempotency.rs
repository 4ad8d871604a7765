//! Idempotency keys: the caller's name for one attempt at a change, so that a retry of the
//! same attempt is recognised and answered instead of repeated.
//!
//! The rule follows the IETF `Idempotency-Key` header draft: the key is opaque to the server,
//! chosen by the client, unique per attempt. Here it is 1 to 200 visible ASCII characters
//! (no spaces), which every HTTP header value and every database column can carry as is.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Longest accepted key, in characters.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 200;

/// The rule as a regular expression, for API documents.
pub const IDEMPOTENCY_KEY_PATTERN: &str = "^[!-~]{1,200}$";

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdempotencyKeyError {
    #[error("the idempotency key is empty")]
    Empty,
    #[error("the idempotency key must be 1 to 200 visible ASCII characters without spaces")]
    Invalid,
}

/// A valid idempotency key; always within the rule once constructed (also when deserialized).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, pattern = "^[!-~]{1,200}$", example = "order-2026-11-29-001")]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(key: &str) -> Result<Self, IdempotencyKeyError> {
        if key.is_empty() {
            return Err(IdempotencyKeyError::Empty);
        }
        if key.len() > MAX_IDEMPOTENCY_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(IdempotencyKeyError::Invalid);
        }
        Ok(Self(key.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdempotencyKey({:?})", self.0)
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for IdempotencyKey {
    type Error = IdempotencyKeyError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<IdempotencyKey> for String {
    fn from(key: IdempotencyKey) -> Self {
        key.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_visible_ascii_within_bounds() {
        assert_eq!(
            IdempotencyKey::parse("order-1:retry").map(|k| k.to_string()),
            Ok("order-1:retry".to_owned())
        );
        assert_eq!(IdempotencyKey::parse(""), Err(IdempotencyKeyError::Empty));
        for bad in ["has space", "tab\t", "é", &"k".repeat(201)] {
            assert_eq!(
                IdempotencyKey::parse(bad),
                Err(IdempotencyKeyError::Invalid),
                "{bad:?}"
            );
        }
        assert!(IdempotencyKey::parse(&"k".repeat(200)).is_ok());
    }

    #[test]
    fn deserializing_applies_the_rule() {
        assert!(serde_json::from_str::<IdempotencyKey>("\"ok-1\"").is_ok());
        assert!(serde_json::from_str::<IdempotencyKey>("\"not ok\"").is_err());
    }
}
