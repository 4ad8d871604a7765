//! The bus: relays every publisher's outbox to the subscribed consumers' inboxes, runs the
//! consumers' handlers, retries, parks, replays and purges.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kernel::Clock;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, LockBehavior, LockType, Query};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    DbBackend, DbErr, EntityTrait, IntoActiveModel, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};
use serde::Serialize;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::backoff;
use crate::broker::{Broker, BrokerError};
use crate::consumer::{Consumer, Retry};
use crate::outbox::Outbox;
use crate::store::{
    self, DISCARDED, DISPATCHED, DONE, FAILED, HANDLED, OUTBOX_FINISHED, PENDING, inbox, outbox,
};

#[derive(Debug, Clone)]
pub struct BusConfig {
    /// Rows claimed per pass.
    pub batch_size: u64,
    /// Attempts before a delivery or a handler is parked as failed.
    pub max_attempts: i32,
    /// First retry delay; doubles per attempt up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// How often the background loops look for due work when nobody wakes them.
    pub poll_interval: Duration,
    /// How long dispatched outbox rows and handled inbox rows are kept.
    pub retention: Duration,
    pub purge_interval: Duration,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            batch_size: 50,
            max_attempts: 8,
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            poll_interval: Duration::from_millis(250),
            retention: Duration::from_secs(7 * 24 * 3600),
            purge_interval: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, Clone)]
struct Publisher {
    context: &'static str,
    db: DatabaseConnection,
    wake: Arc<Notify>,
}

#[derive(Debug)]
pub struct BusBuilder {
    config: BusConfig,
    clock: Arc<dyn Clock>,
    publishers: Vec<Publisher>,
    consumers: Vec<Consumer>,
    broker: Option<Broker>,
    publish_to_broker: bool,
    subscribed: Vec<Consumer>,
}

impl BusBuilder {
    /// Relays `outbox`'s events, stored in `db` (the publishing context's own connection).
    pub fn publisher(mut self, outbox: &Outbox, db: DatabaseConnection) -> Self {
        self.publishers.push(Publisher {
            context: outbox.context(),
            db,
            wake: outbox.wake(),
        });
        self
    }

    pub fn consumer(mut self, consumer: Consumer) -> Self {
        self.consumers.push(consumer);
        self
    }

    /// Also publishes every publisher's events to `broker`, for consumers in other processes.
    pub fn publish_to(mut self, broker: Broker) -> Self {
        self.broker = Some(broker);
        self.publish_to_broker = true;
        self
    }

    /// A consumer whose events (some or all) are published in other processes: besides what
    /// this process's relay hands it, it takes them from `broker`.
    pub fn consumer_of(mut self, broker: Broker, consumer: Consumer) -> Self {
        self.broker = Some(broker);
        self.subscribed.push(consumer.clone());
        self.consumers.push(consumer);
        self
    }

    pub fn build(self) -> Bus {
        Bus {
            config: self.config,
            clock: self.clock,
            publishers: self.publishers,
            consumers: self.consumers,
            broker: self.broker,
            publish_to_broker: self.publish_to_broker,
            subscribed: self.subscribed,
            handled: Arc::new(Notify::new()),
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub relayed: usize,
    pub handled: usize,
}

impl Progress {
    pub fn is_idle(&self) -> bool {
        self.relayed == 0 && self.handled == 0
    }
}

/// Why a delivery failed.
#[derive(Debug, thiserror::Error)]
enum DeliveryError {
    #[error(transparent)]
    Db(#[from] DbErr),
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// Where a parked event is stuck.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Leaving the publisher's outbox (a consumer's inbox could not be reached).
    Delivery,
    /// In a consumer's inbox (its handler kept failing).
    Handling,
    /// In a consumer's inbox, its handler's work committed; the effects after the commit
    /// (sending a message) kept failing. A retry runs only those.
    AfterCommit,
}

/// What became of an event that failed every allowed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ParkedStatus {
    /// Parked: it holds back the later events of its aggregate until an operator retries or
    /// discards it.
    Failed,
    /// Given up by an operator: never delivered or handled; kept until purged.
    Discarded,
}

impl ParkedStatus {
    fn stored(self) -> &'static str {
        match self {
            Self::Failed => FAILED,
            Self::Discarded => DISCARDED,
        }
    }
}

/// A parked or discarded event, as the admin endpoints show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedEvent {
    /// The id to pass to [`Bus::retry`] or [`Bus::discard`].
    pub id: uuid::Uuid,
    pub status: ParkedStatus,
    pub stage: Stage,
    /// The publishing context (delivery) or the consumer (handling).
    pub owner: String,
    pub event_id: uuid::Uuid,
    pub event_name: String,
    pub aggregate_id: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub occurred_at: DateTime<Utc>,
}

