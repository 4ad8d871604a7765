//! Unknown outcomes: a charge whose answer payments did not hear stays pending and due for
//! reconciliation; the sweep looks it up by key until the provider says what happened, and
//! money taken for a voided payment is refunded by a refund retried until confirmed.

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::future::join_all;
use kernel::{IntegrationEvent, OrderId};
use payments::Backlog;
use payments_api::{FailureReason, PaymentCaptured, PaymentFailed, PaymentRefunded, PaymentStatus};
use proptest::prelude::*;
use testkit::{Backend, PropertyTest, TestStore};

use crate::{
    Fault, FaultyHarness, IMPATIENT, charge_request, eur, events, events_of, faulty_harness,
    faulty_harness_on, sweep_until_idle,
};
use payments::{PaymentsConfig, PaymentsModule};

async fn backlog(harness: &FaultyHarness) -> Backlog {
    harness.payments.service.backlog().await.expect("backlog")
}

fn awaiting(n: u64) -> Backlog {
    Backlog {
        awaiting_reconciliation: n,
        unconfirmed_refunds: 0,
    }
}

/// The provider approved, the answer was lost on the way back: payments answers the charge
/// as pending (the outcome is unknown, not failed), and the sweep learns it was captured.
async fn a_lost_approval_is_pending_then_reconciled_to_captured(store: TestStore) {
    let h = faulty_harness(&store, IMPATIENT).await;
    let order_id = OrderId::new();
    let request = charge_request(order_id, "tok_visa", 1200, "order:lost");
    h.faulty.fail("order:lost", Fault::LoseAnswer);
    let pending = h.payments.api.charge(request).await.expect("charge");
    assert_eq!(pending.status, PaymentStatus::Pending);
    assert_eq!(pending.captured, eur(0));
    assert_eq!(
        h.payments.provider.held("order:lost"),
        1200,
        "the provider took it"
    );
    assert_eq!(backlog(&h).await, awaiting(1));

    assert_eq!(h.module.reconcile_due().await, Ok(1));
    let captured = h.payments.api.get_payment(order_id).await.expect("payment");
    assert_eq!(captured.status, PaymentStatus::Captured);
    assert_eq!(captured.captured, eur(1200));
    assert!(captured.provider_reference.is_some());
    assert_eq!(events(&h.payments.db, PaymentCaptured::NAME).await, 1);
    assert_eq!(backlog(&h).await, Backlog::default());
    assert_eq!(h.module.reconcile_due().await, Ok(0), "nothing left to ask");
    assert_eq!(h.faulty.lookups.load(Ordering::SeqCst), 1);
}

/// `tok_slow`: the provider approves at once and answers after payments' deadline. The
/// charge is answered as pending within the deadline, and reconciliation captures it.
async fn a_charge_past_the_deadline_is_pending_then_reconciled(store: TestStore) {
    let h = faulty_harness(&store, IMPATIENT).await;
    let order_id = OrderId::new();
    let request = charge_request(order_id, "tok_slow", 700, "order:slow");
    let pending = h
        .payments
        .api
        .charge(request.clone())
        .await
        .expect("charge");
    assert_eq!(pending.status, PaymentStatus::Pending);
    assert_eq!(backlog(&h).await, awaiting(1));
    assert_eq!(h.module.reconcile_due().await, Ok(1));
    let captured = h.payments.api.get_payment(order_id).await.expect("payment");
    assert_eq!(captured.status, PaymentStatus::Captured);
    // The caller's retry gets the settled payment; the provider charged once.
    assert_eq!(h.payments.api.charge(request).await, Ok(captured));
    assert_eq!(h.payments.provider.captures(), 1);
}

/// The charge never reached the provider: the lookup finds nothing, and the payment is
/// voided with nothing taken. A retry of the charge then gets the voided payment.
async fn a_charge_the_provider_never_received_is_voided(store: TestStore) {
    let h = faulty_harness(&store, IMPATIENT).await;
    for (fault, key) in [
        (Fault::FailBeforeReceiving, "order:failed"),
        (Fault::HangBeforeReceiving, "order:hung"),
    ] {
        let order_id = OrderId::new();
        let request = charge_request(order_id, "tok_visa", 500, key);
        h.faulty.fail(key, fault);
        let pending = h.payments.api.charge(request.clone()).await.expect(key);
        assert_eq!(pending.status, PaymentStatus::Pending, "{fault:?}");
        assert_eq!(h.module.reconcile_due().await, Ok(1), "{fault:?}");
        let voided = h.payments.api.get_payment(order_id).await.expect("payment");
        assert_eq!(voided.status, PaymentStatus::Voided, "{fault:?}");
        assert_eq!(voided.captured, eur(0), "{fault:?}");
        assert_eq!(
            h.payments.api.charge(request).await,
            Ok(voided),
            "{fault:?}"
        );
    }
    assert_eq!(h.payments.provider.captures(), 0);
    assert_eq!(events(&h.payments.db, PaymentCaptured::NAME).await, 0);
    assert_eq!(events(&h.payments.db, PaymentFailed::NAME).await, 0);
    assert_eq!(backlog(&h).await, Backlog::default());
}

