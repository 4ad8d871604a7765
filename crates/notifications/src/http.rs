//! The `/api/notifications` routes: notifications' own public API. Handlers call its
//! service.

use std::sync::Arc;

use actix_web::{HttpResponse, web};
use kernel::Page;
use notifications_api::{Channel, Notification, NotificationKind, NotificationsApi};
use utoipa::OpenApi;
use web_kit::{CurrentUser, ErrorBody, HttpError, Paging, StoreRuntime, resource};

use crate::NotificationsService;

/// The path prefixes of this context's public routes: each is one `web::scope` below. A
/// process that sends the context's routes to another process (strangler fig) matches them.
pub const PUBLIC_SCOPES: &[&str] = &["/api/notifications"];

/// Mounts notifications' routes and the service they call.
pub fn configure(service: Arc<NotificationsService>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.service(
            web::scope(PUBLIC_SCOPES[0])
                .app_data(web::Data::from(service))
                .service(resource("").get(list)),
        );
    }
}

#[derive(Debug, OpenApi)]
#[openapi(
    paths(list),
    components(schemas(Notification, NotificationKind, Channel, Page<Notification>)),
    tags((name = "notifications", description = "The messages sent to the caller"))
)]
pub struct NotificationsDoc;

/// The caller's messages, newest first (`sent_at` is empty until the message has left).
#[utoipa::path(
    get, path = "/api/notifications", tag = "notifications",
    security(("bearer" = [])),
    params(Paging),
    responses(
        (status = 200, description = "One page of the caller's messages and the total", body = Page<Notification>),
        (status = 400, description = "`invalid_query` (bad paging values)", body = ErrorBody),
        (status = 401, description = "`missing_token`, `invalid_token`, `token_expired`", body = ErrorBody),
    )
)]
async fn list(
    CurrentUser(caller): CurrentUser,
    notifications: web::Data<NotificationsService>,
    runtime: StoreRuntime,
    paging: web::Query<Paging>,
) -> Result<HttpResponse, HttpError> {
    let page = paging.request()?;
    let listed = runtime
        .run(async move { notifications.list_notifications(caller.user_id, page).await })
        .await?;
    Ok(HttpResponse::Ok().json(listed))
}
