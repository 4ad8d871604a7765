//! The outbox → relay → inbox → handler pipeline on SQLite and Postgres, with a publisher
//! context and a consumer context that each have their own store; `broker`: the same pair
//! with nothing but NATS JetStream between them.

mod broker;
mod idle;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use kernel::{Clock, EventEnvelope, IntegrationEvent, ManualClock};
use messaging::{
    Bus, BusConfig, Consumer, EventFilter, EventHandler, HandlerError, Outbox, ParkedStatus, Stage,
};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, Statement,
    TransactionTrait,
};
use sea_orm_migration::prelude::*;
use serde::{Deserialize, Serialize};
use testkit::TestStore;

/// A test event: something happened to `thing`, the `step`th time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
struct ThingHappened {
    thing: String,
    step: u32,
}

impl IntegrationEvent for ThingHappened {
    const NAME: &'static str = "test.thing_happened.v1";

    fn aggregate_id(&self) -> String {
        self.thing.clone()
    }
}

/// An event the recorder subscribes to but cannot decode: its handling always fails.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
struct ThingRenamed {
    thing: String,
}

impl IntegrationEvent for ThingRenamed {
    const NAME: &'static str = "test.thing_renamed.v1";

    fn aggregate_id(&self) -> String {
        self.thing.clone()
    }
}

/// An event nobody subscribes to.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
struct Ignored;

impl IntegrationEvent for Ignored {
    const NAME: &'static str = "test.ignored.v1";

    fn aggregate_id(&self) -> String {
        "ignored".into()
    }
}

struct PublisherMigrator;

impl MigratorTrait for PublisherMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreatePublisher)]
    }
}

#[derive(DeriveMigrationName)]
struct CreatePublisher;

#[async_trait]
impl MigrationTrait for CreatePublisher {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        messaging::migration::v1::create_outbox(manager).await?;
        // The publisher's own rows, which its changes move and its events announce.
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("things"))
                    .col(
                        ColumnDef::new(Alias::new("id"))
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Alias::new("state")).string().not_null())
                    .to_owned(),
            )
            .await
    }
}

struct ConsumerMigrator;

impl MigratorTrait for ConsumerMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateConsumer)]
    }
}

#[derive(DeriveMigrationName)]
struct CreateConsumer;

#[async_trait]
impl MigrationTrait for CreateConsumer {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        messaging::migration::v1::create_inbox(manager).await?;
        messaging::migration::v2::alter_inbox(manager).await?;
        messaging::migration::v3::alter_inbox(manager).await?;
        // Deliveries of the aggregates listed in `refused` fail: the inbox refuses them, as
        // an unreachable consumer would.
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("refused"))
                    .col(
                        ColumnDef::new(Alias::new("aggregate_id"))
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .to_owned(),
            )
            .await?;
        let refuse = match manager.get_database_backend() {
            DbBackend::Postgres => {
                "CREATE FUNCTION refuse_delivery() RETURNS trigger LANGUAGE plpgsql AS $$ \
                 BEGIN \
                   IF EXISTS (SELECT 1 FROM refused WHERE aggregate_id = NEW.aggregate_id) THEN \
                     RAISE EXCEPTION 'the inbox refuses %', NEW.aggregate_id; \
                   END IF; \
                   RETURN NEW; \
                 END $$; \
                 CREATE TRIGGER refuse_delivery BEFORE INSERT ON inbox \
                 FOR EACH ROW EXECUTE FUNCTION refuse_delivery()"
            }
            _ => {
                "CREATE TRIGGER refuse_delivery BEFORE INSERT ON inbox \
                 WHEN EXISTS (SELECT 1 FROM refused WHERE aggregate_id = NEW.aggregate_id) \
                 BEGIN SELECT RAISE(ABORT, 'the inbox refuses this aggregate'); END"
            }
        };
        manager.get_connection().execute_unprepared(refuse).await?;
        // A row in `orphans` names a parent that does not exist; the foreign key is checked
        // when the transaction commits, so the commit fails (on both backends).
        manager
            .get_connection()
            .execute_unprepared("CREATE TABLE parents (id INTEGER PRIMARY KEY)")
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE TABLE orphans (parent INTEGER NOT NULL \
                 REFERENCES parents (id) DEFERRABLE INITIALLY DEFERRED)",
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("effects"))
                    // Assigned as handlers run: the order events were actually handled in.
                    .col(
                        ColumnDef::new(Alias::new("id"))
                            .big_integer()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Alias::new("event_id")).uuid().not_null())
                    .col(ColumnDef::new(Alias::new("thing")).string().not_null())
                    .col(ColumnDef::new(Alias::new("step")).integer().not_null())
                    .to_owned(),
            )
            .await
    }
}

/// Records every event it handles in `effects`, in the handler's transaction. Fails the
/// first `failures` calls, and every call for a refused thing; the transaction of a
/// poisoned thing cannot commit.
struct Recorder {
    failures: AtomicUsize,
    refused: Mutex<HashSet<String>>,
    poisoned: Mutex<HashSet<String>>,
    /// (thing, step) of every call that returned `Ok`, in order.
    handled: Mutex<Vec<(String, u32)>>,
    /// `after_commit` fails its first `effect_failures` calls, and every call for a thing in
    /// `failing_effects`; for a thing in `hanging_effects` it never returns (after telling
    /// `reached`), as if the process died there.
    effect_failures: AtomicUsize,
    failing_effects: Mutex<HashSet<String>>,
    hanging_effects: Mutex<HashSet<String>>,
    reached: tokio::sync::Notify,
    /// (thing, step, whether its effect row was committed) of every `after_commit` call.
    effects_run: Mutex<Vec<(String, u32, bool)>>,
}

