//! The `shop` binary as its users run it: one integration-test binary for the package.
//!
//! - `cli`: a fresh data directory, `shop admin create`, `shop serve`, SIGTERM; placements
//!   and settings refused at start.
//! - `split`: the shop as several `shop serve --contexts ...` processes on loopback.

mod cli;
mod split;
