//! The `/api/auth` routes. Handlers depend on the `AuthApi` port, not on `AuthService`, so
//! the same routes serve an extracted auth service unchanged.

use std::sync::Arc;

use actix_web::{HttpResponse, web};
use auth_api::{AccessToken, AuthApi, Login, RegisterUser, User};
use utoipa::OpenApi;
use web_kit::{CurrentUser, ErrorBody, HttpError, resource};

/// Mounts auth's routes and the `AuthApi` they call. (The composition root also registers
/// `AuthApi` app-wide, because every context's protected routes authenticate through it.)
pub fn configure(api: Arc<dyn AuthApi>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.service(
            web::scope("/api/auth")
                .app_data(web::Data::from(api))
                .service(resource("/register").route(web::post().to(register)))
                .service(resource("/login").route(web::post().to(login)))
                .service(resource("/me").route(web::get().to(me))),
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
    auth: web::Data<dyn AuthApi>,
    body: web::Json<RegisterUser>,
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
    auth: web::Data<dyn AuthApi>,
    body: web::Json<Login>,
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
    auth: web::Data<dyn AuthApi>,
    CurrentUser(principal): CurrentUser,
) -> Result<HttpResponse, HttpError> {
    let user = auth.get_user(principal.user_id).await?;
    Ok(HttpResponse::Ok().json(user))
}
