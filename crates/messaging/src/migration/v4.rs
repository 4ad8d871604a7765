//! Version 4: partial indexes for the claims. The relay claims pending outbox rows, a
//! consumer its pending and handled inbox rows, oldest first, each only if no earlier row of
//! its aggregate is unfinished; finished rows stay for the retention period (a week by
//! default), so under load the tables are mostly rows no claim wants.
//!
//! - `*_claim_idx` hold only the claimable rows, in claim order: a claim reads those.
//! - `*_blocking_idx` hold only the unfinished rows, by aggregate: the "is an earlier row of
//!   this aggregate unfinished?" lookup reads those. Without it, on a young table whose
//!   statistics still say "tiny", Postgres looked earlier rows up by consumer alone and read
//!   every row of the inbox per candidate (6 to 86 ms per claim during a checkout load).
//!
//! The claims write their status conditions as literals (`store::INBOX_CLAIMABLE`,
//! `store::INBOX_UNFINISHED`, ...) so that Postgres can prove they imply these predicates;
//! SQLite matches them the same way.
//!
//! **Frozen**, like [`v1`](super::v1) to [`v3`](super::v3): a later change is a `v5`.

use sea_orm_migration::prelude::*;

/// The claimable rows of every consumer's inbox, by consumer and sequence; every consuming
/// context calls it from a migration of its own.
pub async fn index_inbox_claims(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let db = manager.get_connection();
    db.execute_unprepared(
        "CREATE INDEX inbox_claim_idx ON inbox (consumer, seq) \
         WHERE status IN ('pending', 'handled')",
    )
    .await?;
    db.execute_unprepared(
        "CREATE INDEX inbox_blocking_idx ON inbox (consumer, aggregate_id, seq) \
         WHERE status IN ('pending', 'handled', 'failed')",
    )
    .await
    .map(drop)
}

/// The pending rows of a publisher's outbox, by sequence; every publishing context calls it
/// from a migration of its own.
pub async fn index_outbox_claims(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let db = manager.get_connection();
    db.execute_unprepared("CREATE INDEX outbox_claim_idx ON outbox (seq) WHERE status = 'pending'")
        .await?;
    db.execute_unprepared(
        "CREATE INDEX outbox_blocking_idx ON outbox (aggregate_id, seq) \
         WHERE status IN ('pending', 'failed')",
    )
    .await
    .map(drop)
}

/// Drops the inbox's indexes of v4 (a migration's `down`).
pub async fn drop_inbox_claims_index(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    for name in ["inbox_claim_idx", "inbox_blocking_idx"] {
        manager
            .drop_index(Index::drop().name(name).to_owned())
            .await?;
    }
    Ok(())
}

/// Drops the outbox's indexes of v4 (a migration's `down`).
pub async fn drop_outbox_claims_index(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    for name in ["outbox_claim_idx", "outbox_blocking_idx"] {
        manager
            .drop_index(Index::drop().name(name).to_owned())
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use sea_orm::DatabaseBackend;
    use sea_orm_migration::SchemaManager;

    use super::*;
    use crate::migration::recording;

    /// The statements v4 issues on each backend, recorded once. If this test fails, a
    /// frozen migration changed: revert it and write a `v5` instead.
    #[tokio::test]
    async fn version_4_is_frozen() {
        for backend in [DatabaseBackend::Postgres, DatabaseBackend::Sqlite] {
            let db = recording::connection(backend);
            let manager = SchemaManager::new(&db);
            index_inbox_claims(&manager).await.expect("inbox index");
            index_outbox_claims(&manager).await.expect("outbox index");
            insta::assert_snapshot!(format!("{backend:?}"), recording::statements(db));
        }
    }
}
