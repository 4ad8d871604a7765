//! What notifications knows about recipients and messages, and the rules for them (no I/O).

use kernel::{Money, OrderId, UserId};
use notifications_api::NotificationKind;
use uuid::Uuid;

/// The only channel there is today; stored per notification so others can be added.
pub const CHANNEL_EMAIL: &str = "email";

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
        /// The machine code orders published (`declined`, `insufficient_funds`, ...).
        reason: String,
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

/// The stored (and wire) name of a kind: the same snake_case as the API's serde names.
pub fn kind_to_str(kind: NotificationKind) -> &'static str {
    match kind {
        NotificationKind::Welcome => "welcome",
        NotificationKind::OrderConfirmed => "order_confirmed",
        NotificationKind::PaymentFailed => "payment_failed",
        NotificationKind::OrderCancelled => "order_cancelled",
    }
}

pub fn kind_from_str(kind: &str) -> Option<NotificationKind> {
    match kind {
        "welcome" => Some(NotificationKind::Welcome),
        "order_confirmed" => Some(NotificationKind::OrderConfirmed),
        "payment_failed" => Some(NotificationKind::PaymentFailed),
        "order_cancelled" => Some(NotificationKind::OrderCancelled),
        _ => None,
    }
}

/// The id of the message `event` gives `recipient`: the same on every attempt, so a retried
/// delivery overwrites its earlier copy instead of adding one. The recipient is part of the
/// name so that an event that ever concerns several recipients still gives distinct ids.
pub fn notification_id(event_id: Uuid, kind: NotificationKind, recipient: UserId) -> Uuid {
    let name = format!("{event_id}/{}/{recipient}", kind_to_str(kind));
    Uuid::new_v5(&NOTIFICATION_NAMESPACE, name.as_bytes())
}

/// A payment failure reason as a customer should read it. Unknown codes are shown as words
/// rather than dropped, so a new reason still says something.
pub fn describe_failure(reason: &str) -> String {
    match reason {
        "declined" => "your card issuer declined the payment".to_owned(),
        "insufficient_funds" => "the card has insufficient funds".to_owned(),
        "provider_error" => "our payment provider could not process the payment".to_owned(),
        other => {
            let words = other.replace('_', " ");
            let words = words.trim();
            if words.is_empty() {
                "the payment could not be completed".to_owned()
            } else {
                words.to_owned()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KINDS: [NotificationKind; 4] = [
        NotificationKind::Welcome,
        NotificationKind::OrderConfirmed,
        NotificationKind::PaymentFailed,
        NotificationKind::OrderCancelled,
    ];

    #[test]
    fn kinds_round_trip_and_match_the_wire_names() {
        for kind in KINDS {
            assert_eq!(kind_from_str(kind_to_str(kind)), Some(kind));
            let wire = serde_json::to_value(kind).expect("serializable");
            assert_eq!(wire, kind_to_str(kind));
        }
        assert_eq!(kind_from_str("shipped"), None);
    }

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
            describe_failure("declined"),
            "your card issuer declined the payment"
        );
        assert_eq!(describe_failure("card_expired"), "card expired");
        assert_eq!(
            describe_failure(" _ "),
            "the payment could not be completed"
        );
    }
}
