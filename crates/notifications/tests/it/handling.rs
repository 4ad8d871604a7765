//! The event handler: which messages are sent for which events, and exactly once.

use std::sync::Arc;

use kernel::{Clock, EventEnvelope, ManualClock, OrderId, UserId};
use messaging::{Bus, BusConfig, Stage};
use notifications::{NotificationsConfig, NotificationsModule, SenderConfig};
use notifications_api::{Channel, Notification, NotificationKind};
use orders_api::{OrderCancelled, OrderConfirmed, OrderFailure, OrderPaymentFailed};
use testkit::TestStore;

use crate::{Fixture, Hang, MAX_ATTEMPTS, RETENTION, RETRY_BASE, RETRY_MAX, eur, registered};

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
    assert!(
        fixture
            .sender
            .calls()
            .iter()
            .all(|(_, committed)| *committed)
    );
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

/// A send that fails is retried after the backoff, on its own: the notification and the
/// recipient were committed before the send and stay; the event is not handled again.
async fn failed_sends_are_retried_without_handling_the_event_again(store: TestStore) {
    let fixture = Fixture::with_failing_sends(store, 1).await;
    let ada = registered("Ada");
    let registered_at = fixture.clock.now();
    fixture.publish(&ada).await;
    assert_eq!(fixture.run().await.handled, 1);
    let recorded = fixture.all(ada.user_id).await;
    assert_eq!(recorded.len(), 1, "recorded before the send");
    assert_eq!(recorded[0].sent_at, None, "not sent");
    assert!(fixture.mail_files().is_empty());
    assert!(fixture.sender.sent().is_empty());

    assert!(fixture.run().await.is_idle(), "not due before the backoff");
    fixture.advance(RETRY_BASE);
    assert_eq!(fixture.run().await.handled, 1);
    let sent = fixture.all(ada.user_id).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].id, recorded[0].id);
    assert_eq!(
        sent[0].created_at, registered_at,
        "the handler did not run again"
    );
    assert_eq!(sent[0].sent_at, Some(fixture.clock.now()));
    assert_eq!(fixture.sender.sent(), [sent[0].id]);
    assert_eq!(fixture.mail_files(), [format!("{}.txt", sent[0].id)]);
    assert_eq!(
        fixture.recipient_updated_at().await,
        [registered_at],
        "the recipient was written once, by the first attempt"
    );
}

/// Messages leave only once their notification is committed: the sender, looking from a
/// connection of its own, always finds the row it is asked to send.
async fn messages_are_sent_only_after_their_notification_is_committed(store: TestStore) {
    let fixture = Fixture::new(store).await;
    let ada = registered("Ada");
    fixture.publish(&ada).await;
    fixture.run().await;
    fixture.advance(chrono::TimeDelta::seconds(1));
    fixture
        .publish(&confirmed(&ada, OrderId::new(), 1999))
        .await;
    fixture.run().await;

    let calls = fixture.sender.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(
        calls.iter().all(|(_, committed)| *committed),
        "a message was sent before its notification committed: {calls:?}"
    );
    let sent = fixture.all(ada.user_id).await;
    assert!(
        sent.iter()
            .all(|notification| notification.sent_at.is_some())
    );
}

/// A database error in one event's transaction (here its commit fails on a deferred
/// foreign key) costs that event an attempt and, after the allowed attempts, parks it; the
/// other events of the same pass are sent once, never again, and the poisoned one never.
async fn a_database_error_parks_its_event_without_resending_other_mail(store: TestStore) {
    let fixture = Fixture::new(store).await;
    fixture.poison("poison@example.com").await;
    let ada = registered("Ada");
    let poison = registered("Poison");
    let bob = registered("Bob");
    for user in [&ada, &poison, &bob] {
        fixture.publish(user).await;
    }
    assert_eq!(fixture.run().await.handled, 3);
    assert_eq!(fixture.sender.sent().len(), 2);
    assert_eq!(
        fixture
            .count("SELECT COUNT(*) AS n FROM inbox WHERE status = 'pending' AND attempts = 1")
            .await,
        1,
        "the attempt is counted"
    );

    fixture.run_attempts(MAX_ATTEMPTS).await;
    let parked = fixture.bus.failed().await.expect("failed");
    assert_eq!(parked.len(), 1, "{parked:#?}");
    assert_eq!(parked[0].aggregate_id, poison.user_id.to_string());
    assert_eq!(parked[0].stage, Stage::Handling);
    assert_eq!(parked[0].attempts, 5);
    assert!(
        parked[0]
            .last_error
            .as_deref()
            .is_some_and(|error| error.to_lowercase().contains("foreign key")),
        "{:?}",
        parked[0].last_error
    );
    let mut sent = fixture.sender.sent();
    sent.sort();
    let mut expected = Vec::new();
    for user in [&ada, &bob] {
        expected.push(fixture.all(user.user_id).await[0].id);
    }
    expected.sort();
    assert_eq!(sent, expected, "Ada's and Bob's welcomes, once each");
    assert!(fixture.all(poison.user_id).await.is_empty());
    assert_eq!(fixture.mail_files().len(), 2);
}

