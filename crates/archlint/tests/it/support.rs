//! Helpers shared by the tests: fixture paths, running checks, running the binary, and making
//! output independent of timing.

use std::path::{Path, PathBuf};
use std::process::Command;

use archlint::{CheckOptions, ConfigError, Report};

/// The fixture workspace `name`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Checks a fixture (with its baseline, if it has one).
pub fn check(name: &str) -> Report {
    archlint::check_workspace(&fixture(name))
        .unwrap_or_else(|error| panic!("{name}: {}", error.render_human()))
}

/// Checks a fixture that must have configuration errors.
pub fn config_error(name: &str) -> ConfigError {
    match archlint::check_workspace_with(&fixture(name), &CheckOptions::default()) {
        Ok(report) => panic!("{name} should not be valid:\n{}", report.render_human()),
        Err(error) => error,
    }
}

/// Replaces the run time at the end of the summary line (` in 0.04s`) so output is stable.
pub fn redact_timing(text: &str) -> String {
    text.lines()
        .map(|line| match line.rfind(" in ") {
            Some(at)
                if (line.starts_with("ok: ") || line.starts_with("error: "))
                    && line.ends_with('s')
                    && line[at + 4..line.len() - 1]
                        .chars()
                        .all(|c| c.is_ascii_digit() || c == '.') =>
            {
                format!("{} in [time]", &line[..at])
            }
            _ => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// The human rendering of a report, with the timing redacted.
pub fn human(report: &Report) -> String {
    redact_timing(&report.render_human())
}

/// What running the binary produced.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `archlint --color never <args>` in `dir`.
pub fn run_in(dir: &Path, args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_archlint"))
        .arg("--color")
        .arg("never")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("archlint runs");
    Output {
        code: output.status.code().expect("archlint exits normally"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs `archlint --color never <args>` inside the fixture `name` (so its root is found).
pub fn run(name: &str, args: &[&str]) -> Output {
    run_in(&fixture(name), args)
}

/// A scratch copy of a fixture, for tests that write files.
pub fn copy_fixture(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary directory");
    let source = fixture(name);
    for entry in walkdir::WalkDir::new(&source) {
        let entry = entry.expect("fixture is readable");
        let target = dir
            .path()
            .join(entry.path().strip_prefix(&source).expect("inside"));
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).expect("create folder");
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
    dir
}
