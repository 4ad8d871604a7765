//! The event handler: which messages are sent for which events, and exactly once.

use std::sync::Arc;

use kernel::{Clock, EventEnvelope, ManualClock, OrderId};
use messaging::{Bus, BusConfig};
use notifications::{NotificationsConfig, NotificationsModule, SenderConfig};
use notifications_api::{Channel, NotificationKind};
use orders_api::{OrderCancelled, OrderConfirmed, OrderFailure, OrderPaymentFailed};
use testkit::TestStore;

use crate::{Fixture, RETENTION, RETRY_BASE, eur, registered};

fn confirmed(customer: &auth_api::UserRegistered, order_id: OrderId, cents: i64) -> OrderConfirmed {
    OrderConfirmed {
        order_id,
        customer_id: customer.user_id,
        total: eur(cents),
        line_count: 3,
        confirmed_at: chrono::Utc::now(),
    }
}

async fn registration_sends_a_welcome(store: TestStore) {
    let fixture = Fixture::new(store).await;
    let ada = registered("Ada");
    let event = fixture.publish(&ada).await;
    let progress = fixture.run().await;
    assert_eq!((progress.relayed, progress.handled), (1, 1));

    let sent = fixture.all(ada.user_id).await;
    assert_eq!(sent.len(), 1);
    let welcome = &sent[0];
    assert_eq!(welcome.kind, NotificationKind::Welcome);
    assert_eq!(welcome.channel, Channel::Email);
    assert_eq!(welcome.to, "ada@example.com");
    assert_eq!(welcome.subject, "Welcome to the shop, Ada");
    assert!(welcome.body.starts_with("Hello Ada,"), "{}", welcome.body);
    assert_eq!(welcome.created_at, fixture.clock.now());
    assert_eq!(welcome.sent_at, Some(welcome.created_at));
    assert_ne!(
        welcome.id, event.id,
        "one event may notify several recipients"
    );

    assert_eq!(fixture.mail_files(), [format!("{}.txt", welcome.id)]);
    let mail = fixture.mail(welcome.id);
    assert!(
        mail.starts_with("To: ada@example.com\nSubject: Welcome to the shop, Ada\n\n"),
        "{mail}"
    );
    assert!(mail.contains("Hello Ada,"), "{mail}");
}

/// The composition root's way: the sender comes from the configuration.
async fn the_configured_file_sender_fills_the_mailbox(store: TestStore) {
    let db = store.connect(notifications::CONTEXT).await;
    notifications::migrate(&db).await.expect("migrate");
    let mailbox = store.dir.path().join("data").join("mail");
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let config = NotificationsConfig {
        sender: SenderConfig::File {
            dir: mailbox.clone(),
        },
    };
    let module = NotificationsModule::new(db, clock.clone(), config);
    let bus = Bus::builder(BusConfig::default(), clock.clone())
        .consumer(module.consumer())
        .build();
    let grace = registered("Grace");
    let event = EventEnvelope::wrap(&grace, clock.now()).expect("wrap");
    module
        .consumer()
        .accept(&event, clock.now())
        .await
        .expect("accept");
    assert_eq!(bus.run_until_idle().await.expect("run").handled, 1);

    let page = module
        .api()
        .list_notifications(grace.user_id, kernel::PageRequest::default())
        .await
        .expect("list");
    assert_eq!(page.total, 1);
    let mail = std::fs::read_to_string(mailbox.join(format!("{}.txt", page.items[0].id)))
        .expect("mail file");
    assert!(mail.contains("Hello Grace,"), "{mail}");
}

