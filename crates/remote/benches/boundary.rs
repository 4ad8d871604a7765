//! What a call across a context boundary costs, by placement (`cargo bench -p remote --bench
//! boundary`).
//!
//! One port method, `AuthApi::verify_token`, answered by a trivial in-memory implementation
//! (a fixed `Principal`), so that what is measured is the boundary and not the work behind it:
//!
//! - `direct`: a call on `Arc<dyn AuthApi>`, the floor;
//! - `local`: the same through `remote::auth::Local`, the in-process adapter every context
//!   call goes through in one process: the debug-level `boundary_call` span and the call
//!   metrics, with what the `shop` binary installs at its defaults (the OpenTelemetry and
//!   request-id layers, a log layer at its default filter, the Prometheus recorder with its
//!   buckets). Also without a subscriber or recorder (`no telemetry`: what the adapter itself
//!   costs), with the recorder but no subscriber (`metrics only`), and with
//!   `telemetry.trace_local_calls` on (`traced`: the span recorded for traces);
//! - `client`: through `remote::auth::Client` against the generated server on a loopback
//!   actix listener, with the shop's telemetry on both sides: what extraction adds to a call.
//!
//! Figures are criterion's means on whatever machine runs it; compare them with each other,
//! in one run, rather than with numbers from another machine. Performance is shown here and
//! in `scripts/bench-split.sh`, never asserted in tests.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use async_trait::async_trait;
use auth_api::{AuthApi, AuthError, Principal, Role};
use criterion::{Criterion, criterion_group, criterion_main};
use kernel::UserId;

const SERVICE_TOKEN: &str = "bench-service-token-0123456789abcdef";

/// An auth port that knows one answer.
#[derive(Debug)]
struct FixedAuth(Principal);

#[async_trait]
impl AuthApi for FixedAuth {
    async fn verify_token(&self, _token: String) -> Result<Principal, AuthError> {
        Ok(self.0)
    }
}

fn principal() -> Principal {
    Principal {
        user_id: UserId::from_uuid(uuid::Uuid::from_u128(42)),
        role: Role::Customer,
    }
}

fn fixed() -> Arc<dyn AuthApi> {
    Arc::new(FixedAuth(principal()))
}

/// The tracing subscriber of the `shop` binary (`app/src/telemetry.rs`), with the log written
/// nowhere; `trace_local_calls` is the `telemetry.trace_local_calls` setting.
fn shop_subscriber(trace_local_calls: bool) -> impl tracing::Subscriber + Send + Sync {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::filter::{EnvFilter, filter_fn};
    use tracing_subscriber::layer::SubscriberExt as _;

    let traced = move |metadata: &tracing::Metadata<'_>| {
        (metadata.is_span() && *metadata.level() <= tracing::Level::INFO)
            || (trace_local_calls && remote::meter::is_local_call_span(metadata))
    };
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let log = tracing_subscriber::fmt::layer()
        .with_writer(std::io::sink)
        .with_filter(EnvFilter::new(
            "info,sqlx=warn,sea_orm=warn,sea_orm_migration=warn,actix_server=warn",
        ));
    tracing_subscriber::registry()
        .with(log)
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("bench"))
                .with_filter(filter_fn(traced)),
        )
        .with(remote::propagation::RequestIds.with_filter(filter_fn(traced)))
        .with(
            remote::meter::BreakerGauge.with_filter(filter_fn(|metadata| {
                metadata.target() == remote::meter::BREAKER_EVENT_TARGET
            })),
        )
}

/// The shop's subscriber (at its defaults) and metrics recorder (`app/src/metrics.rs`),
/// installed for the whole process.
fn install_shop_telemetry() {
    tracing::subscriber::set_global_default(shop_subscriber(false)).expect("the first subscriber");
    let buckets = [
        0.000_01, 0.000_1, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
        2.5, 5.0,
    ];
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(remote::meter::DURATION.to_owned()),
            &buckets,
        )
        .expect("buckets")
        .build_recorder();
    metrics::set_global_recorder(recorder).expect("the first recorder");
}

