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
use crate::store::{self, DONE, FAILED, INBOX_BLOCKING, PENDING, inbox};

/// Reacts to the events a consumer subscribed to.
///
/// `handle` runs inside a transaction on the consumer's own database, and must do all of
/// its database work through `txn`: the work commits together with the "handled" mark, so it
/// happens exactly once however often the event is delivered. (On SQLite the context's pool
/// holds a single connection, which `txn` is using: touching the pool instead would wait
/// forever.) An `Err` rolls the work back and schedules a retry.
#[async_trait]
pub trait EventHandler: Send + Sync + 'static {
    async fn handle(
        &self,
        event: &EventEnvelope,
        txn: &DatabaseTransaction,
    ) -> Result<(), HandlerError>;
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

    /// Stores a delivered event in this consumer's inbox. Delivering the same event again
    /// is harmless: the (event id, consumer) key keeps one row.
    pub async fn accept(&self, event: &EventEnvelope, now: DateTime<Utc>) -> Result<(), DbErr> {
        let inserted = inbox::ActiveModel {
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
            processed_at: Set(None),
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

    /// Handles up to `batch` due inbox rows; returns how many it handled (successfully or not).
    pub(crate) async fn process_once(
        &self,
        now: DateTime<Utc>,
        batch: u64,
        retry: Retry,
    ) -> Result<usize, DbErr> {
        let txn = self.db.begin().await?;
        let rows = claim(&txn, &self.name, now, batch).await?;
        let count = rows.len();
        for row in rows {
            self.process(&txn, row, now, retry).await?;
        }
        txn.commit().await?;
        Ok(count)
    }

    async fn process(
        &self,
        txn: &DatabaseTransaction,
        row: inbox::Model,
        now: DateTime<Utc>,
        retry: Retry,
    ) -> Result<(), DbErr> {
        let envelope = store::envelope(
            row.event_id,
            &row.name,
            &row.aggregate_id,
            &row.payload,
            row.occurred_at,
        )?;
        let span = tracing::info_span!("handle_event", consumer = %self.name, event = %row.name, event_id = %row.event_id);
        // A savepoint: the handler's work is undone on failure while the attempt is recorded.
        let work = txn.begin().await?;
        let outcome = AssertUnwindSafe(self.handler.handle(&envelope, &work))
            .catch_unwind()
            .instrument(span)
            .await
            .unwrap_or_else(|_| Err(HandlerError::new("the handler panicked")));
        let attempts = row.attempts + 1;
        let counted = match (&outcome, attempts >= retry.max_attempts) {
            (Ok(()), _) => "done",
            (Err(_), false) => "retry",
            (Err(_), true) => "parked",
        };
        metrics::counter!(crate::HANDLED, "consumer" => self.name.clone(), "outcome" => counted)
            .increment(1);
        let mut update = row.into_active_model();
        update.attempts = Set(attempts);
        match outcome {
            Ok(()) => {
                work.commit().await?;
                update.status = Set(DONE.to_owned());
                update.processed_at = Set(Some(now));
                update.last_error = Set(None);
            }
            Err(error) => {
                work.rollback().await?;
                let parked = attempts >= retry.max_attempts;
                if parked {
                    tracing::error!(error = %error, attempts, "event handler failed; parked");
                    update.status = Set(FAILED.to_owned());
                } else {
                    tracing::warn!(error = %error, attempts, "event handler failed; will retry");
                    update.next_attempt_at =
                        Set(backoff::next_attempt(now, attempts, retry.base, retry.max));
                }
                update.last_error = Set(Some(error.0));
            }
        }
        update.update(txn).await?;
        Ok(())
    }
}

/// Due pending rows of one consumer, oldest first, skipping any row that has an earlier
/// pending or parked row of the same aggregate (so one aggregate's events are handled in
/// order, and a parked one holds back the rest until it is retried or discarded), and on
/// Postgres skipping rows another process holds.
async fn claim(
    txn: &DatabaseTransaction,
    consumer: &str,
    now: DateTime<Utc>,
    batch: u64,
) -> Result<Vec<inbox::Model>, DbErr> {
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
        .and_where(
            Expr::col((earlier.clone(), inbox::Column::Seq))
                .lt(Expr::col((inbox::Entity, inbox::Column::Seq))),
        )
        .and_where(Expr::col((earlier, inbox::Column::Status)).is_in(INBOX_BLOCKING))
        .to_owned();
    let mut select = inbox::Entity::find()
        .filter(inbox::Column::Consumer.eq(consumer))
        .filter(inbox::Column::Status.eq(PENDING))
        .filter(inbox::Column::NextAttemptAt.lte(now))
        .filter(Expr::exists(blocked).not())
        .order_by_asc(inbox::Column::Seq)
        .limit(batch);
    if sea_orm::ConnectionTrait::get_database_backend(txn) == DbBackend::Postgres {
        select = select.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    select.all(txn).await
}
