//! archlint: the architecture lint of the `shop` workspace. It reads `arch.toml` at the
//! workspace root (contexts, crate roles, allowed edges), `cargo metadata --no-deps` and the
//! crates' Rust sources, and reports every broken rule as a rustc-style diagnostic.
//!
//! ```no_run
//! let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
//! let report = archlint::check_workspace(&root).expect("arch.toml is valid");
//! assert!(report.is_clean(), "{}", report.render_human());
//! ```

pub mod baseline;
pub mod config;
mod cycles;
mod data;
mod deps;
pub mod diagnostic;
mod escapes;
pub mod graph;
mod ports;
mod render;
pub mod rules;
pub mod source;
pub mod sql;
pub mod workspace;

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use baseline::Baseline;
pub use config::{ArchConfig, Role};
pub use cycles::ContextGraph;
pub use diagnostic::{Diagnostic, Location, Violation};
pub use render::rule_list;
pub use rules::Rule;
pub use workspace::Workspace;

use baseline::BaselineError;
use config::ConfigFileError;
use workspace::WorkspaceError;

/// Exit code for a clean check.
pub const EXIT_OK: i32 = 0;
/// Exit code when there are violations (or stale baseline entries, or a stale graph).
pub const EXIT_VIOLATIONS: i32 = 1;
/// Exit code when the configuration (or the workspace) cannot be read.
pub const EXIT_CONFIG: i32 = 2;

/// Why nothing could be checked: the configuration is malformed or does not describe the
/// workspace, or Cargo could not read the workspace. Exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{} configuration error(s)", .0.len())]
    Invalid(Vec<Diagnostic>),
}

impl From<ConfigFileError> for ConfigError {
    fn from(error: ConfigFileError) -> Self {
        match error {
            ConfigFileError::Read { path, source } => ConfigError::Read { path, source },
            ConfigFileError::Invalid(problems) => ConfigError::Invalid(problems),
        }
    }
}

impl From<BaselineError> for ConfigError {
    fn from(error: BaselineError) -> Self {
        match error {
            BaselineError::Read { path, source } => ConfigError::Read { path, source },
            BaselineError::Invalid(problems) => ConfigError::Invalid(problems),
        }
    }
}

impl ConfigError {
    /// The errors as diagnostics (errors without a place in a file get none).
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        match self {
            ConfigError::Invalid(problems) => problems.clone(),
            other => {
                let mut diagnostic = Diagnostic::new(Rule::InvalidConfig, other.to_string());
                let mut source = std::error::Error::source(other);
                while let Some(cause) = source {
                    diagnostic = diagnostic.note(cause.to_string().trim_end().to_owned());
                    source = cause.source();
                }
                vec![diagnostic]
            }
        }
    }

    /// rustc-style text, coloured if `color`.
    pub fn write_human(&self, out: &mut dyn Write, color: bool) -> io::Result<()> {
        render::human_config(out, &self.diagnostics(), color)
    }

    pub fn render_human(&self) -> String {
        let mut out = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = self.write_human(&mut out, false);
        String::from_utf8_lossy(&out).into_owned()
    }

    pub fn write_json(&self, out: &mut dyn Write) -> io::Result<()> {
        render::json_config(out, &self.diagnostics())
    }

    pub fn write_github(&self, out: &mut dyn Write) -> io::Result<()> {
        render::github_config(out, &self.diagnostics())
    }
}

/// Which baseline a check uses.
#[derive(Debug, Clone, Default)]
pub enum BaselineChoice {
    /// `<root>/arch-baseline.toml` if it exists.
    #[default]
    Default,
    /// This file (which may not exist yet: then nothing is baselined).
    File(PathBuf),
    /// None: every violation counts.
    Ignore,
}

/// Options of [`check_workspace_with`].
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    pub baseline: BaselineChoice,
}

/// The outcome of a check.
#[derive(Debug, Clone)]
pub struct Report {
    config: ArchConfig,
    workspace: Workspace,
    graph: ContextGraph,
    /// Every violation, sorted, baselined ones marked.
    violations: Vec<Violation>,
    baseline: Option<Baseline>,
    /// Indices into the baseline's entries.
    stale: Vec<usize>,
    /// Files `syn` could not parse.
    unparsed: Vec<String>,
    elapsed: Duration,
}

/// Checks the workspace at `root` against its `arch.toml`, using `arch-baseline.toml` if present.
pub fn check_workspace(root: &Path) -> Result<Report, ConfigError> {
    check_workspace_with(root, &CheckOptions::default())
}

