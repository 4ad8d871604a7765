//! Operator endpoints of the event machinery: parked events, their replay and their discard.

use actix_web::{HttpResponse, web};
use kernel::{ContextError, ErrorKind, FieldError, FieldErrors};
use messaging::{Bus, EventFilter, FailedEvent, ParkedStatus, Stage};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use web_kit::{AdminUser, ErrorBody, HttpError, StoreRuntime, resource};

pub fn configure(bus: std::sync::Arc<Bus>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.service(
            web::scope("/api/admin/events")
                .app_data(web::Data::from(bus))
                .service(resource("/failed").get(failed))
                .service(resource("/discarded").get(discarded))
                .service(resource("/retry").post(retry_all))
                .service(resource("/{id}/retry").post(retry))
                .service(resource("/{id}/discard").post(discard)),
        );
    }
}

/// A parked event: its delivery or its handling failed every allowed attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct FailedEventView {
    /// Pass it to `POST /api/admin/events/{id}/retry` or `.../discard`.
    id: uuid::Uuid,
    status: ParkedStatusView,
    stage: StageView,
    /// The publishing context or the consumer.
    owner: String,
    event_id: uuid::Uuid,
    event_name: String,
    aggregate_id: String,
    attempts: i32,
    last_error: Option<String>,
    occurred_at: chrono::DateTime<chrono::Utc>,
}

impl From<FailedEvent> for FailedEventView {
    fn from(event: FailedEvent) -> Self {
        Self {
            id: event.id,
            status: event.status.into(),
            stage: event.stage.into(),
            owner: event.owner,
            event_id: event.event_id,
            event_name: event.event_name,
            aggregate_id: event.aggregate_id,
            attempts: event.attempts,
            last_error: event.last_error,
            occurred_at: event.occurred_at,
        }
    }
}

/// What became of an event that failed every allowed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ParkedStatusView {
    /// Parked: it holds back the later events of its aggregate until it is retried or
    /// discarded.
    Failed,
    /// Discarded by an administrator: never delivered or handled.
    Discarded,
}

impl From<ParkedStatus> for ParkedStatusView {
    fn from(status: ParkedStatus) -> Self {
        match status {
            ParkedStatus::Failed => Self::Failed,
            ParkedStatus::Discarded => Self::Discarded,
        }
    }
}

/// Where a parked event is stuck.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StageView {
    /// Leaving the publisher's outbox (a consumer's inbox could not be reached).
    Delivery,
    /// In a consumer's inbox (its handler kept failing).
    Handling,
    /// In a consumer's inbox, its handler's work committed; what follows the commit
    /// (sending the message) kept failing. A retry runs only that.
    AfterCommit,
}

impl From<Stage> for StageView {
    fn from(stage: Stage) -> Self {
        match stage {
            Stage::Delivery => Self::Delivery,
            Stage::Handling => Self::Handling,
            Stage::AfterCommit => Self::AfterCommit,
        }
    }
}

/// The rule for owners and event names in queries (written out again in the `#[param]`
/// attributes below, which take no constants; the OpenAPI test holds them to this one).
pub const NAME_PATTERN: &str = "^[a-z0-9_.-]{1,128}$";

/// Which parked events: every one, or those of one owner, of one event name, or both.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// A publishing context (`orders`) or a consumer (`notifications`).
    #[param(pattern = "^[a-z0-9_.-]{1,128}$")]
    owner: Option<String>,
    /// An event's versioned name (`orders.order_confirmed.v1`).
    #[param(pattern = "^[a-z0-9_.-]{1,128}$")]
    event_name: Option<String>,
}

impl EventQuery {
    /// The filter, or a 400 `invalid_query` naming each malformed parameter.
    fn filter(self) -> Result<EventFilter, HttpError> {
        let mut errors = FieldErrors::new();
        let owner = self
            .owner
            .and_then(|owner| errors.check(name("owner", owner)));
        let event_name = self
            .event_name
            .and_then(|event_name| errors.check(name("event_name", event_name)));
        if !errors.is_empty() {
            return Err(HttpError::invalid_query(errors.into_vec()));
        }
        Ok(EventFilter { owner, event_name })
    }
}

