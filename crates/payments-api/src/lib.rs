//! The published language of the payments context: charges and refunds of orders.
//!
//! A charge is keyed: the same `idempotency_key` with the same request returns the same
//! payment and charges once, whatever the number of calls (also concurrent ones); the same
//! key with a different request is refused. Refunds never exceed what was captured.
//! A declined card is not an error: it is a payment whose status is `failed`, with a reason.
//! Errors are for requests that cannot be answered (bad input, unknown payment, an
//! unavailable payments service).
//!
//! A charge whose answer payments does not hear in time is answered as `pending`: its outcome
//! is unknown, and payments asks the provider until it knows (reconciliation), giving back
//! any money taken for a payment that was given up meanwhile.
//!
//! In test mode (`payments.test_mode`, the development default) the built-in fake provider
//! understands these test tokens ([`TEST_TOKENS`]): `tok_visa` (approved), `tok_declined`,
//! `tok_insufficient_funds`, `tok_provider_error`, and `tok_slow` (approved at once, but
//! answered only after a delay longer than payments waits). Outside test mode it declines
//! every token as `invalid_token`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kernel::{
    ContextError, ErrorKind, FieldError, IdempotencyKey, IntegrationEvent, MethodSpec, Money,
    OrderId, PaymentId, PortSpec, UserId,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The payments port: what orders asks payments during checkout, cancellation and for an
/// order's detail. Every method is keyed by the order (or by the caller's idempotency key),
/// so every method may be retried.
#[async_trait]
pub trait PaymentsApi: Send + Sync + 'static {
    /// Charges an order. Idempotent per `idempotency_key`: a retry returns the first
    /// attempt's payment (and completes it if the first attempt was interrupted).
    /// Publishes `PaymentCaptured` or `PaymentFailed`. Payments waits for the provider only
    /// so long (`payments.provider_timeout_ms`): a payment answered as `pending` has an
    /// outcome payments does not know yet; it reconciles it in the background.
    async fn charge(&self, request: ChargeRequest) -> Result<Payment, PaymentsError>;

    /// Gives up on an order's payment whose outcome the caller could not learn (a timed
    /// out charge, a `pending` answer): a pending payment is voided, a captured one refunded
    /// in full, and if no payment exists yet a voided one is recorded so that a late charge
    /// is refused. A voided payment's charge is still reconciled: if the provider took the
    /// money after all, payments records it (captured and refunded in full, still voided)
    /// and gives it back. Idempotent.
    async fn cancel(&self, order_id: OrderId) -> Result<Payment, PaymentsError>;

    /// Gives back everything still captured of the order's payment, as when a confirmed order
    /// is cancelled. Idempotent per order: a repeat returns the payment as it stands, whoever
    /// refunded it. `not_refundable` if nothing was ever captured. Publishes
    /// `PaymentRefunded` (once).
    async fn refund_order(&self, order_id: OrderId) -> Result<Payment, PaymentsError>;

    /// The payment of an order.
    async fn get_payment(&self, order_id: OrderId) -> Result<Payment, PaymentsError>;
}

/// [`PaymentsApi`]'s methods and which of them may be retried.
pub const PORT: PortSpec = PortSpec {
    context: "payments",
    trait_name: "PaymentsApi",
    version: 1,
    methods: &[
        // Keyed by the caller's idempotency key: a repeat returns the first payment.
        MethodSpec::idempotent("charge"),
        // Keyed by the order: a repeat finds the payment already voided or refunded.
        MethodSpec::idempotent("cancel"),
        MethodSpec::idempotent("refund_order"),
        MethodSpec::idempotent("get_payment"),
    ],
};

/// The test tokens of the built-in fake provider and what each does.
pub const TEST_TOKENS: &[(&str, &str)] = &[
    ("tok_visa", "approved"),
    ("tok_declined", "declined by the issuer (reason `declined`)"),
    (
        "tok_insufficient_funds",
        "declined (reason `insufficient_funds`)",
    ),
    (
        "tok_provider_error",
        "the provider fails (reason `provider_error`)",
    ),
    (
        "tok_slow",
        "approved at once, answered after a delay longer than payments waits (settled by reconciliation)",
    ),
];

/// A payment token as the provider issues it: 1 to 64 visible ASCII characters, no spaces
/// (`tok_visa`). Payments owns this rule; callers parse a customer's token with
/// [`PaymentToken::parse`] before they commit to anything (orders does, before it reserves
/// stock), so a token that could never be charged is refused up front.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, pattern = "^[!-~]{1,64}$", example = "tok_visa")]
pub struct PaymentToken(String);

/// Longest accepted payment token, in characters.
pub const MAX_PAYMENT_TOKEN_LEN: usize = 64;

/// [`PaymentToken`]'s rule as a regular expression, for API documents that carry a token.
pub const PAYMENT_TOKEN_PATTERN: &str = "^[!-~]{1,64}$";

/// Why a string is not a payment token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a payment token is 1 to 64 visible ASCII characters without spaces, such as tok_visa")]
pub struct InvalidPaymentToken;

