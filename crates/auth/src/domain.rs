//! Parsing of what a user types, into values that are valid by construction.

use auth_api::Role;
use email_address::EmailAddress;
use kernel::FieldError;

/// A syntactically valid address, trimmed and lower-cased so that uniqueness is
/// case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub const MAX_LEN: usize = 254;

    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let normalised = raw.trim().to_lowercase();
        if normalised.len() > Self::MAX_LEN || !EmailAddress::is_valid(&normalised) {
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

    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let trimmed = raw.trim();
        let field = "display_name";
        if trimmed.is_empty() {
            return Err(FieldError::new(field, "required", "must not be empty"));
        }
        if trimmed.chars().count() > Self::MAX_CHARS {
            return Err(FieldError::new(
                field,
                "too_long",
                "must be at most 100 characters",
            ));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(FieldError::new(
                field,
                "invalid_characters",
                "must not contain control characters",
            ));
        }
        Ok(Self(trimmed.to_owned()))
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

pub fn role_to_str(role: Role) -> &'static str {
    match role {
        Role::Customer => "customer",
        Role::Admin => "admin",
    }
}

pub fn role_from_str(role: &str) -> Option<Role> {
    match role {
        "customer" => Some(Role::Customer),
        "admin" => Some(Role::Admin),
        _ => None,
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
        check(Email::parse("  Ada@Example.COM "), Ok("ada@example.com"));
        check(Email::parse("not-an-email"), Err("invalid_email"));
        check(Email::parse(""), Err("invalid_email"));
        check(Email::parse("a@"), Err("invalid_email"));
        let long = format!("{}@example.com", "a".repeat(250));
        check(Email::parse(&long), Err("invalid_email"));
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

    #[test]
    fn roles_round_trip() {
        for role in [Role::Customer, Role::Admin] {
            assert_eq!(role_from_str(role_to_str(role)), Some(role));
        }
        assert_eq!(role_from_str("root"), None);
    }
}
