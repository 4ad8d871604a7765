//! Output formats: rustc-style text (optionally coloured), JSON, and GitHub workflow
//! annotations; plus the summary line.

use std::io::{self, Write};

use serde::Serialize;

use crate::diagnostic::{Diagnostic, Violation};
use crate::{Report, Rule};

/// ANSI styles, or nothing when colour is off.
#[derive(Clone, Copy)]
struct Paint {
    on: bool,
}

impl Paint {
    fn wrap(self, code: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    fn error(self, text: &str) -> String {
        self.wrap("1;31", text)
    }

    fn ok(self, text: &str) -> String {
        self.wrap("1;32", text)
    }

    fn bold(self, text: &str) -> String {
        self.wrap("1", text)
    }

    fn gutter(self, text: &str) -> String {
        self.wrap("1;34", text)
    }
}

fn diagnostic(out: &mut dyn Write, d: &Diagnostic, paint: Paint) -> io::Result<()> {
    writeln!(
        out,
        "{}{}",
        paint.error(&format!("error[{}]", d.rule)),
        paint.bold(&format!(": {}", d.message))
    )?;
    let Some(location) = &d.location else {
        for note in &d.notes {
            writeln!(out, "{} {note}", paint.gutter("= note:"))?;
        }
        if let Some(help) = &d.help {
            writeln!(out, "{} {help}", paint.gutter("= help:"))?;
        }
        return writeln!(out);
    };
    let number = location.line.to_string();
    let pad = " ".repeat(number.len());
    writeln!(
        out,
        "{pad}{} {}:{}:{}",
        paint.gutter("-->"),
        location.file,
        location.line,
        location.column
    )?;
    writeln!(out, "{pad} {}", paint.gutter("|"))?;
    // Tabs would shift the carets; show them as single spaces.
    let source = location.source_line.replace('\t', " ");
    writeln!(
        out,
        "{} {} {source}",
        paint.gutter(&number),
        paint.gutter("|")
    )?;
    let carets = paint.error(&format!(
        "{}{}",
        "^".repeat(location.width.max(1)),
        d.label
            .as_ref()
            .map_or_else(String::new, |l| format!(" {l}"))
    ));
    writeln!(
        out,
        "{pad} {} {}{carets}",
        paint.gutter("|"),
        " ".repeat(location.column.saturating_sub(1))
    )?;
    writeln!(out, "{pad} {}", paint.gutter("|"))?;
    for note in &d.notes {
        writeln!(out, "{pad} {} {note}", paint.bold("= note:"))?;
    }
    if let Some(help) = &d.help {
        writeln!(out, "{pad} {} {help}", paint.bold("= help:"))?;
    }
    writeln!(out)
}

fn plural(count: usize, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

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

fn write_summary(out: &mut dyn Write, summary: &str, paint: Paint) -> io::Result<()> {
    match summary.split_once(':') {
        Some(("ok", rest)) => writeln!(out, "{}{rest}", paint.ok("ok:")),
        Some((head, rest)) => writeln!(
            out,
            "{}{}",
            paint.error(&format!("{head}:")),
            paint.bold(rest)
        ),
        None => writeln!(out, "{summary}"),
    }
}

pub(crate) fn human(out: &mut dyn Write, report: &Report, color: bool) -> io::Result<()> {
    let paint = Paint { on: color };
    for violation in report.violations() {
        diagnostic(out, &violation.diagnostic, paint)?;
    }
    for stale in report.stale_entries() {
        diagnostic(out, &stale, paint)?;
    }
    for file in report.unparsed_files() {
        writeln!(
            out,
            "{} {file} is not valid Rust and was not checked (the compiler says why)",
            paint.wrap("1;33", "warning:")
        )?;
    }
    write_summary(out, &report.summary(), paint)
}

pub(crate) fn human_config(
    out: &mut dyn Write,
    problems: &[Diagnostic],
    color: bool,
) -> io::Result<()> {
    let paint = Paint { on: color };
    for problem in problems {
        diagnostic(out, problem, paint)?;
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
        properties.push(format!("line={}", location.line));
        properties.push(format!("col={}", location.column));
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
