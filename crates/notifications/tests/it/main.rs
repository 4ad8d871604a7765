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
use std::time::Duration;

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

/// Writes messages to a mailbox directory like the shop's file sender, records every
/// successful send, and refuses the first `failures` sends.
#[derive(Debug)]
pub struct TestSender {
    files: FileSender,
    failures: AtomicUsize,
    sent: Mutex<Vec<OutgoingMessage>>,
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
}

#[async_trait]
impl Sender for TestSender {
    async fn send(&self, message: &OutgoingMessage) -> Result<(), SendError> {
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

    pub async fn notification_rows(&self) -> i64 {
        self.count("SELECT COUNT(*) AS n FROM notifications").await
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
        max_attempts: 5,
        retry_base: RETRY_BASE.to_std().expect("positive"),
        retry_max: Duration::from_secs(60),
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
