//! The `NotificationsApi` contract: a user's messages, newest first, one per event.
//!
//! The port has one method and refuses nothing a caller can send (a `PageRequest` is valid
//! once constructed), so the suite checks answers only: a registered user's welcome message,
//! paging, and a user without messages.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kernel::{Page, PageRequest, UserId};
use notifications_api::{Channel, Notification, NotificationKind, NotificationsApi};
use tokio::time::Instant;

use crate::{Customer, answered};

/// What the notifications suite needs that the port cannot do.
#[async_trait]
pub trait NotificationsFixture: Send + Sync {
    /// A fresh registered customer (as `AuthFixture::customer`): registering publishes the
    /// event notifications welcomes them on.
    async fn customer(&self) -> Customer;

    /// Gets the events committed so far on their way to notifications. In process: deliver
    /// them (the bus, until idle). Where a background bus delivers them (a running shop),
    /// this may do nothing: the suite asks the port again until the message it waits for
    /// appears, for up to [`DELIVERY_DEADLINE`].
    async fn deliver_events(&self);
}

/// How long the suite waits for an event's message to appear.
pub const DELIVERY_DEADLINE: Duration = Duration::from_secs(30);

/// How long the suite waits between two looks while it waits for a message.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Runs every case of the `NotificationsApi` contract against `api`.
pub async fn suite(api: Arc<dyn NotificationsApi>, fixture: &dyn NotificationsFixture) {
    let api = api.as_ref();
    let customer = fixture.customer().await;

    let case = "notifications.list_notifications: a new customer is welcomed once";
    let listed = welcomed(api, fixture, customer.user_id, case).await;
    assert_eq!(listed.total, 1, "{case}: total: {listed:?}");
    assert_eq!(
        (listed.page, listed.per_page),
        (1, PageRequest::DEFAULT_PER_PAGE),
        "{case}: page"
    );
    let [welcome] = listed.items.as_slice() else {
        panic!("{case}: expected one message, got {:?}", listed.items);
    };
    assert_eq!(welcome.kind, NotificationKind::Welcome, "{case}: kind");
    assert_eq!(welcome.channel, Channel::Email, "{case}: channel");
    assert_eq!(
        welcome.to, customer.email,
        "{case}: to the registered address"
    );
    assert!(
        welcome.subject.contains(&customer.display_name),
        "{case}: the subject names the customer: {welcome:?}"
    );
    assert!(!welcome.body.is_empty(), "{case}: a body");
    let welcome = welcome.clone();

    let case = "notifications.list_notifications: delivering again adds nothing";
    fixture.deliver_events().await;
    let again = answered(
        api.list_notifications(customer.user_id, PageRequest::default())
            .await,
        case,
    );
    assert_eq!(again.total, 1, "{case}: {again:?}");
    assert_eq!(again.items[0].id, welcome.id, "{case}: the same message");
    assert_eq!(again.items[0].kind, welcome.kind, "{case}");

    let case = "notifications.list_notifications: a page past the end is empty";
    let past = answered(
        api.list_notifications(customer.user_id, page(2, 1)).await,
        case,
    );
    assert_eq!(
        past,
        Page {
            items: Vec::new(),
            total: 1,
            page: 2,
            per_page: 1
        },
        "{case}"
    );

    let case = "notifications.list_notifications: a user without messages has none";
    let stranger = UserId::new();
    assert_eq!(
        api.list_notifications(stranger, PageRequest::default())
            .await,
        Ok(Page {
            items: Vec::new(),
            total: 0,
            page: 1,
            per_page: PageRequest::DEFAULT_PER_PAGE
        }),
        "{case}"
    );
}

fn page(page: u32, per_page: u32) -> PageRequest {
    PageRequest::new(Some(page), Some(per_page)).expect("a valid page")
}

/// `user`'s first page once it holds a welcome message: delivers events, then asks the port
/// until the message is there or [`DELIVERY_DEADLINE`] passed.
async fn welcomed(
    api: &dyn NotificationsApi,
    fixture: &dyn NotificationsFixture,
    user: UserId,
    case: &str,
) -> Page<Notification> {
    let deadline = Instant::now() + DELIVERY_DEADLINE;
    loop {
        fixture.deliver_events().await;
        let listed = answered(
            api.list_notifications(user, PageRequest::default()).await,
            case,
        );
        if listed
            .items
            .iter()
            .any(|message| message.kind == NotificationKind::Welcome)
        {
            return listed;
        }
        assert!(
            Instant::now() < deadline,
            "{case}: no welcome message within {DELIVERY_DEADLINE:?}: {listed:?}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
