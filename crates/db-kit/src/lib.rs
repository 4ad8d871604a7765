//! Persistence plumbing shared by every context: where a context's data lives and how it
//! gets there.
//!
//! The rule this crate exists for: **a context's connection can only see that context's
//! data.** On the embedded default (SQLite) each context has its own database file. On
//! Postgres each context has its own schema and a pool whose `search_path` is that schema
//! alone; with roles provisioned, the pool can log in as a role that has privileges on that
//! schema only, so reaching into another context's tables fails with a permission error.

mod migrate;
pub mod opened;
mod paging;
mod postgres;
mod store;
pub mod wake;

pub use migrate::migrate;
pub use paging::fetch_page;
pub use store::{Backend, RoleConfig, StoreConfig, StoreError};

use kernel::ContextError;
use sea_orm::{DbErr, SqlErr};

/// True when `error` is a unique-key violation. Contexts turn it into their own conflict
/// error (`email_taken`, `sku_taken`) through this one helper, never by matching messages.
pub fn is_unique_violation(error: &DbErr) -> bool {
    matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

/// Whether a statement failed on a foreign key: it named a row that does not exist.
pub fn is_foreign_key_violation(error: &DbErr) -> bool {
    matches!(
        error.sql_err(),
        Some(SqlErr::ForeignKeyConstraintViolation(_))
    )
}

/// Logs a database failure where it happened (inside the caller's span, so with the
/// operation and its arguments) and turns it into the context's `internal` error.
/// Use as `.map_err(db_kit::internal)`.
pub fn internal<E: ContextError>(error: DbErr) -> E {
    tracing::error!(error = %error, details = ?error, "database operation failed");
    E::internal()
}

/// A row this context just wrote could not be read back: a bug or a broken store, never bad
/// input. Logged here, answered as the context's `internal` error.
/// Use as `.ok_or_else(db_kit::missing_row)`.
pub fn missing_row<E: ContextError>() -> E {
    tracing::error!("a row written by this context could not be read back");
    E::internal()
}
