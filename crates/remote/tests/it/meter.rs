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
