//! The `contracts` command line: `check` and `write` over the library.
//! Exit codes: 0 clean, 1 problems (or a refused write), 2 bad arguments or unreadable files.

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use contracts::{EXIT_ERROR, Report};
use lint_report::cli::ColorArg;

/// Versioned contracts of the shop: the JSON Schemas of its integration events and ports.
#[derive(Debug, Parser)]
#[command(name = "contracts", version)]
struct Cli {
    /// Repository root [default: the workspace containing the current directory]
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<PathBuf>,
    #[command(flatten)]
    color: ColorArg,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Compare every contract with its committed file; exit 0 clean, 1 on problems
    Check,
    /// Write every missing or compatibly changed contract under contracts/; refuses (exit 1)
    /// if a committed contract would change incompatibly
    Write,
}

fn main() -> ExitCode {
    // Usage errors exit with 2 (clap's own convention, and ours).
    let cli = Cli::parse();
    lint_report::cli::exit_code(run(&cli), EXIT_ERROR)
}

fn run(cli: &Cli) -> Result<i32> {
    let root = match &cli.root {
        Some(root) => root.clone(),
        None => workspace_root()?,
    };
    anyhow::ensure!(root.is_dir(), "{} is not a directory", root.display());
    let report: Report = match cli.command {
        Command::Check => contracts::check_workspace(&root)?,
        Command::Write => contracts::write_workspace(&root)?,
    };
    report.write_human(&mut io::stdout().lock(), cli.color.for_stdout())?;
    Ok(report.exit_code())
}

/// The nearest enclosing folder whose `Cargo.toml` has a `[workspace]` table.
fn workspace_root() -> Result<PathBuf> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    cwd.ancestors()
        .find(|dir| {
            std::fs::read_to_string(dir.join("Cargo.toml"))
                .is_ok_and(|text| text.lines().any(|line| line.trim() == "[workspace]"))
        })
        .map(PathBuf::from)
        .with_context(|| format!("no workspace Cargo.toml in {} or above it", cwd.display()))
}
