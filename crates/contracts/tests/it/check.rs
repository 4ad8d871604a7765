//! `check` and `write` on the fixture repository, with contracts generated from the versions of
//! `shop.rs`: what is reported, what is written, and that a refused write changes nothing.

use contracts::{Rule, check, write};

use crate::shop::{v1, v2_breaking, v2_compatible};
use crate::support::{copy_fixture, snapshot_files};

fn rules(report: &contracts::Report) -> Vec<Rule> {
    report.diagnostics().iter().map(|d| d.rule).collect()
}

#[test]
fn nothing_committed_yet() {
    let repo = copy_fixture("shop");
    let report = check(repo.path(), &v1::registry()).expect("checked");
    assert_eq!(report.exit_code(), 1);
    insta::assert_snapshot!(report.render_human());
}

#[test]
fn write_then_check_is_clean() {
    let repo = copy_fixture("shop");
    let report = write(repo.path(), &v1::registry()).expect("written");
    assert!(report.is_clean(), "{}", report.render_human());
    insta::assert_snapshot!(report.render_human(), @r"
    wrote contracts/events/orders.order_payment_failed.v1.json
    wrote contracts/ports/orders.port.v1.json
    ok: 2 contracts (1 event, 1 port), 2 files written
    ");
    let report = check(repo.path(), &v1::registry()).expect("checked");
    insta::assert_snapshot!(report.render_human(), @"ok: 2 contracts (1 event, 1 port) match their committed files");
    let again = write(repo.path(), &v1::registry()).expect("written");
    assert!(again.written().is_empty());
}

#[test]
fn a_written_event_contract_is_a_standalone_json_schema() {
    let repo = copy_fixture("shop");
    write(repo.path(), &v1::registry()).expect("written");
    let text = std::fs::read_to_string(
        repo.path()
            .join("contracts/events/orders.order_payment_failed.v1.json"),
    )
    .expect("written");
    assert!(text.ends_with("}\n"));
    assert!(!text.contains("#/components/schemas/"));
    insta::assert_snapshot!(text);
}

#[test]
fn a_written_port_contract_holds_every_dto_and_the_error_enum() {
    let repo = copy_fixture("shop");
    write(repo.path(), &v1::registry()).expect("written");
    let text = std::fs::read_to_string(repo.path().join("contracts/ports/orders.port.v1.json"))
        .expect("written");
    insta::assert_snapshot!(text);
}

#[test]
fn a_compatible_change_is_stale_until_written() {
    let repo = copy_fixture("shop");
    write(repo.path(), &v1::registry()).expect("written");
    let report = check(repo.path(), &v2_compatible::registry()).expect("checked");
    assert_eq!(rules(&report), [Rule::StaleContract]);
    insta::assert_snapshot!(report.render_human());
    let report = write(repo.path(), &v2_compatible::registry()).expect("written");
    assert_eq!(report.written(), ["contracts/ports/orders.port.v1.json"]);
    assert!(report.is_clean());
    let report = check(repo.path(), &v2_compatible::registry()).expect("checked");
    assert!(report.is_clean(), "{}", report.render_human());
}

#[test]
fn an_incompatible_change_names_the_field_and_asks_for_a_new_version() {
    let repo = copy_fixture("shop");
    write(repo.path(), &v1::registry()).expect("written");
    let report = check(repo.path(), &v2_breaking::registry()).expect("checked");
    assert!(rules(&report).iter().all(|r| *r == Rule::BreakingChange));
    insta::assert_snapshot!(report.render_human());
}

#[test]
fn write_refuses_an_incompatible_change_and_writes_nothing() {
    let repo = copy_fixture("shop");
    write(repo.path(), &v1::registry()).expect("written");
    let before = snapshot_files(repo.path());
    let report = write(repo.path(), &v2_breaking::registry()).expect("not written");
    assert_eq!(report.exit_code(), 1);
    assert!(report.written().is_empty());
    assert_eq!(snapshot_files(repo.path()), before);
    let check = check(repo.path(), &v2_breaking::registry()).expect("checked");
    assert_eq!(
        report.diagnostics(),
        check.diagnostics(),
        "same diagnostics as check"
    );
    let summary = report.summary();
    insta::assert_snapshot!(summary, @"error: 7 problems in 2 contracts (1 event, 1 port); nothing was written, because a committed contract would change incompatibly or cannot be read");
}

#[test]
fn a_committed_contract_that_nothing_produces_is_an_error() {
    let repo = copy_fixture("shop");
    write(repo.path(), &v1::registry()).expect("written");
    let events = repo.path().join("contracts/events");
    std::fs::copy(
        events.join("orders.order_payment_failed.v1.json"),
        events.join("orders.order_shipped.v1.json"),
    )
    .expect("copied");
    let report = check(repo.path(), &v1::registry()).expect("checked");
    insta::assert_snapshot!(report.render_human());
    // `write` cannot decide that a contract is retired: the orphan stays an error.
    let report = write(repo.path(), &v1::registry()).expect("written");
    assert_eq!(rules(&report), [Rule::OrphanContract]);
}

#[test]
fn an_unreadable_committed_contract_is_kept() {
    let repo = copy_fixture("shop");
    write(repo.path(), &v1::registry()).expect("written");
    let file = repo.path().join("contracts/ports/orders.port.v1.json");
    std::fs::write(&file, "{ not json").expect("written");
    let report = write(repo.path(), &v2_compatible::registry()).expect("checked");
    assert_eq!(rules(&report), [Rule::UnreadableContract]);
    assert_eq!(std::fs::read_to_string(&file).expect("read"), "{ not json");
    insta::assert_snapshot!(report.render_human());
}
