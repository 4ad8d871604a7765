//! The human format: rustc-style text, coloured or not, and the summary line that closes a
//! report.

use std::fmt;
use std::io::{self, Write};

use crate::diagnostic::{Diagnostic, Location};

/// ANSI styles, or nothing when colour is off.
#[derive(Debug, Clone, Copy)]
pub struct Paint {
    on: bool,
}

impl Paint {
    /// Styles that colour if `on`, and leave the text alone otherwise.
    pub fn new(on: bool) -> Self {
        Self { on }
    }

    fn wrap(self, code: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    /// Bold red: `error[...]`, the underline, a failed summary.
    pub fn error(self, text: &str) -> String {
        self.wrap("1;31", text)
    }

    /// Bold yellow: `warning:`.
    pub fn warning(self, text: &str) -> String {
        self.wrap("1;33", text)
    }

    /// Bold green: a clean summary.
    pub fn ok(self, text: &str) -> String {
        self.wrap("1;32", text)
    }

    pub fn bold(self, text: &str) -> String {
        self.wrap("1", text)
    }

    fn gutter(self, text: &str) -> String {
        self.wrap("1;34", text)
    }
}

impl<R: fmt::Display> Diagnostic<R> {
    /// The rustc-style text, coloured by `paint`, and a blank line after it.
    pub fn write_human(&self, out: &mut dyn Write, paint: Paint) -> io::Result<()> {
        // Everything but the rule id is the same type in every tool: render through a
        // non-generic view so the renderer is compiled once, not once per rule type.
        write_diagnostic(
            out,
            &Parts {
                rule: &self.rule,
                message: &self.message,
                location: self.location.as_ref(),
                label: self.label.as_deref(),
                notes: &self.notes,
                help: self.help.as_deref(),
            },
            paint,
        )
    }

