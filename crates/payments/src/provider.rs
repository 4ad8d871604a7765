//! The payment provider port, and the fake provider that understands the test tokens.
//!
//! A provider is idempotent per key, like real ones: a charge repeated with its key returns
//! the first outcome and takes the money once. Payments relies on that to resume a charge
//! whose outcome it never stored (a crash, a caller that gave up) by simply asking again.

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

/// Why the provider did not refund.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("the provider knows no charge {reference}")]
    UnknownCharge { reference: String },
    #[error("the refund exceeds what remains of charge {reference}")]
    ExceedsCharge { reference: String },
    #[error("refund key {key} was already used for another refund")]
    KeyReused { key: String },
    #[error("the provider is unavailable: {reason}")]
    Unavailable { reason: String },
}

#[async_trait]
pub trait PaymentProvider: Send + Sync + Debug + 'static {
    /// Charges `amount` to `token`. Idempotent per `key`: a repeated key returns the first
    /// outcome without charging again.
    async fn charge(&self, key: &str, amount: Money, token: &str) -> ProviderOutcome;

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
#[derive(Debug)]
pub struct FakeProvider {
    slow_delay: Duration,
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
    /// `slow_delay` is how long `tok_slow` takes to be approved.
    pub fn new(slow_delay: Duration) -> Self {
        Self {
            slow_delay,
            ledger: Mutex::new(Ledger::default()),
        }
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

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        // The ledger is consistent after every statement; a panic elsewhere leaves it usable.
        self.ledger
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records the outcome for `key` unless an earlier call with that key already did.
    fn decide(&self, key: &str, amount: Money, token: &str) -> ProviderOutcome {
        let mut ledger = self.ledger();
        if let Some(outcome) = ledger.charges.get(key) {
            return outcome.clone();
        }
        let outcome = match token {
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
        outcome
    }
}

#[async_trait]
impl PaymentProvider for FakeProvider {
    async fn charge(&self, key: &str, amount: Money, token: &str) -> ProviderOutcome {
        let known = self.ledger().charges.get(key).cloned();
        if let Some(outcome) = known {
            return outcome;
        }
        if token == "tok_slow" {
            // The simulated latency of a slow issuer. A caller that gives up during it
            // drops this future, and the charge never reaches the ledger: nothing taken.
            tokio::time::sleep(self.slow_delay).await;
        }
        self.decide(key, amount, token)
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
            match (outcome, declined) {
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
                ProviderOutcome::Declined(FailureReason::InvalidToken),
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
        let ProviderOutcome::Approved { reference } = first else {
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
}
