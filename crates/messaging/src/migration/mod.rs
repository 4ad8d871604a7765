//! Table definitions for the contexts' own migrations: `v1::create_outbox` then
//! `v4::index_outbox_claims` in every publishing context; `v1::create_inbox`,
//! `v2::alter_inbox`, `v3::alter_inbox` then `v4::index_inbox_claims` in every consuming
//! context.
//!
//! Versioned, because a migration that ran once must do the same thing forever: a migration
//! calls a frozen version (`v1`, `v2`), never "the current" tables. A change to the tables
//! adds a version with just that change, and a new migration in each context calls it.

pub mod v1;
pub mod v2;
pub mod v3;
pub mod v4;

/// What the frozen-migration tests share: a mock connection of `backend` that accepts any
/// statement, and the SQL a migration sent through it, one statement a line.
#[cfg(test)]
mod recording {
    use sea_orm::{DatabaseBackend, DatabaseConnection, MockDatabase, MockExecResult, Transaction};

    /// A connection that answers every statement (up to 32) with an empty result.
    pub(super) fn connection(backend: DatabaseBackend) -> DatabaseConnection {
        MockDatabase::new(backend)
            .append_exec_results((0..32).map(|_| MockExecResult::default()))
            .into_connection()
    }

    /// The statements `db` received, joined by `;` and a newline (the snapshots' form).
    pub(super) fn statements(db: DatabaseConnection) -> String {
        db.into_transaction_log()
            .into_iter()
            .flat_map(|transaction: Transaction| {
                transaction
                    .statements()
                    .iter()
                    .map(|statement| statement.sql.clone())
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
            .join(";\n")
    }
}
