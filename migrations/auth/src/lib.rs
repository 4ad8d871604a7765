//! Migrations of the auth context. They run on auth's own connection, so every table lands
//! in auth's schema (or SQLite file) and the history table beside them.

use sea_orm_migration::prelude::*;

mod m0001_create_users;
mod m0002_create_outbox;
mod m0003_outbox_claim_index;

#[derive(Debug)]
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_create_users::Migration),
            Box::new(m0002_create_outbox::Migration),
            Box::new(m0003_outbox_claim_index::Migration),
        ]
    }
}
