//! Where pooled connections are opened: a check on the store runtime's rule.
//!
//! A connection belongs to the runtime that opens it (web_kit::runtime has the rule and why:
//! handlers run their store calls on the store runtime, so that no connection lives on an HTTP
//! worker's runtime). The composition root marks each HTTP worker's thread when the worker
//! starts ([`mark_http_worker`]); every pool notes each connection it opens, and one opened
//! on a marked thread is counted and logged. The black-box tests check that a whole journey
//! through the shop opens none there.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

thread_local! {
    static HTTP_WORKER: Cell<bool> = const { Cell::new(false) };
}

static ON_HTTP_WORKERS: AtomicU64 = AtomicU64::new(0);

/// Marks the calling thread as an HTTP worker's: the runtime on it must open no pooled
/// connection. Called by the composition root in each worker's app factory, which actix-web
/// runs on the worker's thread.
pub fn mark_http_worker() {
    HTTP_WORKER.with(|marked| marked.set(true));
}

/// Called by every pool when it has opened a connection.
pub(crate) fn note(context: &str) {
    if HTTP_WORKER.with(Cell::get) {
        ON_HTTP_WORKERS.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            context,
            thread = std::thread::current().name().unwrap_or("unnamed"),
            "a pooled connection was opened on an HTTP worker's runtime: some handler calls \
             its store in place instead of on the store runtime (web_kit::StoreRuntime)"
        );
    }
}

/// How many pooled connections this process opened on an HTTP worker's runtime: zero when
/// every handler keeps the rule.
pub fn on_http_workers() -> u64 {
    ON_HTTP_WORKERS.load(Ordering::Relaxed)
}
