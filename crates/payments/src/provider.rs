//! The payment provider port, and the fake provider that understands the test tokens.
//!
//! A provider is idempotent per key, like real ones: a charge repeated with its key returns
//! the first outcome and takes the money once, and `lookup` tells what became of a key's
//! charge. Payments relies on both when it did not hear a charge's answer (a timeout, a
//! failure on the way back, a crash): it asks again with the same key, or looks the key up,
//! until it knows.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use kernel::Money;
use payments_api::FailureReason;
use uuid::Uuid;

/// How the fake provider's charge references start.
const CHARGE_PREFIX: &str = "ch_";

/// What the provider answered to a charge. A refusal is an answer, not an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderOutcome {
    /// The money is taken; `reference` names the charge at the provider.
    Approved {
        reference: String,
    },
    Declined(FailureReason),
}

/// What the provider knows of a charge key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupOutcome {
    /// The charge was made; `reference` names it.
    Approved {
        reference: String,
    },
    Declined(FailureReason),
    /// No charge with this key ever reached the provider: nothing was taken.
    NotFound,
}

impl From<ProviderOutcome> for LookupOutcome {
    fn from(outcome: ProviderOutcome) -> Self {
        match outcome {
            ProviderOutcome::Approved { reference } => Self::Approved { reference },
            ProviderOutcome::Declined(reason) => Self::Declined(reason),
        }
    }
}

/// Why the provider gave no answer (to a charge, a lookup or a refund).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("the provider knows no charge {reference}")]
    UnknownCharge { reference: String },
    #[error("the refund exceeds what remains of charge {reference}")]
    ExceedsCharge { reference: String },
    #[error("refund key {key} was already used for another refund")]
    KeyReused { key: String },
    /// The provider did not answer: it may or may not have acted on the request.
    #[error("the provider is unavailable: {reason}")]
    Unavailable { reason: String },
}

#[async_trait]
pub trait PaymentProvider: Send + Sync + Debug + 'static {
    /// Charges `amount` to `token`. Idempotent per `key`: a repeated key returns the first
    /// outcome without charging again. An error means no answer arrived: the charge may or
    /// may not have been made, and [`PaymentProvider::lookup`] tells which.
    async fn charge(
        &self,
        key: &str,
        amount: Money,
        token: &str,
    ) -> Result<ProviderOutcome, ProviderError>;

    /// What became of the charge made with `key`, if one ever arrived.
    async fn lookup(&self, key: &str) -> Result<LookupOutcome, ProviderError>;

    /// Gives back `amount` of the charge `reference`; returns the refund's reference.
    /// Idempotent per `key`.
    async fn refund(
        &self,
        reference: &str,
        amount: Money,
        key: &str,
    ) -> Result<String, ProviderError>;
}

/// An in-memory provider driven by [`payments_api::TEST_TOKENS`]. It forgets everything
/// when the process stops, which is what a demo and the tests need; a refund of a charge it
/// made before a restart is therefore trusted rather than checked.
///
/// It decides a charge the moment the charge arrives and only then takes its time to answer
/// (`tok_slow`), so a caller that stops waiting has lost an answer the provider already
/// gave: a lookup during the delay finds the charge approved.
///
/// Outside test mode it knows no test token: every charge is declined as `invalid_token`,
/// since no real provider ships with the shop.
#[derive(Debug)]
pub struct FakeProvider {
    slow_delay: Duration,
    test_mode: bool,
    ledger: Mutex<Ledger>,
}

#[derive(Debug, Default)]
struct Ledger {
    /// The outcome of each charge key.
    charges: HashMap<String, ProviderOutcome>,
    /// Approved charges by reference: what was taken and what was given back.
    captures: HashMap<String, Capture>,
    /// Refunds by key.
    refunds: HashMap<String, Refund>,
    /// Minor units refunded on charges made before this process started.
    refunded_before_restart: i64,
}

#[derive(Debug)]
struct Capture {
    amount: Money,
    refunded_minor: i64,
}

#[derive(Debug)]
struct Refund {
    charge: String,
    amount: Money,
    reference: String,
}

impl FakeProvider {
    /// A provider in test mode; `slow_delay` is how long `tok_slow`'s answer takes.
    pub fn new(slow_delay: Duration) -> Self {
        Self {
            slow_delay,
            test_mode: true,
            ledger: Mutex::new(Ledger::default()),
        }
    }

    /// With `false`, the test tokens are not served: every charge is declined as
    /// `invalid_token` (`payments.test_mode = false`).
    #[must_use]
    pub fn with_test_mode(mut self, test_mode: bool) -> Self {
        self.test_mode = test_mode;
        self
    }

    /// Charges that took money (one per key, however often the key was repeated).
    pub fn captures(&self) -> usize {
        self.ledger().captures.len()
    }

    /// Refunds made (one per refund key).
    pub fn refunds(&self) -> usize {
        self.ledger().refunds.len()
    }

    /// Minor units given back, over all charges.
    pub fn refunded_total(&self) -> i64 {
        let ledger = self.ledger();
        ledger.refunded_before_restart
            + ledger
                .captures
                .values()
                .map(|capture| capture.refunded_minor)
                .sum::<i64>()
    }

