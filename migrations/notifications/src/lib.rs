//! Migrations of the notifications context. They run on notifications' own connection, so
//! every table lands in notifications' schema (or SQLite file) and the history table beside
//! them.

use sea_orm_migration::prelude::*;

mod m0001_create_notifications;
mod m0002_inbox_handled_at;
mod m0003_inbox_source_seq;
mod m0004_inbox_claim_index;

#[derive(Debug)]
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_create_notifications::Migration),
            Box::new(m0002_inbox_handled_at::Migration),
            Box::new(m0003_inbox_source_seq::Migration),
            Box::new(m0004_inbox_claim_index::Migration),
        ]
    }
}
