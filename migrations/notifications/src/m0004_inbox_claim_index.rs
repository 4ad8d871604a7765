//! The claimable rows of notifications' inbox get an index of their own
//! (`messaging::migration::v4`), so a claim reads only them, however many finished rows the
//! inbox keeps.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        messaging::migration::v4::index_inbox_claims(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        messaging::migration::v4::drop_inbox_claims_index(manager).await
    }
}
