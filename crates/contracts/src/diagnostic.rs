//! Diagnostics, rendered like rustc's (and archlint's): a rule id, a one-line message, the file
//! (with the offending line for a Rust source), `= note:` lines and a `= help:` line.

use std::fmt;
use std::io::{self, Write};

/// The kinds of problem the check reports. The id is stable: scripts and docs use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    /// A contract changed so that old and new versions cannot read each other.
    BreakingChange,
    /// A contract changed compatibly, but its committed file was not rewritten.
    StaleContract,
    /// A contract has no committed file.
    UncommittedContract,
    /// A committed file that no registered type produces.
    OrphanContract,
    /// A committed file that is not JSON.
    UnreadableContract,
    /// An `IntegrationEvent` implementation that is not registered.
    UnregisteredEvent,
    /// A serialized `-api` type that no port contract holds.
    UnregisteredDto,
    /// A `PENDING_TO_SCHEMA` entry that is registered already or names no type.
    StalePendingEntry,
}

impl Rule {
    pub const ALL: [Rule; 8] = [
        Rule::BreakingChange,
        Rule::StaleContract,
        Rule::UncommittedContract,
        Rule::OrphanContract,
        Rule::UnreadableContract,
        Rule::UnregisteredEvent,
        Rule::UnregisteredDto,
        Rule::StalePendingEntry,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Rule::BreakingChange => "breaking-change",
            Rule::StaleContract => "stale-contract",
            Rule::UncommittedContract => "uncommitted-contract",
            Rule::OrphanContract => "orphan-contract",
            Rule::UnreadableContract => "unreadable-contract",
            Rule::UnregisteredEvent => "unregistered-event",
            Rule::UnregisteredDto => "unregistered-dto",
            Rule::StalePendingEntry => "stale-pending-entry",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// Where a problem is: a file, and for a Rust source the line, with its text for rendering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// Relative to the repository root, `/`-separated, so output is the same on every machine.
    pub file: String,
    pub line: Option<Line>,
}

/// A position in a text file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// 1-based.
    pub number: usize,
    /// 1-based, in characters.
    pub column: usize,
    /// How many characters to underline (at least 1).
    pub width: usize,
    /// The whole line, without its line break.
    pub text: String,
}

impl Location {
    pub fn file(file: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            line: None,
        }
    }
}

/// One problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub rule: Rule,
    pub message: String,
    pub location: Option<Location>,
    /// Printed after the underline, for a located Rust source.
    pub label: Option<String>,
    pub notes: Vec<String>,
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

    /// The rustc-style text, without colour.
    pub fn render_human(&self) -> String {
        let mut out = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = render(&mut out, self, Paint { on: false });
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Sort key: file, then line; equal keys keep the order they were found in.
    pub(crate) fn sort_key(&self) -> (String, usize, usize) {
        self.location.as_ref().map_or_else(
            || (String::new(), 0, 0),
            |l| {
                let (line, column) = l.line.as_ref().map_or((0, 0), |l| (l.number, l.column));
                (l.file.clone(), line, column)
            },
        )
    }
}

/// ANSI styles, or nothing when colour is off.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Paint {
    pub on: bool,
}

impl Paint {
    fn wrap(self, code: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    pub fn error(self, text: &str) -> String {
        self.wrap("1;31", text)
    }

    pub fn ok(self, text: &str) -> String {
        self.wrap("1;32", text)
    }

    pub fn bold(self, text: &str) -> String {
        self.wrap("1", text)
    }

    fn gutter(self, text: &str) -> String {
        self.wrap("1;34", text)
    }
}

pub(crate) fn render(out: &mut dyn Write, d: &Diagnostic, paint: Paint) -> io::Result<()> {
    writeln!(
        out,
        "{}{}",
        paint.error(&format!("error[{}]", d.rule)),
        paint.bold(&format!(": {}", d.message))
    )?;
    let number = d
        .location
        .as_ref()
        .and_then(|l| l.line.as_ref())
        .map(|l| l.number.to_string())
        .unwrap_or_default();
    let pad = " ".repeat(number.len());
    if let Some(location) = &d.location {
        match &location.line {
            None => writeln!(out, "{pad} {} {}", paint.gutter("-->"), location.file)?,
            Some(line) => {
                writeln!(
                    out,
                    "{pad}{} {}:{}:{}",
                    paint.gutter("-->"),
                    location.file,
                    line.number,
                    line.column
                )?;
                writeln!(out, "{pad} {}", paint.gutter("|"))?;
                // Tabs would shift the carets; show them as single spaces.
                let text = line.text.replace('\t', " ");
                writeln!(
                    out,
                    "{} {} {text}",
                    paint.gutter(&number),
                    paint.gutter("|")
                )?;
                let carets = paint.error(&format!(
                    "{}{}",
                    "^".repeat(line.width.max(1)),
                    d.label
                        .as_ref()
                        .map_or_else(String::new, |l| format!(" {l}"))
                ));
                writeln!(
                    out,
                    "{pad} {} {}{carets}",
                    paint.gutter("|"),
                    " ".repeat(line.column.saturating_sub(1))
                )?;
                writeln!(out, "{pad} {}", paint.gutter("|"))?;
            }
        }
    }
    for note in &d.notes {
        writeln!(out, "{pad} {} {note}", paint.bold("= note:"))?;
    }
    if let Some(help) = &d.help {
        writeln!(out, "{pad} {} {help}", paint.bold("= help:"))?;
    }
    writeln!(out)
}