/// The same answer as `verify_token`'s, on a bare actix route: what HTTP and JSON alone cost.
async fn plain(body: web::Bytes) -> HttpResponse {
    let args: remote::auth::args::verify_token =
        serde_json::from_slice(&body).expect("the arguments decode");
    let reply: remote::wire::Reply<Principal, AuthError> =
        FixedAuth(principal()).verify_token(args.token).await.into();
    HttpResponse::Ok().json(reply)
}

/// Serves `api` as the shop's internal listener does, on 127.0.0.1 and a free port, from a
/// runtime of its own (one worker), and returns its base URL.
fn serve(api: Arc<dyn AuthApi>) -> url::Url {
    let token = remote::ServiceToken::new(SERVICE_TOKEN.to_owned().into());
    let routes = remote::internal_routes(
        vec![remote::auth::server(api)],
        remote::InternalAuth::new(&token),
        Duration::from_secs(30),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let address = listener.local_addr().expect("address");
    let server = HttpServer::new(move || {
        App::new()
            .configure(routes.clone())
            .route("/bench/plain", web::post().to(plain))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .expect("listen")
    .run();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("server runtime")
            .block_on(server)
            .expect("serve");
    });
    format!("http://{address}").parse().expect("url")
}

fn boundary(c: &mut Criterion) {
    install_shop_telemetry();
    // The caller's side runs on one thread, as a handler's await does.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let direct = fixed();
    let local: Arc<dyn AuthApi> = Arc::new(remote::auth::Local::new("bench", fixed()));
    let url = serve(fixed());
    let client: Arc<dyn AuthApi> = Arc::new(remote::auth::Client::new(
        "bench",
        remote::Endpoint {
            url: url.clone(),
            token: remote::ServiceToken::new(SERVICE_TOKEN.to_owned().into()),
        },
        remote::CallPolicy::default(),
    ));
    // The listener is up once a call gets through; the first also opens the connection.
    runtime.block_on(async {
        for _ in 0..200 {
            if client.verify_token("ok".to_owned()).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the loopback listener never answered");
    });

    let call = |api: &Arc<dyn AuthApi>| {
        let api = api.clone();
        move || {
            let api = api.clone();
            async move { std::hint::black_box(api.verify_token("ok".to_owned()).await) }
        }
    };

    let mut group = c.benchmark_group("boundary");
    group.bench_function("direct", |b| b.to_async(&runtime).iter(call(&direct)));
    // The adapter alone: no subscriber and no recorder on this thread.
    tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
        metrics::with_local_recorder(&metrics::NoopRecorder, || {
            group.bench_function("local, no telemetry", |b| {
                b.to_async(&runtime).iter(call(&local));
            });
        });
        // The metrics it records, without the span.
        group.bench_function("local, metrics only", |b| {
            b.to_async(&runtime).iter(call(&local));
        });
    });
    group.bench_function("local", |b| b.to_async(&runtime).iter(call(&local)));
    // With `telemetry.trace_local_calls`: the call's span recorded for traces.
    tracing::subscriber::with_default(shop_subscriber(true), || {
        group.bench_function("local, traced", |b| {
            b.to_async(&runtime).iter(call(&local));
        });
    });
    let http = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .expect("an HTTP client");
    let plain_url = url.join("/bench/plain").expect("url");
    group.bench_function("plain http, loopback", |b| {
        b.to_async(&runtime).iter(|| {
            let request = http
                .post(plain_url.clone())
                .json(&remote::auth::args::verify_token {
                    token: "ok".to_owned(),
                });
            async move {
                let answer = request.send().await.expect("sent");
                let reply: remote::wire::Reply<Principal, AuthError> =
                    answer.json().await.expect("decodes");
                std::hint::black_box(Result::from(reply))
            }
        });
    });
    group.bench_function("client, loopback", |b| {
        b.to_async(&runtime).iter(call(&client));
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5));
    targets = boundary
}
criterion_main!(benches);
