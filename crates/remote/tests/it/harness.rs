//! A loopback internal listener and a scriptable port behind it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServerHandle, ServiceRequest, ServiceResponse};
use actix_web::middleware::{Next, from_fn};
use actix_web::{App, HttpResponse, HttpServer, web};
use async_trait::async_trait;
use auth_api::{AuthApi, AuthError, Principal, Role};
use kernel::UserId;
use tokio::sync::oneshot;
use url::Url;

pub const TOKEN: &str = "test-service-token-0123456789";

pub fn principal() -> Principal {
    Principal {
        user_id: UserId::from_uuid(uuid::Uuid::from_u128(42)),
        role: Role::Customer,
    }
}

/// A policy with short waits, so failing tests fail fast.
pub fn policy() -> remote::CallPolicy {
    remote::CallPolicy {
        deadline: Duration::from_secs(5),
        backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        ..remote::CallPolicy::default()
    }
}

pub fn client(
    server: &Served,
    caller: &'static str,
    policy: remote::CallPolicy,
) -> remote::auth::Client {
    remote::auth::Client::new(caller, server.endpoint(), policy)
}

/// What the fake saw of a call's context.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub trace_id: Option<String>,
    pub request_id: Option<String>,
}

/// An auth port that answers by token: `ok`, `refuse`, `slow` (waits a minute),
/// `deadline` (notes the deadline it was given), `trace` (notes the trace it is in).
#[derive(Debug, Default)]
pub struct FakeAuth {
    pub calls: AtomicUsize,
    pub deadline_left: Mutex<Option<Duration>>,
    pub seen: Mutex<Option<Seen>>,
    slow_ended: Mutex<Option<oneshot::Sender<bool>>>,
}

impl FakeAuth {
    /// Resolves when the next `slow` call ends, with whether it completed.
    pub fn watch_slow_call(&self) -> oneshot::Receiver<bool> {
        let (sender, receiver) = oneshot::channel();
        *self.slow_ended.lock().expect("lock") = Some(sender);
        receiver
    }
}

/// Reports, when dropped, whether the work it guards completed.
struct Ends {
    completed: bool,
    report: Option<oneshot::Sender<bool>>,
}

impl Drop for Ends {
    fn drop(&mut self) {
        if let Some(report) = self.report.take() {
            let _ = report.send(self.completed);
        }
    }
}

#[async_trait]
impl AuthApi for FakeAuth {
    async fn verify_token(&self, token: String) -> Result<Principal, AuthError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match token.as_str() {
            "ok" => Ok(principal()),
            "refuse" => Err(AuthError::InvalidToken),
            "slow" => {
                let mut ends = Ends {
                    completed: false,
                    report: self.slow_ended.lock().expect("lock").take(),
                };
                tokio::time::sleep(Duration::from_secs(60)).await;
                ends.completed = true;
                Ok(principal())
            }
            "deadline" => {
                let left = remote::current_deadline()
                    .map(|deadline| deadline.saturating_duration_since(std::time::Instant::now()));
                *self.deadline_left.lock().expect("lock") = left;
                Ok(principal())
            }
            "trace" => {
                *self.seen.lock().expect("lock") = Some(Seen {
                    trace_id: remote::propagation::current_trace_id(),
                    request_id: remote::propagation::current_request_id(),
                });
                Ok(principal())
            }
            _ => Err(AuthError::InvalidToken),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Serve {
    /// Answer this many requests with 503 before letting any through.
    pub fail_first: usize,
    pub max_deadline: Duration,
}

impl Default for Serve {
    fn default() -> Self {
        Self {
            fail_first: 0,
            max_deadline: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicUsize,
    fail_left: AtomicUsize,
}

/// A running internal listener on loopback; stopped when dropped.
#[derive(Debug)]
pub struct Served {
    pub url: Url,
    handle: ServerHandle,
    counters: Arc<Counters>,
}

impl Served {
    pub fn endpoint(&self) -> remote::Endpoint {
        remote::Endpoint {
            url: self.url.clone(),
            token: remote::ServiceToken::new(TOKEN.to_owned().into()),
        }
    }

    /// Requests that reached the listener (port calls or not).
    pub fn hits(&self) -> usize {
        self.counters.hits.load(Ordering::SeqCst)
    }

    /// Stops answering 503.
    pub fn recover(&self) {
        self.counters.fail_left.store(0, Ordering::SeqCst);
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

async fn flaky(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let counters = request
        .app_data::<web::Data<Counters>>()
        .expect("counters")
        .clone();
    counters.hits.fetch_add(1, Ordering::SeqCst);
    let fail = counters
        .fail_left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
            left.checked_sub(1)
        })
        .is_ok();
    if fail {
        return Ok(request.into_response(HttpResponse::ServiceUnavailable().finish()));
    }
    Ok(next.call(request).await?.map_into_boxed_body())
}

pub async fn serve(servers: Vec<remote::PortServer>, options: Serve) -> Served {
    let counters = web::Data::new(Counters {
        hits: AtomicUsize::new(0),
        fail_left: AtomicUsize::new(options.fail_first),
    });
    let shared = counters.clone().into_inner();
    let auth = remote::InternalAuth::new(&remote::ServiceToken::new(TOKEN.to_owned().into()));
    let routes = remote::internal_routes(servers, auth, options.max_deadline);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let address = listener.local_addr().expect("address");
    let server = HttpServer::new(move || {
        App::new()
            .app_data(counters.clone())
            .wrap(from_fn(flaky))
            .configure(routes.clone())
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .expect("listen")
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    Served {
        url: format!("http://{address}").parse().expect("url"),
        handle,
        counters: shared,
    }
}

/// The subscriber the `shop` binary installs, minus the log output: the OpenTelemetry layer
/// (so spans have trace ids) and the request-id layer.
pub fn install_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        use opentelemetry::trace::TracerProvider as _;
        use tracing_subscriber::layer::SubscriberExt;
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("remote-tests")))
            .with(remote::propagation::RequestIds);
        tracing::subscriber::set_global_default(subscriber).expect("first subscriber");
    });
}