/// Which parked events an operator means: every one, or those of one owner (a publishing
/// context or a consumer), of one event name, or both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub owner: Option<String>,
    pub event_name: Option<String>,
}

impl EventFilter {
    fn owns(&self, owner: &str) -> bool {
        self.owner.as_deref().is_none_or(|wanted| wanted == owner)
    }
}

/// Delivery of integration events between the contexts of this process, and, through a
/// broker, to and from the contexts of others.
#[derive(Debug)]
pub struct Bus {
    config: BusConfig,
    clock: Arc<dyn Clock>,
    publishers: Vec<Publisher>,
    consumers: Vec<Consumer>,
    broker: Option<Broker>,
    /// Whether the relay also publishes to the broker.
    publish_to_broker: bool,
    /// Consumers that take events from the broker.
    subscribed: Vec<Consumer>,
    /// Woken after the relay, or a broker subscriber, delivered something, so processors
    /// start at once.
    handled: Arc<Notify>,
}

impl Bus {
    pub fn builder(config: BusConfig, clock: Arc<dyn Clock>) -> BusBuilder {
        BusBuilder {
            config,
            clock,
            publishers: Vec::new(),
            consumers: Vec::new(),
            broker: None,
            publish_to_broker: false,
            subscribed: Vec::new(),
        }
    }

    fn retry_policy(&self) -> Retry {
        Retry {
            max_attempts: self.config.max_attempts,
            base: self.config.retry_base,
            max: self.config.retry_max,
        }
    }

    /// One pass: relay every publisher's due events, then run every consumer's due handlers.
    pub async fn run_once(&self) -> Result<Progress, DbErr> {
        let mut progress = Progress::default();
        for publisher in &self.publishers {
            progress.relayed += self.relay(publisher).await?;
        }
        let now = self.clock.now();
        for consumer in &self.consumers {
            progress.handled += consumer
                .process_once(now, self.config.batch_size, self.retry_policy())
                .await?;
        }
        Ok(progress)
    }

    /// Runs passes until one finds nothing due: everything committed before the call has
    /// been delivered and handled (or scheduled for a later retry) when it returns.
    pub async fn run_until_idle(&self) -> Result<Progress, DbErr> {
        let mut total = Progress::default();
        loop {
            let pass = self.run_once().await?;
            if pass.is_idle() {
                return Ok(total);
            }
            total.relayed += pass.relayed;
            total.handled += pass.handled;
        }
    }

