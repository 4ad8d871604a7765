//! contracts: the versioned wire contracts of the `shop`. The JSON Schema of every integration
//! event and of every context's port (its `-api` DTOs and error enum) is generated from the Rust
//! types, committed under `contracts/`, and checked: a contract that changes so that old and new
//! versions can no longer read each other fails the check, naming the field and why, and asks
//! for a new version instead. See `docs/CONTRACTS.md`.
//!
//! ```no_run
//! let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
//! let report = contracts::check_workspace(&root).expect("the contracts can be read");
//! assert!(report.is_clean(), "{}", report.render_human());
//! ```

pub mod compat;
pub mod completeness;
pub mod contract;
pub mod diagnostic;
pub mod json;
pub mod registry;

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;

pub use compat::{Change, ChangeKind};
pub use contract::{
    Contract, Event, Kind, Pending, PendingKind, Port, Registry, RegistryError, event, port,
};
pub use diagnostic::{Diagnostic, Location, Rule};

use completeness::ScanError;
use lint_report::{Paint, plural, write_summary};

/// Exit code when every contract matches its committed file.
pub const EXIT_OK: i32 = 0;
/// Exit code when there are problems (diagnostics).
pub const EXIT_VIOLATIONS: i32 = 1;
/// Exit code when nothing could be checked: bad arguments, unreadable files, an invalid registry.
pub const EXIT_ERROR: i32 = 2;

/// Why nothing could be checked. Exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Scan(#[from] ScanError),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// How one contract compares with its committed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    UpToDate,
    /// No committed file.
    Missing,
    /// Changed compatibly; `write` may overwrite it.
    Stale(Vec<Change>),
    /// Changed incompatibly; `write` refuses.
    Breaking(Vec<Change>),
    /// The committed file is not JSON; `write` refuses, the file has to be restored.
    Unreadable,
}

/// The outcome of `check` or `write`.
#[derive(Debug, Clone)]
pub struct Report {
    contracts: Vec<(Contract, Status)>,
    diagnostics: Vec<Diagnostic>,
    /// Files `write` wrote.
    written: Vec<String>,
    /// Whether this is the report of `write`.
    wrote: bool,
}

/// Checks the shop's contracts ([`registry::registry`]) against the files under `root`.
pub fn check_workspace(root: &Path) -> Result<Report, Error> {
    check(root, &registry::registry())
}

/// Writes the shop's contracts under `root`, unless one changed incompatibly.
pub fn write_workspace(root: &Path) -> Result<Report, Error> {
    write(root, &registry::registry())
}

/// Generates every contract of `registry` and compares it with the committed file under
/// `root`; also checks that every wire type of the `-api` crates under `root` is registered.
pub fn check(root: &Path, registry: &Registry) -> Result<Report, Error> {
    let contracts = registry.contracts()?;
    let committed = committed_files(root)?;
    let mut diagnostics = Vec::new();
    let mut compared = Vec::new();
    for contract in contracts {
        let file = contract.file();
        let status = match committed.get(&file) {
            None => Status::Missing,
            Some(text) if *text == contract.text() => Status::UpToDate,
            Some(text) => match serde_json::from_str::<serde_json::Value>(text) {
                Err(error) => {
                    diagnostics.push(unreadable(&contract, &error));
                    Status::Unreadable
                }
                Ok(old) => {
                    let changes = compat::compare(&old, &contract.document);
                    if changes.iter().any(|c| c.kind.is_breaking()) {
                        Status::Breaking(changes)
                    } else {
                        Status::Stale(changes)
                    }
                }
            },
        };
        diagnostics.extend(status_diagnostics(&contract, &status));
        compared.push((contract, status));
    }
    for file in committed.keys() {
        if !compared.iter().any(|(c, _)| c.file() == *file) {
            diagnostics.push(orphan(file));
        }
    }
    let found = completeness::scan(root)?;
    let contracts: Vec<Contract> = compared.iter().map(|(c, _)| c.clone()).collect();
    diagnostics.extend(completeness::check(&found, registry, &contracts));
    diagnostics.sort_by_key(diagnostic::sort_key);
    Ok(Report {
        contracts: compared,
        diagnostics,
        written: Vec::new(),
        wrote: false,
    })
}

