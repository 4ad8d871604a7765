//! The `AuthApi` contract: a valid access token says who is calling; anything else is
//! refused as `invalid_token`, or `token_expired` once its time is up.

use std::sync::Arc;

use async_trait::async_trait;
use auth_api::{AuthApi, AuthError, Principal, Role};

use crate::{Customer, answered};

/// What the auth suite needs that the port cannot do.
#[async_trait]
pub trait AuthFixture: Send + Sync {
    /// A fresh customer with a valid access token. In process: `AuthService::register`
    /// and `login`; over HTTP: `POST /api/auth/register`, then `POST /api/auth/login`.
    async fn customer(&self) -> Customer;

    /// An administrator with a valid access token (need not be fresh). In process:
    /// `AuthModule::create_admin` and `login`; over HTTP: log in an administrator created
    /// with `shop admin create` (its id from `GET /api/auth/me`).
    async fn admin(&self) -> Customer;

    /// An access token signed as auth signs them (its key, issuer and audience) whose
    /// expiry has passed. Whoever holds the signing key (`auth.jwt_secret`) can make one.
    async fn expired_token(&self) -> String;
}

/// The JOSE header `{"alg":"none","typ":"JWT"}`, base64url-encoded: a token that claims to
/// need no signature.
const UNSIGNED_HEADER: &str = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";

/// Runs every case of the `AuthApi` contract against `api`.
pub async fn suite(api: Arc<dyn AuthApi>, fixture: &dyn AuthFixture) {
    let api = api.as_ref();
    let customer = fixture.customer().await;
    let admin = fixture.admin().await;

    let case = "auth.verify_token: a customer's token is that customer";
    let principal = answered(api.verify_token(customer.access_token.clone()).await, case);
    assert_eq!(
        principal,
        Principal {
            user_id: customer.user_id,
            role: Role::Customer
        },
        "{case}"
    );
    assert!(!principal.is_admin(), "{case}");

    let case = "auth.verify_token: asking again gives the same answer";
    assert_eq!(
        api.verify_token(customer.access_token.clone()).await,
        Ok(principal),
        "{case}"
    );

    let case = "auth.verify_token: an administrator's token is an administrator";
    let principal = answered(api.verify_token(admin.access_token.clone()).await, case);
    assert_eq!(
        principal,
        Principal {
            user_id: admin.user_id,
            role: Role::Admin
        },
        "{case}"
    );
    assert!(principal.is_admin(), "{case}");

    let case = "auth.verify_token: an expired token is refused as expired";
    assert_eq!(
        api.verify_token(fixture.expired_token().await).await,
        Err(AuthError::TokenExpired),
        "{case}"
    );

    let [header, claims, signature] = parts(&customer.access_token);
    let [_, _, admin_signature] = parts(&admin.access_token);
    for (case, token) in [
        ("an empty token", String::new()),
        ("garbage", "not-a-token".to_owned()),
        ("three parts of garbage", "a.b.c".to_owned()),
        (
            "a token without its signature",
            format!("{header}.{claims}"),
        ),
        (
            "a customer's claims under another token's signature",
            format!("{header}.{claims}.{admin_signature}"),
        ),
        (
            "a token whose signature was changed",
            format!("{header}.{claims}.{}", flip_first(signature)),
        ),
        (
            "a token that claims to need no signature",
            format!("{UNSIGNED_HEADER}.{claims}."),
        ),
    ] {
        assert_eq!(
            api.verify_token(token).await,
            Err(AuthError::InvalidToken),
            "auth.verify_token: {case} is an invalid token"
        );
    }
}

/// The header, claims and signature of a compact JWT.
fn parts(token: &str) -> [&str; 3] {
    let parts: Vec<&str> = token.split('.').collect();
    match parts.as_slice() {
        [header, claims, signature] => [*header, *claims, *signature],
        _ => panic!(
            "auth: an access token has three parts, got {} parts",
            parts.len()
        ),
    }
}

/// `text` with its first character replaced by another base64url character.
fn flip_first(text: &str) -> String {
    let mut chars = text.chars();
    let first = match chars.next() {
        Some('A') => 'B',
        _ => 'A',
    };
    std::iter::once(first).chain(chars).collect()
}
