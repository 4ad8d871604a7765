//! The `shop` binary's library: the composition root.
//!
//! `main.rs` only calls [`cli::run`]. Everything else lives here so tests can start the
//! whole shop in-process ([`startup::Application`]), exactly as the binary does.
//!
//! - `settings`: layered configuration; `placement`: which contexts this process runs and
//!   where the others live; `telemetry`: the tracing subscriber;
//! - `contexts`: opens each context's store and assembles the contexts (the only place that
//!   names implementation crates);
//! - `startup`: the HTTP server and the background work; `ops`: health and readiness;
//!   `metrics`: `/metrics` for Prometheus;
//!   `admin`: parked events, their replay and their discard; `routing`: public routes sent
//!   to the process a context moved to (strangler fig); `openapi`: the merged document;
//!   `console`: `/console`, the administrators' view of the contexts at work;
//! - `cli`: `serve`, `migrate`, `admin create`.

pub mod admin;
pub mod cli;
pub mod console;
pub mod contexts;
pub mod metrics;
pub mod openapi;
pub mod ops;
pub mod placement;
pub mod routing;
pub mod settings;
pub mod signing_key;
pub mod startup;
pub mod telemetry;

pub use contexts::{Contexts, Options};
pub use settings::Settings;
pub use startup::Application;