/// A decline whose answer was lost: the lookup finds it, and the payment fails with the
/// provider's reason and its event.
async fn a_lost_decline_is_reconciled_to_failed(store: TestStore) {
    let h = faulty_harness(&store, IMPATIENT).await;
    let order_id = OrderId::new();
    h.faulty.fail("order:no", Fault::HangAfterDeciding);
    let request = charge_request(order_id, "tok_insufficient_funds", 300, "order:no");
    let pending = h.payments.api.charge(request).await.expect("charge");
    assert_eq!(pending.status, PaymentStatus::Pending);
    assert_eq!(h.module.reconcile_due().await, Ok(1));
    let failed = h.payments.api.get_payment(order_id).await.expect("payment");
    assert_eq!(failed.status, PaymentStatus::Failed);
    assert_eq!(
        failed.failure_reason,
        Some(FailureReason::InsufficientFunds)
    );
    assert_eq!(events(&h.payments.db, PaymentFailed::NAME).await, 1);
}

/// The caller gives up on a pending payment (`cancel`, as orders does when the outcome is
/// unknown): it is voided but stays due. The provider had approved: the sweep records the
/// money as taken and owed back, announces both, and the refund, refused by the provider at
/// first, is retried with backoff until the provider confirms it.
async fn a_late_approval_of_a_cancelled_payment_is_refunded_until_confirmed(store: TestStore) {
    let h = faulty_harness(&store, IMPATIENT).await;
    let order_id = OrderId::new();
    h.faulty.fail("order:late", Fault::LoseAnswer);
    let request = charge_request(order_id, "tok_visa", 900, "order:late");
    h.payments
        .api
        .charge(request.clone())
        .await
        .expect("charge");
    let voided = h.payments.api.cancel(order_id).await.expect("cancel");
    assert_eq!(voided.status, PaymentStatus::Voided);
    assert_eq!(voided.captured, eur(0));
    assert_eq!(backlog(&h).await, awaiting(1), "not forgotten");

    h.faulty.set_refunds_down(true);
    assert_eq!(h.module.reconcile_due().await, Ok(1));
    let owed = h.payments.api.get_payment(order_id).await.expect("payment");
    assert_eq!(owed.status, PaymentStatus::Voided);
    assert_eq!((owed.captured, owed.refunded), (eur(900), eur(900)));
    assert!(owed.provider_reference.is_some());
    assert_eq!(
        events_of(&h.payments.db, PaymentCaptured::NAME, order_id).await,
        1
    );
    assert_eq!(
        events_of(&h.payments.db, PaymentRefunded::NAME, order_id).await,
        1
    );
    assert_eq!(
        backlog(&h).await,
        Backlog {
            awaiting_reconciliation: 0,
            unconfirmed_refunds: 1
        }
    );
    assert_eq!(
        h.payments.provider.held("order:late"),
        900,
        "not given back yet"
    );

    // Due at once; the provider still refuses. The next attempt waits for its backoff.
    h.payments.clock.advance(chrono::Duration::seconds(1));
    assert_eq!(h.module.confirm_refunds_due().await, Ok(1));
    assert_eq!(h.module.confirm_refunds_due().await, Ok(0), "backing off");
    assert_eq!(h.payments.provider.held("order:late"), 900);

    h.faulty.set_refunds_down(false);
    h.payments.clock.advance(chrono::Duration::hours(1));
    assert_eq!(h.module.confirm_refunds_due().await, Ok(1));
    assert_eq!(h.payments.provider.held("order:late"), 0, "given back");
    assert_eq!(backlog(&h).await, Backlog::default());
    assert_eq!(h.module.confirm_refunds_due().await, Ok(0));

    // The order's later calls see the payment as recorded; nothing more happens.
    let settled = h.payments.api.get_payment(order_id).await.expect("payment");
    assert_eq!(h.payments.api.cancel(order_id).await, Ok(settled.clone()));
    assert_eq!(h.payments.api.charge(request).await, Ok(settled));
    assert_eq!(h.payments.provider.refunds(), 1);
    assert_eq!(events(&h.payments.db, PaymentRefunded::NAME).await, 1);
}

