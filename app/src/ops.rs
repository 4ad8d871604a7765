//! Operational endpoints: liveness and readiness.
//!
//! Readiness checks what this process needs to serve: the store of each context it runs,
//! and each context it calls in another process (that process's internal listener answers
//! and serves the port). It also shows whether the broker is connected, when this process's
//! events cross processes, without making the process unready: events wait in the outbox
//! (or in the stream) while the broker is away, and requests are served meanwhile.

use std::time::Duration;

use actix_web::{HttpResponse, ResponseError, web};
use sea_orm::DatabaseConnection;
use serde::Serialize;
use utoipa::ToSchema;
use web_kit::StoreRuntime;

/// How long a context's database may take to answer a readiness ping.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct Readiness {
    pub stores: Vec<(&'static str, DatabaseConnection)>,
    /// The contexts this process calls in other processes.
    pub remotes: Vec<remote::Transport>,
    /// The broker this process publishes to or consumes from, if any.
    pub broker: Option<messaging::Broker>,
    pub probe_timeout: Duration,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    status: HealthStatus,
    /// Per local context's store (readiness only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    checks: Vec<Check>,
    /// Per context this process calls in another process (readiness of a split deployment).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    remotes: Vec<RemoteCheck>,
    /// The broker, when this process's events cross processes. Informational: its absence
    /// delays events, it does not make the process unready.
    #[serde(skip_serializing_if = "Option::is_none")]
    broker: Option<BrokerCheck>,
}

/// Whether the client is connected to the broker.
#[derive(Debug, Serialize, ToSchema)]
pub struct BrokerCheck {
    /// Its address, without credentials.
    url: String,
    status: CheckStatus,
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

/// One context this process calls in another process.
#[derive(Debug, Serialize, ToSchema)]
pub struct RemoteCheck {
    context: &'static str,
    /// The base URL of its internal listener.
    url: String,
    status: CheckStatus,
    /// Why it is unavailable.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
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
        remotes: Vec::new(),
        broker: None,
    })
}

/// Every local context's database answers, and so does every context this process calls in
/// another process.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "Some context's store or some remote context does not answer", body = Health),
    ))]
pub async fn readyz(readiness: web::Data<Readiness>, runtime: StoreRuntime) -> HttpResponse {
    // The pings take pooled connections: on the store runtime, like every other store call.
    match runtime.run_any(check(readiness)).await {
        Ok((true, body)) => HttpResponse::Ok().json(body),
        Ok((false, body)) => HttpResponse::ServiceUnavailable().json(body),
        Err(error) => error.error_response(),
    }
}

/// Whether the process is ready, and the health body that says why.
async fn check(readiness: web::Data<Readiness>) -> (bool, Health) {
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
    let probe_timeout = readiness.probe_timeout;
    let probes = readiness.remotes.iter().map(|remote| async move {
        let outcome = remote.probe(probe_timeout).await;
        if let Err(reason) = &outcome {
            tracing::warn!(context = remote.callee(), url = %remote.url(), %reason, "remote readiness check failed");
        }
        RemoteCheck {
            context: remote.callee(),
            url: remote.url().to_string(),
            status: if outcome.is_ok() {
                CheckStatus::Ok
            } else {
                CheckStatus::Unavailable
            },
            reason: outcome.err(),
        }
    });
    let (checks, remotes) = futures::future::join(
        futures::future::join_all(pings),
        futures::future::join_all(probes),
    )
    .await;
    let ready = checks.iter().all(|check| check.status == CheckStatus::Ok)
        && remotes.iter().all(|check| check.status == CheckStatus::Ok);
    let broker = readiness.broker.as_ref().map(|broker| BrokerCheck {
        url: broker.address(),
        status: if broker.is_connected() {
            CheckStatus::Ok
        } else {
            CheckStatus::Unavailable
        },
    });
    let body = Health {
        status: if ready {
            HealthStatus::Ready
        } else {
            HealthStatus::Unavailable
        },
        checks,
        remotes,
        broker,
    };
    (ready, body)
}