impl PaymentToken {
    pub fn parse(token: &str) -> Result<Self, InvalidPaymentToken> {
        let valid = !token.is_empty()
            && token.len() <= MAX_PAYMENT_TOKEN_LEN
            && token.bytes().all(|b| b.is_ascii_graphic());
        if valid {
            Ok(Self(token.to_owned()))
        } else {
            Err(InvalidPaymentToken)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Tokens stand for a customer's card: they are not printed whole.
impl std::fmt::Debug for PaymentToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown: String = self.0.chars().take(4).collect();
        write!(f, "PaymentToken({shown}…)")
    }
}

impl TryFrom<String> for PaymentToken {
    type Error = InvalidPaymentToken;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<PaymentToken> for String {
    fn from(token: PaymentToken) -> Self {
        token.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChargeRequest {
    pub order_id: OrderId,
    pub customer_id: UserId,
    pub amount: Money,
    pub payment_token: PaymentToken,
    /// Same key and same request: same payment, one charge.
    pub idempotency_key: IdempotencyKey,
}

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
pub enum PaymentStatus {
    /// Recorded, the provider has not answered yet.
    Pending,
    /// Money taken.
    Captured,
    /// Some of the captured money was given back.
    PartiallyRefunded,
    /// All of the captured money was given back.
    Refunded,
    /// The provider declined or failed; nothing was taken. See `failure_reason`.
    Failed,
    /// Given up before the provider answered; nothing was (or stays) taken.
    Voided,
}

/// Why a charge did not capture. Stored and sent as the same snake_case word.
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
pub enum FailureReason {
    Declined,
    InsufficientFunds,
    ProviderError,
    /// The token is not one the provider knows.
    InvalidToken,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Payment {
    pub id: PaymentId,
    pub order_id: OrderId,
    pub customer_id: UserId,
    /// What was asked for.
    pub amount: Money,
    pub status: PaymentStatus,
    /// What was taken (zero unless captured).
    pub captured: Money,
    /// What was given back; never more than `captured`.
    pub refunded: Money,
    pub provider_reference: Option<String>,
    pub failure_reason: Option<FailureReason>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Published when money is taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PaymentCaptured {
    pub payment_id: PaymentId,
    pub order_id: OrderId,
    pub customer_id: UserId,
    pub amount: Money,
    pub provider_reference: String,
}

impl IntegrationEvent for PaymentCaptured {
    const NAME: &'static str = "payments.payment_captured.v1";

    fn aggregate_id(&self) -> String {
        self.order_id.to_string()
    }
}

/// Published when a charge is declined or the provider fails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PaymentFailed {
    pub payment_id: PaymentId,
    pub order_id: OrderId,
    pub customer_id: UserId,
    pub amount: Money,
    pub reason: FailureReason,
}

impl IntegrationEvent for PaymentFailed {
    const NAME: &'static str = "payments.payment_failed.v1";

    fn aggregate_id(&self) -> String {
        self.order_id.to_string()
    }
}

/// Published for every refund.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PaymentRefunded {
    pub payment_id: PaymentId,
    pub order_id: OrderId,
    pub customer_id: UserId,
    /// This refund.
    pub amount: Money,
    /// All refunds of the payment so far, this one included.
    pub refunded_total: Money,
}

impl IntegrationEvent for PaymentRefunded {
    const NAME: &'static str = "payments.payment_refunded.v1";

    fn aggregate_id(&self) -> String {
        self.order_id.to_string()
    }
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
pub enum PaymentsError {
    #[error("some fields are invalid")]
    ValidationFailed { fields: Vec<FieldError> },
    #[error("this idempotency key was already used for a different request")]
    IdempotencyKeyReused,
    #[error("no payment for order {order_id}")]
    PaymentNotFound { order_id: OrderId },
    #[error("the payment is {status:?}; only captured payments can be refunded")]
    NotRefundable { status: PaymentStatus },
    #[error("a refund of {requested} would exceed the {remaining} still refundable")]
    RefundExceedsCapture { requested: Money, remaining: Money },
    #[error("payments is unavailable: {reason}")]
    Unavailable { reason: String },
    #[error("internal error")]
    Internal,
}

impl ContextError for PaymentsError {
    fn code(&self) -> &'static str {
        self.into()
    }

    fn kind(&self) -> ErrorKind {
        match self {
            Self::ValidationFailed { .. } => ErrorKind::Validation,
            Self::IdempotencyKeyReused | Self::RefundExceedsCapture { .. } => ErrorKind::Rejected,
            Self::PaymentNotFound { .. } => ErrorKind::NotFound,
            Self::NotRefundable { .. } => ErrorKind::Conflict,
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
    use kernel::Currency;

    use super::*;

    #[test]
    fn closed_sets_are_stored_as_sent() {
        kernel::assert_stored_as_sent!(PaymentStatus, FailureReason);
    }

    #[test]
    fn payment_tokens_are_visible_ascii_within_bounds() {
        assert_eq!(
            PaymentToken::parse("tok_visa").map(|t| t.as_str().to_owned()),
            Ok("tok_visa".to_owned())
        );
        for bad in ["", "tok visa", "tok_visa\n", "tök", &"t".repeat(65)] {
            assert_eq!(
                PaymentToken::parse(bad),
                Err(InvalidPaymentToken),
                "{bad:?}"
            );
        }
        assert!(serde_json::from_str::<PaymentToken>("\"tok visa\"").is_err());
        assert!(
            !format!("{:?}", PaymentToken::parse("tok_secret").expect("valid")).contains("secret")
        );
    }

    #[test]
    fn error_codes_match_their_wire_tag() {
        let eur = |cents| Money::new(cents, Currency::EUR).expect("valid");
        let all = [
            PaymentsError::ValidationFailed { fields: vec![] },
            PaymentsError::IdempotencyKeyReused,
            PaymentsError::PaymentNotFound {
                order_id: OrderId::new(),
            },
            PaymentsError::NotRefundable {
                status: PaymentStatus::Failed,
            },
            PaymentsError::RefundExceedsCapture {
                requested: eur(2),
                remaining: eur(1),
            },
            PaymentsError::Unavailable {
                reason: "timeout".into(),
            },
            PaymentsError::Internal,
        ];
        for error in all {
            let wire = serde_json::to_value(&error).expect("serializable");
            assert_eq!(wire["code"], error.code(), "{error:?}");
            let back: PaymentsError = serde_json::from_value(wire).expect("deserializable");
            assert_eq!(back, error);
        }
    }
}
