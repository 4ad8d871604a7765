//! Listing a recipient's messages: only theirs, newest first, paged.

use kernel::{OrderId, PageRequest, UserId};
use notifications_api::NotificationKind;
use orders_api::OrderConfirmed;
use testkit::TestStore;

use crate::{Fixture, eur, registered};

async fn listing_is_per_recipient_newest_first_and_paged(store: TestStore) {
    let fixture = Fixture::new(store).await;
    let ada = registered("Ada");
    let bob = registered("Bob");
    fixture.publish(&ada).await;
    fixture.publish(&bob).await;
    fixture.run().await;
    let mut orders = Vec::new();
    for cents in [100, 200, 300, 400] {
        fixture.advance(chrono::TimeDelta::seconds(1));
        let order_id = OrderId::new();
        orders.push(order_id);
        fixture
            .publish(&OrderConfirmed {
                order_id,
                customer_id: ada.user_id,
                total: eur(cents),
                line_count: 1,
                confirmed_at: chrono::Utc::now(),
            })
            .await;
        fixture.run().await;
    }

    let everything = fixture.all(ada.user_id).await;
    let kinds: Vec<_> = everything.iter().map(|n| n.kind).collect();
    assert_eq!(
        kinds,
        [
            NotificationKind::OrderConfirmed,
            NotificationKind::OrderConfirmed,
            NotificationKind::OrderConfirmed,
            NotificationKind::OrderConfirmed,
            NotificationKind::Welcome,
        ]
    );
    for (notification, order_id) in everything.iter().zip(orders.iter().rev()) {
        assert!(
            notification.subject.contains(&order_id.to_string()),
            "newest first"
        );
    }
    assert!(
        everything
            .windows(2)
            .all(|pair| pair[0].created_at > pair[1].created_at)
    );
    assert!(everything.iter().all(|n| n.to == "ada@example.com"));

    let first = fixture.list(ada.user_id, 1, 2).await;
    assert_eq!((first.total, first.page, first.per_page), (5, 1, 2));
    let second = fixture.list(ada.user_id, 2, 2).await;
    let third = fixture.list(ada.user_id, 3, 2).await;
    assert_eq!(third.items.len(), 1);
    let paged: Vec<_> = [first, second, third]
        .into_iter()
        .flat_map(|page| page.items)
        .collect();
    assert_eq!(paged, everything);
    let beyond = fixture.list(ada.user_id, 4, 2).await;
    assert!(beyond.items.is_empty());
    assert_eq!(beyond.total, 5);

    let bobs = fixture.all(bob.user_id).await;
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0].kind, NotificationKind::Welcome);
    assert_eq!(bobs[0].to, "bob@example.com");

    let nobody = fixture
        .module
        .api()
        .list_notifications(UserId::new(), PageRequest::default())
        .await
        .expect("list");
    assert_eq!((nobody.total, nobody.items.len()), (0, 0));
}

/// Applying the migrations again (a second `shop` start) changes nothing.
async fn migrations_can_run_twice(store: TestStore) {
    let fixture = Fixture::new(store).await;
    notifications::migrate(&fixture.db)
        .await
        .expect("migrate again");
    let ada = registered("Ada");
    fixture.publish(&ada).await;
    fixture.run().await;
    assert_eq!(fixture.all(ada.user_id).await.len(), 1);
}

testkit::backend_tests!(
    listing_is_per_recipient_newest_first_and_paged,
    migrations_can_run_twice,
);
