//! Cancelling: a pending charge is voided, a captured one refunded, an unknown order gets a
//! tombstone, and no late charge ever takes money for a cancelled order.

use std::sync::Arc;

use kernel::{IntegrationEvent, OrderId};
use payments::{FakeProvider, PaymentsModule, RefundRequest};
use payments_api::{PaymentCaptured, PaymentFailed, PaymentRefunded, PaymentStatus, PaymentsError};
use testkit::TestStore;

use crate::{
    Gated, QUICK, captured, charge_request, config, connect, eur, events, events_of, harness, key,
    with_abandoned_charge,
};

async fn cancelling_an_abandoned_charge_voids_it_and_refuses_a_late_charge(store: TestStore) {
    let order_id = OrderId::new();
    let request = charge_request(order_id, "tok_slow", 900, "checkout-slow");
    let payments = with_abandoned_charge(&store, request.clone()).await;
    assert_eq!(
        payments.api.get_payment(order_id).await.map(|p| p.status),
        Ok(PaymentStatus::Pending)
    );

    let voided = payments.api.cancel(order_id).await.expect("cancel");
    assert_eq!(voided.status, PaymentStatus::Voided);
    assert_eq!(voided.captured, eur(0));
    assert_eq!(
        payments.api.cancel(order_id).await,
        Ok(voided.clone()),
        "idempotent"
    );

    // The retry of the abandoned charge, and any other charge of the order, get the voided
    // payment: the provider is not asked.
    assert_eq!(payments.api.charge(request).await, Ok(voided.clone()));
    let other = charge_request(order_id, "tok_visa", 900, "another-key");
    assert_eq!(payments.api.charge(other).await, Ok(voided.clone()));
    assert_eq!(payments.provider.captures(), 0);
    assert_eq!(events(&payments.db, PaymentCaptured::NAME).await, 0);
    assert_eq!(events(&payments.db, PaymentFailed::NAME).await, 0);

    // Cancelling did not forget the charge: once its attempt is over, reconciliation asks
    // the provider, which never received it, and the payment is settled as it is.
    assert_eq!(
        payments
            .service
            .backlog()
            .await
            .map(|b| b.awaiting_reconciliation),
        Ok(1)
    );
    crate::sweep_until_idle(&payments.service, &payments.clock, 3).await;
    assert_eq!(payments.api.get_payment(order_id).await, Ok(voided));
    assert_eq!(
        payments.service.backlog().await,
        Ok(payments::Backlog::default())
    );
}

async fn cancelling_a_captured_payment_refunds_it(store: TestStore) {
    let payments = harness(&store).await;
    let payment = captured(&payments, 1500).await;
    let refunded = payments.api.cancel(payment.order_id).await.expect("cancel");
    assert_eq!(refunded.id, payment.id);
    assert_eq!(refunded.status, PaymentStatus::Refunded);
    assert_eq!(
        (refunded.captured, refunded.refunded),
        (eur(1500), eur(1500))
    );
    assert_eq!(payments.provider.refunded_total(), 1500);
    assert_eq!(payments.api.cancel(payment.order_id).await, Ok(refunded));
    assert_eq!(payments.provider.refunds(), 1);
    assert_eq!(events(&payments.db, PaymentRefunded::NAME).await, 1);
}

async fn cancelling_refunds_only_what_remains(store: TestStore) {
    let payments = harness(&store).await;
    let payment = captured(&payments, 1000).await;
    payments
        .service
        .refund(RefundRequest {
            order_id: payment.order_id,
            amount: Some(eur(250)),
            idempotency_key: key("goodwill"),
        })
        .await
        .expect("partial refund");
    let cancelled = payments.api.cancel(payment.order_id).await.expect("cancel");
    assert_eq!(cancelled.status, PaymentStatus::Refunded);
    assert_eq!(cancelled.refunded, eur(1000));
    assert_eq!(payments.provider.refunded_total(), 1000);
    assert_eq!(
        events_of(&payments.db, PaymentRefunded::NAME, payment.order_id).await,
        2
    );

    // Refunded in full by the customer's own refunds: cancel has nothing left to do.
    let other = captured(&payments, 300).await;
    payments
        .service
        .refund(RefundRequest {
            order_id: other.order_id,
            amount: None,
            idempotency_key: key("everything"),
        })
        .await
        .expect("full refund");
    let unchanged = payments
        .api
        .get_payment(other.order_id)
        .await
        .expect("payment");
    assert_eq!(payments.api.cancel(other.order_id).await, Ok(unchanged));
    assert_eq!(
        events_of(&payments.db, PaymentRefunded::NAME, other.order_id).await,
        1
    );
}

