//! The `/api/orders` routes: orders' own public API. Handlers call orders' service.

use std::sync::Arc;

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{HttpResponse, web};
use kernel::{OrderId, Page};
use orders_api::{
    DetailSource, Order, OrderDetail, OrderFailure, OrderRequest, OrdersApi, ParkedOrder,
    PaymentState, PaymentView, PlaceOrder, ProductView, Viewer,
};
use utoipa::OpenApi;
use web_kit::{
    AdminUser, CurrentUser, ErrorBody, HttpError, Paging, RequiredIdempotencyKey, StoreRuntime,
    resource,
};

use crate::OrdersService;

const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The path prefixes of this context's public routes: each is one `web::scope` below. A
/// process that sends the context's routes to another process (strangler fig) matches them.
pub const PUBLIC_SCOPES: &[&str] = &["/api/orders", "/api/admin/orders"];

/// Mounts orders' routes and the service they call.
pub fn configure(service: Arc<OrdersService>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.service(
            web::scope(PUBLIC_SCOPES[0])
                .app_data(web::Data::from(service.clone()))
                .service(resource("").post(place).get(list))
                .service(resource("/{id}").get(detail))
                .service(resource("/{id}/cancel").post(cancel)),
        )
        .service(
            web::scope(PUBLIC_SCOPES[1])
                .app_data(web::Data::from(service))
                .service(resource("/parked").get(parked))
                .service(resource("/{id}/retry").post(retry)),
        );
    }
}

#[derive(Debug, OpenApi)]
#[openapi(
    paths(place, list, detail, cancel, parked, retry),
    components(schemas(OrderRequest, Order, OrderFailure, OrderDetail, DetailSource, PaymentView, PaymentState, ProductView, Page<Order>, ParkedOrder, Page<ParkedOrder>)),
    tags(
        (name = "orders", description = "Orders and checkout"),
        (name = "admin", description = "Parked checkouts and events, and their replay"),
    )
)]
pub struct OrdersDoc;

/// orders' view of the caller: a buyer, or an administrator who sees every order.
fn viewer(CurrentUser(caller): CurrentUser) -> Viewer {
    Viewer {
        user_id: caller.user_id,
        admin: caller.admin,
    }
}

/// Place an order and run checkout.
///
/// Prices and names come from the catalog, never from the request. The answer is the order
/// after checkout: `confirmed`, `rejected` (out of stock, nothing charged) or
/// `payment_failed` (stock released). A repeated `Idempotency-Key` with the same body
/// answers the same order with `200` and `Idempotent-Replayed: true`.
#[utoipa::path(
    post, path = "/api/orders", tag = "orders",
    security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header, pattern = "^[!-~]{1,200}$", description = "Unique per order attempt (1 to 200 visible ASCII characters); retries reuse it")),
    request_body = OrderRequest,
    responses(
        (status = 201, description = "Order placed; checkout finished", body = Order),
        (status = 202, description = "Order placed; checkout will finish shortly", body = Order),
        (status = 200, description = "Replay of an earlier request with the same key", body = Order),
        (status = 400, description = "`missing_idempotency_key`, `invalid_idempotency_key`", body = ErrorBody),
        (status = 409, description = "`request_in_progress`: a request with this key is still being checked out (see `Retry-After`); `too_many_orders_in_flight`: the caller's unfinished checkouts are at the limit (see `Retry-After`)", body = ErrorBody),
        (status = 422, description = "`validation_failed` (unknown or unavailable products, mixed currencies, more than 1000 units of a product...), `idempotency_key_reused` (the key was used for another body)", body = ErrorBody),
        (status = 503, description = "`unavailable`: the catalog did not answer", body = ErrorBody),
    )
)]
async fn place(
    // First, so that a request without a usable key is a 400 whatever its body (the IETF
    // idempotency-key draft); extractors run in argument order.
    RequiredIdempotencyKey(key): RequiredIdempotencyKey,
    user: CurrentUser,
    orders: web::Data<OrdersService>,
    runtime: StoreRuntime,
    body: web_kit::Json<OrderRequest>,
) -> Result<HttpResponse, HttpError> {
    let body = body.into_inner();
    let request = PlaceOrder {
        customer_id: user.0.user_id,
        idempotency_key: key,
        lines: body.lines,
        shipping_address: body.shipping_address,
        payment_token: body.payment_token,
    };
    let placed = runtime
        .run(async move { orders.place_order(request).await })
        .await?;
    let location = format!("/api/orders/{}", placed.order.id);
    let mut response = if placed.replayed {
        let mut response = HttpResponse::Ok();
        response.insert_header((REPLAYED, HeaderValue::from_static("true")));
        response
    } else if placed.order.status.is_terminal() {
        HttpResponse::Created()
    } else {
        HttpResponse::Accepted()
    };
    Ok(response
        .insert_header((actix_web::http::header::LOCATION, location))
        .json(placed.order))
}

