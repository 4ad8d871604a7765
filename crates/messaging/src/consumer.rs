//! The consuming side: a named consumer, its inbox, and its handler.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::FutureExt;
use kernel::{EventEnvelope, IntegrationEvent};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, LockBehavior, LockType, Query};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, DatabaseTransaction,
    DbBackend, DbErr, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};
use tracing::Instrument;

use crate::backoff;
use crate::store::{self, DONE, FAILED, HANDLED, INBOX_BLOCKING, PENDING, inbox};

/// Reacts to the events a consumer subscribed to, in two steps.
///
/// `handle` runs inside a transaction on the consumer's own database, and must do all of
/// its database work through `txn`: the work commits together with the "handled" mark, so it
/// happens exactly once however often the event is delivered. (On SQLite the context's pool
/// holds a single connection, which `txn` is using: touching the pool instead would wait
/// forever.) An `Err` rolls the work back and schedules a retry, as does a failure to
/// commit. It must not act on the world outside the database: the transaction may still
/// roll back after it returned.
///
/// `after_commit` runs once that transaction committed, for what is not in the database
/// (sending the message `handle` recorded). See its documentation for its guarantees.
#[async_trait]
pub trait EventHandler: Send + Sync + 'static {
    async fn handle(
        &self,
        event: &EventEnvelope,
        txn: &DatabaseTransaction,
    ) -> Result<(), HandlerError>;

    /// The effects of `event` outside the database, run after `handle`'s transaction
    /// committed; `db` is the consumer's pool (no transaction is open).
    ///
    /// An `Err` schedules it again with backoff, then parks the event (stage
    /// `after_commit`); `handle` never runs again for the event. It runs **at least once**:
    /// a process that dies after it acted but before the bus noted its success leaves it to
    /// run again, by another process once the dead one's claim lapses (`retry_max`). So it
    /// must be idempotent: read from `db` what `handle` recorded and is still to be done, do
    /// it under a stable id (the same message, never a second one), and note it done.
    async fn after_commit(
        &self,
        _event: &EventEnvelope,
        _db: &DatabaseConnection,
    ) -> Result<(), HandlerError> {
        Ok(())
    }
}

/// Why a handler failed; recorded on the inbox row and shown by the admin endpoints.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HandlerError(pub String);

impl HandlerError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// A named consumer: which events it wants, where its inbox lives, who handles them.
#[derive(Clone)]
pub struct Consumer {
    name: String,
    db: DatabaseConnection,
    subscriptions: Vec<&'static str>,
    handler: Arc<dyn EventHandler>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("name", &self.name)
            .field("subscriptions", &self.subscriptions)
            .finish_non_exhaustive()
    }
}

/// Retry policy, shared with the relay.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Retry {
    pub max_attempts: i32,
    pub base: Duration,
    pub max: Duration,
}

impl Consumer {
    /// `name` is stable: it keys this consumer's inbox rows (`notifications`).
    pub fn new(
        name: impl Into<String>,
        db: DatabaseConnection,
        handler: Arc<dyn EventHandler>,
    ) -> Self {
        Self {
            name: name.into(),
            db,
            subscriptions: Vec::new(),
            handler,
        }
    }

