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
fn cycle_of_declared_edges_alone_is_reported() {
    let text = std::fs::read_to_string(crate::support::fixture("context-cycle/arch.toml"))
        .unwrap()
        .replace(
            "[api]",
            "[[edges]]\nfrom = \"payments\"\nto = \"orders\"\nreason = \"mark orders paid\"\n\n[api]",
        );
    let dir = crate::support::copy_fixture("context-cycle");
    std::fs::write(dir.path().join("arch.toml"), text).unwrap();
    // Drop the actual dependency: the declared edges alone close the cycle.
    let manifest = dir.path().join("crates/payments/Cargo.toml");
    let cargo = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        cargo.replace("orders-api = { path = \"../orders-api\" }\n", ""),
    )
    .unwrap();
    let report = archlint::check_workspace(dir.path()).unwrap();
    let cycle: Vec<_> = report.violations().collect();
    assert_eq!(cycle.len(), 1);
    assert_eq!(cycle[0].rule(), Rule::ContextCycle);
    // No crate uses payments -> orders: it is the free edge to cut, pointed at in arch.toml.
    let location = cycle[0].diagnostic.location.as_ref().unwrap();
    assert_eq!(location.file, "arch.toml");
    assert_eq!(location.source_line, "from = \"payments\"");
    assert!(
        cycle[0]
            .diagnostic
            .help
            .as_ref()
            .unwrap()
            .contains("remove its `[[edges]]` entry")
    );
}
