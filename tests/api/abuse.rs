//! What a hostile or careless client can do to the shop, and what it gets: rate limits on
//! login and registration, slow clients and slow routes bounded in time, metric labels from
//! closed sets.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use testkit::TestStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::checkout::order_body;
use crate::helpers::{Answer, TestApp, spawn_app, spawn_app_with};

/// How long a test waits for something the shop does on its own before it gives up. A
/// bound, not an expectation: the conditions waited for come much sooner.
const PATIENCE: Duration = Duration::from_secs(60);

#[track_caller]
fn retry_after(answer: &Answer) -> u64 {
    let seconds: u64 = answer.headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("whole seconds");
    assert!(seconds >= 1, "{seconds}");
    seconds
}

#[track_caller]
fn too_many(answer: &Answer) {
    let error = answer.error(StatusCode::TOO_MANY_REQUESTS, "too_many_requests");
    let seconds = retry_after(answer);
    assert_eq!(error["retry_after_secs"], seconds, "{error}");
}

/// A burst of attempts from one address, then 429 on login and registration alike, before
/// the body is even read; the limit says when to come back.
async fn login_and_registration_are_rate_limited_per_address(store: TestStore) {
    let app = spawn_app_with(store, |settings| {
        let limits = &mut settings.auth.rate_limits;
        // One a minute: nothing refills while the test runs.
        limits.address_per_minute = 1;
        limits.address_burst = 3;
    })
    .await;
    app.register("ada@example.com", "ada password", "Ada")
        .await
        .ok(StatusCode::CREATED);
    app.login("ada@example.com", "wrong password")
        .await
        .error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    app.login("nobody@example.com", "any password")
        .await
        .error(StatusCode::UNAUTHORIZED, "invalid_credentials");

    too_many(&app.login("ada@example.com", "ada password").await);
    too_many(
        &app.register("grace@example.com", "grace password", "Grace")
            .await,
    );
    let unread = app
        .send(
            app.client
                .post(app.url("/api/auth/login"))
                .header("Content-Type", "application/json")
                .body("{not json"),
        )
        .await;
    too_many(&unread);

    // Other routes are not limited.
    app.get("/api/catalog/products", None)
        .await
        .ok(StatusCode::OK);
}

/// Attempts on one account are limited whichever address they come from, the email
/// compared as auth stores it; other accounts are untouched, and even the right password
/// waits.
async fn login_is_rate_limited_per_account(store: TestStore) {
    let app = spawn_app_with(store, |settings| {
        let limits = &mut settings.auth.rate_limits;
        limits.account_per_minute = 1;
        limits.account_burst = 3;
    })
    .await;
    app.register("victim@example.com", "victim password", "Victim")
        .await
        .ok(StatusCode::CREATED);
    app.login("victim@example.com", "guess one")
        .await
        .error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    app.login("VICTIM@Example.com", "guess two")
        .await
        .error(StatusCode::UNAUTHORIZED, "invalid_credentials");

    too_many(&app.login("victim@example.com", "victim password").await);
    too_many(&app.login("Victim@EXAMPLE.com", "guess three").await);
    too_many(
        &app.register("victim@example.com", "other password", "Again")
            .await,
    );

    app.register("other@example.com", "other password", "Other")
        .await
        .ok(StatusCode::CREATED);
    app.login("other@example.com", "other password")
        .await
        .ok(StatusCode::OK);
}

/// The API document says which routes answer 429 and 503, and that both say when to retry.
async fn the_document_lists_the_limits(store: TestStore) {
    let app = spawn_app(store).await;
    let document = app
        .get("/api-docs/openapi.json", None)
        .await
        .ok(StatusCode::OK)
        .clone();
    for path in ["/api/auth/login", "/api/auth/register"] {
        let responses = &document["paths"][path]["post"]["responses"];
        for status in ["429", "503"] {
            assert!(
                responses[status]["headers"]["Retry-After"].is_object(),
                "{path} {status}: {responses:#}"
            );
        }
        let described = responses["408"]["description"].as_str().unwrap_or("");
        assert!(
            described.contains("request_timeout"),
            "{path}: {responses:#}"
        );
    }
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            let described = operation["responses"]["503"]["description"]
                .as_str()
                .unwrap_or("");
            assert!(
                described.contains("deadline_exceeded"),
                "{method} {path}: {described:?}"
            );
        }
    }
}