/// Sends that keep failing park the event at the `after_commit` stage, where the unsent
/// notification shows (`sent_at` empty); the operator's retry sends it, once.
async fn sends_that_keep_failing_park_and_a_retry_sends_once(store: TestStore) {
    let fixture = Fixture::with_failing_sends(store, MAX_ATTEMPTS).await;
    let ada = registered("Ada");
    fixture.publish(&ada).await;
    fixture.run_attempts(MAX_ATTEMPTS).await;
    let parked = fixture.bus.failed().await.expect("failed");
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].stage, Stage::AfterCommit);
    assert!(
        parked[0]
            .last_error
            .as_deref()
            .is_some_and(|error| error.contains("mail relay unavailable")),
        "{:?}",
        parked[0].last_error
    );
    let unsent = fixture.all(ada.user_id).await;
    assert_eq!(unsent.len(), 1);
    assert_eq!(unsent[0].sent_at, None);
    assert_eq!(fixture.sender.calls().len(), MAX_ATTEMPTS);
    assert!(fixture.sender.sent().is_empty());

    assert!(fixture.bus.retry(parked[0].id).await.expect("retry"));
    fixture.run().await;
    assert_eq!(fixture.sender.sent(), [unsent[0].id]);
    assert!(fixture.all(ada.user_id).await[0].sent_at.is_some());
    fixture.advance(RETRY_MAX);
    fixture.run().await;
    assert_eq!(fixture.sender.sent(), [unsent[0].id], "sent once");
}

/// The process dies after the notification committed, before the message left. The next
/// process sends it, once the dead one's claim lapses (`retry_max`).
async fn a_crash_before_the_send_sends_on_the_next_process(store: TestStore) {
    let fixture = Fixture::new(store).await;
    fixture.sender.hang(Some(Hang::BeforeSending));
    let ada = registered("Ada");
    fixture.publish(&ada).await;
    fixture.run_until_the_sender_hangs().await;
    fixture.sender.hang(None);
    let recorded = fixture.all(ada.user_id).await;
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].sent_at, None);
    assert!(fixture.mail_files().is_empty());

    assert!(
        fixture.run().await.is_idle(),
        "the dead process's claim holds"
    );
    fixture.advance(RETRY_MAX);
    assert_eq!(fixture.run().await.handled, 1);
    assert_eq!(fixture.sender.sent(), [recorded[0].id]);
    assert!(fixture.all(ada.user_id).await[0].sent_at.is_some());
    assert_eq!(fixture.notification_rows().await, 1);
}

/// The process dies after the message left, before it was marked sent. The next process
/// sends it again: the same message under the same id (the file is overwritten), never a
/// second, different one. This is the at-least-once of sending.
async fn a_crash_after_the_send_repeats_the_same_message(store: TestStore) {
    let fixture = Fixture::new(store).await;
    fixture.sender.hang(Some(Hang::AfterSending));
    let ada = registered("Ada");
    fixture.publish(&ada).await;
    fixture.run_until_the_sender_hangs().await;
    fixture.sender.hang(None);
    let first = fixture.sender.messages();
    assert_eq!(first.len(), 1);
    let mail = fixture.mail(first[0].id);

    fixture.advance(RETRY_MAX);
    fixture.run().await;
    let messages = fixture.sender.messages();
    assert_eq!(
        messages,
        [first[0].clone(), first[0].clone()],
        "the same message, twice"
    );
    assert_eq!(fixture.mail_files(), [format!("{}.txt", first[0].id)]);
    assert_eq!(fixture.mail(first[0].id), mail);
    assert_eq!(fixture.notification_rows().await, 1);
    assert!(fixture.all(ada.user_id).await[0].sent_at.is_some());
}

/// The events of one pass are sent together and their messages marked sent in one
/// statement; a send that fails holds back its own event only, and a retry sends just that
/// one message.
async fn a_failed_send_in_a_batch_holds_back_only_its_own_event(store: TestStore) {
    let fixture = Fixture::with_failing_sends(store, 1).await;
    let users = [registered("Ada"), registered("Bob"), registered("Cy")];
    for user in &users {
        fixture.publish(user).await;
    }
    assert_eq!(fixture.run().await.handled, 3);
    // Ada's event came first: hers was the send that failed.
    let ada = only_message(&fixture, users[0].user_id).await;
    assert_eq!(ada.sent_at, None);
    let mut others = Vec::new();
    for user in &users[1..] {
        let welcome = only_message(&fixture, user.user_id).await;
        assert_eq!(
            welcome.sent_at,
            Some(fixture.clock.now()),
            "sent and marked in the pass"
        );
        others.push(welcome.id);
    }
    let mut sent = fixture.sender.sent();
    sent.sort();
    others.sort();
    assert_eq!(sent, others);
    assert_eq!(
        fixture
            .count("SELECT COUNT(*) AS n FROM inbox WHERE status = 'done'")
            .await,
        2
    );

    fixture.advance(RETRY_BASE);
    assert_eq!(fixture.run().await.handled, 1);
    let retried = only_message(&fixture, users[0].user_id).await;
    assert_eq!(retried.sent_at, Some(fixture.clock.now()));
    let mut sent = fixture.sender.sent();
    sent.sort();
    let mut all = others.clone();
    all.push(ada.id);
    all.sort();
    assert_eq!(sent, all, "every welcome once, Ada's on the retry");
    assert!(fixture.bus.failed().await.expect("failed").is_empty());
}

/// The one message `user` has.
async fn only_message(fixture: &Fixture, user: UserId) -> Notification {
    let mut all = fixture.all(user).await;
    assert_eq!(all.len(), 1, "one message: {all:?}");
    all.remove(0)
}

testkit::backend_tests!(
    a_failed_send_in_a_batch_holds_back_only_its_own_event,
    registration_sends_a_welcome,
    the_configured_file_sender_fills_the_mailbox,
    order_messages_show_amounts_and_reasons,
    repeated_deliveries_send_one_message,
    order_events_wait_for_their_recipient,
    failed_sends_are_retried_without_handling_the_event_again,
    messages_are_sent_only_after_their_notification_is_committed,
    a_database_error_parks_its_event_without_resending_other_mail,
    sends_that_keep_failing_park_and_a_retry_sends_once,
    a_crash_before_the_send_sends_on_the_next_process,
    a_crash_after_the_send_repeats_the_same_message,
);
