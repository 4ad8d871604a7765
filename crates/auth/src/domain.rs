//! Parsing of what a user types, into values that are valid by construction.

use email_address::EmailAddress;
use kernel::FieldError;

/// A syntactically valid address (RFC 5322, no surrounding spaces, at most 254 characters,
/// as the API document says), lower-cased so that uniqueness is case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub const MAX_CHARS: usize = 254;

    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let normalised = raw.to_lowercase();
        if raw.chars().count() > Self::MAX_CHARS || !EmailAddress::is_valid(&normalised) {
            return Err(FieldError::new(
                "email",
                "invalid_email",
                "must be an email address such as ada@example.com",
            ));
        }
        Ok(Self(normalised))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub const MAX_CHARS: usize = 100;

    /// The shop's rule for a line of text (`kernel::text::line`): 1 to 100 characters, not
    /// only spaces, no control characters; stored trimmed.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        kernel::text::line("display_name", raw, Self::MAX_CHARS).map(Self)
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A password that meets the length policy. Counted in characters, not bytes, so that
/// "ünïcödé!" is 8 long.
#[derive(Clone, PartialEq, Eq)]
pub struct NewPassword(String);

impl NewPassword {
    pub const MIN_CHARS: usize = 8;
    pub const MAX_CHARS: usize = 128;

    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let chars = raw.chars().count();
        if chars < Self::MIN_CHARS {
            return Err(FieldError::new(
                "password",
                "too_short",
                "must be at least 8 characters",
            ));
        }
        if chars > Self::MAX_CHARS {
            return Err(FieldError::new(
                "password",
                "too_long",
                "must be at most 128 characters",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewPassword([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<T: std::fmt::Debug>(parsed: Result<T, FieldError>, expected: Result<&str, &str>) {
        match (parsed, expected) {
            (Ok(value), Ok(want)) => {
                assert!(format!("{value:?}").contains(want), "{value:?} vs {want}")
            }
            (Err(error), Err(code)) => assert_eq!(error.code, code),
            (got, want) => panic!("got {got:?}, wanted {want:?}"),
        }
    }

    #[test]
    fn emails() {
        check(Email::parse("Ada@Example.COM"), Ok("ada@example.com"));
        check(Email::parse(" ada@example.com"), Err("invalid_email"));
        check(Email::parse("not-an-email"), Err("invalid_email"));
        check(Email::parse(""), Err("invalid_email"));
        check(Email::parse("a@"), Err("invalid_email"));
        let long = format!("{}@example.com", "a".repeat(250));
        check(Email::parse(&long), Err("invalid_email"));
        let domain = format!(
            "{}.{}.{}.com",
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(57)
        );
        let longest = format!("{}@{domain}", "a".repeat(64));
        assert_eq!(longest.len(), Email::MAX_CHARS);
        check(Email::parse(&longest), Ok("@bbb"));
    }

    #[test]
    fn display_names() {
        check(
            DisplayName::parse("  Ada Lovelace "),
            Ok("\"Ada Lovelace\""),
        );
        check(DisplayName::parse("   "), Err("required"));
        check(DisplayName::parse(&"x".repeat(101)), Err("too_long"));
        check(DisplayName::parse("bell\u{7}"), Err("invalid_characters"));
    }

    #[test]
    fn passwords_are_counted_in_characters() {
        check(NewPassword::parse("1234567"), Err("too_short"));
        check(NewPassword::parse("12345678"), Ok("redacted"));
        check(NewPassword::parse("ünïcödé!"), Ok("redacted"));
        check(NewPassword::parse(&"p".repeat(128)), Ok("redacted"));
        check(NewPassword::parse(&"p".repeat(129)), Err("too_long"));
    }
}