    /// Relays up to one batch of `publisher`'s due events.
    async fn relay(&self, publisher: &Publisher) -> Result<usize, DbErr> {
        let now = self.clock.now();
        let postgres = publisher.db.get_database_backend() == DbBackend::Postgres;
        // On Postgres the claimed rows stay locked until this transaction ends, so another
        // process's relay skips them. SQLite has one connection per context and one process,
        // so there is nobody to lock out, and holding its only connection while delivering
        // would block a consumer that shares it.
        let txn = if postgres {
            Some(publisher.db.begin().await?)
        } else {
            None
        };
        let rows = match &txn {
            Some(txn) => claim_outbox(txn, now, self.config.batch_size).await?,
            None => claim_outbox(&publisher.db, now, self.config.batch_size).await?,
        };
        let mut count = 0;
        for row in rows {
            let outcome = self.deliver(publisher.context, &row, now).await;
            if let Err(DeliveryError::Broker(error)) = &outcome
                && error.is_unavailable()
            {
                // The broker cannot take events now: no fault of this one. It waits in the
                // outbox with those behind it, in order, counting no attempt, so an outage
                // of any length parks nothing; the next pass tries it first again.
                metrics::counter!(crate::RELAYED, "publisher" => publisher.context, "outcome" => "waiting").increment(1);
                tracing::warn!(context = publisher.context, error = %error, "the broker cannot take events; they wait in the outbox");
                let mut update = row.into_active_model();
                update.last_error = Set(Some(error.to_string()));
                match &txn {
                    Some(txn) => update.update(txn).await?,
                    None => update.update(&publisher.db).await?,
                };
                break;
            }
            count += 1;
            let attempts = row.attempts + 1;
            let mut update = row.into_active_model();
            update.attempts = Set(attempts);
            let counted = match (&outcome, attempts >= self.config.max_attempts) {
                (Ok(()), _) => "dispatched",
                (Err(_), false) => "retry",
                (Err(_), true) => "parked",
            };
            metrics::counter!(crate::RELAYED, "publisher" => publisher.context, "outcome" => counted).increment(1);
            match outcome {
                Ok(()) => {
                    update.status = Set(DISPATCHED.to_owned());
                    update.dispatched_at = Set(Some(now));
                    update.last_error = Set(None);
                }
                Err(error) => {
                    if attempts >= self.config.max_attempts {
                        tracing::error!(context = publisher.context, error = %error, attempts, "event delivery failed; parked");
                        update.status = Set(FAILED.to_owned());
                    } else {
                        tracing::warn!(context = publisher.context, error = %error, attempts, "event delivery failed; will retry");
                        update.next_attempt_at = Set(backoff::next_attempt(
                            now,
                            attempts,
                            self.config.retry_base,
                            self.config.retry_max,
                        ));
                    }
                    update.last_error = Set(Some(error.to_string()));
                }
            }
            match &txn {
                Some(txn) => update.update(txn).await?,
                None => update.update(&publisher.db).await?,
            };
        }
        if let Some(txn) = txn {
            txn.commit().await?;
        }
        if count > 0 {
            self.handled.notify_waiters();
        }
        Ok(count)
    }

    /// Hands an event to this process's consumers of it and, when consumers elsewhere may
    /// want it, to the broker (acknowledged before the row is marked dispatched).
    async fn deliver(
        &self,
        publisher: &'static str,
        row: &outbox::Model,
        now: DateTime<Utc>,
    ) -> Result<(), DeliveryError> {
        let envelope = store::envelope(
            row.id,
            &row.name,
            &row.aggregate_id,
            &row.payload,
            row.occurred_at,
        )?;
        for consumer in self
            .consumers
            .iter()
            .filter(|consumer| consumer.wants(&row.name))
        {
            consumer.accept_from(&envelope, row.seq, now).await?;
        }
        if self.publish_to_broker
            && let Some(broker) = &self.broker
        {
            broker.publish(publisher, &envelope, row.seq).await?;
        }
        Ok(())
    }

    /// Parked events of every publisher and consumer, oldest first.
    pub async fn failed(&self) -> Result<Vec<FailedEvent>, DbErr> {
        self.list(ParkedStatus::Failed, &EventFilter::default())
            .await
    }