impl Recorder {
    fn poison(&self, thing: &str) {
        self.poisoned.lock().expect("lock").insert(thing.to_owned());
    }

    fn handled(&self) -> Vec<(String, u32)> {
        self.handled.lock().expect("lock").clone()
    }

    fn effects_run(&self) -> Vec<(String, u32, bool)> {
        self.effects_run.lock().expect("lock").clone()
    }

    fn refuse(&self, thing: &str) {
        self.refused.lock().expect("lock").insert(thing.to_owned());
    }

    fn allow(&self, thing: &str) {
        self.refused.lock().expect("lock").remove(thing);
    }
}

#[async_trait]
impl EventHandler for Recorder {
    async fn handle(
        &self,
        event: &EventEnvelope,
        txn: &DatabaseTransaction,
    ) -> Result<(), HandlerError> {
        let thing: ThingHappened = event
            .decode()
            .map_err(|error| HandlerError::new(error.to_string()))?;
        txn.execute_raw(Statement::from_sql_and_values(
            txn.get_database_backend(),
            match txn.get_database_backend() {
                DbBackend::Postgres => {
                    "INSERT INTO effects (event_id, thing, step) VALUES ($1, $2, $3)"
                }
                _ => "INSERT INTO effects (event_id, thing, step) VALUES (?, ?, ?)",
            },
            [
                event.id.into(),
                thing.thing.clone().into(),
                <i32 as TryFrom<u32>>::try_from(thing.step)
                    .unwrap_or(i32::MAX)
                    .into(),
            ],
        ))
        .await
        .map_err(|error| HandlerError::new(error.to_string()))?;
        // Fail after writing: the write must be rolled back with the attempt.
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok()
        {
            return Err(HandlerError::new("not today"));
        }
        if self.refused.lock().expect("lock").contains(&thing.thing) {
            return Err(HandlerError::new(format!("{} is refused", thing.thing)));
        }
        if self.poisoned.lock().expect("lock").contains(&thing.thing) {
            txn.execute_unprepared("INSERT INTO orphans (parent) VALUES (42)")
                .await
                .map_err(|error| HandlerError::new(error.to_string()))?;
        }
        self.handled
            .lock()
            .expect("lock")
            .push((thing.thing, thing.step));
        Ok(())
    }

    async fn after_commit(
        &self,
        event: &EventEnvelope,
        db: &DatabaseConnection,
    ) -> Result<(), HandlerError> {
        let thing: ThingHappened = event
            .decode()
            .map_err(|error| HandlerError::new(error.to_string()))?;
        // Read on the pool, outside any transaction: only a committed row is visible.
        let backend = db.get_database_backend();
        let sql = match backend {
            DbBackend::Postgres => "SELECT COUNT(*) AS n FROM effects WHERE event_id = $1",
            _ => "SELECT COUNT(*) AS n FROM effects WHERE event_id = ?",
        };
        let committed = db
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                sql,
                [event.id.into()],
            ))
            .await
            .map_err(|error| HandlerError::new(error.to_string()))?
            .and_then(|row| row.try_get::<i64>("", "n").ok())
            .is_some_and(|n| n == 1);
        self.effects_run
            .lock()
            .expect("lock")
            .push((thing.thing.clone(), thing.step, committed));
        if self
            .hanging_effects
            .lock()
            .expect("lock")
            .contains(&thing.thing)
        {
            self.reached.notify_one();
            std::future::pending::<()>().await;
        }
        if self
            .effect_failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok()
            || self
                .failing_effects
                .lock()
                .expect("lock")
                .contains(&thing.thing)
        {
            return Err(HandlerError::new("the mail relay is away"));
        }
        Ok(())
    }
}

struct Fixture {
    _publisher_store: TestStore,
    _consumer_store: TestStore,
    publisher_db: DatabaseConnection,
    consumer_db: DatabaseConnection,
    outbox: Outbox,
    clock: Arc<ManualClock>,
    recorder: Arc<Recorder>,
}

impl Fixture {
    async fn new(store: TestStore, failures: usize) -> Self {
        let consumer_store = TestStore::new(store.backend).await;
        let publisher_db = store.connect("publisher").await;
        db_kit::migrate::<PublisherMigrator>(&publisher_db, "publisher")
            .await
            .expect("migrate");
        let consumer_db = consumer_store.connect("consumer").await;
        db_kit::migrate::<ConsumerMigrator>(&consumer_db, "consumer")
            .await
            .expect("migrate");
        Self {
            _publisher_store: store,
            _consumer_store: consumer_store,
            publisher_db,
            consumer_db,
            outbox: Outbox::new("publisher"),
            clock: Arc::new(ManualClock::new(Utc::now())),
            recorder: Arc::new(Recorder {
                failures: AtomicUsize::new(failures),
                refused: Mutex::new(HashSet::new()),
                poisoned: Mutex::new(HashSet::new()),
                handled: Mutex::new(Vec::new()),
                effect_failures: AtomicUsize::new(0),
                failing_effects: Mutex::new(HashSet::new()),
                hanging_effects: Mutex::new(HashSet::new()),
                reached: tokio::sync::Notify::new(),
                effects_run: Mutex::new(Vec::new()),
            }),
        }
    }

    fn bus(&self) -> Bus {
        let config = BusConfig {
            max_attempts: 3,
            retry_base: Duration::from_secs(10),
            retry_max: Duration::from_secs(60),
            retention: Duration::from_secs(3600),
            ..BusConfig::default()
        };
        Bus::builder(config, self.clock.clone())
            .publisher(&self.outbox, self.publisher_db.clone())
            .consumer(
                Consumer::new("recorder", self.consumer_db.clone(), self.recorder.clone())
                    .subscribe::<ThingHappened>()
                    .subscribe::<ThingRenamed>(),
            )
            .build()
    }