/// The provider does not answer lookups: the payment stays pending and is asked about again
/// after a backoff, not on every pass; once the provider answers, it is settled.
async fn an_unanswered_lookup_is_asked_again_after_a_backoff(store: TestStore) {
    let h = faulty_harness(&store, IMPATIENT).await;
    let order_id = OrderId::new();
    h.faulty.fail("order:down", Fault::LoseAnswer);
    h.payments
        .api
        .charge(charge_request(order_id, "tok_visa", 400, "order:down"))
        .await
        .expect("charge");
    h.faulty.set_lookups_down(true);
    for _ in 0..3 {
        assert_eq!(h.module.reconcile_due().await, Ok(1));
        assert_eq!(h.module.reconcile_due().await, Ok(0), "backing off");
        assert_eq!(backlog(&h).await, awaiting(1));
        h.payments.clock.advance(chrono::Duration::hours(1));
    }
    assert_eq!(h.faulty.lookups.load(Ordering::SeqCst), 3);
    assert_eq!(
        h.payments.api.get_payment(order_id).await.map(|p| p.status),
        Ok(PaymentStatus::Pending)
    );
    h.faulty.set_lookups_down(false);
    assert_eq!(h.module.reconcile_due().await, Ok(1));
    assert_eq!(
        h.payments.api.get_payment(order_id).await.map(|p| p.status),
        Ok(PaymentStatus::Captured)
    );
}

/// The process dies while the provider decides (the charge future is dropped): the payment
/// is not looked up while its attempt could still be running, and is afterwards.
async fn a_charge_interrupted_by_a_crash_is_reconciled_after_its_deadline(store: TestStore) {
    let h = faulty_harness(&store, crate::PATIENT).await;
    let order_id = OrderId::new();
    h.faulty.fail("order:crash", Fault::HangAfterDeciding);
    let charging = tokio::spawn({
        let api = h.payments.api.clone();
        async move {
            api.charge(charge_request(order_id, "tok_visa", 650, "order:crash"))
                .await
        }
    });
    h.faulty.reached("order:crash").await;
    charging.abort();
    assert!(charging.await.is_err_and(|error| error.is_cancelled()));
    assert_eq!(
        h.module.reconcile_due().await,
        Ok(0),
        "its attempt may be running"
    );
    assert_eq!(backlog(&h).await, awaiting(1));

    h.payments
        .clock
        .advance(chrono::Duration::from_std(crate::PATIENT * 2).expect("small"));
    assert_eq!(h.module.reconcile_due().await, Ok(1));
    assert_eq!(
        h.payments.api.get_payment(order_id).await.map(|p| p.status),
        Ok(PaymentStatus::Captured)
    );
}

/// Two processes sweep the same store at once: each payment is looked up exactly once and
/// recorded once.
async fn concurrent_sweeps_look_each_payment_up_once(store: TestStore) {
    let first = faulty_harness(&store, IMPATIENT).await;
    // Another process: its own payments module, the same store, clock and provider.
    let second = PaymentsModule::with_provider(
        first.payments.db.clone(),
        first.payments.clock.clone(),
        first.faulty.clone(),
        PaymentsConfig {
            provider_timeout: IMPATIENT,
            ..crate::config()
        },
    );
    let mut orders = Vec::new();
    for i in 0..12 {
        let order_id = OrderId::new();
        let key = format!("order:race-{i}");
        first.faulty.fail(&key, Fault::LoseAnswer);
        first
            .payments
            .api
            .charge(charge_request(order_id, "tok_visa", 100, &key))
            .await
            .expect("charge");
        orders.push(order_id);
    }
    let sweeps = (0..4).map(|i| {
        let module = if i % 2 == 0 {
            first.module.clone()
        } else {
            second.clone()
        };
        tokio::spawn(async move { module.reconcile_due().await })
    });
    let asked: usize = join_all(sweeps)
        .await
        .into_iter()
        .map(|joined| joined.expect("task").expect("sweep"))
        .sum();
    assert_eq!(asked, 12);
    assert_eq!(
        first.faulty.lookups.load(Ordering::SeqCst),
        12,
        "one lookup per payment"
    );
    for order_id in orders {
        assert_eq!(
            first
                .payments
                .api
                .get_payment(order_id)
                .await
                .map(|p| p.status),
            Ok(PaymentStatus::Captured)
        );
    }
    assert_eq!(events(&first.payments.db, PaymentCaptured::NAME).await, 12);
    assert_eq!(backlog(&first).await, Backlog::default());
}

