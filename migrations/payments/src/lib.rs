//! Migrations of the payments context. They run on payments' own connection, so every table
//! lands in payments' schema (or SQLite file) and the history table beside them.

use sea_orm_migration::prelude::*;

mod m0001_create_payments;
mod m0002_reconciliation;
mod m0003_outbox_claim_index;

#[derive(Debug)]
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_create_payments::Migration),
            Box::new(m0002_reconciliation::Migration),
            Box::new(m0003_outbox_claim_index::Migration),
        ]
    }
}
