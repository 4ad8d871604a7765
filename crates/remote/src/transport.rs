//! The calling side: one [`Transport`] per (caller, remote context).
//!
//! What every remote call gets, whatever the port:
//!
//! - **A deadline.** The whole call, retries included, ends by it; the time left travels in
//!   `x-shop-deadline-ms` so the callee stops work nobody waits for. A call made while
//!   serving another internal call ends by that call's deadline too.
//! - **Retries only where they are safe.** Only a method the port marks idempotent is tried
//!   again, only after a failure that may be temporary (no connection, a reset, a 502/503/504),
//!   with exponential backoff and jitter, and only while the retry budget allows: retries
//!   never exceed a set fraction of calls, so a struggling callee is not buried under them.
//! - **A circuit breaker per callee** ([`recloser`]): when most recent calls failed, calls
//!   fail at once for a while instead of waiting on a callee that is down, then a few are let
//!   through to see whether it is back.
//! - **One way to fail.** Timeout, transport failure, an answer that does not decode and an
//!   open breaker all reach the caller as the port's `Unavailable` error, with the reason.
//!   A refusal the callee answered (`out_of_stock`, `not_found`) is returned as it is.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use kernel::{ContextError, PortSpec};
use recloser::{AsyncRecloser, Recloser};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tower::retry::budget::{Budget, TpsBudget};
use url::Url;

use crate::meter::{self, Meter, Placement};
use crate::server::{ServiceToken, current_deadline};
use crate::{propagation, wire};

/// Where a remote context listens and how to prove who is calling.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The base URL of the callee's internal listener (`http://10.0.0.7:9001`).
    pub url: Url,
    pub token: ServiceToken,
}

/// How calls to one remote context behave when things go wrong.
#[derive(Debug, Clone, Copy)]
pub struct CallPolicy {
    /// The longest a call may take, retries included.
    pub deadline: Duration,
    /// The longest a new connection may take to open.
    pub connect_timeout: Duration,
    /// Tries per call of an idempotent method, the first included (1 = no retries).
    pub max_attempts: u32,
    /// The wait before the first retry; doubled each time, with jitter, up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// Retries may add at most this fraction of the calls made (0.2 = 20 %)...
    pub retry_ratio: f32,
    /// ...beyond this many retries per second, so that a quiet caller can still retry.
    pub min_retries_per_sec: u32,
    pub breaker: BreakerPolicy,
}

/// When a callee's breaker opens and for how long.
#[derive(Debug, Clone, Copy)]
pub struct BreakerPolicy {
    /// The breaker opens when this fraction of the last `window` calls failed...
    pub failure_rate: f32,
    pub window: usize,
    /// ...stays open this long (calls fail at once)...
    pub open_for: Duration,
    /// ...then lets this many calls through, and closes if few enough of them fail.
    pub probes: usize,
}

impl Default for CallPolicy {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(3),
            connect_timeout: Duration::from_millis(500),
            max_attempts: 3,
            backoff: Duration::from_millis(25),
            max_backoff: Duration::from_millis(400),
            retry_ratio: 0.2,
            min_retries_per_sec: 5,
            breaker: BreakerPolicy::default(),
        }
    }
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            failure_rate: 0.5,
            window: 20,
            open_for: Duration::from_secs(5),
            probes: 5,
        }
    }
}

/// Calls to one remote context on behalf of one caller. Cheap to clone.
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

struct Inner {
    spec: &'static PortSpec,
    meter: Meter,
    base: Url,
    authorization: String,
    http: Clients,
    policy: CallPolicy,
    budget: TpsBudget,
    breaker: AsyncRecloser,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("callee", &self.inner.spec.context)
            .field("caller", &self.inner.meter.caller)
            .field("url", &self.inner.base.as_str())
            .field("policy", &self.inner.policy)
            .finish_non_exhaustive()
    }
}

/// Why an attempt did not get an answer from the port.
#[derive(Debug)]
enum Failure {
    /// The deadline passed.
    Deadline,
    /// No connection, or it broke: the request may or may not have arrived.
    Transport(String),
    /// The callee's listener answered, but not as the port (bad credential, unknown method,
    /// arguments of another version, deadline passed there, overloaded).
    Status(u16, String),
    /// The answer does not decode as this version's.
    Decode(String),
}

impl Failure {
    /// Whether trying again may help. (Whether it is *safe* is the port's to say.)
    fn temporary(&self) -> bool {
        match self {
            Self::Transport(_) => true,
            Self::Status(status, _) => matches!(status, 502..=504),
            Self::Deadline | Self::Decode(_) => false,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Deadline => f.write_str("no answer before the deadline"),
            Self::Transport(reason) => write!(f, "cannot reach it: {reason}"),
            Self::Status(status, code) => write!(f, "its listener answered {status} {code}"),
            Self::Decode(reason) => write!(f, "its answer does not decode: {reason}"),
        }
    }
}

