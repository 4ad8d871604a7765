//! The baseline (`arch-baseline.toml`): violations accepted for now, keyed without line numbers
//! (rule, crate, key, file) and each with a reason. Matching marks violations as baselined and
//! finds stale entries; updating only ever removes stale entries, keeping the rest of the text.

use std::ops::Range;
use std::path::Path;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::config::toml_error;
use crate::diagnostic::{Diagnostic, Location, Violation};
use crate::rules::Rule;

/// The default file name, at the workspace root.
pub const FILE_NAME: &str = "arch-baseline.toml";

const ENTRY_HEADER: &str = "[[accepted]]";

/// One accepted violation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub rule: Rule,
    pub krate: String,
    pub key: String,
    pub file: String,
    pub reason: String,
    /// Where the entry's `rule` is written.
    span: Range<usize>,
}

impl Entry {
    pub fn matches(&self, violation: &Violation) -> bool {
        self.rule == violation.rule()
            && self.krate == violation.krate
            && self.key == violation.key
            && self.file == violation.file()
    }
}

/// A parsed baseline file.
#[derive(Debug, Clone)]
pub struct Baseline {
    /// How to name the file in messages (relative to the workspace root when inside it).
    pub display: String,
    text: String,
    entries: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBaseline {
    #[serde(default)]
    accepted: Vec<RawEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    rule: Spanned<String>,
    #[serde(rename = "crate")]
    krate: String,
    key: String,
    file: String,
    reason: Spanned<String>,
}

/// How an entry is written (`--format baseline`).
#[derive(Debug, Serialize)]
struct EntryOut<'a> {
    rule: &'a str,
    #[serde(rename = "crate")]
    krate: &'a str,
    key: &'a str,
    file: &'a str,
    reason: &'a str,
}

/// Why the baseline could not be used.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{} problem(s) in the baseline", .0.len())]
    Invalid(Vec<Diagnostic>),
}

impl Baseline {
    /// Reads a baseline; `Ok(None)` if the file does not exist.
    pub fn load(path: &Path, display: &str) -> Result<Option<Self>, BaselineError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(BaselineError::Read {
                    path: display.to_owned(),
                    source,
                });
            }
        };
        Self::parse(display, text).map(Some)
    }

    pub fn parse(display: &str, text: String) -> Result<Self, BaselineError> {
        let raw: RawBaseline = toml::from_str(&text)
            .map_err(|error| BaselineError::Invalid(vec![toml_error(display, &text, &error)]))?;
        let mut problems = Vec::new();
        let mut entries = Vec::new();
        for entry in raw.accepted {
            let at = |span| Location::from_span(display, &text, span);
            let rule = match entry.rule.get_ref().parse::<Rule>() {
                Ok(rule) if rule.is_configuration() || rule == Rule::StaleBaselineEntry => {
                    problems.push(
                        Diagnostic::new(
                            Rule::InvalidConfig,
                            format!("`{rule}` cannot be baselined"),
                        )
                        .at(at(entry.rule.span()))
                        .help("fix the configuration instead"),
                    );
                    continue;
                }
                Ok(rule) => rule,
                Err(error) => {
                    problems.push(
                        Diagnostic::new(Rule::InvalidConfig, error.to_string())
                            .at(at(entry.rule.span())),
                    );
                    continue;
                }
            };
            if entry.reason.get_ref().trim().is_empty() {
                problems.push(
                    Diagnostic::new(Rule::InvalidConfig, "a baseline entry needs a `reason`")
                        .at(at(entry.reason.span()))
                        .help("say why the violation is accepted and when it will be fixed"),
                );
            }
            entries.push(Entry {
                rule,
                krate: entry.krate,
                key: entry.key,
                file: entry.file,
                reason: entry.reason.into_inner(),
                span: entry.rule.span(),
            });
        }
        if !problems.is_empty() {
            return Err(BaselineError::Invalid(problems));
        }
        Ok(Self {
            display: display.to_owned(),
            text,
            entries,
        })
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Marks the violations an entry accepts; returns the indices of entries matching none.
    pub fn apply(&self, violations: &mut [Violation]) -> Vec<usize> {
        let mut stale = Vec::new();
        for (index, entry) in self.entries.iter().enumerate() {
            let mut used = false;
            for violation in violations.iter_mut().filter(|v| entry.matches(v)) {
                violation.baselined = true;
                used = true;
            }
            if !used {
                stale.push(index);
            }
        }
        stale
    }

    /// A `stale-baseline-entry` diagnostic for the entry at `index`.
    pub fn stale_diagnostic(&self, index: usize) -> Diagnostic {
        let entry = &self.entries[index];
        Diagnostic::new(
            Rule::StaleBaselineEntry,
            format!(
                "baseline entry `{}` for `{}` (key `{}`) no longer matches any violation",
                entry.rule, entry.krate, entry.key
            ),
        )
        .at(Location::from_span(&self.display, &self.text, entry.span.clone()))
        .label("stale entry")
        .note(format!("file `{}`, reason: \"{}\"", entry.file, entry.reason))
        .help("the violation is fixed: remove the entry with `cargo run -p archlint -- check --update-baseline`")
    }

    /// The baseline text without the entries at `stale`, keeping comments and formatting.
    pub fn without(&self, stale: &[usize]) -> String {
        let headers: Vec<usize> = line_starts(&self.text)
            .filter(|&start| line_at(&self.text, start).trim() == ENTRY_HEADER)
            .collect();
        if headers.len() != self.entries.len() {
            // Not written as `[[accepted]]` tables: write the kept entries afresh.
            let kept: Vec<&Entry> = self
                .entries
                .iter()
                .enumerate()
                .filter(|(i, _)| !stale.contains(i))
                .map(|(_, e)| e)
                .collect();
            return format!("{}{}", header_comment(), render_entries(&kept));
        }
        // An entry's block starts at the comment lines directly above its header.
        let starts: Vec<usize> = headers
            .iter()
            .map(|&header| attached_comment_start(&self.text, header))
            .collect();
        let mut out = String::new();
        let mut cursor = 0;
        for (index, &start) in starts.iter().enumerate() {
            if !stale.contains(&index) {
                continue;
            }
            let end = starts.get(index + 1).copied().unwrap_or(self.text.len());
            out.push_str(&self.text[cursor..start]);
            cursor = end;
        }
        out.push_str(&self.text[cursor..]);
        // Removing the last entries leaves the blank line that separated them.
        if !stale.is_empty() {
            out.truncate(out.trim_end().len());
            out.push('\n');
        }
        out
    }
}