    async fn publish(&self, thing: &str, step: u32) -> EventEnvelope {
        self.publish_event(&ThingHappened {
            thing: thing.into(),
            step,
        })
        .await
    }

    async fn publish_event<E: IntegrationEvent>(&self, event: &E) -> EventEnvelope {
        let txn = self.publisher_db.begin().await.expect("begin");
        let envelope = self
            .outbox
            .append(&txn, event, self.clock.now())
            .await
            .expect("append");
        txn.commit().await.expect("commit");
        envelope
    }

    async fn scalar(&self, db: &DatabaseConnection, sql: &str) -> i64 {
        let row = db
            .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
            .await
            .expect("query")
            .expect("row");
        row.try_get::<i64>("", "n").expect("count")
    }

    /// Deliveries of `aggregate` fail from now on: the consumer's inbox refuses them.
    async fn refuse_deliveries(&self, aggregate: &str) {
        self.execute(
            &self.consumer_db,
            "INSERT INTO refused (aggregate_id) VALUES ($1)",
            aggregate,
        )
        .await;
    }

    async fn allow_deliveries(&self, aggregate: &str) {
        self.execute(
            &self.consumer_db,
            "DELETE FROM refused WHERE aggregate_id = $1",
            aggregate,
        )
        .await;
    }

    /// Runs `sql` with one text parameter, written `$1` (rewritten to `?` on SQLite).
    async fn execute(&self, db: &DatabaseConnection, sql: &str, value: &str) {
        let backend = db.get_database_backend();
        let sql = match backend {
            DbBackend::Postgres => sql.to_owned(),
            _ => sql.replace("$1", "?"),
        };
        db.execute_raw(Statement::from_sql_and_values(backend, sql, [value.into()]))
            .await
            .expect("execute");
    }

    /// Runs the bus once per allowed attempt, waiting out the backoff in between: whatever
    /// keeps failing is parked when it returns.
    async fn run_until_parked(&self, bus: &Bus) {
        for _ in 0..3 {
            bus.run_until_idle().await.expect("run");
            self.clock.advance(chrono::Duration::seconds(60));
        }
    }

    async fn effects(&self) -> i64 {
        self.scalar(&self.consumer_db, "SELECT COUNT(*) AS n FROM effects")
            .await
    }

    /// (thing, step) in the order they were handled.
    async fn effect_order(&self) -> Vec<(String, i32)> {
        let rows = self
            .consumer_db
            .query_all_raw(Statement::from_string(
                self.consumer_db.get_database_backend(),
                "SELECT thing, step FROM effects ORDER BY id",
            ))
            .await
            .expect("query");
        rows.iter()
            .map(|row| {
                (
                    row.try_get("", "thing").expect("thing"),
                    row.try_get("", "step").expect("step"),
                )
            })
            .collect()
    }
}

async fn events_exist_only_if_their_transaction_commits(store: TestStore) {
    let fixture = Fixture::new(store, 0).await;
    let txn = fixture.publisher_db.begin().await.expect("begin");
    fixture
        .outbox
        .append(
            &txn,
            &ThingHappened {
                thing: "a".into(),
                step: 1,
            },
            fixture.clock.now(),
        )
        .await
        .expect("append");
    txn.rollback().await.expect("rollback");
    let bus = fixture.bus();
    assert!(bus.run_until_idle().await.expect("run").is_idle());
    assert_eq!(fixture.effects().await, 0);

    fixture.publish("a", 2).await;
    let progress = bus.run_until_idle().await.expect("run");
    assert_eq!((progress.relayed, progress.handled), (1, 1));
    assert_eq!(fixture.effects().await, 1);
    assert_eq!(bus.pending().await.expect("pending"), 0);
}

/// `Outbox::commit_change`: a change that applies is written with its event (one
/// statement on Postgres, a transaction on SQLite); one that touches nothing writes no event.
async fn a_change_and_its_event_are_written_together_or_not_at_all(store: TestStore) {
    let fixture = Fixture::new(store, 0).await;
    fixture
        .execute(
            &fixture.publisher_db,
            "INSERT INTO things (id, state) VALUES ($1, 'new')",
            "a",
        )
        .await;
    let finish = || {
        Query::update()
            .table(Alias::new("things"))
            .value(Alias::new("state"), "done")
            .and_where(Expr::col(Alias::new("id")).eq("a"))
            .and_where(Expr::col(Alias::new("state")).eq("new"))
            .to_owned()
    };
    let event = ThingHappened {
        thing: "a".into(),
        step: 1,
    };
    let bus = fixture.bus();

    let written = fixture
        .outbox
        .commit_change(&fixture.publisher_db, finish(), &event, fixture.clock.now())
        .await
        .expect("commit the change");
    let envelope = written.expect("the change applied, so its event is written");
    assert_eq!(envelope.decode::<ThingHappened>().expect("decode"), event);
    let done = "SELECT COUNT(*) AS n FROM things WHERE state = 'done'";
    assert_eq!(fixture.scalar(&fixture.publisher_db, done).await, 1);
    let progress = bus.run_until_idle().await.expect("run");
    assert_eq!((progress.relayed, progress.handled), (1, 1));
    assert_eq!(fixture.recorder.handled(), [("a".to_owned(), 1)]);

    // The same change again finds the thing done already: no event, nothing written.
    let written = fixture
        .outbox
        .commit_change(&fixture.publisher_db, finish(), &event, fixture.clock.now())
        .await
        .expect("commit the change");
    assert!(written.is_none());
    let events = "SELECT COUNT(*) AS n FROM outbox";
    assert_eq!(fixture.scalar(&fixture.publisher_db, events).await, 1);
    assert!(bus.run_until_idle().await.expect("run").is_idle());
    assert_eq!(fixture.effects().await, 1);
}