    /// Minor units the charge made with `key` still holds: taken minus given back (zero if
    /// no charge with that key was approved).
    pub fn held(&self, key: &str) -> i64 {
        let ledger = self.ledger();
        match ledger.charges.get(key) {
            Some(ProviderOutcome::Approved { reference }) => {
                ledger.captures.get(reference).map_or(0, |capture| {
                    capture.amount.amount_minor() - capture.refunded_minor
                })
            }
            _ => 0,
        }
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        // The ledger is consistent after every statement; a panic elsewhere leaves it usable.
        self.ledger
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records the outcome for `key` unless an earlier call with that key already did.
    /// Returns the outcome and whether this call decided it.
    fn decide(&self, key: &str, amount: Money, token: &str) -> (ProviderOutcome, bool) {
        let mut ledger = self.ledger();
        if let Some(outcome) = ledger.charges.get(key) {
            return (outcome.clone(), false);
        }
        let outcome = match token {
            _ if !self.test_mode => ProviderOutcome::Declined(FailureReason::InvalidToken),
            "tok_visa" | "tok_slow" => ProviderOutcome::Approved {
                reference: format!("{CHARGE_PREFIX}{}", Uuid::new_v4().simple()),
            },
            "tok_declined" => ProviderOutcome::Declined(FailureReason::Declined),
            "tok_insufficient_funds" => ProviderOutcome::Declined(FailureReason::InsufficientFunds),
            "tok_provider_error" => ProviderOutcome::Declined(FailureReason::ProviderError),
            _ => ProviderOutcome::Declined(FailureReason::InvalidToken),
        };
        if let ProviderOutcome::Approved { reference } = &outcome {
            ledger.captures.insert(
                reference.clone(),
                Capture {
                    amount,
                    refunded_minor: 0,
                },
            );
        }
        ledger.charges.insert(key.to_owned(), outcome.clone());
        (outcome, true)
    }
}

#[async_trait]
impl PaymentProvider for FakeProvider {
    async fn charge(
        &self,
        key: &str,
        amount: Money,
        token: &str,
    ) -> Result<ProviderOutcome, ProviderError> {
        let (outcome, decided_now) = self.decide(key, amount, token);
        let slow = decided_now && token == "tok_slow" && self.test_mode;
        if slow {
            // The simulated latency of a slow issuer, *after* the decision: a caller that
            // gives up during it has lost an answer that was already "approved". A repeat
            // of the key answers at once.
            tokio::time::sleep(self.slow_delay).await;
        }
        Ok(outcome)
    }

    async fn lookup(&self, key: &str) -> Result<LookupOutcome, ProviderError> {
        Ok(self
            .ledger()
            .charges
            .get(key)
            .cloned()
            .map_or(LookupOutcome::NotFound, LookupOutcome::from))
    }
    async fn refund(
        &self,
        reference: &str,
        amount: Money,
        key: &str,
    ) -> Result<String, ProviderError> {
        let mut ledger = self.ledger();
        if let Some(refund) = ledger.refunds.get(key) {
            return if refund.charge == reference && refund.amount == amount {
                Ok(refund.reference.clone())
            } else {
                Err(ProviderError::KeyReused {
                    key: key.to_owned(),
                })
            };
        }
        match ledger.captures.get_mut(reference) {
            Some(capture) => {
                let refunded = capture.refunded_minor.checked_add(amount.amount_minor());
                let fits = amount.currency() == capture.amount.currency()
                    && refunded.is_some_and(|total| total <= capture.amount.amount_minor());
                let Some(refunded) = refunded.filter(|_| fits) else {
                    return Err(ProviderError::ExceedsCharge {
                        reference: reference.to_owned(),
                    });
                };
                capture.refunded_minor = refunded;
            }
            // A charge of this fake before a restart: its ledger is gone with the process,
            // so the refund is trusted (payments' own table has already checked the
            // amount). A charge reference it never issued is refused.
            None if reference.starts_with(CHARGE_PREFIX) => {
                ledger.refunded_before_restart += amount.amount_minor();
            }
            None => {
                return Err(ProviderError::UnknownCharge {
                    reference: reference.to_owned(),
                });
            }
        }
        let refund_reference = format!("re_{}", Uuid::new_v4().simple());
        ledger.refunds.insert(
            key.to_owned(),
            Refund {
                charge: reference.to_owned(),
                amount,
                reference: refund_reference.clone(),
            },
        );
        Ok(refund_reference)
    }
}

#[cfg(test)]
mod tests {
    use kernel::Currency;

    use super::*;

    fn eur(cents: i64) -> Money {
        Money::new(cents, Currency::EUR).expect("valid")
    }

    fn provider() -> FakeProvider {
        FakeProvider::new(Duration::from_millis(1))
    }