/// [`check_workspace`] with options.
pub fn check_workspace_with(root: &Path, options: &CheckOptions) -> Result<Report, ConfigError> {
    let started = Instant::now();
    let workspace = Workspace::load(root)?;
    let config = ArchConfig::load(&workspace.root)?;
    classify(&config, &workspace)?;
    let baseline = match &options.baseline {
        BaselineChoice::Default => {
            let path = workspace.root.join(baseline::FILE_NAME);
            Baseline::load(&path, baseline::FILE_NAME)?
        }
        BaselineChoice::File(path) => {
            let display = workspace::relative(&workspace.root, path);
            Baseline::load(path, &display)?
        }
        BaselineChoice::Ignore => None,
    };

    let graph = ContextGraph::build(&config, &workspace);
    unused_edges(&config, &workspace, &graph)?;
    let mut violations = Vec::new();
    deps::check(&config, &workspace, &mut violations);
    cycles::check(&graph, &config, &mut violations);

    let sources = scan_sources(&workspace)?;
    let mut context_crates = Vec::new();
    let mut unparsed = Vec::new();
    for (member, crate_sources) in workspace.members.iter().zip(&sources) {
        escapes::check_paths(&workspace, member, crate_sources, &mut violations);
        escapes::check_reexports(&config, member, crate_sources, &mut violations);
        ports::check(&config, member, crate_sources, &mut violations);
        unparsed.extend(crate_sources.unparsed.iter().cloned());
        if let Some(decl) = config.krate(&member.name).filter(|d| d.context.is_some()) {
            context_crates.push(data::ContextCrate {
                decl,
                sources: crate_sources,
            });
        }
    }
    data::check(&config, &context_crates, &mut violations);

    violations.sort_by_key(Violation::sort_key);
    let stale = baseline
        .as_ref()
        .map(|b| b.apply(&mut violations))
        .unwrap_or_default();
    Ok(Report {
        config,
        workspace,
        graph,
        violations,
        baseline,
        stale,
        unparsed,
        elapsed: started.elapsed(),
    })
}

