//! Payments' rules: what a valid charge or refund request is, what a repeated charge means,
//! how much a refund may take, what the provider's answer to a lookup means for a payment,
//! and when to ask again. No I/O.

use std::time::Duration;

use chrono::{DateTime, Utc};
use kernel::{FieldError, FieldErrors, IdempotencyKey, Money, OrderId};
use payments_api::{ChargeRequest, FailureReason, PaymentStatus, PaymentsError};
use sha2::{Digest, Sha256};

use crate::provider::LookupOutcome;

/// A refund of an order's payment, keyed by the caller. Not part of the port: orders asks
/// for `refund_order` (everything, keyed by the order); partial refunds are payments' own
/// operation, for its tests today and an administrator's route tomorrow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequest {
    pub order_id: OrderId,
    /// `None` refunds everything captured and not yet refunded.
    pub amount: Option<Money>,
    pub idempotency_key: IdempotencyKey,
}

/// The key of the tombstone `cancel` records for an order that was never charged starts
/// with this, so charge keys may not: a caller's charge key can then never take the
/// tombstone's place. Refund keys may: `cancel:<order_id>` is also the key of the refund
/// `cancel` and `refund_order` make, and a caller refunding everything of that order with
/// that key means the same refund.
pub const RESERVED_KEY_PREFIX: &str = "cancel:";

/// The key of everything `cancel` and `refund_order` record for an order. Payments' own key
/// scheme: no caller needs to know it.
pub fn cancel_key(order_id: OrderId) -> String {
    format!("{RESERVED_KEY_PREFIX}{order_id}")
}

/// [`cancel_key`] as an idempotency key (it always is one: ASCII, well under 200 bytes).
pub fn cancel_idempotency_key(order_id: OrderId) -> Result<IdempotencyKey, PaymentsError> {
    IdempotencyKey::parse(&cancel_key(order_id)).map_err(|error| {
        tracing::error!(%error, "payments' own key is not a valid idempotency key");
        PaymentsError::Internal
    })
}

