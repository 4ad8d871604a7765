//! The diagnostic model: a rule, a message, where it is, a label, notes and a help line.

use std::ops::Range;

use serde::Serialize;

/// Where a problem is: a file and, if the problem has a place inside it, the line.
///
/// In JSON it is flattened into its diagnostic as `file`, `line` and `column`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Location {
    /// Relative to the checked root, `/`-separated, so output is the same on every machine.
    pub file: String,
    /// The place in the file; `None` when the problem is the file as a whole.
    #[serde(flatten)]
    pub line: Option<Line>,
}

/// A place in a text file, with the text of its line for rendering.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Line {
    /// 1-based.
    #[serde(rename = "line")]
    pub number: usize,
    /// 1-based, in characters.
    pub column: usize,
    /// How many characters to underline (at least 1).
    #[serde(skip)]
    pub width: usize,
    /// The whole line, without its line break.
    #[serde(skip)]
    pub text: String,
}

impl Location {
    /// The file as a whole, without a line.
    pub fn file(file: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            line: None,
        }
    }

    /// The location of the byte range `span` inside `text` (the contents of `file`).
    /// Multi-line spans are underlined to the end of their first line.
    pub fn from_span(file: &str, text: &str, span: Range<usize>) -> Self {
        let start = floor_char_boundary(text, span.start.min(text.len()));
        let end = floor_char_boundary(text, span.end.clamp(start, text.len()));
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        Self {
            file: file.to_owned(),
            line: Some(Line {
                number: text[..start].matches('\n').count() + 1,
                column: text[line_start..start].chars().count() + 1,
                width: text[start..end.min(line_end)].chars().count().max(1),
                text: text[line_start..line_end].trim_end_matches('\r').to_owned(),
            }),
        }
    }

    /// The location of a 1-based `line` and 1-based character `column` inside `text` (the
    /// contents of `file`), underlining `width` characters.
    pub fn from_line_column(
        file: &str,
        text: &str,
        line: usize,
        column: usize,
        width: usize,
    ) -> Self {
        let source_line = text
            .lines()
            .nth(line.saturating_sub(1))
            .unwrap_or_default()
            .to_owned();
        Self {
            file: file.to_owned(),
            line: Some(Line {
                number: line,
                column: column.max(1),
                width: width.max(1),
                text: source_line,
            }),
        }
    }

    /// The 1-based line and column, if the location has a line: what reports sort by.
    pub fn line_column(&self) -> Option<(usize, usize)> {
        self.line.as_ref().map(|line| (line.number, line.column))
    }
}

fn floor_char_boundary(text: &str, mut index: usize) -> usize {
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

/// One finding, rendered like a rustc diagnostic. `R` is the tool's rule: its `Display` is
/// the stable id in `error[<id>]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic<R> {
    /// Which rule the finding breaks.
    pub rule: R,
    /// The one-line headline.
    pub message: String,
    /// Where it is, if it has a place.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// A short text printed next to the underline (only shown for a location with a line).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// `= note:` lines: what breaks the rule and which declaration it breaks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// `= help:` line: what to do instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

impl<R> Diagnostic<R> {
    pub fn new(rule: R, message: impl Into<String>) -> Self {
        Self {
            rule,
            message: message.into(),
            location: None,
            label: None,
            notes: Vec::new(),
            help: None,
        }
    }

    #[must_use]
    pub fn at(mut self, location: Location) -> Self {
        self.location = Some(location);
        self
    }

    #[must_use]
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    #[must_use]
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    #[must_use]
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_from_span_counts_lines_and_characters() {
        let text = "[package]\nname = \"é\"\n[dependencies]\nfoo = \"1\"\n";
        let start = text.find("foo").unwrap();
        let line = Location::from_span("Cargo.toml", text, start..start + 3)
            .line
            .unwrap();
        assert_eq!((line.number, line.column, line.width), (4, 1, 3));
        assert_eq!(line.text, "foo = \"1\"");
        let start = text.find('"').unwrap() + 1;
        let line = Location::from_span("Cargo.toml", text, start..start + 2)
            .line
            .unwrap();
        assert_eq!((line.number, line.column, line.width), (2, 9, 1));
    }

    #[test]
    fn json_flattens_the_location_and_leaves_out_what_is_missing() {
        let text = "a\n\tb = 1\n";
        let located = Diagnostic::new("some-rule", "message")
            .at(Location::from_line_column("f.toml", text, 2, 2, 1))
            .note("note");
        insta::assert_json_snapshot!(located, @r#"
        {
          "rule": "some-rule",
          "message": "message",
          "file": "f.toml",
          "line": 2,
          "column": 2,
          "notes": [
            "note"
          ]
        }
        "#);
        let whole_file = Diagnostic::new("some-rule", "message").at(Location::file("f.toml"));
        insta::assert_json_snapshot!(whole_file, @r#"
        {
          "rule": "some-rule",
          "message": "message",
          "file": "f.toml"
        }
        "#);
        let nowhere = Diagnostic::new("some-rule", "message").help("help");
        insta::assert_json_snapshot!(nowhere, @r#"
        {
          "rule": "some-rule",
          "message": "message",
          "help": "help"
        }
        "#);
    }
}
