//! `/metrics` in the Prometheus text format.
//!
//! Crates record through the `metrics` facade (`web-kit`: requests; `orders`: checkout
//! outcomes; `catalog`: product cache hits, misses and invalidations; `messaging`: event
//! delivery, and the parked events, counted on each scrape;
//! `remote`: boundary calls, retries and circuit breakers; `routing`: routed requests);
//! this module installs the one recorder the process has and renders it. Metric names start
//! with `shop_`.

use std::sync::{Arc, OnceLock};

use actix_web::{HttpResponse, web};
use messaging::Bus;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Request latency buckets, in seconds: fine below 100 ms, where checkouts live.
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Boundary call latency buckets, in seconds: an in-process call takes microseconds, a call
/// on loopback a fraction of a millisecond, a charge up to the provider's deadline.
const BOUNDARY_BUCKETS: &[f64] = &[
    0.000_01, 0.000_1, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0,
];

/// The process-wide recorder, installed on first use. (Tests start many shops in one
/// process; they share it, as they share the tracing subscriber.)
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(web_kit::request_id::REQUEST_DURATION.to_owned()),
                    LATENCY_BUCKETS,
                )
                .expect("the bucket list is not empty")
                .set_buckets_for_metric(
                    Matcher::Full(remote::meter::DURATION.to_owned()),
                    BOUNDARY_BUCKETS,
                )
                .expect("the bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
            }
            handle
        })
        .clone()
}

/// How often histogram samples are folded into their buckets between scrapes.
const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Folds recorded histogram samples into their buckets every few seconds until `shutdown`.
/// The recorder keeps every sample until this (or a scrape) drains it, so a shop nobody
/// scrapes would otherwise grow by a few bytes per request, forever. No queries: this is
/// memory bookkeeping only.
pub fn spawn_upkeep(
    handle: PrometheusHandle,
    shutdown: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(UPKEEP_INTERVAL);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = ticks.tick() => handle.run_upkeep(),
            }
        }
    })
}

pub fn configure(handle: PrometheusHandle, bus: Arc<Bus>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::new(handle))
            .app_data(web::Data::from(bus))
            .service(web_kit::resource("/metrics").get(render));
    }
}

/// Counters and histograms of requests, checkouts and events, and the events parked now, in
/// the Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain")))]
pub async fn render(
    handle: web::Data<PrometheusHandle>,
    bus: web::Data<Bus>,
    runtime: web_kit::StoreRuntime,
) -> HttpResponse {
    // Parked events are state in the database, not something this process counts: read
    // them at scrape time (on the store runtime, as every store call from a request).
    // Without the database the rest is still worth rendering.
    let counted = runtime
        .run_any(async move { bus.record_parked().await })
        .await;
    if let Ok(Err(error)) = counted {
        tracing::warn!(error = %error, "counting parked events failed");
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(handle.render())
}
