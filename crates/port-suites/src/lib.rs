//! The contract of every port, written once and run against any implementation of it.
//!
//! Each module holds one port's suite: `suite(api, fixture)` takes an `Arc<dyn XApi>` and
//! runs every case of the port's contract in sequence, asserting only through the port. The
//! same suite runs against the context in-process, through the generated client of `remote`
//! on a loopback listener, and against a separate `shop serve --contexts <context>` process:
//! whichever it is, every answer and every refusal must arrive as the port's own type (a
//! refusal as its own serde-tagged variant, never as `unavailable`).
//!
//! What the port itself cannot do (create a product, register a customer, deliver events)
//! the caller provides through the module's fixture trait, which is small on purpose: each
//! step has an in-process implementation (the context's module) and one over the shop's
//! public HTTP API. Every run makes its own data (fresh ids, skus, emails and keys), so a
//! suite can run again and again against one long-lived process.
//!
//! Failures panic with the name of the case (`catalog.reserve_stock: ...`). Dev and test
//! support only: never a dependency of the shipped program.

pub mod auth;
pub mod catalog;
pub mod notifications;
pub mod orders;
pub mod payments;

use std::fmt::Debug;

use kernel::{Currency, FieldError, Money, UserId};

/// A customer account made for a run: registered, so that the contexts that learn about
/// users from auth's events know it, and logged in.
#[derive(Clone)]
pub struct Customer {
    pub user_id: UserId,
    /// As registered (notifications writes to it).
    pub email: String,
    pub display_name: String,
    /// A valid access token of this customer.
    pub access_token: String,
}

/// The token stands for the customer: it is not printed.
impl Debug for Customer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Customer")
            .field("user_id", &self.user_id)
            .field("email", &self.email)
            .field("display_name", &self.display_name)
            .field("access_token", &"[redacted]")
            .finish()
    }
}

/// A string no earlier run has used: `prefix` and a fresh UUID (32 lower-case hex digits).
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

/// `cents` euro cents.
///
/// # Panics
/// If `cents` is negative.
pub fn eur(cents: i64) -> Money {
    Money::new(cents, Currency::EUR).expect("a non-negative amount")
}

/// The answer of a call the case expects to succeed.
#[track_caller]
fn answered<T, E: Debug>(result: Result<T, E>, case: &str) -> T {
    match result {
        Ok(answer) => answer,
        Err(error) => panic!("{case}: expected an answer, got the error {error:?}"),
    }
}

/// The refusal of a call the case expects to be refused.
#[track_caller]
fn refused<T: Debug, E>(result: Result<T, E>, case: &str) -> E {
    match result {
        Ok(answer) => panic!("{case}: expected a refusal, got the answer {answer:?}"),
        Err(error) => error,
    }
}

/// The (field, code) pairs of a validation refusal: the messages are prose, the codes are
/// the contract.
fn field_codes(fields: &[FieldError]) -> Vec<(&str, &str)> {
    fields
        .iter()
        .map(|field| (field.field.as_str(), field.code.as_str()))
        .collect()
}
