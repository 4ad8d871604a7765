//! `/console`: the boundaries at work, for administrators, served by the shop itself.
//!
//! - the context map from `arch.toml`, where each context runs, each edge's calls per
//!   second, error share and p99, each event's flow from publisher to consumers ([`live`]);
//! - parked events and parked orders, with retry and discard (discard asks first);
//! - a page per context, from its canvas ([`canvas`]: the same source as
//!   `docs/contexts/<context>.md`).
//!
//! Server-rendered ([`pages`]), no front-end build, assets compiled in, nothing fetched from
//! elsewhere. Every page works without JavaScript; a small script refreshes them.
//!
//! The session is the administrator's access token, issued by auth's login and kept in an
//! `HttpOnly`, `SameSite=Strict` cookie scoped to `/console`; every page verifies it through
//! `AuthApi::verify_token`, as every protected API route does. Forms only post to the same
//! origin (a cross-site `Origin` or `Sec-Fetch-Site` is refused), and logins count against
//! auth's attempt limits like `POST /api/auth/login`. The actions run the operations the
//! admin endpoints run (`Bus::retry`, `Bus::discard`, `OrdersService::retry_parked`).

pub mod canvas;
pub mod live;
mod pages;

use std::sync::Arc;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::Payload;
use actix_web::http::{StatusCode, header};
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError, web};
use auth_api::{AuthApi, Login, Password, Role};
use kernel::{ContextError, ErrorKind, OrderId, PageRequest};
use messaging::Bus;
use metrics_exporter_prometheus::PrometheusHandle;
use sea_orm::DatabaseConnection;
use serde::Deserialize;
use web_kit::{StoreRuntime, resource};

use crate::placement::{ALL, Placement};
use canvas::Map;
use pages::Placed;

/// The session cookie: the administrator's access token.
const COOKIE: &str = "shop_console";

/// What the console reads and acts on: built once, shared by every worker.
pub struct Console {
    map: Map,
    placed: Vec<Placed>,
    bus: Arc<Bus>,
    orders: Option<Arc<orders::OrdersService>>,
    orders_elsewhere: Option<String>,
    accounts: Option<Arc<auth::AuthService>>,
    attempts: Arc<auth::Attempts>,
    stores: Vec<(&'static str, DatabaseConnection)>,
    metrics: PrometheusHandle,
    history: live::History,
    refresh_ms: u64,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("placed", &self.placed)
            .finish_non_exhaustive()
    }
}

/// What the console needs from the composition root.
pub struct Parts {
    pub placement: Placement,
    pub bus: Arc<Bus>,
    pub orders: Option<Arc<orders::OrdersService>>,
    pub accounts: Option<Arc<auth::AuthService>>,
    pub attempts: Arc<auth::Attempts>,
    pub stores: Vec<(&'static str, DatabaseConnection)>,
    pub metrics: PrometheusHandle,
    pub refresh_ms: u64,
    /// Contexts whose public routes this process sends elsewhere (`routing.<context>_url`),
    /// to name where a context runs when no port of it is called from here.
    pub routes: Vec<(&'static str, String)>,
}

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parts")
            .field("placement", &self.placement)
            .finish_non_exhaustive()
    }
}

impl Console {
    pub fn new(parts: Parts) -> Self {
        let placed = ALL
            .iter()
            .map(|context| Placed {
                context: (*context).to_owned(),
                remote: if parts.placement.is_local(context) {
                    None
                } else if let Some(url) = parts.placement.url(context) {
                    Some(format!("{url} (internal)"))
                } else if let Some((_, url)) =
                    parts.routes.iter().find(|(routed, _)| routed == context)
                {
                    Some(format!("{url} (public)"))
                } else {
                    Some("another process".to_owned())
                },
            })
            .collect::<Vec<_>>();
        let orders_elsewhere = placed
            .iter()
            .find(|placed| placed.context == orders::CONTEXT)
            .and_then(|placed| placed.remote.clone())
            .map(|url| {
                format!("orders runs in another process ({url}); its parked orders are on that process's console.")
            });
        Self {
            map: Map::load(),
            placed,
            bus: parts.bus,
            orders: parts.orders,
            orders_elsewhere,
            accounts: parts.accounts,
            attempts: parts.attempts,
            stores: parts.stores,
            metrics: parts.metrics,
            history: live::History::default(),
            refresh_ms: parts.refresh_ms,
        }
    }
}

pub fn configure(console: Arc<Console>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.service(
            web::scope("/console")
                .app_data(web::Data::from(console))
                .service(resource("").get(overview))
                .service(resource("/login").get(login_page).post(login))
                .service(resource("/logout").post(logout))
                .service(resource("/contexts/{name}").get(context))
                .service(resource("/events/{id}/retry").post(retry_event))
                .service(
                    resource("/events/{id}/discard")
                        .get(confirm_discard)
                        .post(discard_event),
                )
                .service(resource("/orders/{id}/retry").post(retry_order))
                .service(resource("/assets/console.css").get(css))
                .service(resource("/assets/console.js").get(js)),
        );
    }
}

