//! One runner per order, and a recovery sweep that cannot be jammed: a lease on each order
//! (who drives its checkout, until when) and the sweep's bookkeeping (attempts, when to try
//! again, parked and why).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite adds one column per ALTER TABLE.
        let columns = [
            // The runner that holds the order, and until when; a runner that dies lets its
            // lease expire, so another can take over, never while it is alive.
            uuid_null(Orders::RunnerId),
            timestamp_with_time_zone_null(Orders::LeaseUntil),
            // Runs of the checkout that ended without finishing it.
            integer(Orders::Attempts).default(0).to_owned(),
            // When the recovery sweep may run it again; null means at once.
            timestamp_with_time_zone_null(Orders::NextAttemptAt),
            // Set when the sweep gave up after its last attempt; an administrator replays it.
            timestamp_with_time_zone_null(Orders::ParkedAt),
            // Why the last run did not finish.
            text_null(Orders::LastError),
        ];
        for column in columns {
            manager
                .alter_table(
                    Table::alter()
                        .table(Orders::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("orders_recovery_idx")
                    .table(Orders::Table)
                    .col(Orders::Status)
                    .col(Orders::ParkedAt)
                    .col(Orders::NextAttemptAt)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Orders {
    Table,
    Status,
    RunnerId,
    LeaseUntil,
    Attempts,
    NextAttemptAt,
    ParkedAt,
    LastError,
}
