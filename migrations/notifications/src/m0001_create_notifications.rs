//! Recipients (notifications' own model of a customer), the messages sent to them, and the
//! inbox the handled events are recorded in.
//!
//! `(event_id, recipient_id)` is unique: one event gives a recipient at most one message, however
//! often it is delivered, even after its inbox row has been purged.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Recipients::Table)
                    .col(uuid(Recipients::UserId).primary_key())
                    // Free text: the limits are auth's to decide, and an event that does not
                    // fit here would be retried forever.
                    .col(text(Recipients::Email))
                    .col(text(Recipients::DisplayName))
                    .col(timestamp_with_time_zone(Recipients::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Notifications::Table)
                    .col(uuid(Notifications::Id).primary_key())
                    .col(uuid(Notifications::EventId))
                    .col(uuid(Notifications::RecipientId))
                    .col(string_len(Notifications::Kind, 32).check(
                        Expr::col(Notifications::Kind).is_in([
                            "welcome",
                            "order_confirmed",
                            "payment_failed",
                            "order_cancelled",
                        ]),
                    ))
                    .col(string_len(Notifications::Channel, 16))
                    .col(text(Notifications::Address))
                    .col(text(Notifications::Subject))
                    .col(text(Notifications::Body))
                    .col(timestamp_with_time_zone(Notifications::CreatedAt))
                    .col(timestamp_with_time_zone_null(Notifications::SentAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Notifications::Table, Notifications::RecipientId)
                            .to(Recipients::Table, Recipients::UserId),
                    )
                    .to_owned(),
            )
            .await?;
        // Exactly one notification per (event, recipient): the handler's idempotency key.
        manager
            .create_index(
                Index::create()
                    .name("notifications_event_recipient_key")
                    .table(Notifications::Table)
                    .col(Notifications::EventId)
                    .col(Notifications::RecipientId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // A recipient's messages, newest first.
        manager
            .create_index(
                Index::create()
                    .name("notifications_recipient_created_idx")
                    .table(Notifications::Table)
                    .col(Notifications::RecipientId)
                    .col(Notifications::CreatedAt)
                    .to_owned(),
            )
            .await?;

        messaging::migration::v1::create_inbox(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Alias::new("inbox").into_iden(),
            Notifications::Table.into_iden(),
            Recipients::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Recipients {
    Table,
    UserId,
    Email,
    DisplayName,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Notifications {
    Table,
    Id,
    EventId,
    RecipientId,
    Kind,
    Channel,
    Address,
    Subject,
    Body,
    CreatedAt,
    SentAt,
}