/// A charge's key is a key outside payments' own namespace.
pub fn check_charge_key(key: &IdempotencyKey) -> Result<(), FieldError> {
    if key.as_str().starts_with(RESERVED_KEY_PREFIX) {
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
pub fn check_refund_key(key: &IdempotencyKey, order_id: OrderId) -> Result<(), FieldError> {
    let key = key.as_str();
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
        request.payment_token.as_str(),
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

/// What a sweep does with a payment whose charge it looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reconcile {
    /// The charge was approved while the payment waited: captured.
    Capture { reference: String },
    /// The charge was declined while the payment waited: failed.
    Fail(FailureReason),
    /// The charge never reached the provider: voided, nothing was taken.
    Void,
    /// The charge was approved after the payment was given up: the money is owed back.
    RefundLateApproval { reference: String },
    /// A voided payment whose charge took nothing: nothing more to ask.
    Settle,
    /// Payments already knows the outcome (someone recorded it meanwhile): stop asking.
    Known,
}

/// Decides what a lookup's answer means for a payment in `status` holding `captured_minor`.
pub fn reconcile(status: PaymentStatus, captured_minor: i64, lookup: &LookupOutcome) -> Reconcile {
    match (status, lookup) {
        (PaymentStatus::Pending, LookupOutcome::Approved { reference }) => Reconcile::Capture {
            reference: reference.clone(),
        },
        (PaymentStatus::Pending, LookupOutcome::Declined(reason)) => Reconcile::Fail(*reason),
        (PaymentStatus::Pending, LookupOutcome::NotFound) => Reconcile::Void,
        (PaymentStatus::Voided, LookupOutcome::Approved { reference }) if captured_minor == 0 => {
            Reconcile::RefundLateApproval {
                reference: reference.clone(),
            }
        }
        (PaymentStatus::Voided, LookupOutcome::Declined(_) | LookupOutcome::NotFound)
            if captured_minor == 0 =>
        {
            Reconcile::Settle
        }
        _ => Reconcile::Known,
    }
}

/// Until when a live charge attempt may still be talking to the provider: its deadline, with
/// as much again as margin for a slow process or a clock that runs differently elsewhere. No
/// lookup happens before, so a lookup never races the attempt it is about.
pub fn attempt_deadline(now: DateTime<Utc>, provider_timeout: Duration) -> DateTime<Utc> {
    later(now, provider_timeout.saturating_mul(2))
}

/// When to try again after `attempts` tries that did not settle it: `base * 2^(attempts - 1)`,
/// capped at `max`, and never before a new attempt could have finished.
pub fn next_attempt(
    now: DateTime<Utc>,
    attempts: i32,
    provider_timeout: Duration,
    base: Duration,
    max: Duration,
) -> DateTime<Utc> {
    let exponent = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    let backoff = base.saturating_mul(2u32.saturating_pow(exponent)).min(max);
    later(now, backoff.max(provider_timeout.saturating_mul(2)))
}

fn later(now: DateTime<Utc>, by: Duration) -> DateTime<Utc> {
    now.checked_add_signed(chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use kernel::{Currency, UserId};
    use payments_api::PaymentToken;

    use super::*;

    fn key(key: &str) -> IdempotencyKey {
        IdempotencyKey::parse(key).expect("a valid key")
    }

    fn eur(cents: i64) -> Money {
        Money::new(cents, Currency::EUR).expect("valid")
    }

    fn request() -> ChargeRequest {
        ChargeRequest {
            order_id: OrderId::new(),
            customer_id: UserId::new(),
            amount: eur(1999),
            payment_token: PaymentToken::parse("tok_visa").expect("a valid token"),
            idempotency_key: key("order-1"),
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
    fn charge_keys_stay_out_of_payments_own_namespace() {
        let order_id = OrderId::new();
        let cancel = key(&cancel_key(order_id));
        assert_eq!(
            check_charge_key(&cancel).map_err(|e| e.code),
            Err("reserved_key".into())
        );
        assert!(check_charge_key(&key("order:cancel:1")).is_ok());
        assert!(
            check_refund_key(&cancel, order_id).is_ok(),
            "a refund may use it"
        );
        assert_eq!(
            check_refund_key(&cancel, OrderId::new()).map_err(|e| e.code),
            Err("reserved_key".into()),
            "another order's cancel key"
        );
        assert_eq!(cancel_idempotency_key(order_id), Ok(cancel));
    }

    #[test]
    fn a_charge_reports_every_invalid_field() {
        let valid = request();
        assert_eq!(validate_charge(&valid), Ok(()));
        let invalid = ChargeRequest {
            amount: eur(0),
            idempotency_key: key(&cancel_key(valid.order_id)),
            ..valid
        };
        assert_eq!(
            codes(validate_charge(&invalid)),
            vec![
                ("amount".into(), "invalid_amount".into()),
                ("idempotency_key".into(), "reserved_key".into()),
            ]
        );
    }

    #[test]
    fn a_refund_needs_a_key_and_a_positive_amount_if_any() {
        let refund = |amount, idempotency_key: &str| RefundRequest {
            order_id: OrderId::new(),
            amount,
            idempotency_key: key(idempotency_key),
        };
        assert_eq!(validate_refund(&refund(None, "r1")), Ok(()));
        assert_eq!(validate_refund(&refund(Some(eur(1)), "r1")), Ok(()));
        assert_eq!(
            codes(validate_refund(&refund(
                Some(eur(0)),
                &cancel_key(OrderId::new())
            ))),
            vec![
                ("amount".into(), "invalid_amount".into()),
                ("idempotency_key".into(), "reserved_key".into()),
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
            idempotency_key: key("another"),
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
                payment_token: PaymentToken::parse("tok_declined").expect("a valid token"),
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

    #[test]
    fn what_a_lookup_means() {
        use PaymentStatus::*;
        let approved = LookupOutcome::Approved {
            reference: "ch_1".into(),
        };
        let declined = LookupOutcome::Declined(FailureReason::Declined);
        let reference = || "ch_1".to_owned();
        let cases = [
            (
                Pending,
                0,
                &approved,
                Reconcile::Capture {
                    reference: reference(),
                },
            ),
            (
                Pending,
                0,
                &declined,
                Reconcile::Fail(FailureReason::Declined),
            ),
            (Pending, 0, &LookupOutcome::NotFound, Reconcile::Void),
            (
                Voided,
                0,
                &approved,
                Reconcile::RefundLateApproval {
                    reference: reference(),
                },
            ),
            (Voided, 0, &declined, Reconcile::Settle),
            (Voided, 0, &LookupOutcome::NotFound, Reconcile::Settle),
            // A late approval already recorded, or an answer recorded meanwhile.
            (Voided, 500, &approved, Reconcile::Known),
            (Captured, 500, &approved, Reconcile::Known),
            (Failed, 0, &declined, Reconcile::Known),
            (Refunded, 500, &approved, Reconcile::Known),
        ];
        for (status, captured, lookup, expected) in cases {
            assert_eq!(
                reconcile(status, captured, lookup),
                expected,
                "{status:?} {lookup:?}"
            );
        }
    }

    #[test]
    fn retries_back_off_up_to_a_cap_and_never_before_an_attempt_could_end() {
        let now = DateTime::<Utc>::UNIX_EPOCH;
        let seconds = |at: DateTime<Utc>| (at - now).num_seconds();
        let timeout = Duration::from_secs(2);
        let (base, max) = (Duration::from_secs(1), Duration::from_secs(60));
        let delays: Vec<i64> = (1..=8)
            .map(|attempts| seconds(next_attempt(now, attempts, timeout, base, max)))
            .collect();
        assert_eq!(delays, [4, 4, 4, 8, 16, 32, 60, 60]);
        assert_eq!(seconds(attempt_deadline(now, timeout)), 4);
        assert_eq!(
            next_attempt(now, i32::MAX, Duration::MAX, base, Duration::MAX),
            DateTime::<Utc>::MAX_UTC
        );
    }
}