testkit::backend_tests!(
    a_lost_approval_is_pending_then_reconciled_to_captured,
    a_charge_past_the_deadline_is_pending_then_reconciled,
    a_charge_the_provider_never_received_is_voided,
    a_lost_decline_is_reconciled_to_failed,
    a_late_approval_of_a_cancelled_payment_is_refunded_until_confirmed,
    an_unanswered_lookup_is_asked_again_after_a_backoff,
    a_charge_interrupted_by_a_crash_is_reconciled_after_its_deadline,
    concurrent_sweeps_look_each_payment_up_once,
);

/// When a plan's caller gives the payment up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cancel {
    Never,
    /// Before charging: a tombstone, and the charge is refused.
    Before,
    /// While the provider holds the charge.
    During,
    /// Right after the charge answered.
    After,
    /// After a first sweep ran (a captured payment is then refunded).
    Late,
}

/// What happens to one order's payment.
#[derive(Debug, Clone)]
struct Plan {
    token: &'static str,
    amount: i64,
    fault: Option<Fault>,
    /// The caller's process dies at the fault point (the charge future is dropped).
    crash: bool,
    cancel: Cancel,
    /// The caller charges again before any sweep (orders' recovery does).
    retry: bool,
}

impl Plan {
    /// Whether the charge is held at a fault point until payments' deadline, so the test
    /// can act while it is held (crash, cancel during).
    fn holds(&self) -> bool {
        match self.fault {
            Some(Fault::HangBeforeReceiving) => true,
            // `tok_slow` would keep the provider deciding until after the deadline.
            Some(Fault::HangAfterDeciding) => self.token != "tok_slow",
            _ => false,
        }
    }
}

/// The whole run: the plans, and how the provider behaves around them.
#[derive(Debug, Clone)]
struct Run {
    plans: Vec<Plan>,
    lookups_down_midway: bool,
    refunds_down_midway: bool,
    refunds_down_late: bool,
}

fn plan() -> impl Strategy<Value = Plan> {
    let token = prop_oneof![
        4 => Just("tok_visa"),
        1 => Just("tok_declined"),
        1 => Just("tok_slow"),
    ];
    let fault = prop_oneof![
        3 => Just(None),
        1 => Just(Some(Fault::FailBeforeReceiving)),
        1 => Just(Some(Fault::LoseAnswer)),
        1 => Just(Some(Fault::HangBeforeReceiving)),
        1 => Just(Some(Fault::HangAfterDeciding)),
    ];
    let cancel = prop_oneof![
        2 => Just(Cancel::Never),
        1 => Just(Cancel::Before),
        1 => Just(Cancel::During),
        1 => Just(Cancel::After),
        1 => Just(Cancel::Late),
    ];
    (
        token,
        1i64..5000,
        fault,
        any::<bool>(),
        cancel,
        any::<bool>(),
    )
        .prop_map(|(token, amount, fault, crash, cancel, retry)| {
            let mut plan = Plan {
                token,
                amount,
                fault,
                crash,
                cancel,
                retry,
            };
            // Only a held charge can be crashed or cancelled while held; a tombstone's
            // charge never reaches the provider.
            if !plan.holds() || plan.cancel == Cancel::Before {
                plan.crash = false;
                if plan.cancel == Cancel::During {
                    plan.cancel = Cancel::After;
                }
            }
            plan
        })
}

fn run() -> impl Strategy<Value = Run> {
    (
        proptest::collection::vec(plan(), 1..10),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(plans, lookups_down_midway, refunds_down_midway, refunds_down_late)| Run {
                plans,
                lookups_down_midway,
                refunds_down_midway,
                refunds_down_late,
            },
        )
}

