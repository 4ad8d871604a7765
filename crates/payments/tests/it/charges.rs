//! Charges: each token's outcome and event, idempotency per key, concurrency, resumption.

use std::sync::Arc;

use actix_web::ResponseError;
use actix_web::http::StatusCode;
use futures::future::join_all;
use kernel::{ContextError, ErrorKind, IntegrationEvent, OrderId};
use payments::{FakeProvider, PaymentsModule};
use payments_api::{
    ChargeRequest, FailureReason, PaymentCaptured, PaymentFailed, PaymentStatus, PaymentsError,
};
use testkit::TestStore;
use web_kit::HttpError;

use crate::{
    QUICK, charge_request, config, connect, eur, events, harness, payment_rows,
    with_abandoned_charge,
};

async fn every_token_has_its_outcome_and_event(store: TestStore) {
    let payments = harness(&store).await;
    let expected = [
        ("tok_visa", None),
        ("tok_slow", None),
        ("tok_declined", Some(FailureReason::Declined)),
        (
            "tok_insufficient_funds",
            Some(FailureReason::InsufficientFunds),
        ),
        ("tok_provider_error", Some(FailureReason::ProviderError)),
        ("tok_who_knows", Some(FailureReason::InvalidToken)),
    ];
    for (token, failure) in expected {
        let order_id = OrderId::new();
        let request = charge_request(order_id, token, 1999, &format!("key-{token}"));
        // A refusal is an answer, not an error.
        let payment = payments.api.charge(request.clone()).await.expect(token);
        assert_eq!(payment.order_id, order_id);
        assert_eq!(payment.customer_id, request.customer_id);
        assert_eq!(payment.amount, eur(1999));
        assert_eq!(payment.refunded, eur(0));
        assert_eq!(payment.failure_reason, failure, "{token}");
        match failure {
            None => {
                assert_eq!(payment.status, PaymentStatus::Captured, "{token}");
                assert_eq!(payment.captured, eur(1999));
                assert!(payment.provider_reference.is_some());
            }
            Some(_) => {
                assert_eq!(payment.status, PaymentStatus::Failed, "{token}");
                assert_eq!(payment.captured, eur(0));
                assert_eq!(payment.provider_reference, None);
            }
        }
        assert_eq!(payments.api.get_payment(order_id).await, Ok(payment));
    }
    assert_eq!(payments.provider.captures(), 2);
    assert_eq!(events(&payments.db, PaymentCaptured::NAME).await, 2);
    assert_eq!(events(&payments.db, PaymentFailed::NAME).await, 4);
}

async fn the_same_request_again_returns_the_same_payment_and_charges_once(store: TestStore) {
    let payments = harness(&store).await;
    let request = charge_request(OrderId::new(), "tok_visa", 500, "checkout-1");
    let first = payments.api.charge(request.clone()).await.expect("charge");
    let again = payments.api.charge(request.clone()).await.expect("again");
    assert_eq!(again, first);
    assert_eq!(payments.provider.captures(), 1);
    assert_eq!(events(&payments.db, PaymentCaptured::NAME).await, 1);

    // A failed payment is final too: retrying the same request does not ask again.
    let declined = charge_request(OrderId::new(), "tok_declined", 500, "checkout-2");
    let failed = payments.api.charge(declined.clone()).await.expect("charge");
    assert_eq!(payments.api.charge(declined).await, Ok(failed));
    assert_eq!(events(&payments.db, PaymentFailed::NAME).await, 1);
}

