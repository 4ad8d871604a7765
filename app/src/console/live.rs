//! The console's live figures: boundary calls per edge and events per type, read from the
//! same metrics `/metrics` exposes (the process's one recorder), so the console and a
//! Prometheus dashboard cannot disagree.
//!
//! The recorder keeps totals. The console keeps the samples it took when it was looked at
//! (no timer: a shop nobody watches does no work for its console) and reports each figure
//! over a window: against the newest sample at least [`WINDOW`] old, or the oldest one kept.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The window rates, error shares and p99s are measured over.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Samples older than this are dropped.
const KEEP: Duration = Duration::from_secs(60);
/// At most this many samples are kept, however many people watch (each view adds one).
const MAX_SAMPLES: usize = 256;
/// A window shorter than this says nothing about rates.
const SHORTEST: Duration = Duration::from_millis(500);

/// Totals at one instant, from the metrics text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// By (caller, callee).
    pub calls: BTreeMap<(String, String), Calls>,
    /// By (callee, method).
    pub methods: BTreeMap<(String, String), u64>,
    /// By event name.
    pub events: BTreeMap<String, Events>,
}

/// Boundary calls of one caller to one callee, every method and outcome together.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Calls {
    pub total: u64,
    /// Outcomes `unavailable` and `internal`: the boundary failed. (A refusal, such as
    /// out of stock, is an answer.)
    pub failed: u64,
    /// Cumulative latency buckets: (upper bound in seconds, calls at or under it).
    pub buckets: Vec<(f64, u64)>,
    pub placement: String,
}

/// One event type: written by its publisher, finished by each consumer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Events {
    pub written: u64,
    /// By consumer: (done, failed attempts, parked).
    pub consumed: BTreeMap<String, (u64, u64, u64)>,
}

/// A figure over the window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rate {
    pub total: u64,
    /// Per second over the window; `None` when no window is known yet.
    pub per_second: Option<f64>,
}

/// An edge's calls over the window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EdgeStats {
    pub calls: Rate,
    /// Failed calls' share of the window's calls (of all calls when no window is known).
    pub error_share: Option<f64>,
    /// The 99th percentile latency of the window's calls (of all calls when no window is
    /// known), in seconds, estimated from the histogram's buckets.
    pub p99: Option<P99>,
    /// No call in the window: the error share and the p99 are those of every call since the
    /// process started.
    pub since_start: bool,
    pub placement: String,
}

/// A percentile from buckets: a value, or "above the largest bucket".
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum P99 {
    Seconds(f64),
    Above(f64),
}

