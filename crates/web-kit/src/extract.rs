//! Extractor configuration, so that requests a handler never sees still get a JSON error.

use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, Resource, ResponseError, web};

use crate::error::HttpError;

/// Registers JSON, query-string and path extractor settings on an app or scope.
/// `json_limit` is the largest accepted JSON body in bytes.
pub fn configure_extractors(cfg: &mut web::ServiceConfig, json_limit: usize) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(json_limit)
            .error_handler(|error, _req| json_error(error).into()),
    )
    .app_data(web::QueryConfig::default().error_handler(|error, _req| query_error(error).into()))
    .app_data(web::PathConfig::default().error_handler(|error, _req| path_error(error).into()));
}

fn json_error(error: JsonPayloadError) -> HttpError {
    match error {
        JsonPayloadError::OverflowKnownLength { limit, .. }
        | JsonPayloadError::Overflow { limit } => HttpError::transport(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than {limit} bytes"),
        ),
        JsonPayloadError::ContentType => HttpError::transport(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as `Content-Type: application/json`",
        ),
        JsonPayloadError::Deserialize(error) if error.is_data() => HttpError::transport(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            format!("the request body does not match the expected shape: {error}"),
        ),
        JsonPayloadError::Deserialize(error) => HttpError::transport(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the request body is not valid JSON: {error}"),
        ),
        other => HttpError::transport(
            StatusCode::BAD_REQUEST,
            "unreadable_body",
            format!("the request body could not be read: {other}"),
        ),
    }
}

fn query_error(error: QueryPayloadError) -> HttpError {
    let QueryPayloadError::Deserialize(error) = error else {
        return HttpError::transport(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "invalid query string",
        );
    };
    HttpError::transport(
        StatusCode::BAD_REQUEST,
        "invalid_query",
        format!("the query string is invalid: {error}"),
    )
}

fn path_error(error: PathError) -> HttpError {
    let PathError::Deserialize(error) = error else {
        return HttpError::transport(StatusCode::BAD_REQUEST, "invalid_path", "invalid path");
    };
    HttpError::transport(
        StatusCode::BAD_REQUEST,
        "invalid_path",
        format!("a path segment is invalid: {error}"),
    )
}

/// The app's default service: an unknown route is a JSON 404, like every other error.
pub async fn route_not_found(req: HttpRequest) -> HttpResponse {
    HttpError::transport(
        StatusCode::NOT_FOUND,
        "route_not_found",
        format!("no route for {} {}", req.method(), req.path()),
    )
    .error_response()
}

async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    HttpError::transport(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not supported on {}", req.method(), req.path()),
    )
    .error_response()
}

/// A resource whose unsupported methods answer a JSON 405 instead of an empty body.
pub fn resource(path: &str) -> Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

/// Lets handlers answer `201 Created` with a `Location` header in one line.
pub fn created<T: serde::Serialize>(location: String, body: &T) -> HttpResponse {
    HttpResponse::Created()
        .insert_header((actix_web::http::header::LOCATION, location))
        .json(body)
}