async fn cancelling_a_failed_payment_changes_nothing(store: TestStore) {
    let payments = harness(&store).await;
    let order_id = OrderId::new();
    let failed = payments
        .api
        .charge(charge_request(order_id, "tok_declined", 100, "k"))
        .await
        .expect("charge");
    assert_eq!(payments.api.cancel(order_id).await, Ok(failed));
}

async fn cancelling_an_unknown_order_leaves_a_tombstone_that_refuses_a_late_charge(
    store: TestStore,
) {
    let payments = harness(&store).await;
    let order_id = OrderId::new();
    let tombstone = payments.api.cancel(order_id).await.expect("cancel");
    assert_eq!(tombstone.order_id, order_id);
    assert_eq!(tombstone.status, PaymentStatus::Voided);
    assert_eq!((tombstone.amount, tombstone.captured), (eur(0), eur(0)));
    assert_eq!(payments.api.cancel(order_id).await, Ok(tombstone.clone()));
    assert_eq!(
        payments.api.get_payment(order_id).await,
        Ok(tombstone.clone())
    );

    let late = charge_request(order_id, "tok_visa", 100, "checkout-late");
    assert_eq!(payments.api.charge(late).await, Ok(tombstone));
    assert_eq!(payments.provider.captures(), 0);
    assert_eq!(
        payments
            .service
            .refund(RefundRequest {
                order_id,
                amount: None,
                idempotency_key: key("r"),
            })
            .await,
        Err(PaymentsError::NotRefundable {
            status: PaymentStatus::Voided
        })
    );
}

/// The provider approves a charge after its order was cancelled: the money was taken for an
/// order that gave the payment up. The payment stays voided, records what was taken and
/// given back, announces both, and the provider refunds it. The gate makes the interleaving
/// exact.
async fn an_approval_after_cancel_is_recorded_and_refunded(store: TestStore) {
    let db = connect(&store).await;
    let fake = Arc::new(FakeProvider::new(QUICK));
    let gated = Arc::new(Gated::new(fake.clone()));
    let module = PaymentsModule::with_provider(db.clone(), crate::clock(), gated.clone(), config());
    let api = module.api();
    let order_id = OrderId::new();
    let request = charge_request(order_id, "tok_visa", 800, "checkout");
    let charging = tokio::spawn({
        let api = api.clone();
        let request = request.clone();
        async move { api.charge(request).await }
    });
    gated.arrived.notified().await;
    let voided = api.cancel(order_id).await.expect("cancel");
    assert_eq!(voided.status, PaymentStatus::Voided);
    assert_eq!(voided.captured, eur(0));
    gated.open.notify_one();
    let answer = charging.await.expect("task").expect("charge");
    assert_eq!(answer.status, PaymentStatus::Voided, "the order gave it up");
    assert_eq!(
        (answer.captured, answer.refunded),
        (eur(800), eur(800)),
        "taken, and owed back in full"
    );
    assert!(answer.provider_reference.is_some());
    assert_eq!(fake.captures(), 1, "the provider did take the money...");
    assert_eq!(fake.refunded_total(), 800, "...and gave it back");
    assert_eq!(fake.held("checkout"), 0);
    assert_eq!(events(&db, PaymentCaptured::NAME).await, 1);
    assert_eq!(events(&db, PaymentRefunded::NAME).await, 1);
    assert_eq!(
        module.service().backlog().await,
        Ok(payments::Backlog::default()),
        "nothing left to ask or confirm"
    );
    // Every later call of the order gets the same payment and changes nothing.
    assert_eq!(api.cancel(order_id).await, Ok(answer.clone()));
    assert_eq!(api.charge(request).await, Ok(answer));
    assert_eq!(fake.refunds(), 1);
}

