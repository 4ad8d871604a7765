//! A span and metrics for every call across a context boundary, in process or not.
//!
//! Every port call goes through a [`Meter`]: the generated in-process adapter wraps the
//! context's service with one, the generated client wraps the network. So the same four
//! labels describe every boundary call, wherever the callee runs, and the same dashboards
//! work before and after a context is extracted.

use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use kernel::{ContextError, ErrorKind};
use tracing::Instrument;

/// Calls across a boundary, by caller, callee, method, placement and outcome.
pub const CALLS: &str = "shop_boundary_calls_total";
/// How long they took (a histogram, in seconds), by the same labels.
pub const DURATION: &str = "shop_boundary_call_duration_seconds";
/// Attempts made again after a failed one (idempotent methods only), by caller, callee,
/// method.
pub const RETRIES: &str = "shop_boundary_retries_total";
/// Each circuit breaker, by caller and callee: 0 closed, 1 half-open, 2 open.
pub const BREAKER: &str = "shop_circuit_breaker_state";

/// The target of the breaker crate's state events, which [`BreakerGauge`] reads: give that
/// layer a filter that lets this target through.
pub const BREAKER_EVENT_TARGET: &str = recloser::RECLOSER_EVENT;

/// Sets a breaker's gauge. `breaker` is the breaker's name, `<caller>:<callee>`.
pub fn set_breaker_state(breaker: &str, state: &str) {
    let value = match state {
        "closed" | "Closed" => 0.0,
        "half_open" | "HalfOpen" => 1.0,
        "open" | "Open" => 2.0,
        _ => return,
    };
    let (caller, callee) = breaker.split_once(':').unwrap_or(("", breaker));
    metrics::gauge!(BREAKER, "caller" => caller.to_owned(), "callee" => callee.to_owned())
        .set(value);
}

/// A tracing layer that keeps [`BREAKER`] current. The breaker crate (`recloser`) reports
/// each state it enters as a `recloser_event` with the breaker's name and the state; this
/// layer turns those into the gauge. Install it in the subscriber beside the others, without
/// a filter of its own.
#[derive(Debug, Default, Clone, Copy)]
pub struct BreakerGauge;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for BreakerGauge {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() != recloser::RECLOSER_EVENT {
            return;
        }
        let mut entered = Entered::default();
        event.record(&mut entered);
        if let (Some(name), Some(state), true) = (entered.name, entered.state, entered.started) {
            set_breaker_state(&name, &state);
        }
    }
}

/// The fields of a breaker's "entered state" event.
#[derive(Default)]
struct Entered {
    name: Option<String>,
    state: Option<String>,
    started: bool,
}

impl tracing::field::Visit for Entered {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "name" => self.name = Some(value.to_owned()),
            "state" => self.state = Some(value.to_owned()),
            _ => {}
        }
    }

    fn record_u64(&mut self, field: &tracing::field::Field, _: u64) {
        if field.name() == "started_ts" {
            self.started = true;
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        self.record_str(field, text.trim_matches('"'));
        if field.name() == "started_ts" {
            self.started = true;
        }
    }
}

/// Where the callee runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// In this process: a function call.
    Local,
    /// In another process: over HTTP.
    Remote,
}

impl Placement {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Remote => "remote",
        }
    }
}

/// Whether `metadata` is the span of an in-process boundary call: a `boundary_call` span at
/// debug level. A subscriber that records info-level spans for traces adds these when it
/// wants in-process calls in its traces too (`app/src/telemetry.rs`).
pub fn is_local_call_span(metadata: &tracing::Metadata<'_>) -> bool {
    metadata.is_span()
        && metadata.name() == "boundary_call"
        && metadata.target() == module_path!()
        && *metadata.level() == tracing::Level::DEBUG
}

/// How a call ended, in a closed set of labels.
pub fn outcome<T, E: ContextError>(result: &Result<T, E>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(error) => match error.kind() {
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
            // The callee answered, and said no: a refusal, not a failure of the boundary.
            _ => "refused",
        },
    }
}

/// Records the boundary calls of one caller to one callee. Cheap to clone: clones share the
/// registered metrics.
#[derive(Debug, Clone)]
pub struct Meter {
    pub caller: &'static str,
    pub callee: &'static str,
    pub placement: Placement,
    handles: Arc<Handles>,
}

