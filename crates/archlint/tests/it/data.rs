//! Data ownership: foreign-schema and foreign-table.

use archlint::Rule;

use crate::support::{check, human};

#[test]
fn foreign_schema() {
    let report = check("foreign-schema");
    assert!(report.violations().any(|v| v.rule() == Rule::ForeignSchema));
    // Own schema, `information_schema` and English mentioning "auth" are fine.
    for violation in report.violations() {
        let location = violation.diagnostic.location.as_ref().unwrap();
        let line = &location.line.as_ref().unwrap().text;
        assert!(!line.contains("orders.orders"), "{line}");
        assert!(!line.contains("information_schema"), "{line}");
        assert!(!line.contains("user not found"), "{line}");
    }
    insta::assert_snapshot!(human(&report));
}

#[test]
fn foreign_schema_as_json() {
    let report = check("foreign-schema");
    let mut out = Vec::new();
    report.write_json(&mut out).unwrap();
    let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
    insta::assert_json_snapshot!(value, { ".summary.elapsed_ms" => "[ms]" });
}

#[test]
fn foreign_table() {
    let report = check("foreign-table");
    let found: Vec<(&str, &str, usize)> = report
        .violations()
        .map(|v| {
            let location = v.diagnostic.location.as_ref().unwrap();
            let (line, _) = location.line_column().unwrap();
            (v.krate.as_str(), v.key.as_str(), line)
        })
        .collect();
    // outbox/inbox are shared, `orders` is its own, English strings are never SQL.
    assert_eq!(
        found,
        [
            ("orders", "users", 8),
            ("orders", "users", 16),
            ("orders", "sessions", 17),
            ("orders-migrations", "users", 10),
        ]
    );
    assert!(report.violations().all(|v| v.rule() == Rule::ForeignTable));
    insta::assert_snapshot!(human(&report));
}
