//! The one place the tracing subscriber is built.
//!
//! Convention (see docs/ARCHITECTURE.md): log messages are short lower-case phrases
//! ("user registered", "stock reserved"); everything variable goes into structured fields.
//!
//! Four layers share one registry:
//! - the log (`fmt`), filtered by `log.filter` or `RUST_LOG`;
//! - OpenTelemetry (`tracing-opentelemetry`): every info-level span becomes an OpenTelemetry
//!   span, so each has a W3C trace context that boundary calls send to other processes
//!   (`remote::propagation`). Its spans are exported over OTLP only when
//!   `telemetry.otlp_endpoint` is set; otherwise they stay in the process;
//! - `remote::propagation::RequestIds`: the request id a remote call carries;
//! - `remote::meter::BreakerGauge`: each circuit breaker's state, for `/metrics`.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::{Level, Metadata};
use tracing_subscriber::filter::{EnvFilter, filter_fn};
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

use crate::settings::{LogFormat, LogSettings, OtlpProtocol, TelemetrySettings};

/// Keeps the span exporter running; dropping it after `shutdown` flushes what is left.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans still buffered (call before the process exits).
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown()
        {
            tracing::warn!(error = %error, "flushing the span exporter failed");
        }
    }
}

/// Installs the global subscriber. `RUST_LOG`, when set, overrides the configured filter.
/// Calling it again (tests start many apps in one process) is harmless: the first wins.
pub fn init(log: &LogSettings, telemetry: &TelemetrySettings) -> Telemetry {
    let (provider, exporting) = match tracer_provider(telemetry) {
        Ok(provider) => provider,
        Err(error) => {
            // A bad exporter must not stop the shop: it runs without export and says so.
            let provider = SdkTracerProvider::builder()
                .with_resource(resource(telemetry))
                .build();
            install(log, telemetry, &provider);
            tracing::error!(error = %error, "the OTLP span exporter cannot start; spans are not exported");
            return Telemetry { provider: None };
        }
    };
    let installed = install(log, telemetry, &provider);
    if installed && exporting {
        tracing::info!(endpoint = %telemetry.otlp_endpoint, service = %telemetry.service_name, "exporting spans over OTLP");
    }
    Telemetry {
        provider: (installed && exporting).then_some(provider),
    }
}

fn resource(telemetry: &TelemetrySettings) -> Resource {
    Resource::builder()
        .with_service_name(telemetry.service_name.clone())
        .build()
}

/// The provider: with a batch OTLP/HTTP exporter when an endpoint is configured.
fn tracer_provider(
    telemetry: &TelemetrySettings,
) -> Result<(SdkTracerProvider, bool), opentelemetry_otlp::ExporterBuildError> {
    let builder = SdkTracerProvider::builder().with_resource(resource(telemetry));
    if telemetry.otlp_endpoint.is_empty() {
        return Ok((builder.build(), false));
    }
    use opentelemetry_otlp::{Protocol, WithExportConfig};
    let protocol = match telemetry.otlp_protocol {
        OtlpProtocol::HttpProtobuf => Protocol::HttpBinary,
        OtlpProtocol::HttpJson => Protocol::HttpJson,
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .with_endpoint(telemetry.otlp_endpoint.clone())
        .build()?;
    Ok((builder.with_batch_exporter(exporter).build(), true))
}

/// Spans that become OpenTelemetry spans: the shop's own (requests, boundary calls,
/// checkout steps), which are all at info level.
fn traced(trace_local_calls: bool) -> impl Fn(&Metadata<'_>) -> bool + Clone {
    move |metadata| {
        (metadata.is_span() && *metadata.level() <= Level::INFO)
            || (trace_local_calls && remote::meter::is_local_call_span(metadata))
    }
}

fn install(log: &LogSettings, telemetry: &TelemetrySettings, provider: &SdkTracerProvider) -> bool {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.filter));
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_span_events(FmtSpan::NONE)
        .with_target(true);
    let fmt = match log.format {
        LogFormat::Json => fmt.json().with_current_span(true).boxed(),
        LogFormat::Pretty => fmt.compact().boxed(),
    };
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("shop"))
        // Busy and idle time per span cost two clock reads on every poll of every
        // instrumented future (a checkout polls its nested spans on each database round
        // trip): 5 % of a checkout's CPU in a profile (docs/PERFORMANCE.md). Spans keep their
        // start and end.
        .with_tracked_inactivity(false)
        .with_filter(filter_fn(traced(telemetry.trace_local_calls)));
    let request_ids =
        remote::propagation::RequestIds.with_filter(filter_fn(traced(telemetry.trace_local_calls)));
    let breakers = remote::meter::BreakerGauge
        .with_filter(filter_fn(|metadata| metadata.target() == recloser_target()));
    let installed = Registry::default()
        .with(fmt.with_filter(filter))
        .with(otel)
        .with(request_ids)
        .with(breakers)
        .try_init()
        .is_ok();
    if installed {
        opentelemetry::global::set_tracer_provider(provider.clone());
    }
    installed
}