/// Why a console request was not served.
#[derive(Debug, thiserror::Error)]
enum Refused {
    /// No session, or one that ended: to the login page.
    #[error("log in")]
    Login,
    #[error("administrators only")]
    NotAdmin,
    /// A form posted from another site.
    #[error("cross-site request")]
    CrossSite,
    #[error("not found")]
    NotFound,
    #[error("unavailable")]
    Unavailable,
}

impl ResponseError for Refused {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Login => StatusCode::SEE_OTHER,
            Self::NotAdmin | Self::CrossSite => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((header::CACHE_CONTROL, "no-store"));
        match self {
            Self::Login => response
                .insert_header((header::LOCATION, "/console/login"))
                .cookie(ended())
                .finish(),
            Self::NotAdmin => response.body(
                pages::problem(
                    "Administrators only",
                    "The console shows every customer's orders and events: log in with an administrator's account.",
                )
                .into_string(),
            ),
            Self::CrossSite => response.body(
                pages::problem("Refused", "The console takes forms from its own pages only.")
                    .into_string(),
            ),
            Self::NotFound => response.body(
                pages::problem("Not found", "There is no such page in the console.")
                    .into_string(),
            ),
            Self::Unavailable => response.body(
                pages::problem(
                    "Unavailable",
                    "A context the console needs did not answer; try again in a moment.",
                )
                .into_string(),
            ),
        }
    }
}

/// A cookie that ends the session.
fn ended() -> Cookie<'static> {
    let mut cookie = session_cookie(String::new());
    cookie.make_removal();
    cookie
}

fn session_cookie(token: String) -> Cookie<'static> {
    Cookie::build(COOKIE, token)
        .path("/console")
        .http_only(true)
        .same_site(SameSite::Strict)
        .finish()
}

/// An administrator with a console session.
struct Admin;

impl FromRequest for Admin {
    type Error = Refused;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self, Refused>>>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let auth = req.app_data::<web::Data<dyn AuthApi>>().cloned();
        let token = req.cookie(COOKIE).map(|cookie| cookie.value().to_owned());
        Box::pin(async move {
            let (Some(auth), Some(token)) = (auth, token) else {
                return Err(Refused::Login);
            };
            match auth.verify_token(token).await {
                Ok(principal) if principal.role == Role::Admin => Ok(Admin),
                Ok(_) => Err(Refused::NotAdmin),
                Err(error) if error.kind() == ErrorKind::Unavailable => Err(Refused::Unavailable),
                Err(_) => Err(Refused::Login),
            }
        })
    }
}

/// A form posted from the console's own pages: the browser says so (`Sec-Fetch-Site`), or
/// its `Origin` is this host. (The session cookie is `SameSite=Strict` as well.)
struct SameOrigin;

impl FromRequest for SameOrigin {
    type Error = Refused;
    type Future = std::future::Ready<Result<Self, Refused>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let headers = req.headers();
        let site = headers
            .get("sec-fetch-site")
            .and_then(|value| value.to_str().ok());
        let cross_site = matches!(site, Some("cross-site" | "same-site"));
        let foreign_origin = headers
            .get(header::ORIGIN)
            .and_then(|value| value.to_str().ok())
            .filter(|origin| *origin != "null")
            .is_some_and(|origin| {
                let host = origin.split_once("://").map_or(origin, |(_, host)| host);
                Some(host)
                    != headers
                        .get(header::HOST)
                        .and_then(|value| value.to_str().ok())
            });
        std::future::ready(if cross_site || foreign_origin {
            Err(Refused::CrossSite)
        } else {
            Ok(Self)
        })
    }
}

fn html(status: StatusCode, markup: maud::Markup) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(markup.into_string())
}

fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish()
}

/// What the last action did, named in the redirect after it (`?notice=`): a fixed set, so
/// a link can never make the console say something else.
fn notice(code: &str) -> Option<&'static str> {
    Some(match code {
        "event-retried" => "The event was put back in line; it is delivered or handled again now.",
        "event-discarded" => "The event was discarded.",
        "event-gone" => {
            "That event is no longer parked (another operator, or a retry, got there first)."
        }
        "order-retried" => "The order's checkout ran again.",
        "order-gone" => "That order is no longer parked.",
        "failed" => "The action failed; see the log.",
        _ => return None,
    })
}

#[derive(Deserialize)]
struct NoticeQuery {
    notice: Option<String>,
}

