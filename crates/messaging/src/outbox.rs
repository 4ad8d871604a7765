//! The publishing side: append an event in the caller's transaction.

use std::collections::HashSet;
use std::sync::{Arc, PoisonError, RwLock};

use chrono::{DateTime, Utc};
use kernel::{EventEnvelope, IntegrationEvent};
use sea_orm::sea_query::{InsertStatement, UpdateStatement, WithQuery};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ConnectionTrait, DatabaseConnection, DatabaseTransaction,
    DbBackend, DbErr, Statement, TransactionTrait,
};
use tokio::sync::Notify;

use crate::store::{self, DISPATCHED, PENDING, outbox};

/// A publishing context's handle on its outbox.
#[derive(Debug, Clone)]
pub struct Outbox {
    context: &'static str,
    wake: Arc<Notify>,
    /// Names this outbox in its wake-ups to other processes, so its own process's listener
    /// can tell them from theirs.
    sender: Arc<str>,
    /// Which events anyone takes from this outbox, as the bus that relays it was built:
    /// `None` (no bus yet, or a broker that may carry them anywhere) relays every event.
    wanted: Arc<RwLock<Option<HashSet<String>>>>,
}

impl Outbox {
    pub fn new(context: &'static str) -> Self {
        Self {
            context,
            wake: Arc::new(Notify::new()),
            sender: uuid::Uuid::new_v4().to_string().into(),
            wanted: Arc::new(RwLock::new(None)),
        }
    }

    /// Set by the bus when it is built: the events its consumers in this process take
    /// (`None` when it publishes to a broker, which may carry any event anywhere).
    pub(crate) fn set_wanted(&self, wanted: Option<HashSet<String>>) {
        *self.wanted.write().unwrap_or_else(PoisonError::into_inner) = wanted;
    }

    /// Whether anyone takes `name`: an event nobody takes is recorded already dispatched,
    /// and costs the relay nothing.
    fn relayed(&self, name: &str) -> bool {
        self.wanted
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_none_or(|wanted| wanted.contains(name))
    }