    /// Parked (or discarded) events that `filter` names, oldest first.
    pub async fn list(
        &self,
        status: ParkedStatus,
        filter: &EventFilter,
    ) -> Result<Vec<FailedEvent>, DbErr> {
        let mut listed = Vec::new();
        for publisher in self.publishers_of(filter) {
            let mut select = outbox::Entity::find()
                .filter(outbox::Column::Status.eq(status.stored()))
                .order_by_asc(outbox::Column::Seq);
            if let Some(name) = &filter.event_name {
                select = select.filter(outbox::Column::Name.eq(name));
            }
            let rows = select.all(&publisher.db).await?;
            listed.extend(rows.into_iter().map(|row| FailedEvent {
                id: row.id,
                status,
                stage: Stage::Delivery,
                owner: publisher.context.to_owned(),
                event_id: row.id,
                event_name: row.name,
                aggregate_id: row.aggregate_id,
                attempts: row.attempts,
                last_error: row.last_error,
                occurred_at: row.occurred_at,
            }));
        }
        for consumer in self.consumers_of(filter) {
            let mut select = inbox::Entity::find()
                .filter(inbox::Column::Consumer.eq(consumer.name()))
                .filter(inbox::Column::Status.eq(status.stored()))
                .order_by_asc(inbox::Column::Seq);
            if let Some(name) = &filter.event_name {
                select = select.filter(inbox::Column::Name.eq(name));
            }
            let rows = select.all(consumer.db()).await?;
            listed.extend(rows.into_iter().map(|row| FailedEvent {
                id: row.id,
                status,
                stage: if row.handled_at.is_some() {
                    Stage::AfterCommit
                } else {
                    Stage::Handling
                },
                owner: row.consumer,
                event_id: row.event_id,
                event_name: row.name,
                aggregate_id: row.aggregate_id,
                attempts: row.attempts,
                last_error: row.last_error,
                occurred_at: row.occurred_at,
            }));
        }
        listed.sort_by_key(|event| event.occurred_at);
        Ok(listed)
    }

    fn publishers_of<'a>(&'a self, filter: &'a EventFilter) -> impl Iterator<Item = &'a Publisher> {
        self.publishers
            .iter()
            .filter(|publisher| filter.owns(publisher.context))
    }

    fn consumers_of<'a>(&'a self, filter: &'a EventFilter) -> impl Iterator<Item = &'a Consumer> {
        self.consumers
            .iter()
            .filter(|consumer| filter.owns(consumer.name()))
    }