async fn a_key_reused_for_another_request_is_refused(store: TestStore) {
    let payments = harness(&store).await;
    let order_id = OrderId::new();
    let request = charge_request(order_id, "tok_visa", 500, "checkout-1");
    let first = payments.api.charge(request.clone()).await.expect("charge");
    let different = [
        // Same key, other amount, token or customer.
        charge_request(order_id, "tok_visa", 501, "checkout-1"),
        charge_request(order_id, "tok_declined", 500, "checkout-1"),
        charge_request(order_id, "tok_visa", 500, "checkout-1"),
        // Same key, another order.
        charge_request(OrderId::new(), "tok_visa", 500, "checkout-1"),
        // Another key for an order that is already paid.
        charge_request(order_id, "tok_visa", 500, "checkout-2"),
    ];
    for request in different {
        let refused = payments.api.charge(request.clone()).await;
        assert_eq!(
            refused,
            Err(PaymentsError::IdempotencyKeyReused),
            "{request:?}"
        );
        let error = refused.expect_err("refused");
        assert_eq!(error.kind(), ErrorKind::Rejected);
        assert_eq!(
            HttpError::from(error).status_code(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }
    assert_eq!(payments.api.get_payment(order_id).await, Ok(first));
    assert_eq!(payments.provider.captures(), 1);
    assert_eq!(payment_rows(&payments.db).await, 1);
}

async fn invalid_charges_report_every_field_and_store_nothing(store: TestStore) {
    let payments = harness(&store).await;
    let order_id = OrderId::new();
    let request = charge_request(order_id, "tok_visa", 0, &format!("cancel:{order_id}"));
    let Err(PaymentsError::ValidationFailed { fields }) =
        payments.api.charge(request.clone()).await
    else {
        panic!("expected a validation error");
    };
    let fields: Vec<_> = fields
        .iter()
        .map(|f| (f.field.as_str(), f.code.as_str()))
        .collect();
    assert_eq!(
        fields,
        vec![
            ("amount", "invalid_amount"),
            ("idempotency_key", "reserved_key"),
        ]
    );
    // A malformed token or key cannot even be written down: the request does not decode,
    // which is what a remote caller sending one would see.
    let mut wire = serde_json::to_value(&request).expect("serializable");
    wire["payment_token"] = "tok visa".into();
    assert!(serde_json::from_value::<ChargeRequest>(wire.clone()).is_err());
    wire["payment_token"] = "tok_visa".into();
    wire["idempotency_key"] = "".into();
    assert!(serde_json::from_value::<ChargeRequest>(wire).is_err());
    assert_eq!(
        payments.api.get_payment(order_id).await,
        Err(PaymentsError::PaymentNotFound { order_id })
    );
    assert_eq!(payment_rows(&payments.db).await, 0);
}

/// The concurrency requirement: 20 callers charge one order with one key at once.
async fn twenty_concurrent_charges_with_one_key_charge_once(store: TestStore) {
    let payments = harness(&store).await;
    let request = charge_request(OrderId::new(), "tok_visa", 4200, "checkout-race");
    let attempts = (0..20).map(|_| {
        let api = payments.api.clone();
        let request = request.clone();
        tokio::spawn(async move { api.charge(request).await })
    });
    let outcomes: Vec<_> = join_all(attempts)
        .await
        .into_iter()
        .map(|joined| joined.expect("task").expect("charge"))
        .collect();
    let first = &outcomes[0];
    assert_eq!(first.status, PaymentStatus::Captured);
    assert!(
        outcomes.iter().all(|payment| payment == first),
        "{outcomes:?}"
    );
    assert_eq!(payments.provider.captures(), 1);
    assert_eq!(payment_rows(&payments.db).await, 1);
    assert_eq!(events(&payments.db, PaymentCaptured::NAME).await, 1);
}

/// A caller that gives up during the provider call leaves a pending payment; the same
/// request later (here after a restart, with a provider that answers) completes it.
async fn an_abandoned_charge_stays_pending_and_a_retry_completes_it(store: TestStore) {
    let order_id = OrderId::new();
    let request = charge_request(order_id, "tok_slow", 700, "checkout-slow");
    let slow = with_abandoned_charge(&store, request.clone()).await;
    let pending = slow.api.get_payment(order_id).await.expect("recorded");
    assert_eq!(pending.status, PaymentStatus::Pending);
    assert_eq!(pending.captured, eur(0));
    assert_eq!(slow.provider.captures(), 0);
    assert_eq!(events(&slow.db, PaymentCaptured::NAME).await, 0);

    let provider = Arc::new(FakeProvider::new(QUICK));
    let restarted = PaymentsModule::with_provider(
        slow.db.clone(),
        slow.clock.clone(),
        provider.clone(),
        config(),
    )
    .api();
    let completed = restarted.charge(request).await.expect("retry");
    assert_eq!(completed.id, pending.id);
    assert_eq!(completed.status, PaymentStatus::Captured);
    assert_eq!(completed.captured, eur(700));
    assert_eq!(provider.captures(), 1);
    assert_eq!(events(&slow.db, PaymentCaptured::NAME).await, 1);
}

/// `payments.test_mode = false`: the fake provider serves no test token, so every charge is
/// declined as an invalid token (and `tok_slow` holds nothing up).
async fn outside_test_mode_every_token_is_declined_as_invalid(store: TestStore) {
    let db = connect(&store).await;
    let module = PaymentsModule::new(
        db.clone(),
        crate::clock(),
        payments::PaymentsConfig {
            test_mode: false,
            slow_delay: crate::NEVER,
            ..config()
        },
    );
    for (token, _) in payments_api::TEST_TOKENS {
        let order_id = OrderId::new();
        let payment = module
            .api()
            .charge(charge_request(
                order_id,
                token,
                500,
                &format!("key-{token}"),
            ))
            .await
            .expect(token);
        assert_eq!(payment.status, PaymentStatus::Failed, "{token}");
        assert_eq!(
            payment.failure_reason,
            Some(FailureReason::InvalidToken),
            "{token}"
        );
        assert_eq!(payment.captured, eur(0), "{token}");
    }
    assert_eq!(
        events(&db, PaymentFailed::NAME).await,
        i64::try_from(payments_api::TEST_TOKENS.len()).expect("few")
    );
    assert_eq!(events(&db, PaymentCaptured::NAME).await, 0);
}

testkit::backend_tests!(
    outside_test_mode_every_token_is_declined_as_invalid,
    every_token_has_its_outcome_and_event,
    the_same_request_again_returns_the_same_payment_and_charges_once,
    a_key_reused_for_another_request_is_refused,
    invalid_charges_report_every_field_and_store_nothing,
    twenty_concurrent_charges_with_one_key_charge_once,
    an_abandoned_charge_stays_pending_and_a_retry_completes_it,
);
