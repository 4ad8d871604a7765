//! orders on its own, on SQLite and Postgres, with in-memory stand-ins for the catalog and
//! payments ports. (Checkout against the real contexts is tested in the workspace's
//! `tests/`.) The stand-ins count calls, so the tests can check that composing an order
//! detail costs one call per context, not one per line.

mod doubles;
mod orders;
mod runners;
