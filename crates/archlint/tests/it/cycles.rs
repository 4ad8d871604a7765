//! The context-cycle rule.

use archlint::Rule;

use crate::support::{check, human};

#[test]
fn cycle_is_reported_with_its_path_and_the_edge_to_cut() {
    let report = check("context-cycle");
    let rules: Vec<Rule> = report.violations().map(archlint::Violation::rule).collect();
    assert_eq!(rules, [Rule::UndeclaredContextEdge, Rule::ContextCycle]);
    let cycle = report.violations().nth(1).unwrap();
    assert_eq!(cycle.key, "catalog -> payments -> orders -> catalog");
    assert_eq!(
        cycle.diagnostic.label.as_deref(),
        Some("cut payments -> orders here")
    );
    insta::assert_snapshot!(human(&report));
}

#[test]
fn a_cycle_closed_by_an_unused_declared_edge_is_refused() {
    let text = std::fs::read_to_string(crate::support::fixture("context-cycle/arch.toml"))
        .unwrap()
        .replace(
            "[api]",
            "[[edges]]\nfrom = \"payments\"\nto = \"orders\"\nreason = \"mark orders paid\"\n\n[api]",
        );
    let dir = crate::support::copy_fixture("context-cycle");
    std::fs::write(dir.path().join("arch.toml"), text).unwrap();
    // Drop the actual dependency: only the declaration still closes the cycle.
    let manifest = dir.path().join("crates/payments/Cargo.toml");
    let cargo = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        cargo.replace("orders-api = { path = \"../orders-api\" }\n", ""),
    )
    .unwrap();
    // A declared edge nothing uses is stale: it is refused before any rule runs, pointing at
    // the edge, so the cycle it would close never reaches the picture.
    let error = match archlint::check_workspace(dir.path()) {
        Ok(report) => panic!("expected a configuration error:\n{}", report.render_human()),
        Err(error) => error,
    };
    let text = error.render_human();
    assert!(
        text.contains("error[unused-entry]: arch.toml declares the edge payments -> orders"),
        "{text}"
    );
    assert!(text.contains("from = \"payments\""), "{text}");
}
