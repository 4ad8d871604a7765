//! Migrations of the orders context. They run on orders' own connection, so every table
//! lands in orders' schema (or SQLite file) and the history table beside them.

use sea_orm_migration::prelude::*;

mod m0001_create_orders;
mod m0002_checkout_runners;
mod m0003_outbox_claim_index;
mod m0004_in_flight_index;

#[derive(Debug)]
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_create_orders::Migration),
            Box::new(m0002_checkout_runners::Migration),
            Box::new(m0003_outbox_claim_index::Migration),
            Box::new(m0004_in_flight_index::Migration),
        ]
    }
}
