//! auth's outbox: `UserRegistered` is written here in the registration's transaction.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        messaging::migration::v1::create_outbox(manager).await
    }
}
