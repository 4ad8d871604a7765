//! The consuming side: a named consumer, its inbox, and its handler.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::FutureExt;
use kernel::{EventEnvelope, IntegrationEvent};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, LockBehavior, LockType, OnConflict, Query};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    DatabaseTransaction, DbBackend, DbErr, EntityTrait, IntoActiveModel, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use tracing::Instrument;

use crate::backoff;
use crate::store::{
    self, DONE, FAILED, HANDLED, INBOX_CLAIMABLE, INBOX_UNFINISHED, PENDING, inbox,
};

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

    /// The effects of a batch of events whose handling committed, in the order given: one
    /// result per event, in the same order (a missing result counts as a failure). The
    /// default runs [`after_commit`](Self::after_commit) for each in turn. A handler whose
    /// effects end with a write of their own can override it to write once for the batch
    /// (notifications notes every message it sent in one statement); the guarantees are
    /// `after_commit`'s, event by event: a failed event is retried alone.
    async fn after_commit_batch(
        &self,
        events: &[EventEnvelope],
        db: &DatabaseConnection,
    ) -> Vec<Result<(), HandlerError>> {
        let mut results = Vec::with_capacity(events.len());
        for event in events {
            results.push(self.after_commit(event, db).await);
        }
        results
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

    /// Stores events the relay hands over in one statement: a batch's bookkeeping is one
    /// write. Events already stored (a delivery repeated) are left as they are.
    pub(crate) async fn accept_all(
        &self,
        events: &[(EventEnvelope, i64)],
        now: DateTime<Utc>,
    ) -> Result<(), DbErr> {
        if events.is_empty() {
            return Ok(());
        }
        let rows = events.iter().map(|(event, source_seq)| inbox::ActiveModel {
            id: Set(uuid::Uuid::now_v7()),
            event_id: Set(event.id),
            consumer: Set(self.name.clone()),
            name: Set(event.name.clone()),
            aggregate_id: Set(event.aggregate_id.clone()),
            payload: Set(event.payload.to_string()),
            occurred_at: Set(event.occurred_at),
            status: Set(PENDING.to_owned()),
            attempts: Set(0),
            next_attempt_at: Set(now),
            last_error: Set(None),
            received_at: Set(now),
            handled_at: Set(None),
            processed_at: Set(None),
            source_seq: Set(Some(*source_seq)),
            ..Default::default()
        });
        inbox::Entity::insert_many(rows)
            .on_conflict(
                OnConflict::columns([inbox::Column::EventId, inbox::Column::Consumer])
                    .do_nothing()
                    .to_owned(),
            )
            .try_insert()
            .exec_without_returning(&self.db)
            .await?;
        Ok(())
    }

    /// Handles due inbox rows a batch at a time until none is left or `limit` rows were
    /// taken; returns what it did and when the next row it could not take yet is due.
    pub(crate) async fn process_once(
        &self,
        now: DateTime<Utc>,
        limit: u64,
        retry: Retry,
    ) -> Result<Processed, DbErr> {
        let batch = self
            .process_batch(now, limit, retry, Claim::SkipLocked)
            .await?;
        if !batch.commit_failed || batch.claimed <= 1 {
            return Ok(batch);
        }
        // The batch's commit failed and nobody can tell which event made it fail: take the
        // same rows again one transaction each, so only the guilty one counts an attempt.
        // These claims wait for locks rather than skip them: Postgres answers a failed
        // COMMIT before the aborting backend has released its row locks, so right after
        // the failure the batch's rows may still be locked, by nobody who will keep them,
        // and skipping them would find nothing to retry.
        let mut total = Processed::default();
        for _ in 0..batch.claimed {
            let single = self.process_batch(now, 1, retry, Claim::Wait).await?;
            total.claimed += single.claimed;
            total.more |= single.more;
            total.next_due = earliest(total.next_due, single.next_due);
            if single.claimed == 0 {
                break;
            }
        }
        Ok(total)
    }

    /// One batch: claims up to `limit` due rows in one transaction and runs each one's
    /// handler in a savepoint of it, which also marks the row handled (a handler that fails
    /// is rolled back to its savepoint and its attempt is counted in the same transaction),
    /// commits once, then runs the effects after the commit and marks every row whose
    /// effects succeeded done in one statement. So a batch of n events costs two commits
    /// plus n handlers, where one event at a time cost three per event.
    async fn process_batch(
        &self,
        now: DateTime<Utc>,
        limit: u64,
        retry: Retry,
        how: Claim,
    ) -> Result<Processed, DbErr> {
        let txn = self.db.begin().await?;
        let rows = claim(&txn, &self.name, now, limit, how).await?;
        let claimed = rows.len();
        let claimed_rows = if claimed == 1 {
            rows.clone()
        } else {
            Vec::new()
        };
        // While its effects run, a handled row is claimed by this process until `lease`: no
        // other process runs them meanwhile, and if this one dies, another takes over then.
        let lease = now + chrono::Duration::from_std(retry.max).unwrap_or(chrono::Duration::MAX);
        let mut effects = Vec::new();
        let mut leased = Vec::new();
        for row in rows {
            let span = tracing::info_span!("handle_event", consumer = %self.name, event = %row.name, event_id = %row.event_id);
            let envelope = match store::envelope(
                row.event_id,
                &row.name,
                &row.aggregate_id,
                &row.payload,
                row.occurred_at,
            ) {
                Ok(envelope) => envelope,
                Err(error) => {
                    self.record_failure(&txn, &row, database(error), now, retry)
                        .instrument(span)
                        .await?;
                    continue;
                }
            };
            if row.status == HANDLED {
                leased.push(row.id);
                effects.push((row, envelope));
                continue;
            }
            let savepoint = txn.begin().await?;
            let outcome = match self
                .handle_in(&savepoint, &envelope, &row, now, lease)
                .instrument(span.clone())
                .await
            {
                Ok(()) => savepoint.commit().await.map_err(database),
                Err(error) => {
                    rollback(savepoint).await;
                    Err(error)
                }
            };
            match outcome {
                Ok(()) => effects.push((
                    inbox::Model {
                        status: HANDLED.to_owned(),
                        ..row
                    },
                    envelope,
                )),
                Err(error) => {
                    self.record_failure(&txn, &row, error, now, retry)
                        .instrument(span)
                        .await?;
                }
            }
        }
        if !leased.is_empty() {
            inbox::Entity::update_many()
                .col_expr(inbox::Column::NextAttemptAt, Expr::value(lease))
                .filter(inbox::Column::Id.is_in(leased))
                .exec(&txn)
                .await?;
        }
        let full = u64::try_from(claimed).unwrap_or(u64::MAX) >= limit;
        let more = claimed > 0
            && (full
                || self
                    .unblocked(&txn, effects.iter().map(|(row, _)| row))
                    .await?);
        // The rows whose effects run now are claimed until `lease`, but this process finishes
        // them (or records when to try again) itself: they are not due work to wait for.
        let running: Vec<uuid::Uuid> = effects.iter().map(|(row, _)| row.id).collect();
        let mut next_due = self.next_due(&txn, now, running).await?;
        if let Err(error) = txn.commit().await {
            tracing::warn!(consumer = %self.name, error = %error, claimed, "committing a batch of handlers failed");
            // Alone in its batch, the row is the one that failed it: its attempt counts.
            let mut next_due = None;
            if let [row] = claimed_rows.as_slice() {
                next_due = self
                    .record_failure(&self.db, row, database(error), now, retry)
                    .await?;
            }
            return Ok(Processed {
                claimed,
                more: false,
                next_due,
                commit_failed: true,
            });
        }
        let mut done = Vec::new();
        let (rows, envelopes): (Vec<_>, Vec<_>) = effects.into_iter().unzip();
        let span =
            tracing::info_span!("after_commit", consumer = %self.name, events = envelopes.len());
        let results = self
            .run_after_commit(&envelopes)
            .instrument(span.clone())
            .await;
        let mut results = results.into_iter();
        for row in rows {
            let result = results.next().unwrap_or_else(|| {
                Err(HandlerError::new(
                    "the effects after the commit gave no result for this event",
                ))
            });
            match result {
                Ok(()) => {
                    metrics::counter!(crate::CONSUMED, "consumer" => self.name.clone(), "event" => row.name.clone(), "outcome" => "done").increment(1);
                    done.push(row.id);
                }
                Err(error) => {
                    let next = self
                        .record_failure(&self.db, &row, error, now, retry)
                        .instrument(tracing::info_span!(parent: &span, "after_commit_failed", event = %row.name, event_id = %row.event_id))
                        .await?;
                    next_due = earliest(next_due, next);
                }
            }
        }
        if !done.is_empty() {
            let count = done.len() as u64;
            inbox::Entity::update_many()
                .col_expr(inbox::Column::Status, Expr::value(DONE))
                .col_expr(
                    inbox::Column::Attempts,
                    Expr::col(inbox::Column::Attempts).add(1),
                )
                .col_expr(inbox::Column::ProcessedAt, Expr::value(now))
                .col_expr(
                    inbox::Column::LastError,
                    Expr::value(Option::<String>::None),
                )
                .filter(inbox::Column::Id.is_in(done))
                .filter(inbox::Column::Status.eq(HANDLED))
                .exec(&self.db)
                .await?;
            metrics::counter!(crate::HANDLED, "consumer" => self.name.clone(), "outcome" => "done")
                .increment(count);
        }
        Ok(Processed {
            claimed,
            more,
            next_due,
            commit_failed: false,
        })
    }

    /// Whether a row of the aggregates of `rows` is still waiting: it was held back behind
    /// them, and may be taken now.
    async fn unblocked<'a>(
        &self,
        txn: &DatabaseTransaction,
        rows: impl Iterator<Item = &'a inbox::Model>,
    ) -> Result<bool, DbErr> {
        let aggregates: Vec<String> = rows.map(|row| row.aggregate_id.clone()).collect();
        if aggregates.is_empty() {
            return Ok(false);
        }
        let waiting = inbox::Entity::find()
            .filter(inbox::Column::Consumer.eq(self.name.as_str()))
            .filter(inbox::Column::Status.eq(PENDING))
            .filter(inbox::Column::AggregateId.is_in(aggregates))
            .count(txn)
            .await?;
        Ok(waiting > 0)
    }

    /// When this consumer's next row that is not due yet (a retry after backoff, a lapsing
    /// claim on effects) becomes due.
    async fn next_due(
        &self,
        txn: &DatabaseTransaction,
        now: DateTime<Utc>,
        except: Vec<uuid::Uuid>,
    ) -> Result<Option<DateTime<Utc>>, DbErr> {
        let mut select = inbox::Entity::find();
        if !except.is_empty() {
            select = select.filter(inbox::Column::Id.is_not_in(except));
        }
        select
            .select_only()
            .column_as(inbox::Column::NextAttemptAt.min(), "due")
            .filter(inbox::Column::Consumer.eq(self.name.as_str()))
            .filter(inbox::Column::Status.is_in([PENDING, HANDLED]))
            .filter(inbox::Column::NextAttemptAt.gt(now))
            .into_tuple::<Option<DateTime<Utc>>>()
            .one(txn)
            .await
            .map(Option::flatten)
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

    /// The batch's effects, one result per event; a panic fails every event of the batch
    /// (each is retried, and effects are idempotent).
    async fn run_after_commit(&self, envelopes: &[EventEnvelope]) -> Vec<Result<(), HandlerError>> {
        if envelopes.is_empty() {
            return Vec::new();
        }
        AssertUnwindSafe(self.handler.after_commit_batch(envelopes, &self.db))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| {
                let panicked = HandlerError::new("the effects after the commit panicked");
                vec![Err(panicked); envelopes.len()]
            })
    }

    /// Counts a failed attempt at `row` through `db` (the batch's transaction after a
    /// handler failed, the pool when the transaction itself failed or its effects did):
    /// schedules the next one with backoff, or parks the row after the last. Conditional on
    /// the row being as it was claimed, so an attempt another process recorded meanwhile is
    /// not counted twice.
    async fn record_failure<C: ConnectionTrait>(
        &self,
        db: &C,
        row: &inbox::Model,
        error: HandlerError,
        now: DateTime<Utc>,
        retry: Retry,
    ) -> Result<Option<DateTime<Utc>>, DbErr> {
        let attempts = row.attempts + 1;
        let parked = attempts >= retry.max_attempts;
        let counted = if parked { "parked" } else { "retry" };
        metrics::counter!(crate::HANDLED, "consumer" => self.name.clone(), "outcome" => counted)
            .increment(1);
        metrics::counter!(crate::CONSUMED, "consumer" => self.name.clone(), "event" => row.name.clone(), "outcome" => counted)
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
        let next = if parked {
            tracing::error!(error = %error, attempts, stage, "event handler failed; parked");
            update = update.col_expr(inbox::Column::Status, Expr::value(FAILED));
            None
        } else {
            tracing::warn!(error = %error, attempts, stage, "event handler failed; will retry");
            let next = backoff::next_attempt(now, attempts, retry.base, retry.max);
            update = update.col_expr(inbox::Column::NextAttemptAt, Expr::value(next));
            Some(next)
        };
        update.exec(db).await?;
        Ok(next)
    }
}