/// The caller's orders, newest first (every order, for administrators).
#[utoipa::path(
    get, path = "/api/orders", tag = "orders",
    security(("bearer" = [])),
    params(Paging),
    responses(
        (status = 200, description = "One page of orders", body = Page<Order>),
        (status = 400, description = "`invalid_query`", body = ErrorBody),
        (status = 401, description = "`missing_token`, `invalid_token`, `token_expired`", body = ErrorBody),
    )
)]
async fn list(
    user: CurrentUser,
    orders: web::Data<OrdersService>,
    runtime: StoreRuntime,
    paging: web::Query<Paging>,
) -> Result<HttpResponse, HttpError> {
    let page = paging.request()?;
    let viewer = viewer(user);
    let orders = runtime
        .run(async move { orders.list_orders(viewer, page).await })
        .await?;
    Ok(HttpResponse::Ok().json(orders))
}

/// An order with its payment and its products as they are now.
#[utoipa::path(
    get, path = "/api/orders/{id}", tag = "orders",
    security(("bearer" = [])),
    params(("id" = OrderId, Path, description = "Order id")),
    responses(
        (status = 200, description = "The order, composed from orders, payments and catalog", body = OrderDetail),
        (status = 401, description = "`missing_token`, `invalid_token`, `token_expired`", body = ErrorBody),
        (status = 404, description = "`order_not_found` (also for other customers' orders)", body = ErrorBody),
    )
)]
async fn detail(
    user: CurrentUser,
    orders: web::Data<OrdersService>,
    runtime: StoreRuntime,
    id: web::Path<OrderId>,
) -> Result<HttpResponse, HttpError> {
    let (viewer, id) = (viewer(user), id.into_inner());
    let order = runtime
        .run(async move { orders.get_order(viewer, id).await })
        .await?;
    Ok(HttpResponse::Ok().json(order))
}

/// Cancel a confirmed order: refund it and return its units to stock.
#[utoipa::path(
    post, path = "/api/orders/{id}/cancel", tag = "orders",
    security(("bearer" = [])),
    params(("id" = OrderId, Path, description = "Order id")),
    responses(
        (status = 200, description = "The cancelled order (or the order as it stands, if cancellation continues in the background)", body = Order),
        (status = 401, description = "`missing_token`, `invalid_token`, `token_expired`", body = ErrorBody),
        (status = 404, description = "`order_not_found`", body = ErrorBody),
        (status = 409, description = "`not_cancellable`: only confirmed orders can be cancelled; `request_in_progress`: the order is being worked on (see `Retry-After`)", body = ErrorBody),
    )
)]
async fn cancel(
    user: CurrentUser,
    orders: web::Data<OrdersService>,
    runtime: StoreRuntime,
    id: web::Path<OrderId>,
) -> Result<HttpResponse, HttpError> {
    let (viewer, id) = (viewer(user), id.into_inner());
    let order = runtime
        .run(async move { orders.cancel_order(viewer, id).await })
        .await?;
    Ok(HttpResponse::Ok().json(order))
}

/// Unfinished checkouts the recovery sweep gave up on, the longest parked first
/// (administrators).
#[utoipa::path(
    get, path = "/api/admin/orders/parked", tag = "admin",
    security(("bearer" = [])),
    params(Paging),
    responses(
        (status = 200, description = "One page of parked orders, with why their last attempt failed", body = Page<ParkedOrder>),
        (status = 403, description = "`forbidden`", body = ErrorBody),
    )
)]
async fn parked(
    _admin: AdminUser,
    orders: web::Data<OrdersService>,
    runtime: StoreRuntime,
    paging: web::Query<Paging>,
) -> Result<HttpResponse, HttpError> {
    let page = paging.request()?;
    let parked = runtime
        .run(async move { orders.parked_orders(page).await })
        .await?;
    Ok(HttpResponse::Ok().json(parked))
}

/// Replay a parked checkout now, with a fresh set of attempts (administrators).
#[utoipa::path(
    post, path = "/api/admin/orders/{id}/retry", tag = "admin",
    security(("bearer" = [])),
    params(("id" = OrderId, Path, description = "Order id")),
    responses(
        (status = 200, description = "The order after the replay (finished, or back in the sweep's hands)", body = Order),
        (status = 403, description = "`forbidden`", body = ErrorBody),
        (status = 404, description = "`order_not_found`", body = ErrorBody),
        (status = 409, description = "`order_not_parked`; `request_in_progress` (see `Retry-After`)", body = ErrorBody),
    )
)]
async fn retry(
    _admin: AdminUser,
    orders: web::Data<OrdersService>,
    runtime: StoreRuntime,
    id: web::Path<OrderId>,
) -> Result<HttpResponse, HttpError> {
    let id = id.into_inner();
    let order = runtime
        .run(async move { orders.retry_parked(id).await })
        .await?;
    Ok(HttpResponse::Ok().json(order))
}
