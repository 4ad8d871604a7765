//! The contract check as an ordinary test, so plain `cargo test` fails when a published event
//! or DTO changes incompatibly, not only CI's `contracts check` step.

use std::path::Path;

#[test]
fn the_published_contracts_keep_their_promises() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace root");
    let report = contracts::check_workspace(root)
        .unwrap_or_else(|error| panic!("the contracts cannot be checked: {error}"));
    assert!(report.is_clean(), "\n{}", report.render_human());
}
