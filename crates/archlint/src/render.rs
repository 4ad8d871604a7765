//! Output formats: rustc-style text (lint-report's diagnostics, optionally coloured), JSON,
//! and GitHub workflow annotations; plus the summary line.

use std::io::{self, Write};

use lint_report::{Paint, plural, write_summary};
use serde::Serialize;

use crate::diagnostic::{Diagnostic, Violation};
use crate::{Report, Rule};

pub(crate) fn summary(report: &Report) -> String {
    let total = report.all_violations().len();
    let new = report.violations().count();
    let baselined = total - new;
    let stale = report.stale.len();
    let seconds = format!("{:.2}s", report.elapsed().as_secs_f64());
    let crates = plural(report.workspace().members.len(), "crate", "crates");
    let contexts = plural(report.config().contexts().count(), "context", "contexts");
    if new == 0 && stale == 0 {
        let violations = if baselined == 0 {
            "0 violations".to_owned()
        } else {
            format!("0 new violations ({baselined} baselined)")
        };
        return format!("ok: {crates}, {contexts}, {violations} in {seconds}");
    }
    let mut text = format!(
        "error: {} ({new} new, {baselined} baselined)",
        plural(total, "violation", "violations")
    );
    if stale > 0 {
        text.push_str(&format!(
            ", {}",
            plural(stale, "stale baseline entry", "stale baseline entries")
        ));
    }
    text.push_str(&format!(" in {seconds}"));
    text
}

pub(crate) fn human(out: &mut dyn Write, report: &Report, color: bool) -> io::Result<()> {
    let paint = Paint::new(color);
    for violation in report.violations() {
        violation.diagnostic.write_human(out, paint)?;
    }
    for stale in report.stale_entries() {
        stale.write_human(out, paint)?;
    }
    for file in report.unparsed_files() {
        writeln!(
            out,
            "{} {file} is not valid Rust and was not checked (the compiler says why)",
            paint.warning("warning:")
        )?;
    }
    write_summary(out, &report.summary(), paint)
}

pub(crate) fn human_config(
    out: &mut dyn Write,
    problems: &[Diagnostic],
    color: bool,
) -> io::Result<()> {
    let paint = Paint::new(color);
    for problem in problems {
        problem.write_human(out, paint)?;
    }
    let summary = format!(
        "error: {}; nothing was checked (exit code 2)",
        plural(
            problems.len(),
            "configuration error",
            "configuration errors"
        )
    );
    write_summary(out, &summary, paint)
}

#[derive(Serialize)]
struct JsonSummary {
    crates: usize,
    contexts: usize,
    violations: usize,
    new: usize,
    baselined: usize,
    stale_baseline_entries: usize,
    elapsed_ms: u128,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    ok: bool,
    summary: JsonSummary,
    violations: &'a [Violation],
    stale_baseline_entries: Vec<Diagnostic>,
    /// Files that are not valid Rust, skipped.
    unparsed_files: &'a [String],
}

pub(crate) fn json(out: &mut dyn Write, report: &Report) -> io::Result<()> {
    let total = report.all_violations().len();
    let new = report.violations().count();
    let value = JsonReport {
        ok: report.is_clean(),
        summary: JsonSummary {
            crates: report.workspace().members.len(),
            contexts: report.config().contexts().count(),
            violations: total,
            new,
            baselined: total - new,
            stale_baseline_entries: report.stale.len(),
            elapsed_ms: report.elapsed().as_millis(),
        },
        violations: report.all_violations(),
        stale_baseline_entries: report.stale_entries(),
        unparsed_files: report.unparsed_files(),
    };
    serde_json::to_writer_pretty(&mut *out, &value)?;
    writeln!(out)
}

#[derive(Serialize)]
struct JsonConfigErrors<'a> {
    ok: bool,
    configuration_errors: &'a [Diagnostic],
}

pub(crate) fn json_config(out: &mut dyn Write, problems: &[Diagnostic]) -> io::Result<()> {
    let value = JsonConfigErrors {
        ok: false,
        configuration_errors: problems,
    };
    serde_json::to_writer_pretty(&mut *out, &value)?;
    writeln!(out)
}

/// Escaping of workflow command data (`%`, CR, LF).
fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escaping of workflow command properties (also `:` and `,`).
fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

fn annotation(out: &mut dyn Write, d: &Diagnostic) -> io::Result<()> {
    let mut properties = Vec::new();
    if let Some(location) = &d.location {
        properties.push(format!("file={}", escape_property(&location.file)));
        if let Some((line, column)) = location.line_column() {
            properties.push(format!("line={line}"));
            properties.push(format!("col={column}"));
        }
    }
    properties.push(format!(
        "title={}",
        escape_property(&format!("archlint {}", d.rule))
    ));
    let mut message = d.message.clone();
    for note in &d.notes {
        message.push_str(&format!("\nnote: {note}"));
    }
    if let Some(help) = &d.help {
        message.push_str(&format!("\nhelp: {help}"));
    }
    writeln!(
        out,
        "::error {}::{}",
        properties.join(","),
        escape_data(&message)
    )
}

pub(crate) fn github(out: &mut dyn Write, report: &Report) -> io::Result<()> {
    for violation in report.violations() {
        annotation(out, &violation.diagnostic)?;
    }
    for stale in report.stale_entries() {
        annotation(out, &stale)?;
    }
    writeln!(out, "{}", report.summary())
}

pub(crate) fn github_config(out: &mut dyn Write, problems: &[Diagnostic]) -> io::Result<()> {
    for problem in problems {
        annotation(out, problem)?;
    }
    writeln!(
        out,
        "error: {}; nothing was checked (exit code 2)",
        plural(
            problems.len(),
            "configuration error",
            "configuration errors"
        )
    )
}

/// The list printed by `archlint explain` without an id.
pub fn rule_list() -> String {
    let width = Rule::ALL.iter().map(|r| r.id().len()).max().unwrap_or(0);
    let mut out = String::new();
    for rule in Rule::ALL {
        out.push_str(&format!("{:width$}  {}\n", rule.id(), rule.summary()));
    }
    out
}
