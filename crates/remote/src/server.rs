//! The serving side: the internal routes that answer a port's calls.
//!
//! They are mounted on the internal listener only (never on the public port) and each call
//! must carry the service credential. A call runs under the deadline its caller sent: when
//! it passes, the work is dropped (the caller has given up and will not read the answer) and
//! the call answers 504.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use futures::future::BoxFuture;
use kernel::{ContextError, PortSpec};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tracing::Instrument;
use web_kit::{HttpError, StoreRuntime};

use crate::{propagation, wire};

tokio::task_local! {
    /// When the caller of the call being served stops waiting.
    static DEADLINE: Instant;
}

/// The deadline of the internal call this task is serving, if any: a call it makes in turn
/// to another context must end before it.
pub fn current_deadline() -> Option<Instant> {
    DEADLINE.try_with(|deadline| *deadline).ok()
}

type Handler = Arc<dyn Fn(Bytes) -> BoxFuture<'static, Result<Vec<u8>, Refused>> + Send + Sync>;

/// Why a call never reached the port's implementation.
#[derive(Debug)]
enum Refused {
    /// The arguments are not this version's (a caller of another version, or a bug).
    Arguments(String),
    /// The answer could not be written as JSON (a bug).
    Answer(String),
}

/// One port, served: its spec and one handler per method.
#[derive(Clone)]
pub struct PortServer {
    spec: &'static PortSpec,
    handlers: HashMap<&'static str, Handler>,
}

impl std::fmt::Debug for PortServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut methods: Vec<_> = self.handlers.keys().collect();
        methods.sort();
        f.debug_struct("PortServer")
            .field("context", &self.spec.context)
            .field("version", &self.spec.version)
            .field("methods", &methods)
            .finish()
    }
}

impl PortServer {
    pub fn new(spec: &'static PortSpec) -> Self {
        Self {
            spec,
            handlers: HashMap::new(),
        }
    }

    pub fn spec(&self) -> &'static PortSpec {
        self.spec
    }

    /// Serves `name` by decoding its arguments as `A` and calling `call`.
    ///
    /// # Panics
    /// If the port's spec has no such method: the generated server and the spec disagree,
    /// which the architecture lint and the build rule out.
    pub fn method<A, T, E, F, Fut>(mut self, name: &'static str, call: F) -> Self
    where
        A: DeserializeOwned + Send + 'static,
        T: Serialize + Send + 'static,
        E: ContextError,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        assert!(
            self.spec.method(name).is_some(),
            "{} has no method {name} in its PortSpec",
            self.spec.trait_name
        );
        let call = Arc::new(call);
        let handler: Handler = Arc::new(move |body: Bytes| {
            let call = call.clone();
            Box::pin(async move {
                let args: A = serde_json::from_slice(&body)
                    .map_err(|error| Refused::Arguments(error.to_string()))?;
                let reply = wire::Reply::from(call(args).await);
                serde_json::to_vec(&reply).map_err(|error| Refused::Answer(error.to_string()))
            })
        });
        self.handlers.insert(name, handler);
        self
    }
}

/// The service credential every internal call carries, as `Authorization: Bearer <token>`.
/// Never printed: its `Debug` says `[REDACTED]`.
#[derive(Debug, Clone)]
pub struct ServiceToken(SecretString);

impl ServiceToken {
    pub fn new(token: SecretString) -> Self {
        Self(token)
    }

    pub(crate) fn header_value(&self) -> String {
        format!("Bearer {}", self.0.expose_secret())
    }
}

/// Checks the service credential of an internal call, in constant time.
#[derive(Clone)]
pub struct InternalAuth {
    /// SHA-256 of the expected header value. Comparing digests keeps the comparison's time
    /// independent of both the value and the length of what the caller sent.
    expected: [u8; 32],
}

impl std::fmt::Debug for InternalAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InternalAuth([REDACTED])")
    }
}

impl InternalAuth {
    pub fn new(token: &ServiceToken) -> Self {
        Self {
            expected: digest(token.header_value().as_bytes()),
        }
    }

    /// Whether `authorization` is exactly `Bearer <the service token>`.
    pub fn accepts(&self, authorization: Option<&[u8]>) -> bool {
        let Some(sent) = authorization else {
            return false;
        };
        bool::from(digest(sent).ct_eq(&self.expected))
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Every port this process serves, and how it serves them.
#[derive(Debug, Clone)]
struct Ports {
    servers: HashMap<&'static str, PortServer>,
    auth: InternalAuth,
    /// The deadline of a call that names none, and the longest a caller may ask for.
    max_deadline: Duration,
}

/// The internal routes for `servers`: `POST /internal/{context}/v{version}/{method}` and
/// `GET /internal/ports` (which ports this process serves, for the callers' readiness).
/// Mount them on the internal listener only.
pub fn configure(
    servers: Vec<PortServer>,
    auth: InternalAuth,
    max_deadline: Duration,
) -> impl FnOnce(&mut web::ServiceConfig) + Clone {
    let ports = Ports {
        servers: servers
            .into_iter()
            .map(|server| (server.spec.context, server))
            .collect(),
        auth,
        max_deadline,
    };
    move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(web::Data::new(ports))
            .route(wire::PORTS_PATH, web::get().to(list_ports))
            .route(
                "/internal/{context}/v{version}/{method}",
                web::post().to(dispatch),
            );
    }
}

/// One port this process serves, as `GET /internal/ports` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Served {
    pub context: String,
    pub version: u32,
}

