//! What a remote call carries of the story it belongs to: the W3C trace context
//! (`traceparent`, `tracestate`) and the request id.
//!
//! Both come from the current tracing span, so they follow the work wherever it goes in the
//! process (a checkout runner spawned with `in_current_span` still knows its request):
//!
//! - the trace context from the OpenTelemetry layer (`tracing-opentelemetry`), which the
//!   `shop` binary always installs; exporting the spans (OTLP) is a separate, optional step;
//! - the request id from [`RequestIds`], a layer that remembers the `request_id` field of
//!   every span that has one (the public `request` span, the internal `boundary_serve` span).
//!
//! Without those layers (a unit test without a subscriber) nothing is sent and nothing fails.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::span::{Attributes, Id};
use tracing::{Span, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::wire;

/// Adds the current trace context and request id to an outgoing call's headers.
pub fn outgoing(headers: &mut reqwest::header::HeaderMap) {
    let context = Span::current().context();
    TraceContextPropagator::new().inject_context(&context, &mut Outgoing(headers));
    if let Some(id) = current_request_id()
        && let Ok(value) = reqwest::header::HeaderValue::from_str(&id)
    {
        headers.insert(wire::REQUEST_ID, value);
    }
}

/// Makes `span` (the span serving an internal call) a child of the caller's span, when the
/// call carries a valid `traceparent`.
pub fn continue_trace(span: &Span, headers: &actix_web::http::header::HeaderMap) {
    if headers.get("traceparent").is_none() {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&Incoming(headers));
    // Fails only when no OpenTelemetry layer is installed: then there is no trace to continue.
    let _ = span.set_parent(parent);
}

/// The W3C trace id of the current span, for tests and logs (`None` without the
/// OpenTelemetry layer).
pub fn current_trace_id() -> Option<String> {
    use opentelemetry::trace::TraceContextExt;
    let context = Span::current().context();
    let span_context = context.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

struct Outgoing<'a>(&'a mut reqwest::header::HeaderMap);

impl Injector for Outgoing<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            reqwest::header::HeaderName::from_bytes(key.as_bytes()),
            reqwest::header::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

struct Incoming<'a>(&'a actix_web::http::header::HeaderMap);

impl Extractor for Incoming<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}

/// A tracing layer that remembers the `request_id` of every span that records one, so that
/// [`current_request_id`] can find it from any span below.
#[derive(Debug, Default, Clone, Copy)]
pub struct RequestIds;

/// A span's request id, kept in the span's extensions.
struct RequestIdOf(String);

impl<S> Layer<S> for RequestIds
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, context: Context<'_, S>) {
        if attributes.metadata().fields().field("request_id").is_none() {
            return;
        }
        let mut found = FindRequestId(None);
        attributes.record(&mut found);
        if let (Some(value), Some(span)) = (found.0, context.span(id))
            && wire::is_label(&value)
        {
            span.extensions_mut().insert(RequestIdOf(value));
        }
    }
}

struct FindRequestId(Option<String>);

impl tracing::field::Visit for FindRequestId {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "request_id" {
            self.0 = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "request_id" {
            self.0 = Some(format!("{value:?}").trim_matches('"').to_owned());
        }
    }
}

/// The request id of the nearest span above that has one.
pub fn current_request_id() -> Option<String> {
    Span::current()
        .with_subscriber(|(id, dispatch)| {
            let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
            let span = registry.span(id)?;
            span.scope().find_map(|span| {
                span.extensions()
                    .get::<RequestIdOf>()
                    .map(|id| id.0.clone())
            })
        })
        .flatten()
}
