//! Refunds: partial and full, never above the capture, idempotent per key.

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::join_all;
use kernel::{Currency, IntegrationEvent, Money, OrderId};
use payments::RefundRequest;
use payments_api::{PaymentRefunded, PaymentStatus, PaymentsApi, PaymentsError};
use proptest::prelude::*;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use testkit::{Backend, PropertyTest, TestStore};

use crate::{Harness, captured, charge_request, eur, events, events_of, harness, key};

fn refund(order_id: OrderId, cents: Option<i64>, key: &str) -> RefundRequest {
    RefundRequest {
        order_id,
        amount: cents.map(eur),
        idempotency_key: crate::key(key),
    }
}

async fn partial_then_full_refunds(store: TestStore) {
    let payments = harness(&store).await;
    let payment = captured(&payments, 1000).await;
    let partial = payments
        .service
        .refund(refund(payment.order_id, Some(300), "r1"))
        .await
        .expect("partial");
    assert_eq!(partial.status, PaymentStatus::PartiallyRefunded);
    assert_eq!((partial.captured, partial.refunded), (eur(1000), eur(300)));
    let full = payments
        .service
        .refund(refund(payment.order_id, None, "r2"))
        .await
        .expect("the rest");
    assert_eq!(full.status, PaymentStatus::Refunded);
    assert_eq!(full.refunded, eur(1000));
    assert_eq!(payments.provider.refunded_total(), 1000);
    assert_eq!(events(&payments.db, PaymentRefunded::NAME).await, 2);
    assert_eq!(
        payments
            .service
            .refund(refund(payment.order_id, Some(1), "r3"))
            .await,
        Err(PaymentsError::NotRefundable {
            status: PaymentStatus::Refunded
        })
    );
}

async fn refunds_above_the_capture_are_refused(store: TestStore) {
    let payments = harness(&store).await;
    let payment = captured(&payments, 1000).await;
    assert_eq!(
        payments
            .service
            .refund(refund(payment.order_id, Some(1001), "r1"))
            .await,
        Err(PaymentsError::RefundExceedsCapture {
            requested: eur(1001),
            remaining: eur(1000)
        })
    );
    payments
        .service
        .refund(refund(payment.order_id, Some(600), "r2"))
        .await
        .expect("refund");
    assert_eq!(
        payments
            .service
            .refund(refund(payment.order_id, Some(401), "r3"))
            .await,
        Err(PaymentsError::RefundExceedsCapture {
            requested: eur(401),
            remaining: eur(400)
        })
    );
    assert_eq!(
        payments
            .api
            .get_payment(payment.order_id)
            .await
            .map(|p| p.refunded),
        Ok(eur(600))
    );
    assert_eq!(payments.provider.refunded_total(), 600);
}

async fn a_repeated_refund_key_refunds_once(store: TestStore) {
    let payments = harness(&store).await;
    let payment = captured(&payments, 1000).await;
    let first = payments
        .service
        .refund(refund(payment.order_id, Some(200), "r1"))
        .await
        .expect("refund");
    assert_eq!(
        payments
            .service
            .refund(refund(payment.order_id, Some(200), "r1"))
            .await,
        Ok(first.clone())
    );
    assert_eq!(
        payments
            .service
            .refund(refund(payment.order_id, None, "r1"))
            .await,
        Ok(first.clone()),
        "no amount means the refund that key made"
    );
    assert_eq!(
        payments
            .service
            .refund(refund(payment.order_id, Some(300), "r1"))
            .await,
        Err(PaymentsError::IdempotencyKeyReused)
    );
    let other = captured(&payments, 1000).await;
    assert_eq!(
        payments
            .service
            .refund(refund(other.order_id, Some(200), "r1"))
            .await,
        Err(PaymentsError::IdempotencyKeyReused)
    );
    assert_eq!(payments.api.get_payment(payment.order_id).await, Ok(first));
    assert_eq!(payments.provider.refunded_total(), 200);
    assert_eq!(events(&payments.db, PaymentRefunded::NAME).await, 1);
}