fn authenticate(request: &HttpRequest, ports: &Ports) -> Result<(), HttpError> {
    let sent = request
        .headers()
        .get(wire::AUTHORIZATION)
        .map(|value| value.as_bytes());
    if ports.auth.accepts(sent) {
        Ok(())
    } else {
        Err(HttpError::transport(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "internal routes need the service credential",
        ))
    }
}

async fn list_ports(
    request: HttpRequest,
    ports: web::Data<Ports>,
) -> Result<HttpResponse, HttpError> {
    authenticate(&request, &ports)?;
    let mut served: Vec<Served> = ports
        .servers
        .values()
        .map(|server| Served {
            context: server.spec.context.to_owned(),
            version: server.spec.version,
        })
        .collect();
    served.sort_by(|a, b| a.context.cmp(&b.context));
    Ok(HttpResponse::Ok().json(served))
}

async fn dispatch(
    request: HttpRequest,
    path: web::Path<(String, String, String)>,
    body: Bytes,
    ports: web::Data<Ports>,
) -> Result<HttpResponse, HttpError> {
    authenticate(&request, &ports)?;
    let (context, version, method) = path.into_inner();
    let Some(server) = ports.servers.get(context.as_str()) else {
        return Err(not_found(
            "unknown_port",
            format!("this process does not serve the {context} port"),
        ));
    };
    if version.parse::<u32>().ok() != Some(server.spec.version) {
        return Err(not_found(
            "unknown_version",
            format!(
                "this process serves version {} of the {context} port",
                server.spec.version
            ),
        ));
    }
    let Some((method, handler)) = server.handlers.get_key_value(method.as_str()) else {
        return Err(not_found(
            "unknown_method",
            format!("the {context} port has no method {method}"),
        ));
    };

    let limit = requested_deadline(&request)
        .map_or(ports.max_deadline, |asked| asked.min(ports.max_deadline));
    let caller = request
        .headers()
        .get(wire::CALLER)
        .and_then(|value| value.to_str().ok())
        .filter(|caller| wire::is_label(caller))
        .unwrap_or("unknown");
    let request_id = request
        .headers()
        .get(wire::REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|id| wire::is_label(id))
        .unwrap_or("");
    let span = tracing::info_span!(
        "boundary_serve",
        caller,
        callee = server.spec.context,
        method = *method,
        request_id,
        outcome = tracing::field::Empty,
    );
    propagation::continue_trace(&span, request.headers());

    let deadline = Instant::now() + limit;
    let call = DEADLINE.scope(deadline, handler(body));
    // On the store runtime, as the public routes' service calls (web_kit::runtime).
    let called = tokio::time::timeout(limit, call).instrument(span.clone());
    match StoreRuntime::of(&request).run_any(called).await? {
        Ok(Ok(answer)) => {
            span.record("outcome", "answered");
            Ok(HttpResponse::Ok()
                .content_type("application/json")
                .body(answer))
        }
        Ok(Err(Refused::Arguments(reason))) => {
            span.record("outcome", "invalid_arguments");
            tracing::warn!(parent: &span, %reason, "internal call with arguments of another version");
            Err(HttpError::transport(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_arguments",
                format!("the arguments of {context}.{method} v{version} do not decode: {reason}"),
            ))
        }
        Ok(Err(Refused::Answer(reason))) => {
            span.record("outcome", "internal");
            tracing::error!(parent: &span, %reason, "the answer of an internal call does not encode");
            Err(HttpError::internal())
        }
        Err(_elapsed) => {
            span.record("outcome", "deadline_exceeded");
            tracing::warn!(
                parent: &span,
                deadline_ms = limit.as_millis() as u64,
                "stopped an internal call: its caller's deadline passed"
            );
            Err(HttpError::transport(
                StatusCode::GATEWAY_TIMEOUT,
                "deadline_exceeded",
                format!("no answer within the caller's {} ms", limit.as_millis()),
            ))
        }
    }
}

fn requested_deadline(request: &HttpRequest) -> Option<Duration> {
    request
        .headers()
        .get(wire::DEADLINE_MS)?
        .to_str()
        .ok()?
        .parse::<u64>()
        .ok()
        .map(Duration::from_millis)
}

fn not_found(code: &str, message: String) -> HttpError {
    HttpError::transport(StatusCode::NOT_FOUND, code, message)
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;

    #[test]
    fn only_the_exact_credential_is_accepted() {
        let token = ServiceToken::new(SecretString::from("s3cret-internal-token"));
        let auth = InternalAuth::new(&token);
        assert!(auth.accepts(Some(b"Bearer s3cret-internal-token")));
        assert!(!auth.accepts(Some(b"Bearer s3cret-internal-toke")));
        assert!(!auth.accepts(Some(b"Bearer s3cret-internal-token ")));
        assert!(!auth.accepts(Some(b"bearer s3cret-internal-token")));
        assert!(!auth.accepts(Some(b"")));
        assert!(!auth.accepts(None));
        assert_eq!(format!("{auth:?}"), "InternalAuth([REDACTED])");
        assert!(!format!("{token:?}").contains("s3cret"));
    }
}