/// `Outbox::commit_rows_with`: new rows are committed with their event (one statement and
/// the commit on Postgres); a row that cannot be written (here a duplicate key) rolls back
/// the others and the event, and comes back as the database's error.
async fn new_rows_and_their_event_are_committed_together_or_not_at_all(store: TestStore) {
    let fixture = Fixture::new(store, 0).await;
    let thing = |id: &str| {
        Query::insert()
            .into_table(Alias::new("things"))
            .columns([Alias::new("id"), Alias::new("state")])
            .values_panic([id.into(), "new".into()])
            .to_owned()
    };
    let event = |step| ThingHappened {
        thing: "b".into(),
        step,
    };
    let bus = fixture.bus();

    let txn = fixture.publisher_db.begin().await.expect("begin");
    fixture
        .outbox
        .commit_rows_with(
            txn,
            vec![thing("a"), thing("b")],
            &event(1),
            fixture.clock.now(),
        )
        .await
        .expect("commit the rows");
    let things = "SELECT COUNT(*) AS n FROM things";
    assert_eq!(fixture.scalar(&fixture.publisher_db, things).await, 2);
    let progress = bus.run_until_idle().await.expect("run");
    assert_eq!((progress.relayed, progress.handled), (1, 1));

    // "c" is new but "a" is taken: neither row nor the event is written.
    let txn = fixture.publisher_db.begin().await.expect("begin");
    let error = fixture
        .outbox
        .commit_rows_with(
            txn,
            vec![thing("c"), thing("a")],
            &event(2),
            fixture.clock.now(),
        )
        .await
        .expect_err("a duplicate key");
    assert!(db_kit::is_unique_violation(&error), "{error}");
    assert_eq!(fixture.scalar(&fixture.publisher_db, things).await, 2);
    let events = "SELECT COUNT(*) AS n FROM outbox";
    assert_eq!(fixture.scalar(&fixture.publisher_db, events).await, 1);
    assert!(bus.run_until_idle().await.expect("run").is_idle());
    assert_eq!(fixture.recorder.handled(), [("b".to_owned(), 1)]);
}

async fn events_without_subscribers_are_dispatched_and_dropped(store: TestStore) {
    let fixture = Fixture::new(store, 0).await;
    let txn = fixture.publisher_db.begin().await.expect("begin");
    fixture
        .outbox
        .append(&txn, &Ignored, fixture.clock.now())
        .await
        .expect("append");
    txn.commit().await.expect("commit");
    let progress = fixture.bus().run_until_idle().await.expect("run");
    assert_eq!((progress.relayed, progress.handled), (1, 0));
    assert_eq!(
        fixture
            .scalar(&fixture.consumer_db, "SELECT COUNT(*) AS n FROM inbox")
            .await,
        0
    );
}

/// The same event delivered three times, one after the other and then three times at once,
/// has one effect.
async fn duplicate_deliveries_have_one_effect(store: TestStore) {
    let fixture = Fixture::new(store, 0).await;
    let consumer = Consumer::new(
        "recorder",
        fixture.consumer_db.clone(),
        fixture.recorder.clone(),
    )
    .subscribe::<ThingHappened>();
    let now = fixture.clock.now();
    let first = EventEnvelope::wrap(
        &ThingHappened {
            thing: "dup".into(),
            step: 1,
        },
        now,
    )
    .expect("wrap");
    for _ in 0..3 {
        consumer.accept(&first, now).await.expect("accept");
    }
    let second = EventEnvelope::wrap(
        &ThingHappened {
            thing: "dup".into(),
            step: 2,
        },
        now,
    )
    .expect("wrap");
    let concurrent = (0..3).map(|_| {
        let consumer = consumer.clone();
        let second = second.clone();
        tokio::spawn(async move { consumer.accept(&second, now).await })
    });
    for accepted in futures::future::join_all(concurrent).await {
        accepted.expect("task").expect("accept");
    }
    let bus = fixture.bus();
    bus.run_until_idle().await.expect("run");
    // Deliveries after handling are ignored too.
    consumer.accept(&first, now).await.expect("accept");
    bus.run_until_idle().await.expect("run");
    assert_eq!(fixture.effects().await, 2);
    assert_eq!(
        fixture
            .scalar(&fixture.consumer_db, "SELECT COUNT(*) AS n FROM inbox")
            .await,
        2
    );
}

