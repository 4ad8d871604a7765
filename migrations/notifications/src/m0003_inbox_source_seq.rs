//! The inbox learns each event's sequence in its publisher's outbox
//! (`messaging::migration::v3`), so that an aggregate's events are handled in the order they
//! were published, however they arrive through the broker.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        messaging::migration::v3::alter_inbox(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("inbox"))
                    .drop_column(Alias::new("source_seq"))
                    .to_owned(),
            )
            .await
    }
}