    #[tokio::test]
    async fn every_test_token_has_its_outcome() {
        let provider = provider();
        let expected = [
            ("tok_declined", Some(FailureReason::Declined)),
            (
                "tok_insufficient_funds",
                Some(FailureReason::InsufficientFunds),
            ),
            ("tok_provider_error", Some(FailureReason::ProviderError)),
            ("tok_unknown", Some(FailureReason::InvalidToken)),
            ("tok_visa", None),
            ("tok_slow", None),
        ];
        for (token, declined) in expected {
            let outcome = provider.charge(token, eur(100), token).await;
            match (outcome.expect("the fake always answers"), declined) {
                (ProviderOutcome::Approved { reference }, None) => {
                    assert!(reference.starts_with("ch_"));
                }
                (ProviderOutcome::Declined(reason), Some(expected)) => {
                    assert_eq!(reason, expected, "{token}");
                }
                (outcome, _) => panic!("{token}: unexpected {outcome:?}"),
            }
        }
        assert_eq!(provider.captures(), 2);
        // Every documented token is one the fake knows.
        for (token, _) in payments_api::TEST_TOKENS {
            let outcome = provider
                .charge(&format!("doc-{token}"), eur(1), token)
                .await;
            assert_ne!(
                outcome,
                Ok(ProviderOutcome::Declined(FailureReason::InvalidToken)),
                "{token}"
            );
        }
    }

    #[tokio::test]
    async fn charges_and_refunds_are_idempotent_per_key() {
        let provider = provider();
        let first = provider.charge("k", eur(100), "tok_visa").await;
        // A repeated key answers the first outcome, whatever else the call says.
        assert_eq!(provider.charge("k", eur(100), "tok_declined").await, first);
        assert_eq!(provider.captures(), 1);
        let Ok(ProviderOutcome::Approved { reference }) = first else {
            panic!("approved");
        };
        let refund = provider.refund(&reference, eur(60), "r1").await;
        assert_eq!(provider.refund(&reference, eur(60), "r1").await, refund);
        assert_eq!(
            provider.refund(&reference, eur(10), "r1").await,
            Err(ProviderError::KeyReused { key: "r1".into() })
        );
        assert_eq!(
            provider.refund(&reference, eur(41), "r2").await,
            Err(ProviderError::ExceedsCharge {
                reference: reference.clone()
            })
        );
        assert!(provider.refund(&reference, eur(40), "r2").await.is_ok());
        assert_eq!((provider.refunds(), provider.refunded_total()), (2, 100));
        assert_eq!(
            provider.refund("py_nope", eur(1), "r3").await,
            Err(ProviderError::UnknownCharge {
                reference: "py_nope".into()
            })
        );
        // A charge of an earlier run of the process: the fake forgot it and trusts payments.
        assert!(provider.refund("ch_before", eur(7), "r4").await.is_ok());
        assert_eq!(provider.refunded_total(), 107);
    }

    /// The fake decides when the charge arrives and only then delays its answer: a caller
    /// that stops waiting during the delay lost an approval the provider already gave.
    #[tokio::test]
    async fn a_slow_charge_is_decided_before_its_answer_is_delayed() {
        let provider = FakeProvider::new(Duration::from_secs(600));
        assert_eq!(provider.lookup("slow").await, Ok(LookupOutcome::NotFound));
        let mut answering = Box::pin(provider.charge("slow", eur(500), "tok_slow"));
        assert!(
            futures::poll!(&mut answering).is_pending(),
            "the answer is delayed"
        );
        let Ok(LookupOutcome::Approved { reference }) = provider.lookup("slow").await else {
            panic!("the charge was approved when it arrived");
        };
        assert_eq!(provider.held("slow"), 500);
        // The caller gives up: the answer is lost, the money is taken.
        drop(answering);
        // A repeat of the decided key answers at once, with the same charge.
        assert_eq!(
            provider.charge("slow", eur(500), "tok_slow").await,
            Ok(ProviderOutcome::Approved {
                reference: reference.clone()
            })
        );
        assert_eq!(provider.captures(), 1);
        provider
            .refund(&reference, eur(200), "part")
            .await
            .expect("refund");
        assert_eq!(provider.held("slow"), 300);

        provider
            .charge("no", eur(100), "tok_declined")
            .await
            .expect("answered");
        assert_eq!(
            provider.lookup("no").await,
            Ok(LookupOutcome::Declined(FailureReason::Declined))
        );
        assert_eq!(provider.held("no"), 0);
        assert_eq!(provider.held("never-sent"), 0);
    }

    /// Outside test mode the fake serves no test token: every one is declined as an invalid
    /// token, at once (`tok_slow` holds nothing).
    #[tokio::test]
    async fn outside_test_mode_every_test_token_is_an_invalid_token() {
        let provider = FakeProvider::new(Duration::from_secs(600)).with_test_mode(false);
        for (token, _) in payments_api::TEST_TOKENS {
            let mut charging = Box::pin(provider.charge(token, eur(100), token));
            assert_eq!(
                futures::poll!(&mut charging),
                std::task::Poll::Ready(Ok(ProviderOutcome::Declined(FailureReason::InvalidToken))),
                "{token}"
            );
        }
        assert_eq!(provider.captures(), 0);
    }
}
