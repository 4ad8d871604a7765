//! notifications' behaviour through its public interface (the consumer on an event bus, the
//! API, the HTTP routes), on SQLite and on Postgres.
//!
//! Events come from a scratch publisher: an outbox in a store of its own, standing in for
//! auth's and orders' outboxes, relayed by a real `messaging::Bus` on a manual clock.

mod handling;
mod http;
mod listing;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use auth_api::UserRegistered;
use chrono::{SubsecRound, Utc};
use kernel::{
    Clock, Currency, EventEnvelope, IntegrationEvent, ManualClock, Money, Page, PageRequest, UserId,
};
use messaging::{Bus, BusConfig, Outbox, Progress};
use notifications::{FileSender, NotificationsModule, OutgoingMessage, SendError, Sender};
use notifications_api::Notification;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement, TransactionTrait};
use sea_orm_migration::prelude::*;
use testkit::TestStore;

/// The scratch publisher's schema: an outbox and nothing else.
struct PublisherMigrator;

impl MigratorTrait for PublisherMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateOutbox)]
    }
}

#[derive(DeriveMigrationName)]
struct CreateOutbox;

#[async_trait]
impl MigrationTrait for CreateOutbox {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        messaging::migration::v1::create_outbox(manager).await
    }
}

/// Where a [`TestSender`] stops forever, as if the process died there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hang {
    /// Before anything is written.
    BeforeSending,
    /// After the message is written, before `send` returns.
    AfterSending,
}

/// Writes messages to a mailbox directory like the shop's file sender, records every
/// successful send, and refuses the first `failures` sends. It also notes, on a connection
/// of its own, whether the notification it is asked to send was already committed, and it
/// can be told to hang (see [`Hang`]).
#[derive(Debug)]
pub struct TestSender {
    files: FileSender,
    failures: AtomicUsize,
    sent: Mutex<Vec<OutgoingMessage>>,
    /// Another connection to notifications' store: it sees committed rows only.
    observer: DatabaseConnection,
    /// (notification id, whether its row was committed) of every call.
    calls: Mutex<Vec<(uuid::Uuid, bool)>>,
    hang: Mutex<Option<Hang>>,
    /// Told when the sender starts hanging.
    pub hanging: tokio::sync::Notify,
}

impl TestSender {
    /// Ids of the messages sent, in order, repeats included.
    pub fn sent(&self) -> Vec<uuid::Uuid> {
        self.sent
            .lock()
            .expect("lock")
            .iter()
            .map(|message| message.id)
            .collect()
    }

    /// The messages sent, in order, repeats included.
    pub fn messages(&self) -> Vec<OutgoingMessage> {
        self.sent.lock().expect("lock").clone()
    }

    /// (notification id, whether its row was committed) of every call, failed ones too.
    pub fn calls(&self) -> Vec<(uuid::Uuid, bool)> {
        self.calls.lock().expect("lock").clone()
    }

    pub fn fail_next(&self, sends: usize) {
        self.failures.store(sends, Ordering::SeqCst);
    }

    pub fn hang(&self, at: Option<Hang>) {
        *self.hang.lock().expect("lock") = at;
    }

    async fn committed(&self, id: uuid::Uuid) -> bool {
        let backend = self.observer.get_database_backend();
        let sql = match backend {
            sea_orm::DbBackend::Postgres => "SELECT COUNT(*) AS n FROM notifications WHERE id = $1",
            _ => "SELECT COUNT(*) AS n FROM notifications WHERE id = ?",
        };
        let row = self
            .observer
            .query_one_raw(Statement::from_sql_and_values(backend, sql, [id.into()]))
            .await
            .expect("query")
            .expect("row");
        row.try_get::<i64>("", "n").expect("count") == 1
    }

    async fn hang_if(&self, at: Hang) {
        if *self.hang.lock().expect("lock") == Some(at) {
            self.hanging.notify_one();
            std::future::pending::<()>().await;
        }
    }
}

#[async_trait]
impl Sender for TestSender {
    async fn send(&self, message: &OutgoingMessage) -> Result<(), SendError> {
        let committed = self.committed(message.id).await;
        self.calls
            .lock()
            .expect("lock")
            .push((message.id, committed));
        self.hang_if(Hang::BeforeSending).await;
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok()
        {
            return Err(SendError::Other("mail relay unavailable".into()));
        }
        self.files.send(message).await?;
        self.sent.lock().expect("lock").push(message.clone());
        self.hang_if(Hang::AfterSending).await;
        Ok(())
    }
}

