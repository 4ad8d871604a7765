//! Case-insensitive search on every store: products keep their name and description folded
//! (Unicode case folding and NFKC, done in Rust by the catalog), because SQLite's `lower()`
//! and `LIKE` fold ASCII only, and Postgres' depend on the database's locale.
//!
//! The columns are nullable, and NULL means "not folded yet": SQL cannot fold Unicode the
//! way the catalog does, so the rows that exist when this runs are folded right after the
//! migrations, by `catalog::migrate` (and so are rows written by an older shop during a
//! rolling upgrade, at the next start). A later change to the folding can set the columns
//! back to NULL in a migration of its own to have every row folded again.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time.
        for column in [Products::NameFolded, Products::DescriptionFolded] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Products::Table)
                        .add_column(ColumnDef::new(column).text().null())
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [Products::DescriptionFolded, Products::NameFolded] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Products::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Products {
    Table,
    NameFolded,
    DescriptionFolded,
}