/// Parses every member's sources, on as many threads as there are cores (parsing dominates the
/// run time).
fn scan_sources(workspace: &Workspace) -> Result<Vec<source::CrateSources>, ConfigError> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let chunk = workspace.members.len().div_ceil(threads).max(1);
    let results: Vec<io::Result<source::CrateSources>> = std::thread::scope(|scope| {
        let handles: Vec<_> = workspace
            .members
            .chunks(chunk)
            .map(|members| {
                scope.spawn(move || {
                    members
                        .iter()
                        .map(|m| source::scan_crate(&workspace.root, &m.dir))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    results
        .into_iter()
        .zip(&workspace.members)
        .map(|(result, member)| {
            result.map_err(|source| ConfigError::Read {
                path: workspace::relative(&workspace.root, &member.dir),
                source,
            })
        })
        .collect()
}

/// Every member is declared and every declared crate is a member.
fn classify(config: &ArchConfig, workspace: &Workspace) -> Result<(), ConfigError> {
    let mut problems = Vec::new();
    for member in &workspace.members {
        if config.krate(&member.name).is_some() {
            continue;
        }
        problems.push(
            Diagnostic::new(
                Rule::UnclassifiedMember,
                format!(
                    "workspace member `{}` is not classified in arch.toml",
                    member.name
                ),
            )
            .at(member.name_location.clone())
            .label("not in arch.toml")
            .note("every member needs a role, so the dependency rules know what it may use")
            .help(suggest_role(config, &member.name)),
        );
    }
    for decl in config.crates() {
        if workspace.member(&decl.name).is_some() {
            continue;
        }
        problems.push(
            Diagnostic::new(
                Rule::UnusedEntry,
                format!("arch.toml names `{}`, which is not a workspace member", decl.name),
            )
            .at(config.location(decl.span.clone()))
            .label(format!("declared as {}", decl.describe()))
            .help("remove the entry (or comment it out until the crate exists), or fix the name to match the package name"),
        );
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ConfigError::Invalid(problems))
    }
}

/// Every declared edge is used by at least one dependency. The context map is drawn from the
/// declared edges, so an edge nothing uses any more would make the picture (and the reasons
/// in it) lie about the system.
fn unused_edges(
    config: &ArchConfig,
    workspace: &Workspace,
    graph: &ContextGraph,
) -> Result<(), ConfigError> {
    let mut problems = Vec::new();
    for edge in graph.edges.values() {
        let Some(declared) = edge.declared.as_ref().filter(|_| edge.actual.is_empty()) else {
            continue;
        };
        problems.push(
            Diagnostic::new(
                Rule::UnusedEntry,
                format!(
                    "arch.toml declares the edge {} -> {}, but no crate of `{}` depends on a crate of `{}`",
                    edge.from, edge.to, edge.from, edge.to
                ),
            )
            .at(config.location(declared.span.clone()))
            .label("unused edge")
            .note(format!("reason given: \"{}\"", declared.reason))
            .help("remove the edge from arch.toml (the dependency it allowed is gone), or restore the dependency"),
        );
    }
    for declared in config.infrastructure_edges() {
        let used = workspace
            .member(&declared.from)
            .is_some_and(|member| member.dependencies.iter().any(|d| d.name == declared.to));
        if used {
            continue;
        }
        problems.push(
            Diagnostic::new(
                Rule::UnusedEntry,
                format!(
                    "arch.toml declares the infrastructure edge {} -> {}, but `{}` does not depend on `{}`",
                    declared.from, declared.to, declared.from, declared.to
                ),
            )
            .at(config.location(declared.span.clone()))
            .label("unused edge")
            .note(format!("reason given: \"{}\"", declared.reason))
            .help("remove the edge from arch.toml (the dependency it allowed is gone), or restore the dependency"),
        );
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ConfigError::Invalid(problems))
    }
}

/// A help line naming where an unclassified member probably belongs, by naming convention.
fn suggest_role(config: &ArchConfig, name: &str) -> String {
    let by_suffix = |suffix: &str| {
        name.strip_suffix(suffix)
            .filter(|ctx| config.context(ctx).is_some())
    };
    if let Some(context) = by_suffix("-api") {
        return format!("add `api = \"{name}\"` to `[contexts.{context}]` in arch.toml");
    }
    if let Some(context) = by_suffix("-migrations") {
        return format!("add `migrations = \"{name}\"` to `[contexts.{context}]` in arch.toml");
    }
    if config.context(name).is_some() {
        return format!("add `implementation = \"{name}\"` to `[contexts.{name}]` in arch.toml");
    }
    format!(
        "add `{name}` to a context (`api`, `implementation`, `migrations`) or to `[shared]` (`kernel`, `infrastructure`, `composition_root`, `tooling`) in arch.toml"
    )
}

impl Report {
    /// The violations that fail the check (not accepted by the baseline).
    pub fn violations(&self) -> impl Iterator<Item = &Violation> {
        self.violations.iter().filter(|v| !v.baselined)
    }

    /// Every violation, baselined ones included (marked).
    pub fn all_violations(&self) -> &[Violation] {
        &self.violations
    }

    /// `stale-baseline-entry` diagnostics.
    pub fn stale_entries(&self) -> Vec<Diagnostic> {
        match &self.baseline {
            Some(baseline) => self
                .stale
                .iter()
                .map(|&i| baseline.stale_diagnostic(i))
                .collect(),
            None => Vec::new(),
        }
    }

    /// No new violation and no stale baseline entry.
    pub fn is_clean(&self) -> bool {
        self.violations().next().is_none() && self.stale.is_empty()
    }

    pub fn exit_code(&self) -> i32 {
        if self.is_clean() {
            EXIT_OK
        } else {
            EXIT_VIOLATIONS
        }
    }

    pub fn config(&self) -> &ArchConfig {
        &self.config
    }

    pub fn workspace(&self) -> &Workspace {
        &self.workspace
    }

    pub fn context_graph(&self) -> &ContextGraph {
        &self.graph
    }

    pub fn baseline(&self) -> Option<&Baseline> {
        self.baseline.as_ref()
    }

    /// Files that are not valid Rust (skipped; the compiler reports them).
    pub fn unparsed_files(&self) -> &[String] {
        &self.unparsed
    }

    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// The closing line: `ok: 17 crates, 5 contexts, 0 violations in 0.12s` or
    /// `error: 3 violations (2 new, 1 baselined) in 0.12s`.
    pub fn summary(&self) -> String {
        render::summary(self)
    }

    /// rustc-style diagnostics and the summary, coloured if `color`.
    pub fn write_human(&self, out: &mut dyn Write, color: bool) -> io::Result<()> {
        render::human(out, self, color)
    }

    /// [`Report::write_human`] without colour, as a string.
    pub fn render_human(&self) -> String {
        let mut out = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = self.write_human(&mut out, false);
        String::from_utf8_lossy(&out).into_owned()
    }

    pub fn write_json(&self, out: &mut dyn Write) -> io::Result<()> {
        render::json(out, self)
    }

    /// GitHub workflow annotations (`::error file=..,line=..,col=..,title=..::..`).
    pub fn write_github(&self, out: &mut dyn Write) -> io::Result<()> {
        render::github(out, self)
    }

    /// Baseline entries for every new violation, to paste into `arch-baseline.toml`.
    pub fn baseline_entries(&self) -> String {
        baseline::entries_for(&self.violations)
    }

    /// The baseline text without its stale entries, if there are any to remove.
    pub fn shrunk_baseline(&self) -> Option<String> {
        let baseline = self.baseline.as_ref()?;
        (!self.stale.is_empty()).then(|| baseline.without(&self.stale))
    }

    /// Forgets the stale entries once the caller has written [`Report::shrunk_baseline`].
    pub fn mark_baseline_shrunk(&mut self) {
        if let Some(baseline) = &self.baseline
            && let Ok(shrunk) = Baseline::parse(&baseline.display, baseline.without(&self.stale))
        {
            self.baseline = Some(shrunk);
            self.stale.clear();
        }
    }
}

/// The long explanation of the rule `id`, if it exists.
pub fn explain(id: &str) -> Option<&'static str> {
    id.parse::<Rule>().ok().map(Rule::explanation)
}
