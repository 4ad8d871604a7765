//! The shop split across processes, on loopback: the `shop` binary started as separate
//! `shop serve --contexts ...` processes that call each other through the generated adapters
//! (docs/EXTRACTION.md).
//!
//! - `journey`: the black-box checkout journey against the shop with catalog and payments
//!   each in a process of its own, on Postgres and on SQLite; request ids, traces, readiness
//!   and metrics across the hops; the internal listener's credential.
//! - `faults`: payments killed during a stream of checkouts, catalog stalled past the
//!   deadline, the shop killed mid-checkout; notifications and NATS killed and restarted, the
//!   shop killed between publishing an event and marking it.
//! - `ports`: every port's contract suite through the generated client against these
//!   processes (the suites' run (c); runs (a) and (b) are in `tests/api/ports.rs`).
//! - `routing`: the strangler fig: a share of payments' public routes moved to a payments
//!   process and back while the shop runs.

mod collector;
mod faults;
mod harness;
mod journey;
mod ports;
mod routing;
