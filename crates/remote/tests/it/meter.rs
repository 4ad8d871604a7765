//! What a `Meter` records: one count and one duration per call, under the five labels, in the
//! recorder that is current when the call ends, even though it registers each metric once.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use auth_api::AuthError;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use remote::{Meter, Placement};

/// Keeps every counter's value and every histogram's sample count, by name and labels.
#[derive(Debug, Default)]
struct Recorded {
    counters: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    histograms: Mutex<BTreeMap<String, Arc<Samples>>>,
}

#[derive(Debug, Default)]
struct Samples(AtomicU64);

impl metrics::HistogramFn for Samples {
    fn record(&self, _value: f64) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn describe(key: &Key) -> String {
    let labels: Vec<String> = key
        .labels()
        .map(|label| format!("{}={}", label.key(), label.value()))
        .collect();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

impl Recorder for Recorded {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut counters = self.counters.lock().expect("lock");
        Counter::from_arc(counters.entry(describe(key)).or_default().clone())
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let mut histograms = self.histograms.lock().expect("lock");
        Histogram::from_arc(histograms.entry(describe(key)).or_default().clone())
    }
}

impl Recorded {
    /// Each metric that saw calls, with its count: `name{labels} count`.
    fn lines(&self) -> Vec<String> {
        let counters = self.counters.lock().expect("lock");
        let histograms = self.histograms.lock().expect("lock");
        let counted = counters
            .iter()
            .map(|(key, value)| (key, value.load(Ordering::SeqCst)));
        let sampled = histograms
            .iter()
            .map(|(key, samples)| (key, samples.0.load(Ordering::SeqCst)));
        counted
            .chain(sampled)
            .filter(|(_, count)| *count > 0)
            .map(|(key, count)| format!("{key} {count}"))
            .collect()
    }
}

/// Observes a call that answers `answer`, which the caller gets back unchanged.
fn call(meter: &Meter, answer: Result<u32, AuthError>) {
    let expected = answer.clone();
    let result = futures::executor::block_on(meter.observe("verify_token", async { answer }));
    assert_eq!(result, expected);
}

fn check(recorded: &Recorded, expected: &[&str]) {
    assert_eq!(recorded.lines(), expected);
}

const OK: &str = "caller=orders,callee=auth,method=verify_token,placement=local,outcome=ok";
const REFUSED: &str =
    "caller=orders,callee=auth,method=verify_token,placement=local,outcome=refused";

#[test]
fn every_call_is_counted_and_timed_in_the_current_recorder() {
    let meter = Meter::new("orders", "auth", Placement::Local);
    let first = Recorded::default();
    metrics::with_local_recorder(&first, || {
        call(&meter, Ok(1));
        call(&meter, Ok(2));
        call(&meter.clone(), Err(AuthError::InvalidToken));
    });
    check(
        &first,
        &[
            &format!("shop_boundary_calls_total{{{OK}}} 2"),
            &format!("shop_boundary_calls_total{{{REFUSED}}} 1"),
            &format!("shop_boundary_call_duration_seconds{{{OK}}} 2"),
            &format!("shop_boundary_call_duration_seconds{{{REFUSED}}} 1"),
        ],
    );

    // The metrics were registered with `first`: calls made while another recorder is
    // current are counted there, and `first` sees none of them.
    let second = Recorded::default();
    metrics::with_local_recorder(&second, || call(&meter, Ok(3)));
    check(
        &second,
        &[
            &format!("shop_boundary_calls_total{{{OK}}} 1"),
            &format!("shop_boundary_call_duration_seconds{{{OK}}} 1"),
        ],
    );
    metrics::with_local_recorder(&first, || call(&meter, Ok(4)));
    assert_eq!(
        first.lines()[0],
        format!("shop_boundary_calls_total{{{OK}}} 3")
    );
}

/// Keeps the name, level and `placement` of every span it is shown.
#[derive(Debug, Default, Clone)]
struct Spans(Arc<Mutex<Vec<String>>>);

impl<S> tracing_subscriber::Layer<S> for Spans
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attributes: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        struct Placement(String);
        impl tracing::field::Visit for Placement {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "placement" {
                    self.0 = format!("{value:?}").trim_matches('"').to_owned();
                }
            }
        }
        let mut placement = Placement(String::new());
        attributes.record(&mut placement);
        let metadata = attributes.metadata();
        self.0.lock().expect("lock").push(format!(
            "{} {} {}",
            metadata.name(),
            metadata.level(),
            placement.0
        ));
    }
}

/// The spans a filter lets through while a local and a remote call are observed.
fn spans_seen(
    filter: impl Fn(&tracing::Metadata<'_>) -> bool + Send + Sync + 'static,
) -> Vec<String> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    let spans = Spans::default();
    let subscriber = tracing_subscriber::registry().with(
        spans
            .clone()
            .with_filter(tracing_subscriber::filter::filter_fn(filter)),
    );
    tracing::subscriber::with_default(subscriber, || {
        metrics::with_local_recorder(&metrics::NoopRecorder, || {
            call(&Meter::new("orders", "auth", Placement::Local), Ok(1));
            call(&Meter::new("orders", "payments", Placement::Remote), Ok(2));
        });
    });
    spans.0.lock().expect("lock").clone()
}

#[test]
fn a_remote_call_is_an_info_span_and_a_local_one_a_debug_span_traced_on_request() {
    // What the shop traces by default: spans at info level and above.
    let info = |metadata: &tracing::Metadata<'_>| {
        metadata.is_span() && *metadata.level() <= tracing::Level::INFO
    };
    assert_eq!(spans_seen(info), ["boundary_call INFO remote"]);
    // With `telemetry.trace_local_calls`: the in-process call too.
    let with_local = move |metadata: &tracing::Metadata<'_>| {
        info(metadata) || remote::meter::is_local_call_span(metadata)
    };
    assert_eq!(
        spans_seen(with_local),
        ["boundary_call DEBUG local", "boundary_call INFO remote"]
    );
}