/// Opens a raw connection to the shop and sends `head`, then `chunk` once every 50 ms (a
/// trickling client), for a minute at most. Returns everything the shop sent back, read
/// until it closed the connection, which must happen while the client is still sending.
async fn trickle(app: &TestApp, head: &str, chunk: &'static [u8]) -> String {
    let address = app.address.trim_start_matches("http://");
    let socket = TcpStream::connect(address).await.expect("connect");
    let (mut reader, mut writer) = socket.into_split();
    writer.write_all(head.as_bytes()).await.expect("send head");
    let gave_up = Arc::new(AtomicBool::new(false));
    let writing = tokio::spawn({
        let gave_up = gave_up.clone();
        async move {
            let mut pace = tokio::time::interval(Duration::from_millis(50));
            for _ in 0..1200 {
                pace.tick().await;
                if writer.write_all(chunk).await.is_err() {
                    return;
                }
            }
            gave_up.store(true, Ordering::SeqCst);
        }
    });
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(PATIENCE, async {
        let mut buffer = [0_u8; 4096];
        loop {
            match reader.read(&mut buffer).await {
                // The shop closed the connection.
                Ok(0) => return true,
                Ok(read) => answer.extend_from_slice(&buffer[..read]),
                // A reset after the answer is a close too (the client was still writing).
                Err(_) => return !answer.is_empty(),
            }
        }
    })
    .await;
    let held = gave_up.load(Ordering::SeqCst);
    writing.abort();
    assert_eq!(closed, Ok(true), "the shop keeps the connection open");
    assert!(
        !held,
        "the shop closed the connection only after the client stopped sending"
    );
    String::from_utf8_lossy(&answer).into_owned()
}

/// A client that trickles its body gets 408 `request_timeout` once the body read limit
/// has passed, and the connection is closed: the socket is the server's again.
async fn a_client_trickling_its_body_gets_408_and_its_socket_back(store: TestStore) {
    let app = spawn_app_with(store, |settings| {
        settings.server.body_read_timeout_ms = 300;
    })
    .await;
    let with_length = trickle(
        &app,
        "POST /api/auth/login HTTP/1.1\r\nHost: shop\r\nContent-Type: application/json\r\n\
         Content-Length: 4000\r\n\r\n{\"email\": \"",
        b"a",
    )
    .await;
    let chunked = trickle(
        &app,
        "POST /api/auth/register HTTP/1.1\r\nHost: shop\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n1\r\n{\r\n",
        b"1\r\n \r\n",
    )
    .await;
    for answer in [with_length, chunked] {
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains(r#""code":"request_timeout""#), "{answer}");
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{answer}"
        );
    }
    // A route that reads no body answers, then closes rather than drain a body that
    // never ends.
    let ignored = trickle(
        &app,
        "GET /healthz HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"1\r\n \r\n",
    )
    .await;
    assert!(ignored.starts_with("HTTP/1.1 200"), "{ignored}");
}

/// A client that never finishes its request head gets actix-web's bare 408 after
/// `server.client_request_timeout_ms`, and the connection is closed.
async fn a_client_trickling_its_head_gets_408_and_its_socket_back(store: TestStore) {
    let app = spawn_app_with(store, |settings| {
        settings.server.client_request_timeout_ms = 300;
    })
    .await;
    let answer = trickle(
        &app,
        "GET /healthz HTTP/1.1\r\nHost: shop\r\n",
        b"X-Slow: a\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

/// A route that does not answer within the handler deadline answers 503
/// `deadline_exceeded`; the checkout it started still finishes in its own task, and a retry
/// with the same key learns its outcome.
async fn a_slow_route_answers_503_and_its_checkout_still_finishes(store: TestStore) {
    // `tok_slow` holds the charge past the checkout's charge timeout (3 s in tests), far
    // past a 300 ms handler deadline.
    let app = spawn_app_with(store, |settings| {
        settings.server.handler_timeout_ms = 300;
    })
    .await;
    let admin = app.admin_token().await;
    let customer = app.customer_token().await;
    let product = app.create_product(&admin, "SLOW", 700, "things", 2).await;
    let product_id = product["id"].as_str().expect("id");
    let body = order_body(product_id, 1, "tok_slow");

    let cut = app.place_order(&customer, "slow-1", &body).await;
    cut.error(StatusCode::SERVICE_UNAVAILABLE, "deadline_exceeded");
    retry_after(&cut);

    // The checkout goes on without the request: wait (bounded) for it to finish, looking
    // every 50 ms.
    let until = tokio::time::Instant::now() + PATIENCE;
    let mut pace = tokio::time::interval(Duration::from_millis(50));
    let order = loop {
        pace.tick().await;
        let orders = app.get("/api/orders", Some(&customer)).await;
        let orders = orders.ok(StatusCode::OK)["items"].clone();
        let finished = orders.as_array().and_then(|items| {
            items
                .iter()
                .find(|order| {
                    let status = order["status"].as_str().unwrap_or("");
                    !matches!(status, "pending" | "stock_reserved" | "payment_captured")
                })
                .cloned()
        });
        if let Some(order) = finished {
            break order;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "the checkout did not finish: {orders:#}"
        );
    };
    assert_eq!(
        app.stock(product_id).await["reserved"],
        0,
        "nothing is held for an order that finished: {order:#}"
    );

    let replay = app.place_order(&customer, "slow-1", &body).await;
    assert_eq!(replay.ok(StatusCode::OK)["id"], order["id"]);
    assert_eq!(replay.headers["idempotent-replayed"], "true");
}

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

testkit::backend_tests!(
    login_and_registration_are_rate_limited_per_address,
    login_is_rate_limited_per_account,
    the_document_lists_the_limits,
    a_client_trickling_its_body_gets_408_and_its_socket_back,
    a_client_trickling_its_head_gets_408_and_its_socket_back,
    a_slow_route_answers_503_and_its_checkout_still_finishes,
    invented_methods_and_paths_add_no_metric_series,
);
