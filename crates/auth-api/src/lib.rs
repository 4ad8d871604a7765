//! The published language of the auth context: its port ([`AuthApi`], what the rest of the
//! shop asks auth), the event it publishes ([`UserRegistered`]), the types of its public
//! routes (registration, login, the current user) and its error enum.
//!
//! Everything here is remotable: arguments and results are owned serde types, errors are an
//! enumerable, serializable enum, and there are no callbacks or borrowed data. The same trait
//! is implemented in-process by the `auth` crate and, once auth is extracted, by a network
//! client; callers cannot tell the difference. [`PORT`] says which methods may be retried.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kernel::{ContextError, ErrorKind, FieldError, IntegrationEvent, MethodSpec, PortSpec, UserId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The auth context's port: what the rest of the shop asks auth. Every protected route of
/// every context authenticates its caller through [`AuthApi::verify_token`] (by way of
/// web-kit's extractors). Registration and login are auth's own public routes; they call
/// auth's service directly and do not travel through the port.
#[async_trait]
pub trait AuthApi: Send + Sync + 'static {
    /// Checks an access token's signature, algorithm, issuer, audience and expiry, and says
    /// who is calling.
    async fn verify_token(&self, token: String) -> Result<Principal, AuthError>;
}

/// [`AuthApi`]'s methods and which of them may be retried.
pub const PORT: PortSpec = PortSpec {
    context: "auth",
    trait_name: "AuthApi",
    version: 1,
    methods: &[
        // A pure check: asking twice gives the same answer.
        MethodSpec::idempotent("verify_token"),
    ],
};

/// Stored and sent as the same snake_case word (`customer`, `admin`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    ToSchema,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Role {
    Customer,
    Admin,
}

/// A password as typed by its owner. It never appears in `Debug` output (and so in logs).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, format = Password)]
pub struct Password(String);

impl Password {
    pub fn new(password: impl Into<String>) -> Self {
        Self(password.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password([redacted])")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterUser {
    /// Unique, compared case-insensitively.
    #[schema(example = "ada@example.com", format = Email, max_length = 254)]
    pub email: String,
    /// 8 to 128 characters.
    #[schema(value_type = String, format = Password, example = "correct horse battery staple", min_length = 8, max_length = 128)]
    pub password: Password,
    /// 1 to 100 characters, not only spaces, no control characters.
    #[schema(
        example = "Ada Lovelace",
        max_length = 100,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub display_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    #[schema(example = "ada@example.com")]
    pub email: String,
    #[schema(example = "correct horse battery staple")]
    pub password: Password,
}

/// A bearer token, in the shape of an OAuth 2 token response.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccessToken {
    pub access_token: String,
    pub token_type: TokenType,
    /// Seconds until the token expires.
    pub expires_in: u64,
}

/// How to present an access token (RFC 6750): always `Bearer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum TokenType {
    Bearer,
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("access_token", &"[redacted]")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// A user as auth's public routes show it: no credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

/// Who is calling, as established from a verified access token. Auth's model of the caller;
/// web-kit translates it into the context-neutral `web_kit::Caller` that routes see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Principal {
    pub user_id: UserId,
    pub role: Role,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// Published when an account is created; notifications keeps its own recipient record from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UserRegistered {
    pub user_id: UserId,
    pub email: String,
    pub display_name: String,
    pub registered_at: DateTime<Utc>,
}

impl IntegrationEvent for UserRegistered {
    const NAME: &'static str = "auth.user_registered.v1";

    fn aggregate_id(&self) -> String {
        self.user_id.to_string()
    }
}

/// Everything that can go wrong in auth, with a stable snake_case code per variant.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    thiserror::Error,
    Serialize,
    Deserialize,
    ToSchema,
    strum::IntoStaticStr,
)]
#[serde(tag = "code", rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum AuthError {
    #[error("some fields are invalid")]
    ValidationFailed { fields: Vec<FieldError> },
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error("email or password is wrong")]
    InvalidCredentials,
    #[error("this route needs an access token: send `Authorization: Bearer <token>`")]
    MissingToken,
    #[error("the access token is invalid")]
    InvalidToken,
    #[error("the access token has expired; log in again")]
    TokenExpired,
    #[error("this route is for administrators")]
    Forbidden,
    #[error("no such user")]
    UserNotFound,
    #[error("auth is unavailable: {reason}")]
    Unavailable { reason: String },
    #[error("internal error")]
    Internal,
}

impl ContextError for AuthError {
    fn code(&self) -> &'static str {
        self.into()
    }

    fn kind(&self) -> ErrorKind {
        match self {
            Self::ValidationFailed { .. } => ErrorKind::Validation,
            Self::EmailTaken => ErrorKind::Conflict,
            Self::InvalidCredentials
            | Self::MissingToken
            | Self::InvalidToken
            | Self::TokenExpired => ErrorKind::Unauthenticated,
            Self::Forbidden => ErrorKind::Forbidden,
            Self::UserNotFound => ErrorKind::NotFound,
            Self::Unavailable { .. } => ErrorKind::Unavailable,
            Self::Internal => ErrorKind::Internal,
        }
    }

    fn internal() -> Self {
        Self::Internal
    }

    fn unavailable(reason: String) -> Self {
        Self::Unavailable { reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_match_their_wire_tag() {
        let all = [
            AuthError::ValidationFailed { fields: vec![] },
            AuthError::EmailTaken,
            AuthError::InvalidCredentials,
            AuthError::MissingToken,
            AuthError::InvalidToken,
            AuthError::TokenExpired,
            AuthError::Forbidden,
            AuthError::UserNotFound,
            AuthError::Unavailable {
                reason: "timeout".into(),
            },
            AuthError::Internal,
        ];
        for error in all {
            let wire = serde_json::to_value(&error).expect("serializable");
            assert_eq!(wire["code"], error.code(), "{error:?}");
            let back: AuthError = serde_json::from_value(wire).expect("deserializable");
            assert_eq!(back, error);
        }
    }

    #[test]
    fn closed_sets_are_stored_as_sent() {
        kernel::assert_stored_as_sent!(Role);
    }

    #[test]
    fn passwords_do_not_leak_through_debug() {
        let request = Login {
            email: "a@b.c".into(),
            password: Password::new("hunter22hunter22"),
        };
        assert!(!format!("{request:?}").contains("hunter22"));
    }
}