#[derive(Debug)]
pub struct Fixture {
    _publisher_store: TestStore,
    pub store: TestStore,
    pub db: DatabaseConnection,
    publisher_db: DatabaseConnection,
    outbox: Outbox,
    pub clock: Arc<ManualClock>,
    pub sender: Arc<TestSender>,
    pub module: NotificationsModule,
    pub bus: Bus,
}

/// Backoff of the test bus: 10 s, then 20 s, ...
pub const RETRY_BASE: chrono::TimeDelta = chrono::TimeDelta::seconds(10);
/// ... up to 60 s; also how long a crashed process's claim on a send lasts.
pub const RETRY_MAX: chrono::TimeDelta = chrono::TimeDelta::seconds(60);
/// Attempts of the test bus before an event is parked.
pub const MAX_ATTEMPTS: usize = 5;
/// How long the test bus keeps finished rows.
pub const RETENTION: chrono::TimeDelta = chrono::TimeDelta::hours(1);

impl Fixture {
    pub async fn new(store: TestStore) -> Self {
        Self::with_failing_sends(store, 0).await
    }

    /// A fixture whose sender refuses its first `failures` messages.
    pub async fn with_failing_sends(store: TestStore, failures: usize) -> Self {
        let publisher_store = TestStore::new(store.backend).await;
        let publisher_db = publisher_store.connect("publisher").await;
        db_kit::migrate::<PublisherMigrator>(&publisher_db, "publisher")
            .await
            .expect("migrate publisher");
        let db = store.connect(notifications::CONTEXT).await;
        notifications::migrate(&db).await.expect("migrate");
        // Whole seconds: timestamps read back from either backend compare equal.
        let clock = Arc::new(ManualClock::new(Utc::now().trunc_subsecs(0)));
        let sender = Arc::new(TestSender {
            files: FileSender::new(store.dir.path().join("mail")),
            failures: AtomicUsize::new(failures),
            sent: Mutex::new(Vec::new()),
            observer: store.connect(notifications::CONTEXT).await,
            calls: Mutex::new(Vec::new()),
            hang: Mutex::new(None),
            hanging: tokio::sync::Notify::new(),
        });
        let module = NotificationsModule::with_sender(db.clone(), clock.clone(), sender.clone());
        let outbox = Outbox::new("publisher");
        let bus = bus(&clock, &outbox, &publisher_db, &module);
        Self {
            _publisher_store: publisher_store,
            store,
            db,
            publisher_db,
            outbox,
            clock,
            sender,
            module,
            bus,
        }
    }

    /// Another bus on the same stores: a second `shop` process.
    pub fn second_bus(&self) -> Bus {
        bus(&self.clock, &self.outbox, &self.publisher_db, &self.module)
    }

    /// Commits `event` to the scratch publisher's outbox.
    pub async fn publish<E: IntegrationEvent>(&self, event: &E) -> EventEnvelope {
        let txn = self.publisher_db.begin().await.expect("begin");
        let envelope = self
            .outbox
            .append(&txn, event, self.clock.now())
            .await
            .expect("append");
        txn.commit().await.expect("commit");
        envelope
    }

    pub async fn run(&self) -> Progress {
        self.bus.run_until_idle().await.expect("run the bus")
    }

    pub fn advance(&self, by: chrono::TimeDelta) {
        self.clock.advance(by);
    }

    pub async fn list(&self, user: UserId, page: u32, per_page: u32) -> Page<Notification> {
        let page = PageRequest::new(Some(page), Some(per_page)).expect("valid page");
        self.module
            .api()
            .list_notifications(user, page)
            .await
            .expect("list")
    }

    /// Every notification of `user`, newest first.
    pub async fn all(&self, user: UserId) -> Vec<Notification> {
        self.list(user, 1, 100).await.items
    }

    pub async fn count(&self, sql: &str) -> i64 {
        let row = self
            .db
            .query_one_raw(Statement::from_string(self.db.get_database_backend(), sql))
            .await
            .expect("query")
            .expect("row");
        row.try_get::<i64>("", "n").expect("count")
    }

