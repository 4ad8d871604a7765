//! A stand-in OpenTelemetry collector: accepts OTLP/HTTP JSON exports and keeps every span.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::Value;

use crate::split::harness::PATIENCE;

/// One exported span: the service that sent it and its identity.
#[derive(Debug, Clone)]
pub struct ExportedSpan {
    pub service: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
}

#[derive(Debug)]
pub struct Collector {
    pub url: String,
    spans: Arc<Mutex<Vec<ExportedSpan>>>,
}

impl Collector {
    pub async fn start() -> Self {
        let spans: Arc<Mutex<Vec<ExportedSpan>>> = Arc::default();
        let kept = spans.clone();
        let server = HttpServer::new(move || {
            let kept = kept.clone();
            App::new().route(
                "/v1/traces",
                web::post().to(move |body: web::Bytes| {
                    let kept = kept.clone();
                    async move {
                        let export: Value = serde_json::from_slice(&body).unwrap_or_default();
                        kept.lock().expect("lock").extend(spans_of(&export));
                        HttpResponse::Ok().json(serde_json::json!({}))
                    }
                }),
            )
        })
        .workers(1)
        .bind(("127.0.0.1", 0))
        .expect("bind the collector");
        let url = format!("http://{}/v1/traces", server.addrs()[0]);
        // It serves until the test's runtime ends.
        tokio::spawn(server.run());
        Self { url, spans }
    }

    /// Waits until `found` accepts the spans exported so far.
    pub async fn wait_for(&self, found: impl Fn(&[ExportedSpan]) -> bool) -> Vec<ExportedSpan> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let spans = self.spans.lock().expect("lock").clone();
            if found(&spans) {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "the expected spans were not exported; got {} spans: {:#?}",
                spans.len(),
                spans.iter().rev().take(20).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn spans_of(export: &Value) -> Vec<ExportedSpan> {
    let mut spans = Vec::new();
    for resource in export["resourceSpans"].as_array().into_iter().flatten() {
        let service = resource["resource"]["attributes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|attribute| attribute["key"] == "service.name")
            .and_then(|attribute| attribute["value"]["stringValue"].as_str())
            .unwrap_or_default()
            .to_owned();
        for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
            for span in scope["spans"].as_array().into_iter().flatten() {
                let text = |key: &str| span[key].as_str().unwrap_or_default().to_lowercase();
                spans.push(ExportedSpan {
                    service: service.clone(),
                    name: text("name"),
                    trace_id: text("traceId"),
                    span_id: text("spanId"),
                    parent_span_id: text("parentSpanId"),
                });
            }
        }
    }
    spans
}
