//! `GET /api/notifications`: authenticated, always the caller's own, paging checked.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::test as actix_test;
use actix_web::{App, web};
use async_trait::async_trait;
use auth_api::{AuthApi, AuthError, Principal, Role};
use kernel::UserId;
use serde_json::Value;
use testkit::TestStore;

use crate::{Fixture, registered};

/// Knows a fixed set of tokens; nothing else. The whole of auth's port is one method, so
/// this is the whole stand-in.
struct StubAuth {
    tokens: HashMap<String, UserId>,
}

#[async_trait]
impl AuthApi for StubAuth {
    async fn verify_token(&self, token: String) -> Result<Principal, AuthError> {
        self.tokens
            .get(&token)
            .map(|user_id| Principal {
                user_id: *user_id,
                role: Role::Customer,
            })
            .ok_or(AuthError::InvalidToken)
    }
}

async fn the_route_lists_the_callers_own_messages(store: TestStore) {
    let fixture = Fixture::new(store).await;
    let ada = registered("Ada");
    let bob = registered("Bob");
    fixture.publish(&ada).await;
    fixture.publish(&bob).await;
    fixture.run().await;

    let auth: Arc<dyn AuthApi> = Arc::new(StubAuth {
        tokens: HashMap::from([
            ("ada-token".to_owned(), ada.user_id),
            ("bob-token".to_owned(), bob.user_id),
        ]),
    });
    let app = actix_test::init_service(
        App::new()
            .app_data(web::Data::from(auth))
            .configure(|cfg| web_kit::configure_extractors(cfg, 64 * 1024))
            .configure(notifications::configure(fixture.module.service())),
    )
    .await;
    let get = |uri: &str, token: Option<&str>| {
        let mut request = actix_test::TestRequest::get().uri(uri);
        if let Some(token) = token {
            request = request.insert_header(("Authorization", format!("Bearer {token}")));
        }
        request.to_request()
    };

    let response =
        actix_test::call_service(&app, get("/api/notifications", Some("ada-token"))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = actix_test::read_body_json(response).await;
    assert_eq!(body["total"], 1);
    assert_eq!(body["page"], 1);
    assert_eq!(body["per_page"], 20);
    assert_eq!(body["items"][0]["kind"], "welcome");
    assert_eq!(body["items"][0]["to"], "ada@example.com");
    assert_eq!(body["items"][0]["channel"], "email");

    let response = actix_test::call_service(
        &app,
        get("/api/notifications?page=1&per_page=1", Some("bob-token")),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = actix_test::read_body_json(response).await;
    assert_eq!(body["items"][0]["to"], "bob@example.com");
    assert_eq!(body["per_page"], 1);

    for (uri, token, status, code) in [
        (
            "/api/notifications",
            None,
            StatusCode::UNAUTHORIZED,
            "missing_token",
        ),
        (
            "/api/notifications",
            Some("forged"),
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        ),
        (
            "/api/notifications?page=0",
            Some("ada-token"),
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/api/notifications?per_page=101",
            Some("ada-token"),
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/api/notifications?per_page=many",
            Some("ada-token"),
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
    ] {
        let response = actix_test::call_service(&app, get(uri, token)).await;
        assert_eq!(response.status(), status, "{uri}");
        let body: Value = actix_test::read_body_json(response).await;
        assert_eq!(body["error"]["code"], code, "{uri}: {body}");
    }

    let response =
        actix_test::call_service(&app, get("/api/notifications?page=0", Some("ada-token"))).await;
    let body: Value = actix_test::read_body_json(response).await;
    assert_eq!(body["error"]["fields"][0]["field"], "page", "{body}");
    let response = actix_test::call_service(
        &app,
        get("/api/notifications?per_page=0", Some("ada-token")),
    )
    .await;
    let body: Value = actix_test::read_body_json(response).await;
    assert_eq!(body["error"]["fields"][0]["field"], "per_page", "{body}");

    let response = actix_test::call_service(
        &app,
        actix_test::TestRequest::post()
            .uri("/api/notifications")
            .to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
}

/// The OpenAPI document describes the route and its schemas.
#[test]
fn the_openapi_document_describes_the_route() {
    use utoipa::OpenApi;
    let doc = serde_json::to_value(notifications::NotificationsDoc::openapi()).expect("json");
    assert!(
        doc["paths"]["/api/notifications"]["get"].is_object(),
        "{doc}"
    );
    assert!(
        doc["components"]["schemas"]["Notification"].is_object(),
        "{doc}"
    );
}

testkit::backend_tests!(the_route_lists_the_callers_own_messages);
