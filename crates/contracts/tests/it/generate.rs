//! Contracts generated from Rust types: what a registry refuses to generate.

use contracts::{Registry, event, port};
use kernel::{IntegrationEvent, Page};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::shop::v1;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
struct BadlyNamed {}

impl IntegrationEvent for BadlyNamed {
    const NAME: &'static str = "Payments.BadlyNamed";

    fn aggregate_id(&self) -> String {
        String::new()
    }
}

fn registry(events: Vec<contracts::Event>, ports: Vec<contracts::Port>) -> Registry {
    Registry {
        events,
        ports,
        pending: &[],
    }
}

fn problems(registry: &Registry) -> String {
    match registry.contracts() {
        Ok(contracts) => format!("{} contracts", contracts.len()),
        Err(error) => error.0.join("\n"),
    }
}

#[test]
fn a_reference_utoipa_did_not_collect_is_named_with_the_fix() {
    // utoipa collects what `Page<T>` refers to except `T` itself.
    let missing = registry(vec![], vec![port("orders", 1).dto::<Page<v1::Line>>()]);
    insta::assert_snapshot!(problems(&missing), @"`orders.port.v1`: `Page` refers to `Line`, whose schema utoipa did not collect; add `.with::<Line>()` to its registration");
    let fixed = registry(
        vec![],
        vec![port("orders", 1).dto::<Page<v1::Line>>().with::<v1::Line>()],
    );
    insta::assert_snapshot!(problems(&fixed), @"1 contracts");
}

#[test]
fn two_schemas_of_one_name_in_a_contract_are_refused() {
    let clash = registry(
        vec![],
        vec![
            port("orders", 1)
                .dto::<Page<v1::Order>>()
                .dto::<Page<v1::Line>>()
                .dto::<v1::Order>()
                .dto::<v1::Line>(),
        ],
    );
    insta::assert_snapshot!(problems(&clash), @"`orders.port.v1`: two different schemas are both named `Page` (a generic type such as `Page<T>` with two arguments, or two types of the same name); give one a `#[schema(as = ..)]` name");
}

#[test]
fn names_must_be_versioned_and_unique() {
    let bad = registry(
        vec![
            event::<BadlyNamed>(),
            event::<v1::OrderPaymentFailed>(),
            event::<v1::OrderPaymentFailed>(),
        ],
        vec![port("orders", 0)],
    );
    insta::assert_snapshot!(problems(&bad), @r"
    event name `Payments.BadlyNamed` is not `<context>.<event>.v<N>` in lower-case snake_case
    port `orders.port.v0`: the context must be lower-case snake_case and the version start at 1
    `orders.order_payment_failed.v1` is registered twice
    ");
}

#[test]
fn the_shops_registry_generates() {
    let contracts = contracts::registry::registry()
        .contracts()
        .expect("the shop's registry is valid");
    let names: Vec<&str> = contracts.iter().map(|c| c.name.as_str()).collect();
    assert!(names.contains(&"orders.port.v1"), "{names:?}");
    for contract in &contracts {
        assert_eq!(contract.document["title"], contract.name.as_str());
        assert!(!contract.text().contains("#/components/schemas/"));
    }
}
