//! Port specs: port-spec.

use archlint::Rule;

use crate::support::{check, copy_fixture, human, redact_timing, run_in};

#[test]
fn port_spec() {
    let report = check("port-spec");
    let found: Vec<(&str, &str)> = report
        .violations()
        .map(|v| (v.krate.as_str(), v.key.as_str()))
        .collect();
    // The readable entries that match a method, the second PORT's own contents and
    // `shipping-api`'s trait (arch.toml names none) are not reported.
    assert_eq!(
        found,
        [
            ("auth-api", "AuthApi"),
            ("shipping-api", "api_trait"),
            ("auth-api", "PORT"),
            ("catalog-api", "CatalogApi::reserve_stock"),
            ("catalog-api", "CatalogApi::release"),
            ("catalog-api", "CatalogApi::commit"),
            ("catalog-api", "CatalogApi::get_prices"),
            ("catalog-api", "CatalogApi::get_products"),
            (
                "catalog-api",
                "MethodSpec { name: \"release\", idempotent: true }"
            ),
            ("catalog-api", "MethodSpec::idempotent(COMMIT)"),
            ("notifications-api", "PORT"),
            ("orders-api", "PORT.context"),
            ("orders-api", "PORT.trait_name"),
            ("orders-api", "PORT"),
            ("payments-api", "PORT"),
            ("reviews-api", "PORT.trait_name"),
            ("reviews-api", "PORT.context"),
            ("reviews-api", "PORT.methods"),
        ]
    );
    assert!(report.violations().all(|v| v.rule() == Rule::PortSpec));
    insta::assert_snapshot!(human(&report));
}

#[test]
fn port_spec_violations_can_be_baselined() {
    // Like the other source rules, so a workspace can adopt the rule one port at a time; the
    // keys (`CatalogApi::reserve_stock`, an unreadable entry's text) survive the TOML round trip.
    let dir = copy_fixture("port-spec");
    let entries = run_in(dir.path(), &["check", "--format", "baseline"]).stdout;
    assert!(
        entries.contains("key = \"CatalogApi::reserve_stock\""),
        "{entries}"
    );
    let accepted = entries.replace(
        "TODO: why this is accepted for now, and when it will be fixed",
        "fixture",
    );
    std::fs::write(dir.path().join("arch-baseline.toml"), accepted).unwrap();
    let output = run_in(dir.path(), &["check"]);
    assert_eq!(output.code, 0, "{output:?}");
    insta::assert_snapshot!(redact_timing(&output.stdout), @"ok: 8 crates, 7 contexts, 0 new violations (18 baselined) in [time]");
}