async fn order_messages_show_amounts_and_reasons(store: TestStore) {
    let fixture = Fixture::new(store).await;
    let ada = registered("Ada");
    fixture.publish(&ada).await;
    fixture.run().await;

    let kept = OrderId::new();
    let refused = OrderId::new();
    fixture.advance(chrono::TimeDelta::seconds(1));
    fixture.publish(&confirmed(&ada, kept, 1999)).await;
    fixture.run().await;
    fixture.advance(chrono::TimeDelta::seconds(1));
    fixture
        .publish(&OrderPaymentFailed {
            order_id: refused,
            customer_id: ada.user_id,
            total: eur(4500),
            reason: OrderFailure::Declined,
            failed_at: chrono::Utc::now(),
        })
        .await;
    fixture.run().await;
    fixture.advance(chrono::TimeDelta::seconds(1));
    fixture
        .publish(&OrderCancelled {
            order_id: kept,
            customer_id: ada.user_id,
            refunded: eur(1250),
            cancelled_at: chrono::Utc::now(),
        })
        .await;
    fixture.run().await;

    let sent = fixture.all(ada.user_id).await;
    let kinds: Vec<_> = sent.iter().map(|n| n.kind).collect();
    assert_eq!(
        kinds,
        [
            NotificationKind::OrderCancelled,
            NotificationKind::PaymentFailed,
            NotificationKind::OrderConfirmed,
            NotificationKind::Welcome,
        ],
        "newest first"
    );
    let (cancelled, failed, confirmed) = (&sent[0], &sent[1], &sent[2]);

    assert_eq!(confirmed.subject, format!("Your order {kept} is confirmed"));
    assert!(
        confirmed.body.starts_with("Hello Ada,"),
        "{}",
        confirmed.body
    );
    assert!(
        confirmed.body.contains(&format!("your order {kept}")),
        "{}",
        confirmed.body
    );
    assert!(confirmed.body.contains("19.99 EUR"), "{}", confirmed.body);
    assert!(
        confirmed.body.contains("for 3 products"),
        "{}",
        confirmed.body
    );

    assert_eq!(
        failed.subject,
        format!("The payment for your order {refused} failed")
    );
    assert!(failed.body.contains("45.00 EUR"), "{}", failed.body);
    assert!(
        failed
            .body
            .contains("your card issuer declined the payment"),
        "{}",
        failed.body
    );

    assert_eq!(cancelled.subject, format!("Your order {kept} is cancelled"));
    assert!(
        cancelled.body.contains("refunded 12.50 EUR"),
        "{}",
        cancelled.body
    );

    for notification in &sent {
        assert_eq!(notification.to, "ada@example.com");
        let mail = fixture.mail(notification.id);
        assert!(mail.contains(&notification.body), "{mail}");
        assert!(
            mail.contains(&format!("Subject: {}\n", notification.subject)),
            "{mail}"
        );
    }
    assert_eq!(fixture.mail_files().len(), 4);
}

/// The same event delivered three times in a row, another three times at once, both handled
/// by two buses at once, and again after the inbox forgot them: one message each.
async fn repeated_deliveries_send_one_message(store: TestStore) {
    let fixture = Fixture::new(store).await;
    let consumer = fixture.module.consumer();
    let now = fixture.clock.now();
    let ada = registered("Ada");
    let welcome = EventEnvelope::wrap(&ada, now).expect("wrap");
    for _ in 0..3 {
        consumer.accept(&welcome, now).await.expect("accept");
    }
    let order = EventEnvelope::wrap(&confirmed(&ada, OrderId::new(), 1999), now).expect("wrap");
    let concurrent = (0..3).map(|_| {
        let consumer = consumer.clone();
        let order = order.clone();
        tokio::spawn(async move { consumer.accept(&order, now).await })
    });
    for accepted in futures::future::join_all(concurrent).await {
        accepted.expect("task").expect("accept");
    }
    let second_bus = fixture.second_bus();
    let (first, second) = tokio::join!(fixture.bus.run_until_idle(), second_bus.run_until_idle());
    first.expect("first bus");
    second.expect("second bus");
    // On Postgres the second bus may claim the order before the first committed the
    // recipient; that attempt fails and is retried after the backoff.
    fixture.advance(RETRY_BASE);
    fixture.run().await;

    assert_eq!(fixture.notification_rows().await, 2);
    assert_eq!(fixture.mail_files().len(), 2);
    let sent = fixture.sender.sent();
    assert_eq!(sent.len(), 2, "each message sent once: {sent:?}");

    // The inbox rows are purged after the retention; a late redelivery must still not send
    // the messages again.
    fixture.advance(RETENTION + chrono::TimeDelta::seconds(1));
    assert_eq!(fixture.bus.purge().await.expect("purge"), 2);
    let later = fixture.clock.now();
    consumer.accept(&welcome, later).await.expect("accept");
    consumer.accept(&order, later).await.expect("accept");
    assert_eq!(fixture.run().await.handled, 2);
    assert_eq!(fixture.notification_rows().await, 2);
    assert_eq!(fixture.mail_files().len(), 2);
    assert_eq!(fixture.sender.sent(), sent, "nothing sent again");
    assert!(fixture.bus.failed().await.expect("failed").is_empty());
}

