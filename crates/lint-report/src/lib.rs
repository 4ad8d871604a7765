//! lint-report: the rustc-style diagnostics of the workspace's tooling (`archlint`,
//! `contracts`). A [`Diagnostic`] is a rule, a one-line message, an optional [`Location`]
//! (with the text of its line, so rendering never re-reads files), a label for the
//! underline, `= note:` lines and a `= help:` line; [`Diagnostic::write_human`] renders it,
//! coloured or not, and [`write_summary`] prints the line that closes a report.
//!
//! The rules stay in each tool: `Diagnostic<R>` takes the tool's rule type, whose `Display`
//! is the stable id printed in `error[<id>]` (and whose `Serialize`, where the tool prints
//! JSON, gives its `rule` field).
//!
//! The format is the tools' interface (snapshots, CI logs, scripts), so it is written here
//! rather than with `annotate-snippets` or `codespan-reporting`: neither prints it as it is
//! (other ANSI codes, no closing gutter line without notes, another layout for a whole file
//! and for a diagnostic without a place).
//!
//! ```
//! use lint_report::{Diagnostic, Location, Paint};
//!
//! let text = "[package]\nname = \"extras\"\n";
//! let start = text.find("name").unwrap();
//! let diagnostic = Diagnostic::new("unclassified-member", "`extras` has no role")
//!     .at(Location::from_span("Cargo.toml", text, start..start + 4))
//!     .label("not in arch.toml")
//!     .help("give it a role in arch.toml");
//! let mut out = Vec::new();
//! diagnostic.write_human(&mut out, Paint::new(false)).unwrap();
//! assert_eq!(String::from_utf8(out).unwrap(), diagnostic.render_human());
//! ```
//!
//! Both give (followed by a blank line, which separates diagnostics):
//!
//! ```text
//! error[unclassified-member]: `extras` has no role
//!  --> Cargo.toml:2:1
//!   |
//! 2 | name = "extras"
//!   | ^^^^ not in arch.toml
//!   |
//!   = help: give it a role in arch.toml
//! ```

pub mod cli;
mod diagnostic;
mod render;

pub use diagnostic::{Diagnostic, Line, Location};
pub use render::{Paint, plural, write_summary};
