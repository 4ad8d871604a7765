//! The baseline: accepted violations pass, new ones and stale entries fail, and
//! `--update-baseline` only shrinks the file.

use crate::support::{copy_fixture, redact_timing, run, run_in};

const BASELINE: &str = "arch-baseline.toml";

#[test]
fn new_violation_and_stale_entry_fail() {
    let output = run("baseline", &["check"]);
    assert_eq!(output.code, 1);
    insta::assert_snapshot!(redact_timing(&output.stdout));
}

#[test]
fn baselined_violations_pass() {
    let dir = copy_fixture("baseline");
    let path = dir.path().join(BASELINE);
    let text = std::fs::read_to_string(&path).unwrap();
    // Accept the tooling dependency too (replacing the stale entry).
    let accepted = run_in(dir.path(), &["check", "--format", "baseline"]).stdout;
    assert!(
        accepted.contains("rule = \"tooling-dependency\""),
        "{accepted}"
    );
    let stale_start = text
        .find("\n[[accepted]]\nrule = \"foreign-table\"")
        .unwrap();
    std::fs::write(
        &path,
        format!(
            "{}{}",
            &text[..stale_start],
            accepted.replace(
                "TODO: why this is accepted for now, and when it will be fixed",
                "fixture"
            )
        ),
    )
    .unwrap();

    let output = run_in(dir.path(), &["check"]);
    assert_eq!(output.code, 0, "{output:?}");
    insta::assert_snapshot!(redact_timing(&output.stdout), @"ok: 6 crates, 2 contexts, 0 new violations (2 baselined) in [time]");
}

#[test]
fn no_baseline_reports_everything() {
    let output = run("baseline", &["check", "--no-baseline"]);
    assert_eq!(output.code, 1);
    assert!(
        output
            .stdout
            .contains("error: 2 violations (2 new, 0 baselined)"),
        "{}",
        output.stdout
    );
}

#[test]
fn update_baseline_only_removes_stale_entries() {
    let dir = copy_fixture("baseline");
    let path = dir.path().join(BASELINE);
    let before = std::fs::read_to_string(&path).unwrap();

    let output = run_in(dir.path(), &["check", "--update-baseline"]);
    // The new violation still fails the check: updating never adds entries.
    assert_eq!(output.code, 1);
    assert!(
        output.stderr.contains("removed 1 stale entry"),
        "{output:?}"
    );
    assert!(
        !output.stdout.contains("stale-baseline-entry"),
        "{}",
        output.stdout
    );
    let after = std::fs::read_to_string(&path).unwrap();
    assert!(after.len() < before.len());
    assert!(!after.contains("foreign-table"));
    assert!(!after.contains("tooling-dependency"));
    insta::assert_snapshot!(after);

    // Nothing stale any more: a second update leaves the file alone.
    let again = run_in(dir.path(), &["check", "--update-baseline"]);
    assert_eq!(again.code, 1);
    assert!(again.stderr.is_empty(), "{again:?}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), after);
}

#[test]
fn format_baseline_prints_entries_to_paste() {
    let output = run("baseline", &["check", "--format", "baseline"]);
    insta::assert_snapshot!(output.stdout);
}

#[test]
fn explicit_baseline_file() {
    let dir = copy_fixture("baseline");
    std::fs::rename(dir.path().join(BASELINE), dir.path().join("accepted.toml")).unwrap();
    let without = run_in(dir.path(), &["check"]);
    assert!(
        without.stdout.contains("(2 new, 0 baselined)"),
        "{}",
        without.stdout
    );
    let with = run_in(dir.path(), &["check", "--baseline", "accepted.toml"]);
    assert!(
        with.stdout
            .contains("(1 new, 1 baselined), 1 stale baseline entry"),
        "{}",
        with.stdout
    );
    assert!(
        with.stdout.contains("--> accepted.toml:12:8"),
        "{}",
        with.stdout
    );
}

#[test]
fn malformed_baseline_is_a_configuration_error() {
    let dir = copy_fixture("baseline");
    std::fs::write(
        dir.path().join(BASELINE),
        "[[accepted]]\nrule = \"undeclared-context-edge\"\n",
    )
    .unwrap();
    let output = run_in(dir.path(), &["check"]);
    assert_eq!(output.code, 2);
    assert!(
        output
            .stdout
            .contains("arch-baseline.toml is malformed: missing field `crate`"),
        "{}",
        output.stdout
    );
}