async fn failing_handlers_retry_with_backoff_then_park_and_replay(store: TestStore) {
    // Fails on all three attempts the bus allows, so the replayed fourth attempt succeeds.
    let fixture = Fixture::new(store, 3).await;
    let bus = fixture.bus();
    fixture.publish("flaky", 1).await;

    bus.run_until_idle().await.expect("first attempt");
    assert_eq!(
        fixture.effects().await,
        0,
        "a failed attempt leaves no effect"
    );
    // Not due yet: the retry waits 10 s.
    assert!(bus.run_until_idle().await.expect("too early").is_idle());
    fixture.clock.advance(chrono::Duration::seconds(10));
    assert_eq!(bus.run_until_idle().await.expect("second").handled, 1);
    fixture.clock.advance(chrono::Duration::seconds(19));
    assert!(
        bus.run_until_idle()
            .await
            .expect("still backing off")
            .is_idle(),
        "the second wait is 20 s"
    );
    fixture.clock.advance(chrono::Duration::seconds(1));
    assert_eq!(bus.run_until_idle().await.expect("third").handled, 1);

    let failed = bus.failed().await.expect("failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].stage, Stage::Handling);
    assert_eq!(failed[0].owner, "recorder");
    assert_eq!(failed[0].attempts, 3);
    assert_eq!(failed[0].last_error.as_deref(), Some("not today"));
    assert_eq!(fixture.effects().await, 0);
    fixture.clock.advance(chrono::Duration::hours(1));
    assert!(
        bus.run_until_idle().await.expect("parked").is_idle(),
        "parked events are not retried"
    );

    assert!(bus.retry(failed[0].id).await.expect("retry"));
    assert!(
        !bus.retry(failed[0].id).await.expect("retry again"),
        "no longer parked"
    );
    assert_eq!(bus.run_until_idle().await.expect("replay").handled, 1);
    assert_eq!(fixture.effects().await, 1);
    assert!(bus.failed().await.expect("failed").is_empty());
    assert!(!bus.retry(uuid::Uuid::now_v7()).await.expect("unknown id"));
}

async fn events_of_one_aggregate_are_handled_in_order(store: TestStore) {
    // The first handling fails: the rest of that aggregate must wait for it.
    let fixture = Fixture::new(store, 1).await;
    let bus = fixture.bus();
    for step in 1..=3 {
        fixture.publish("ordered", step).await;
    }
    fixture.publish("other", 1).await;
    bus.run_until_idle().await.expect("run");
    assert_eq!(
        fixture.effect_order().await,
        [("other".into(), 1)],
        "`ordered` waits behind its failed first event"
    );
    fixture.clock.advance(chrono::Duration::seconds(10));
    bus.run_until_idle().await.expect("run");
    assert_eq!(
        fixture.effect_order().await,
        [
            ("other".into(), 1),
            ("ordered".into(), 1),
            ("ordered".into(), 2),
            ("ordered".into(), 3)
        ]
    );
}

/// A parked event holds back the later events of its aggregate for its consumer (the
/// cancellation of an order waits for its parked confirmation) until an operator retries
/// it; then both are handled, in order. Other aggregates go on meanwhile.
async fn a_parked_event_holds_back_its_aggregate_until_retried(store: TestStore) {
    let fixture = Fixture::new(store, 0).await;
    let bus = fixture.bus();
    fixture.recorder.refuse("order");
    fixture.publish("order", 1).await;
    fixture.run_until_parked(&bus).await;
    let parked = bus.failed().await.expect("failed");
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].stage, Stage::Handling);

    // The cause is fixed, but nobody has retried the parked event yet.
    fixture.recorder.allow("order");
    fixture.publish("order", 2).await;
    fixture.publish("other", 1).await;
    bus.run_until_idle().await.expect("run");
    fixture.clock.advance(chrono::Duration::hours(1));
    bus.run_until_idle().await.expect("run");
    assert_eq!(
        fixture.effect_order().await,
        [("other".into(), 1)],
        "`order` 2 waits behind its parked first event"
    );
    assert_eq!(bus.pending().await.expect("pending"), 1);

    assert!(bus.retry(parked[0].id).await.expect("retry"));
    bus.run_until_idle().await.expect("run");
    assert_eq!(
        fixture.effect_order().await,
        [
            ("other".into(), 1),
            ("order".into(), 1),
            ("order".into(), 2)
        ]
    );
    assert!(bus.failed().await.expect("failed").is_empty());
}

/// The same on the publishing side: an event whose delivery is parked holds back the later
/// events of its aggregate in the publisher's outbox; they are not even attempted.
async fn a_parked_delivery_holds_back_its_aggregate_until_retried(store: TestStore) {
    let fixture = Fixture::new(store, 0).await;
    let bus = fixture.bus();
    fixture.refuse_deliveries("order").await;
    fixture.publish("order", 1).await;
    fixture.run_until_parked(&bus).await;
    let parked = bus.failed().await.expect("failed");
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].stage, Stage::Delivery);
    assert_eq!(parked[0].owner, "publisher");

    fixture.allow_deliveries("order").await;
    fixture.publish("order", 2).await;
    fixture.publish("other", 1).await;
    bus.run_until_idle().await.expect("run");
    fixture.clock.advance(chrono::Duration::hours(1));
    bus.run_until_idle().await.expect("run");
    assert_eq!(fixture.effect_order().await, [("other".into(), 1)]);
    assert_eq!(
        fixture
            .scalar(
                &fixture.publisher_db,
                "SELECT COUNT(*) AS n FROM outbox WHERE aggregate_id = 'order' AND status = 'pending' AND attempts = 0"
            )
            .await,
        1,
        "`order` 2 was never attempted"
    );

    assert!(bus.retry(parked[0].id).await.expect("retry"));
    bus.run_until_idle().await.expect("run");
    assert_eq!(
        fixture.effect_order().await,
        [
            ("other".into(), 1),
            ("order".into(), 1),
            ("order".into(), 2)
        ]
    );
}

