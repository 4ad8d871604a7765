//! The completeness check: every event and serialized type of an `-api` crate is in a
//! contract, or waits in the pending list; the pending list only shrinks.

use contracts::{Pending, Registry, check};

use crate::shop::v1;
use crate::support::copy_fixture;

fn report(repo: &std::path::Path, registry: &Registry) -> String {
    let report = check(repo, registry).expect("checked");
    report
        .diagnostics()
        .iter()
        .filter(|d| d.rule != contracts::Rule::UncommittedContract)
        .map(contracts::Diagnostic::render_human)
        .collect()
}

#[test]
fn the_fixture_is_complete() {
    let repo = copy_fixture("shop");
    insta::assert_snapshot!(report(repo.path(), &v1::registry()), @"");
}

#[test]
fn an_unregistered_event_or_dto_is_reported_where_it_is_defined() {
    let repo = copy_fixture("shop");
    let lib = repo.path().join("crates/orders-api/src/lib.rs");
    let mut source = std::fs::read_to_string(&lib).expect("readable");
    source.push_str(
        r#"
#[derive(Debug, Serialize, Deserialize)]
pub struct OrderShipped {
    pub order_id: OrderId,
}

impl kernel::IntegrationEvent for OrderShipped {
    const NAME: &'static str = "orders.order_shipped.v1";

    fn aggregate_id(&self) -> String {
        self.order_id.to_string()
    }
}

pub mod refunds {
    #[derive(Debug, serde::Serialize)]
    pub enum RefundReason {
        Damaged,
    }
}
"#,
    );
    std::fs::write(&lib, source).expect("written");
    std::fs::create_dir_all(repo.path().join("crates/billing-api/src")).expect("created");
    std::fs::write(
        repo.path().join("crates/billing-api/src/lib.rs"),
        "//! A context without a port yet.\n\n#[derive(serde::Serialize)]\npub struct Invoice {\n    pub number: u64,\n}\n",
    )
    .expect("written");
    insta::assert_snapshot!(report(repo.path(), &v1::registry()));
}

#[test]
fn a_pending_entry_that_is_registered_or_gone_is_stale() {
    let repo = copy_fixture("shop");
    const PENDING: &[Pending] = &[
        Pending::dto("orders", "Viewer"),
        Pending::dto("orders", "Order"),
        Pending::event("orders", "OrderShipped"),
    ];
    let registry = Registry {
        pending: PENDING,
        ..v1::registry()
    };
    insta::assert_snapshot!(report(repo.path(), &registry));
}

#[test]
fn a_pending_type_is_known() {
    let repo = copy_fixture("shop");
    let registry = Registry {
        pending: &[],
        ..v1::registry()
    };
    let text = report(repo.path(), &registry);
    assert!(
        text.contains("`Viewer` is serialized by `orders-api`"),
        "{text}"
    );
}
