//! Rules for the short texts people type (names, address lines), shared so that every context
//! checks them alike and documents them alike.
//!
//! Each rule is written twice on purpose: as a Rust check, and as a JSON Schema pattern for
//! the API documents (`#[schema(pattern = ...)]` takes only a literal, so `-api` crates
//! repeat the constants below and test that they did it right). Both read the raw value, so
//! what the document allows is exactly what the server accepts; the server then stores it
//! trimmed.

use crate::FieldError;

/// A line of text: no control characters (Unicode category Cc, the same set as
/// `char::is_control`) and at least one character that is not white space
/// (`char::is_whitespace`), with the white space of that class spelled out so that every
/// regex dialect reads it the same way.
pub const LINE_PATTERN: &str = r"^[^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F]*$";

/// Text without control characters; may be empty or blank.
pub const NO_CONTROL_PATTERN: &str = r"^[^\u0000-\u001F\u007F-\u009F]*$";

/// A required line of at most `max_chars` characters (counted before trimming, as JSON
/// Schema's `maxLength` counts), returned trimmed.
pub fn line(field: &str, raw: &str, max_chars: usize) -> Result<String, FieldError> {
    if raw.chars().count() > max_chars {
        return Err(FieldError::new(
            field,
            "too_long",
            format!("must be at most {max_chars} characters"),
        ));
    }
    if raw.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            "invalid_characters",
            "must not contain control characters",
        ));
    }
    if raw.chars().all(char::is_whitespace) {
        return Err(FieldError::new(field, "required", "must not be empty"));
    }
    Ok(raw.trim().to_owned())
}

/// An optional line: like [`line`], except that an empty or blank value means "none".
pub fn optional_line(
    field: &str,
    raw: &str,
    max_chars: usize,
) -> Result<Option<String>, FieldError> {
    if raw.chars().count() <= max_chars
        && raw.chars().all(char::is_whitespace)
        && !raw.chars().any(char::is_control)
    {
        return Ok(None);
    }
    line(field, raw, max_chars).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(result: Result<String, FieldError>) -> String {
        match result {
            Ok(value) => format!("ok:{value}"),
            Err(error) => error.code,
        }
    }

    #[test]
    fn lines_are_visible_bounded_and_trimmed() {
        assert_eq!(code(line("name", "  Ada  ", 10)), "ok:Ada");
        assert_eq!(code(line("name", "", 10)), "required");
        assert_eq!(code(line("name", " \u{3000} ", 10)), "required");
        assert_eq!(code(line("name", "a\nb", 10)), "invalid_characters");
        assert_eq!(code(line("name", "\u{85}", 10)), "invalid_characters");
        assert_eq!(code(line("name", &"x".repeat(11), 10)), "too_long");
        // Counted before trimming, as the document's maxLength counts.
        assert_eq!(
            code(line("name", &format!(" {}", "x".repeat(10)), 10)),
            "too_long"
        );
        assert_eq!(code(line("name", "\u{feff}", 10)), "ok:\u{feff}");
    }

    #[test]
    fn optional_lines_treat_blank_as_none() {
        assert_eq!(optional_line("line2", "  ", 10), Ok(None));
        assert_eq!(
            optional_line("line2", " Flat 2 ", 10),
            Ok(Some("Flat 2".into()))
        );
        assert!(optional_line("line2", "\t", 10).is_err());
    }

    /// The pattern's "white space" class is exactly `char::is_whitespace` minus the control
    /// characters, and its control class is exactly `char::is_control`.
    #[test]
    fn the_patterns_spell_out_the_same_classes_as_the_checks() {
        let in_ranges = |c: char, ranges: &[(u32, u32)]| {
            ranges
                .iter()
                .any(|(low, high)| (*low..=*high).contains(&u32::from(c)))
        };
        let control = [(0x00, 0x1F), (0x7F, 0x9F)];
        let blank = [
            (0x00, 0x20),
            (0x7F, 0xA0),
            (0x1680, 0x1680),
            (0x2000, 0x200A),
            (0x2028, 0x2029),
            (0x202F, 0x202F),
            (0x205F, 0x205F),
            (0x3000, 0x3000),
        ];
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            assert_eq!(in_ranges(c, &control), c.is_control(), "{c:?}");
            assert_eq!(
                in_ranges(c, &blank),
                c.is_control() || c.is_whitespace(),
                "{c:?}"
            );
        }
        assert!(LINE_PATTERN.contains(r"\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000"));
    }
}
