//! Payments' side of checkout when the provider's answer is lost or test tokens are off, over
//! HTTP: money the provider took for an order that gave up is found by reconciliation and
//! given back; outside test mode no test token charges anything.

use std::sync::Arc;

use chrono::{Duration, Utc};
use kernel::ManualClock;
use reqwest::StatusCode;
use serde_json::json;
use shop::Options;
use testkit::TestStore;

use crate::checkout::order_body;
use crate::helpers::{spawn_app_with, spawn_app_with_options};

/// The case: checkout times out while the provider is (slowly) approving, gives the
/// payment up and fails the order. The provider had taken the money. Reconciliation asks the
/// provider, learns of the approval, records it as taken and owed back, and refunds it.
async fn a_checkout_that_timed_out_while_the_provider_approved_is_refunded(store: TestStore) {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let options = Options {
        clock: clock.clone(),
        ..Options::default()
    };
    let app = spawn_app_with_options(store, |_| {}, options).await;
    let admin = app.admin_token().await;
    let customer = app.customer_token().await;
    let product = app.create_product(&admin, "SLOW", 2500, "things", 3).await;
    let product_id = product["id"].as_str().expect("id");

    let placed = app
        .place_order(&customer, "slow-1", &order_body(product_id, 1, "tok_slow"))
        .await;
    let order = placed.ok(StatusCode::CREATED).clone();
    assert_eq!(order["status"], "payment_failed");
    assert_eq!(order["failure_reason"], "payment_timed_out");
    let id = order["id"].as_str().expect("id").to_owned();
    let payment = |detail: &serde_json::Value| detail["payment"].clone();
    let detail = app.get(&format!("/api/orders/{id}"), Some(&customer)).await;
    let before = payment(detail.ok(StatusCode::OK));
    assert_eq!(before["status"], "voided");
    assert_eq!(before["captured"]["amount_minor"], 0);
    let payments = app.contexts.payments_module();
    assert_eq!(
        payments
            .service()
            .backlog()
            .await
            .map(|b| b.awaiting_reconciliation),
        Ok(1),
        "the given-up charge is not forgotten"
    );

    // Once the abandoned attempt's deadline has passed, the sweep asks the provider.
    clock.advance(Duration::hours(1));
    assert_eq!(payments.reconcile_due().await, Ok(1));
    let detail = app.get(&format!("/api/orders/{id}"), Some(&customer)).await;
    let after = payment(detail.ok(StatusCode::OK));
    assert_eq!(after["status"], "voided", "the order still gave it up");
    assert_eq!(
        after["captured"],
        json!({"amount_minor": 2500, "currency": "EUR"})
    );
    assert_eq!(
        after["refunded"], after["captured"],
        "and it was given back"
    );
    assert_eq!(
        payments
            .service()
            .backlog()
            .await
            .map(|b| (b.awaiting_reconciliation, b.unconfirmed_refunds)),
        Ok((0, 0)),
        "the provider confirmed the refund"
    );
    assert_eq!(
        app.count_events("payments", "payments.payment_captured.v1")
            .await,
        1
    );
    assert_eq!(
        app.count_events("payments", "payments.payment_refunded.v1")
            .await,
        1
    );
    assert_eq!(
        app.stock(product_id).await,
        json!({"available": 3, "reserved": 0})
    );
}

/// `payments.test_mode = false`: the test tokens are not listed (404) and none of them pays
/// for an order.
async fn outside_test_mode_no_test_token_pays_for_a_checkout(store: TestStore) {
    let app = spawn_app_with(store, |settings| settings.payments.test_mode = false).await;
    app.get("/api/payments/test-tokens", None)
        .await
        .error(StatusCode::NOT_FOUND, "route_not_found");
    let admin = app.admin_token().await;
    let customer = app.customer_token().await;
    let product = app.create_product(&admin, "REAL", 1000, "things", 2).await;
    let product_id = product["id"].as_str().expect("id");
    for token in ["tok_visa", "tok_slow"] {
        let placed = app
            .place_order(&customer, token, &order_body(product_id, 1, token))
            .await;
        let order = placed.ok(StatusCode::CREATED);
        assert_eq!(order["status"], "payment_failed", "{token}");
        assert_eq!(order["failure_reason"], "invalid_payment_token", "{token}");
    }
    assert_eq!(
        app.stock(product_id).await,
        json!({"available": 2, "reserved": 0})
    );
}

testkit::backend_tests!(
    a_checkout_that_timed_out_while_the_provider_approved_is_refunded,
    outside_test_mode_no_test_token_pays_for_a_checkout,
);
