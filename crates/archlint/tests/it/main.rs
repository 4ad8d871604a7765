//! Integration tests of archlint: one fixture workspace per rule under `tests/fixtures/`, with
//! snapshots of the diagnostics, plus the command line, the baseline, the graph and the real
//! workspace.

mod baseline;
mod cli;
mod config;
mod cycles;
mod data;
mod deps;
mod escapes;
mod graph;
mod ports;
mod support;
mod workspace;