/// Discarding a parked event, in a consumer's inbox or in a publisher's outbox, records it
/// as discarded (listed as such, never handled, never retried) and lets the later events of
/// its aggregate through. Discarded rows are purged after the retention like finished ones.
async fn discarding_a_parked_event_lets_its_aggregate_go_on(store: TestStore) {
    let fixture = Fixture::new(store, 0).await;
    let bus = fixture.bus();
    fixture.recorder.refuse("order");
    fixture.refuse_deliveries("late").await;
    fixture.publish("order", 1).await;
    fixture.publish("late", 1).await;
    fixture.run_until_parked(&bus).await;
    fixture.publish("order", 2).await;
    fixture.publish("late", 2).await;
    let parked = bus.failed().await.expect("failed");
    assert_eq!(parked.len(), 2, "{parked:#?}");
    assert!(
        parked
            .iter()
            .all(|event| event.status == ParkedStatus::Failed)
    );
    // Fixed, but the first events are not wanted any more.
    fixture.recorder.allow("order");
    fixture.allow_deliveries("late").await;
    bus.run_until_idle().await.expect("run");
    assert!(fixture.effect_order().await.is_empty(), "still held back");

    for event in &parked {
        assert!(bus.discard(event.id).await.expect("discard"));
        assert!(
            !bus.discard(event.id).await.expect("discard again"),
            "no longer parked"
        );
        assert!(
            !bus.retry(event.id).await.expect("retry"),
            "a discarded event is never retried"
        );
    }
    assert!(!bus.discard(uuid::Uuid::now_v7()).await.expect("unknown id"));
    assert!(bus.failed().await.expect("failed").is_empty());
    let discarded = bus
        .list(ParkedStatus::Discarded, &EventFilter::default())
        .await
        .expect("discarded");
    let mut ids: Vec<_> = discarded.iter().map(|event| event.id).collect();
    let mut expected: Vec<_> = parked.iter().map(|event| event.id).collect();
    ids.sort();
    expected.sort();
    assert_eq!(ids, expected);
    assert!(
        discarded
            .iter()
            .all(|event| event.status == ParkedStatus::Discarded && event.attempts == 3)
    );

    bus.run_until_idle().await.expect("run");
    let mut order = fixture.effect_order().await;
    order.sort();
    assert_eq!(
        order,
        [("late".into(), 2), ("order".into(), 2)],
        "the later events went on; the discarded ones were never handled"
    );
    fixture.clock.advance(chrono::Duration::hours(2));
    // Four outbox rows (one discarded) and three inbox rows (one discarded): the discarded
    // delivery never reached the inbox.
    assert_eq!(bus.purge().await.expect("purge"), 7);
    assert!(
        bus.list(ParkedStatus::Discarded, &EventFilter::default())
            .await
            .expect("discarded")
            .is_empty()
    );
}

/// Retrying in bulk puts back in line every parked event the filter names (an owner, an
/// event name, both or neither) and says how many.
async fn retrying_in_bulk_requeues_what_the_filter_names(store: TestStore) {
    let fixture = Fixture::new(store, 0).await;
    let bus = fixture.bus();
    fixture.recorder.refuse("a");
    fixture.recorder.refuse("b");
    fixture.refuse_deliveries("d").await;
    fixture.publish("a", 1).await;
    fixture.publish("b", 1).await;
    fixture
        .publish_event(&ThingRenamed { thing: "c".into() })
        .await;
    fixture.publish("d", 1).await;
    fixture.run_until_parked(&bus).await;
    assert_eq!(bus.failed().await.expect("failed").len(), 4);
    fixture.recorder.allow("a");
    fixture.recorder.allow("b");
    fixture.allow_deliveries("d").await;

    let filter = |owner: Option<&str>, event_name: Option<&str>| EventFilter {
        owner: owner.map(Into::into),
        event_name: event_name.map(Into::into),
    };
    assert_eq!(
        bus.retry_all(&filter(Some("nobody"), None))
            .await
            .expect("retry"),
        0
    );
    assert_eq!(
        bus.retry_all(&filter(Some("recorder"), Some(ThingHappened::NAME)))
            .await
            .expect("retry"),
        2
    );
    bus.run_until_idle().await.expect("run");
    let mut order = fixture.effect_order().await;
    order.sort();
    assert_eq!(order, [("a".into(), 1), ("b".into(), 1)]);
    let left: Vec<_> = bus
        .failed()
        .await
        .expect("failed")
        .into_iter()
        .map(|event| (event.owner, event.event_name))
        .collect();
    assert_eq!(left.len(), 2);
    assert!(left.contains(&("recorder".into(), ThingRenamed::NAME.into())));
    assert!(left.contains(&("publisher".into(), ThingHappened::NAME.into())));

    assert_eq!(
        bus.retry_all(&filter(Some("publisher"), None))
            .await
            .expect("retry"),
        1
    );
    bus.run_until_idle().await.expect("run");
    assert_eq!(fixture.effects().await, 3, "`d` delivered and handled");

    assert_eq!(
        bus.retry_all(&EventFilter::default()).await.expect("retry"),
        1,
        "the undecodable event"
    );
    assert!(bus.failed().await.expect("failed").is_empty());
    assert_eq!(
        bus.retry_all(&EventFilter::default()).await.expect("retry"),
        0
    );
}

