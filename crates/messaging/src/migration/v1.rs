//! Version 1 of the `outbox` and `inbox` tables, as the contexts' migrations create them.
//!
//! **Frozen.** Migrations that already ran on some database call these functions, so they
//! must create exactly what they created then, forever: change nothing here, not even an
//! index name. A later change to the tables is a `v2` module with the *changes* (an
//! `alter_outbox` say), called from a new migration in each context. The snapshot test below
//! fails on any change to the statements these functions issue.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub async fn create_outbox(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Outbox::Table)
                .col(big_pk_auto(Outbox::Seq))
                .col(uuid_uniq(Outbox::Id))
                .col(string_len(Outbox::Name, 128))
                .col(string_len(Outbox::AggregateId, 128))
                .col(text(Outbox::Payload))
                .col(timestamp_with_time_zone(Outbox::OccurredAt))
                .col(string_len(Outbox::Status, 16))
                .col(integer(Outbox::Attempts).default(0))
                .col(timestamp_with_time_zone(Outbox::NextAttemptAt))
                .col(text_null(Outbox::LastError))
                .col(timestamp_with_time_zone_null(Outbox::DispatchedAt))
                .to_owned(),
        )
        .await?;
    manager
        .create_index(
            Index::create()
                .name("outbox_due_idx")
                .table(Outbox::Table)
                .col(Outbox::Status)
                .col(Outbox::NextAttemptAt)
                .to_owned(),
        )
        .await?;
    manager
        .create_index(
            Index::create()
                .name("outbox_aggregate_idx")
                .table(Outbox::Table)
                .col(Outbox::AggregateId)
                .col(Outbox::Seq)
                .to_owned(),
        )
        .await
}

pub async fn create_inbox(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Inbox::Table)
                .col(big_pk_auto(Inbox::Seq))
                .col(uuid_uniq(Inbox::Id))
                .col(uuid(Inbox::EventId))
                .col(string_len(Inbox::Consumer, 128))
                .col(string_len(Inbox::Name, 128))
                .col(string_len(Inbox::AggregateId, 128))
                .col(text(Inbox::Payload))
                .col(timestamp_with_time_zone(Inbox::OccurredAt))
                .col(string_len(Inbox::Status, 16))
                .col(integer(Inbox::Attempts).default(0))
                .col(timestamp_with_time_zone(Inbox::NextAttemptAt))
                .col(text_null(Inbox::LastError))
                .col(timestamp_with_time_zone(Inbox::ReceivedAt))
                .col(timestamp_with_time_zone_null(Inbox::ProcessedAt))
                .to_owned(),
        )
        .await?;
    // One row per (event, consumer): the deduplication the whole design rests on.
    manager
        .create_index(
            Index::create()
                .name("inbox_event_consumer_key")
                .table(Inbox::Table)
                .col(Inbox::EventId)
                .col(Inbox::Consumer)
                .unique()
                .to_owned(),
        )
        .await?;
    manager
        .create_index(
            Index::create()
                .name("inbox_due_idx")
                .table(Inbox::Table)
                .col(Inbox::Consumer)
                .col(Inbox::Status)
                .col(Inbox::NextAttemptAt)
                .to_owned(),
        )
        .await?;
    manager
        .create_index(
            Index::create()
                .name("inbox_aggregate_idx")
                .table(Inbox::Table)
                .col(Inbox::Consumer)
                .col(Inbox::AggregateId)
                .col(Inbox::Seq)
                .to_owned(),
        )
        .await
}

#[derive(DeriveIden)]
enum Outbox {
    Table,
    Seq,
    Id,
    Name,
    AggregateId,
    Payload,
    OccurredAt,
    Status,
    Attempts,
    NextAttemptAt,
    LastError,
    DispatchedAt,
}

#[derive(DeriveIden)]
enum Inbox {
    Table,
    Seq,
    Id,
    EventId,
    Consumer,
    Name,
    AggregateId,
    Payload,
    OccurredAt,
    Status,
    Attempts,
    NextAttemptAt,
    LastError,
    ReceivedAt,
    ProcessedAt,
}

#[cfg(test)]
mod tests {
    use sea_orm::DatabaseBackend;
    use sea_orm_migration::SchemaManager;

    use super::*;
    use crate::migration::recording;

    /// The statements v1 issues on each backend, recorded once. If this test fails, a
    /// frozen migration changed: revert it and write a `v2` instead.
    #[tokio::test]
    async fn version_1_is_frozen() {
        for backend in [DatabaseBackend::Postgres, DatabaseBackend::Sqlite] {
            let db = recording::connection(backend);
            let manager = SchemaManager::new(&db);
            create_outbox(&manager).await.expect("outbox statements");
            create_inbox(&manager).await.expect("inbox statements");
            insta::assert_snapshot!(format!("{backend:?}"), recording::statements(db));
        }
    }
}
