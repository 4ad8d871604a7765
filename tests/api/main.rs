//! Black-box tests of the whole shop: the real HTTP server on a real database (SQLite and
//! Postgres), driven the way a client would drive it.

mod helpers;

mod architecture;
mod auth;
mod catalog;
mod catalog_admin;
mod errors;
mod operations;
mod roles;