/// Owners and event names: [`NAME_PATTERN`], 1 to 128 lower-case letters, digits, `_`, `.`
/// and `-`.
fn name(field: &str, value: String) -> Result<String, FieldError> {
    let valid = (1..=128).contains(&value.len())
        && value
            .bytes()
            .all(|byte| matches!(byte, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-'));
    if valid {
        Ok(value)
    } else {
        Err(FieldError::new(
            field,
            "invalid_name",
            "1 to 128 lower-case letters, digits, `_`, `.` or `-`",
        ))
    }
}

/// Where a replayed event stands: back in line with a fresh set of attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RetriedStatus {
    Pending,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Retried {
    id: uuid::Uuid,
    status: RetriedStatus,
}

/// How many parked events a bulk retry put back in line.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetriedAll {
    retried: u64,
}

/// Where a discarded event stands: given up, never delivered or handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiscardedStatus {
    Discarded,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Discarded {
    id: uuid::Uuid,
    status: DiscardedStatus,
}

/// What the admin endpoints can answer besides success.
#[derive(Debug, thiserror::Error, Serialize, strum::IntoStaticStr)]
#[serde(tag = "code", rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum AdminError {
    #[error("no parked event has this id")]
    EventNotFound,
    #[error("internal error")]
    Internal,
}

impl ContextError for AdminError {
    fn code(&self) -> &'static str {
        self.into()
    }

    fn kind(&self) -> ErrorKind {
        match self {
            Self::EventNotFound => ErrorKind::NotFound,
            Self::Internal => ErrorKind::Internal,
        }
    }

    fn internal() -> Self {
        Self::Internal
    }

    /// The admin endpoints read this process's own stores; nothing they call can be away.
    fn unavailable(reason: String) -> Self {
        tracing::error!(reason, "an admin endpoint met an unavailable dependency");
        Self::Internal
    }
}

async fn list(
    bus: web::Data<Bus>,
    runtime: StoreRuntime,
    status: ParkedStatus,
    query: EventQuery,
) -> Result<HttpResponse, HttpError> {
    let filter = query.filter()?;
    let listed = runtime
        .run(async move {
            bus.list(status, &filter)
                .await
                .map_err(db_kit::internal::<AdminError>)
        })
        .await?;
    let listed: Vec<FailedEventView> = listed.into_iter().map(Into::into).collect();
    Ok(HttpResponse::Ok().json(listed))
}

/// Events whose delivery or handling failed every attempt (administrators).
#[utoipa::path(
    get, path = "/api/admin/events/failed", tag = "admin",
    security(("bearer" = [])),
    params(EventQuery),
    responses(
        (status = 200, description = "Parked events, oldest first", body = Vec<FailedEventView>),
        (status = 400, description = "`invalid_query`: a malformed owner or event name", body = ErrorBody),
        (status = 401, description = "`missing_token`, `invalid_token`, `token_expired`", body = ErrorBody),
        (status = 403, description = "`forbidden`", body = ErrorBody),
    )
)]
pub async fn failed(
    _admin: AdminUser,
    bus: web::Data<Bus>,
    runtime: StoreRuntime,
    query: web::Query<EventQuery>,
) -> Result<HttpResponse, HttpError> {
    list(bus, runtime, ParkedStatus::Failed, query.into_inner()).await
}

/// Parked events an administrator discarded, until they are purged (administrators).
#[utoipa::path(
    get, path = "/api/admin/events/discarded", tag = "admin",
    security(("bearer" = [])),
    params(EventQuery),
    responses(
        (status = 200, description = "Discarded events, oldest first", body = Vec<FailedEventView>),
        (status = 400, description = "`invalid_query`: a malformed owner or event name", body = ErrorBody),
        (status = 401, description = "`missing_token`, `invalid_token`, `token_expired`", body = ErrorBody),
        (status = 403, description = "`forbidden`", body = ErrorBody),
    )
)]
pub async fn discarded(
    _admin: AdminUser,
    bus: web::Data<Bus>,
    runtime: StoreRuntime,
    query: web::Query<EventQuery>,
) -> Result<HttpResponse, HttpError> {
    list(bus, runtime, ParkedStatus::Discarded, query.into_inner()).await
}

