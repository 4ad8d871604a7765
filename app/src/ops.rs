//! Operational endpoints: liveness and readiness.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use sea_orm::DatabaseConnection;
use serde::Serialize;
use utoipa::ToSchema;

/// How long a context's database may take to answer a readiness ping.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct Readiness {
    pub stores: Vec<(&'static str, DatabaseConnection)>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    status: HealthStatus,
    /// Per context (readiness only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    checks: Vec<Check>,
}

/// `ok` (alive), `ready` (every store answers) or `unavailable` (some store does not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    Ok,
    Ready,
    Unavailable,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Check {
    context: &'static str,
    status: CheckStatus,
}

/// Whether one context's store answered its ping in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Ok,
    Unavailable,
}

pub fn configure(readiness: Readiness) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::new(readiness))
            .service(web_kit::resource("/healthz").get(healthz))
            .service(web_kit::resource("/readyz").get(readyz));
    }
}

/// The process is alive and serving HTTP.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: HealthStatus::Ok,
        checks: Vec::new(),
    })
}

/// Every context's database answers.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "Some context's store does not answer", body = Health),
    ))]
pub async fn readyz(readiness: web::Data<Readiness>) -> HttpResponse {
    let pings = readiness.stores.iter().map(|(context, db)| async move {
        let ok = matches!(
            tokio::time::timeout(PING_TIMEOUT, db.ping()).await,
            Ok(Ok(()))
        );
        if !ok {
            tracing::warn!(context, "readiness check failed");
        }
        Check {
            context,
            status: if ok {
                CheckStatus::Ok
            } else {
                CheckStatus::Unavailable
            },
        }
    });
    let checks = futures::future::join_all(pings).await;
    let ready = checks.iter().all(|check| check.status == CheckStatus::Ok);
    let body = Health {
        status: if ready {
            HealthStatus::Ready
        } else {
            HealthStatus::Unavailable
        },
        checks,
    };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
