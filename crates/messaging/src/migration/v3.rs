//! Version 3 of the `inbox` table: `source_seq`, the event's sequence in its publisher's
//! outbox.
//!
//! The events of one aggregate come from one publisher, whose outbox numbers them in the
//! order they were written. With events arriving through a broker, arrival order is not a
//! promise; `source_seq` is, so the inbox handles an aggregate's events by it.
//!
//! **Frozen**, like [`v1`](super::v1) and [`v2`](super::v2): a later change is a `v4`.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// Adds `inbox.source_seq`; every consuming context calls it from a migration of its own.
pub async fn alter_inbox(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .alter_table(
            Table::alter()
                .table(Inbox::Table)
                .add_column(big_integer_null(Inbox::SourceSeq))
                .to_owned(),
        )
        .await
}

#[derive(DeriveIden)]
enum Inbox {
    Table,
    SourceSeq,
}

#[cfg(test)]
mod tests {
    use sea_orm::DatabaseBackend;
    use sea_orm_migration::SchemaManager;

    use super::*;
    use crate::migration::recording;

    /// The statements v3 issues on each backend, recorded once. If this test fails, a
    /// frozen migration changed: revert it and write a `v4` instead.
    #[tokio::test]
    async fn version_3_is_frozen() {
        for backend in [DatabaseBackend::Postgres, DatabaseBackend::Sqlite] {
            let db = recording::connection(backend);
            let manager = SchemaManager::new(&db);
            alter_inbox(&manager).await.expect("inbox statements");
            insta::assert_snapshot!(format!("{backend:?}"), recording::statements(db));
        }
    }
}
