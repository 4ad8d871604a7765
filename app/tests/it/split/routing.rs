//! Strangler fig: the whole shop still runs payments, and sends a share of payments' public
//! routes to a payments process; the share moves while both run.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::Backend;

use crate::split::harness::{Process, SERVICE_TOKEN, Split, sample};

/// Sends `n` requests to payments' public route through the shop; how many answered 200.
async fn ask(split: &Split, n: usize, request_id: &str) -> usize {
    let mut answered = 0;
    for i in 0..n {
        let response = split
            .http
            .get(format!("{}/api/payments/test-tokens", split.shop.public))
            .header("X-Request-Id", format!("{request_id}-{i}"))
            .send()
            .await
            .expect("get");
        assert_eq!(
            response.headers()["x-request-id"],
            format!("{request_id}-{i}").as_str(),
            "the request id survives the hop"
        );
        if response.status() == StatusCode::OK {
            answered += 1;
        }
    }
    answered
}

fn routed(metrics: &str, destination: &str, outcome: &str) -> f64 {
    sample(
        metrics,
        "shop_routed_requests_total",
        &[
            "context=\"payments\"",
            &format!("destination=\"{destination}\""),
            &format!("outcome=\"{outcome}\""),
        ],
    )
    .unwrap_or(0.0)
}

async fn set_share(split: &Split, admin: &str, context: &str, share: u32) -> (StatusCode, Value) {
    let response = split
        .http
        .put(format!("{}/api/admin/routing/{context}", split.shop.public))
        .bearer_auth(admin)
        .json(&json!({ "share": share }))
        .send()
        .await
        .expect("put");
    let status = response.status();
    (status, response.json().await.expect("json"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_of_payments_routes_moves_to_the_extracted_process_and_back() {
    // A payments process; then, on the same addresses, the whole shop (payments linked too),
    // with a service token so that it serves auth's port to the payments process, and a
    // route for payments at 0 %.
    let mut split = Split::start(
        Backend::Postgres,
        crate::split::harness::Layout::PaymentsOnly,
        &[],
    )
    .await;
    let mut env: BTreeMap<String, String> = split.shop.env().clone();
    env.remove("SHOP__PLACEMENT__PAYMENTS_URL");
    env.insert("SHOP__ROUTING__PAYMENTS_SHARE".to_owned(), "0".to_owned());
    assert_eq!(env["SHOP__INTERNAL__TOKEN"], SERVICE_TOKEN);
    split.shop.kill();
    split.shop = Process::start_with("shop", "all", env);
    let admin = split.admin().await;

    // 0 %: everything is served by the shop's own payments.
    assert_eq!(ask(&split, 10, "zero").await, 10);
    let metrics = split.metrics(&split.shop).await;
    assert_eq!(routed(&metrics, "local", "served"), 10.0, "{metrics}");
    assert_eq!(routed(&metrics, "remote", "answered"), 0.0, "{metrics}");

    // 30 %: exactly 30 of 100 go to the payments process, with their request ids.
    let (status, route) = set_share(&split, &admin, "payments", 30).await;
    assert_eq!(status, StatusCode::OK, "{route}");
    assert_eq!(route["share"], 30);
    assert_eq!(route["linked"], true);
    assert_eq!(ask(&split, 100, "thirty").await, 100);
    let metrics = split.metrics(&split.shop).await;
    assert_eq!(routed(&metrics, "remote", "answered"), 30.0, "{metrics}");
    assert_eq!(routed(&metrics, "local", "served"), 80.0, "{metrics}");
    split.payments.wait_for_log(|line| {
        line["spans"].as_array().is_some_and(|spans| {
            spans.iter().any(|span| {
                span["request_id"]
                    .as_str()
                    .is_some_and(|id| id.starts_with("thirty-"))
            })
        })
    });

    // 100 %, and the target goes away: 503 with the usual error body, never a hang.
    let (status, _) = set_share(&split, &admin, "payments", 100).await;
    assert_eq!(status, StatusCode::OK);
    split.payments.kill();
    let response = split
        .http
        .get(format!("{}/api/payments/test-tokens", split.shop.public))
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "unavailable");

    // Back to 0 %: the shop serves payments' routes itself again.
    let (status, _) = set_share(&split, &admin, "payments", 0).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ask(&split, 5, "back").await, 5);

    // What the admin endpoint refuses.
    let listed = split.get_json("/api/admin/routing", Some(&admin)).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    for (context, share, status, code) in [
        ("warehouse", 10, StatusCode::NOT_FOUND, "context_not_found"),
        ("catalog", 10, StatusCode::CONFLICT, "not_routed"),
    ] {
        let (answered, body) = set_share(&split, &admin, context, share).await;
        assert_eq!(answered, status, "{context}: {body}");
        assert_eq!(body["error"]["code"], code);
    }
    let customer = split.customer("eve@example.com").await;
    let (status, _) = set_share(&split, &customer, "payments", 50).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
