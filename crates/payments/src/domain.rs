//! Payments' rules: what a valid charge or refund request is, what a repeated charge means,
//! and how much a refund may take. No I/O.

use kernel::{FieldError, FieldErrors, Money, OrderId};
use payments_api::{ChargeRequest, PaymentStatus, PaymentsError, RefundRequest};
use sha2::{Digest, Sha256};

/// Longest accepted provider token, in characters.
pub const MAX_TOKEN_CHARS: usize = 64;
/// Longest accepted idempotency key, in characters (the column is `VARCHAR(200)`).
pub const MAX_KEY_CHARS: usize = 200;
/// The key of the tombstone `cancel` records for an order that was never charged starts
/// with this, so charge keys may not: a caller's charge key can then never take the
/// tombstone's place. Refund keys may: `cancel:<order_id>` is also the key of the refund
/// `cancel` makes, and a caller refunding everything of a cancelled order with that key
/// (as orders does) means the same refund.
pub const RESERVED_KEY_PREFIX: &str = "cancel:";

/// The key of everything `cancel` records for an order.
pub fn cancel_key(order_id: OrderId) -> String {
    format!("{RESERVED_KEY_PREFIX}{order_id}")
}

/// A provider token: 1 to 64 printable ASCII characters, no spaces (`tok_visa`).
pub fn check_token(token: &str) -> Result<(), FieldError> {
    let length = token.chars().count();
    if length == 0 || length > MAX_TOKEN_CHARS || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(FieldError::new(
            "payment_token",
            "invalid_token",
            format!("must be 1 to {MAX_TOKEN_CHARS} printable characters without spaces"),
        ));
    }
    Ok(())
}

/// An idempotency key chosen by the caller: 1 to 200 characters, opaque otherwise.
pub fn check_key(key: &str) -> Result<(), FieldError> {
    let length = key.chars().count();
    if length == 0 || length > MAX_KEY_CHARS {
        return Err(FieldError::new(
            "idempotency_key",
            "invalid_key",
            format!("must be 1 to {MAX_KEY_CHARS} characters"),
        ));
    }
    Ok(())
}

/// A charge's key is a key outside payments' own namespace.
pub fn check_charge_key(key: &str) -> Result<(), FieldError> {
    check_key(key)?;
    if key.starts_with(RESERVED_KEY_PREFIX) {
        return Err(FieldError::new(
            "idempotency_key",
            "reserved_key",
            format!("charge keys starting with {RESERVED_KEY_PREFIX:?} are reserved"),
        ));
    }
    Ok(())
}

/// Charges and refunds move money: zero is never a meaningful amount.
pub fn check_amount(amount: Money) -> Result<(), FieldError> {
    if amount.is_zero() {
        return Err(FieldError::new(
            "amount",
            "invalid_amount",
            "amount_minor must be greater than zero",
        ));
    }
    Ok(())
}

pub fn validate_charge(request: &ChargeRequest) -> Result<(), PaymentsError> {
    let mut errors = FieldErrors::new();
    errors.check(check_amount(request.amount));
    errors.check(check_token(&request.payment_token));
    errors.check(check_charge_key(&request.idempotency_key));
    if errors.is_empty() {
        Ok(())
    } else {
        Err(PaymentsError::ValidationFailed {
            fields: errors.into_vec(),
        })
    }
}

pub fn validate_refund(request: &RefundRequest) -> Result<(), PaymentsError> {
    let mut errors = FieldErrors::new();
    if let Some(amount) = request.amount {
        errors.check(check_amount(amount));
    }
    errors.check(check_refund_key(&request.idempotency_key, request.order_id));
    if errors.is_empty() {
        Ok(())
    } else {
        Err(PaymentsError::ValidationFailed {
            fields: errors.into_vec(),
        })
    }
}

/// A refund's key may be the order's own `cancel:<order_id>`, but not another order's: that
/// would stand in the way of cancelling that other order.
pub fn check_refund_key(key: &str, order_id: OrderId) -> Result<(), FieldError> {
    check_key(key)?;
    if key.starts_with(RESERVED_KEY_PREFIX) && key != cancel_key(order_id) {
        return Err(FieldError::new(
            "idempotency_key",
            "reserved_key",
            format!("refund keys starting with {RESERVED_KEY_PREFIX:?} must name the order"),
        ));
    }
    Ok(())
}

