//! The `/api/payments` routes.

use actix_web::App;
use actix_web::test as http;
use payments_api::TEST_TOKENS;
use serde_json::{Value, json};

#[actix_web::test]
async fn the_test_tokens_are_public() {
    let app = http::init_service(App::new().configure(payments::configure(true))).await;
    let response = http::call_service(
        &app,
        http::TestRequest::get()
            .uri("/api/payments/test-tokens")
            .to_request(),
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Value = http::read_body_json(response).await;
    let tokens = body.as_array().expect("a list");
    assert_eq!(tokens.len(), TEST_TOKENS.len());
    assert_eq!(
        tokens[0],
        json!({"token": "tok_visa", "behaviour": "approved"})
    );
    for (token, (name, _)) in tokens.iter().zip(TEST_TOKENS) {
        assert_eq!(token["token"], *name);
    }
}

/// Outside test mode the tokens do not work, so they are not listed: the route is unknown.
#[actix_web::test]
async fn outside_test_mode_the_test_tokens_are_not_served() {
    let app = http::init_service(
        App::new()
            .configure(payments::configure(false))
            .default_service(actix_web::web::to(web_kit::route_not_found)),
    )
    .await;
    let response = http::call_service(
        &app,
        http::TestRequest::get()
            .uri("/api/payments/test-tokens")
            .to_request(),
    )
    .await;
    assert_eq!(response.status(), 404);
    let body: Value = http::read_body_json(response).await;
    assert_eq!(body["error"]["code"], "route_not_found");
}

#[test]
fn the_document_describes_the_route() {
    use utoipa::OpenApi;

    let document = payments::PaymentsDoc::openapi();
    assert!(
        document
            .paths
            .paths
            .contains_key("/api/payments/test-tokens")
    );
}