    /// Puts a parked event back in line with a fresh set of attempts. Returns false when no
    /// parked event has that id.
    pub async fn retry(&self, id: uuid::Uuid) -> Result<bool, DbErr> {
        let now = self.clock.now();
        for publisher in &self.publishers {
            let reset = requeue_outbox(now)
                .filter(outbox::Column::Id.eq(id))
                .exec(&publisher.db)
                .await?;
            if reset.rows_affected > 0 {
                publisher.wake.notify_one();
                return Ok(true);
            }
        }
        for consumer in &self.consumers {
            let reset = requeue_inbox(consumer, now, |update| {
                update.filter(inbox::Column::Id.eq(id))
            })
            .await?;
            if reset > 0 {
                self.handled.notify_waiters();
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Puts every parked event `filter` names back in line with a fresh set of attempts;
    /// returns how many.
    pub async fn retry_all(&self, filter: &EventFilter) -> Result<u64, DbErr> {
        let now = self.clock.now();
        let mut retried = 0;
        for publisher in self.publishers_of(filter) {
            let mut update = requeue_outbox(now);
            if let Some(name) = &filter.event_name {
                update = update.filter(outbox::Column::Name.eq(name));
            }
            let reset = update.exec(&publisher.db).await?.rows_affected;
            if reset > 0 {
                publisher.wake.notify_one();
            }
            retried += reset;
        }
        for consumer in self.consumers_of(filter) {
            retried += requeue_inbox(consumer, now, |update| match &filter.event_name {
                Some(name) => update.filter(inbox::Column::Name.eq(name)),
                None => update,
            })
            .await?;
        }
        if retried > 0 {
            self.handled.notify_waiters();
        }
        Ok(retried)
    }

    /// Gives up on a parked event: it is marked discarded, is never delivered or handled,
    /// and no longer holds back the later events of its aggregate. Returns false when no
    /// parked event has that id.
    pub async fn discard(&self, id: uuid::Uuid) -> Result<bool, DbErr> {
        let now = self.clock.now();
        for publisher in &self.publishers {
            let discarded = outbox::Entity::update_many()
                .col_expr(outbox::Column::Status, Expr::value(DISCARDED))
                .col_expr(outbox::Column::DispatchedAt, Expr::value(now))
                .filter(outbox::Column::Id.eq(id))
                .filter(outbox::Column::Status.eq(FAILED))
                .exec(&publisher.db)
                .await?;
            if discarded.rows_affected > 0 {
                publisher.wake.notify_one();
                return Ok(true);
            }
        }
        for consumer in &self.consumers {
            let discarded = inbox::Entity::update_many()
                .col_expr(inbox::Column::Status, Expr::value(DISCARDED))
                .col_expr(inbox::Column::ProcessedAt, Expr::value(now))
                .filter(inbox::Column::Id.eq(id))
                .filter(inbox::Column::Consumer.eq(consumer.name()))
                .filter(inbox::Column::Status.eq(FAILED))
                .exec(consumer.db())
                .await?;
            if discarded.rows_affected > 0 {
                self.handled.notify_waiters();
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Deletes dispatched, handled and discarded rows older than the retention.
    pub async fn purge(&self) -> Result<u64, DbErr> {
        let retention =
            chrono::Duration::from_std(self.config.retention).unwrap_or(chrono::Duration::MAX);
        let cutoff = self.clock.now() - retention;
        let mut purged = 0;
        for publisher in &self.publishers {
            purged += outbox::Entity::delete_many()
                .filter(outbox::Column::Status.is_in([DISPATCHED, DISCARDED]))
                .filter(outbox::Column::DispatchedAt.lt(cutoff))
                .exec(&publisher.db)
                .await?
                .rows_affected;
        }
        for consumer in &self.consumers {
            purged += inbox::Entity::delete_many()
                .filter(inbox::Column::Consumer.eq(consumer.name()))
                .filter(inbox::Column::Status.is_in([DONE, DISCARDED]))
                .filter(inbox::Column::ProcessedAt.lt(cutoff))
                .exec(consumer.db())
                .await?
                .rows_affected;
        }
        if purged > 0 {
            tracing::info!(rows = purged, "purged finished events");
        }
        Ok(purged)
    }

    /// Sets the [`PARKED`](crate::PARKED) gauge of every publisher and consumer to its number
    /// of parked events, as the database holds them now (so every process reports the same
    /// value: aggregate with `max`, not `sum`). One count per owner, so it is cheap enough
    /// to run on every scrape of `/metrics`.
    pub async fn record_parked(&self) -> Result<(), DbErr> {
        for publisher in &self.publishers {
            let parked = outbox::Entity::find()
                .filter(outbox::Column::Status.eq(FAILED))
                .count(&publisher.db)
                .await?;
            metrics::gauge!(crate::PARKED, "owner" => publisher.context).set(parked as f64);
        }
        for consumer in &self.consumers {
            let parked = inbox::Entity::find()
                .filter(inbox::Column::Consumer.eq(consumer.name()))
                .filter(inbox::Column::Status.eq(FAILED))
                .count(consumer.db())
                .await?;
            metrics::gauge!(crate::PARKED, "owner" => consumer.name().to_owned())
                .set(parked as f64);
        }
        Ok(())
    }

    /// Rows not yet dispatched or done (effects after the commit included), parked ones
    /// excluded (for tests and metrics).
    pub async fn pending(&self) -> Result<u64, DbErr> {
        let mut pending = 0;
        for publisher in &self.publishers {
            pending += outbox::Entity::find()
                .filter(outbox::Column::Status.eq(PENDING))
                .count(&publisher.db)
                .await?;
        }
        for consumer in &self.consumers {
            pending += inbox::Entity::find()
                .filter(inbox::Column::Consumer.eq(consumer.name()))
                .filter(inbox::Column::Status.is_in([PENDING, HANDLED]))
                .count(consumer.db())
                .await?;
        }
        Ok(pending)
    }

    /// Runs the relay, the handlers and the purge in the background until `shutdown`.
    pub fn spawn(self: Arc<Self>, shutdown: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            let subscribers: Vec<JoinHandle<()>> = match &self.broker {
                Some(broker) => self
                    .subscribed
                    .iter()
                    .map(|consumer| {
                        broker.spawn_subscriber(
                            consumer.clone(),
                            self.clock.clone(),
                            self.handled.clone(),
                            shutdown.clone(),
                        )
                    })
                    .collect(),
                None => Vec::new(),
            };
            let mut purge = tokio::time::interval(self.config.purge_interval);
            let mut poll = tokio::time::interval(self.config.poll_interval);
            poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let woken: Vec<_> = self.publishers.iter().map(|p| p.wake.notified()).collect();
                // A process without publishers (catalog alone) is woken by nothing but time.
                let any_woken = async {
                    if woken.is_empty() {
                        std::future::pending::<()>().await;
                    } else {
                        futures::future::select_all(woken.into_iter().map(Box::pin)).await;
                    }
                };
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = poll.tick() => {}
                    () = any_woken => {}
                    _ = self.handled.notified() => {}
                    _ = purge.tick() => {
                        if let Err(error) = self.purge().await {
                            tracing::error!(error = %error, "purging events failed");
                        }
                        continue;
                    }
                }
                if let Err(error) = self.run_until_idle().await {
                    tracing::error!(error = %error, "event delivery pass failed");
                }
            }
            for subscriber in subscribers {
                if let Err(error) = subscriber.await {
                    tracing::error!(error = %error, "a broker subscriber failed");
                }
            }
            tracing::info!("event bus stopped");
        })
    }
}

/// Puts parked outbox rows back in line; the caller narrows it down.
fn requeue_outbox(now: DateTime<Utc>) -> sea_orm::UpdateMany<outbox::Entity> {
    outbox::Entity::update_many()
        .col_expr(outbox::Column::Status, Expr::value(PENDING))
        .col_expr(outbox::Column::Attempts, Expr::value(0))
        .col_expr(outbox::Column::NextAttemptAt, Expr::value(now))
        .filter(outbox::Column::Status.eq(FAILED))
}

/// Puts `consumer`'s parked inbox rows that `narrow` selects back in line, where they were
/// parked: before their handler (`pending`), or with their handler's work committed and
/// only the effects after the commit to run again (`handled`). Returns how many.
async fn requeue_inbox(
    consumer: &Consumer,
    now: DateTime<Utc>,
    narrow: impl Fn(sea_orm::UpdateMany<inbox::Entity>) -> sea_orm::UpdateMany<inbox::Entity>,
) -> Result<u64, DbErr> {
    let mut requeued = 0;
    for (status, handled) in [(PENDING, false), (HANDLED, true)] {
        let handled_at = if handled {
            inbox::Column::HandledAt.is_not_null()
        } else {
            inbox::Column::HandledAt.is_null()
        };
        let update = inbox::Entity::update_many()
            .col_expr(inbox::Column::Status, Expr::value(status))
            .col_expr(inbox::Column::Attempts, Expr::value(0))
            .col_expr(inbox::Column::NextAttemptAt, Expr::value(now))
            .filter(inbox::Column::Consumer.eq(consumer.name()))
            .filter(inbox::Column::Status.eq(FAILED))
            .filter(handled_at);
        requeued += narrow(update).exec(consumer.db()).await?.rows_affected;
    }
    Ok(requeued)
}

/// Due pending outbox rows, oldest first, skipping rows with an earlier pending or parked row
/// of the same aggregate, and on Postgres rows another relay holds.
async fn claim_outbox<C: ConnectionTrait>(
    db: &C,
    now: DateTime<Utc>,
    batch: u64,
) -> Result<Vec<outbox::Model>, DbErr> {
    let earlier = Alias::new("earlier");
    let blocked = Query::select()
        .expr(Expr::val(1))
        .from_as(outbox::Entity, earlier.clone())
        .and_where(
            Expr::col((earlier.clone(), outbox::Column::AggregateId))
                .eq(Expr::col((outbox::Entity, outbox::Column::AggregateId))),
        )
        .and_where(
            Expr::col((earlier.clone(), outbox::Column::Seq))
                .lt(Expr::col((outbox::Entity, outbox::Column::Seq))),
        )
        // Unfinished: see `OUTBOX_FINISHED` for why this is not `is_in` the blocking ones.
        .and_where(Expr::col((earlier, outbox::Column::Status)).is_not_in(OUTBOX_FINISHED))
        .to_owned();
    let mut select = outbox::Entity::find()
        .filter(outbox::Column::Status.eq(PENDING))
        .filter(outbox::Column::NextAttemptAt.lte(now))
        .filter(Expr::exists(blocked).not())
        .order_by_asc(outbox::Column::Seq)
        .limit(batch);
    if db.get_database_backend() == DbBackend::Postgres {
        select = select.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    select.all(db).await
}
