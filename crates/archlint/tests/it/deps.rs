//! Dependency rules, one fixture each.

use archlint::Rule;

use crate::support::{check, human};

fn rules(report: &archlint::Report) -> Vec<Rule> {
    report.violations().map(archlint::Violation::rule).collect()
}

#[test]
fn clean_workspace_passes() {
    let report = check("clean");
    assert!(report.is_clean(), "{}", report.render_human());
    insta::assert_snapshot!(human(&report), @"ok: 10 crates, 2 contexts, 0 violations in [time]");
}

#[test]
fn undeclared_context_edge() {
    let report = check("undeclared-context-edge");
    assert_eq!(rules(&report), [Rule::UndeclaredContextEdge; 2]);
    insta::assert_snapshot!(human(&report));
}

#[test]
fn implementation_dependency() {
    let report = check("implementation-dependency");
    // catalog -> catalog-migrations is its own migrations crate: allowed.
    assert_eq!(rules(&report), [Rule::ImplementationDependency; 4]);
    insta::assert_snapshot!(human(&report));
}

#[test]
fn api_forbidden_dependency() {
    let report = check("api-forbidden-dependency");
    // The implementation `auth` may use the same crates.
    assert_eq!(rules(&report), [Rule::ApiForbiddenDependency; 3]);
    insta::assert_snapshot!(human(&report));
}

#[test]
fn api_unlisted_dependency() {
    let report = check("api-unlisted-dependency");
    assert_eq!(rules(&report), [Rule::ApiUnlistedDependency; 2]);
    insta::assert_snapshot!(human(&report));
}

#[test]
fn undeclared_infrastructure_edge() {
    let report = check("undeclared-infrastructure-edge");
    assert_eq!(rules(&report), [Rule::UndeclaredInfrastructureEdge]);
    insta::assert_snapshot!(human(&report));
}

#[test]
fn kernel_dependency() {
    let report = check("kernel-dependency");
    // testkit as a dev-dependency of the kernel is fine.
    assert_eq!(rules(&report), [Rule::KernelDependency; 2]);
    insta::assert_snapshot!(human(&report));
}

#[test]
fn tooling_dependency() {
    let report = check("tooling-dependency");
    assert_eq!(rules(&report), [Rule::ToolingDependency; 2]);
    insta::assert_snapshot!(human(&report));
}

#[test]
fn composition_root_dependency() {
    let report = check("composition-root-dependency");
    assert_eq!(rules(&report), [Rule::CompositionRootDependency]);
    insta::assert_snapshot!(human(&report));
}

#[test]
fn dependency_violations_as_json() {
    let report = check("api-forbidden-dependency");
    let mut out = Vec::new();
    report.write_json(&mut out).unwrap();
    let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
    insta::assert_json_snapshot!(value, { ".summary.elapsed_ms" => "[ms]" });
}
