//! Where a request's work on the stores runs: the **store runtime**.
//!
//! actix-web serves each HTTP worker on a single-threaded tokio runtime of its own; the
//! process's background work (event delivery, the checkout sweep, reconciliation) runs on its
//! main runtime. A pooled database connection belongs to the runtime that opened it: its
//! socket is watched by that runtime's event loop, and a task on another runtime that awaits
//! it is woken from there, after that loop's next turn and across threads. When requests and
//! background work both opened connections, most round trips crossed between runtimes, each
//! waiting for a busy worker to come round (docs/PERFORMANCE.md, "Which runtime a connection
//! lives on").
//!
//! The rule: **a handler runs its service call on the store runtime**, the runtime the
//! composition root built the contexts on and registers here ([`StoreRuntime::new`] as app
//! data). So every connection is opened, used and woken on one runtime, the one the background
//! work runs on too; the HTTP worker keeps what is HTTP (extracting, answering, a cached page).
//! Without a registered runtime (a context's own route tests) the work runs in place.

use std::future::Future;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use futures::future::{Ready, ready};
use tokio::runtime::Handle;
use tracing::Instrument;

use crate::error::HttpError;

/// The runtime that owns the process's database connections; an extractor for handlers.
#[derive(Debug, Clone)]
pub struct StoreRuntime(Option<Handle>);

impl StoreRuntime {
    /// The runtime handlers hand their work to: register it with `App::app_data`.
    pub fn new(handle: Handle) -> Self {
        Self(Some(handle))
    }

    /// The runtime registered for this request's app, or "in place" when there is none.
    pub fn of(request: &HttpRequest) -> Self {
        request
            .app_data::<StoreRuntime>()
            .cloned()
            .unwrap_or(Self(None))
    }

    /// Runs a service call on the store runtime, within the request's span, and answers its
    /// result; its error becomes the HTTP error it maps to. The call runs to its end even if
    /// the client hangs up (the task is not cancelled with the request).
    pub async fn run<F, T, E>(&self, work: F) -> Result<T, HttpError>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
        HttpError: From<E>,
    {
        Ok(self.run_any(work).await??)
    }

    /// Runs any future on the store runtime, within the request's span. A panic in it is
    /// logged and answered `500 internal`, as is a runtime that is shutting down.
    pub async fn run_any<F>(&self, work: F) -> Result<F::Output, HttpError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let work = work.in_current_span();
        match &self.0 {
            None => Ok(work.await),
            Some(handle) => handle.spawn(work).await.map_err(|error| {
                tracing::error!(error = %error, "a request's work on the store runtime did not finish");
                HttpError::internal()
            }),
        }
    }
}

impl FromRequest for StoreRuntime {
    type Error = HttpError;
    type Future = Ready<Result<Self, HttpError>>;

    fn from_request(request: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        ready(Ok(Self::of(request)))
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::StatusCode;
    use actix_web::test::TestRequest;
    use actix_web::{ResponseError, web};

    use super::*;

    /// A two-thread runtime whose threads are named, so that a future can tell where it ran.
    fn store_runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("store-runtime")
            .enable_all()
            .build()
            .unwrap()
    }

    fn thread_name() -> Option<String> {
        std::thread::current().name().map(str::to_owned)
    }

    #[actix_web::test]
    async fn work_runs_on_the_registered_runtime_and_its_error_maps_to_http() {
        let store = store_runtime();
        let request = TestRequest::default()
            .app_data(StoreRuntime::new(store.handle().clone()))
            .to_http_request();
        let runtime = StoreRuntime::extract(&request).await.unwrap();

        let ran_on = runtime
            .run(async { Ok::<_, HttpError>(thread_name()) })
            .await
            .unwrap();
        assert_eq!(ran_on.as_deref(), Some("store-runtime"));

        let refused = runtime
            .run(async { Err::<(), _>(HttpError::transport(StatusCode::CONFLICT, "busy", "busy")) })
            .await
            .unwrap_err();
        assert_eq!(refused.status_code(), StatusCode::CONFLICT);
        store.shutdown_background();
    }

    #[actix_web::test]
    async fn a_panic_in_the_work_is_a_500_not_a_lost_worker() {
        let store = store_runtime();
        let runtime = StoreRuntime::new(store.handle().clone());
        let answer = runtime
            .run_any(async {
                if thread_name().as_deref() == Some("store-runtime") {
                    panic!("a bug in a service");
                }
            })
            .await;
        assert_eq!(
            answer.unwrap_err().status_code(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        store.shutdown_background();
    }

    #[actix_web::test]
    async fn without_a_registered_runtime_the_work_runs_in_place() {
        let request = TestRequest::default()
            .app_data(web::Data::new(()))
            .to_http_request();
        let here = thread_name();
        let ran_on = StoreRuntime::of(&request)
            .run_any(async { thread_name() })
            .await
            .unwrap();
        assert_eq!(ran_on, here);
    }
}
