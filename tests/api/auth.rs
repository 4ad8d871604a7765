//! register → login → me, and every way a token can be wrong.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{Duration, Utc};
use kernel::ManualClock;
use reqwest::StatusCode;
use serde_json::json;
use testkit::TestStore;

use crate::helpers::{spawn_app, spawn_app_with, spawn_app_with_clock};

async fn register_login_me(store: TestStore) {
    let app = spawn_app(store).await;
    let registered = app
        .register("Grace@Example.com", "hopper hopper", "Grace Hopper")
        .await;
    let user = registered.ok(StatusCode::CREATED).clone();
    assert_eq!(registered.headers["location"], "/api/auth/me");
    assert_eq!(user["email"], "grace@example.com");
    assert_eq!(user["display_name"], "Grace Hopper");
    assert_eq!(user["role"], "customer");
    assert!(user.get("password").is_none() && user.get("password_hash").is_none());

    let login = app.login("grace@example.com", "hopper hopper").await;
    let token = login.ok(StatusCode::OK);
    assert_eq!(token["token_type"], "Bearer");
    assert_eq!(token["expires_in"], 3600);
    let access_token = token["access_token"].as_str().expect("token");

    let me = app.get("/api/auth/me", Some(access_token)).await;
    assert_eq!(me.ok(StatusCode::OK), &user);
}

async fn duplicate_and_invalid_registrations(store: TestStore) {
    let app = spawn_app(store).await;
    app.register("taken@example.com", "password one", "One")
        .await
        .ok(StatusCode::CREATED);
    app.register("TAKEN@example.com", "password two", "Two")
        .await
        .error(StatusCode::CONFLICT, "email_taken");

    let invalid = app.register("not-an-email", "short", "   ").await;
    let error = invalid.error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    insta::assert_json_snapshot!("register_validation_failed", error);

    let too_long = "p".repeat(129);
    let answer = app.register("long@example.com", &too_long, "Long").await;
    let error = answer.error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(error["fields"][0]["field"], "password");
    assert_eq!(error["fields"][0]["code"], "too_long");
    // Nothing was stored by the refused attempts.
    app.register("long@example.com", "long enough", "Long")
        .await
        .ok(StatusCode::CREATED);
}

async fn wrong_password_and_unknown_email_are_indistinguishable(store: TestStore) {
    let app = spawn_app(store).await;
    app.register("known@example.com", "the password", "Known")
        .await
        .ok(StatusCode::CREATED);
    let wrong = app.login("known@example.com", "not the password").await;
    let unknown = app.login("unknown@example.com", "the password").await;
    wrong.error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    assert_eq!((wrong.status, &wrong.body), (unknown.status, &unknown.body));
}

async fn bad_tokens_are_refused(store: TestStore) {
    let app = spawn_app(store).await;
    let missing = app.get("/api/auth/me", None).await;
    missing.error(StatusCode::UNAUTHORIZED, "missing_token");
    assert_eq!(missing.headers["www-authenticate"], "Bearer");

    let token = app.customer_token().await;
    let mut parts: Vec<String> = token.split('.').map(String::from).collect();

    // Tampered: claims changed after signing.
    let claims = URL_SAFE_NO_PAD.decode(&parts[1]).expect("base64 claims");
    let mut claims: serde_json::Value = serde_json::from_slice(&claims).expect("json claims");
    claims["role"] = json!("admin");
    parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
    let tampered = parts.join(".");
    app.get("/api/auth/me", Some(&tampered))
        .await
        .error(StatusCode::UNAUTHORIZED, "invalid_token");

    // `alg: none`, unsigned.
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    app.get("/api/auth/me", Some(&unsigned))
        .await
        .error(StatusCode::UNAUTHORIZED, "invalid_token");

    app.get("/api/auth/me", Some("not.a.token"))
        .await
        .error(StatusCode::UNAUTHORIZED, "invalid_token");
    let basic = app
        .send(
            app.client
                .get(app.url("/api/auth/me"))
                .header("Authorization", "Basic Zm9vOmJhcg=="),
        )
        .await;
    basic.error(StatusCode::UNAUTHORIZED, "missing_token");
}

async fn tokens_for_another_audience_are_refused(store: TestStore) {
    let other_store = TestStore::new(store.backend).await;
    let app = spawn_app(store).await;
    // Same signing key, different audience: a token meant for another service.
    let other = spawn_app_with(other_store, |settings| {
        settings.auth.audience = "another-api".into()
    })
    .await;
    let foreign = other.customer_token().await;
    app.get("/api/auth/me", Some(&foreign))
        .await
        .error(StatusCode::UNAUTHORIZED, "invalid_token");
}

async fn expired_tokens_are_refused(store: TestStore) {
    // A shop whose clock is two hours behind issues tokens that expired an hour ago.
    let clock = Arc::new(ManualClock::new(Utc::now() - Duration::hours(2)));
    let app = spawn_app_with_clock(store, clock).await;
    let token = app.customer_token().await;
    app.get("/api/auth/me", Some(&token))
        .await
        .error(StatusCode::UNAUTHORIZED, "token_expired");
}

testkit::backend_tests!(
    register_login_me,
    duplicate_and_invalid_registrations,
    wrong_password_and_unknown_email_are_indistinguishable,
    bad_tokens_are_refused,
    tokens_for_another_audience_are_refused,
    expired_tokens_are_refused,
);