/// [`check`], then writes every missing or stale contract, unless a contract changed
/// incompatibly or a committed file is unreadable: then nothing is written and the report
/// says why. Problems `write` cannot fix (orphans, unregistered types) stay in the report.
pub fn write(root: &Path, registry: &Registry) -> Result<Report, Error> {
    let mut report = check(root, registry)?;
    report.wrote = true;
    if report.refuses_to_write() {
        return Ok(report);
    }
    for (contract, status) in &mut report.contracts {
        if !matches!(status, Status::Missing | Status::Stale(_)) {
            continue;
        }
        let file = contract.file();
        let path = root.join(&file);
        let io_error = |source| Error::Write {
            path: file.clone(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io_error)?;
        }
        std::fs::write(&path, contract.text()).map_err(io_error)?;
        report.written.push(file);
        *status = Status::UpToDate;
    }
    report
        .diagnostics
        .retain(|d| !matches!(d.rule, Rule::UncommittedContract | Rule::StaleContract));
    Ok(report)
}

/// Every `*.json` under `contracts/events` and `contracts/ports`, by relative path.
fn committed_files(root: &Path) -> Result<BTreeMap<String, String>, Error> {
    let mut files = BTreeMap::new();
    for folder in ["events", "ports"] {
        let relative_dir = format!("{}/{folder}", contract::DIR);
        let entries = match std::fs::read_dir(root.join(&relative_dir)) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(Error::Read {
                    path: relative_dir,
                    source,
                });
            }
        };
        for entry in entries {
            let entry = entry.map_err(|source| Error::Read {
                path: relative_dir.clone(),
                source,
            })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".json") || !entry.path().is_file() {
                continue;
            }
            let file = format!("{relative_dir}/{name}");
            let text = std::fs::read_to_string(entry.path()).map_err(|source| Error::Read {
                path: file.clone(),
                source,
            })?;
            files.insert(file, text);
        }
    }
    Ok(files)
}

const WRITE: &str = "run `cargo run -p contracts -- write` and commit the file";

fn status_diagnostics(contract: &Contract, status: &Status) -> Vec<Diagnostic> {
    let at = || Location::file(contract.file());
    let name = &contract.name;
    match status {
        Status::UpToDate | Status::Unreadable => Vec::new(),
        Status::Missing => vec![
            Diagnostic::new(
                Rule::UncommittedContract,
                format!("`{name}` is not committed"),
            )
            .at(at())
            .help(WRITE),
        ],
        Status::Stale(changes) => {
            let mut diagnostic = Diagnostic::new(
                Rule::StaleContract,
                format!("`{name}` is stale: it changed compatibly since it was written"),
            )
            .at(at());
            for change in changes {
                diagnostic = diagnostic.note(change.to_string());
            }
            if changes.is_empty() {
                diagnostic =
                    diagnostic.note("no change a reader can see (descriptions, examples or order)");
            }
            vec![diagnostic.help(WRITE)]
        }
        Status::Breaking(changes) => {
            let next = contract.next_version();
            let successor = match contract.kind {
                Kind::Event => "every consumer has moved",
                Kind::Port => "every caller has moved",
            };
            changes
                .iter()
                .filter(|c| c.kind.is_breaking())
                .map(|change| {
                    Diagnostic::new(
                        Rule::BreakingChange,
                        format!(
                            "`{}` in `{name}`: {}",
                            change.path,
                            change.kind.describe()
                        ),
                    )
                    .at(at())
                    .note(format!("breaking: {}", change.kind.why()))
                    .help(format!(
                        "keep `{name}` as committed and publish the change as a new version, `{next}`, beside it until {successor} (docs/CONTRACTS.md)"
                    ))
                })
                .collect()
        }
    }
}

