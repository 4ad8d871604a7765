//! The `/api/auth` routes: auth's own public API. Handlers call auth's service; when auth is
//! extracted, these routes move with it (public traffic is routed to auth's process), so they
//! never travel through the port.

use std::sync::Arc;

use actix_web::{HttpResponse, web};
use auth_api::{AccessToken, Login, RegisterUser, User};
use utoipa::OpenApi;
use web_kit::{CurrentUser, ErrorBody, HttpError, resource};

use crate::AuthService;

/// Mounts auth's routes and the service they call. (The composition root also registers
/// `AuthApi` app-wide, because every context's protected routes authenticate through it.)
pub fn configure(service: Arc<AuthService>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.service(
            web::scope("/api/auth")
                .app_data(web::Data::from(service))
                .service(resource("/register").post(register))
                .service(resource("/login").post(login))
                .service(resource("/me").get(me)),
        );
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
    )
)]
async fn register(
    auth: web::Data<AuthService>,
    body: web_kit::Json<RegisterUser>,
) -> Result<HttpResponse, HttpError> {
    let user = auth.register(body.into_inner()).await?;
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
    )
)]
async fn login(
    auth: web::Data<AuthService>,
    body: web_kit::Json<Login>,
) -> Result<HttpResponse, HttpError> {
    let token = auth.login(body.into_inner()).await?;
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
    CurrentUser(caller): CurrentUser,
) -> Result<HttpResponse, HttpError> {
    let user = auth.get_user(caller.user_id).await?;
    Ok(HttpResponse::Ok().json(user))
}
