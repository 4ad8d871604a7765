//! The pending rows of payments'' outbox get an index of their own
//! (`messaging::migration::v4`), so the relay's claim reads only them, however many
//! dispatched rows the outbox keeps.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        messaging::migration::v4::index_outbox_claims(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        messaging::migration::v4::drop_outbox_claims_index(manager).await
    }
}
