//! The published language of the notifications context: the messages sent to a user.
//!
//! notifications reacts to other contexts' events (a welcome message on
//! `auth.user_registered.v1`, order messages on orders' events) and keeps its own recipient
//! model (address, display name), fed by those events. It publishes no events.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kernel::{
    ContextError, ErrorKind, FieldError, MethodSpec, Page, PageRequest, PortSpec, UserId,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[async_trait]
pub trait NotificationsApi: Send + Sync + 'static {
    /// The messages sent to `recipient`, newest first.
    async fn list_notifications(
        &self,
        recipient: UserId,
        page: PageRequest,
    ) -> Result<Page<Notification>, NotificationsError>;
}

/// [`NotificationsApi`]'s methods and which of them may be retried. No other context calls
/// notifications; the port is what its own routes use, and what an extracted notifications
/// serves.
pub const PORT: PortSpec = PortSpec {
    context: "notifications",
    trait_name: "NotificationsApi",
    version: 1,
    methods: &[MethodSpec::idempotent("list_notifications")],
};

/// Stored and sent as the same snake_case word.
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
pub enum NotificationKind {
    Welcome,
    OrderConfirmed,
    PaymentFailed,
    OrderCancelled,
}

/// How a message travelled. Stored and sent as the same snake_case word.
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
pub enum Channel {
    Email,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Notification {
    pub id: uuid::Uuid,
    pub kind: NotificationKind,
    pub channel: Channel,
    /// The address it went to.
    pub to: String,
    pub subject: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

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
pub enum NotificationsError {
    #[error("the query parameters are invalid")]
    InvalidQuery { fields: Vec<FieldError> },
    #[error("notifications is unavailable: {reason}")]
    Unavailable { reason: String },
    #[error("internal error")]
    Internal,
}

impl ContextError for NotificationsError {
    fn code(&self) -> &'static str {
        self.into()
    }

    fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidQuery { .. } => ErrorKind::InvalidInput,
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
    fn closed_sets_are_stored_as_sent() {
        kernel::assert_stored_as_sent!(NotificationKind, Channel);
    }

    #[test]
    fn error_codes_match_their_wire_tag() {
        for error in [
            NotificationsError::InvalidQuery { fields: vec![] },
            NotificationsError::Unavailable {
                reason: "down".into(),
            },
            NotificationsError::Internal,
        ] {
            let wire = serde_json::to_value(&error).expect("serializable");
            assert_eq!(wire["code"], error.code(), "{error:?}");
            let back: NotificationsError = serde_json::from_value(wire).expect("deserializable");
            assert_eq!(back, error);
        }
    }
}
