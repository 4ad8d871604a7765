//! Strangler fig: the public routes of a context follow it to the process it moved to.
//!
//! For each context with a `routing.<context>_url`, this process sends the requests of that
//! context's public scopes (`auth::PUBLIC_SCOPES`, ...) to the public listener of the process
//! at that URL: all of them when the context does not run here, `share` percent of them when
//! it still does (the rest are served here, by the linked context). An administrator changes
//! the share while the shop runs (`PUT /api/admin/routing/{context}`), so traffic moves to the
//! extracted service, and back, step by step and without a rebuild.
//!
//! A routed request keeps its request id (`X-Request-Id`) and its trace (`traceparent`, from
//! the current span); the target sees the client's address in `X-Forwarded-For`. A target
//! that does not answer gives 503 `unavailable`, one that answers too late 503
//! `deadline_exceeded`: the same error body as every other error.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderMap, HeaderName};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse, ResponseError, web};
use futures::StreamExt;
use kernel::{ContextError, ErrorKind};
use serde::{Deserialize, Serialize};
use url::Url;
use utoipa::ToSchema;
use web_kit::{AdminUser, ErrorBody, HttpError, RequestId, resource};

use crate::placement::{ALL, Placement};
use crate::settings::Settings;

/// Requests routed, by context, destination (`remote`, `local`) and outcome.
pub const ROUTED: &str = "shop_routed_requests_total";

/// The public scopes of each context.
fn scopes(context: &str) -> &'static [&'static str] {
    match context {
        "auth" => auth::PUBLIC_SCOPES,
        "catalog" => catalog::PUBLIC_SCOPES,
        "payments" => payments::PUBLIC_SCOPES,
        "orders" => orders::PUBLIC_SCOPES,
        "notifications" => notifications::PUBLIC_SCOPES,
        _ => &[],
    }
}

/// The routing table of this process, shared by every worker.
#[derive(Debug)]
pub struct Routing {
    targets: Vec<Target>,
    http: reqwest::Client,
    max_body_bytes: usize,
}

#[derive(Debug)]
struct Target {
    context: &'static str,
    url: Url,
    /// Percent of the context's requests sent to `url`; 100 where it does not run here.
    share: AtomicU8,
    /// Whether the context also runs in this process.
    linked: bool,
    /// Counts the context's requests, to spread the routed ones evenly (see `choose`).
    seen: AtomicU64,
}

impl Target {
    /// Sends exactly `share` of every 100 consecutive requests, interleaved: request `n` goes
    /// when `(n * 37) mod 100 < share` (37 is coprime with 100, so each hundred visits every
    /// residue once). Deterministic, so that tests and operators see the share they set.
    fn choose(&self) -> bool {
        let share = u64::from(self.share.load(Ordering::Relaxed));
        if share >= 100 {
            return true;
        }
        let n = self.seen.fetch_add(1, Ordering::Relaxed);
        (n % 100) * 37 % 100 < share
    }