/// Put a parked event back in line (administrators).
#[utoipa::path(
    post, path = "/api/admin/events/{id}/retry", tag = "admin",
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The parked event's id from the failed list")),
    responses(
        (status = 202, description = "Queued for another round of attempts", body = Retried),
        (status = 401, description = "`missing_token`, `invalid_token`, `token_expired`", body = ErrorBody),
        (status = 403, description = "`forbidden`", body = ErrorBody),
        (status = 404, description = "`event_not_found`: no parked event has this id", body = ErrorBody),
    )
)]
pub async fn retry(
    _admin: AdminUser,
    bus: web::Data<Bus>,
    runtime: StoreRuntime,
    id: web::Path<uuid::Uuid>,
) -> Result<HttpResponse, HttpError> {
    let id = id.into_inner();
    let retried = runtime
        .run(async move { bus.retry(id).await.map_err(db_kit::internal::<AdminError>) })
        .await?;
    if retried {
        tracing::info!(event = %id, "parked event queued again");
        Ok(HttpResponse::Accepted().json(Retried {
            id,
            status: RetriedStatus::Pending,
        }))
    } else {
        Err(AdminError::EventNotFound.into())
    }
}

/// Put every parked event back in line, or those of one owner, of one event name, or both
/// (administrators).
#[utoipa::path(
    post, path = "/api/admin/events/retry", tag = "admin",
    security(("bearer" = [])),
    params(EventQuery),
    responses(
        (status = 202, description = "How many parked events were queued for another round of attempts", body = RetriedAll),
        (status = 400, description = "`invalid_query`: a malformed owner or event name", body = ErrorBody),
        (status = 401, description = "`missing_token`, `invalid_token`, `token_expired`", body = ErrorBody),
        (status = 403, description = "`forbidden`", body = ErrorBody),
    )
)]
pub async fn retry_all(
    _admin: AdminUser,
    bus: web::Data<Bus>,
    runtime: StoreRuntime,
    query: web::Query<EventQuery>,
) -> Result<HttpResponse, HttpError> {
    let filter = query.into_inner().filter()?;
    let (retried, filter) = runtime
        .run(async move {
            let retried = bus
                .retry_all(&filter)
                .await
                .map_err(db_kit::internal::<AdminError>)?;
            Ok::<_, AdminError>((retried, filter))
        })
        .await?;
    tracing::info!(
        retried,
        owner = filter.owner.as_deref(),
        event_name = filter.event_name.as_deref(),
        "parked events queued again"
    );
    Ok(HttpResponse::Accepted().json(RetriedAll { retried }))
}

/// Give up on a parked event: it is never delivered or handled, and the later events of its
/// aggregate go on (administrators).
#[utoipa::path(
    post, path = "/api/admin/events/{id}/discard", tag = "admin",
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The parked event's id from the failed list")),
    responses(
        (status = 200, description = "Discarded; listed under `/api/admin/events/discarded` until purged", body = Discarded),
        (status = 401, description = "`missing_token`, `invalid_token`, `token_expired`", body = ErrorBody),
        (status = 403, description = "`forbidden`", body = ErrorBody),
        (status = 404, description = "`event_not_found`: no parked event has this id", body = ErrorBody),
    )
)]
pub async fn discard(
    admin: AdminUser,
    bus: web::Data<Bus>,
    runtime: StoreRuntime,
    id: web::Path<uuid::Uuid>,
) -> Result<HttpResponse, HttpError> {
    let id = id.into_inner();
    let discarded = runtime
        .run(async move {
            bus.discard(id)
                .await
                .map_err(db_kit::internal::<AdminError>)
        })
        .await?;
    if discarded {
        tracing::warn!(event = %id, admin_id = %admin.0.user_id, "parked event discarded");
        Ok(HttpResponse::Ok().json(Discarded {
            id,
            status: DiscardedStatus::Discarded,
        }))
    } else {
        Err(AdminError::EventNotFound.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_documented_pattern() {
        let long = "a".repeat(128);
        for good in [
            "orders",
            "notifications",
            "orders.order_confirmed.v1",
            "a-b",
            &long,
        ] {
            assert!(name("owner", good.to_owned()).is_ok(), "{good:?}");
        }
        let too_long = "a".repeat(129);
        for bad in ["", "Orders", "with space", "nul\0", "é", &too_long] {
            let error = name("owner", bad.to_owned()).expect_err(bad);
            assert_eq!(
                (error.field.as_str(), error.code.as_str()),
                ("owner", "invalid_name")
            );
        }
    }
}
