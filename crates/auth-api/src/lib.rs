//! The published language of the auth context: what other contexts and the composition root
//! may know about users, credentials and access tokens.
//!
//! Everything here is remotable: arguments and results are owned serde types, errors are an
//! enumerable, serializable enum, and there are no callbacks or borrowed data. The same trait
//! is implemented in-process by the `auth` crate and, once auth is extracted, by a network
//! client; callers cannot tell the difference.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kernel::{ContextError, ErrorKind, FieldError, IntegrationEvent, UserId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The auth context's port. Every protected route of every context authenticates its caller
/// through [`AuthApi::verify_token`].
#[async_trait]
pub trait AuthApi: Send + Sync + 'static {
    /// Creates a customer account. Publishes [`UserRegistered`].
    async fn register(&self, request: RegisterUser) -> Result<User, AuthError>;

    /// Exchanges an email and password for an access token. A wrong password and an unknown
    /// email fail identically, so the answer does not reveal which accounts exist.
    async fn login(&self, request: Login) -> Result<AccessToken, AuthError>;

    /// Checks an access token's signature, algorithm, issuer, audience and expiry, and says
    /// who is calling.
    async fn verify_token(&self, token: String) -> Result<Principal, AuthError>;

    async fn get_user(&self, id: UserId) -> Result<User, AuthError>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
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
    #[schema(example = "ada@example.com")]
    pub email: String,
    /// 8 to 128 characters.
    #[schema(example = "correct horse battery staple")]
    pub password: Password,
    #[schema(example = "Ada Lovelace")]
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
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the token expires.
    pub expires_in: u64,
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

/// A user as other contexts may see it: no credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

/// Who is calling, as established from a verified access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize, strum::IntoStaticStr,
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
    fn passwords_do_not_leak_through_debug() {
        let request = Login {
            email: "a@b.c".into(),
            password: Password::new("hunter22hunter22"),
        };
        assert!(!format!("{request:?}").contains("hunter22"));
    }
}
