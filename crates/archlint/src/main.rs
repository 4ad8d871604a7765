//! The `archlint` command line: `check`, `explain` and `graph` over the library.
//! Exit codes: 0 clean, 1 violations (or a stale baseline entry or graph), 2 configuration error.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use archlint::graph::{self, Format};
use archlint::{BaselineChoice, CheckOptions, EXIT_CONFIG, EXIT_OK, EXIT_VIOLATIONS, Report};
use clap::{Args, Parser, Subcommand, ValueEnum};
use lint_report::cli::ColorArg;

/// Architecture lint of the shop workspace: checks the crates against `arch.toml`.
#[derive(Debug, Parser)]
#[command(name = "archlint", version)]
struct Cli {
    /// Workspace root [default: the workspace containing the current directory]
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<PathBuf>,
    #[command(flatten)]
    color: ColorArg,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check the workspace; exit 0 clean, 1 on violations, 2 on a configuration error
    Check(CheckArgs),
    /// Explain a rule (why, an example, how to fix); without an id, list the rules
    Explain {
        /// A rule id, such as `undeclared-context-edge`
        id: Option<String>,
    },
    /// Draw the contexts, their crates and edges, with violations in red
    Graph(GraphArgs),
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// Output format (`baseline` prints entries for the new violations, to paste)
    #[arg(long, value_enum, default_value_t = CheckFormat::Human)]
    format: CheckFormat,
    /// Baseline file [default: arch-baseline.toml at the workspace root, if present]
    #[arg(long, value_name = "FILE", conflicts_with = "no_baseline")]
    baseline: Option<PathBuf>,
    /// Ignore the baseline: report every violation
    #[arg(long)]
    no_baseline: bool,
    /// Remove stale entries from the baseline (never adds any)
    #[arg(long, conflicts_with = "no_baseline")]
    update_baseline: bool,
}

