//! Events across processes through a real NATS JetStream server (`scripts/test.sh` starts a
//! throwaway one and names it in `SHOP_TEST_NATS_URL`): a publisher's bus and a consumer's
//! bus that share nothing but the broker, as two processes would.

use std::time::{Duration, Instant};

use messaging::{Broker, BrokerConfig, Published};

use super::*;

const NATS_URL_VAR: &str = "SHOP_TEST_NATS_URL";

/// A stream and subjects of this test's own, on the shared test server.
fn config() -> BrokerConfig {
    let url = std::env::var(NATS_URL_VAR).unwrap_or_else(|_| {
        panic!("{NATS_URL_VAR} is not set: run the tests with scripts/test.sh, which starts NATS")
    });
    let name = uuid::Uuid::now_v7().simple().to_string();
    BrokerConfig {
        url,
        stream: format!("TEST_{name}"),
        subject_prefix: format!("test.{name}"),
        duplicate_window: Duration::from_secs(120),
        max_age: Duration::from_secs(3600),
        publish_timeout: Duration::from_secs(5),
        ack_wait: Duration::from_secs(30),
        max_deliver: 3,
        backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        batch: 16,
    }
}

impl Fixture {
    /// The publisher's side: its outbox, relayed to the broker only.
    fn publishing_bus(&self, broker: &Broker) -> Bus {
        Bus::builder(BusConfig::default(), self.clock.clone())
            .publisher(&self.outbox, self.publisher_db.clone())
            .publish_to(broker.clone())
            .build()
    }

    /// The consumer's side: its inbox, fed from the broker (retries as `Fixture::bus`).
    fn consuming_bus(&self, broker: &Broker) -> Bus {
        let config = BusConfig {
            max_attempts: 3,
            retry_base: Duration::from_secs(10),
            retry_max: Duration::from_secs(60),
            ..BusConfig::default()
        };
        Bus::builder(config, self.clock.clone())
            .consumer_of(
                broker.clone(),
                Consumer::new("recorder", self.consumer_db.clone(), self.recorder.clone())
                    .subscribe::<ThingHappened>(),
            )
            .build()
    }

    /// Waits (bounded) until the recorder handled `count` events.
    async fn wait_for_handled(&self, count: usize) -> Vec<(String, u32)> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let handled = self.recorder.handled();
            if handled.len() >= count {
                return handled;
            }
            assert!(
                Instant::now() < deadline,
                "handled only {handled:?} of {count}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn events_cross_processes_through_jetstream_in_order(store: TestStore) {
    let fixture = Fixture::new(store, 0).await;
    let broker = Broker::connect(config()).await.expect("connect");
    let publisher = fixture.publishing_bus(&broker);
    let consumer = Arc::new(fixture.consuming_bus(&broker));
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = consumer.clone().spawn(shutdown.clone());

    for step in 1..=3 {
        fixture.publish("a", step).await;
        fixture.publish("b", step).await;
    }
    let relayed = publisher.run_until_idle().await.expect("relay");
    assert_eq!(relayed.relayed, 6);
    assert_eq!(
        fixture
            .scalar(
                &fixture.publisher_db,
                "SELECT COUNT(*) AS n FROM outbox WHERE status = 'dispatched'"
            )
            .await,
        6,
        "rows are dispatched once JetStream stored them"
    );

    let handled = fixture.wait_for_handled(6).await;
    for thing in ["a", "b"] {
        let steps: Vec<u32> = handled
            .iter()
            .filter(|(name, _)| name == thing)
            .map(|(_, step)| *step)
            .collect();
        assert_eq!(steps, [1, 2, 3], "{thing}: in the order published");
    }
    shutdown.cancel();
    running.await.expect("bus stops");
}

async fn a_publish_repeated_after_a_crash_is_dropped_by_the_server(store: TestStore) {
    let fixture = Fixture::new(store, 0).await;
    let broker = Broker::connect(config()).await.expect("connect");
    let envelope = fixture.publish("a", 1).await;
    // The relay published, then died before marking the row: it publishes again.
    assert_eq!(
        broker
            .publish("publisher", &envelope, 1)
            .await
            .expect("publish"),
        Published::New
    );
    assert_eq!(
        broker
            .publish("publisher", &envelope, 1)
            .await
            .expect("publish"),
        Published::Duplicate
    );
    let publisher = fixture.publishing_bus(&broker);
    publisher.run_until_idle().await.expect("relay");

    let consumer = Arc::new(fixture.consuming_bus(&broker));
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = consumer.clone().spawn(shutdown.clone());
    fixture.wait_for_handled(1).await;
    // Another event behind it proves the first was not held back, and lets the check below
    // see everything the consumer received.
    fixture.publish("a", 2).await;
    publisher.run_until_idle().await.expect("relay");
    let handled = fixture.wait_for_handled(2).await;
    assert_eq!(handled, [("a".to_owned(), 1), ("a".to_owned(), 2)]);
    assert_eq!(
        fixture
            .scalar(&fixture.consumer_db, "SELECT COUNT(*) AS n FROM inbox")
            .await,
        2,
        "one inbox row per event"
    );
    shutdown.cancel();
    running.await.expect("bus stops");
}

/// A poison event from another process: retried, parked in the consumer's inbox, listed,
/// holding back the later events of its aggregate, and replayed.
async fn a_poison_event_from_another_process_is_parked_and_holds_back_its_aggregate(
    store: TestStore,
) {
    let fixture = Fixture::new(store, 0).await;
    let broker = Broker::connect(config()).await.expect("connect");
    let publisher = fixture.publishing_bus(&broker);
    let consumer = Arc::new(fixture.consuming_bus(&broker));
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = consumer.clone().spawn(shutdown.clone());

    fixture.recorder.refuse("order");
    fixture.publish("order", 1).await;
    publisher.run_until_idle().await.expect("relay");
    // Drive the consumer's retries through the (manual) clock until the event is parked.
    let deadline = Instant::now() + Duration::from_secs(30);
    let parked = loop {
        consumer.run_until_idle().await.expect("run");
        let parked = consumer.failed().await.expect("failed");
        if !parked.is_empty() {
            break parked;
        }
        assert!(
            Instant::now() < deadline,
            "the poison event was never parked"
        );
        fixture.clock.advance(chrono::Duration::seconds(60));
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].stage, Stage::Handling);
    assert_eq!(parked[0].owner, "recorder");
    assert_eq!(parked[0].attempts, 3);

