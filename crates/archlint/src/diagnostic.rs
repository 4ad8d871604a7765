//! The diagnostic model shared by violations and configuration errors: a rule id, a message,
//! an optional source location (with the offending line, so rendering never re-reads files),
//! notes and a help line.

use std::ops::Range;

use serde::Serialize;

use crate::rules::Rule;

/// A place in a file of the checked workspace, with the text of its line for rendering.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Location {
    /// Path relative to the workspace root, `/`-separated, so output is the same on every machine.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// How many characters to underline (at least 1).
    #[serde(skip)]
    pub width: usize,
    /// The whole offending line, without its line break.
    #[serde(skip)]
    pub source_line: String,
}

impl Location {
    /// The location of the byte range `span` inside `text` (the contents of `file`).
    /// Multi-line spans are underlined to the end of their first line.
    pub fn from_span(file: &str, text: &str, span: Range<usize>) -> Self {
        let start = floor_char_boundary(text, span.start.min(text.len()));
        let end = floor_char_boundary(text, span.end.clamp(start, text.len()));
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        let line = text[..start].matches('\n').count() + 1;
        let column = text[line_start..start].chars().count() + 1;
        let width = text[start..end.min(line_end)].chars().count().max(1);
        Self {
            file: file.to_owned(),
            line,
            column,
            width,
            source_line: text[line_start..line_end].trim_end_matches('\r').to_owned(),
        }
    }

    /// The location of a 1-based `line` and 1-based character `column` inside `text`.
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
            line,
            column: column.max(1),
            width: width.max(1),
            source_line,
        }
    }
}

fn floor_char_boundary(text: &str, mut index: usize) -> usize {
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

/// One finding, rendered like a rustc diagnostic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// The stable rule id (see `archlint explain <id>`).
    pub rule: Rule,
    /// The one-line headline.
    pub message: String,
    /// Where it is, if it has a place in a file.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// A short text printed next to the underline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// `= note:` lines: what breaks the rule and which declaration it breaks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// `= help:` line: what to do instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(rule: Rule, message: impl Into<String>) -> Self {
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

/// A broken architecture rule, with the key that identifies it in the baseline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// The workspace member (package name) the violation belongs to.
    #[serde(rename = "crate")]
    pub krate: String,
    /// What the violation is about, stable across edits that move lines: the dependency name,
    /// the referenced schema or table, the included path, the cycle.
    pub key: String,
    #[serde(flatten)]
    pub diagnostic: Diagnostic,
    /// Whether an entry of the baseline accepts it.
    pub baselined: bool,
}

impl Violation {
    pub fn new(krate: impl Into<String>, key: impl Into<String>, diagnostic: Diagnostic) -> Self {
        Self {
            krate: krate.into(),
            key: key.into(),
            diagnostic,
            baselined: false,
        }
    }

    pub fn rule(&self) -> Rule {
        self.diagnostic.rule
    }

    /// The file the baseline keys the violation by (`arch.toml` for violations without a place).
    pub fn file(&self) -> &str {
        self.diagnostic
            .location
            .as_ref()
            .map_or(crate::config::FILE_NAME, |l| l.file.as_str())
    }

    /// Sort key: file, position, rule, then key, so output is deterministic.
    pub(crate) fn sort_key(&self) -> (String, usize, usize, Rule, String) {
        let (line, column) = self
            .diagnostic
            .location
            .as_ref()
            .map_or((0, 0), |l| (l.line, l.column));
        (
            self.file().to_owned(),
            line,
            column,
            self.rule(),
            self.key.clone(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_from_span_counts_lines_and_characters() {
        let text = "[package]\nname = \"é\"\n[dependencies]\nfoo = \"1\"\n";
        let start = text.find("foo").unwrap();
        let location = Location::from_span("Cargo.toml", text, start..start + 3);
        assert_eq!((location.line, location.column, location.width), (4, 1, 3));
        assert_eq!(location.source_line, "foo = \"1\"");
        let start = text.find('"').unwrap() + 1;
        let location = Location::from_span("Cargo.toml", text, start..start + 2);
        assert_eq!((location.line, location.column, location.width), (2, 9, 1));
    }
}