/// The order event overtakes the registration (they are different aggregates): it fails,
/// and succeeds on a retry once the recipient is known.
async fn order_events_wait_for_their_recipient(store: TestStore) {
    let fixture = Fixture::new(store).await;
    let ada = registered("Ada");
    let order_id = OrderId::new();
    fixture.publish(&confirmed(&ada, order_id, 2500)).await;
    assert_eq!(fixture.run().await.handled, 1);
    assert_eq!(fixture.notification_rows().await, 0);
    assert_eq!(
        fixture
            .count("SELECT COUNT(*) AS n FROM inbox WHERE status = 'pending' AND attempts = 1 AND last_error LIKE '%is not known yet%'")
            .await,
        1,
        "the failed attempt is recorded for a retry"
    );

    fixture.publish(&ada).await;
    assert_eq!(
        fixture.run().await.handled,
        1,
        "only the registration is due"
    );
    let kinds: Vec<_> = fixture
        .all(ada.user_id)
        .await
        .iter()
        .map(|n| n.kind)
        .collect();
    assert_eq!(kinds, [NotificationKind::Welcome]);

    fixture.advance(RETRY_BASE);
    assert_eq!(fixture.run().await.handled, 1);
    let sent = fixture.all(ada.user_id).await;
    let kinds: Vec<_> = sent.iter().map(|n| n.kind).collect();
    assert_eq!(
        kinds,
        [NotificationKind::OrderConfirmed, NotificationKind::Welcome]
    );
    assert!(sent[0].body.contains("25.00 EUR"));
    assert_eq!(fixture.mail_files().len(), 2);
    assert!(fixture.bus.failed().await.expect("failed").is_empty());
    assert_eq!(fixture.bus.pending().await.expect("pending"), 0);
}

/// A send that fails rolls the attempt back (no row, no recipient change is lost either:
/// it is redone), and the retry sends the message once.
async fn failed_sends_are_retried(store: TestStore) {
    let fixture = Fixture::with_failing_sends(store, 1).await;
    let ada = registered("Ada");
    fixture.publish(&ada).await;
    assert_eq!(fixture.run().await.handled, 1);
    assert_eq!(fixture.notification_rows().await, 0);
    assert_eq!(
        fixture.count("SELECT COUNT(*) AS n FROM recipients").await,
        0,
        "rolled back"
    );
    assert!(fixture.mail_files().is_empty());
    assert!(fixture.sender.sent().is_empty());

    assert!(fixture.run().await.is_idle(), "not due before the backoff");
    fixture.advance(RETRY_BASE);
    assert_eq!(fixture.run().await.handled, 1);
    let sent = fixture.all(ada.user_id).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(fixture.sender.sent(), [sent[0].id]);
    assert_eq!(fixture.mail_files(), [format!("{}.txt", sent[0].id)]);
    assert_eq!(
        fixture.count("SELECT COUNT(*) AS n FROM recipients").await,
        1
    );
}

testkit::backend_tests!(
    registration_sends_a_welcome,
    the_configured_file_sender_fills_the_mailbox,
    order_messages_show_amounts_and_reasons,
    repeated_deliveries_send_one_message,
    order_events_wait_for_their_recipient,
    failed_sends_are_retried,
);