    pub fn context(&self) -> &'static str {
        self.context
    }

    /// Writes `event` to the outbox through `txn`, the transaction that makes the change the
    /// event announces. The event exists if and only if that transaction commits. An event
    /// no consumer takes (none in this process, and no broker to carry it elsewhere) is
    /// recorded already dispatched: it stays in the outbox's history, and the relay has
    /// nothing to do for it.
    pub async fn append<C, E>(
        &self,
        txn: &C,
        event: &E,
        occurred_at: DateTime<Utc>,
    ) -> Result<EventEnvelope, DbErr>
    where
        C: ConnectionTrait,
        E: IntegrationEvent,
    {
        let (envelope, row) = self.row(event, occurred_at)?;
        row.insert(txn).await?;
        self.written(&envelope);
        Ok(envelope)
    }

    /// The event's envelope and its outbox row, `dispatched` already if nobody takes it.
    fn row<E: IntegrationEvent>(
        &self,
        event: &E,
        occurred_at: DateTime<Utc>,
    ) -> Result<(EventEnvelope, outbox::ActiveModel), DbErr> {
        let envelope = EventEnvelope::wrap(event, occurred_at)
            .map_err(|error| DbErr::Json(error.to_string()))?;
        let (status, dispatched_at) = if self.relayed(&envelope.name) {
            (PENDING, None)
        } else {
            (DISPATCHED, Some(occurred_at))
        };
        let row = outbox::ActiveModel {
            id: Set(envelope.id),
            name: Set(envelope.name.clone()),
            aggregate_id: Set(envelope.aggregate_id.clone()),
            payload: Set(envelope.payload.to_string()),
            occurred_at: Set(envelope.occurred_at),
            status: Set(status.to_owned()),
            attempts: Set(0),
            next_attempt_at: Set(occurred_at),
            last_error: Set(None),
            dispatched_at: Set(dispatched_at),
            ..Default::default()
        };
        Ok((envelope, row))
    }

    /// Logs and counts an event written.
    fn written(&self, envelope: &EventEnvelope) {
        tracing::debug!(context = self.context, event = %envelope.name, event_id = %envelope.id, "event recorded");
        metrics::counter!(crate::WRITTEN, "publisher" => self.context, "event" => envelope.name.clone())
            .increment(1);
    }

    /// The last step of every change that announces itself: appends `event` to the outbox
    /// in `txn`, commits, and wakes the relay: this process's at once, and on Postgres the
    /// relays of other processes running this context through a `pg_notify` sent in `txn`
    /// (so only if it commits). Use this rather than `append` + `commit` + `notify` by hand,
    /// so no publisher forgets a step.
    pub async fn commit_with<E: IntegrationEvent>(
        &self,
        txn: DatabaseTransaction,
        event: &E,
        occurred_at: DateTime<Utc>,
    ) -> Result<EventEnvelope, DbErr> {
        let envelope = self.append(&txn, event, occurred_at).await?;
        let relayed = self.relayed(&envelope.name);
        if relayed {
            db_kit::wake::notify(&txn, &self.channel(), &self.sender).await?;
        }
        txn.commit().await?;
        if relayed {
            self.notify();
        }
        Ok(envelope)
    }

    /// A change to this context's own rows and the event that announces it, written
    /// together or not at all. `change` is an `UPDATE` that touches a row only when the
    /// change applies (a conditional move of one row's status, say); the event is written
    /// only if it touched one. Returns the event's envelope, or `None` when the change
    /// touched nothing, and then nothing was written.
    ///
    /// On Postgres this is one autocommit statement: the change and the outbox insert in
    /// one `WITH`, with the wake-up of other processes' relays in it
    /// (`store::change_then_append`), one round trip where `begin`, the change, the insert,
    /// the `pg_notify` and `commit` take five. On SQLite it is that transaction.
    pub async fn commit_change<E: IntegrationEvent>(
        &self,
        db: &DatabaseConnection,
        change: UpdateStatement,
        event: &E,
        occurred_at: DateTime<Utc>,
    ) -> Result<Option<EventEnvelope>, DbErr> {
        let backend = db.get_database_backend();
        if backend != DbBackend::Postgres {
            let txn = db.begin().await?;
            let changed = txn.execute_raw(backend.build(&change)).await?;
            if changed.rows_affected() == 0 {
                txn.rollback().await?;
                return Ok(None);
            }
            return self.commit_with(txn, event, occurred_at).await.map(Some);
        }
        let (envelope, relayed, statement) =
            self.one_statement(event, occurred_at, |row, wake| {
                store::change_then_append(change, row, wake)
            })?;
        if db.query_all_raw(statement).await?.is_empty() {
            return Ok(None);
        }
        self.committed(&envelope, relayed);
        Ok(Some(envelope))
    }

    /// A change that creates rows (`rows`, its `INSERT`s) and the event that announces it,
    /// in `txn`, then commits, like [`Outbox::commit_with`]. On Postgres the rows, the event
    /// and the wake-up of other processes' relays are one statement
    /// (`store::rows_then_append`), then `COMMIT`: two round trips where one per row, the
    /// event, the wake-up and the commit take four or more. On SQLite it is one statement
    /// each. If a statement fails (a unique violation, say), `txn` is rolled back and the
    /// error returned as the database gave it.
    pub async fn commit_rows_with<E: IntegrationEvent>(
        &self,
        txn: DatabaseTransaction,
        rows: Vec<InsertStatement>,
        event: &E,
        occurred_at: DateTime<Utc>,
    ) -> Result<EventEnvelope, DbErr> {
        let backend = txn.get_database_backend();
        if backend != DbBackend::Postgres {
            for insert in rows {
                if let Err(error) = txn.execute_raw(backend.build(&insert)).await {
                    txn.rollback().await?;
                    return Err(error);
                }
            }
            return self.commit_with(txn, event, occurred_at).await;
        }
        let (envelope, relayed, statement) =
            self.one_statement(event, occurred_at, |row, wake| {
                store::rows_then_append(rows, row, wake)
            })?;
        if let Err(error) = txn.query_all_raw(statement).await {
            txn.rollback().await?;
            return Err(error);
        }
        txn.commit().await?;
        self.committed(&envelope, relayed);
        Ok(envelope)
    }

    /// The Postgres statement `build` makes of the event's outbox row and of the wake-up
    /// (channel, sender) to send with it when someone takes the event; with the envelope
    /// and whether the event is relayed.
    fn one_statement<E: IntegrationEvent>(
        &self,
        event: &E,
        occurred_at: DateTime<Utc>,
        build: impl FnOnce(&outbox::ActiveModel, Option<(&str, &str)>) -> WithQuery,
    ) -> Result<(EventEnvelope, bool, Statement), DbErr> {
        let (envelope, row) = self.row(event, occurred_at)?;
        let relayed = self.relayed(&envelope.name);
        let channel = self.channel();
        let wake = relayed.then_some((channel.as_str(), &*self.sender));
        let statement = DbBackend::Postgres.build(&build(&row, wake));
        Ok((envelope, relayed, statement))
    }

    /// After a one-statement event committed: logs and counts it, and wakes this process's
    /// relay if someone takes it.
    fn committed(&self, envelope: &EventEnvelope, relayed: bool) {
        self.written(envelope);
        if relayed {
            self.notify();
        }
    }

    /// Tells this process's relay that a transaction with new events committed. The relay
    /// does not poll: forgetting to call it leaves the events waiting for the next wake-up.
    pub fn notify(&self) {
        self.wake.notify_one();
    }

    pub(crate) fn wake(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// The Postgres channel on which this context's commits wake other processes.
    pub fn channel(&self) -> String {
        db_kit::wake::channel(self.context)
    }

    /// What this outbox's wake-ups carry, so that listeners in its own process, woken in
    /// process already, ignore them.
    pub fn sender(&self) -> &str {
        &self.sender
    }
}