/// A handler's transaction that cannot commit (a deferred foreign key fails at `COMMIT`)
/// costs its event one attempt, recorded in a transaction of its own; the other events of
/// the same batch, rolled back with it, are taken again one transaction each, so their work
/// commits once, and the poisoned one is retried with backoff and parked after the allowed
/// attempts, like any other failure.
async fn a_transaction_that_cannot_commit_costs_an_attempt_and_parks(store: TestStore) {
    let fixture = Fixture::new(store, 0).await;
    let bus = fixture.bus();
    fixture.recorder.poison("poison");
    fixture.publish("a", 1).await;
    fixture.publish("poison", 1).await;
    fixture.publish("b", 1).await;

    let progress = bus
        .run_until_idle()
        .await
        .expect("a failed commit does not stop the pass");
    assert_eq!(progress.handled, 3);
    let mut order = fixture.effect_order().await;
    order.sort();
    assert_eq!(order, [("a".into(), 1), ("b".into(), 1)]);
    assert_eq!(
        fixture
            .scalar(
                &fixture.consumer_db,
                "SELECT COUNT(*) AS n FROM inbox WHERE aggregate_id = 'poison' AND status = 'pending' AND attempts = 1"
            )
            .await,
        1,
        "the attempt is counted"
    );
    assert!(
        bus.run_until_idle().await.expect("run").is_idle(),
        "backing off"
    );

    fixture.run_until_parked(&bus).await;
    let parked = bus.failed().await.expect("failed");
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].aggregate_id, "poison");
    assert_eq!(parked[0].attempts, 3);
    assert!(
        parked[0]
            .last_error
            .as_deref()
            .is_some_and(|error| error.to_lowercase().contains("foreign key")),
        "{:?}",
        parked[0].last_error
    );
    let handled_once: Vec<_> = fixture
        .recorder
        .handled()
        .into_iter()
        .filter(|(thing, _)| thing != "poison")
        .collect();
    // Their handlers ran in the batch that rolled back, then alone: `handle` may run more
    // than once (its contract: nothing outside the transaction), its work commits once.
    assert!(
        handled_once.contains(&("a".into(), 1)) && handled_once.contains(&("b".into(), 1)),
        "{handled_once:?}"
    );
    assert_eq!(
        fixture.effects().await,
        2,
        "the others' work committed once"
    );
}

/// The effects after the commit run once the handler's transaction committed; a failure
/// retries them alone, with backoff, without running the handler again.
async fn effects_run_after_the_commit_and_are_retried_alone(store: TestStore) {
    let fixture = Fixture::new(store, 0).await;
    fixture.recorder.effect_failures.store(1, Ordering::SeqCst);
    let bus = fixture.bus();
    fixture.publish("mail", 1).await;
    fixture.publish("mail", 2).await;
    assert_eq!(bus.run_until_idle().await.expect("run").handled, 1);
    assert_eq!(
        fixture.effects().await,
        1,
        "the handler's work is committed"
    );
    assert_eq!(
        fixture
            .scalar(
                &fixture.consumer_db,
                "SELECT COUNT(*) AS n FROM inbox WHERE status = 'handled' AND attempts = 1 AND handled_at IS NOT NULL AND last_error = 'the mail relay is away'"
            )
            .await,
        1,
        "the failed effects are recorded on the row"
    );
    assert!(
        bus.run_until_idle().await.expect("run").is_idle(),
        "backing off; `mail` 2 waits"
    );

    fixture.clock.advance(chrono::Duration::seconds(10));
    assert_eq!(bus.run_until_idle().await.expect("run").handled, 2);
    assert_eq!(
        fixture.recorder.handled(),
        [("mail".into(), 1), ("mail".into(), 2)],
        "each handler ran once"
    );
    assert_eq!(
        fixture.recorder.effects_run(),
        [
            ("mail".into(), 1, true),
            ("mail".into(), 1, true),
            ("mail".into(), 2, true)
        ],
        "effects ran after the commit, the failed ones again"
    );
    assert_eq!(fixture.effects().await, 2);
    assert_eq!(bus.pending().await.expect("pending"), 0);
}

/// Effects that keep failing park their event at the `after_commit` stage, which holds back
/// its aggregate like any parked event; a retry runs the effects only.
async fn failing_effects_park_and_a_retry_runs_only_them(store: TestStore) {
    let fixture = Fixture::new(store, 0).await;
    fixture
        .recorder
        .failing_effects
        .lock()
        .expect("lock")
        .insert("mail".into());
    let bus = fixture.bus();
    fixture.publish("mail", 1).await;
    fixture.run_until_parked(&bus).await;
    fixture.publish("mail", 2).await;
    bus.run_until_idle().await.expect("run");
    let parked = bus.failed().await.expect("failed");
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].stage, Stage::AfterCommit);
    assert_eq!(parked[0].attempts, 3);
    assert_eq!(fixture.recorder.handled(), [("mail".into(), 1)], "2 waits");

    fixture
        .recorder
        .failing_effects
        .lock()
        .expect("lock")
        .clear();
    assert!(bus.retry(parked[0].id).await.expect("retry"));
    bus.run_until_idle().await.expect("run");
    assert_eq!(
        fixture.recorder.handled(),
        [("mail".into(), 1), ("mail".into(), 2)],
        "the retry did not run the first handler again"
    );
    let effects: Vec<_> = fixture
        .recorder
        .effects_run()
        .into_iter()
        .map(|(_, step, _)| step)
        .collect();
    assert_eq!(effects, [1, 1, 1, 1, 2]);
    assert_eq!(fixture.effects().await, 2);
    assert!(bus.failed().await.expect("failed").is_empty());
}

/// The process dies after the handler's transaction committed, before its effects were
/// done (here: while they run). The next process runs the effects, and only them, once the
/// dead one's claim on them lapses (`retry_max`).
async fn effects_cut_short_by_a_crash_run_on_the_next_process(store: TestStore) {
    let fixture = Fixture::new(store, 0).await;
    fixture
        .recorder
        .hanging_effects
        .lock()
        .expect("lock")
        .insert("mail".into());
    fixture.publish("mail", 1).await;
    let dying = fixture.bus();
    tokio::select! {
        result = dying.run_until_idle() => panic!("the effects should never finish: {result:?}"),
        () = fixture.recorder.reached.notified() => {}
    }
    drop(dying);
    fixture
        .recorder
        .hanging_effects
        .lock()
        .expect("lock")
        .clear();
    assert_eq!(fixture.effects().await, 1, "the handler's work committed");

    let restarted = fixture.bus();
    assert!(
        restarted.run_until_idle().await.expect("run").is_idle(),
        "the dead process's claim has not lapsed yet"
    );
    fixture.clock.advance(chrono::Duration::seconds(60));
    assert_eq!(restarted.run_until_idle().await.expect("run").handled, 1);
    assert_eq!(fixture.recorder.handled(), [("mail".into(), 1)]);
    assert_eq!(
        fixture.recorder.effects_run(),
        [("mail".into(), 1, true), ("mail".into(), 1, true)],
        "at least once: the effects ran again"
    );
    assert_eq!(restarted.pending().await.expect("pending"), 0);
}

