//! archlint's diagnostics: the shared rustc-style [`lint_report::Diagnostic`] with archlint's
//! [`Rule`], and the violation that wraps one with the key the baseline knows it by.

use serde::Serialize;

use crate::rules::Rule;

pub use lint_report::{Line, Location};

/// One finding, rendered like a rustc diagnostic; its rule id is explained by
/// `archlint explain <id>`.
pub type Diagnostic = lint_report::Diagnostic<Rule>;

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
            .and_then(Location::line_column)
            .unwrap_or((0, 0));
        (
            self.file().to_owned(),
            line,
            column,
            self.rule(),
            self.key.clone(),
        )
    }
}