async fn overview(
    _admin: Admin,
    console: web::Data<Console>,
    runtime: StoreRuntime,
    query: web::Query<NoticeQuery>,
) -> HttpResponse {
    let window = console
        .history
        .observe(live::Sample::parse(&console.metrics.render()));
    // A read that died (logged by the runtime) shows as the reads that failed would.
    let (parked_events, parked_orders, unfinished_orders) = runtime
        .run_any(read_overview(console.clone()))
        .await
        .unwrap_or_else(|_| {
            let unread = "The parked orders could not be read; see the log.".to_owned();
            (None, Err(unread), None)
        });
    let markup = pages::overview(&pages::Overview {
        map: &console.map,
        placed: &console.placed,
        window: &window,
        parked_events: parked_events.as_deref(),
        parked_orders: parked_orders.as_deref().map_err(Clone::clone),
        unfinished_orders,
        notice: query.notice.as_deref().and_then(notice),
        refresh_ms: console.refresh_ms,
    });
    html(StatusCode::OK, markup)
}

/// What the overview reads from the stores: the parked events, the parked orders (or why
/// they cannot be shown) and the count of unfinished orders.
async fn read_overview(
    console: web::Data<Console>,
) -> (
    Option<Vec<messaging::FailedEvent>>,
    Result<Vec<orders_api::ParkedOrder>, String>,
    Option<u64>,
) {
    let parked_events = match console.bus.failed().await {
        Ok(events) => Some(events),
        Err(error) => {
            tracing::warn!(error = %error, "the console could not list parked events");
            None
        }
    };
    let parked_orders = match (&console.orders, &console.orders_elsewhere) {
        (Some(orders), _) => {
            let first = PageRequest::new(None, Some(PageRequest::MAX_PER_PAGE))
                .expect("the first page of the largest size is valid");
            orders
                .parked_orders(first)
                .await
                .map(|page| page.items)
                .map_err(|error| {
                    tracing::warn!(error = %error, "the console could not list parked orders");
                    "The parked orders could not be read; see the log.".to_owned()
                })
        }
        (None, elsewhere) => Err(elsewhere.clone().unwrap_or_default()),
    };
    let unfinished_orders = match &console.orders {
        Some(orders) => orders
            .unfinished_count()
            .await
            .map_err(|error| {
                tracing::warn!(error = %error, "the console could not count unfinished orders");
            })
            .ok(),
        None => None,
    };
    (parked_events, parked_orders, unfinished_orders)
}

async fn context(
    _admin: Admin,
    console: web::Data<Console>,
    runtime: StoreRuntime,
    name: web::Path<String>,
) -> Result<HttpResponse, Refused> {
    let canvas = console.map.context(&name).ok_or(Refused::NotFound)?;
    let window = console
        .history
        .observe(live::Sample::parse(&console.metrics.render()));
    let tables = match console
        .stores
        .iter()
        .find(|(context, _)| *context == canvas.name)
    {
        Some((_, db)) => {
            let db = db.clone();
            let listed = runtime
                .run_any(async move { canvas::tables(&db).await })
                .await
                .map_err(|_| Refused::Unavailable)?;
            listed.map_err(|error| {
                tracing::warn!(error = %error, context = %canvas.name, "the console could not list tables");
                "The tables could not be listed; see the log.".to_owned()
            })
        }
        None => Err(format!(
            "{} runs in another process: its store is that process's.",
            canvas.name
        )),
    };
    Ok(html(
        StatusCode::OK,
        pages::context(
            canvas,
            &console.placed,
            tables.as_deref().map_err(Clone::clone),
            &window,
            console.refresh_ms,
        ),
    ))
}

async fn login_page() -> HttpResponse {
    html(StatusCode::OK, pages::login(None))
}

#[derive(Deserialize)]
struct LoginForm {
    email: String,
    password: String,
}

