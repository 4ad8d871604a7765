//! The `PaymentsApi` contract: keyed charges (a declined card is a failed payment, not an
//! error), cancellation, refunds of whole orders and lookups.
//!
//! The suite charges with the test tokens of the built-in fake provider
//! (`payments_api::TEST_TOKENS`), so the payments under test must run in test mode
//! (`payments.test_mode`, the development default). `tok_slow`, whose answer comes later
//! than payments waits, is left out: its outcome depends on configured timeouts, which a
//! contract suite should not.

use std::sync::Arc;

use kernel::{IdempotencyKey, Money, OrderId, UserId};
use payments_api::{
    ChargeRequest, FailureReason, Payment, PaymentStatus, PaymentToken, PaymentsApi, PaymentsError,
};

use crate::{answered, eur, field_codes, refused, unique};

/// What the payments suite needs that the port cannot do: nothing. Payments takes its
/// customers' ids on trust and every case starts from a fresh order id, so the trait has no
/// method; it exists so that every suite is called the same way. Pass [`NoSetup`].
pub trait PaymentsFixture: Send + Sync {}

/// The fixture of a suite that needs no setup.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSetup;

impl PaymentsFixture for NoSetup {}

/// Runs every case of the `PaymentsApi` contract against `api`.
pub async fn suite(api: Arc<dyn PaymentsApi>, _fixture: &dyn PaymentsFixture) {
    let suite = Suite {
        api: api.as_ref(),
        customer: UserId::new(),
    };
    suite.approved_charge().await;
    suite.declined_charges().await;
    suite.charge_refusals().await;
    suite.refund_order().await;
    suite.cancel().await;
    suite.unknown_orders().await;
}

struct Suite<'a> {
    api: &'a dyn PaymentsApi,
    customer: UserId,
}

fn token(token: &str) -> PaymentToken {
    PaymentToken::parse(token).expect("a valid token")
}

fn key() -> IdempotencyKey {
    IdempotencyKey::parse(&unique("suite-charge-")).expect("a valid key")
}

