//! Table definitions for the contexts' own migrations: `v1::create_outbox` then
//! `v4::index_outbox_claims` in every publishing context; `v1::create_inbox`,
//! `v2::alter_inbox`, `v3::alter_inbox` then `v4::index_inbox_claims` in every consuming
//! context.
//!
//! Versioned, because a migration that ran once must do the same thing forever: a migration
//! calls a frozen version (`v1`, `v2`), never "the current" tables. A change to the tables
//! adds a version with just that change, and a new migration in each context calls it.

pub mod v1;
pub mod v2;
pub mod v3;
pub mod v4;
