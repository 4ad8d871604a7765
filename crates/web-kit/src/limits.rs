//! Time limits on requests, so that a slow client or a slow route cannot hold the server.
//!
//! Two bounds are ours, registered once for the app with [`configure_limits`]:
//!
//! - **Body read**: [`crate::Json`] reads a request's body within
//!   [`RequestLimits::body_read`]. A client that trickles its body past it gets
//!   `408 request_timeout`, and the connection is closed, so its socket is freed.
//! - **Handler time**: every route declared with [`crate::resource`] answers within
//!   [`RequestLimits::handler`] (extractors, body and handler together), or
//!   `503 deadline_exceeded` with `Retry-After`. The handler's future is dropped at that
//!   point, so work that must finish whatever happens to the request runs in a task of its
//!   own (checkout does, see `OrdersService::finish`), and a transaction left open by a
//!   dropped handler is rolled back.
//!
//! - **Unread bodies**: [`close_after_unread_body`] (app middleware) closes the connection
//!   after answering a request whose body was not read to its end, chunked or not. actix-web
//!   does so by itself only for bodies of announced length; a chunked body would otherwise be
//!   drained after the answer for as long as its client trickles it, holding the connection.
//!
//! The time a client may take to send the request head, how long an idle connection is
//! kept, and how long a closing client gets (also after an unread body), are actix-web's own
//! settings, set on the server by the composition root.

use std::cell::RefCell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{HttpMessage, ResponseError, web};
use futures::Stream;

use crate::error::HttpError;

/// How long a request may take, per stage. Registered as app data by [`configure_limits`];
/// without it, neither bound applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// Reading a JSON body, from the moment the extractor starts.
    pub body_read: Duration,
    /// The whole route: extractors, body and handler.
    pub handler: Duration,
}

/// Registers `limits` for every route of the app or scope.
pub fn configure_limits(cfg: &mut web::ServiceConfig, limits: RequestLimits) {
    cfg.app_data(limits);
}

/// Route middleware (every [`crate::resource`] route has it): the handler answers within
/// [`RequestLimits::handler`] or the caller gets `503 deadline_exceeded`.
pub(crate) async fn handler_deadline(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(limit) = req.app_data::<RequestLimits>().map(|limits| limits.handler) else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    // Routing is done at this point, so holding a second handle on the request is safe
    // (actix needs the only handle while it routes).
    let request = req.request().clone();
    match actix_web::rt::time::timeout(limit, next.call(req)).await {
        Ok(response) => response.map(ServiceResponse::map_into_boxed_body),
        Err(_elapsed) => {
            tracing::warn!(
                limit_ms = limit.as_millis() as u64,
                "request deadline exceeded"
            );
            let response = HttpError::deadline_exceeded(limit).error_response();
            Ok(ServiceResponse::new(request, response))
        }
    }
}

/// App middleware: a request whose body is not read to its end by the time its answer has
/// been sent gets `Connection: close`, and the connection is closed after
/// `client_disconnect_timeout` at most. How: the request's body is handed to the route
/// through a shared handle, and the answer's body keeps the original alive until it has
/// been sent, which is when actix-web decides between keeping the connection and closing it.
/// (A body it sees dropped, it would drain when chunked: for as long as the client sends.)
pub async fn close_after_unread_body(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let payload = req.take_payload();
    if matches!(payload, Payload::None) {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    }
    let unread = Rc::new(RefCell::new(payload));
    let shared: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> =
        Box::pin(SharedPayload(unread.clone()));
    req.set_payload(Payload::from(shared));
    let response = next.call(req).await?;
    Ok(response.map_body(|_, body| {
        BoxBody::new(HoldingBody {
            body: body.boxed(),
            _unread: unread,
        })
    }))
}

/// The request's body, read through a handle the middleware shares.
struct SharedPayload(Rc<RefCell<Payload>>);

impl Stream for SharedPayload {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_next(cx)
    }
}

/// An answer's body that keeps the request's body alive until it has been sent.
struct HoldingBody {
    body: BoxBody,
    _unread: Rc<RefCell<Payload>>,
}

impl MessageBody for HoldingBody {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_next(cx)
    }
}
