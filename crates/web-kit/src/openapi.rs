//! OpenAPI pieces every context's document shares: the bearer security scheme, and the
//! responses of the shared plumbing.

use utoipa::Modify;
use utoipa::openapi::header::Header;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, Object, OpenApi, Ref, RefOr, Type};

/// Declares the `bearer` security scheme that protected routes refer to.
#[derive(Debug)]
pub struct BearerSecurity;

impl Modify for BearerSecurity {
    fn modify(&self, openapi: &mut OpenApi) {
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.bearer_format = Some("JWT".into());
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The answers the shared plumbing gives before a handler runs, documented on every operation
/// they can happen on, so that the API document lists every status a route can answer:
///
/// - a JSON body: `400` (`malformed_json`, `unreadable_body`), `408` (`request_timeout`,
///   the body did not arrive in time), `413` (`payload_too_large`), `415`
///   (`unsupported_media_type`), `422` (`invalid_body`);
/// - path parameters: `400` (`invalid_path`); query parameters: `400` (`invalid_query`);
/// - a bearer token: `401` (`missing_token`, `invalid_token`, `token_expired`);
/// - every route: `503` (`deadline_exceeded`) past the handler deadline, and `503`
///   (`unavailable`) when another process it needs does not answer: auth, for a bearer
///   token, or the process a context's routes are sent to (strangler fig).
///
/// Every `429` and `503` also documents its `Retry-After` header (whole seconds). A status a
/// route already documents keeps its description, extended with the codes the plumbing
/// adds. Apply it to the merged document, after every context's paths are in.
#[derive(Debug)]
pub struct TransportResponses;

impl Modify for TransportResponses {
    fn modify(&self, openapi: &mut OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                document_transport_responses(operation);
            }
        }
    }
}

fn document_transport_responses(operation: &mut Operation) {
    let has_in = |place: ParameterIn| {
        operation.parameters.iter().flatten().any(
            |parameter| matches!(parameter, RefOr::T(parameter) if parameter.parameter_in == place),
        )
    };
    let mut answers: Vec<(&str, &[&str])> = Vec::new();
    let mut bad_request: Vec<&str> = Vec::new();
    if operation.request_body.is_some() {
        bad_request.extend(["malformed_json", "unreadable_body"]);
        answers.push(("408", &["request_timeout"]));
        answers.push(("413", &["payload_too_large"]));
        answers.push(("415", &["unsupported_media_type"]));
        answers.push(("422", &["invalid_body"]));
    }
    if has_in(ParameterIn::Path) {
        bad_request.push("invalid_path");
    }
    if has_in(ParameterIn::Query) {
        bad_request.push("invalid_query");
    }
    let protected = operation
        .security
        .as_ref()
        .is_some_and(|requirements| !requirements.is_empty());
    if protected {
        answers.push(("401", &["missing_token", "invalid_token", "token_expired"]));
    }
    // Authentication asks auth's port, and a routed request another process: either
    // answers `unavailable` when that process does not answer, `deadline_exceeded` when it
    // answers too late.
    answers.push(("503", &["unavailable", "deadline_exceeded"]));
    if !bad_request.is_empty() {
        add_codes(operation, "400", &bad_request);
    }
    for (status, codes) in answers {
        add_codes(operation, status, codes);
    }
    for status in ["429", "503"] {
        if let Some(RefOr::T(response)) = operation.responses.responses.get_mut(status) {
            response
                .headers
                .entry("Retry-After".to_owned())
                .or_insert_with(|| RefOr::T(retry_after()));
        }
    }
}

/// The `Retry-After` header of 429 and 503 answers: whole seconds to wait, at least one.
fn retry_after() -> Header {
    let mut seconds = Object::with_type(Type::Integer);
    seconds.minimum = Some(1.into());
    let mut header = Header::new(seconds);
    header.description =
        Some("Seconds to wait before trying again (RFC 9110, whole seconds)".to_owned());
    header
}

/// Adds `codes` to the description of `status`, creating the response if needed.
fn add_codes(operation: &mut Operation, status: &str, codes: &[&str]) {
    let responses = &mut operation.responses.responses;
    match responses.get_mut(status) {
        Some(RefOr::T(response)) => {
            let missing: Vec<String> = codes
                .iter()
                .filter(|code| !response.description.contains(&format!("`{code}`")))
                .map(|code| format!("`{code}`"))
                .collect();
            if !missing.is_empty() {
                response.description =
                    format!("{}; also {}", response.description, missing.join(", "));
            }
        }
        Some(RefOr::Ref(_)) => {}
        None => {
            let description = codes
                .iter()
                .map(|code| format!("`{code}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let response = ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    Content::new(Some(Ref::from_schema_name("ErrorBody"))),
                )
                .build();
            responses.insert(status.to_owned(), RefOr::T(response));
        }
    }
}