#[derive(Debug, Args)]
struct GraphArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
    format: GraphFormat,
    /// Replace the block between the archlint:graph markers of this Markdown file
    #[arg(long, value_name = "FILE", conflicts_with = "check")]
    write: Option<PathBuf>,
    /// Exit 1 if the block between the markers of this Markdown file is out of date
    #[arg(long, value_name = "FILE")]
    check: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CheckFormat {
    Human,
    Json,
    Github,
    Baseline,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum GraphFormat {
    Mermaid,
    Dot,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    lint_report::cli::exit_code(run(&cli), EXIT_CONFIG)
}

fn run(cli: &Cli) -> Result<i32> {
    let color = cli.color.for_stdout();
    match &cli.command {
        Command::Explain { id } => explain(id.as_deref()),
        Command::Check(args) => check(&root(cli)?, args, color),
        Command::Graph(args) => graph(&root(cli)?, args, color),
    }
}

/// `--root`, or the nearest enclosing folder whose `Cargo.toml` has a `[workspace]` table.
fn root(cli: &Cli) -> Result<PathBuf> {
    if let Some(root) = &cli.root {
        return Ok(root.clone());
    }
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let mut nearest = None;
    for dir in cwd.ancestors() {
        let manifest = dir.join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        nearest.get_or_insert_with(|| dir.to_path_buf());
        let is_root =
            toml::from_str::<toml::Table>(&text).is_ok_and(|t| t.contains_key("workspace"));
        if is_root {
            return Ok(dir.to_path_buf());
        }
    }
    nearest.with_context(|| format!("no Cargo.toml in {} or above it", cwd.display()))
}

fn explain(id: Option<&str>) -> Result<i32> {
    let mut out = io::stdout().lock();
    match id {
        None => {
            writeln!(out, "Rules (`archlint explain <id>` for details):\n")?;
            write!(out, "{}", archlint::rule_list())?;
            Ok(EXIT_OK)
        }
        Some(id) => match archlint::explain(id) {
            Some(text) => {
                write!(out, "{text}")?;
                Ok(EXIT_OK)
            }
            None => bail!("unknown rule `{id}` (run `archlint explain` for the list)"),
        },
    }
}

/// Runs the check. Configuration errors are printed in the requested format and give `None`
/// (exit code 2).
fn load(
    root: &Path,
    options: &CheckOptions,
    format: CheckFormat,
    color: bool,
) -> Result<Option<Report>> {
    match archlint::check_workspace_with(root, options) {
        Ok(report) => Ok(Some(report)),
        Err(error) => {
            let mut out = io::stdout().lock();
            match format {
                CheckFormat::Json => error.write_json(&mut out)?,
                CheckFormat::Github => error.write_github(&mut out)?,
                CheckFormat::Human | CheckFormat::Baseline => error.write_human(&mut out, color)?,
            }
            Ok(None)
        }
    }
}

fn check(root: &Path, args: &CheckArgs, color: bool) -> Result<i32> {
    let baseline = match (&args.baseline, args.no_baseline) {
        (_, true) => BaselineChoice::Ignore,
        (Some(path), false) => BaselineChoice::File(path.clone()),
        (None, false) => BaselineChoice::Default,
    };
    let options = CheckOptions { baseline };
    let Some(mut report) = load(root, &options, args.format, color)? else {
        return Ok(EXIT_CONFIG);
    };
    if args.update_baseline {
        update_baseline(&mut report, args.baseline.as_deref())?;
    }
    let mut out = io::stdout().lock();
    match args.format {
        CheckFormat::Human => report.write_human(&mut out, color)?,
        CheckFormat::Json => report.write_json(&mut out)?,
        CheckFormat::Github => report.write_github(&mut out)?,
        CheckFormat::Baseline => {
            let entries = report.baseline_entries();
            if entries.is_empty() {
                writeln!(out, "# no new violations: nothing to add to the baseline")?;
            } else {
                writeln!(
                    out,
                    "# Paste into {} and replace each TODO with the reason.",
                    archlint::baseline::FILE_NAME
                )?;
                write!(out, "{entries}")?;
            }
        }
    }
    Ok(report.exit_code())
}

fn update_baseline(report: &mut Report, explicit: Option<&Path>) -> Result<()> {
    let Some(text) = report.shrunk_baseline() else {
        return Ok(());
    };
    let path = match explicit {
        Some(path) => path.to_path_buf(),
        None => report.workspace().root.join(archlint::baseline::FILE_NAME),
    };
    let removed = report.stale_entries().len();
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(
        io::stderr(),
        "removed {removed} stale entr{} from {}",
        if removed == 1 { "y" } else { "ies" },
        path.display()
    )?;
    report.mark_baseline_shrunk();
    Ok(())
}

fn graph(root: &Path, args: &GraphArgs, color: bool) -> Result<i32> {
    let Some(report) = load(root, &CheckOptions::default(), CheckFormat::Human, color)? else {
        return Ok(EXIT_CONFIG);
    };
    let format = match args.format {
        GraphFormat::Mermaid => Format::Mermaid,
        GraphFormat::Dot => Format::Dot,
    };
    let text = graph::render(&report, format);
    let mut out = io::stdout().lock();
    let Some(path) = args.write.as_ref().or(args.check.as_ref()) else {
        write!(out, "{text}")?;
        return Ok(EXIT_OK);
    };
    let shown = path.display();
    let document = std::fs::read_to_string(path).with_context(|| format!("cannot read {shown}"))?;
    let updated = graph::replace_block(&document, &text, format)
        .with_context(|| format!("{shown} cannot hold the graph"))?;
    if args.write.is_some() {
        if updated == document {
            writeln!(out, "{shown} is up to date")?;
        } else {
            std::fs::write(path, &updated).with_context(|| format!("cannot write {shown}"))?;
            writeln!(out, "updated the graph in {shown}")?;
        }
        return Ok(EXIT_OK);
    }
    if updated == document {
        writeln!(out, "ok: {shown} is up to date")?;
        Ok(EXIT_OK)
    } else {
        writeln!(
            out,
            "error: {shown} is stale: run `cargo run -p archlint -- graph --write {shown}`"
        )?;
        Ok(EXIT_VIOLATIONS)
    }
}
