//! Rendering messages from the template files under `templates/`, compiled into the binary.
//!
//! Each kind has a `<kind>.subject.txt` and a `<kind>.body.txt`. Undefined variables are an
//! error rather than an empty string, so a typo in a template fails its unit test instead of
//! sending a message with a hole in it.

use minijinja::{Environment, UndefinedBehavior, Value, context};
use notifications_api::NotificationKind;

use crate::domain::{self, Message, Recipient};

/// (kind, subject template, body template).
const SOURCES: [(NotificationKind, &str, &str); 4] = [
    (
        NotificationKind::Welcome,
        include_str!("../templates/welcome.subject.txt"),
        include_str!("../templates/welcome.body.txt"),
    ),
    (
        NotificationKind::OrderConfirmed,
        include_str!("../templates/order_confirmed.subject.txt"),
        include_str!("../templates/order_confirmed.body.txt"),
    ),
    (
        NotificationKind::PaymentFailed,
        include_str!("../templates/payment_failed.subject.txt"),
        include_str!("../templates/payment_failed.body.txt"),
    ),
    (
        NotificationKind::OrderCancelled,
        include_str!("../templates/order_cancelled.subject.txt"),
        include_str!("../templates/order_cancelled.body.txt"),
    ),
];

/// A message ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub body: String,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot render the {template} template: {source:#}")]
pub struct RenderError {
    template: String,
    #[source]
    source: minijinja::Error,
}

/// The compiled templates.
pub struct Templates {
    env: Environment<'static>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates").finish_non_exhaustive()
    }
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

fn subject_name(kind: NotificationKind) -> String {
    let kind: &'static str = kind.into();
    format!("{kind}.subject.txt")
}

fn body_name(kind: NotificationKind) -> String {
    let kind: &'static str = kind.into();
    format!("{kind}.body.txt")
}

impl Templates {
    pub fn new() -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        for (kind, subject, body) in SOURCES {
            for (name, source) in [(subject_name(kind), subject), (body_name(kind), body)] {
                // A template that does not compile is left out and its messages fail to
                // render (and are retried, then parked) instead of taking the process down;
                // the unit tests compile every template, so this is a build mistake.
                if let Err(error) = env.add_template_owned(name.clone(), source) {
                    tracing::error!(template = %name, error = %error, "template does not compile");
                }
            }
        }
        Self { env }
    }

    /// Renders `message` for `recipient`.
    pub fn render(
        &self,
        recipient: &Recipient,
        message: &Message,
    ) -> Result<Rendered, RenderError> {
        let common = context! {
            display_name => recipient.display_name.as_str(),
            email => recipient.email.as_str(),
        };
        let specific = match message {
            Message::Welcome => context! {},
            Message::OrderConfirmed {
                order_id,
                total,
                line_count,
            } => context! {
                order_id => order_id.to_string(),
                total => total.to_string(),
                line_count => *line_count,
            },
            Message::PaymentFailed {
                order_id,
                total,
                reason,
            } => context! {
                order_id => order_id.to_string(),
                total => total.to_string(),
                reason => domain::describe_failure(*reason),
            },
            Message::OrderCancelled { order_id, refunded } => context! {
                order_id => order_id.to_string(),
                refunded => refunded.to_string(),
            },
        };
        let ctx = context! { ..common, ..specific };
        let kind = message.kind();
        let subject = self.render_one(&subject_name(kind), &ctx)?;
        let body = self.render_one(&body_name(kind), &ctx)?;
        Ok(Rendered {
            // One line: a display name with a newline in it must not break the header.
            subject: subject.split_whitespace().collect::<Vec<_>>().join(" "),
            body,
        })
    }

    fn render_one(&self, name: &str, ctx: &Value) -> Result<String, RenderError> {
        let error = |source| RenderError {
            template: name.to_owned(),
            source,
        };
        self.env
            .get_template(name)
            .map_err(error)?
            .render(ctx)
            .map_err(error)
    }
}

#[cfg(test)]
mod tests {
    use kernel::{Currency, Money, OrderId, UserId};
    use orders_api::OrderFailure;

    use super::*;

    fn ada() -> Recipient {
        Recipient {
            user_id: UserId::new(),
            email: "ada@example.com".into(),
            display_name: "Ada Lovelace".into(),
        }
    }

    fn eur(cents: i64) -> Money {
        Money::new(cents, Currency::EUR).expect("valid money")
    }

    fn order_id() -> OrderId {
        OrderId::from_uuid(uuid::Uuid::from_u128(
            0x0190_0000_0000_7000_8000_0000_0000_0042,
        ))
    }

    fn as_email(rendered: &Rendered) -> String {
        format!("Subject: {}\n\n{}", rendered.subject, rendered.body)
    }

    #[test]
    fn every_template_compiles() {
        let mut env = Environment::new();
        for (kind, subject, body) in SOURCES {
            env.add_template_owned(subject_name(kind), subject)
                .expect("subject compiles");
            env.add_template_owned(body_name(kind), body)
                .expect("body compiles");
        }
    }

    #[test]
    fn welcome_greets_by_name() {
        let rendered = Templates::new()
            .render(&ada(), &Message::Welcome)
            .expect("render");
        insta::assert_snapshot!(as_email(&rendered));
    }

    #[test]
    fn order_confirmed_shows_the_order_and_its_total() {
        let message = Message::OrderConfirmed {
            order_id: order_id(),
            total: eur(1999),
            line_count: 3,
        };
        let rendered = Templates::new().render(&ada(), &message).expect("render");
        insta::assert_snapshot!(as_email(&rendered));
    }

    #[test]
    fn payment_failed_explains_the_reason() {
        let message = Message::PaymentFailed {
            order_id: order_id(),
            total: eur(4500),
            reason: OrderFailure::InsufficientFunds,
        };
        let rendered = Templates::new().render(&ada(), &message).expect("render");
        assert_eq!(
            rendered.subject,
            format!("The payment for your order {} failed", order_id())
        );
        assert!(rendered.body.contains("Hello Ada Lovelace,"));
        assert!(rendered.body.contains("45.00 EUR"));
        assert!(rendered.body.contains("the card has insufficient funds"));
    }

    #[test]
    fn order_cancelled_shows_the_refund() {
        let message = Message::OrderCancelled {
            order_id: order_id(),
            refunded: eur(1250),
        };
        let rendered = Templates::new().render(&ada(), &message).expect("render");
        assert!(rendered.subject.contains(&order_id().to_string()));
        assert!(rendered.body.contains("refunded 12.50 EUR"));
    }

    #[test]
    fn single_products_are_singular() {
        let message = Message::OrderConfirmed {
            order_id: order_id(),
            total: eur(500),
            line_count: 1,
        };
        let rendered = Templates::new().render(&ada(), &message).expect("render");
        assert!(
            rendered.body.contains("for 1 product,"),
            "{}",
            rendered.body
        );
    }

    #[test]
    fn subjects_stay_on_one_line() {
        let mut recipient = ada();
        recipient.display_name = "Ada\r\nBcc: eve@example.com".into();
        let rendered = Templates::new()
            .render(&recipient, &Message::Welcome)
            .expect("render");
        assert_eq!(
            rendered.subject,
            "Welcome to the shop, Ada Bcc: eve@example.com"
        );
    }
}
