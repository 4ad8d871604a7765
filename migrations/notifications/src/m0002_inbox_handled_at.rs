//! The inbox learns when a row's handler committed (`messaging::migration::v2`), so that the
//! message is sent after the commit and a failed send is retried without handling the event
//! again.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        messaging::migration::v2::alter_inbox(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("inbox"))
                    .drop_column(Alias::new("handled_at"))
                    .to_owned(),
            )
            .await
    }
}