impl Suite<'_> {
    fn request(&self, amount: Money, payment_token: &str) -> ChargeRequest {
        ChargeRequest {
            order_id: OrderId::new(),
            customer_id: self.customer,
            amount,
            payment_token: token(payment_token),
            idempotency_key: key(),
        }
    }

    /// A captured payment of a fresh order.
    async fn captured(&self, amount: Money, case: &str) -> Payment {
        let payment = answered(
            self.api.charge(self.request(amount, "tok_visa")).await,
            case,
        );
        assert_eq!(
            payment.status,
            PaymentStatus::Captured,
            "{case}: {payment:?}"
        );
        payment
    }

    /// A payment declined by the fake provider, for a fresh order.
    async fn failed(&self, case: &str) -> Payment {
        let payment = answered(
            self.api
                .charge(self.request(eur(700), "tok_declined"))
                .await,
            case,
        );
        assert_eq!(payment.status, PaymentStatus::Failed, "{case}: {payment:?}");
        payment
    }

    async fn approved_charge(&self) {
        let request = self.request(eur(2599), "tok_visa");

        let case = "payments.charge: tok_visa is captured in full";
        let payment = answered(self.api.charge(request.clone()).await, case);
        assert_eq!(payment.order_id, request.order_id, "{case}: order");
        assert_eq!(payment.customer_id, self.customer, "{case}: customer");
        assert_eq!(payment.amount, eur(2599), "{case}: amount");
        assert_eq!(payment.status, PaymentStatus::Captured, "{case}: status");
        assert_eq!(payment.captured, eur(2599), "{case}: captured");
        assert_eq!(payment.refunded, eur(0), "{case}: refunded");
        assert!(
            payment.provider_reference.is_some(),
            "{case}: a capture has the provider's reference: {payment:?}"
        );
        assert_eq!(payment.failure_reason, None, "{case}: failure reason");
        assert!(
            payment.created_at <= payment.updated_at,
            "{case}: {payment:?}"
        );

        let case = "payments.charge: the same request with the same key answers the same payment";
        assert_eq!(
            self.api.charge(request.clone()).await,
            Ok(payment.clone()),
            "{case}"
        );

        let case = "payments.get_payment: the order's payment";
        assert_eq!(
            self.api.get_payment(request.order_id).await,
            Ok(payment.clone()),
            "{case}"
        );

        let case = "payments.charge: the same key with another amount is refused";
        let changed = ChargeRequest {
            amount: eur(2600),
            ..request.clone()
        };
        assert_eq!(
            self.api.charge(changed).await,
            Err(PaymentsError::IdempotencyKeyReused),
            "{case}"
        );

        let case = "payments.charge: the same order under another key is refused";
        let rekeyed = ChargeRequest {
            idempotency_key: key(),
            ..request.clone()
        };
        assert_eq!(
            self.api.charge(rekeyed).await,
            Err(PaymentsError::IdempotencyKeyReused),
            "{case}"
        );

        let case = "payments.charge: the key of another order's payment is refused";
        let other_order = ChargeRequest {
            order_id: OrderId::new(),
            ..request.clone()
        };
        assert_eq!(
            self.api.charge(other_order.clone()).await,
            Err(PaymentsError::IdempotencyKeyReused),
            "{case}"
        );
        assert_eq!(
            self.api.get_payment(other_order.order_id).await,
            Err(PaymentsError::PaymentNotFound {
                order_id: other_order.order_id
            }),
            "{case}: the refused order has no payment"
        );

        let case = "payments.get_payment: refused charges left the payment as it was";
        assert_eq!(
            self.api.get_payment(request.order_id).await,
            Ok(payment),
            "{case}"
        );
    }

    async fn declined_charges(&self) {
        for (payment_token, reason) in [
            ("tok_declined", FailureReason::Declined),
            ("tok_insufficient_funds", FailureReason::InsufficientFunds),
            ("tok_provider_error", FailureReason::ProviderError),
            ("tok_not_a_test_token", FailureReason::InvalidToken),
        ] {
            let case = format!("payments.charge: {payment_token} is a failed payment ({reason:?})");
            let request = self.request(eur(1500), payment_token);
            let payment = answered(self.api.charge(request.clone()).await, &case);
            assert_eq!(payment.order_id, request.order_id, "{case}: order");
            assert_eq!(payment.amount, eur(1500), "{case}: amount");
            assert_eq!(payment.status, PaymentStatus::Failed, "{case}: status");
            assert_eq!(payment.failure_reason, Some(reason), "{case}: reason");
            assert_eq!(payment.captured, eur(0), "{case}: captured");
            assert_eq!(payment.refunded, eur(0), "{case}: refunded");

            let case = format!(
                "payments.charge: repeating a {payment_token} charge answers the same failed payment"
            );
            assert_eq!(
                self.api.charge(request.clone()).await,
                Ok(payment.clone()),
                "{case}"
            );
            assert_eq!(
                self.api.get_payment(request.order_id).await,
                Ok(payment),
                "{case}: get_payment"
            );
        }
    }

    async fn charge_refusals(&self) {
        let case = "payments.charge: a zero amount is a validation failure";
        let request = self.request(eur(0), "tok_visa");
        match refused(self.api.charge(request.clone()).await, case) {
            PaymentsError::ValidationFailed { fields } => {
                assert_eq!(
                    field_codes(&fields),
                    [("amount", "invalid_amount")],
                    "{case}"
                );
            }
            other => panic!("{case}: expected validation_failed, got {other:?}"),
        }
        assert_eq!(
            self.api.get_payment(request.order_id).await,
            Err(PaymentsError::PaymentNotFound {
                order_id: request.order_id
            }),
            "{case}: nothing was recorded"
        );

        let case = "payments.charge: a key in payments' own namespace is a validation failure";
        let reserved = ChargeRequest {
            idempotency_key: IdempotencyKey::parse(&unique("cancel:")).expect("a valid key"),
            ..self.request(eur(100), "tok_visa")
        };
        match refused(self.api.charge(reserved).await, case) {
            PaymentsError::ValidationFailed { fields } => {
                assert_eq!(
                    field_codes(&fields),
                    [("idempotency_key", "reserved_key")],
                    "{case}"
                );
            }
            other => panic!("{case}: expected validation_failed, got {other:?}"),
        }
    }

    async fn refund_order(&self) {
        let case = "payments.refund_order: setup";
        let captured = self.captured(eur(4200), case).await;
        let order = captured.order_id;

        let case = "payments.refund_order: everything captured is given back";
        let refunded = answered(self.api.refund_order(order).await, case);
        assert_eq!(refunded.id, captured.id, "{case}: the same payment");
        assert_eq!(refunded.status, PaymentStatus::Refunded, "{case}: status");
        assert_eq!(refunded.captured, eur(4200), "{case}: captured");
        assert_eq!(refunded.refunded, eur(4200), "{case}: refunded");
        assert_eq!(refunded.amount, captured.amount, "{case}: amount");
        assert_eq!(
            refunded.provider_reference, captured.provider_reference,
            "{case}: the charge's reference"
        );

        let case = "payments.refund_order: refunding again answers the payment as it stands";
        assert_eq!(
            self.api.refund_order(order).await,
            Ok(refunded.clone()),
            "{case}"
        );
        assert_eq!(
            self.api.get_payment(order).await,
            Ok(refunded.clone()),
            "{case}: get_payment"
        );

        let case = "payments.cancel: cancelling a refunded order's payment answers it as it stands";
        assert_eq!(self.api.cancel(order).await, Ok(refunded), "{case}");

        let case = "payments.refund_order: a failed payment is not refundable";
        let failed = self.failed(case).await;
        assert_eq!(
            self.api.refund_order(failed.order_id).await,
            Err(PaymentsError::NotRefundable {
                status: PaymentStatus::Failed
            }),
            "{case}"
        );
    }

    async fn cancel(&self) {
        let case = "payments.cancel: setup";
        let captured = self.captured(eur(990), case).await;
        let order = captured.order_id;

        let case = "payments.cancel: a captured payment is refunded in full";
        let cancelled = answered(self.api.cancel(order).await, case);
        assert_eq!(cancelled.id, captured.id, "{case}: the same payment");
        assert_eq!(cancelled.status, PaymentStatus::Refunded, "{case}: status");
        assert_eq!(cancelled.captured, eur(990), "{case}: captured");
        assert_eq!(cancelled.refunded, eur(990), "{case}: refunded");

        let case = "payments.cancel: cancelling again answers the payment as it stands";
        assert_eq!(
            self.api.cancel(order).await,
            Ok(cancelled.clone()),
            "{case}"
        );

        let case = "payments.refund_order: after cancel, the same refund";
        assert_eq!(self.api.refund_order(order).await, Ok(cancelled), "{case}");

        let case = "payments.cancel: a failed payment is answered as it is";
        let failed = self.failed(case).await;
        assert_eq!(
            self.api.cancel(failed.order_id).await,
            Ok(failed.clone()),
            "{case}"
        );

        let case = "payments.cancel: an order never charged gets a voided payment";
        let never = self.request(eur(1200), "tok_visa");
        let voided = answered(self.api.cancel(never.order_id).await, case);
        assert_eq!(voided.order_id, never.order_id, "{case}: order");
        assert_eq!(voided.status, PaymentStatus::Voided, "{case}: status");
        assert!(voided.captured.is_zero(), "{case}: captured: {voided:?}");
        assert!(voided.refunded.is_zero(), "{case}: refunded: {voided:?}");
        assert_eq!(voided.provider_reference, None, "{case}: reference");

        let case = "payments.cancel: cancelling again answers the voided payment";
        assert_eq!(
            self.api.cancel(never.order_id).await,
            Ok(voided.clone()),
            "{case}"
        );

        let case = "payments.charge: a charge arriving after its order was cancelled takes nothing";
        assert_eq!(self.api.charge(never).await, Ok(voided.clone()), "{case}");

        let case = "payments.refund_order: a voided payment is not refundable";
        assert_eq!(
            self.api.refund_order(voided.order_id).await,
            Err(PaymentsError::NotRefundable {
                status: PaymentStatus::Voided
            }),
            "{case}"
        );
    }

    async fn unknown_orders(&self) {
        let unknown = OrderId::new();

        let case = "payments.get_payment: an order without a payment is refused";
        assert_eq!(
            self.api.get_payment(unknown).await,
            Err(PaymentsError::PaymentNotFound { order_id: unknown }),
            "{case}"
        );

        let case = "payments.refund_order: an order without a payment is refused";
        assert_eq!(
            self.api.refund_order(unknown).await,
            Err(PaymentsError::PaymentNotFound { order_id: unknown }),
            "{case}"
        );
    }
}
