//! Reconciliation: what payments still has to ask the provider, and refunds it still has to
//! get confirmed.
//!
//! A charge whose answer payments did not hear (a timeout, a failure on the way back, a
//! crash) is due for a lookup at `reconcile_at`; `reconcile_attempts` counts the lookups that
//! did not settle it (they back off), and `reconcile_claim` names the sweep that holds the
//! current lookup, so that two processes never record two answers. A refund without a
//! provider reference is retried from `retry_at`, `attempts` times so far.
//!
//! Rows written before this migration: a pending payment, or a voided one that had been
//! charged (a voided tombstone has an empty fingerprint), is due at once; a refund the
//! provider never confirmed is retried at once.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time.
        for column in [
            timestamp_with_time_zone_null(Payments::ReconcileAt),
            integer(Payments::ReconcileAttempts).default(0).to_owned(),
            uuid_null(Payments::ReconcileClaim),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Payments::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        for column in [
            timestamp_with_time_zone_null(Refunds::RetryAt),
            integer(Refunds::Attempts).default(0).to_owned(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Refunds::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("payments_reconcile_idx")
                    .table(Payments::Table)
                    .col(Payments::ReconcileAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("refunds_retry_idx")
                    .table(Refunds::Table)
                    .col(Refunds::RetryAt)
                    .to_owned(),
            )
            .await?;

        let charged_without_answer = Cond::any()
            .add(Expr::col(Payments::Status).eq("pending"))
            .add(
                Expr::col(Payments::Status)
                    .eq("voided")
                    .and(Expr::col(Payments::Fingerprint).ne("")),
            );
        manager
            .exec_stmt(
                Query::update()
                    .table(Payments::Table)
                    .value(Payments::ReconcileAt, Expr::col(Payments::UpdatedAt))
                    .cond_where(charged_without_answer)
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::update()
                    .table(Refunds::Table)
                    .value(Refunds::RetryAt, Expr::col(Refunds::CreatedAt))
                    .and_where(Expr::col(Refunds::ProviderReference).is_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (table, index) in [
            (Payments::Table.into_iden(), "payments_reconcile_idx"),
            (Refunds::Table.into_iden(), "refunds_retry_idx"),
        ] {
            manager
                .drop_index(Index::drop().name(index).table(table).to_owned())
                .await?;
        }
        for column in [
            Payments::ReconcileAt,
            Payments::ReconcileAttempts,
            Payments::ReconcileClaim,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Payments::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        for column in [Refunds::RetryAt, Refunds::Attempts] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Refunds::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Payments {
    Table,
    Status,
    Fingerprint,
    UpdatedAt,
    ReconcileAt,
    ReconcileAttempts,
    ReconcileClaim,
}

#[derive(DeriveIden)]
enum Refunds {
    Table,
    ProviderReference,
    CreatedAt,
    RetryAt,
    Attempts,
}