/// A process dies after committing an event but before relaying it; the next process
/// (a new bus on the same stores) delivers it.
async fn committed_events_survive_a_restart(store: TestStore) {
    let fixture = Fixture::new(store, 0).await;
    fixture.publish("survivor", 1).await;
    drop(fixture.bus()); // the first process never ran its relay
    let restarted = fixture.bus();
    assert_eq!(restarted.run_until_idle().await.expect("run").handled, 1);
    assert_eq!(fixture.effects().await, 1);
}

async fn finished_rows_are_purged_after_the_retention(store: TestStore) {
    let fixture = Fixture::new(store, 0).await;
    let bus = fixture.bus();
    fixture.publish("old", 1).await;
    bus.run_until_idle().await.expect("run");
    assert_eq!(bus.purge().await.expect("purge"), 0, "too recent");
    fixture.clock.advance(chrono::Duration::hours(2));
    assert_eq!(
        bus.purge().await.expect("purge"),
        2,
        "one outbox row, one inbox row"
    );
    assert_eq!(
        fixture
            .scalar(&fixture.publisher_db, "SELECT COUNT(*) AS n FROM outbox")
            .await,
        0
    );
    assert_eq!(fixture.effects().await, 1, "effects stay");
}

/// Two buses (two `shop` processes) on the same stores, running at once, handle every
/// event exactly once and in order per aggregate.
async fn two_dispatchers_handle_each_event_once(store: TestStore) {
    let fixture = Fixture::new(store, 0).await;
    for step in 1..=20 {
        for thing in ["a", "b", "c", "d", "e"] {
            fixture.publish(thing, step).await;
        }
    }
    let first = Arc::new(fixture.bus());
    let second = Arc::new(fixture.bus());
    let runs = [first.clone(), second.clone(), first, second]
        .map(|bus| tokio::spawn(async move { bus.run_until_idle().await }));
    for run in futures::future::join_all(runs).await {
        run.expect("task").expect("run");
    }
    fixture.bus().run_until_idle().await.expect("settle");
    assert_eq!(fixture.effects().await, 100);
    assert_eq!(
        fixture
            .scalar(&fixture.consumer_db, "SELECT COUNT(*) AS n FROM (SELECT event_id FROM effects GROUP BY event_id HAVING COUNT(*) > 1) dup")
            .await,
        0,
        "no event was handled twice"
    );
    let order = fixture.effect_order().await;
    for thing in ["a", "b", "c", "d", "e"] {
        let steps: Vec<i32> = order
            .iter()
            .filter(|(t, _)| t == thing)
            .map(|(_, s)| *s)
            .collect();
        assert_eq!(steps, (1..=20).collect::<Vec<_>>(), "{thing} in order");
    }
}

/// Events of one aggregate arriving out of their publisher's order (as a broker may deliver
/// them) are handled in the publisher's order.
async fn an_aggregates_events_are_handled_in_their_publishers_order(store: TestStore) {
    let fixture = Fixture::new(store, 0).await;
    let bus = fixture.bus();
    let consumer = Consumer::new(
        "recorder",
        fixture.consumer_db.clone(),
        fixture.recorder.clone(),
    )
    .subscribe::<ThingHappened>();
    let now = fixture.clock.now();
    let step = |step| {
        EventEnvelope::wrap(
            &ThingHappened {
                thing: "late".into(),
                step,
            },
            now,
        )
        .expect("wrap")
    };
    // Published as 10, 11, 12; they arrive 12, 10, 11.
    for (seq, event) in [(12, step(3)), (10, step(1)), (11, step(2))] {
        consumer
            .accept_from(&event, seq, now)
            .await
            .expect("accept");
    }
    bus.run_until_idle().await.expect("run");
    assert_eq!(
        fixture.effect_order().await,
        [("late".into(), 1), ("late".into(), 2), ("late".into(), 3)]
    );
}

testkit::backend_tests!(
    an_aggregates_events_are_handled_in_their_publishers_order,
    events_exist_only_if_their_transaction_commits,
    a_change_and_its_event_are_written_together_or_not_at_all,
    new_rows_and_their_event_are_committed_together_or_not_at_all,
    events_without_subscribers_are_dispatched_and_dropped,
    duplicate_deliveries_have_one_effect,
    failing_handlers_retry_with_backoff_then_park_and_replay,
    events_of_one_aggregate_are_handled_in_order,
    a_parked_event_holds_back_its_aggregate_until_retried,
    a_parked_delivery_holds_back_its_aggregate_until_retried,
    discarding_a_parked_event_lets_its_aggregate_go_on,
    retrying_in_bulk_requeues_what_the_filter_names,
    a_transaction_that_cannot_commit_costs_an_attempt_and_parks,
    effects_run_after_the_commit_and_are_retried_alone,
    failing_effects_park_and_a_retry_runs_only_them,
    effects_cut_short_by_a_crash_run_on_the_next_process,
    committed_events_survive_a_restart,
    finished_rows_are_purged_after_the_retention,
    two_dispatchers_handle_each_event_once,
);
