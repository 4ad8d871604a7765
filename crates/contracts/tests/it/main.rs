//! Integration tests of `contracts`: the compatibility rules over JSON pairs, the documents
//! generated from Rust types, `check` and `write` on a fixture repository with snapshots of
//! their diagnostics, the completeness check, and the binary on a copy of the real `-api` crates.

mod check;
mod cli;
mod completeness;
mod generate;
mod rules;
mod shop;
mod support;
