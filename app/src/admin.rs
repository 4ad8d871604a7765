//! Operator endpoints of the event machinery: parked events and their replay.

use actix_web::{HttpResponse, web};
use kernel::{ContextError, ErrorKind};
use messaging::{Bus, FailedEvent, Stage};
use serde::Serialize;
use utoipa::ToSchema;
use web_kit::{AdminUser, ErrorBody, HttpError, resource};

pub fn configure(bus: std::sync::Arc<Bus>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.service(
            web::scope("/api/admin/events")
                .app_data(web::Data::from(bus))
                .service(resource("/failed").get(failed))
                .service(resource("/{id}/retry").post(retry)),
        );
    }
}

/// A parked event: its delivery or its handling failed every allowed attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct FailedEventView {
    /// Pass it to `POST /api/admin/events/{id}/retry`.
    id: uuid::Uuid,
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

/// Where a parked event is stuck.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StageView {
    /// Leaving the publisher's outbox (a consumer's inbox could not be reached).
    Delivery,
    /// In a consumer's inbox (its handler kept failing).
    Handling,
}

impl From<Stage> for StageView {
    fn from(stage: Stage) -> Self {
        match stage {
            Stage::Delivery => Self::Delivery,
            Stage::Handling => Self::Handling,
        }
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
}

/// Events whose delivery or handling failed every attempt (administrators).
#[utoipa::path(
    get, path = "/api/admin/events/failed", tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Parked events, oldest first", body = Vec<FailedEventView>),
        (status = 401, description = "`missing_token`, `invalid_token`, `token_expired`", body = ErrorBody),
        (status = 403, description = "`forbidden`", body = ErrorBody),
    )
)]
pub async fn failed(_admin: AdminUser, bus: web::Data<Bus>) -> Result<HttpResponse, HttpError> {
    let failed = bus.failed().await.map_err(db_kit::internal::<AdminError>)?;
    let failed: Vec<FailedEventView> = failed.into_iter().map(Into::into).collect();
    Ok(HttpResponse::Ok().json(failed))
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
    id: web::Path<uuid::Uuid>,
) -> Result<HttpResponse, HttpError> {
    let id = id.into_inner();
    if bus
        .retry(id)
        .await
        .map_err(db_kit::internal::<AdminError>)?
    {
        tracing::info!(event = %id, "parked event queued again");
        Ok(HttpResponse::Accepted().json(Retried {
            id,
            status: RetriedStatus::Pending,
        }))
    } else {
        Err(AdminError::EventNotFound.into())
    }
}