/// Orders refunds a cancelled order in full with the key `cancel:<order_id>`, and gives up
/// on timed-out charges with `cancel`: both mean the same refund, whichever comes first.
async fn a_full_refund_keyed_by_the_cancel_key_and_cancel_are_one_refund(store: TestStore) {
    let payments = harness(&store).await;
    let by_refund = captured(&payments, 1200).await;
    let refund_all = |order_id: OrderId| RefundRequest {
        order_id,
        amount: None,
        idempotency_key: key(&format!("cancel:{order_id}")),
    };
    let refunded = payments
        .service
        .refund(refund_all(by_refund.order_id))
        .await
        .expect("refund");
    assert_eq!(refunded.status, PaymentStatus::Refunded);
    assert_eq!(
        payments.api.cancel(by_refund.order_id).await,
        Ok(refunded.clone())
    );
    assert_eq!(
        payments
            .service
            .refund(refund_all(by_refund.order_id))
            .await,
        Ok(refunded)
    );

    let by_cancel = captured(&payments, 800).await;
    let cancelled = payments
        .api
        .cancel(by_cancel.order_id)
        .await
        .expect("cancel");
    assert_eq!(
        payments
            .service
            .refund(refund_all(by_cancel.order_id))
            .await,
        Ok(cancelled)
    );
    assert_eq!(payments.provider.refunded_total(), 2000);
    assert_eq!(events(&payments.db, PaymentRefunded::NAME).await, 2);
}

/// A process that charged is gone; the next one (with a fake provider that remembers
/// nothing) still cancels and refunds the payment it finds.
async fn cancelling_after_a_restart_refunds(store: TestStore) {
    let before = harness(&store).await;
    let payment = captured(&before, 2000).await;
    let provider = Arc::new(FakeProvider::new(QUICK));
    let after = PaymentsModule::with_provider(
        before.db.clone(),
        before.clock.clone(),
        provider.clone(),
        config(),
    )
    .api();
    let cancelled = after.cancel(payment.order_id).await.expect("cancel");
    assert_eq!(cancelled.status, PaymentStatus::Refunded);
    assert_eq!(cancelled.refunded, eur(2000));
    assert_eq!(provider.refunded_total(), 2000);
}

/// What orders asks when a confirmed order is cancelled: everything back, once, keyed by the
/// order, so a repeated or concurrent call changes nothing more; a payment that never
/// captured is not refundable, an unknown order has no payment.
async fn refunding_an_order_gives_everything_back_once(store: TestStore) {
    let payments = harness(&store).await;
    let payment = captured(&payments, 1500).await;
    let partial = payments
        .service
        .refund(RefundRequest {
            order_id: payment.order_id,
            amount: Some(crate::eur(500)),
            idempotency_key: key("goodwill"),
        })
        .await
        .expect("partial refund");
    assert_eq!(partial.status, PaymentStatus::PartiallyRefunded);
    let (first, second) = tokio::join!(
        payments.api.refund_order(payment.order_id),
        payments.api.refund_order(payment.order_id)
    );
    let refunded = first.expect("refund the order");
    assert_eq!(second, Ok(refunded.clone()));
    assert_eq!(refunded.status, PaymentStatus::Refunded);
    assert_eq!(refunded.refunded, refunded.captured);
    assert_eq!(
        payments.api.refund_order(payment.order_id).await,
        Ok(refunded)
    );
    assert_eq!(payments.provider.refunded_total(), 1500);
    assert_eq!(events(&payments.db, PaymentRefunded::NAME).await, 2);

    let order_id = OrderId::new();
    payments
        .api
        .charge(crate::charge_request(
            order_id,
            "tok_declined",
            100,
            "declined",
        ))
        .await
        .expect("charge");
    assert_eq!(
        payments.api.refund_order(order_id).await,
        Err(PaymentsError::NotRefundable {
            status: PaymentStatus::Failed
        })
    );
    let unknown = OrderId::new();
    assert_eq!(
        payments.api.refund_order(unknown).await,
        Err(PaymentsError::PaymentNotFound { order_id: unknown })
    );
}

testkit::backend_tests!(
    refunding_an_order_gives_everything_back_once,
    a_full_refund_keyed_by_the_cancel_key_and_cancel_are_one_refund,
    cancelling_after_a_restart_refunds,
    cancelling_an_abandoned_charge_voids_it_and_refuses_a_late_charge,
    cancelling_a_captured_payment_refunds_it,
    cancelling_refunds_only_what_remains,
    cancelling_a_failed_payment_changes_nothing,
    cancelling_an_unknown_order_leaves_a_tombstone_that_refuses_a_late_charge,
    an_approval_after_cancel_is_recorded_and_refunded,
);
