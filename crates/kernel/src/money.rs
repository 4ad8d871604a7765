//! Money: an integer amount of minor units (cents) and an ISO 4217 currency code.
//!
//! Never a float. Amounts are non-negative: a price, a total, a charge and a refund are all
//! amounts, and "money owed back" is a refund, not a negative price. Arithmetic is checked:
//! mixing currencies or overflowing `i64` is an error the caller must handle.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("currency must be a three-letter ISO 4217 code such as EUR")]
    InvalidCurrency,
    #[error("amount must not be negative")]
    NegativeAmount,
    #[error("cannot combine {0} with {1}")]
    CurrencyMismatch(Currency, Currency),
    #[error("amount is too large")]
    Overflow,
}

/// An ISO 4217 currency code: three ASCII letters, accepted in any case and always stored
/// and answered upper-case.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "EUR", pattern = "^[A-Za-z]{3}$")]
pub struct Currency([u8; 3]);

impl Currency {
    pub const EUR: Currency = Currency(*b"EUR");
    pub const USD: Currency = Currency(*b"USD");

    /// Accepts `eur` as well as `EUR`; anything that is not three ASCII letters (a space
    /// included) is refused, exactly as the documented pattern says.
    pub fn parse(code: &str) -> Result<Self, MoneyError> {
        let bytes = code.as_bytes();
        match bytes {
            [a, b, c] if bytes.iter().all(u8::is_ascii_alphabetic) => Ok(Currency([
                a.to_ascii_uppercase(),
                b.to_ascii_uppercase(),
                c.to_ascii_uppercase(),
            ])),
            _ => Err(MoneyError::InvalidCurrency),
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ever built from ASCII letters, so this cannot fail.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Currency::parse(&value)
    }
}

impl From<Currency> for String {
    fn from(currency: Currency) -> Self {
        currency.as_str().to_owned()
    }
}

/// A non-negative amount of money in minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "MoneyRepr")]
#[schema(example = json!({"amount_minor": 1999, "currency": "EUR"}))]
pub struct Money {
    /// Amount in the currency's minor unit (cents for EUR), never negative.
    #[schema(minimum = 0)]
    amount_minor: i64,
    currency: Currency,
}

#[derive(Deserialize)]
struct MoneyRepr {
    amount_minor: i64,
    currency: Currency,
}

impl TryFrom<MoneyRepr> for Money {
    type Error = MoneyError;

    fn try_from(repr: MoneyRepr) -> Result<Self, Self::Error> {
        Money::new(repr.amount_minor, repr.currency)
    }
}

impl Money {
    pub fn new(amount_minor: i64, currency: Currency) -> Result<Self, MoneyError> {
        if amount_minor < 0 {
            return Err(MoneyError::NegativeAmount);
        }
        Ok(Self {
            amount_minor,
            currency,
        })
    }

    pub const fn zero(currency: Currency) -> Self {
        Self {
            amount_minor: 0,
            currency,
        }
    }

    pub const fn amount_minor(&self) -> i64 {
        self.amount_minor
    }

    pub const fn currency(&self) -> Currency {
        self.currency
    }

    pub const fn is_zero(&self) -> bool {
        self.amount_minor == 0
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let amount_minor = self
            .amount_minor
            .checked_add(other.amount_minor)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money {
            amount_minor,
            currency: self.currency,
        })
    }