fn unreadable(contract: &Contract, error: &serde_json::Error) -> Diagnostic {
    Diagnostic::new(
        Rule::UnreadableContract,
        format!(
            "the committed file of `{}` is not valid JSON: {error}",
            contract.name
        ),
    )
    .at(Location::file(contract.file()))
    .note("without the committed version, compatibility cannot be judged, so `write` will not replace it")
    .help("restore the file from version control")
}

fn orphan(file: &str) -> Diagnostic {
    let name = file
        .rsplit('/')
        .next()
        .and_then(|n| n.strip_suffix(".json"))
        .unwrap_or(file);
    Diagnostic::new(
        Rule::OrphanContract,
        format!("`{name}` is committed, but no registered type produces it"),
    )
    .at(Location::file(file))
    .note("its type was removed, its contract renamed, or its registration dropped")
    .help(format!(
        "if `{name}` is retired on purpose, once nothing reads or writes it any more, delete the file; otherwise register its type again in crates/contracts/src/registry.rs"
    ))
}

impl Report {
    /// Every generated contract with how it compares.
    pub fn contracts(&self) -> &[(Contract, Status)] {
        &self.contracts
    }

    /// Every problem, in a stable order.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }

    /// The files `write` wrote.
    pub fn written(&self) -> &[String] {
        &self.written
    }

    pub fn is_clean(&self) -> bool {
        self.diagnostics.is_empty()
    }

    pub fn exit_code(&self) -> i32 {
        if self.is_clean() {
            EXIT_OK
        } else {
            EXIT_VIOLATIONS
        }
    }

    /// Whether `write` must leave every file alone.
    fn refuses_to_write(&self) -> bool {
        self.contracts
            .iter()
            .any(|(_, s)| matches!(s, Status::Breaking(_) | Status::Unreadable))
    }

    /// The closing line.
    pub fn summary(&self) -> String {
        let count = |kind| {
            self.contracts
                .iter()
                .filter(|(c, _)| c.kind == kind)
                .count()
        };
        let (events, ports) = (count(Kind::Event), count(Kind::Port));
        let contracts = format!(
            "{} ({}, {})",
            plural(events + ports, "contract", "contracts"),
            plural(events, "event", "events"),
            plural(ports, "port", "ports")
        );
        let problems = plural(self.diagnostics.len(), "problem", "problems");
        match (self.wrote, self.is_clean()) {
            (false, true) => format!("ok: {contracts} match their committed files"),
            (false, false) => format!("error: {problems} in {contracts}"),
            (true, _) if self.refuses_to_write() => format!(
                "error: {problems} in {contracts}; nothing was written, because a committed contract would change incompatibly or cannot be read"
            ),
            (true, clean) => {
                let head = if clean { "ok" } else { "error" };
                let mut text = format!(
                    "{head}: {contracts}, {} written",
                    plural(self.written.len(), "file", "files")
                );
                if !clean {
                    text.push_str(&format!("; {problems} left that `write` does not fix"));
                }
                text
            }
        }
    }

    /// The diagnostics, the files written and the summary, coloured if `color`.
    pub fn write_human(&self, out: &mut dyn Write, color: bool) -> io::Result<()> {
        let paint = Paint::new(color);
        for diagnostic in &self.diagnostics {
            diagnostic.write_human(out, paint)?;
        }
        for file in &self.written {
            writeln!(out, "wrote {file}")?;
        }
        write_summary(out, &self.summary(), paint)
    }

    /// [`Report::write_human`] without colour, as a string.
    pub fn render_human(&self) -> String {
        let mut out = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = self.write_human(&mut out, false);
        String::from_utf8_lossy(&out).into_owned()
    }
}