/// Hex SHA-256 of the canonical form of a charge: what "the same request" means for an
/// idempotency key. The key itself is not part of it. Fields are separated by newlines,
/// which no field can contain (ids, digits, a currency code, a token of printable
/// characters), so two different requests can never have the same canonical form.
pub fn fingerprint(request: &ChargeRequest) -> String {
    let canonical = format!(
        "charge.v1\n{}\n{}\n{}\n{}\n{}",
        request.order_id,
        request.customer_id,
        request.amount.amount_minor(),
        request.amount.currency(),
        request.payment_token,
    );
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

/// What a charge does with the payment its order already has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// Answer with the payment as it is.
    Return,
    /// The first attempt was interrupted before the provider's answer was stored: ask the
    /// provider again with the same key (it charges at most once per key) and finish.
    Resume,
    /// Another request already owns this order (or this key).
    KeyReused,
}

/// Decides what a charge does when its order already has a payment. A voided payment wins
/// over everything: the order gave up on paying, and a late or different charge must not
/// take money for it.
pub fn repeat(status: PaymentStatus, same_key: bool, same_fingerprint: bool) -> Repeat {
    match status {
        PaymentStatus::Voided => Repeat::Return,
        _ if !(same_key && same_fingerprint) => Repeat::KeyReused,
        PaymentStatus::Pending => Repeat::Resume,
        _ => Repeat::Return,
    }
}

/// Only money that was taken and not yet given back can be refunded.
pub fn check_refundable(status: PaymentStatus) -> Result<(), PaymentsError> {
    match status {
        PaymentStatus::Captured | PaymentStatus::PartiallyRefunded => Ok(()),
        status => Err(PaymentsError::NotRefundable { status }),
    }
}

/// The amount a refund takes: what was asked for, or everything still refundable when
/// nothing was asked for. Never more than `captured - refunded`.
pub fn refund_amount(
    captured: Money,
    refunded: Money,
    requested: Option<Money>,
) -> Result<Money, PaymentsError> {
    let remaining = captured.checked_sub(refunded).map_err(|error| {
        tracing::error!(%error, %captured, %refunded, "refunds exceed the capture");
        PaymentsError::Internal
    })?;
    let Some(requested) = requested else {
        if remaining.is_zero() {
            return Err(PaymentsError::RefundExceedsCapture {
                requested: remaining,
                remaining,
            });
        }
        return Ok(remaining);
    };
    if requested.currency() != captured.currency() {
        return Err(PaymentsError::ValidationFailed {
            fields: vec![FieldError::new(
                "amount",
                "currency_mismatch",
                format!("the payment is in {}", captured.currency()),
            )],
        });
    }
    if requested.amount_minor() > remaining.amount_minor() {
        return Err(PaymentsError::RefundExceedsCapture {
            requested,
            remaining,
        });
    }
    Ok(requested)
}

#[cfg(test)]
mod tests {
    use kernel::{Currency, UserId};

    use super::*;

    fn eur(cents: i64) -> Money {
        Money::new(cents, Currency::EUR).expect("valid")
    }

    fn request() -> ChargeRequest {
        ChargeRequest {
            order_id: OrderId::new(),
            customer_id: UserId::new(),
            amount: eur(1999),
            payment_token: "tok_visa".into(),
            idempotency_key: "order-1".into(),
        }
    }

