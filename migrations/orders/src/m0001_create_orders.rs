//! Orders, their lines (snapshots of what was bought, at what price) and orders' outbox.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const STATUSES: [&str; 8] = [
    "pending",
    "stock_reserved",
    "payment_captured",
    "confirmed",
    "rejected",
    "payment_failed",
    "cancelling",
    "cancelled",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Orders::Table)
                    .col(uuid(Orders::Id).primary_key())
                    .col(uuid(Orders::CustomerId))
                    .col(string_len(Orders::IdempotencyKey, 200))
                    // Hex SHA-256 of the request: same key with another body is refused.
                    .col(char_len(Orders::RequestHash, 64))
                    .col(
                        string_len(Orders::Status, 20)
                            .check(Expr::col(Orders::Status).is_in(STATUSES)),
                    )
                    .col(
                        big_integer(Orders::TotalMinor).check(Expr::col(Orders::TotalMinor).gte(0)),
                    )
                    .col(char_len(Orders::Currency, 3))
                    // The shipping address as the customer gave it, a JSON snapshot.
                    .col(text(Orders::ShippingAddress))
                    // Kept so an interrupted checkout can charge on the next start.
                    .col(string_len(Orders::PaymentToken, 64))
                    .col(string_len_null(Orders::FailureReason, 64))
                    .col(timestamp_with_time_zone(Orders::CreatedAt))
                    .col(timestamp_with_time_zone(Orders::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("orders_customer_idempotency_key")
                    .table(Orders::Table)
                    .col(Orders::CustomerId)
                    .col(Orders::IdempotencyKey)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("orders_customer_created_idx")
                    .table(Orders::Table)
                    .col(Orders::CustomerId)
                    .col(Orders::CreatedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("orders_status_updated_idx")
                    .table(Orders::Table)
                    .col(Orders::Status)
                    .col(Orders::UpdatedAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(OrderLines::Table)
                    .col(uuid(OrderLines::OrderId))
                    .col(integer(OrderLines::LineNo))
                    .col(uuid(OrderLines::ProductId))
                    .col(string_len(OrderLines::Sku, 64))
                    .col(string_len(OrderLines::Name, 200))
                    .col(
                        big_integer(OrderLines::UnitPriceMinor)
                            .check(Expr::col(OrderLines::UnitPriceMinor).gte(0)),
                    )
                    .col(integer(OrderLines::Quantity).check(Expr::col(OrderLines::Quantity).gt(0)))
                    .primary_key(
                        Index::create()
                            .col(OrderLines::OrderId)
                            .col(OrderLines::LineNo),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(OrderLines::Table, OrderLines::OrderId)
                            .to(Orders::Table, Orders::Id),
                    )
                    .to_owned(),
            )
            .await?;

        messaging::migration::v1::create_outbox(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(OrderLines::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Orders::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Orders {
    Table,
    Id,
    CustomerId,
    IdempotencyKey,
    RequestHash,
    Status,
    TotalMinor,
    Currency,
    ShippingAddress,
    PaymentToken,
    FailureReason,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum OrderLines {
    Table,
    OrderId,
    LineNo,
    ProductId,
    Sku,
    Name,
    UnitPriceMinor,
    Quantity,
}