/// What one batch of a consumer did.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Processed {
    /// Rows claimed (handled, failed or parked).
    pub claimed: usize,
    /// Whether more rows may be due now: the batch was full, or rows were held back behind
    /// the ones it finished.
    pub more: bool,
    /// When the next row not yet due becomes due.
    pub next_due: Option<DateTime<Utc>>,
    /// The batch's transaction failed to commit: nothing of it happened.
    commit_failed: bool,
}

/// The earlier of two optional times.
pub(crate) fn earliest(
    a: Option<DateTime<Utc>>,
    b: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(Ord::min(a, b)),
        (a, b) => a.or(b),
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

/// Up to `limit` due rows of one consumer, oldest first, pending or handled (their effects
/// still to run), skipping any row with an earlier (by its publisher's sequence) unfinished
/// row of the same aggregate (so one aggregate's events are handled, effects included, in
/// order, at most one per batch, and a parked one holds back the rest until it is retried or
/// discarded), and on Postgres skipping rows another process holds.
/// How a claim treats rows another transaction has locked (Postgres; SQLite locks the
/// whole database instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    /// Passes them by: another replica is working on them.
    SkipLocked,
    /// Waits for their lock: after a failed batch commit, whose rows stay locked until the
    /// failed transaction has finished aborting.
    Wait,
}

async fn claim(
    txn: &DatabaseTransaction,
    consumer: &str,
    now: DateTime<Utc>,
    limit: u64,
    how: Claim,
) -> Result<Vec<inbox::Model>, DbErr> {
    let earlier = Alias::new("earlier");
    let mut blocked = Query::select()
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
        // Unfinished: a literal, for the partial index (see `store::INBOX_UNFINISHED`).
        .and_where(Expr::cust(INBOX_UNFINISHED))
        .to_owned();
    let postgres = sea_orm::ConnectionTrait::get_database_backend(txn) == DbBackend::Postgres;
    if postgres {
        store::look_up_per_row(&mut blocked);
    }
    let mut select = inbox::Entity::find()
        .filter(inbox::Column::Consumer.eq(consumer))
        .filter(Expr::cust(INBOX_CLAIMABLE))
        .filter(inbox::Column::NextAttemptAt.lte(now))
        .filter(Expr::exists(blocked).not())
        .order_by_asc(inbox::Column::Seq)
        .limit(limit);
    if postgres {
        select = match how {
            Claim::SkipLocked => {
                select.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
            }
            Claim::Wait => select.lock(LockType::Update),
        };
    }
    select.all(txn).await
}
