//! Products, their stock levels, and stock reservations keyed by order.
//!
//! Stock invariants live in the schema as well as in the code: `CHECK` constraints make a
//! negative `available` or `reserved` impossible even for a buggy statement.

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
                    .table(Products::Table)
                    .col(uuid(Products::Id).primary_key())
                    .col(string_len_uniq(Products::Sku, 64))
                    .col(string_len(Products::Name, 200))
                    .col(text(Products::Description))
                    .col(
                        big_integer(Products::PriceMinor)
                            .check(Expr::col(Products::PriceMinor).gte(0)),
                    )
                    .col(char_len(Products::Currency, 3))
                    .col(string_len(Products::Category, 64))
                    .col(boolean(Products::Active))
                    .col(timestamp_with_time_zone(Products::CreatedAt))
                    .col(timestamp_with_time_zone(Products::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("products_category_idx")
                    .table(Products::Table)
                    .col(Products::Category)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Stock::Table)
                    .col(uuid(Stock::ProductId).primary_key())
                    .col(big_integer(Stock::Available).check(Expr::col(Stock::Available).gte(0)))
                    .col(big_integer(Stock::Reserved).check(Expr::col(Stock::Reserved).gte(0)))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Stock::Table, Stock::ProductId)
                            .to(Products::Table, Products::Id),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Reservations::Table)
                    .col(uuid(Reservations::OrderId).primary_key())
                    .col(string_len(Reservations::Status, 16).check(
                        Expr::col(Reservations::Status).is_in([
                            "reserved",
                            "committed",
                            "released",
                        ]),
                    ))
                    .col(timestamp_with_time_zone(Reservations::CreatedAt))
                    .col(timestamp_with_time_zone(Reservations::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ReservationLines::Table)
                    .col(uuid(ReservationLines::OrderId))
                    .col(uuid(ReservationLines::ProductId))
                    .col(
                        big_integer(ReservationLines::Quantity)
                            .check(Expr::col(ReservationLines::Quantity).gt(0)),
                    )
                    .primary_key(
                        Index::create()
                            .col(ReservationLines::OrderId)
                            .col(ReservationLines::ProductId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(ReservationLines::Table, ReservationLines::OrderId)
                            .to(Reservations::Table, Reservations::OrderId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(ReservationLines::Table, ReservationLines::ProductId)
                            .to(Products::Table, Products::Id),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            ReservationLines::Table.into_iden(),
            Reservations::Table.into_iden(),
            Stock::Table.into_iden(),
            Products::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Products {
    Table,
    Id,
    Sku,
    Name,
    Description,
    PriceMinor,
    Currency,
    Category,
    Active,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Stock {
    Table,
    ProductId,
    Available,
    Reserved,
}

#[derive(DeriveIden)]
enum Reservations {
    Table,
    OrderId,
    Status,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ReservationLines {
    Table,
    OrderId,
    ProductId,
    Quantity,
}
