//! One check for every closed set of values a context publishes: it is stored as the same
//! word it is sent as.
//!
//! Each `-api` crate's closed sets (statuses, reasons, kinds) derive serde names for the wire
//! and strum names for the database, both `snake_case`. Nothing but a test ties the two
//! together; this macro is that test, written once.

/// Asserts, for every variant of each enum named, that its strum name (`IntoStaticStr`, the
/// stored word) equals its serde name (the wire word) and parses back (`FromStr`) to the same
/// variant. The calling crate needs `strum` and `serde_json`. Use in a `#[test]`:
/// `kernel::assert_stored_as_sent!(OrderStatus, OrderFailure);`
#[macro_export]
macro_rules! assert_stored_as_sent {
    ($($set:ty),+ $(,)?) => {
        $(
            for value in <$set as ::strum::VariantArray>::VARIANTS {
                let stored: &'static str = value.into();
                assert_eq!(
                    ::serde_json::to_value(value).expect("serializable"),
                    stored,
                    "{} {value:?}: stored and sent words differ",
                    stringify!($set),
                );
                assert_eq!(
                    stored.parse::<$set>().ok(),
                    Some(*value),
                    "{} {value:?}: the stored word does not parse back",
                    stringify!($set),
                );
            }
        )+
    };
}

#[cfg(test)]
mod tests {
    use serde::Serialize;

    #[derive(
        Debug,
        Clone,
        Copy,
        PartialEq,
        Eq,
        Serialize,
        strum::IntoStaticStr,
        strum::EnumString,
        strum::VariantArray,
    )]
    #[serde(rename_all = "snake_case")]
    #[strum(serialize_all = "snake_case")]
    enum Agreeing {
        OutOfStock,
        Declined,
    }

    /// Sent as `out_of_stock`, stored as `out-of-stock`: the drift the check exists for.
    #[derive(
        Debug,
        Clone,
        Copy,
        PartialEq,
        Eq,
        Serialize,
        strum::IntoStaticStr,
        strum::EnumString,
        strum::VariantArray,
    )]
    #[serde(rename_all = "snake_case")]
    #[strum(serialize_all = "kebab-case")]
    enum Drifting {
        OutOfStock,
    }

    #[test]
    fn agreeing_words_pass() {
        assert_stored_as_sent!(Agreeing);
    }

    #[test]
    #[should_panic(expected = "stored and sent words differ")]
    fn drifting_words_fail() {
        assert_stored_as_sent!(Drifting);
    }
}