    pub fn subscribe<E: IntegrationEvent>(mut self) -> Self {
        self.subscriptions.push(E::NAME);
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    pub fn wants(&self, event_name: &str) -> bool {
        self.subscriptions.contains(&event_name)
    }

    /// The names of the events this consumer subscribed to.
    pub fn subscriptions(&self) -> &[&'static str] {
        &self.subscriptions
    }

    /// Stores a delivered event in this consumer's inbox. Delivering the same event again
    /// is harmless: the (event id, consumer) key keeps one row.
    pub async fn accept(&self, event: &EventEnvelope, now: DateTime<Utc>) -> Result<(), DbErr> {
        self.insert(event, None, now, None).await
    }

    /// Like [`accept`](Self::accept), with the event's sequence in its publisher's outbox:
    /// the events of an aggregate are then handled in that order, whatever order they
    /// arrive in.
    pub async fn accept_from(
        &self,
        event: &EventEnvelope,
        source_seq: i64,
        now: DateTime<Utc>,
    ) -> Result<(), DbErr> {
        self.insert(event, Some(source_seq), now, None).await
    }

    /// Stores an event that could not be delivered in every allowed attempt as parked
    /// (`failed`, stage handling): it holds back its aggregate until an operator retries or
    /// discards it, like an event whose handler kept failing. A row the event already has is
    /// left as it is.
    pub async fn park(
        &self,
        event: &EventEnvelope,
        source_seq: Option<i64>,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<(), DbErr> {
        self.insert(event, source_seq, now, Some(error)).await
    }

    async fn insert(
        &self,
        event: &EventEnvelope,
        source_seq: Option<i64>,
        now: DateTime<Utc>,
        parked: Option<&str>,
    ) -> Result<(), DbErr> {
        let inserted = inbox::ActiveModel {
            id: Set(uuid::Uuid::now_v7()),
            event_id: Set(event.id),
            consumer: Set(self.name.clone()),
            name: Set(event.name.clone()),
            aggregate_id: Set(event.aggregate_id.clone()),
            payload: Set(event.payload.to_string()),
            occurred_at: Set(event.occurred_at),
            status: Set(if parked.is_some() { FAILED } else { PENDING }.to_owned()),
            attempts: Set(0),
            next_attempt_at: Set(now),
            last_error: Set(parked.map(str::to_owned)),
            received_at: Set(now),
            handled_at: Set(None),
            processed_at: Set(None),
            source_seq: Set(source_seq),
            ..Default::default()
        }
        .insert(&self.db)
        .await;
        match inserted {
            Ok(_) => Ok(()),
            Err(error) if db_kit::is_unique_violation(&error) => {
                tracing::debug!(consumer = %self.name, event_id = %event.id, "duplicate delivery ignored");
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    /// Handles up to `batch` due inbox rows, one transaction each; returns how many it
    /// handled (successfully or not).
    pub(crate) async fn process_once(
        &self,
        now: DateTime<Utc>,
        batch: u64,
        retry: Retry,
    ) -> Result<usize, DbErr> {
        let mut count = 0;
        while u64::try_from(count).unwrap_or(u64::MAX) < batch {
            if !self.process_next(now, retry).await? {
                break;
            }
            count += 1;
        }
        Ok(count)
    }

    /// Claims the next due row and takes it as far as it goes: its handler in a transaction
    /// of its own, which also marks the row handled, then, after the commit, its effects.
    /// A failure of the handler, a panic, or a database error on the way (a statement, the
    /// commit itself) rolls that transaction back and counts the attempt in another one, so
    /// a poison event is retried with backoff and then parked, and the other events never
    /// depend on it. A row whose handler committed earlier runs only its effects. Returns
    /// false when nothing was due.
    async fn process_next(&self, now: DateTime<Utc>, retry: Retry) -> Result<bool, DbErr> {
        let txn = self.db.begin().await?;
        let Some(row) = claim(&txn, &self.name, now).await? else {
            txn.commit().await?;
            return Ok(false);
        };
        // While its effects run, a handled row is claimed by this process until `lease`: no
        // other process runs them meanwhile, and if this one dies, another takes over then.
        let lease = now + chrono::Duration::from_std(retry.max).unwrap_or(chrono::Duration::MAX);
        let span = tracing::info_span!("handle_event", consumer = %self.name, event = %row.name, event_id = %row.event_id);
        async {
            let envelope = match store::envelope(
                row.event_id,
                &row.name,
                &row.aggregate_id,
                &row.payload,
                row.occurred_at,
            ) {
                Ok(envelope) => envelope,
                Err(error) => {
                    rollback(txn).await;
                    self.record_failure(&row, database(error), now, retry).await?;
                    return Ok(true);
                }
            };
            if row.status == HANDLED {
                let mut claimed = row.clone().into_active_model();
                claimed.next_attempt_at = Set(lease);
                claimed.update(&txn).await?;
                txn.commit().await?;
            } else if let Err(error) = self.handle_and_commit(txn, &envelope, &row, now, lease).await {
                self.record_failure(&row, error, now, retry).await?;
                return Ok(true);
            }
            let handled = inbox::Model {
                status: HANDLED.to_owned(),
                ..row
            };
            match self.run_after_commit(&envelope).await {
                Ok(()) => {
                    inbox::Entity::update_many()
                        .col_expr(inbox::Column::Status, Expr::value(DONE))
                        .col_expr(inbox::Column::Attempts, Expr::value(handled.attempts + 1))
                        .col_expr(inbox::Column::ProcessedAt, Expr::value(now))
                        .col_expr(inbox::Column::LastError, Expr::value(Option::<String>::None))
                        .filter(inbox::Column::Id.eq(handled.id))
                        .filter(inbox::Column::Status.eq(HANDLED))
                        .exec(&self.db)
                        .await?;
                    metrics::counter!(crate::HANDLED, "consumer" => self.name.clone(), "outcome" => "done")
                        .increment(1);
                }
                Err(error) => self.record_failure(&handled, error, now, retry).await?,
            }
            Ok(true)
        }
        .instrument(span)
        .await
    }

    /// Runs the handler on `txn`, marks `row` handled in it and commits; on any failure rolls
    /// the transaction back and returns the reason.
    async fn handle_and_commit(
        &self,
        txn: DatabaseTransaction,
        envelope: &EventEnvelope,
        row: &inbox::Model,
        now: DateTime<Utc>,
        lease: DateTime<Utc>,
    ) -> Result<(), HandlerError> {
        match self.handle_in(&txn, envelope, row, now, lease).await {
            Ok(()) => txn.commit().await.map_err(database),
            Err(error) => {
                rollback(txn).await;
                Err(error)
            }
        }
    }

    async fn handle_in(
        &self,
        txn: &DatabaseTransaction,
        envelope: &EventEnvelope,
        row: &inbox::Model,
        now: DateTime<Utc>,
        lease: DateTime<Utc>,
    ) -> Result<(), HandlerError> {
        AssertUnwindSafe(self.handler.handle(envelope, txn))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| Err(HandlerError::new("the handler panicked")))?;
        let mut handled = row.clone().into_active_model();
        handled.status = Set(HANDLED.to_owned());
        handled.handled_at = Set(Some(now));
        handled.next_attempt_at = Set(lease);
        handled.update(txn).await.map_err(database)?;
        Ok(())
    }

    async fn run_after_commit(&self, envelope: &EventEnvelope) -> Result<(), HandlerError> {
        AssertUnwindSafe(self.handler.after_commit(envelope, &self.db))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| Err(HandlerError::new("the effects after the commit panicked")))
    }

    /// Counts a failed attempt at `row`, outside the failed transaction: schedules the next
    /// one with backoff, or parks the row after the last. Conditional on the row being as it
    /// was claimed, so an attempt another process recorded meanwhile is not counted twice.
    async fn record_failure(
        &self,
        row: &inbox::Model,
        error: HandlerError,
        now: DateTime<Utc>,
        retry: Retry,
    ) -> Result<(), DbErr> {
        let attempts = row.attempts + 1;
        let parked = attempts >= retry.max_attempts;
        let counted = if parked { "parked" } else { "retry" };
        metrics::counter!(crate::HANDLED, "consumer" => self.name.clone(), "outcome" => counted)
            .increment(1);
        let mut update = inbox::Entity::update_many()
            .col_expr(inbox::Column::Attempts, Expr::value(attempts))
            .col_expr(inbox::Column::LastError, Expr::value(error.0.clone()))
            .filter(inbox::Column::Id.eq(row.id))
            .filter(inbox::Column::Status.eq(row.status.clone()))
            .filter(inbox::Column::Attempts.eq(row.attempts));
        let stage = if row.status == HANDLED {
            "after_commit"
        } else {
            "handling"
        };
        if parked {
            tracing::error!(error = %error, attempts, stage, "event handler failed; parked");
            update = update.col_expr(inbox::Column::Status, Expr::value(FAILED));
        } else {
            tracing::warn!(error = %error, attempts, stage, "event handler failed; will retry");
            update = update.col_expr(
                inbox::Column::NextAttemptAt,
                Expr::value(backoff::next_attempt(now, attempts, retry.base, retry.max)),
            );
        }
        update.exec(&self.db).await?;
        Ok(())
    }
}

fn database(error: DbErr) -> HandlerError {
    HandlerError::new(format!("database: {error}"))
}

/// Rolls a failed attempt's transaction back. If that fails too (the connection is gone),
/// dropping the transaction has already asked for the rollback, and the database discards
/// an unfinished transaction anyway.
async fn rollback(txn: DatabaseTransaction) {
    if let Err(error) = txn.rollback().await {
        tracing::warn!(error = %error, "rolling back a failed attempt failed");
    }
}

/// The oldest due row of one consumer, pending or handled (its effects still to run),
/// skipping any row with an earlier (by its publisher's sequence) unfinished row of the same
/// aggregate (so one
/// aggregate's events are handled, effects included, in order, and a parked one holds back
/// the rest until it is retried or discarded), and on Postgres skipping rows another
/// process holds.
async fn claim(
    txn: &DatabaseTransaction,
    consumer: &str,
    now: DateTime<Utc>,
) -> Result<Option<inbox::Model>, DbErr> {
    let earlier = Alias::new("earlier");
    let blocked = Query::select()
        .expr(Expr::val(1))
        .from_as(inbox::Entity, earlier.clone())
        .and_where(
            Expr::col((earlier.clone(), inbox::Column::Consumer))
                .eq(Expr::col((inbox::Entity, inbox::Column::Consumer))),
        )
        .and_where(
            Expr::col((earlier.clone(), inbox::Column::AggregateId))
                .eq(Expr::col((inbox::Entity, inbox::Column::AggregateId))),
        )
        // Earlier by the publisher's sequence when both rows know it; by arrival otherwise
        // (rows stored before `source_seq` existed, or accepted without it).
        .and_where(Expr::cust(
            "CASE WHEN earlier.source_seq IS NOT NULL AND inbox.source_seq IS NOT NULL \
             THEN earlier.source_seq < inbox.source_seq \
             ELSE earlier.seq < inbox.seq END",
        ))
        .and_where(Expr::col((earlier, inbox::Column::Status)).is_in(INBOX_BLOCKING))
        .to_owned();
    let mut select = inbox::Entity::find()
        .filter(inbox::Column::Consumer.eq(consumer))
        .filter(inbox::Column::Status.is_in([PENDING, HANDLED]))
        .filter(inbox::Column::NextAttemptAt.lte(now))
        .filter(Expr::exists(blocked).not())
        .order_by_asc(inbox::Column::Seq)
        .limit(1);
    if sea_orm::ConnectionTrait::get_database_backend(txn) == DbBackend::Postgres {
        select = select.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    select.one(txn).await
}