    // Fixed, but not yet replayed: the aggregate's next event waits, another goes on.
    fixture.recorder.allow("order");
    fixture.publish("order", 2).await;
    fixture.publish("other", 1).await;
    publisher.run_until_idle().await.expect("relay");
    assert_eq!(fixture.wait_for_handled(1).await, [("other".to_owned(), 1)]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while consumer.pending().await.expect("pending") < 1 {
        assert!(Instant::now() < deadline, "order 2 never reached the inbox");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    consumer.run_until_idle().await.expect("run");
    assert_eq!(fixture.recorder.handled(), [("other".to_owned(), 1)]);

    assert!(consumer.retry(parked[0].id).await.expect("retry"));
    let handled = fixture.wait_for_handled(3).await;
    assert_eq!(
        handled,
        [
            ("other".to_owned(), 1),
            ("order".to_owned(), 1),
            ("order".to_owned(), 2)
        ]
    );
    shutdown.cancel();
    running.await.expect("bus stops");
}

/// A broker that cannot take events parks none of them, however long it stays away: they
/// wait in the outbox, in order, counting no attempt, and go out once it is back.
async fn events_wait_in_the_outbox_while_the_broker_is_down(store: TestStore) {
    let fixture = Fixture::new(store, 0).await;
    let up = config();
    // Nothing listens there: the client keeps trying to connect, every publish times out.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed_port = closed.local_addr().expect("address").port();
    drop(closed);
    let down = Broker::connect(BrokerConfig {
        url: format!("nats://127.0.0.1:{closed_port}"),
        publish_timeout: Duration::from_millis(200),
        ..up.clone()
    })
    .await
    .expect("the client connects lazily");
    // One failed attempt would park an event that failed for its own sake.
    let strict = BusConfig {
        max_attempts: 1,
        ..BusConfig::default()
    };
    for step in 1..=3 {
        fixture.publish("a", step).await;
    }
    let publishing = |broker: &Broker| {
        Bus::builder(strict.clone(), fixture.clock.clone())
            .publisher(&fixture.outbox, fixture.publisher_db.clone())
            .publish_to(broker.clone())
            .build()
    };
    let stalled = publishing(&down);
    for _ in 0..3 {
        let pass = stalled.run_until_idle().await.expect("relay");
        assert_eq!(pass.relayed, 0, "nothing left the outbox");
    }
    let count = |sql: &'static str| fixture.scalar(&fixture.publisher_db, sql);
    assert_eq!(
        count("SELECT COUNT(*) AS n FROM outbox WHERE status = 'pending'").await,
        3,
        "every event waits: none parked"
    );
    assert_eq!(
        count("SELECT COALESCE(SUM(attempts), 0) AS n FROM outbox").await,
        0,
        "no attempt counted against the events"
    );
    assert_eq!(
        count("SELECT COUNT(*) AS n FROM outbox WHERE last_error IS NOT NULL").await,
        1,
        "the first event says why it waits; those behind it were not tried"
    );

    let broker = Broker::connect(up).await.expect("connect");
    let relayed = publishing(&broker).run_until_idle().await.expect("relay");
    assert_eq!(relayed.relayed, 3);
    let consumer = Arc::new(fixture.consuming_bus(&broker));
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = consumer.clone().spawn(shutdown.clone());
    let handled = fixture.wait_for_handled(3).await;
    assert_eq!(
        handled,
        [
            ("a".to_owned(), 1),
            ("a".to_owned(), 2),
            ("a".to_owned(), 3)
        ]
    );
    shutdown.cancel();
    running.await.expect("bus stops");
}

testkit::backend_tests!(
    events_cross_processes_through_jetstream_in_order,
    events_wait_in_the_outbox_while_the_broker_is_down,
    a_publish_repeated_after_a_crash_is_dropped_by_the_server,
    a_poison_event_from_another_process_is_parked_and_holds_back_its_aggregate,
);