    fn matches(&self, path: &str) -> bool {
        scopes(self.context).iter().any(|scope| {
            path.strip_prefix(scope)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    }

    fn view(&self) -> Route {
        Route {
            context: self.context.to_owned(),
            url: self.url.to_string(),
            share: self.share.load(Ordering::Relaxed),
            linked: self.linked,
        }
    }
}

impl Routing {
    pub fn new(settings: &Settings, placement: &Placement) -> anyhow::Result<Self> {
        let mut targets = Vec::new();
        for context in ALL {
            let (url, share) = settings.routing.target(context);
            if url.is_empty() {
                continue;
            }
            let url = Url::parse(url)?;
            let linked = placement.is_local(context);
            targets.push(Target {
                context,
                url,
                share: AtomicU8::new(if linked { share } else { 100 }),
                linked,
                seen: AtomicU64::new(0),
            });
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(settings.remote.connect_timeout_ms))
            .timeout(Duration::from_millis(settings.routing.timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            targets,
            http,
            max_body_bytes: settings.server.max_body_bytes,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// The routes, for the log at start and the admin endpoint.
    pub fn routes(&self) -> Vec<Route> {
        self.targets.iter().map(Target::view).collect()
    }

    /// The target this request goes to, if it is sent away.
    fn pick(&self, path: &str) -> Option<&Target> {
        let target = self.targets.iter().find(|target| target.matches(path))?;
        if target.choose() {
            Some(target)
        } else {
            metrics::counter!(ROUTED, "context" => target.context, "destination" => "local", "outcome" => "served")
                .increment(1);
            None
        }
    }

    /// Changes the share of a context's requests sent away.
    fn set_share(&self, context: &str, share: u8) -> Result<Route, RoutingError> {
        if !ALL.contains(&context) {
            return Err(RoutingError::ContextNotFound);
        }
        let target = self
            .targets
            .iter()
            .find(|target| target.context == context)
            .ok_or(RoutingError::NotRouted)?;
        if share > 100 {
            return Err(RoutingError::InvalidShare);
        }
        if !target.linked && share < 100 {
            return Err(RoutingError::ContextNotLinked);
        }
        let before = target.share.swap(share, Ordering::Relaxed);
        tracing::info!(context, before, share, url = %target.url, "routing share changed");
        Ok(target.view())
    }
}

/// The middleware: sends a routed request away, or lets it through to this process's routes.
pub async fn route(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(routing) = req.app_data::<web::Data<Routing>>().cloned() else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    match routing.pick(req.path()) {
        None => Ok(next.call(req).await?.map_into_boxed_body()),
        Some(target) => Ok(forward(req, &routing, target).await),
    }
}

/// Headers that belong to one connection, not to the request (RFC 9110, 7.6.1), and those
/// this hop sets itself.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    // This process compresses its own answers; the hop between processes stays plain.
    "accept-encoding",
    "traceparent",
    "tracestate",
    "x-request-id",
];

async fn forward(req: ServiceRequest, routing: &Routing, target: &Target) -> ServiceResponse {
    let (request, mut payload) = req.into_parts();
    let context = target.context;
    let outcome = async {
        let mut body = web::BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|_| Forwarded::BadBody)?;
            if body.len() + chunk.len() > routing.max_body_bytes {
                return Err(Forwarded::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        let mut url = target.url.clone();
        url.set_path(request.path());
        url.set_query(request.uri().query());
        let method = reqwest::Method::from_bytes(request.method().as_str().as_bytes())
            .map_err(|_| Forwarded::BadBody)?;
        let mut headers = reqwest::header::HeaderMap::new();
        copy_headers(request.headers(), &mut headers);
        if let Some(id) = request.extensions().get::<RequestId>()
            && let Ok(value) = reqwest::header::HeaderValue::from_str(&id.0)
        {
            headers.insert("x-request-id", value);
        }
        if let Some(peer) = request.peer_addr() {
            let forwarded_for = match request.headers().get("x-forwarded-for") {
                Some(earlier) => format!("{}, {}", earlier.to_str().unwrap_or(""), peer.ip()),
                None => peer.ip().to_string(),
            };
            if let Ok(value) = reqwest::header::HeaderValue::from_str(&forwarded_for) {
                headers.insert("x-forwarded-for", value);
            }
        }
        remote::propagation::outgoing(&mut headers);
        let response = routing
            .http
            .request(method, url)
            .headers(headers)
            .body(body.freeze())
            .send()
            .await
            .map_err(|error| {
                if error.is_timeout() {
                    Forwarded::TooLate
                } else {
                    Forwarded::Unreachable(error.to_string())
                }
            })?;
        let status = StatusCode::from_u16(response.status().as_u16())
            .map_err(|_| Forwarded::Unreachable("invalid status".into()))?;
        let mut answer = HttpResponse::build(status);
        for (name, value) in response.headers() {
            if HOP_BY_HOP.contains(&name.as_str()) && name.as_str() != "x-request-id" {
                continue;
            }
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_str().as_bytes()),
                header::HeaderValue::from_bytes(value.as_bytes()),
            ) {
                answer.append_header((name, value));
            }
        }
        let body = response.bytes().await.map_err(|error| {
            if error.is_timeout() {
                Forwarded::TooLate
            } else {
                Forwarded::Unreachable(error.to_string())
            }
        })?;
        Ok(answer.body(body))
    }
    .await;
    let (label, response) = match outcome {
        Ok(response) => ("answered", response),
        Err(failure) => {
            let label = failure.label();
            if let Forwarded::Unreachable(reason) = &failure {
                tracing::warn!(context, url = %target.url, %reason, "routed request found no target");
            } else if matches!(failure, Forwarded::TooLate) {
                tracing::warn!(context, url = %target.url, "routed request answered too late");
            }
            (label, failure.into_error().error_response())
        }
    };
    metrics::counter!(ROUTED, "context" => context, "destination" => "remote", "outcome" => label)
        .increment(1);
    ServiceResponse::new(request, response)
}

fn copy_headers(from: &HeaderMap, to: &mut reqwest::header::HeaderMap) {
    for (name, value) in from {
        if HOP_BY_HOP.contains(&name.as_str()) || name.as_str() == "x-forwarded-for" {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            reqwest::header::HeaderName::from_bytes(name.as_str().as_bytes()),
            reqwest::header::HeaderValue::from_bytes(value.as_bytes()),
        ) {
            to.append(name, value);
        }
    }
}

enum Forwarded {
    BadBody,
    TooLarge,
    TooLate,
    Unreachable(String),
}

impl Forwarded {
    fn label(&self) -> &'static str {
        match self {
            Self::BadBody => "bad_body",
            Self::TooLarge => "too_large",
            Self::TooLate => "too_late",
            Self::Unreachable(_) => "unreachable",
        }
    }

    fn into_error(self) -> HttpError {
        match self {
            Self::BadBody => HttpError::transport(
                StatusCode::BAD_REQUEST,
                "unreadable_body",
                "the request body could not be read",
            ),
            Self::TooLarge => HttpError::transport(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is too large",
            ),
            Self::TooLate => HttpError::transport(
                StatusCode::SERVICE_UNAVAILABLE,
                "deadline_exceeded",
                "the service this route is sent to did not answer in time",
            ),
            Self::Unreachable(_) => HttpError::transport(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the service this route is sent to does not answer",
            ),
        }
    }
}

/// One context whose public routes are sent to another process.
#[derive(Debug, Serialize, ToSchema)]
pub struct Route {
    #[schema(example = "payments")]
    context: String,
    /// The public listener they are sent to.
    url: String,
    /// Percent of the context's requests sent there.
    share: u8,
    /// Whether the context also runs in this process (and serves the rest).
    linked: bool,
}

/// The new share of a context's public requests sent to the process it moved to.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShareChange {
    /// 0 to 100. Below 100 only where the context also runs in this process.
    #[schema(minimum = 0, maximum = 100)]
    share: u8,
}

#[derive(Debug, thiserror::Error, Serialize, strum::IntoStaticStr)]
#[serde(tag = "code", rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
enum RoutingError {
    #[error("internal error")]
    Internal,
    #[error("no such context")]
    ContextNotFound,
    #[error("this context's routes are not sent anywhere: set routing.<context>_url")]
    NotRouted,
    #[error("share must be a percentage, 0 to 100")]
    InvalidShare,
    #[error("this context does not run in this process, so all of its routes are sent away")]
    ContextNotLinked,
}

impl ContextError for RoutingError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::ContextNotFound => ErrorKind::NotFound,
            Self::NotRouted | Self::ContextNotLinked => ErrorKind::Conflict,
            Self::InvalidShare => ErrorKind::Validation,
            Self::Internal => ErrorKind::Internal,
        }
    }

    fn code(&self) -> &'static str {
        self.into()
    }

    fn internal() -> Self {
        Self::Internal
    }

    /// Changing a share calls nothing.
    fn unavailable(_reason: String) -> Self {
        Self::Internal
    }
}

