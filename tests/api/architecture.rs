//! The architecture lint as an ordinary test, so plain `cargo test` fails on a boundary
//! violation, not only CI's `archlint check` step.

use std::path::Path;

#[test]
fn the_workspace_keeps_its_boundaries() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace root");
    let report =
        archlint::check_workspace(root).unwrap_or_else(|error| panic!("arch.toml: {error}"));
    assert!(report.is_clean(), "\n{}", report.render_human());
}