fn line_starts(text: &str) -> impl Iterator<Item = usize> + '_ {
    std::iter::once(0).chain(
        text.match_indices('\n')
            .map(|(i, _)| i + 1)
            .filter(move |&i| i < text.len()),
    )
}

fn line_at(text: &str, start: usize) -> &str {
    text[start..].lines().next().unwrap_or_default()
}

/// Moves `header` up over the comment lines directly above it (no blank line between).
fn attached_comment_start(text: &str, header: usize) -> usize {
    let mut start = header;
    while start > 0 {
        let previous = text[..start - 1].rfind('\n').map_or(0, |i| i + 1);
        if !line_at(text, previous).trim_start().starts_with('#') {
            break;
        }
        start = previous;
    }
    start
}

/// The comment a fresh baseline file starts with.
pub fn header_comment() -> &'static str {
    "# Accepted architecture violations (see docs/archlint.md). `archlint check` fails on any\n\
     # violation not listed here and on entries that no longer match; shrink this file with\n\
     # `cargo run -p archlint -- check --update-baseline`.\n"
}

fn render_entries(entries: &[&Entry]) -> String {
    let mut out = String::new();
    for entry in entries {
        push_entry(
            &mut out,
            &EntryOut {
                rule: entry.rule.id(),
                krate: &entry.krate,
                key: &entry.key,
                file: &entry.file,
                reason: &entry.reason,
            },
        );
    }
    out
}

fn push_entry(out: &mut String, entry: &EntryOut<'_>) {
    out.push('\n');
    out.push_str(ENTRY_HEADER);
    out.push('\n');
    // Serialising a flat struct of strings cannot fail.
    out.push_str(&toml::to_string(entry).unwrap_or_default());
}

/// Baseline entries for `violations` (not yet baselined), to paste into the baseline file.
pub fn entries_for(violations: &[Violation]) -> String {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = String::new();
    for violation in violations.iter().filter(|v| !v.baselined) {
        let id = (
            violation.rule(),
            &violation.krate,
            &violation.key,
            violation.file(),
        );
        if !seen.insert(id) {
            continue;
        }
        push_entry(
            &mut out,
            &EntryOut {
                rule: violation.rule().id(),
                krate: &violation.krate,
                key: &violation.key,
                file: violation.file(),
                reason: "TODO: why this is accepted for now, and when it will be fixed",
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# Header comment.

# About the first entry.
[[accepted]]
rule = "undeclared-context-edge"
crate = "orders"
key = "payments-api"
file = "crates/orders/Cargo.toml"
reason = "migration in progress"

[[accepted]]
rule = "foreign-table"
crate = "orders"
key = "users"
file = "crates/orders/src/lib.rs"
reason = "reporting query, moves to an event projection"
"#;

    #[test]
    fn removes_only_the_stale_block_with_its_comment() {
        let baseline = Baseline::parse("arch-baseline.toml", TEXT.to_owned()).unwrap();
        assert_eq!(baseline.entries().len(), 2);
        let without_first = baseline.without(&[0]);
        assert!(
            without_first
                .starts_with("# Header comment.\n\n[[accepted]]\nrule = \"foreign-table\"")
        );
        let without_second = baseline.without(&[1]);
        assert!(without_second.ends_with("reason = \"migration in progress\"\n"));
        assert!(!without_second.contains("foreign-table"));
        assert_eq!(baseline.without(&[]), TEXT);
    }

    #[test]
    fn rejects_unknown_rules_and_missing_reasons() {
        let text = "[[accepted]]\nrule = \"nope\"\ncrate = \"a\"\nkey = \"b\"\nfile = \"c\"\nreason = \"x\"\n\n[[accepted]]\nrule = \"foreign-table\"\ncrate = \"a\"\nkey = \"b\"\nfile = \"c\"\nreason = \" \"\n";
        let Err(BaselineError::Invalid(problems)) = Baseline::parse("b.toml", text.to_owned())
        else {
            panic!("expected problems");
        };
        assert_eq!(problems.len(), 2);
        let lines: Vec<_> = problems
            .iter()
            .map(|p| p.location.as_ref().and_then(Location::line_column))
            .map(|position| position.map(|(line, _)| line))
            .collect();
        assert_eq!(lines, [Some(2), Some(13)]);
    }
}