/// Plays the run against payments in front of a faulty provider, heals the provider, runs
/// the sweeps until idle and checks that payments' books match the provider's.
async fn play(h: &FaultyHarness, run: Run) -> Result<(), TestCaseError> {
    let api = &h.payments.api;
    let mut orders = Vec::new();
    for plan in &run.plans {
        let order_id = OrderId::new();
        let key = format!("order:{order_id}");
        let request = charge_request(order_id, plan.token, plan.amount, &key);
        if plan.cancel == Cancel::Before {
            api.cancel(order_id).await.expect("cancel before");
        }
        if let Some(fault) = plan.fault {
            h.faulty.fail(&key, fault);
        }
        if plan.holds() && (plan.crash || plan.cancel == Cancel::During) {
            let charging = tokio::spawn({
                let api = api.clone();
                let request = request.clone();
                async move { api.charge(request).await }
            });
            h.faulty.reached(&key).await;
            if plan.cancel == Cancel::During {
                api.cancel(order_id).await.expect("cancel during");
            }
            if plan.crash {
                charging.abort();
                let _ = charging.await;
            } else {
                charging.await.expect("task").expect("charge");
            }
        } else {
            api.charge(request.clone()).await.expect("charge");
        }
        if plan.cancel == Cancel::After {
            api.cancel(order_id).await.expect("cancel after");
        }
        if plan.retry {
            api.charge(request).await.expect("retry");
        }
        orders.push((order_id, key));
    }

    // A first sweep, maybe while the provider is down.
    h.faulty.set_lookups_down(run.lookups_down_midway);
    h.faulty.set_refunds_down(run.refunds_down_midway);
    h.module.reconcile_due().await.expect("sweep");
    h.module.confirm_refunds_due().await.expect("refunds");
    h.faulty.set_lookups_down(false);
    h.faulty.set_refunds_down(run.refunds_down_late);
    for (plan, (order_id, _)) in run.plans.iter().zip(&orders) {
        if plan.cancel == Cancel::Late {
            // A refund the provider refuses now is recorded and left to the refund sweep.
            let cancelled = api.cancel(*order_id).await;
            prop_assert!(
                cancelled.is_ok() || run.refunds_down_late,
                "{:?}",
                cancelled
            );
        }
    }

    h.faulty.set_refunds_down(false);
    sweep_until_idle(&h.payments.service, &h.payments.clock, 10).await;
    prop_assert_eq!(
        h.payments.service.backlog().await.expect("backlog"),
        Backlog::default(),
        "nothing left to ask or confirm"
    );
    let db = &h.payments.db;
    for (plan, (order_id, key)) in run.plans.iter().zip(&orders) {
        let payment = api.get_payment(*order_id).await.expect("payment");
        let kept = payment.captured.amount_minor() - payment.refunded.amount_minor();
        prop_assert!(
            payment.status != PaymentStatus::Pending,
            "{:?} {:?}",
            plan,
            payment
        );
        prop_assert_eq!(
            h.payments.provider.held(key),
            kept,
            "the provider holds what payments says: {:?} {:?}",
            plan,
            payment
        );
        if payment.status == PaymentStatus::Voided {
            prop_assert_eq!(kept, 0, "a voided payment holds nothing: {:?}", plan);
        }
        // Every change was announced once, truthfully.
        let announced = |name| events_of(db, name, *order_id);
        prop_assert_eq!(
            announced(PaymentCaptured::NAME).await,
            i64::from(payment.captured.amount_minor() > 0),
            "{:?} {:?}",
            plan,
            payment
        );
        prop_assert_eq!(
            announced(PaymentRefunded::NAME).await,
            i64::from(payment.refunded.amount_minor() > 0),
            "{:?} {:?}",
            plan,
            payment
        );
        prop_assert_eq!(
            announced(PaymentFailed::NAME).await,
            i64::from(payment.status == PaymentStatus::Failed),
            "{:?} {:?}",
            plan,
            payment
        );
    }
    Ok(())
}

/// The invariant of reconciliation, over random charges with lost answers, failures before
/// the provider, timeouts, crashes, cancels at every point and a provider that is down for
/// a while: once the sweeps are idle with a healthy provider, for every payment the money
/// the provider holds is `captured - refunded` in payments' books, no payment is pending,
/// and a voided payment holds nothing.
fn books_match_the_provider_after_reconciliation(backend: Backend) {
    let test = PropertyTest::new(backend);
    let db = test.block_on(crate::connect(test.store()));
    test.check(16, run(), |run| {
        test.block_on(async {
            // A provider and a clock of its own per case; the store is shared.
            let h = faulty_harness_on(db.clone(), crate::clock(), Duration::from_millis(30));
            play(&h, run).await
        })
    });
}

#[test]
fn books_match_the_provider_after_reconciliation_on_sqlite() {
    books_match_the_provider_after_reconciliation(Backend::Sqlite);
}

#[test]
fn books_match_the_provider_after_reconciliation_on_postgres() {
    books_match_the_provider_after_reconciliation(Backend::Postgres);
}