    /// [`Diagnostic::write_human`] without colour, as a string.
    pub fn render_human(&self) -> String {
        let mut out = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = self.write_human(&mut out, Paint::new(false));
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// A diagnostic with its rule reduced to what rendering needs: the id.
struct Parts<'a> {
    rule: &'a dyn fmt::Display,
    message: &'a str,
    location: Option<&'a Location>,
    label: Option<&'a str>,
    notes: &'a [String],
    help: Option<&'a str>,
}

fn write_diagnostic(out: &mut dyn Write, d: &Parts<'_>, paint: Paint) -> io::Result<()> {
    writeln!(
        out,
        "{}{}",
        paint.error(&format!("error[{}]", d.rule)),
        paint.bold(&format!(": {}", d.message))
    )?;
    let Some(location) = d.location else {
        // No arrow or gutter to line the notes up with: they start the line.
        for note in d.notes {
            writeln!(out, "{} {note}", paint.gutter("= note:"))?;
        }
        if let Some(help) = d.help {
            writeln!(out, "{} {help}", paint.gutter("= help:"))?;
        }
        return writeln!(out);
    };
    // The gutter is as wide as the line number (none for a whole file).
    let number = location
        .line
        .as_ref()
        .map(|line| line.number.to_string())
        .unwrap_or_default();
    let pad = " ".repeat(number.len());
    match &location.line {
        None => writeln!(out, "{pad} {} {}", paint.gutter("-->"), location.file)?,
        Some(line) => {
            writeln!(
                out,
                "{pad}{} {}:{}:{}",
                paint.gutter("-->"),
                location.file,
                line.number,
                line.column
            )?;
            writeln!(out, "{pad} {}", paint.gutter("|"))?;
            // Tabs would shift the carets; show them as single spaces.
            let text = line.text.replace('\t', " ");
            writeln!(
                out,
                "{} {} {text}",
                paint.gutter(&number),
                paint.gutter("|")
            )?;
            let carets = paint.error(&format!(
                "{}{}",
                "^".repeat(line.width.max(1)),
                d.label.map_or_else(String::new, |l| format!(" {l}"))
            ));
            writeln!(
                out,
                "{pad} {} {}{carets}",
                paint.gutter("|"),
                " ".repeat(line.column.saturating_sub(1))
            )?;
            writeln!(out, "{pad} {}", paint.gutter("|"))?;
        }
    }
    for note in d.notes {
        writeln!(out, "{pad} {} {note}", paint.bold("= note:"))?;
    }
    if let Some(help) = d.help {
        writeln!(out, "{pad} {} {help}", paint.bold("= help:"))?;
    }
    writeln!(out)
}

/// Writes the closing line of a report: `ok: ...` with a green head, `error: ...` with a red
/// head and a bold rest; any other line as it is.
pub fn write_summary(out: &mut dyn Write, summary: &str, paint: Paint) -> io::Result<()> {
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

/// `1 crate`, `2 crates`: a count and the right form of its noun.
pub fn plural(count: usize, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use crate::{Diagnostic, Location, Paint, write_summary};

    const TEXT: &str = "[package]\n\tname = \"extras\"\n";

    fn check(diagnostic: &Diagnostic<&str>, expected: &str) {
        assert_eq!(diagnostic.render_human(), expected);
    }

    #[test]
    fn a_line_is_shown_with_its_underline_and_label() {
        let start = TEXT.find("name").unwrap();
        check(
            &Diagnostic::new("some-rule", "the message")
                .at(Location::from_span("Cargo.toml", TEXT, start..start + 4))
                .label("the label")
                .note("a note")
                .note("another note")
                .help("the help"),
            "error[some-rule]: the message
 --> Cargo.toml:2:2
  |
2 |  name = \"extras\"
  |  ^^^^ the label
  |
  = note: a note
  = note: another note
  = help: the help

",
        );
    }

    #[test]
    fn the_gutter_is_as_wide_as_the_line_number() {
        let text = "\n".repeat(11) + "x = 1\n";
        check(
            &Diagnostic::new("some-rule", "the message")
                .at(Location::from_line_column("f.toml", &text, 12, 5, 0)),
            "error[some-rule]: the message
  --> f.toml:12:5
   |
12 | x = 1
   |     ^
   |

",
        );
    }

    #[test]
    fn a_whole_file_has_no_snippet() {
        check(
            &Diagnostic::new("some-rule", "the message")
                .at(Location::file("contracts/x.json"))
                .label("not shown without a line")
                .note("a note")
                .help("the help"),
            "error[some-rule]: the message
 --> contracts/x.json
 = note: a note
 = help: the help

",
        );
    }

    #[test]
    fn without_a_location_notes_start_the_line() {
        check(
            &Diagnostic::new("some-rule", "cannot read arch.toml")
                .note("No such file or directory (os error 2)")
                .help("the help"),
            "error[some-rule]: cannot read arch.toml
= note: No such file or directory (os error 2)
= help: the help

",
        );
    }

    #[test]
    fn colour_wraps_each_part() {
        let diagnostic = Diagnostic::new("some-rule", "the message")
            .at(Location::from_line_column("f.toml", "x = 1", 1, 1, 1))
            .help("the help");
        let mut out = Vec::new();
        diagnostic.write_human(&mut out, Paint::new(true)).unwrap();
        insta::assert_snapshot!(String::from_utf8(out).unwrap().escape_debug(), @r#"\u{1b}[1;31merror[some-rule]\u{1b}[0m\u{1b}[1m: the message\u{1b}[0m\n \u{1b}[1;34m-->\u{1b}[0m f.toml:1:1\n  \u{1b}[1;34m|\u{1b}[0m\n\u{1b}[1;34m1\u{1b}[0m \u{1b}[1;34m|\u{1b}[0m x = 1\n  \u{1b}[1;34m|\u{1b}[0m \u{1b}[1;31m^\u{1b}[0m\n  \u{1b}[1;34m|\u{1b}[0m\n  \u{1b}[1m= help:\u{1b}[0m the help\n\n"#);
    }

    #[test]
    fn the_summary_head_is_coloured_by_outcome() {
        let summary = |line: &str, color: bool| {
            let mut out = Vec::new();
            write_summary(&mut out, line, Paint::new(color)).unwrap();
            String::from_utf8(out).unwrap()
        };
        assert_eq!(summary("ok: 3 crates", false), "ok: 3 crates\n");
        assert_eq!(
            summary("ok: 3 crates", true),
            "\x1b[1;32mok:\x1b[0m 3 crates\n"
        );
        assert_eq!(
            summary("error: 1 problem", true),
            "\x1b[1;31merror:\x1b[0m\x1b[1m 1 problem\x1b[0m\n"
        );
        assert_eq!(summary("no colon here", true), "no colon here\n");
    }
}
