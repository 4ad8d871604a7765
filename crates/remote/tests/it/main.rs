//! The remote mechanism on real HTTP over loopback: a generated client against a generated
//! server, with a scriptable port behind it. The contexts' own behaviour is tested by their
//! contract suites (in `tests/`); these tests pin down what the adapters add: the wire,
//! the credential, deadlines, retries, the budget, the breaker and trace propagation.

mod harness;
mod meter;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use auth_api::{AuthApi, AuthError};
use harness::{FakeAuth, Serve, client, policy, serve};
use kernel::ContextError;
use kernel::{MethodSpec, PortSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_and_refusals_travel_as_the_ports_own_types() {
    let fake = Arc::new(FakeAuth::default());
    let server = serve(vec![remote::auth::server(fake.clone())], Serve::default()).await;
    let auth = client(&server, "answers", policy());

    let principal = auth.verify_token("ok".to_owned()).await.expect("answered");
    assert_eq!(principal, harness::principal());
    // A refusal is an answer: the port's own variant, not `unavailable`.
    assert_eq!(
        auth.verify_token("refuse".to_owned()).await,
        Err(AuthError::InvalidToken)
    );
    assert_eq!(server.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_routes_need_the_service_credential() {
    let fake = Arc::new(FakeAuth::default());
    let server = serve(vec![remote::auth::server(fake.clone())], Serve::default()).await;
    let url = server
        .url
        .join("/internal/auth/v1/verify_token")
        .expect("url");
    let http = reqwest::Client::new();
    for authorization in [
        None,
        Some("Bearer not-the-token".to_owned()),
        Some(format!("Bearer {}x", harness::TOKEN)),
        // A customer's access token is no service credential.
        Some("Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln".to_owned()),
        Some(format!("Basic {}", harness::TOKEN)),
    ] {
        let mut request = http
            .post(url.clone())
            .json(&serde_json::json!({"token": "ok"}));
        if let Some(value) = &authorization {
            request = request.header("authorization", value);
        }
        let response = request.send().await.expect("sent");
        assert_eq!(response.status(), 401, "{authorization:?}");
        let body: serde_json::Value = response.json().await.expect("json");
        assert_eq!(body["error"]["code"], "unauthenticated");
    }
    assert_eq!(
        fake.calls.load(Ordering::SeqCst),
        0,
        "nothing reached the port"
    );

    // The right credential gets through; the list of ports needs it too.
    let response = http
        .post(url)
        .header("authorization", format!("Bearer {}", harness::TOKEN))
        .json(&serde_json::json!({"token": "ok"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let ports = server.url.join("/internal/ports").expect("url");
    assert_eq!(
        http.get(ports.clone()).send().await.expect("sent").status(),
        401
    );
    let served: serde_json::Value = http
        .get(ports)
        .header("authorization", format!("Bearer {}", harness::TOKEN))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(
        served,
        serde_json::json!([{"context": "auth", "version": 1}])
    );

    // A client with the wrong credential gets `unavailable`, and says why.
    let wrong = remote::auth::Client::new(
        "wrong-credential",
        remote::Endpoint {
            url: server.url.clone(),
            token: remote::ServiceToken::new("not-the-token".to_owned().into()),
        },
        policy(),
    );
    let error = wrong
        .verify_token("ok".to_owned())
        .await
        .expect_err("refused");
    assert_eq!(error.kind(), kernel::ErrorKind::Unavailable);
    assert!(error.to_string().contains("401"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_methods_and_versions_are_not_found() {
    let fake = Arc::new(FakeAuth::default());
    let server = serve(vec![remote::auth::server(fake)], Serve::default()).await;
    let http = reqwest::Client::new();
    for (path, code) in [
        ("/internal/auth/v1/delete_everything", "unknown_method"),
        ("/internal/auth/v2/verify_token", "unknown_version"),
        ("/internal/catalog/v1/get_products", "unknown_port"),
    ] {
        let response = http
            .post(server.url.join(path).expect("url"))
            .header("authorization", format!("Bearer {}", harness::TOKEN))
            .json(&serde_json::json!({}))
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 404, "{path}");
        let body: serde_json::Value = response.json().await.expect("json");
        assert_eq!(body["error"]["code"], code, "{path}");
    }
    // Arguments of another shape: 422, and the port is not called.
    let response = http
        .post(
            server
                .url
                .join("/internal/auth/v1/verify_token")
                .expect("url"),
        )
        .header("authorization", format!("Bearer {}", harness::TOKEN))
        .json(&serde_json::json!({"jwt": "ok"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 422);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_callee_is_given_up_at_the_deadline_and_stops_its_work() {
    let fake = Arc::new(FakeAuth::default());
    let server = serve(vec![remote::auth::server(fake.clone())], Serve::default()).await;
    let mut policy = policy();
    policy.deadline = Duration::from_millis(300);
    let auth = client(&server, "slow", policy);

    let dropped = fake.watch_slow_call();
    let started = Instant::now();
    let error = auth
        .verify_token("slow".to_owned())
        .await
        .expect_err("gave up");
    let waited = started.elapsed();
    assert_eq!(error.kind(), kernel::ErrorKind::Unavailable);
    assert!(error.to_string().contains("deadline"), "{error}");
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
    // The callee was told the deadline and dropped the work when it passed: the slow call
    // never completed.
    let completed = dropped.await.expect("the slow call ended");
    assert!(!completed, "the callee finished work nobody waited for");
    // The deadline is not a temporary failure: no retry.
    assert_eq!(server.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_travels_and_bounds_calls_made_while_serving() {
    let fake = Arc::new(FakeAuth::default());
    let server = serve(vec![remote::auth::server(fake.clone())], Serve::default()).await;
    let mut policy = policy();
    policy.deadline = Duration::from_millis(1500);
    let auth = client(&server, "deadline", policy);
    auth.verify_token("deadline".to_owned())
        .await
        .expect("answered");
    let seen = fake
        .deadline_left
        .lock()
        .expect("lock")
        .expect("a deadline was set");
    assert!(seen <= Duration::from_millis(1500), "{seen:?}");
    assert!(seen > Duration::from_millis(100), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_methods_are_retried_after_temporary_failures() {
    let fake = Arc::new(FakeAuth::default());
    let server = serve(
        vec![remote::auth::server(fake.clone())],
        Serve {
            fail_first: 2,
            ..Serve::default()
        },
    )
    .await;
    let auth = client(&server, "retries", policy());
    let principal = auth.verify_token("ok".to_owned()).await.expect("third try");
    assert_eq!(principal, harness::principal());
    assert_eq!(server.hits(), 3);
    assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
}

/// The auth port with `verify_token` declared not idempotent, to show the transport reads the
/// spec.
static NOT_IDEMPOTENT: PortSpec = PortSpec {
    context: "auth",
    trait_name: "AuthApi",
    version: 1,
    methods: &[MethodSpec::not_idempotent("verify_token")],
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_not_marked_idempotent_are_never_retried() {
    let fake = Arc::new(FakeAuth::default());
    let server = serve(
        vec![remote::auth::server(fake.clone())],
        Serve {
            fail_first: 1,
            ..Serve::default()
        },
    )
    .await;
    let transport =
        remote::Transport::new(&NOT_IDEMPOTENT, "no-retry", server.endpoint(), policy());
    let result: Result<auth_api::Principal, AuthError> = transport
        .call(
            "verify_token",
            &remote::auth::args::verify_token {
                token: "ok".to_owned(),
            },
        )
        .await;
    let error = result.expect_err("not retried");
    assert_eq!(error.kind(), kernel::ErrorKind::Unavailable);
    assert_eq!(server.hits(), 1);
}

/// An auth port whose listener answers 503 to every call.
async fn always_unavailable() -> harness::Served {
    let fake = Arc::new(FakeAuth::default());
    serve(
        vec![remote::auth::server(fake)],
        Serve {
            fail_first: usize::MAX,
            ..Serve::default()
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stay_within_the_budget() {
    let server = always_unavailable().await;
    let mut policy = policy();
    policy.max_attempts = 5;
    policy.retry_ratio = 0.1;
    policy.min_retries_per_sec = 0;
    policy.backoff = Duration::from_millis(1);
    policy.max_backoff = Duration::from_millis(2);
    // Keep the breaker out of this test.
    policy.breaker.window = 10_000;
    let auth = client(&server, "budget", policy);
    let calls = 200;
    for _ in 0..calls {
        let error = auth
            .verify_token("ok".to_owned())
            .await
            .expect_err("always 503");
        assert_eq!(error.kind(), kernel::ErrorKind::Unavailable);
    }
    let retries = server.hits() - calls;
    // Without a budget, every call would have been tried 5 times: 800 retries.
    assert!(
        retries <= calls / 10 + 1,
        "{retries} retries for {calls} calls"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_opens_fails_fast_and_closes_when_the_callee_is_back() {
    let server = always_unavailable().await;
    let mut policy = policy();
    policy.max_attempts = 1;
    policy.breaker.window = 4;
    policy.breaker.probes = 1;
    policy.breaker.open_for = Duration::from_millis(200);
    let auth = client(&server, "breaker", policy);

    // The breaker judges once its window is full: the fifth failure opens it.
    for _ in 0..5 {
        auth.verify_token("ok".to_owned()).await.expect_err("503");
    }
    let hits_when_open = server.hits();
    for _ in 0..20 {
        let error = auth.verify_token("ok".to_owned()).await.expect_err("open");
        assert!(error.to_string().contains("circuit open"), "{error}");
    }
    assert_eq!(
        server.hits(),
        hits_when_open,
        "an open breaker sends nothing"
    );

    // The callee recovers; after `open_for` a probe gets through and the breaker closes.
    server.recover();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if auth.verify_token("ok".to_owned()).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "the breaker never closed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..5 {
        auth.verify_token("ok".to_owned())
            .await
            .expect("closed again");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_callee_is_unavailable_not_a_hang() {
    // A port nobody listens on: bind, note the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let auth = remote::auth::Client::new(
        "unreachable",
        remote::Endpoint {
            url: format!("http://127.0.0.1:{port}").parse().expect("url"),
            token: remote::ServiceToken::new(harness::TOKEN.to_owned().into()),
        },
        policy(),
    );
    let error = auth
        .verify_token("ok".to_owned())
        .await
        .expect_err("nobody there");
    assert_eq!(error.kind(), kernel::ErrorKind::Unavailable);
    assert!(error.to_string().contains("cannot reach"), "{error}");
    assert!(
        auth.transport()
            .probe(Duration::from_secs(1))
            .await
            .is_err(),
        "readiness sees it too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_probes_check_the_port_is_served_there() {
    let fake = Arc::new(FakeAuth::default());
    let server = serve(vec![remote::auth::server(fake)], Serve::default()).await;
    let auth = client(&server, "probe", policy());
    auth.transport()
        .probe(Duration::from_secs(2))
        .await
        .expect("auth is served there");
    let catalog = remote::catalog::Client::new("probe", server.endpoint(), policy());
    let error = catalog
        .transport()
        .probe(Duration::from_secs(2))
        .await
        .expect_err("catalog is not served there");
    assert!(error.contains("does not serve catalog"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_context_and_request_id_cross_the_boundary() {
    harness::install_tracing();
    let fake = Arc::new(FakeAuth::default());
    let server = serve(vec![remote::auth::server(fake.clone())], Serve::default()).await;
    let auth = client(&server, "tracing", policy());

    let span = tracing::info_span!("request", request_id = "req-42");
    let (caller_trace, _) = {
        let _entered = span.enter();
        (remote::propagation::current_trace_id(), ())
    };
    let caller_trace = caller_trace.expect("the caller has a trace");
    tracing::Instrument::instrument(auth.verify_token("trace".to_owned()), span)
        .await
        .expect("answered");
    let seen = fake.seen.lock().expect("lock").clone().expect("seen");
    assert_eq!(
        seen.trace_id.as_deref(),
        Some(caller_trace.as_str()),
        "one trace"
    );
    assert_eq!(seen.request_id.as_deref(), Some("req-42"));
}
