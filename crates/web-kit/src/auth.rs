//! Extractors that authenticate the caller through `AuthApi::verify_token`.
//!
//! Every protected route of every context takes a [`CurrentUser`] or an [`AdminUser`]
//! argument, so authentication cannot be forgotten in a handler body and always goes through
//! the auth context's port (in process today, over the network once extracted).
//!
//! What a route learns is a [`Caller`]: web-kit's own, context-neutral description of who is
//! calling, translated here from auth's `Principal`. So a context's routes never see auth's
//! model of a user, and web-kit is the only crate outside auth that names it.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use auth_api::{AuthApi, AuthError, Principal, Role};
use kernel::UserId;

use crate::error::HttpError;

/// Who is calling a route, as every context may know it: a user id and whether that user
/// administers the shop. Nothing else of the account crosses into other contexts' routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub user_id: UserId,
    pub admin: bool,
}

impl From<Principal> for Caller {
    fn from(principal: Principal) -> Self {
        Self {
            user_id: principal.user_id,
            admin: matches!(principal.role, Role::Admin),
        }
    }
}

/// The authenticated caller. Answers 401 when the bearer token is missing or not valid.
#[derive(Debug, Clone, Copy)]
pub struct CurrentUser(pub Caller);

/// The authenticated caller, who must be an administrator: 401 without a valid token,
/// 403 with a customer's token.
#[derive(Debug, Clone, Copy)]
pub struct AdminUser(pub Caller);

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
            Ok(CurrentUser(principal.into()))
        })
    }
}

impl FromRequest for AdminUser {
    type Error = HttpError;
    type Future = Authenticating<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let user = CurrentUser::from_request(req, payload);
        Box::pin(async move {
            let CurrentUser(caller) = user.await?;
            if caller.admin {
                Ok(AdminUser(caller))
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
