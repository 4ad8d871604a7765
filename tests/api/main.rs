//! Black-box tests of the whole shop: the real HTTP server on a real database (SQLite and
//! Postgres), driven the way a client would drive it.

mod helpers;

mod abuse;
mod architecture;
mod auth;
mod catalog;
mod catalog_admin;
mod checkout;
mod console;
mod contracts;
mod deploy;
mod errors;
mod events;
mod invariants;
mod operations;
mod ports;
mod reconciliation;
mod recovery;
mod roles;
mod tidy;
