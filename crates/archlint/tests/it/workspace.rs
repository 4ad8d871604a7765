//! The real `shop` workspace follows its own arch.toml.

use std::path::Path;

#[test]
fn the_shop_workspace_passes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let report = archlint::check_workspace(&root).unwrap_or_else(|error| {
        panic!(
            "arch.toml does not describe the workspace:\n{}",
            error.render_human()
        )
    });
    assert!(report.is_clean(), "{}", report.render_human());
    assert!(
        report.unparsed_files().is_empty(),
        "{:?}",
        report.unparsed_files()
    );
}