async fn only_captured_payments_can_be_refunded(store: TestStore) {
    let payments = harness(&store).await;
    let unknown = OrderId::new();
    assert_eq!(
        payments.service.refund(refund(unknown, None, "r0")).await,
        Err(PaymentsError::PaymentNotFound { order_id: unknown })
    );
    let order_id = OrderId::new();
    payments
        .api
        .charge(charge_request(order_id, "tok_insufficient_funds", 100, "k"))
        .await
        .expect("charge");
    assert_eq!(
        payments.service.refund(refund(order_id, None, "r1")).await,
        Err(PaymentsError::NotRefundable {
            status: PaymentStatus::Failed
        })
    );

    let payment = captured(&payments, 100).await;
    let usd = Money::new(50, Currency::USD).expect("valid");
    let mismatch = payments
        .service
        .refund(RefundRequest {
            order_id: payment.order_id,
            amount: Some(usd),
            idempotency_key: key("r2"),
        })
        .await;
    assert!(
        matches!(mismatch, Err(PaymentsError::ValidationFailed { ref fields }) if fields[0].code == "currency_mismatch"),
        "{mismatch:?}"
    );
    for invalid in [
        refund(payment.order_id, Some(0), "r3"),
        // Another order's cancel key.
        refund(
            payment.order_id,
            None,
            &format!("cancel:{}", OrderId::new()),
        ),
    ] {
        assert!(
            matches!(
                payments.service.refund(invalid.clone()).await,
                Err(PaymentsError::ValidationFailed { .. })
            ),
            "{invalid:?}"
        );
    }
    assert_eq!(
        payments.api.get_payment(payment.order_id).await,
        Ok(payment)
    );
    assert_eq!(events(&payments.db, PaymentRefunded::NAME).await, 0);
}

/// Ten refunds of 300 race for a capture of 1000: three fit, whatever the interleaving.
async fn concurrent_refunds_never_exceed_the_capture(store: TestStore) {
    let payments = harness(&store).await;
    let payment = captured(&payments, 1000).await;
    let attempts = (0..10).map(|i| {
        let api = payments.service.clone();
        tokio::spawn(async move {
            api.refund(refund(payment.order_id, Some(300), &format!("race-{i}")))
                .await
        })
    });
    let outcomes: Vec<_> = join_all(attempts)
        .await
        .into_iter()
        .map(|joined| joined.expect("task"))
        .collect();
    let succeeded = outcomes.iter().filter(|outcome| outcome.is_ok()).count();
    let refused = outcomes
        .iter()
        .filter(|outcome| matches!(outcome, Err(PaymentsError::RefundExceedsCapture { .. })))
        .count();
    assert_eq!((succeeded, refused), (3, 7), "{outcomes:?}");
    let after = payments
        .api
        .get_payment(payment.order_id)
        .await
        .expect("payment");
    assert_eq!(after.refunded, eur(900));
    assert_eq!(after.status, PaymentStatus::PartiallyRefunded);
    assert_eq!(payments.provider.refunded_total(), 900);
    assert_eq!(events(&payments.db, PaymentRefunded::NAME).await, 3);
}

/// The schema refuses what the code never attempts: refunds above the capture.
async fn the_schema_refuses_refunds_above_the_capture(store: TestStore) {
    let payments = harness(&store).await;
    let payment = captured(&payments, 1000).await;
    let backend = payments.db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "UPDATE payments SET refunded_minor = captured_minor + 1 WHERE id = $1"
        }
        _ => "UPDATE payments SET refunded_minor = captured_minor + 1 WHERE id = ?",
    };
    let broken = payments
        .db
        .execute_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [payment.id.as_uuid().into()],
        ))
        .await;
    assert!(broken.is_err(), "{broken:?}");
    assert_eq!(
        payments.api.get_payment(payment.order_id).await,
        Ok(payment)
    );
}

testkit::backend_tests!(
    partial_then_full_refunds,
    refunds_above_the_capture_are_refused,
    a_repeated_refund_key_refunds_once,
    only_captured_payments_can_be_refunded,
    concurrent_refunds_never_exceed_the_capture,
    the_schema_refuses_refunds_above_the_capture,
);

const CAPTURED: i64 = 1000;

/// One step of the refund model test.
#[derive(Debug, Clone)]
enum Op {
    /// A refund with one of four keys, of an amount or of everything that remains.
    Refund(usize, Option<i64>),
    Cancel,
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        6 => (0..4usize, proptest::option::of(1i64..=450)).prop_map(|(key, cents)| Op::Refund(key, cents)),
        1 => Just(Op::Cancel),
    ];
    proptest::collection::vec(op, 1..20)
}

