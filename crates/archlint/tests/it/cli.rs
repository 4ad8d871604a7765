//! The binary: exit codes, formats, colour, explain.

use crate::support::{fixture, redact_timing, run, run_in};

#[test]
fn exit_codes() {
    assert_eq!(run("clean", &["check"]).code, 0);
    assert_eq!(run("undeclared-context-edge", &["check"]).code, 1);
    assert_eq!(run("config-malformed", &["check"]).code, 2);
}

#[test]
fn root_is_found_from_a_member_folder_or_given() {
    let output = run_in(&fixture("clean").join("crates/auth/src"), &["check"]);
    assert_eq!(output.code, 0, "{output:?}");
    let root = fixture("undeclared-context-edge");
    let output = run_in(
        &fixture("clean"),
        &["--root", root.to_str().unwrap(), "check"],
    );
    assert_eq!(output.code, 1, "{output:?}");
}

#[test]
fn github_annotations() {
    let output = run(
        "undeclared-infrastructure-edge",
        &["check", "--format", "github"],
    );
    assert_eq!(output.code, 1);
    insta::assert_snapshot!(redact_timing(&output.stdout));
}

#[test]
fn json_is_valid_and_complete() {
    let output = run("context-cycle", &["check", "--format", "json"]);
    assert_eq!(output.code, 1);
    let value: serde_json::Value = serde_json::from_str(&output.stdout).unwrap();
    assert_eq!(value["ok"], false);
    assert_eq!(value["summary"]["new"], 2);
    assert_eq!(value["violations"][1]["rule"], "context-cycle");
    assert_eq!(value["violations"][1]["file"], "crates/payments/Cargo.toml");
    assert_eq!(value["violations"][1]["line"], 9);
}

#[test]
fn colour_only_when_asked_or_on_a_terminal() {
    let plain = run("undeclared-context-edge", &["check"]);
    assert!(!plain.stdout.contains('\u{1b}'));
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_archlint"))
        .args(["--color", "always", "check"])
        .current_dir(fixture("undeclared-context-edge"))
        .output()
        .unwrap();
    let coloured = String::from_utf8_lossy(&output.stdout);
    assert!(
        coloured.contains("\u{1b}[1;31merror[undeclared-context-edge]\u{1b}[0m"),
        "{coloured}"
    );
    // Piped (not a terminal) with the default `auto`: no colour.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_archlint"))
        .arg("check")
        .current_dir(fixture("undeclared-context-edge"))
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&output.stdout).contains('\u{1b}'));
}

#[test]
fn explain_lists_and_explains_rules() {
    let list = run("clean", &["explain"]);
    assert_eq!(list.code, 0);
    for rule in archlint::Rule::ALL {
        assert!(list.stdout.contains(rule.id()), "{}", rule.id());
        let one = run("clean", &["explain", rule.id()]);
        assert_eq!(one.code, 0);
        assert!(one.stdout.contains("## Why"), "{}", rule.id());
        assert!(one.stdout.contains("## Example"), "{}", rule.id());
        assert!(one.stdout.contains("## How to fix"), "{}", rule.id());
    }
    insta::assert_snapshot!(list.stdout);
    let unknown = run("clean", &["explain", "no-such-rule"]);
    assert_eq!(unknown.code, 2);
    assert!(unknown.stderr.contains("unknown rule `no-such-rule`"));
}

#[test]
fn files_that_are_not_rust_are_named_not_hidden() {
    let dir = crate::support::copy_fixture("clean");
    std::fs::write(dir.path().join("crates/auth/src/broken.rs"), "fn (").unwrap();
    let output = run_in(dir.path(), &["check"]);
    assert_eq!(output.code, 0, "{output:?}");
    assert!(
        output
            .stdout
            .contains("warning: crates/auth/src/broken.rs is not valid Rust and was not checked"),
        "{}",
        output.stdout
    );
}
