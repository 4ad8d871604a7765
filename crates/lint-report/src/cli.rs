//! What the tools' command lines share: the `--color` option and how `main` ends.

use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;

/// The global `--color` option: `#[command(flatten)]` it into a tool's `Parser`, so every
/// tool spells and documents it the same way.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct ColorArg {
    /// When to colour the output
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

/// When to colour the output (`--color auto|always|never`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

impl ColorArg {
    /// Whether to colour standard output: `auto` colours only a terminal.
    pub fn for_stdout(self) -> bool {
        match self.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => io::stdout().is_terminal(),
        }
    }
}

/// The process exit code for what a tool's `run` returned: its code, or `on_error` after
/// printing `error: ` and the error with its causes (`{:#}`, as `anyhow` prints them) to
/// standard error.
pub fn exit_code<E: fmt::Display>(result: Result<i32, E>, on_error: i32) -> ExitCode {
    let code = match result {
        Ok(code) => code,
        Err(error) => {
            let _ = writeln!(io::stderr(), "error: {error:#}");
            on_error
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX))
}
