//! What notifications knows about recipients and messages, and the rules for them (no I/O).

use kernel::{Money, OrderId, UserId};
use notifications_api::NotificationKind;
use orders_api::OrderFailure;
use uuid::Uuid;

/// Fixed namespace of the notification ids (UUIDv5). Never change it: ids derived before and
/// after a change would differ, and a retried delivery would be stored as a second message.
const NOTIFICATION_NAMESPACE: Uuid = Uuid::from_u128(0x6e6f_7469_6669_4000_8000_7368_6f70_0001);

/// Notifications' own model of a customer, fed by `auth.user_registered.v1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub user_id: UserId,
    pub email: String,
    pub display_name: String,
}

/// What to tell a recipient, before it is rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Welcome,
    OrderConfirmed {
        order_id: OrderId,
        total: Money,
        line_count: u32,
    },
    PaymentFailed {
        order_id: OrderId,
        total: Money,
        /// Why, in orders' words (from `OrderPaymentFailed`).
        reason: OrderFailure,
    },
    OrderCancelled {
        order_id: OrderId,
        refunded: Money,
    },
}

impl Message {
    pub fn kind(&self) -> NotificationKind {
        match self {
            Self::Welcome => NotificationKind::Welcome,
            Self::OrderConfirmed { .. } => NotificationKind::OrderConfirmed,
            Self::PaymentFailed { .. } => NotificationKind::PaymentFailed,
            Self::OrderCancelled { .. } => NotificationKind::OrderCancelled,
        }
    }
}

/// The id of the message `event` gives `recipient`: the same on every attempt, so a retried
/// delivery overwrites its earlier copy instead of adding one. The recipient is part of the
/// name so that an event that ever concerns several recipients still gives distinct ids.
pub fn notification_id(event_id: Uuid, kind: NotificationKind, recipient: UserId) -> Uuid {
    let kind: &'static str = kind.into();
    let name = format!("{event_id}/{kind}/{recipient}");
    Uuid::new_v5(&NOTIFICATION_NAMESPACE, name.as_bytes())
}

/// A payment failure as a customer should read it. Exhaustive: a reason orders adds must be
/// worded here before it can be sent.
pub fn describe_failure(reason: OrderFailure) -> &'static str {
    match reason {
        OrderFailure::Declined => "your card issuer declined the payment",
        OrderFailure::InsufficientFunds => "the card has insufficient funds",
        OrderFailure::ProviderError => "our payment provider could not process the payment",
        OrderFailure::InvalidPaymentToken => "the payment details were not recognised",
        OrderFailure::PaymentRejected => "the payment could not be completed",
        OrderFailure::PaymentUnavailable | OrderFailure::PaymentTimedOut => {
            "our payment service did not answer in time; nothing was charged"
        }
        OrderFailure::OutOfStock => "some products are out of stock",
        OrderFailure::ProductUnavailable => "some products are no longer for sale",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notification_ids_are_stable_and_distinct() {
        let event = Uuid::now_v7();
        let user = UserId::new();
        let id = notification_id(event, NotificationKind::Welcome, user);
        assert_eq!(id, notification_id(event, NotificationKind::Welcome, user));
        assert_eq!(id.get_version_num(), 5);
        assert_ne!(
            id,
            notification_id(event, NotificationKind::OrderConfirmed, user)
        );
        assert_ne!(
            id,
            notification_id(Uuid::now_v7(), NotificationKind::Welcome, user)
        );
        assert_ne!(
            id,
            notification_id(event, NotificationKind::Welcome, UserId::new())
        );
    }

    #[test]
    fn failure_reasons_are_readable() {
        assert_eq!(
            describe_failure(OrderFailure::Declined),
            "your card issuer declined the payment"
        );
        assert_eq!(
            describe_failure(OrderFailure::PaymentTimedOut),
            "our payment service did not answer in time; nothing was charged"
        );
    }
}