fn recloser_target() -> &'static str {
    remote::meter::BREAKER_EVENT_TARGET
}

/// Puts every public request in a span of its own, which continues the trace of a request
/// that carries a W3C `traceparent` (one another process routed here), and answers with
/// `traceresponse` (W3C Trace Context level 2): the trace id a client or a test can look
/// the request up by. Wraps the request span.
pub async fn trace_context(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing::Instrument as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    // No fields: the request span inside it carries method, path and request id.
    let span = tracing::info_span!("http");
    remote::propagation::continue_trace(&span, req.headers());
    let mut response = next
        .call(req)
        .instrument(span.clone())
        .await?
        .map_into_boxed_body();
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if span_context.is_valid()
        && let Ok(value) = HeaderValue::from_str(&format!(
            "00-{}-{}-{:02x}",
            span_context.trace_id(),
            span_context.span_id(),
            span_context.trace_flags().to_u8()
        ))
    {
        response.headers_mut().insert(TRACERESPONSE, value);
    }
    Ok(response)
}

/// The response header naming the trace a request belongs to.
pub const TRACERESPONSE: HeaderName = HeaderName::from_static("traceresponse");

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::filter_fn;
    use tracing_subscriber::layer::SubscriberExt;

    use super::traced;

    /// Counts the spans it is shown, by placement.
    #[derive(Clone, Default)]
    struct Placements(Arc<Mutex<Vec<String>>>);

    impl<S: tracing::Subscriber> Layer<S> for Placements {
        fn on_new_span(
            &self,
            attributes: &tracing::span::Attributes<'_>,
            _: &tracing::span::Id,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            struct Visit(String);
            impl tracing::field::Visit for Visit {
                fn record_debug(
                    &mut self,
                    field: &tracing::field::Field,
                    value: &dyn std::fmt::Debug,
                ) {
                    if field.name() == "placement" {
                        self.0 = format!("{value:?}").trim_matches('"').to_owned();
                    }
                }
            }
            let mut visit = Visit(String::new());
            attributes.record(&mut visit);
            self.0.lock().expect("lock").push(visit.0);
        }
    }

    /// The boundary spans the traces would get, for an in-process and a remote call.
    fn traced_placements(trace_local_calls: bool) -> Vec<String> {
        let seen = Placements::default();
        let subscriber = tracing_subscriber::registry().with(
            seen.clone()
                .with_filter(filter_fn(traced(trace_local_calls))),
        );
        tracing::subscriber::with_default(subscriber, || {
            for placement in [remote::Placement::Local, remote::Placement::Remote] {
                let meter = remote::Meter::new("orders", "payments", placement);
                let answer = futures::executor::block_on(meter.observe("get_payment", async {
                    Ok::<_, payments_api::PaymentsError>(())
                }));
                assert!(answer.is_ok());
            }
        });
        seen.0.lock().expect("lock").clone()
    }

    #[test]
    fn in_process_boundary_calls_are_traced_only_when_configured() {
        assert_eq!(traced_placements(false), ["remote"]);
        assert_eq!(traced_placements(true), ["local", "remote"]);
    }
}