    /// When each recipient was last written, as stored.
    pub async fn recipient_updated_at(&self) -> Vec<chrono::DateTime<Utc>> {
        self.db
            .query_all_raw(Statement::from_string(
                self.db.get_database_backend(),
                "SELECT updated_at FROM recipients ORDER BY user_id",
            ))
            .await
            .expect("query")
            .iter()
            .map(|row| row.try_get("", "updated_at").expect("updated_at"))
            .collect()
    }

    pub async fn notification_rows(&self) -> i64 {
        self.count("SELECT COUNT(*) AS n FROM notifications").await
    }

    /// Runs the bus until the sender hangs, then drops the bus: the process died there.
    pub async fn run_until_the_sender_hangs(&self) {
        let dying = self.second_bus();
        tokio::select! {
            result = dying.run_until_idle() => panic!("the sender should hang: {result:?}"),
            () = self.sender.hanging.notified() => {}
        }
    }

    /// Runs the bus `attempts` times, waiting out the longest backoff in between: what keeps
    /// failing is parked after the fifth attempt.
    pub async fn run_attempts(&self, attempts: usize) {
        for _ in 0..attempts {
            self.run().await;
            self.advance(RETRY_MAX);
        }
    }

    /// Makes the transaction that records a notification to `address` fail at `COMMIT`: a
    /// trigger adds a row whose deferred foreign key names nothing.
    pub async fn poison(&self, address: &str) {
        let backend = self.db.get_database_backend();
        let mut statements = vec![
            "CREATE TABLE parents (id INTEGER PRIMARY KEY)".to_owned(),
            "CREATE TABLE orphans (parent INTEGER NOT NULL \
             REFERENCES parents (id) DEFERRABLE INITIALLY DEFERRED)"
                .to_owned(),
        ];
        match backend {
            sea_orm::DbBackend::Postgres => statements.extend([
                format!(
                    "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ \
                     BEGIN \
                       IF NEW.address = '{address}' THEN \
                         INSERT INTO orphans (parent) VALUES (42); \
                       END IF; \
                       RETURN NEW; \
                     END $$"
                ),
                "CREATE TRIGGER poison AFTER INSERT ON notifications \
                 FOR EACH ROW EXECUTE FUNCTION poison()"
                    .to_owned(),
            ]),
            _ => statements.push(format!(
                "CREATE TRIGGER poison AFTER INSERT ON notifications \
                 WHEN NEW.address = '{address}' \
                 BEGIN INSERT INTO orphans (parent) VALUES (42); END"
            )),
        }
        for statement in statements {
            self.db
                .execute_unprepared(&statement)
                .await
                .expect("poison");
        }
    }

    pub fn mail_dir(&self) -> PathBuf {
        self.store.dir.path().join("mail")
    }

    /// The mailbox's file names, sorted.
    pub fn mail_files(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.mail_dir()) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        names
    }

    /// The file the message with `id` was written to.
    pub fn mail(&self, id: uuid::Uuid) -> String {
        std::fs::read_to_string(self.mail_dir().join(format!("{id}.txt")))
            .unwrap_or_else(|error| panic!("no mail file for {id}: {error}"))
    }
}

fn bus(
    clock: &Arc<ManualClock>,
    outbox: &Outbox,
    publisher_db: &DatabaseConnection,
    module: &NotificationsModule,
) -> Bus {
    let config = BusConfig {
        max_attempts: <i32 as TryFrom<usize>>::try_from(MAX_ATTEMPTS).expect("small"),
        retry_base: RETRY_BASE.to_std().expect("positive"),
        retry_max: RETRY_MAX.to_std().expect("positive"),
        retention: RETENTION.to_std().expect("positive"),
        ..BusConfig::default()
    };
    Bus::builder(config, clock.clone())
        .publisher(outbox, publisher_db.clone())
        .consumer(module.consumer())
        .build()
}

pub fn eur(cents: i64) -> Money {
    Money::new(cents, Currency::EUR).expect("valid money")
}

pub fn registered(name: &str) -> UserRegistered {
    UserRegistered {
        user_id: UserId::new(),
        email: format!("{}@example.com", name.to_lowercase()),
        display_name: name.into(),
        registered_at: Utc::now(),
    }
}
