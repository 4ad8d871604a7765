//! The background loop (`Bus::spawn`): an idle bus issues no statement, a commit wakes it
//! in process and, on Postgres, from another process, and a retry runs at its due time.
//!
//! "Nothing happens for a while" is shown without waiting: the tests pause the runtime's
//! clock (`tokio::time::pause`, a current-thread runtime), move it on by hours at once, and
//! check that the loop did not wake (`Bus::sleeping`) and no statement went through the
//! bus's connections (a metric callback counts them).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kernel::Clock;
use messaging::{Bus, BusConfig, Consumer, Outbox, Sleeping};
use sea_orm::{DatabaseConnection, TransactionTrait};
use testkit::{Backend, TestStore};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{Fixture, ThingHappened};

/// The same connection, counting every statement issued through it into `counter`.
fn counted(db: &DatabaseConnection, counter: &Arc<AtomicUsize>) -> DatabaseConnection {
    let mut db = db.clone();
    let counter = counter.clone();
    db.set_metric_callback(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    db
}

/// A running bus of the fixture's publisher and consumer whose statements are counted.
struct Running {
    bus: Arc<Bus>,
    statements: Arc<AtomicUsize>,
    sleeping: watch::Receiver<Sleeping>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    fn start(fixture: &Fixture) -> Self {
        let statements = Arc::new(AtomicUsize::new(0));
        let config = BusConfig {
            max_attempts: 3,
            retry_base: Duration::from_secs(10),
            retry_max: Duration::from_secs(60),
            retention: Duration::from_secs(3600),
            // Far beyond the clock moves below, so that they show the loop itself.
            purge_interval: Duration::from_secs(7 * 24 * 3600),
            ..BusConfig::default()
        };
        let bus = Arc::new(
            Bus::builder(config, fixture.clock.clone())
                .publisher(&fixture.outbox, counted(&fixture.publisher_db, &statements))
                .consumer(
                    Consumer::new(
                        "recorder",
                        counted(&fixture.consumer_db, &statements),
                        fixture.recorder.clone(),
                    )
                    .subscribe::<ThingHappened>(),
                )
                .build(),
        );
        let sleeping = bus.sleeping();
        let shutdown = CancellationToken::new();
        let task = bus.clone().spawn(shutdown.clone());
        Self {
            bus,
            statements,
            sleeping,
            shutdown,
            task,
        }
    }

    /// Waits (up to 30 s) for the loop to be asleep in a state `wanted` accepts.
    async fn asleep(&mut self, wanted: impl Fn(&Sleeping) -> bool) -> Sleeping {
        let waited = tokio::time::timeout(
            Duration::from_secs(30),
            self.sleeping.wait_for(|s| wanted(s)),
        )
        .await
        .map(|state| state.map(|state| *state));
        match waited {
            Ok(state) => state.expect("the bus is running"),
            Err(_) => panic!(
                "the bus did not go to sleep as wanted in time; it is {:?}",
                *self.sleeping.borrow()
            ),
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.expect("the bus stops");
    }
}

/// Commits one event through `outbox`, as a publisher's service does.
async fn commit(fixture: &Fixture, outbox: &Outbox, thing: &str) {
    let txn = fixture.publisher_db.begin().await.expect("begin");
    outbox
        .commit_with(
            txn,
            &ThingHappened {
                thing: thing.into(),
                step: 1,
            },
            fixture.clock.now(),
        )
        .await
        .expect("commit");
}

/// Polls `done` (every 10 ms, up to 30 s): the way to wait for what another task does.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "{what}: timed out");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Lets every task that is ready run (the loop, were a timer or a wake-up to fire).
async fn settle() {
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
}

async fn an_idle_bus_issues_no_statement(store: TestStore) {
    let postgres = store.backend == Backend::Postgres;
    let fixture = Fixture::new(store, 0).await;
    let mut running = Running::start(&fixture);
    // At start: one pass, then (Postgres) one more once it listens, then sleep until woken.
    running
        .asleep(|s| !s.until_due && s.listening == postgres && s.sleeps == s.wakes + 1)
        .await;

    // A commit wakes it in process; it delivers and handles the event, then sleeps again.
    commit(&fixture, &fixture.outbox, "woken").await;
    eventually("the event is handled", || {
        fixture.recorder.effects_run().len() == 1
    })
    .await;
    eventually_pending_zero(&fixture.bus()).await;
    // Asleep now (it went to sleep once more than it woke): every statement of its passes
    // has completed.
    let awake = running
        .asleep(|s| s.sleeps == s.wakes + 1 && !s.until_due)
        .await;
    let before = running.statements.load(Ordering::SeqCst);

    tokio::time::pause();
    for _ in 0..3 {
        tokio::time::advance(Duration::from_secs(3600)).await;
        settle().await;
    }
    let after = *running.sleeping.borrow();
    tokio::time::resume();
    assert_eq!(
        after.wakes, awake.wakes,
        "three idle hours never woke the bus"
    );
    assert_eq!(
        running.statements.load(Ordering::SeqCst),
        before,
        "an idle bus issues no statement"
    );
    running.stop().await;
}

/// Waits until `bus` (the fixture's own, uncounted) sees nothing left to do.
async fn eventually_pending_zero(bus: &Bus) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while bus.pending().await.expect("pending") > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "events left: timed out"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn a_retry_runs_at_its_due_time(store: TestStore) {
    let postgres = store.backend == Backend::Postgres;
    // The handler fails its first attempt.
    let fixture = Fixture::new(store, 1).await;
    let mut running = Running::start(&fixture);
    running
        .asleep(|s| !s.until_due && s.listening == postgres && s.sleeps == s.wakes + 1)
        .await;

    commit(&fixture, &fixture.outbox, "later").await;
    // The failed attempt scheduled a retry in 10 s (`retry_base`): the loop sleeps until then.
    let waiting = running
        .asleep(|s| s.until_due && s.sleeps == s.wakes + 1)
        .await;
    assert!(fixture.recorder.handled().is_empty());

    fixture.clock.advance(chrono::Duration::seconds(11));
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(11)).await;
    settle().await;
    tokio::time::resume();
    eventually("the retry ran", || {
        fixture.recorder.handled() == [("later".to_owned(), 1)]
    })
    .await;
    let done = running
        .asleep(|s| s.wakes > waiting.wakes && !s.until_due)
        .await;
    assert!(!done.until_due, "nothing is due any more");
    running.stop().await;
}

#[tokio::test]
async fn sqlite_an_idle_bus_issues_no_statement() {
    an_idle_bus_issues_no_statement(TestStore::new(Backend::Sqlite).await).await;
}

#[tokio::test]
async fn postgres_an_idle_bus_issues_no_statement() {
    an_idle_bus_issues_no_statement(TestStore::new(Backend::Postgres).await).await;
}

#[tokio::test]
async fn sqlite_a_retry_runs_at_its_due_time() {
    a_retry_runs_at_its_due_time(TestStore::new(Backend::Sqlite).await).await;
}

#[tokio::test]
async fn postgres_a_retry_runs_at_its_due_time() {
    a_retry_runs_at_its_due_time(TestStore::new(Backend::Postgres).await).await;
}

/// Another process running the same publishing context commits an event: its `pg_notify`,
/// sent in the committing transaction, wakes this process's bus through `LISTEN`, with no
/// in-process wake-up and no poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_commit_in_another_process_wakes_the_bus() {
    let fixture = Fixture::new(TestStore::new(Backend::Postgres).await, 0).await;
    let mut running = Running::start(&fixture);
    running.asleep(|s| !s.until_due && s.listening).await;

    // The other process's outbox: the same context, its own wake-up, unknown to this bus.
    let elsewhere = Outbox::new("publisher");
    commit(&fixture, &elsewhere, "elsewhere").await;
    eventually("the event committed elsewhere is handled here", || {
        fixture.recorder.handled() == [("elsewhere".to_owned(), 1)]
    })
    .await;
    eventually_pending_zero(&running.bus).await;
    running.stop().await;
}
