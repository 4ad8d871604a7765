//! The publishing side: append an event in the caller's transaction.

use std::collections::HashSet;
use std::sync::{Arc, PoisonError, RwLock};

use chrono::{DateTime, Utc};
use kernel::{EventEnvelope, IntegrationEvent};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ConnectionTrait, DatabaseTransaction, DbErr};
use tokio::sync::Notify;

use crate::store::{DISPATCHED, PENDING, outbox};

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
        let envelope = EventEnvelope::wrap(event, occurred_at)
            .map_err(|error| DbErr::Json(error.to_string()))?;
        let relayed = self.relayed(&envelope.name);
        let (status, dispatched_at) = if relayed {
            (PENDING, None)
        } else {
            (DISPATCHED, Some(occurred_at))
        };
        outbox::ActiveModel {
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
        }
        .insert(txn)
        .await?;
        tracing::debug!(context = self.context, event = %envelope.name, event_id = %envelope.id, "event recorded");
        metrics::counter!(crate::WRITTEN, "publisher" => self.context, "event" => envelope.name.clone())
            .increment(1);
        Ok(envelope)
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
