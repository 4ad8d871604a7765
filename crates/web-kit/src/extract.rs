//! Extractor configuration, so that requests a handler never sees still get a JSON error.

use std::sync::Arc;

use actix_web::dev::{AppService, HttpServiceFactory};
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::from_fn;
use actix_web::{
    FromRequest, Handler, HttpRequest, HttpResponse, Resource, Responder, ResponseError, web,
};

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

/// A JSON 405 that says, in `Allow`, which methods the resource does serve (RFC 9110).
fn method_not_allowed(req: &HttpRequest, allow: &str) -> HttpResponse {
    let mut response = HttpError::transport(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} is not supported on {}; use {allow}",
            req.method(),
            req.path()
        ),
    )
    .error_response();
    if let Ok(value) = HeaderValue::from_str(allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}

/// One resource (a path) and the methods it serves. Every other method gets a JSON 405
/// with an `Allow` header listing these, and every route answers within the app's handler
/// deadline (`RequestLimits`), which is why routes are declared through this builder rather
/// than on a bare `web::resource`.
///
/// For example `cfg.service(web_kit::resource("/products").get(search).post(create))`.
#[must_use]
pub struct Endpoint {
    path: String,
    methods: Vec<Method>,
    resource: Resource,
}

/// Starts an [`Endpoint`] at `path`.
pub fn resource(path: &str) -> Endpoint {
    Endpoint {
        path: path.to_owned(),
        methods: Vec::new(),
        resource: web::resource(path),
    }
}

impl Endpoint {
    /// Serves `method` with `handler`.
    pub fn route<F, Args>(mut self, method: Method, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.resource = self.resource.route(
            web::route()
                .method(method.clone())
                .to(handler)
                .wrap(from_fn(crate::limits::handler_deadline)),
        );
        self.methods.push(method);
        self
    }

    pub fn get<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.route(Method::GET, handler)
    }

    pub fn post<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.route(Method::POST, handler)
    }

    pub fn patch<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.route(Method::PATCH, handler)
    }

    pub fn put<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.route(Method::PUT, handler)
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("path", &self.path)
            .field("methods", &self.methods)
            .finish_non_exhaustive()
    }
}

impl HttpServiceFactory for Endpoint {
    fn register(self, config: &mut AppService) {
        let allow: Arc<str> = self
            .methods
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ")
            .into();
        self.resource
            .default_service(web::to(move |req: HttpRequest| {
                let allow = allow.clone();
                async move { method_not_allowed(&req, &allow) }
            }))
            .register(config);
    }
}

/// Lets handlers answer `201 Created` with a `Location` header in one line.
pub fn created<T: serde::Serialize>(location: String, body: &T) -> HttpResponse {
    HttpResponse::Created()
        .insert_header((actix_web::http::header::LOCATION, location))
        .json(body)
}
