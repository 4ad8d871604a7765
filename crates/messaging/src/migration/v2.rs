//! Version 2 of the `inbox` table: `handled_at`, when the handler's transaction committed.
//!
//! An inbox row is handled in two steps: the handler's transaction, then the effects that
//! must wait for its commit (sending a message). `handled_at` tells them apart, so a row
//! parked in the second step is retried from there, without running its handler again.
//!
//! **Frozen**, like [`v1`](super::v1): migrations that ran call it, so it must issue the same
//! statements forever (the snapshot test below checks). A later change is a `v3`.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// Adds `inbox.handled_at`; every consuming context calls it from a migration of its own.
pub async fn alter_inbox(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .alter_table(
            Table::alter()
                .table(Inbox::Table)
                .add_column(timestamp_with_time_zone_null(Inbox::HandledAt))
                .to_owned(),
        )
        .await
}

#[derive(DeriveIden)]
enum Inbox {
    Table,
    HandledAt,
}

#[cfg(test)]
mod tests {
    use sea_orm::DatabaseBackend;
    use sea_orm_migration::SchemaManager;

    use super::*;
    use crate::migration::recording;

    /// The statements v2 issues on each backend, recorded once. If this test fails, a
    /// frozen migration changed: revert it and write a `v3` instead.
    #[tokio::test]
    async fn version_2_is_frozen() {
        for backend in [DatabaseBackend::Postgres, DatabaseBackend::Sqlite] {
            let db = recording::connection(backend);
            let manager = SchemaManager::new(&db);
            alter_inbox(&manager).await.expect("inbox statements");
            insta::assert_snapshot!(format!("{backend:?}"), recording::statements(db));
        }
    }
}