impl Transport {
    /// Calls from `caller` to the context of `spec` at `endpoint`. The HTTP clients are built
    /// on first use, one per calling thread; building one cannot fail for `http://` (no TLS
    /// backend is needed), except in a broken environment, where the call panics.
    pub fn new(
        spec: &'static PortSpec,
        caller: &'static str,
        endpoint: Endpoint,
        policy: CallPolicy,
    ) -> Self {
        let http = Clients::new(policy.connect_timeout);
        let breaker = Recloser::custom()
            .name(format!("{caller}:{}", spec.context))
            .error_rate(policy.breaker.failure_rate)
            .closed_len(policy.breaker.window.max(1))
            .half_open_len(policy.breaker.probes.max(1))
            .open_wait(policy.breaker.open_for)
            .build();
        // The breaker's state changes are reported by `meter::BreakerGauge`.
        meter::set_breaker_state(&format!("{caller}:{}", spec.context), "closed");
        Self {
            inner: Arc::new(Inner {
                spec,
                meter: Meter::new(caller, spec.context, Placement::Remote),
                base: endpoint.url,
                authorization: endpoint.token.header_value(),
                http,
                policy,
                budget: TpsBudget::new(
                    Duration::from_secs(10),
                    policy.min_retries_per_sec,
                    policy.retry_ratio,
                ),
                breaker: AsyncRecloser::from(breaker),
            }),
        }
    }