    /// `self - other`; refuses to go below zero.
    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let amount_minor = self
            .amount_minor
            .checked_sub(other.amount_minor)
            .ok_or(MoneyError::Overflow)?;
        Money::new(amount_minor, self.currency)
    }

    /// The price of `quantity` units at `self` each.
    pub fn checked_mul(self, quantity: u32) -> Result<Money, MoneyError> {
        let amount_minor = self
            .amount_minor
            .checked_mul(i64::from(quantity))
            .ok_or(MoneyError::Overflow)?;
        Ok(Money {
            amount_minor,
            currency: self.currency,
        })
    }

    /// Sums amounts of one currency; an empty sum is zero in `currency`.
    pub fn sum(
        currency: Currency,
        amounts: impl IntoIterator<Item = Money>,
    ) -> Result<Money, MoneyError> {
        amounts
            .into_iter()
            .try_fold(Money::zero(currency), Money::checked_add)
    }

    fn same_currency(&self, other: Money) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch(self.currency, other.currency))
        }
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Two minor digits covers the currencies the demo shop sells in; display only.
        write!(
            f,
            "{}.{:02} {}",
            self.amount_minor / 100,
            self.amount_minor % 100,
            self.currency
        )
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn eur(amount: i64) -> Money {
        Money::new(amount, Currency::EUR).expect("valid amount")
    }

    #[test]
    fn currency_codes_are_normalised_and_checked() {
        assert_eq!(Currency::parse("eur"), Ok(Currency::EUR));
        assert_eq!(Currency::parse("uSd"), Ok(Currency::USD));
        for bad in ["", "EU", "EURO", "E1R", "€€€", " USD", "USD "] {
            assert_eq!(
                Currency::parse(bad),
                Err(MoneyError::InvalidCurrency),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn negative_amounts_are_refused_also_when_deserializing() {
        assert_eq!(
            Money::new(-1, Currency::EUR),
            Err(MoneyError::NegativeAmount)
        );
        let parsed = serde_json::from_str::<Money>(r#"{"amount_minor": -5, "currency": "EUR"}"#);
        assert!(parsed.is_err());
    }

    #[test]
    fn money_serializes_as_minor_units_and_code() {
        let json = serde_json::to_value(eur(1999)).expect("serialize");
        assert_eq!(
            json,
            serde_json::json!({"amount_minor": 1999, "currency": "EUR"})
        );
        assert_eq!(eur(1999).to_string(), "19.99 EUR");
    }

    #[test]
    fn mixing_currencies_is_an_error() {
        let usd = Money::new(1, Currency::USD).expect("valid");
        assert_eq!(
            eur(1).checked_add(usd),
            Err(MoneyError::CurrencyMismatch(Currency::EUR, Currency::USD))
        );
    }

    #[test]
    fn subtraction_never_goes_below_zero() {
        assert_eq!(eur(5).checked_sub(eur(6)), Err(MoneyError::NegativeAmount));
        assert_eq!(eur(5).checked_sub(eur(5)), Ok(eur(0)));
    }

    proptest! {
        #[test]
        fn addition_is_commutative_and_exact(a in 0i64..i64::MAX / 2, b in 0i64..i64::MAX / 2) {
            prop_assert_eq!(eur(a).checked_add(eur(b)), eur(b).checked_add(eur(a)));
            prop_assert_eq!(eur(a).checked_add(eur(b)).map(|m| m.amount_minor()), Ok(a + b));
        }

        #[test]
        fn overflow_is_reported_never_wrapped(a in 1i64..=i64::MAX, b in 1i64..=i64::MAX) {
            match a.checked_add(b) {
                Some(sum) => prop_assert_eq!(eur(a).checked_add(eur(b)), Ok(eur(sum))),
                None => prop_assert_eq!(eur(a).checked_add(eur(b)), Err(MoneyError::Overflow)),
            }
        }

        #[test]
        fn sub_undoes_add(a in 0i64..i64::MAX / 2, b in 0i64..i64::MAX / 2) {
            let total = eur(a).checked_add(eur(b)).expect("no overflow in range");
            prop_assert_eq!(total.checked_sub(eur(b)), Ok(eur(a)));
        }

        #[test]
        fn line_totals_sum_like_integers(lines in proptest::collection::vec((0i64..1_000_000, 0u32..1_000), 0..20)) {
            let expected: i64 = lines.iter().map(|(price, qty)| price * i64::from(*qty)).sum();
            let total = Money::sum(
                Currency::EUR,
                lines.iter().map(|(price, qty)| eur(*price).checked_mul(*qty).expect("small")),
            );
            prop_assert_eq!(total, Ok(eur(expected)));
        }
    }
}
