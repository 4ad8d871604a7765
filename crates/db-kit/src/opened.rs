//! Where pooled connections are opened: a check on the store runtime's rule.
//!
//! A connection belongs to the runtime that opens it (web_kit::runtime has the rule and why:
//! handlers run their store calls on the store runtime, so that no connection lives on an HTTP
//! worker's runtime). Every pool notes here each connection it opens; one opened on an
//! HTTP worker's thread is counted and logged, and the black-box tests check that a whole
//! journey through the shop opens none there.

use std::sync::atomic::{AtomicU64, Ordering};

/// The name actix-server gives the threads of its workers (`actix-server worker N`), each
/// of which runs a single-threaded runtime of its own.
const HTTP_WORKER_THREAD: &str = "actix-server worker";

static ON_HTTP_WORKERS: AtomicU64 = AtomicU64::new(0);

/// Called by every pool when it has opened a connection.
pub(crate) fn note(context: &str) {
    let thread = std::thread::current();
    if let Some(name) = thread
        .name()
        .filter(|name| name.starts_with(HTTP_WORKER_THREAD))
    {
        ON_HTTP_WORKERS.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            context,
            thread = name,
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