impl Meter {
    pub fn new(caller: &'static str, callee: &'static str, placement: Placement) -> Self {
        Self {
            caller,
            callee,
            placement,
            handles: Arc::default(),
        }
    }

    /// Runs `call` inside a `boundary_call` span and records its outcome and duration.
    ///
    /// A remote call's span is at info level: it is in every trace, and its context travels
    /// to the callee. An in-process call's span is at debug level (see [`is_local_call_span`]):
    /// the call itself costs about 0.2 µs and recording a span costs ten times that, so it is
    /// recorded only when asked for (`telemetry.trace_local_calls`, or a log filter such as
    /// `remote::meter=debug`).
    pub async fn observe<T, E, F>(&self, method: &'static str, call: F) -> Result<T, E>
    where
        E: ContextError,
        F: Future<Output = Result<T, E>>,
    {
        let span = match self.placement {
            Placement::Local => tracing::debug_span!(
                "boundary_call",
                caller = self.caller,
                callee = self.callee,
                method,
                placement = "local",
                outcome = tracing::field::Empty,
            ),
            Placement::Remote => tracing::info_span!(
                "boundary_call",
                caller = self.caller,
                callee = self.callee,
                method,
                placement = "remote",
                outcome = tracing::field::Empty,
            ),
        };
        let started = Instant::now();
        let result = call.instrument(span.clone()).await;
        let elapsed = started.elapsed();
        let outcome = outcome(&result);
        span.record("outcome", outcome);
        self.handles.record(self, method, outcome, elapsed);
        result
    }
}

/// The counter and histogram of each (method, outcome) a [`Meter`] has seen, registered once.
///
/// Registering a metric builds its key (five labels, an allocation) and looks it up in the
/// recorder's registry: with the Prometheus recorder, about two thirds of what an in-process
/// call cost without a span (`cargo bench -p remote --bench boundary`). The handles it returns
/// are then only atomics. So each pair is registered on its first call and kept, with
/// the recorder it was registered with: when the current recorder is another one (none was
/// installed yet at the first call, or a test set a local one), the pair is registered again,
/// so no call is ever counted by a recorder that is not the current one.
#[derive(Default)]
struct Handles {
    registered: RwLock<Vec<Registered>>,
}

struct Registered {
    method: &'static str,
    outcome: &'static str,
    recorder: usize,
    calls: metrics::Counter,
    duration: metrics::Histogram,
}

impl std::fmt::Debug for Handles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let registered = self
            .registered
            .read()
            .map_or(0, |registered| registered.len());
        f.debug_struct("Handles")
            .field("registered", &registered)
            .finish()
    }
}

impl Handles {
    fn record(
        &self,
        meter: &Meter,
        method: &'static str,
        outcome: &'static str,
        elapsed: Duration,
    ) {
        let recorder = current_recorder();
        let found = |registered: &Registered| {
            registered.recorder == recorder
                && registered.method == method
                && registered.outcome == outcome
        };
        // A poisoned lock only means another call panicked while registering: the list is
        // still whole (a push either happened or not).
        {
            let registered = self
                .registered
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(handles) = registered.iter().find(|registered| found(registered)) {
                handles.calls.increment(1);
                handles.duration.record(elapsed.as_secs_f64());
                return;
            }
        }
        let labels = [
            ("caller", meter.caller),
            ("callee", meter.callee),
            ("method", method),
            ("placement", meter.placement.as_str()),
            ("outcome", outcome),
        ];
        let handles = Registered {
            method,
            outcome,
            recorder,
            calls: metrics::counter!(CALLS, &labels),
            duration: metrics::histogram!(DURATION, &labels),
        };
        handles.calls.increment(1);
        handles.duration.record(elapsed.as_secs_f64());
        let mut registered = self
            .registered
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        registered
            .retain(|registered| !(registered.method == method && registered.outcome == outcome));
        registered.push(handles);
    }
}

/// Which recorder the `metrics` macros would use here and now (a thread's local one, the
/// global one or the no-op one), by its address.
fn current_recorder() -> usize {
    metrics::with_recorder(|recorder| std::ptr::from_ref(recorder).cast::<()>() as usize)
}