/// What one payment's refunds should be, computed the obvious way.
#[derive(Debug, Default)]
struct Model {
    refunded: i64,
    /// The amount each key refunded.
    keys: HashMap<usize, i64>,
    cancelled: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum Expected {
    Ok,
    KeyReused,
    NotRefundable,
    Exceeds,
}

impl Model {
    fn status(&self) -> PaymentStatus {
        match self.refunded {
            0 => PaymentStatus::Captured,
            CAPTURED => PaymentStatus::Refunded,
            _ => PaymentStatus::PartiallyRefunded,
        }
    }

    fn apply(&mut self, op: &Op) -> Expected {
        let remaining = CAPTURED - self.refunded;
        match *op {
            Op::Refund(key, cents) => match (self.keys.get(&key), cents) {
                (Some(_), None) => Expected::Ok,
                (Some(done), Some(cents)) if *done == cents => Expected::Ok,
                (Some(_), Some(_)) => Expected::KeyReused,
                (None, _) if remaining == 0 => Expected::NotRefundable,
                (None, Some(cents)) if cents > remaining => Expected::Exceeds,
                (None, cents) => {
                    let amount = cents.unwrap_or(remaining);
                    self.refunded += amount;
                    self.keys.insert(key, amount);
                    Expected::Ok
                }
            },
            Op::Cancel => {
                if !self.cancelled && remaining > 0 {
                    self.refunded = CAPTURED;
                    self.cancelled = true;
                }
                Expected::Ok
            }
        }
    }
}

fn classify<T>(outcome: &Result<T, PaymentsError>) -> Result<Expected, String> {
    match outcome {
        Ok(_) => Ok(Expected::Ok),
        Err(PaymentsError::IdempotencyKeyReused) => Ok(Expected::KeyReused),
        Err(PaymentsError::NotRefundable { .. }) => Ok(Expected::NotRefundable),
        Err(PaymentsError::RefundExceedsCapture { .. }) => Ok(Expected::Exceeds),
        Err(other) => Err(format!("unexpected {other:?}")),
    }
}

async fn run_ops(payments: &Harness, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let api: &Arc<dyn PaymentsApi> = &payments.api;
    let payment = captured(payments, CAPTURED).await;
    let order_id = payment.order_id;
    let provider_before = payments.provider.refunded_total();
    let mut model = Model::default();
    for op in &ops {
        let outcome = match *op {
            Op::Refund(key, cents) => {
                payments
                    .service
                    .refund(refund(order_id, cents, &format!("{order_id}-{key}")))
                    .await
            }
            Op::Cancel => api.cancel(order_id).await,
        };
        let expected = model.apply(op);
        let actual = classify(&outcome).map_err(TestCaseError::fail)?;
        prop_assert_eq!(actual, expected, "{:?} after {:?}", op, model);
        let now = api.get_payment(order_id).await.expect("payment");
        prop_assert_eq!(now.captured, eur(CAPTURED));
        prop_assert!(now.refunded.amount_minor() <= now.captured.amount_minor());
        prop_assert_eq!(now.refunded, eur(model.refunded));
        prop_assert_eq!(now.status, model.status());
        if let Ok(answer) = outcome {
            prop_assert_eq!(
                answer,
                now,
                "an accepted call answers the payment as stored"
            );
        }
        // The provider gave back exactly what payments recorded.
        prop_assert_eq!(
            payments.provider.refunded_total() - provider_before,
            model.refunded
        );
    }
    // One event per refund that happened: keyed repeats publish nothing.
    let refunds = i64::try_from(model.keys.len()).unwrap_or(i64::MAX) + i64::from(model.cancelled);
    prop_assert_eq!(
        events_of(&payments.db, PaymentRefunded::NAME, order_id).await,
        refunds
    );
    Ok(())
}

fn refunds_match_the_model(backend: Backend) {
    let test = PropertyTest::new(backend);
    let payments = test.block_on(harness(test.store()));
    test.check(24, ops(), |ops| test.block_on(run_ops(&payments, ops)));
}

#[test]
fn refunds_match_the_model_on_sqlite() {
    refunds_match_the_model(Backend::Sqlite);
}

#[test]
fn refunds_match_the_model_on_postgres() {
    refunds_match_the_model(Backend::Postgres);
}
