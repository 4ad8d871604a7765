//! What a hostile or careless client can do to the shop, and what it gets: metric labels
//! from closed sets.

use reqwest::{Method, StatusCode};
use testkit::TestStore;

use crate::helpers::spawn_app;

/// The reproduction: methods `FOO1`..`FOO50` used to add fifty series to `/metrics`. Every
/// label comes from a closed set: unknown methods are `other`, unknown paths `unmatched`.
async fn invented_methods_and_paths_add_no_metric_series(store: TestStore) {
    let app = spawn_app(store).await;
    for i in 1..=50 {
        let method = Method::from_bytes(format!("FOO{i}").as_bytes()).expect("a method");
        app.call(method, "/healthz", None, None)
            .await
            .error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
        app.get(&format!("/no/such/path/{i}"), None)
            .await
            .error(StatusCode::NOT_FOUND, "route_not_found");
        app.get(&format!("/api/auth/nothing-{i}"), None)
            .await
            .error(StatusCode::NOT_FOUND, "route_not_found");
    }
    let answer = app.send(app.client.get(app.url("/metrics"))).await;
    let text = answer.ok(StatusCode::OK).as_str().expect("text").to_owned();
    let requests: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("shop_http_request"))
        .collect();
    for line in &requests {
        assert!(
            !line.contains("FOO") && !line.contains("/no/such") && !line.contains("nothing-"),
            "a label from the request: {line}"
        );
    }
    for expected in [
        r#"shop_http_requests_total{method="other",route="/healthz",status="405"}"#,
        r#"shop_http_requests_total{method="GET",route="unmatched",status="404"}"#,
    ] {
        assert!(
            requests.iter().any(|line| line.starts_with(expected)),
            "missing {expected} in\n{}",
            requests.join("\n")
        );
    }
}

testkit::backend_tests!(invented_methods_and_paths_add_no_metric_series);
