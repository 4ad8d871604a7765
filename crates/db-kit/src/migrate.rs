//! Running a context's migrations against that context's own store.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement, TransactionTrait};
use sea_orm_migration::MigratorTrait;

/// Applies `M`'s pending migrations in one transaction.
///
/// The migration history table lands in the context's own schema (the first and only one on
/// its `search_path`), so each context has its own history. On Postgres a transaction-scoped
/// advisory lock serialises concurrent starts: two `shop` processes booting at once apply
/// each migration exactly once, and a failed migration leaves nothing half-applied.
pub async fn migrate<M: MigratorTrait>(
    db: &DatabaseConnection,
    context: &str,
) -> Result<(), DbErr> {
    let txn = db.begin().await?;
    if db.get_database_backend() == DbBackend::Postgres {
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock(hashtext($1))",
            [format!("shop:migrate:{context}").into()],
        ))
        .await?;
    }
    M::up(&txn, None).await?;
    txn.commit().await?;
    tracing::debug!(context, "migrations applied");
    Ok(())
}
