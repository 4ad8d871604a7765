//! Extractors that authenticate the caller through `AuthApi::verify_token`.
//!
//! Every protected route of every context takes a [`CurrentUser`] or an [`AdminUser`]
//! argument, so authentication cannot be forgotten in a handler body and always goes through
//! the auth context's public interface (in process today, over the network once extracted).

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use auth_api::{AuthApi, AuthError, Principal};

use crate::error::HttpError;

/// The authenticated caller. Answers 401 when the bearer token is missing or not valid.
#[derive(Debug, Clone, Copy)]
pub struct CurrentUser(pub Principal);

/// The authenticated caller, who must be an administrator: 401 without a valid token,
/// 403 with a customer's token.
#[derive(Debug, Clone, Copy)]
pub struct AdminUser(pub Principal);

type Authenticating<T> = Pin<Box<dyn Future<Output = Result<T, HttpError>>>>;

impl FromRequest for CurrentUser {
    type Error = HttpError;
    type Future = Authenticating<Self>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let auth = req.app_data::<web::Data<dyn AuthApi>>().cloned();
        let token = bearer_token(req);
        Box::pin(async move {
            let Some(auth) = auth else {
                tracing::error!("AuthApi is not registered as app data; cannot authenticate");
                return Err(HttpError::internal());
            };
            let principal = auth.verify_token(token?).await?;
            Ok(CurrentUser(principal))
        })
    }
}

impl FromRequest for AdminUser {
    type Error = HttpError;
    type Future = Authenticating<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let user = CurrentUser::from_request(req, payload);
        Box::pin(async move {
            let CurrentUser(principal) = user.await?;
            if principal.is_admin() {
                Ok(AdminUser(principal))
            } else {
                Err(AuthError::Forbidden.into())
            }
        })
    }
}

/// The token of an `Authorization: Bearer <token>` header (the scheme is case-insensitive).
fn bearer_token(req: &HttpRequest) -> Result<String, AuthError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or(AuthError::MissingToken)?
        .to_str()
        .map_err(|_| AuthError::InvalidToken)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::MissingToken)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::MissingToken);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::MissingToken);
    }
    Ok(token.to_owned())
}