impl Sample {
    /// Reads the metrics text (Prometheus exposition format, as the recorder renders it).
    pub fn parse(text: &str) -> Self {
        let mut sample = Self::default();
        for line in text.lines() {
            let Some((name, labels, value)) = split(line) else {
                continue;
            };
            let label = |key: &str| labels.get(key).cloned().unwrap_or_default();
            match name {
                "shop_boundary_calls_total" => {
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    let value = value as u64;
                    let calls = sample
                        .calls
                        .entry((label("caller"), label("callee")))
                        .or_default();
                    calls.total += value;
                    if matches!(label("outcome").as_str(), "unavailable" | "internal") {
                        calls.failed += value;
                    }
                    calls.placement = label("placement");
                    *sample
                        .methods
                        .entry((label("callee"), label("method")))
                        .or_default() += value;
                }
                "shop_boundary_call_duration_seconds_bucket" => {
                    let le = match label("le").as_str() {
                        "+Inf" => f64::INFINITY,
                        other => other.parse().unwrap_or(f64::INFINITY),
                    };
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    let value = value as u64;
                    let calls = sample
                        .calls
                        .entry((label("caller"), label("callee")))
                        .or_default();
                    match calls.buckets.iter_mut().find(|(bound, _)| *bound == le) {
                        Some((_, count)) => *count += value,
                        None => calls.buckets.push((le, value)),
                    }
                }
                "shop_events_written_total" => {
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    let value = value as u64;
                    sample.events.entry(label("event")).or_default().written += value;
                }
                "shop_events_consumed_total" => {
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    let value = value as u64;
                    let entry = sample
                        .events
                        .entry(label("event"))
                        .or_default()
                        .consumed
                        .entry(label("consumer"))
                        .or_default();
                    match label("outcome").as_str() {
                        "done" => entry.0 += value,
                        "retry" => entry.1 += value,
                        "parked" => {
                            entry.1 += value;
                            entry.2 += value;
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        for calls in sample.calls.values_mut() {
            calls.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        sample
    }
}

/// `name{a="1",b="2"} value` into its parts; `None` for comments and anything else.
fn split(line: &str) -> Option<(&str, BTreeMap<String, String>, f64)> {
    if line.starts_with('#') {
        return None;
    }
    let (series, value) = line.rsplit_once(' ')?;
    let value: f64 = value.parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => (name, rest.strip_suffix('}')?),
        None => (series, ""),
    };
    let mut parsed = BTreeMap::new();
    // Label values here are names and numbers: no escaped quotes or commas inside them.
    for pair in labels.split("\",").filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once("=\"")?;
        parsed.insert(key.to_owned(), value.trim_end_matches('"').to_owned());
    }
    Some((name, parsed, value))
}

/// The samples the console took, newest last.
#[derive(Debug, Default)]
pub struct History {
    samples: Mutex<VecDeque<(Instant, Sample)>>,
}

/// A sample and the one it is compared with.
#[derive(Debug, Clone)]
pub struct Window {
    pub now: Sample,
    pub then: Option<(Duration, Sample)>,
}

impl History {
    /// Keeps `sample`, taken now, and returns it with the sample to compare it with.
    pub fn observe(&self, sample: Sample) -> Window {
        let now = Instant::now();
        let mut samples = self
            .samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while samples.len() >= MAX_SAMPLES
            || samples
                .front()
                .is_some_and(|(taken, _)| now.duration_since(*taken) > KEEP)
        {
            samples.pop_front();
        }
        let then = samples
            .iter()
            .rev()
            .find(|(taken, _)| now.duration_since(*taken) >= WINDOW)
            .or_else(|| samples.front())
            .filter(|(taken, _)| now.duration_since(*taken) >= SHORTEST)
            .map(|(taken, sample)| (now.duration_since(*taken), sample.clone()));
        samples.push_back((now, sample.clone()));
        Window { now: sample, then }
    }
}

impl Window {
    /// The window's length, when there is one.
    pub fn length(&self) -> Option<Duration> {
        self.then.as_ref().map(|(length, _)| *length)
    }

    /// The calls from `caller` to `callee`.
    pub fn edge(&self, caller: &str, callee: &str) -> Option<EdgeStats> {
        let key = (caller.to_owned(), callee.to_owned());
        let now = self.now.calls.get(&key)?;
        let empty = Calls::default();
        let (length, then) = match &self.then {
            Some((length, sample)) => (Some(*length), sample.calls.get(&key).unwrap_or(&empty)),
            None => (None, &empty),
        };
        let mut calls = now.total.saturating_sub(then.total);
        let mut failed = now.failed.saturating_sub(then.failed);
        // A window without calls says nothing about errors or latency: show those of every
        // call since the start instead, and say so.
        let since_start = calls == 0;
        let then = if since_start {
            calls = now.total;
            failed = now.failed;
            &empty
        } else {
            then
        };
        let buckets: Vec<(f64, u64)> = now
            .buckets
            .iter()
            .map(|(bound, count)| {
                let before = then
                    .buckets
                    .iter()
                    .find(|(other, _)| other == bound)
                    .map_or(0, |(_, count)| *count);
                (*bound, count.saturating_sub(before))
            })
            .collect();
        #[allow(clippy::cast_precision_loss)]
        Some(EdgeStats {
            calls: Rate {
                total: now.total,
                per_second: length.map(|length| {
                    if since_start {
                        0.0
                    } else {
                        calls as f64 / length.as_secs_f64()
                    }
                }),
            },
            since_start,
            error_share: (calls > 0).then(|| failed as f64 / calls as f64),
            p99: quantile(&buckets, 0.99),
            placement: now.placement.clone(),
        })
    }

    /// Calls to `callee`'s `method`, since the start.
    pub fn method_calls(&self, callee: &str, method: &str) -> u64 {
        self.now
            .methods
            .get(&(callee.to_owned(), method.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// `event` as written by its publisher.
    pub fn written(&self, event: &str) -> Rate {
        self.rate(|sample| sample.events.get(event).map_or(0, |events| events.written))
    }

    /// `event` as finished by `consumer`: (done, failed attempts and parked, in total).
    pub fn consumed(&self, event: &str, consumer: &str) -> (Rate, u64, u64) {
        let of = |sample: &Sample| {
            sample
                .events
                .get(event)
                .and_then(|events| events.consumed.get(consumer))
                .copied()
                .unwrap_or_default()
        };
        let (_, failed, parked) = of(&self.now);
        (self.rate(|sample| of(sample).0), failed, parked)
    }

    fn rate(&self, count: impl Fn(&Sample) -> u64) -> Rate {
        let total = count(&self.now);
        #[allow(clippy::cast_precision_loss)]
        Rate {
            total,
            per_second: self.then.as_ref().map(|(length, then)| {
                total.saturating_sub(count(then)) as f64 / length.as_secs_f64()
            }),
        }
    }
}

/// The `q` quantile of cumulative `buckets`, interpolated within its bucket as Prometheus's
/// `histogram_quantile` does; `None` without observations.
pub fn quantile(buckets: &[(f64, u64)], q: f64) -> Option<P99> {
    let total = buckets.last()?.1;
    if total == 0 {
        return None;
    }
    #[allow(clippy::cast_precision_loss)]
    let rank = q * total as f64;
    let mut lower = (0.0, 0_u64);
    for &(bound, count) in buckets {
        #[allow(clippy::cast_precision_loss)]
        if count as f64 >= rank {
            if bound.is_infinite() {
                return Some(P99::Above(lower.0));
            }
            let within = (count - lower.1) as f64;
            let into = rank - lower.1 as f64;
            let share = if within > 0.0 { into / within } else { 1.0 };
            return Some(P99::Seconds(lower.0 + (bound - lower.0) * share));
        }
        lower = (bound, count);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# TYPE shop_boundary_calls_total counter
shop_boundary_calls_total{caller="orders",callee="catalog",method="reserve_stock",placement="local",outcome="ok"} 8
shop_boundary_calls_total{caller="orders",callee="catalog",method="get_products",placement="local",outcome="unavailable"} 2
shop_boundary_call_duration_seconds_bucket{caller="orders",callee="catalog",method="reserve_stock",placement="local",outcome="ok",le="0.001"} 4
shop_boundary_call_duration_seconds_bucket{caller="orders",callee="catalog",method="reserve_stock",placement="local",outcome="ok",le="0.01"} 8
shop_boundary_call_duration_seconds_bucket{caller="orders",callee="catalog",method="reserve_stock",placement="local",outcome="ok",le="+Inf"} 8
shop_boundary_call_duration_seconds_bucket{caller="orders",callee="catalog",method="get_products",placement="local",outcome="unavailable",le="0.001"} 0
shop_boundary_call_duration_seconds_bucket{caller="orders",callee="catalog",method="get_products",placement="local",outcome="unavailable",le="0.01"} 0
shop_boundary_call_duration_seconds_bucket{caller="orders",callee="catalog",method="get_products",placement="local",outcome="unavailable",le="+Inf"} 2
shop_events_written_total{publisher="orders",event="orders.order_confirmed.v1"} 3
shop_events_consumed_total{consumer="notifications",event="orders.order_confirmed.v1",outcome="done"} 2
shop_events_consumed_total{consumer="notifications",event="orders.order_confirmed.v1",outcome="parked"} 1
"#;

    #[test]
    fn the_metrics_text_sums_methods_and_outcomes_per_edge() {
        let sample = Sample::parse(TEXT);
        let calls = &sample.calls[&("orders".to_owned(), "catalog".to_owned())];
        assert_eq!((calls.total, calls.failed), (10, 2));
        assert_eq!(
            calls.buckets,
            vec![(0.001, 4), (0.01, 8), (f64::INFINITY, 10)]
        );
        assert_eq!(
            sample.methods[&("catalog".to_owned(), "reserve_stock".to_owned())],
            8
        );
        let events = &sample.events["orders.order_confirmed.v1"];
        assert_eq!(events.written, 3);
        assert_eq!(events.consumed["notifications"], (2, 1, 1));
    }

    #[test]
    fn without_a_window_figures_cover_everything_since_the_start() {
        let window = Window {
            now: Sample::parse(TEXT),
            then: None,
        };
        let edge = window.edge("orders", "catalog").expect("calls");
        assert_eq!(edge.calls.total, 10);
        assert_eq!(edge.calls.per_second, None);
        assert_eq!(edge.error_share, Some(0.2));
        // 99 % of 10 calls is 9.9: beyond the 8 under 10 ms, in the +Inf bucket.
        assert_eq!(edge.p99, Some(P99::Above(0.01)));
        assert!(window.edge("orders", "payments").is_none());
    }

    #[test]
    fn a_quiet_window_shows_errors_and_latency_since_the_start() {
        let sample = Sample::parse(TEXT);
        let window = Window {
            now: sample.clone(),
            then: Some((Duration::from_secs(10), sample)),
        };
        let edge = window.edge("orders", "catalog").expect("calls");
        assert_eq!(edge.calls.per_second, Some(0.0));
        assert!(edge.since_start);
        assert_eq!(edge.error_share, Some(0.2));
        assert_eq!(edge.p99, Some(P99::Above(0.01)));
    }

    #[test]
    fn a_window_counts_only_what_happened_in_it() {
        let then = Sample::parse(TEXT);
        let now = Sample::parse(
            &TEXT
                .replace("\"} 8\n", "\"} 28\n")
                .replace("le=\"0.001\"} 4", "le=\"0.001\"} 24"),
        );
        let window = Window {
            now,
            then: Some((Duration::from_secs(10), then)),
        };
        let edge = window.edge("orders", "catalog").expect("calls");
        assert_eq!(edge.calls.total, 30);
        assert_eq!(edge.calls.per_second, Some(2.0));
        assert_eq!(edge.error_share, Some(0.0));
        assert!(!edge.since_start);
        // The window's 20 calls were all under 1 ms.
        match edge.p99 {
            Some(P99::Seconds(p99)) => assert!(p99 <= 0.001, "{p99}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn quantiles_interpolate_within_their_bucket() {
        let buckets = [(0.001, 50), (0.002, 100), (f64::INFINITY, 100)];
        assert_eq!(quantile(&buckets, 0.5), Some(P99::Seconds(0.001)));
        assert_eq!(quantile(&buckets, 0.75), Some(P99::Seconds(0.0015)));
        assert_eq!(quantile(&[(0.001, 0), (f64::INFINITY, 0)], 0.99), None);
    }
}