pub fn configure(routing: Arc<Routing>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::from(routing)).service(
            web::scope("/api/admin/routing")
                .service(resource("").get(list))
                .service(resource("/{context}").put(change)),
        );
    }
}

/// The contexts whose public routes this process sends to other processes (administrators).
#[utoipa::path(
    get, path = "/api/admin/routing", tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every routed context, with its target and share", body = [Route]),
        (status = 401, description = "`missing_token`, `invalid_token`, `token_expired`", body = ErrorBody),
        (status = 403, description = "`forbidden`", body = ErrorBody),
    )
)]
pub async fn list(_admin: AdminUser, routing: web::Data<Routing>) -> HttpResponse {
    HttpResponse::Ok().json(routing.routes())
}

/// Change the share of a context's public requests sent to the process it moved to
/// (administrators). Takes effect at once, for every worker; a restart goes back to
/// `routing.<context>_share`.
#[utoipa::path(
    put, path = "/api/admin/routing/{context}", tag = "admin",
    security(("bearer" = [])),
    params(("context" = String, Path, description = "auth, catalog, payments, orders or notifications")),
    request_body = ShareChange,
    responses(
        (status = 200, description = "The route, with its new share", body = Route),
        (status = 401, description = "`missing_token`, `invalid_token`, `token_expired`", body = ErrorBody),
        (status = 403, description = "`forbidden`", body = ErrorBody),
        (status = 404, description = "`context_not_found`", body = ErrorBody),
        (status = 409, description = "`not_routed`: the context has no `routing.<context>_url`; `context_not_linked`: it does not run here, so its share stays 100", body = ErrorBody),
        (status = 422, description = "`invalid_share`: above 100", body = ErrorBody),
    )
)]
pub async fn change(
    _admin: AdminUser,
    routing: web::Data<Routing>,
    context: web::Path<String>,
    change: web_kit::Json<ShareChange>,
) -> Result<HttpResponse, HttpError> {
    let route = routing.set_share(&context, change.into_inner().share)?;
    Ok(HttpResponse::Ok().json(route))
}
