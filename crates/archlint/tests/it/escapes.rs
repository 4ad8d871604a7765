//! Source escapes: path-escape and api-reexport.

use archlint::Rule;

use crate::support::{check, human};

#[test]
fn path_escape() {
    let report = check("path-escape");
    let keys: Vec<&str> = report.violations().map(|v| v.key.as_str()).collect();
    // Inside the crate (`fine.rs`, `../sql/own.sql`) and under OUT_DIR: not reported.
    assert_eq!(
        keys,
        [
            "../../../README.md",
            "../../kernel/src/money.rs",
            "../../../shared.sql",
            "$CARGO_MANIFEST_DIR/../kernel/data.bin",
            "/etc/hostname",
        ]
    );
    assert!(report.violations().all(|v| v.rule() == Rule::PathEscape));
    insta::assert_snapshot!(human(&report));
}

#[test]
fn api_reexport() {
    let report = check("api-reexport");
    let keys: Vec<&str> = report.violations().map(|v| v.key.as_str()).collect();
    // The kernel glob, the private imports, `pub(crate)` and the implementation are fine.
    assert_eq!(
        keys,
        [
            "upstream::Product",
            "upstream::{Price, CatalogApi as Catalog}",
            "cat::*",
            "extern crate upstream",
        ]
    );
    insta::assert_snapshot!(human(&report));
}