async fn login(
    _same_origin: SameOrigin,
    req: HttpRequest,
    console: web::Data<Console>,
    auth: web::Data<dyn AuthApi>,
    runtime: StoreRuntime,
    form: web::Form<LoginForm>,
) -> HttpResponse {
    let LoginForm { email, password } = form.into_inner();
    let Some(accounts) = &console.accounts else {
        return html(
            StatusCode::SERVICE_UNAVAILABLE,
            pages::login(Some(
                "auth runs in another process: log in to the console of a process that runs auth.",
            )),
        );
    };
    if console.attempts.check_login(&req, &email).is_err() {
        return html(
            StatusCode::TOO_MANY_REQUESTS,
            pages::login(Some("Too many attempts; wait a minute and try again.")),
        );
    }
    let accounts = accounts.clone();
    let login = Login {
        email,
        password: Password::new(password),
    };
    let token = match runtime
        .run_any(async move { accounts.login(login).await })
        .await
    {
        Ok(Ok(token)) => token.access_token,
        Ok(Err(error)) if error.kind() == ErrorKind::Unavailable => {
            return html(
                StatusCode::SERVICE_UNAVAILABLE,
                pages::login(Some("The shop is busy checking passwords; try again.")),
            );
        }
        Ok(Err(_)) => {
            return html(
                StatusCode::UNAUTHORIZED,
                pages::login(Some("Wrong email or password.")),
            );
        }
        Err(_) => {
            return html(
                StatusCode::INTERNAL_SERVER_ERROR,
                pages::login(Some("The password could not be checked; see the log.")),
            );
        }
    };
    match auth.verify_token(token.clone()).await {
        Ok(principal) if principal.role == Role::Admin => HttpResponse::SeeOther()
            .insert_header((header::LOCATION, "/console"))
            .cookie(session_cookie(token))
            .finish(),
        Ok(_) => html(
            StatusCode::FORBIDDEN,
            pages::login(Some(
                "This account is not an administrator's: the console is for administrators.",
            )),
        ),
        Err(error) => {
            tracing::warn!(error = %error, "a token auth just issued did not verify");
            html(
                StatusCode::SERVICE_UNAVAILABLE,
                pages::login(Some("The login could not be completed; try again.")),
            )
        }
    }
}

async fn logout(_same_origin: SameOrigin) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/console/login"))
        .cookie(ended())
        .finish()
}

async fn retry_event(
    _same_origin: SameOrigin,
    _admin: Admin,
    console: web::Data<Console>,
    runtime: StoreRuntime,
    id: web::Path<uuid::Uuid>,
) -> HttpResponse {
    let (bus, id) = (console.bus.clone(), id.into_inner());
    let notice = match runtime.run_any(async move { bus.retry(id).await }).await {
        Ok(Ok(true)) => "event-retried",
        Ok(Ok(false)) => "event-gone",
        Ok(Err(error)) => {
            tracing::error!(error = %error, event = %id, "retrying a parked event from the console failed");
            "failed"
        }
        Err(_) => "failed",
    };
    tracing::info!(event = %id, notice, "console: retry event");
    see_other(&format!("/console?notice={notice}#parked-events"))
}

async fn confirm_discard(
    _admin: Admin,
    console: web::Data<Console>,
    runtime: StoreRuntime,
    id: web::Path<uuid::Uuid>,
) -> Result<HttpResponse, Refused> {
    let bus = console.bus.clone();
    let events = runtime
        .run_any(async move { bus.failed().await })
        .await
        .map_err(|_| Refused::Unavailable)?
        .map_err(|error| {
            tracing::warn!(error = %error, "the console could not list parked events");
            Refused::Unavailable
        })?;
    Ok(match events.iter().find(|event| event.id == *id) {
        Some(event) => html(
            StatusCode::OK,
            pages::confirm_discard(event, &console.placed),
        ),
        None => see_other("/console?notice=event-gone#parked-events"),
    })
}

async fn discard_event(
    _same_origin: SameOrigin,
    _admin: Admin,
    console: web::Data<Console>,
    runtime: StoreRuntime,
    id: web::Path<uuid::Uuid>,
) -> HttpResponse {
    let (bus, id) = (console.bus.clone(), id.into_inner());
    let notice = match runtime.run_any(async move { bus.discard(id).await }).await {
        Ok(Ok(true)) => "event-discarded",
        Ok(Ok(false)) => "event-gone",
        Ok(Err(error)) => {
            tracing::error!(error = %error, event = %id, "discarding a parked event from the console failed");
            "failed"
        }
        Err(_) => "failed",
    };
    tracing::info!(event = %id, notice, "console: discard event");
    see_other(&format!("/console?notice={notice}#parked-events"))
}

async fn retry_order(
    _same_origin: SameOrigin,
    _admin: Admin,
    console: web::Data<Console>,
    runtime: StoreRuntime,
    id: web::Path<OrderId>,
) -> Result<HttpResponse, Refused> {
    let orders = console.orders.clone().ok_or(Refused::NotFound)?;
    let id = id.into_inner();
    let retried = runtime
        .run_any(async move { orders.retry_parked(id).await })
        .await;
    let notice = match retried {
        Ok(Ok(_)) => "order-retried",
        Ok(Err(error))
            if error.kind() == ErrorKind::NotFound || error.kind() == ErrorKind::Conflict =>
        {
            "order-gone"
        }
        Ok(Err(error)) => {
            tracing::error!(error = %error, order = %id, "retrying a parked order from the console failed");
            "failed"
        }
        Err(_) => "failed",
    };
    Ok(see_other(&format!(
        "/console?notice={notice}#parked-orders"
    )))
}

async fn css() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "max-age=300"))
        .body(pages::CSS)
}

async fn js() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "max-age=300"))
        .body(pages::JS)
}
