//! Migrations of the catalog context. They run on catalog's own connection, so every table
//! lands in catalog's schema (or SQLite file) and the history table beside them.

use sea_orm_migration::prelude::*;

mod m0001_create_products_and_stock;
mod m0002_add_folded_search_text;

#[derive(Debug)]
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_create_products_and_stock::Migration),
            Box::new(m0002_add_folded_search_text::Migration),
        ]
    }
}
