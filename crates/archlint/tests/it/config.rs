//! Configuration errors: exit code 2 with a clear message.

use archlint::Rule;

use crate::support::{config_error, redact_timing, run};

fn rules(error: &archlint::ConfigError) -> Vec<Rule> {
    error.diagnostics().iter().map(|d| d.rule).collect()
}

#[test]
fn unclassified_member() {
    let error = config_error("config-unclassified");
    assert_eq!(rules(&error), [Rule::UnclassifiedMember; 2]);
    insta::assert_snapshot!(error.render_human());
}

#[test]
fn unused_entry() {
    let error = config_error("config-unused");
    assert_eq!(rules(&error), [Rule::UnusedEntry; 2]);
    insta::assert_snapshot!(error.render_human());
}

#[test]
fn unused_edges_are_configuration_errors() {
    let error = config_error("config-unused-edge");
    assert_eq!(rules(&error), [Rule::UnusedEntry; 2]);
    insta::assert_snapshot!(error.render_human());
}

#[test]
fn malformed_toml() {
    let error = config_error("config-malformed");
    assert_eq!(rules(&error), [Rule::InvalidConfig]);
    insta::assert_snapshot!(error.render_human());
}

#[test]
fn inconsistent_declarations() {
    let error = config_error("config-invalid");
    assert_eq!(rules(&error), [Rule::InvalidConfig; 3]);
    insta::assert_snapshot!(error.render_human());
}

#[test]
fn config_errors_exit_2_in_every_format() {
    for fixture in [
        "config-unclassified",
        "config-unused",
        "config-unused-edge",
        "config-malformed",
        "config-invalid",
    ] {
        for format in ["human", "json", "github"] {
            let output = run(fixture, &["check", "--format", format]);
            assert_eq!(output.code, 2, "{fixture} {format}: {output:?}");
        }
    }
    let json = run("config-malformed", &["check", "--format", "json"]);
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(value["ok"], false);
    assert_eq!(value["configuration_errors"][0]["rule"], "invalid-config");
    assert_eq!(value["configuration_errors"][0]["line"], 5);
}

#[test]
fn missing_workspace_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = crate::support::run_in(dir.path(), &["--root", "nowhere", "check"]);
    assert_eq!(output.code, 2);
    assert!(
        redact_timing(&output.stdout).contains("`cargo metadata` failed"),
        "{output:?}"
    );
}