    pub fn callee(&self) -> &'static str {
        self.inner.spec.context
    }

    pub fn url(&self) -> &Url {
        &self.inner.base
    }

    /// Calls `method` with `args`, as described in the module's documentation.
    pub async fn call<A, T, E>(&self, method: &'static str, args: &A) -> Result<T, E>
    where
        A: Serialize + Sync,
        T: DeserializeOwned,
        E: ContextError + DeserializeOwned,
    {
        let inner = &self.inner;
        inner
            .meter
            .observe(method, self.attempts(method, args))
            .await
    }

    async fn attempts<A, T, E>(&self, method: &'static str, args: &A) -> Result<T, E>
    where
        A: Serialize + Sync,
        T: DeserializeOwned,
        E: ContextError + DeserializeOwned,
    {
        let inner = &self.inner;
        let unavailable =
            |reason: String| E::unavailable(format!("{}: {reason}", inner.spec.context));
        let body = match serde_json::to_vec(args) {
            Ok(body) => bytes::Bytes::from(body),
            Err(error) => {
                tracing::error!(%error, method, "the arguments of a remote call do not encode");
                return Err(E::internal());
            }
        };
        let started = Instant::now();
        let mut deadline = started + inner.policy.deadline;
        if let Some(outer) = current_deadline() {
            deadline = deadline.min(outer);
        }
        inner.budget.deposit();
        let retry_allowed = inner.spec.is_idempotent(method);
        let mut attempt = 1;
        loop {
            let outcome = inner
                .breaker
                .call_with(
                    |_: &Failure| true,
                    self.attempt::<T, E>(method, body.clone(), deadline),
                )
                .await;
            let failure = match outcome {
                Ok(reply) => return reply.into(),
                Err(recloser::Error::Rejected) => {
                    return Err(unavailable(
                        "circuit open after repeated failures".to_owned(),
                    ));
                }
                Err(recloser::Error::Inner(failure)) => failure,
            };
            let backoff = self.backoff(attempt);
            let may_retry = retry_allowed
                && failure.temporary()
                && attempt < inner.policy.max_attempts
                && Instant::now() + backoff < deadline;
            if !may_retry || !inner.budget.withdraw() {
                tracing::warn!(
                    callee = inner.spec.context,
                    method,
                    attempt,
                    reason = %failure,
                    "remote call failed"
                );
                return Err(unavailable(failure.to_string()));
            }
            metrics::counter!(
                meter::RETRIES,
                "caller" => inner.meter.caller,
                "callee" => inner.spec.context,
                "method" => method,
            )
            .increment(1);
            tracing::debug!(callee = inner.spec.context, method, attempt, reason = %failure, "retrying");
            tokio::time::sleep(backoff).await;
            attempt += 1;
        }
    }

    /// The wait after failed attempt `attempt`: exponential, capped, with full jitter so that
    /// many callers do not retry in step.
    fn backoff(&self, attempt: u32) -> Duration {
        let policy = &self.inner.policy;
        let exponential = policy
            .backoff
            .saturating_mul(1 << attempt.saturating_sub(1).min(16))
            .min(policy.max_backoff);
        exponential.mul_f64(rand::random_range(0.5..=1.0))
    }

    async fn attempt<T, E>(
        &self,
        method: &'static str,
        body: bytes::Bytes,
        deadline: Instant,
    ) -> Result<wire::Reply<T, E>, Failure>
    where
        T: DeserializeOwned,
        E: DeserializeOwned,
    {
        let inner = &self.inner;
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Failure::Deadline);
        }
        let url = inner
            .base
            .join(&wire::path(inner.spec.context, inner.spec.version, method))
            .map_err(|error| Failure::Transport(error.to_string()))?;
        let mut headers = reqwest::header::HeaderMap::new();
        propagation::outgoing(&mut headers);
        let request = inner
            .http
            .current()
            .post(url)
            .headers(headers)
            .header(wire::AUTHORIZATION, &inner.authorization)
            .header(wire::DEADLINE_MS, left.as_millis().max(1).to_string())
            .header(wire::CALLER, inner.meter.caller)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        let exchange = async {
            let response = request
                .send()
                .await
                .map_err(|error| Failure::Transport(describe(&error)))?;
            let status = response.status();
            let bytes = response
                .bytes()
                .await
                .map_err(|error| Failure::Transport(describe(&error)))?;
            if status != reqwest::StatusCode::OK {
                let code = serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .and_then(|body| body["error"]["code"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                return Err(Failure::Status(status.as_u16(), code));
            }
            serde_json::from_slice::<wire::Reply<T, E>>(&bytes)
                .map_err(|error| Failure::Decode(error.to_string()))
        };
        match tokio::time::timeout(left, exchange).await {
            Ok(result) => result,
            Err(_elapsed) => Err(Failure::Deadline),
        }
    }

    /// Whether the callee's listener answers and serves this port (for `/readyz`), within
    /// `timeout`. Does not go through the breaker, so it also tells when the callee is back.
    pub async fn probe(&self, timeout: Duration) -> Result<(), String> {
        let inner = &self.inner;
        let url = inner
            .base
            .join(wire::PORTS_PATH)
            .map_err(|error| error.to_string())?;
        let exchange = async {
            let response = inner
                .http
                .current()
                .get(url)
                .header(wire::AUTHORIZATION, &inner.authorization)
                .send()
                .await
                .map_err(|error| describe(&error))?;
            let status = response.status();
            if status != reqwest::StatusCode::OK {
                return Err(format!("its listener answered {status}"));
            }
            let served: Vec<crate::Served> =
                response.json().await.map_err(|error| describe(&error))?;
            if served.iter().any(|port| {
                port.context == inner.spec.context && port.version == inner.spec.version
            }) {
                Ok(())
            } else {
                Err(format!(
                    "it does not serve {} v{}",
                    inner.spec.context, inner.spec.version
                ))
            }
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {} ms", timeout.as_millis())))
    }
}

/// One HTTP client, and so one connection pool, per thread that makes calls.
///
/// A pooled connection is driven by a task on the runtime that opened it, and each HTTP
/// worker of the shop runs a runtime of its own. With one pool for the whole process, a call
/// made on one worker often goes out on a connection another worker opened: its request and
/// its answer each cross threads (two more wake-ups), and wait whenever that worker is busy.
/// With a pool per thread, a worker's calls use the connections it opened.
struct Clients {
    connect_timeout: Duration,
    by_thread: Mutex<HashMap<ThreadId, reqwest::Client>>,
}

impl Clients {
    fn new(connect_timeout: Duration) -> Self {
        Self {
            connect_timeout,
            by_thread: Mutex::new(HashMap::new()),
        }
    }

    /// This thread's client (cheap to clone: a handle on its pool).
    ///
    /// # Panics
    /// If the HTTP client cannot be built (no TLS backend is needed for `http://`, so only a
    /// broken environment does this).
    fn current(&self) -> reqwest::Client {
        let thread = std::thread::current().id();
        // A poisoned lock only means a thread panicked while holding it: the map is whole.
        let mut by_thread = self
            .by_thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        by_thread
            .entry(thread)
            .or_insert_with(|| {
                reqwest::Client::builder()
                    .connect_timeout(self.connect_timeout)
                    .pool_idle_timeout(Duration::from_secs(30))
                    .tcp_nodelay(true)
                    .build()
                    .expect("an HTTP client without TLS builds")
            })
            .clone()
    }
}

/// A transport error without the URL (which reqwest includes), kept short for logs.
fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_connect() {
        "connection refused or unreachable"
    } else if error.is_timeout() {
        "timed out"
    } else if error.is_body() || error.is_decode() {
        "the answer broke off"
    } else if error.is_request() {
        "the request failed"
    } else {
        "transport error"
    };
    let mut source = std::error::Error::source(error);
    let mut detail = String::new();
    while let Some(error) = source {
        detail = error.to_string();
        source = error.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind} ({detail})")
    }
}
