//! The `/api/auth` routes: auth's own public API. Handlers call auth's service; when auth is
//! extracted, these routes move with it (public traffic is routed to auth's process), so they
//! never travel through the port.
//!
//! Login and registration are rate-limited ([`Attempts`]): per client address, checked
//! before the body is read, and per account (the email, lower-cased), checked before any
//! password is hashed. Both count every attempt, whatever its outcome; one allowance covers
//! both routes. Past a limit the answer is `429 too_many_requests` with `Retry-After`. The
//! limits belong to this HTTP layer, not to auth's port: they are about who sends requests,
//! and `AuthApi` callers never log in.

use std::future::{Ready, ready};
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use auth_api::{AccessToken, Login, RegisterUser, User};
use utoipa::OpenApi;
use web_kit::{
    ClientAddress, CurrentUser, ErrorBody, HttpError, RateLimit, RateQuota, StoreRuntime, resource,
};

use crate::AuthService;
use crate::domain::Email;

/// How many login and registration attempts a client address and an account may make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptLimits {
    pub per_address: RateQuota,
    pub per_account: RateQuota,
}

/// The attempt counters, shared by every HTTP worker of the process.
#[derive(Debug)]
pub struct Attempts {
    per_address: RateLimit,
    per_account: RateLimit,
}

impl Attempts {
    pub fn new(limits: AttemptLimits) -> Self {
        Self {
            per_address: RateLimit::new(limits.per_address),
            per_account: RateLimit::new(limits.per_account),
        }
    }

    /// Counts a login from `req`'s client address and on `email`'s account, as
    /// `POST /api/auth/login` does: for the other forms that log in (the console's), so
    /// that no way in escapes the limits.
    pub fn check_login(&self, req: &HttpRequest, email: &str) -> Result<(), HttpError> {
        self.per_address.check(&ClientAddress::of(req))?;
        self.check_account(email)
    }

    /// Counts an attempt on the account named by `email`, normalised as auth stores it.
    fn check_account(&self, email: &str) -> Result<(), HttpError> {
        let account =
            Email::parse(email).map_or_else(|_| email.trim().to_lowercase(), Email::into_inner);
        self.per_account.check(&account)
    }
}

/// The path prefixes of this context's public routes: each is one `web::scope` below. A
/// process that sends the context's routes to another process (strangler fig) matches them.
pub const PUBLIC_SCOPES: &[&str] = &["/api/auth"];

/// Mounts auth's routes, the service they call and the attempt counters. (The composition
/// root also registers `AuthApi` app-wide, because every context's protected routes
/// authenticate through it.)
pub fn configure(
    service: Arc<AuthService>,
    attempts: Arc<Attempts>,
) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.service(
            web::scope(PUBLIC_SCOPES[0])
                .app_data(web::Data::from(service))
                .app_data(web::Data::from(attempts))
                .service(resource("/register").post(register))
                .service(resource("/login").post(login))
                .service(resource("/me").get(me)),
        );
    }
}

/// The caller's address is within its allowance of attempts. An extractor, so that it runs
/// before the body is read (extractors run in argument order).
struct AddressAllowed;

impl FromRequest for AddressAllowed {
    type Error = HttpError;
    type Future = Ready<Result<Self, HttpError>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let Some(attempts) = req.app_data::<web::Data<Attempts>>() else {
            tracing::error!("auth's attempt counters are not registered; refusing");
            return ready(Err(HttpError::internal()));
        };
        ready(
            attempts
                .per_address
                .check(&ClientAddress::of(req))
                .map(|()| AddressAllowed),
        )
    }
}

#[derive(Debug, OpenApi)]
#[openapi(
    paths(register, login, me),
    components(schemas(RegisterUser, Login, AccessToken, User)),
    tags((name = "auth", description = "Accounts and access tokens"))
)]
pub struct AuthDoc;

/// Create a customer account.
#[utoipa::path(
    post, path = "/api/auth/register", tag = "auth",
    request_body = RegisterUser,
    responses(
        (status = 201, description = "Account created", body = User),
        (status = 409, description = "`email_taken`", body = ErrorBody),
        (status = 422, description = "`validation_failed` with field errors, or `invalid_body`", body = ErrorBody),
        (status = 400, description = "`malformed_json`", body = ErrorBody),
        (status = 429, description = "`too_many_requests`: too many login and registration attempts from this address or for this email", body = ErrorBody),
        (status = 503, description = "`unavailable`: too many password checks in progress", body = ErrorBody),
    )
)]
async fn register(
    _address: AddressAllowed,
    auth: web::Data<AuthService>,
    attempts: web::Data<Attempts>,
    runtime: StoreRuntime,
    body: web_kit::Json<RegisterUser>,
) -> Result<HttpResponse, HttpError> {
    let body = body.into_inner();
    attempts.check_account(&body.email)?;
    let user = runtime
        .run(async move { auth.register(body).await })
        .await?;
    Ok(web_kit::created("/api/auth/me".to_owned(), &user))
}

/// Exchange email and password for a bearer token.
#[utoipa::path(
    post, path = "/api/auth/login", tag = "auth",
    request_body = Login,
    responses(
        (status = 200, description = "Token issued", body = AccessToken),
        (status = 401, description = "`invalid_credentials` (unknown email and wrong password alike)", body = ErrorBody),
        (status = 422, description = "`invalid_body`", body = ErrorBody),
        (status = 429, description = "`too_many_requests`: too many login and registration attempts from this address or for this email", body = ErrorBody),
        (status = 503, description = "`unavailable`: too many password checks in progress", body = ErrorBody),
    )
)]
async fn login(
    _address: AddressAllowed,
    auth: web::Data<AuthService>,
    attempts: web::Data<Attempts>,
    runtime: StoreRuntime,
    body: web_kit::Json<Login>,
) -> Result<HttpResponse, HttpError> {
    let body = body.into_inner();
    attempts.check_account(&body.email)?;
    let token = runtime.run(async move { auth.login(body).await }).await?;
    Ok(HttpResponse::Ok().json(token))
}

/// The calling user.
#[utoipa::path(
    get, path = "/api/auth/me", tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = User),
        (status = 401, description = "`missing_token`, `invalid_token` or `token_expired`", body = ErrorBody),
    )
)]
async fn me(
    auth: web::Data<AuthService>,
    runtime: StoreRuntime,
    CurrentUser(caller): CurrentUser,
) -> Result<HttpResponse, HttpError> {
    let user = runtime
        .run(async move { auth.get_user(caller.user_id).await })
        .await?;
    Ok(HttpResponse::Ok().json(user))
}
