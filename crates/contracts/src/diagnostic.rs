//! The rules of the contract check, and its diagnostics: the shared rustc-style
//! [`lint_report::Diagnostic`] (as archlint prints them) with a [`Rule`] of this check.

use std::fmt;

pub use lint_report::{Line, Location};

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

/// One problem, rendered like a rustc diagnostic: its file is a committed contract, or for a
/// Rust source the line with the offending name.
pub type Diagnostic = lint_report::Diagnostic<Rule>;

/// Sort key: file, then line; equal keys keep the order they were found in.
pub(crate) fn sort_key(diagnostic: &Diagnostic) -> (String, usize, usize) {
    diagnostic.location.as_ref().map_or_else(
        || (String::new(), 0, 0),
        |l| {
            let (line, column) = l.line_column().unwrap_or_default();
            (l.file.clone(), line, column)
        },
    )
}
