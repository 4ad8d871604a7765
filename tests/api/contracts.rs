//! The contract check as an ordinary test, so plain `cargo test` fails when a published event
//! or DTO changes incompatibly, not only CI's `contracts check` step.

use std::path::Path;

use contracts::Rule;

#[test]
fn the_published_contracts_keep_their_promises() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace root");
    let report = contracts::check_workspace(root)
        .unwrap_or_else(|error| panic!("the contracts cannot be checked: {error}"));
    // until the baselines are committed: then this becomes `assert!(report.is_clean(), ..)`.
    let unexpected: Vec<_> = report
        .diagnostics()
        .iter()
        .filter(|d| d.rule != Rule::UncommittedContract)
        .collect();
    assert!(
        unexpected.is_empty(),
        "\n{}",
        unexpected
            .iter()
            .map(|d| d.render_human())
            .collect::<String>()
    );
}