    fn codes(result: Result<(), PaymentsError>) -> Vec<(String, String)> {
        match result {
            Err(PaymentsError::ValidationFailed { fields }) => fields
                .into_iter()
                .map(|field| (field.field, field.code))
                .collect(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn tokens_are_short_and_printable() {
        assert!(check_token("tok_visa").is_ok());
        assert!(check_token(&"t".repeat(MAX_TOKEN_CHARS)).is_ok());
        for bad in [
            "",
            "tok visa",
            "tok\n",
            "tök",
            &"t".repeat(MAX_TOKEN_CHARS + 1),
        ] {
            assert_eq!(
                check_token(bad).map_err(|e| e.code),
                Err("invalid_token".into()),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn keys_are_bounded_and_charge_keys_not_reserved() {
        assert!(check_key("k").is_ok());
        assert!(
            check_key(&"é".repeat(MAX_KEY_CHARS)).is_ok(),
            "counted in characters"
        );
        assert_eq!(check_key("").map_err(|e| e.code), Err("invalid_key".into()));
        assert_eq!(
            check_key(&"k".repeat(MAX_KEY_CHARS + 1)).map_err(|e| e.code),
            Err("invalid_key".into())
        );
        let cancel = cancel_key(OrderId::new());
        assert!(check_key(&cancel).is_ok(), "a refund may use it");
        assert_eq!(
            check_charge_key(&cancel).map_err(|e| e.code),
            Err("reserved_key".into())
        );
        assert!(check_charge_key("order:cancel:1").is_ok());
        let order_id = OrderId::new();
        assert!(check_refund_key(&cancel_key(order_id), order_id).is_ok());
        assert_eq!(
            check_refund_key(&cancel, order_id).map_err(|e| e.code),
            Err("reserved_key".into()),
            "another order's cancel key"
        );
        assert_eq!(
            check_charge_key("").map_err(|e| e.code),
            Err("invalid_key".into())
        );
    }

    #[test]
    fn a_charge_reports_every_invalid_field() {
        let valid = request();
        assert_eq!(validate_charge(&valid), Ok(()));
        let invalid = ChargeRequest {
            amount: eur(0),
            payment_token: String::new(),
            idempotency_key: String::new(),
            ..valid
        };
        assert_eq!(
            codes(validate_charge(&invalid)),
            vec![
                ("amount".into(), "invalid_amount".into()),
                ("payment_token".into(), "invalid_token".into()),
                ("idempotency_key".into(), "invalid_key".into()),
            ]
        );
    }

    #[test]
    fn a_refund_needs_a_key_and_a_positive_amount_if_any() {
        let refund = |amount, key: &str| RefundRequest {
            order_id: OrderId::new(),
            amount,
            idempotency_key: key.into(),
        };
        assert_eq!(validate_refund(&refund(None, "r1")), Ok(()));
        assert_eq!(validate_refund(&refund(Some(eur(1)), "r1")), Ok(()));
        assert_eq!(
            codes(validate_refund(&refund(Some(eur(0)), ""))),
            vec![
                ("amount".into(), "invalid_amount".into()),
                ("idempotency_key".into(), "invalid_key".into()),
            ]
        );
    }

    #[test]
    fn fingerprints_cover_the_request_but_not_the_key() {
        let original = request();
        let print = fingerprint(&original);
        assert_eq!(print.len(), 64);
        assert!(print.bytes().all(|b| b.is_ascii_hexdigit()));
        let same_but_key = ChargeRequest {
            idempotency_key: "another".into(),
            ..original.clone()
        };
        assert_eq!(fingerprint(&same_but_key), print);
        let changes = [
            ChargeRequest {
                order_id: OrderId::new(),
                ..original.clone()
            },
            ChargeRequest {
                customer_id: UserId::new(),
                ..original.clone()
            },
            ChargeRequest {
                amount: eur(2000),
                ..original.clone()
            },
            ChargeRequest {
                amount: Money::new(1999, Currency::USD).expect("valid"),
                ..original.clone()
            },
            ChargeRequest {
                payment_token: "tok_declined".into(),
                ..original.clone()
            },
        ];
        for changed in changes {
            assert_ne!(fingerprint(&changed), print, "{changed:?}");
        }
    }

    #[test]
    fn repeated_charges() {
        use PaymentStatus::*;
        assert_eq!(repeat(Pending, true, true), Repeat::Resume);
        for status in [Captured, PartiallyRefunded, Refunded, Failed] {
            assert_eq!(repeat(status, true, true), Repeat::Return, "{status:?}");
            assert_eq!(repeat(status, false, true), Repeat::KeyReused, "{status:?}");
            assert_eq!(repeat(status, true, false), Repeat::KeyReused, "{status:?}");
        }
        assert_eq!(repeat(Pending, true, false), Repeat::KeyReused);
        // A voided payment refuses every later charge by answering with itself.
        assert_eq!(repeat(Voided, false, false), Repeat::Return);
        assert_eq!(repeat(Voided, true, true), Repeat::Return);
    }

    #[test]
    fn only_captured_money_is_refundable() {
        use PaymentStatus::*;
        assert_eq!(check_refundable(Captured), Ok(()));
        assert_eq!(check_refundable(PartiallyRefunded), Ok(()));
        for status in [Pending, Refunded, Failed, Voided] {
            assert_eq!(
                check_refundable(status),
                Err(PaymentsError::NotRefundable { status })
            );
        }
    }

    #[test]
    fn refunds_never_exceed_what_remains() {
        assert_eq!(refund_amount(eur(1000), eur(0), None), Ok(eur(1000)));
        assert_eq!(refund_amount(eur(1000), eur(300), None), Ok(eur(700)));
        assert_eq!(
            refund_amount(eur(1000), eur(300), Some(eur(700))),
            Ok(eur(700))
        );
        assert_eq!(
            refund_amount(eur(1000), eur(300), Some(eur(701))),
            Err(PaymentsError::RefundExceedsCapture {
                requested: eur(701),
                remaining: eur(700)
            })
        );
        assert_eq!(
            refund_amount(eur(1000), eur(1000), None),
            Err(PaymentsError::RefundExceedsCapture {
                requested: eur(0),
                remaining: eur(0)
            })
        );
        let usd = Money::new(5, Currency::USD).expect("valid");
        assert!(matches!(
            refund_amount(eur(1000), eur(0), Some(usd)),
            Err(PaymentsError::ValidationFailed { .. })
        ));
    }
}
