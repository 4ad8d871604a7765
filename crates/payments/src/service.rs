//! `PaymentsService`: payments' application service, the implementation of `PaymentsApi`
//! (and of partial refunds, payments' own operation). It orchestrates: `domain` decides,
//! `store` holds the SQL, `provider` talks to the payment provider.
//!
//! A charge is recorded as `pending` and committed *before* the provider is asked, so an
//! interrupted charge is visible: the next call with the same key asks the provider again
//! (the provider charges at most once per key) and completes it, and `cancel` can void it.
//! Every change of state is a conditional `UPDATE ... WHERE status = ...`: when callers
//! race, exactly one of them moves the payment and publishes the event, in the same
//! transaction; the others read what won. The provider is never called inside a
//! transaction: a slow provider must not hold a database connection.
//!
//! Payments puts its own deadline (`provider_timeout`) on every provider call. A charge
//! whose answer it did not hear (the deadline passed, the provider failed, the process
//! died) stays `pending` and due for reconciliation (`reconcile_at`): [`PaymentsService::
//! reconcile_due`] looks the charge up by its key until the provider says what happened,
//! and records it. A charge approved after its payment was voided is money owed back: it
//! is recorded as captured and refunded in full, with a refund that
//! [`PaymentsService::confirm_refunds_due`] sends to the provider until it confirms.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kernel::{Clock, IdempotencyKey, Money, OrderId};
use messaging::Outbox;
use payments_api::{
    ChargeRequest, Payment, PaymentCaptured, PaymentFailed, PaymentRefunded, PaymentStatus,
    PaymentsApi, PaymentsError,
};
use sea_orm::{DatabaseConnection, TransactionTrait};
use uuid::Uuid;

use crate::PaymentsConfig;
use crate::domain::{self, Reconcile, RefundRequest, Repeat};
use crate::provider::{PaymentProvider, ProviderError, ProviderOutcome};
use crate::store::{self, Outcome, payments, refunds};

/// How often a change is retried after losing a race to a concurrent caller. Every lost
/// race means another caller moved the payment on, so a second look normally settles it.
const MAX_ATTEMPTS: usize = 3;

/// Rows a sweep takes per pass.
const SWEEP_BATCH: u64 = 50;

/// Charges whose answer payments did not hear, by cause (`timeout`, `provider_error`).
pub const OUTCOMES_UNKNOWN: &str = "shop_payments_outcome_unknown_total";
/// Lookups of the reconciliation sweep, by what they led to (`captured`, `failed`,
/// `voided`, `late_approval`, `nothing_taken`, `already_known`, `unanswered`).
pub const RECONCILED: &str = "shop_payments_reconciled_total";
/// Payments waiting for the provider's answer (a gauge, set by every sweep).
pub const AWAITING_RECONCILIATION: &str = "shop_payments_awaiting_reconciliation";
/// Attempts to have the provider confirm a refund, by result (`confirmed`, `failed`).
pub const REFUND_ATTEMPTS: &str = "shop_payments_refund_attempts_total";
/// Refunds the provider has not confirmed yet (a gauge, set by every sweep).
pub const REFUNDS_UNCONFIRMED: &str = "shop_payments_refunds_unconfirmed";

/// What payments is still waiting for from the provider.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Payments whose charge's outcome is not known yet.
    pub awaiting_reconciliation: u64,
    /// Refunds recorded but not confirmed by the provider.
    pub unconfirmed_refunds: u64,
}

/// Why a provider call gave no answer.
#[derive(Debug)]
enum NoAnswer {
    TimedOut,
    Failed(ProviderError),
}

impl NoAnswer {
    fn cause(&self) -> &'static str {
        match self {
            Self::TimedOut => "timeout",
            Self::Failed(_) => "provider_error",
        }
    }
}

impl std::fmt::Display for NoAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TimedOut => f.write_str("no answer within the provider timeout"),
            Self::Failed(error) => error.fmt(f),
        }
    }
}

#[derive(Debug)]
pub struct PaymentsService {
    db: DatabaseConnection,
    clock: Arc<dyn Clock>,
    provider: Arc<dyn PaymentProvider>,
    outbox: Outbox,
    provider_timeout: Duration,
    retry_base: Duration,
    retry_max: Duration,
    /// Wakes the reconciliation sweep when work is left for it.
    pub(crate) sweep: db_kit::wake::Wake,
}

/// The outcome of trying to record a refund.
enum Recorded {
    /// The refund row, the new totals and the event are committed.
    Refund(refunds::Model),
    /// A concurrent change got there first; look again.
    Raced,
}

impl PaymentsService {
    pub fn new(
        db: DatabaseConnection,
        clock: Arc<dyn Clock>,
        provider: Arc<dyn PaymentProvider>,
        outbox: Outbox,
        config: &PaymentsConfig,
    ) -> Self {
        Self {
            db,
            clock,
            provider,
            outbox,
            provider_timeout: config.provider_timeout,
            retry_base: config.retry_base,
            retry_max: config.retry_max,
            sweep: db_kit::wake::Wake::new(),
        }
    }

    /// Awaits a provider call within payments' own deadline.
    async fn ask<T>(
        &self,
        call: impl Future<Output = Result<T, ProviderError>>,
    ) -> Result<T, NoAnswer> {
        match tokio::time::timeout(self.provider_timeout, call).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(error)) => Err(NoAnswer::Failed(error)),
            Err(_elapsed) => Err(NoAnswer::TimedOut),
        }
    }

    fn next_attempt(&self, attempts: i32) -> chrono::DateTime<chrono::Utc> {
        domain::next_attempt(
            self.clock.now(),
            attempts,
            self.provider_timeout,
            self.retry_base,
            self.retry_max,
        )
    }

    async fn reread(&self, id: Uuid) -> Result<payments::Model, PaymentsError> {
        store::find_by_id(&self.db, id)
            .await
            .map_err(db_kit::internal)?
            .ok_or_else(db_kit::missing_row)
    }

    async fn current(&self, id: Uuid) -> Result<Payment, PaymentsError> {
        store::to_payment(self.reread(id).await?).map_err(db_kit::internal)
    }

    async fn payment_of(
        &self,
        order_id: OrderId,
    ) -> Result<Option<payments::Model>, PaymentsError> {
        store::find_by_order(&self.db, order_id)
            .await
            .map_err(db_kit::internal)
    }

    /// Records the charge as pending, due for reconciliation once its first attempt is
    /// over, or finds the payment a concurrent call recorded. Says which (`true`: inserted).
    async fn insert_pending(
        &self,
        request: &ChargeRequest,
        fingerprint: &str,
    ) -> Result<(payments::Model, bool), PaymentsError> {
        let now = self.clock.now();
        let reconcile_at = domain::attempt_deadline(now, self.provider_timeout);
        let inserted =
            store::insert_pending(&self.db, request, fingerprint, now, reconcile_at).await;
        match inserted {
            Ok(row) => {
                tracing::info!(payment_id = %row.id, "payment pending");
                Ok((row, true))
            }
            Err(error) if db_kit::is_unique_violation(&error) => {
                // Either a concurrent charge of this order inserted first (carry on with its
                // row), or the key already belongs to another order's payment.
                if let Some(row) = self.payment_of(request.order_id).await? {
                    return Ok((row, false));
                }
                let owner = store::find_by_key(&self.db, request.idempotency_key.as_str())
                    .await
                    .map_err(db_kit::internal)?;
                if owner.is_some() {
                    tracing::info!("charge refused: key belongs to another order");
                    return Err(PaymentsError::IdempotencyKeyReused);
                }
                Err(db_kit::missing_row())
            }
            Err(error) => Err(db_kit::internal(error)),
        }
    }

    /// Asks the provider (again) for a pending payment and stores its answer, with the
    /// event announcing it, unless another caller stored an answer first. `fresh` says this
    /// call just recorded the payment (whose first attempt is already scheduled). An answer
    /// that does not come within payments' deadline leaves the payment pending, due for
    /// reconciliation, and the caller gets it as such.
    async fn complete(
        &self,
        row: payments::Model,
        request: &ChargeRequest,
        fresh: bool,
    ) -> Result<Payment, PaymentsError> {
        if !fresh {
            let deadline = domain::attempt_deadline(self.clock.now(), self.provider_timeout);
            let pending = store::start_attempt(&self.db, row.id, deadline)
                .await
                .map_err(db_kit::internal)?;
            if !pending {
                // Its outcome was recorded meanwhile (or it was voided): answer it as it is.
                return self.current(row.id).await;
            }
        }
        let answered = self
            .ask(self.provider.charge(
                request.idempotency_key.as_str(),
                request.amount,
                request.payment_token.as_str(),
            ))
            .await;
        let outcome = match answered {
            Ok(outcome) => outcome,
            Err(no_answer) => return self.outcome_unknown(row.id, &no_answer).await,
        };
        let stored = match &outcome {
            ProviderOutcome::Approved { reference } => Outcome {
                status: PaymentStatus::Captured,
                captured_minor: request.amount.amount_minor(),
                provider_reference: Some(reference.clone()),
                failure_reason: None,
            },
            ProviderOutcome::Declined(reason) => Outcome {
                status: PaymentStatus::Failed,
                captured_minor: 0,
                provider_reference: None,
                failure_reason: Some(*reason),
            },
        };
        let now = kernel::stored_precision(self.clock.now());
        // If this call stores the outcome, the payment is what it writes: no need to read it
        // back.
        let payment =
            store::to_payment(stored.applied_to(row.clone(), now)).map_err(db_kit::internal)?;
        let recorded = self
            .store_and_announce(row.id, stored, None, &payment, outcome.clone(), now)
            .await?;
        if !recorded {
            let current = self.reread(row.id).await?;
            let status = store::decode_status(&current.status).map_err(db_kit::internal)?;
            if status == PaymentStatus::Voided {
                // The payment was given up while the provider decided: what it decided is
                // now known, and an approval is money owed back.
                match outcome {
                    ProviderOutcome::Approved { reference } => {
                        self.record_late_approval(&current, &reference, None)
                            .await?;
                    }
                    ProviderOutcome::Declined(_) => {
                        store::settle_voided(&self.db, current.id, None)
                            .await
                            .map_err(db_kit::internal)?;
                    }
                }
            }
            return self.current(row.id).await;
        }
        Ok(payment)
    }

    async fn current_in(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        id: Uuid,
    ) -> Result<Payment, PaymentsError> {
        let updated = store::find_by_id(txn, id)
            .await
            .map_err(db_kit::internal)?
            .ok_or_else(db_kit::missing_row)?;
        store::to_payment(updated).map_err(db_kit::internal)
    }

    /// Stores what the provider decided for a pending payment (`stored`, which makes it
    /// `payment`; for a sweep, only while `claim` still holds it) with the event announcing
    /// it, together or not at all (`Outbox::commit_change`: one statement on Postgres).
    /// Returns whether it was stored: when two callers race, exactly one stores it.
    async fn store_and_announce(
        &self,
        id: Uuid,
        stored: Outcome,
        claim: Option<Uuid>,
        payment: &Payment,
        outcome: ProviderOutcome,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, PaymentsError> {
        let change = store::record_outcome(id, stored, claim, now);
        let published = match outcome {
            ProviderOutcome::Approved { reference } => {
                let event = PaymentCaptured {
                    payment_id: payment.id,
                    order_id: payment.order_id,
                    customer_id: payment.customer_id,
                    amount: payment.captured,
                    provider_reference: reference,
                };
                self.outbox
                    .commit_change(&self.db, change, &event, now)
                    .await
            }
            ProviderOutcome::Declined(reason) => {
                let event = PaymentFailed {
                    payment_id: payment.id,
                    order_id: payment.order_id,
                    customer_id: payment.customer_id,
                    amount: payment.amount,
                    reason,
                };
                self.outbox
                    .commit_change(&self.db, change, &event, now)
                    .await
            }
        };
        if published.map_err(db_kit::internal)?.is_none() {
            return Ok(false);
        }
        match payment.failure_reason {
            None => tracing::info!(payment_id = %payment.id, "payment captured"),
            Some(reason) => tracing::info!(payment_id = %payment.id, ?reason, "payment failed"),
        }
        Ok(true)
    }

    /// The provider's answer to a charge was not heard: the charge may or may not have been
    /// made. The payment stays as it is (pending, or voided if its caller gave up), due for
    /// reconciliation now, and is answered as it stands.
    async fn outcome_unknown(
        &self,
        id: Uuid,
        no_answer: &NoAnswer,
    ) -> Result<Payment, PaymentsError> {
        store::mark_unknown(&self.db, id, self.clock.now())
            .await
            .map_err(db_kit::internal)?;
        self.sweep.notify();
        metrics::counter!(OUTCOMES_UNKNOWN, "cause" => no_answer.cause()).increment(1);
        tracing::warn!(
            payment_id = %id,
            cause = no_answer.cause(),
            error = %no_answer,
            "charge outcome unknown; payment left to reconciliation"
        );
        self.current(id).await
    }

    /// The provider approved the charge of a voided payment: the money was taken for an order
    /// that gave the payment up. Records it as captured and refunded in full (the payment
    /// stays voided: nothing stays taken), with a refund row the provider has yet to confirm
    /// and the events `PaymentCaptured` and `PaymentRefunded`, in one transaction; then asks
    /// the provider for the refund once. Whatever happens to that request, the refund sweep
    /// retries it until the provider confirms. Returns whether this call recorded it (a sweep
    /// passes its `claim`; a concurrent recording makes this a no-op).
    async fn record_late_approval(
        &self,
        row: &payments::Model,
        reference: &str,
        claim: Option<Uuid>,
    ) -> Result<bool, PaymentsError> {
        let now = self.clock.now();
        let txn = self.db.begin().await.map_err(db_kit::internal)?;
        if !store::record_late_approval(&txn, row.id, reference, claim, now)
            .await
            .map_err(db_kit::internal)?
        {
            txn.rollback().await.map_err(db_kit::internal)?;
            return Ok(false);
        }
        let order_id = OrderId::from_uuid(row.order_id);
        let retry_at = domain::attempt_deadline(now, self.provider_timeout);
        let refund = store::insert_refund(
            &txn,
            row.id,
            &domain::cancel_key(order_id),
            row.amount_minor,
            now,
            retry_at,
        )
        .await
        .map_err(db_kit::internal)?;
        let payment = self.current_in(&txn, row.id).await?;
        let captured = PaymentCaptured {
            payment_id: payment.id,
            order_id: payment.order_id,
            customer_id: payment.customer_id,
            amount: payment.captured,
            provider_reference: reference.to_owned(),
        };
        self.outbox
            .append(&txn, &captured, now)
            .await
            .map_err(db_kit::internal)?;
        let refunded = PaymentRefunded {
            payment_id: payment.id,
            order_id: payment.order_id,
            customer_id: payment.customer_id,
            amount: payment.refunded,
            refunded_total: payment.refunded,
        };
        self.outbox
            .commit_with(txn, &refunded, now)
            .await
            .map_err(db_kit::internal)?;
        tracing::warn!(
            payment_id = %payment.id,
            %reference,
            amount = %payment.captured,
            "late approval of a voided payment; refund owed"
        );
        let updated = self.reread(row.id).await?;
        // The refund is durable now; this first request only saves the sweep a turn.
        let _ = self.send_refund(&updated, &refund).await;
        Ok(true)
    }

    /// Asks the provider to make a recorded refund (idempotent per refund key) within
    /// payments' deadline, and stores its reference. A refund the provider does not confirm
    /// stays due for the refund sweep.
    async fn send_refund(
        &self,
        row: &payments::Model,
        refund: &refunds::Model,
    ) -> Result<(), NoAnswer> {
        // Committed and due for the refund sweep until confirmed: the sweep learns when.
        self.sweep.notify();
        let amount = store::refund_amount(row, refund).map_err(|error| {
            tracing::error!(refund_id = %refund.id, %error, "a refund's amount is unreadable");
            NoAnswer::Failed(ProviderError::Unavailable {
                reason: "unreadable refund".into(),
            })
        })?;
        let Some(charge) = row.provider_reference.as_deref() else {
            tracing::error!(payment_id = %row.id, "a refunded payment has no charge reference");
            return Err(NoAnswer::Failed(ProviderError::UnknownCharge {
                reference: String::new(),
            }));
        };
        let answered = self
            .ask(
                self.provider
                    .refund(charge, amount, &refund.idempotency_key),
            )
            .await;
        let reference = match answered {
            Ok(reference) => reference,
            Err(no_answer) => {
                metrics::counter!(REFUND_ATTEMPTS, "result" => "failed").increment(1);
                tracing::warn!(
                    refund_id = %refund.id,
                    attempts = refund.attempts,
                    error = %no_answer,
                    "provider did not confirm the refund; it will be retried"
                );
                return Err(no_answer);
            }
        };
        if let Err(error) = store::set_refund_reference(&self.db, refund.id, reference).await {
            // The provider refunded (idempotently per key): the next attempt stores it.
            tracing::error!(refund_id = %refund.id, %error, "refund confirmation not stored");
            return Err(NoAnswer::Failed(ProviderError::Unavailable {
                reason: "confirmation not stored".into(),
            }));
        }
        metrics::counter!(REFUND_ATTEMPTS, "result" => "confirmed").increment(1);
        tracing::info!(refund_id = %refund.id, payment_id = %row.id, "refund confirmed");
        Ok(())
    }

    /// Refunds `requested` (or everything still refundable) of the order's payment, keyed
    /// by `key`. Shared by `refund` and `cancel`.
    async fn refund_payment(
        &self,
        order_id: OrderId,
        requested: Option<Money>,
        key: &str,
    ) -> Result<Payment, PaymentsError> {
        for _ in 0..MAX_ATTEMPTS {
            let row = self
                .payment_of(order_id)
                .await?
                .ok_or(PaymentsError::PaymentNotFound { order_id })?;
            let previous = store::find_refund_by_key(&self.db, key)
                .await
                .map_err(db_kit::internal)?;
            if let Some(previous) = previous {
                return self.repeated_refund(row, previous, requested).await;
            }
            let payment = store::to_payment(row.clone()).map_err(db_kit::internal)?;
            domain::check_refundable(payment.status)?;
            let amount = domain::refund_amount(payment.captured, payment.refunded, requested)?;
            match self.record_refund(&row, amount, key).await? {
                Recorded::Refund(refund) => return self.confirm_refund(row, refund).await,
                Recorded::Raced => continue,
            }
        }
        tracing::error!("payment kept changing under us");
        Err(PaymentsError::Internal)
    }

    /// Reserves `amount` of the payment for a refund: the new totals and status, the refund
    /// row and `PaymentRefunded`, in one transaction. The update only applies while the
    /// payment is refundable and the refund fits in what was captured, so concurrent
    /// refunds can never give back more than was taken (and the schema's `CHECK` refuses
    /// it anyway).
    async fn record_refund(
        &self,
        row: &payments::Model,
        amount: Money,
        key: &str,
    ) -> Result<Recorded, PaymentsError> {
        let now = self.clock.now();
        let txn = self.db.begin().await.map_err(db_kit::internal)?;
        if !store::add_refund(&txn, row.id, amount.amount_minor(), now)
            .await
            .map_err(db_kit::internal)?
        {
            txn.rollback().await.map_err(db_kit::internal)?;
            return Ok(Recorded::Raced);
        }
        let retry_at = domain::attempt_deadline(now, self.provider_timeout);
        let inserted =
            store::insert_refund(&txn, row.id, key, amount.amount_minor(), now, retry_at).await;
        let refund = match inserted {
            Ok(refund) => refund,
            Err(error) if db_kit::is_unique_violation(&error) => {
                // The same key, concurrently: the next look finds its refund.
                txn.rollback().await.map_err(db_kit::internal)?;
                return Ok(Recorded::Raced);
            }
            Err(error) => return Err(db_kit::internal(error)),
        };
        let updated = store::find_by_id(&txn, row.id)
            .await
            .map_err(db_kit::internal)?
            .ok_or_else(db_kit::missing_row)?;
        let payment = store::to_payment(updated).map_err(db_kit::internal)?;
        let event = PaymentRefunded {
            payment_id: payment.id,
            order_id: payment.order_id,
            customer_id: payment.customer_id,
            amount,
            refunded_total: payment.refunded,
        };
        self.outbox
            .commit_with(txn, &event, now)
            .await
            .map_err(db_kit::internal)?;
        tracing::info!(
            payment_id = %payment.id,
            %amount,
            refunded_total = %payment.refunded,
            "payment refunded"
        );
        Ok(Recorded::Refund(refund))
    }

    /// A refund key seen before: the same refund again is answered with the payment as it
    /// is (finishing the provider's part if it never was); anything else is a reused key.
    /// A request without an amount means "whatever remained" and matches the refund that
    /// key made.
    async fn repeated_refund(
        &self,
        row: payments::Model,
        previous: refunds::Model,
        requested: Option<Money>,
    ) -> Result<Payment, PaymentsError> {
        let same_amount = requested.is_none_or(|amount| {
            amount.amount_minor() == previous.amount_minor
                && amount.currency().as_str() == row.currency
        });
        if previous.payment_id != row.id || !same_amount {
            tracing::info!("refund refused: idempotency key reused");
            return Err(PaymentsError::IdempotencyKeyReused);
        }
        self.confirm_refund(row, previous).await
    }

    /// Makes the provider give the money back for a recorded refund, once (the provider is
    /// idempotent per refund key), and stores its reference. If the provider does not
    /// confirm, the caller hears so (and may retry with the same key); the refund sweep
    /// retries it meanwhile.
    async fn confirm_refund(
        &self,
        row: payments::Model,
        refund: refunds::Model,
    ) -> Result<Payment, PaymentsError> {
        if refund.provider_reference.is_none() && self.send_refund(&row, &refund).await.is_err() {
            return Err(PaymentsError::Unavailable {
                reason: "the provider did not confirm the refund; retry with the same key".into(),
            });
        }
        self.current(row.id).await
    }

    /// Refunds `amount` (or everything still refundable) of an order's payment, keyed by the
    /// caller's idempotency key: a repeat with the same key and amount answers the same
    /// refund, another amount under that key is `idempotency_key_reused`. Never more than
    /// was captured. Publishes `PaymentRefunded`.
    #[tracing::instrument(
        skip(self, request),
        fields(order_id = %request.order_id, key = %request.idempotency_key)
    )]
    pub async fn refund(&self, request: RefundRequest) -> Result<Payment, PaymentsError> {
        domain::validate_refund(&request)?;
        self.refund_payment(
            request.order_id,
            request.amount,
            request.idempotency_key.as_str(),
        )
        .await
    }

    /// Refunds whatever remains under payments' own key for the order; a payment with
    /// nothing left to refund is answered as it stands. Shared by `cancel` and
    /// `refund_order`, so both mean the same refund.
    async fn refund_everything(&self, order_id: OrderId) -> Result<Payment, PaymentsError> {
        let key: IdempotencyKey = domain::cancel_idempotency_key(order_id)?;
        match self.refund_payment(order_id, None, key.as_str()).await {
            // Refunded in full by earlier refunds: nothing left to give back.
            Err(PaymentsError::NotRefundable {
                status: PaymentStatus::Refunded,
            })
            | Err(PaymentsError::RefundExceedsCapture { .. }) => self.get_payment(order_id).await,
            other => other,
        }
    }
}

/// The sweeps: what payments asks the provider in the background until it knows.
impl PaymentsService {
    /// One pass of the reconciliation sweep: takes up to a batch of payments whose charge's
    /// outcome is unknown and due for a lookup, asks the provider by the charge's key, and
    /// records what it learns. Safe with several sweeps running (in one process or many):
    /// each payment is claimed by a conditional update, so exactly one sweep asks about it,
    /// and its answer is recorded only while that claim holds. A lookup the provider does
    /// not answer is asked again later, backing off (`retry_base` doubling up to
    /// `retry_max`). Returns how many payments this pass asked about.
    #[tracing::instrument(skip(self))]
    pub async fn reconcile_due(&self) -> Result<usize, PaymentsError> {
        let now = self.clock.now();
        let due = store::find_due(&self.db, now, SWEEP_BATCH)
            .await
            .map_err(db_kit::internal)?;
        let mut asked = 0;
        for row in due {
            let claim = Uuid::now_v7();
            let next = self.next_attempt(row.reconcile_attempts.saturating_add(1));
            let claimed = store::claim(&self.db, row.id, now, next, claim)
                .await
                .map_err(db_kit::internal)?;
            if claimed {
                asked += 1;
                self.reconcile(&row, claim).await?;
            }
        }
        self.report_backlog().await?;
        Ok(asked)
    }

    /// Looks up one claimed payment's charge and records the answer.
    async fn reconcile(&self, row: &payments::Model, claim: Uuid) -> Result<(), PaymentsError> {
        let attempts = row.reconcile_attempts.saturating_add(1);
        let lookup = match self.ask(self.provider.lookup(&row.idempotency_key)).await {
            Ok(lookup) => lookup,
            Err(no_answer) => {
                metrics::counter!(RECONCILED, "outcome" => "unanswered").increment(1);
                tracing::warn!(
                    payment_id = %row.id,
                    attempts,
                    error = %no_answer,
                    "charge lookup unanswered; asking again later"
                );
                return Ok(());
            }
        };
        for _ in 0..MAX_ATTEMPTS {
            let current = self.reread(row.id).await?;
            if current.reconcile_claim != Some(claim) {
                // Settled meanwhile, or a live charge attempt took over: the lookup is moot.
                return Ok(());
            }
            let status = store::decode_status(&current.status).map_err(db_kit::internal)?;
            let now = self.clock.now();
            let (recorded, outcome) =
                match domain::reconcile(status, current.captured_minor, &lookup) {
                    Reconcile::Capture { reference } => (
                        self.record_looked_up(
                            &current,
                            ProviderOutcome::Approved { reference },
                            claim,
                        )
                        .await?,
                        "captured",
                    ),
                    Reconcile::Fail(reason) => (
                        self.record_looked_up(&current, ProviderOutcome::Declined(reason), claim)
                            .await?,
                        "failed",
                    ),
                    Reconcile::Void => (
                        store::void_unreceived(&self.db, current.id, claim, now)
                            .await
                            .map_err(db_kit::internal)?,
                        "voided",
                    ),
                    Reconcile::RefundLateApproval { reference } => (
                        self.record_late_approval(&current, &reference, Some(claim))
                            .await?,
                        "late_approval",
                    ),
                    Reconcile::Settle => (
                        store::settle_voided(&self.db, current.id, Some(claim))
                            .await
                            .map_err(db_kit::internal)?,
                        "nothing_taken",
                    ),
                    Reconcile::Known => (
                        store::release_claim(&self.db, current.id, claim)
                            .await
                            .map_err(db_kit::internal)?,
                        "already_known",
                    ),
                };
            if recorded {
                metrics::counter!(RECONCILED, "outcome" => outcome).increment(1);
                tracing::info!(payment_id = %row.id, attempts, outcome, "payment reconciled");
                return Ok(());
            }
            // The payment changed under the claim (a cancel voided it): decide again.
        }
        // Still changing: the claim lapses at its next attempt and a later pass looks again.
        Ok(())
    }

    /// Stores the outcome a lookup found for a pending payment, with its event, while
    /// `claim` holds the payment. Returns whether it did.
    async fn record_looked_up(
        &self,
        row: &payments::Model,
        outcome: ProviderOutcome,
        claim: Uuid,
    ) -> Result<bool, PaymentsError> {
        let stored = match &outcome {
            ProviderOutcome::Approved { reference } => Outcome {
                status: PaymentStatus::Captured,
                captured_minor: row.amount_minor,
                provider_reference: Some(reference.clone()),
                failure_reason: None,
            },
            ProviderOutcome::Declined(reason) => Outcome {
                status: PaymentStatus::Failed,
                captured_minor: 0,
                provider_reference: None,
                failure_reason: Some(*reason),
            },
        };
        let now = kernel::stored_precision(self.clock.now());
        let id = row.id;
        let payment =
            store::to_payment(stored.applied_to(row.clone(), now)).map_err(db_kit::internal)?;
        self.store_and_announce(id, stored, Some(claim), &payment, outcome, now)
            .await
    }

    /// One pass of the refund sweep: takes up to a batch of refunds the provider has not
    /// confirmed and that are due, and asks the provider to make them (it is idempotent per
    /// refund key, so asking again never refunds twice). Each refund is claimed by a
    /// conditional update that also schedules its next attempt, backing off like lookups,
    /// so an unconfirmed refund is retried until the provider confirms it. Returns how many
    /// refunds this pass sent.
    #[tracing::instrument(skip(self))]
    pub async fn confirm_refunds_due(&self) -> Result<usize, PaymentsError> {
        let now = self.clock.now();
        let due = store::find_due_refunds(&self.db, now, SWEEP_BATCH)
            .await
            .map_err(db_kit::internal)?;
        let mut sent = 0;
        for refund in due {
            let next = self.next_attempt(refund.attempts.saturating_add(1));
            let claimed = store::claim_refund(&self.db, refund.id, now, next)
                .await
                .map_err(db_kit::internal)?;
            if claimed {
                sent += 1;
                let row = self.reread(refund.payment_id).await?;
                // Failures are logged and counted in `send_refund`; the claim scheduled the
                // next attempt.
                let _ = self.send_refund(&row, &refund).await;
            }
        }
        self.report_backlog().await?;
        Ok(sent)
    }

    /// Both sweeps, each until a pass finds less than a batch.
    pub async fn sweep(&self) -> Result<(), PaymentsError> {
        let batch = usize::try_from(SWEEP_BATCH).unwrap_or(usize::MAX);
        while self.reconcile_due().await? >= batch {}
        while self.confirm_refunds_due().await? >= batch {}
        Ok(())
    }

    /// What payments is still waiting for from the provider.
    pub async fn backlog(&self) -> Result<Backlog, PaymentsError> {
        let (awaiting_reconciliation, unconfirmed_refunds) =
            store::backlog(&self.db).await.map_err(db_kit::internal)?;
        Ok(Backlog {
            awaiting_reconciliation,
            unconfirmed_refunds,
        })
    }

    async fn report_backlog(&self) -> Result<(), PaymentsError> {
        let backlog = self.backlog().await?;
        metrics::gauge!(AWAITING_RECONCILIATION).set(backlog.awaiting_reconciliation as f64);
        metrics::gauge!(REFUNDS_UNCONFIRMED).set(backlog.unconfirmed_refunds as f64);
        Ok(())
    }
}

#[async_trait]
impl PaymentsApi for PaymentsService {
    #[tracing::instrument(
        skip(self, request),
        fields(order_id = %request.order_id, key = %request.idempotency_key)
    )]
    async fn charge(&self, request: ChargeRequest) -> Result<Payment, PaymentsError> {
        domain::validate_charge(&request)?;
        let fingerprint = domain::fingerprint(&request);
        // Recorded first, before anything is asked of the provider; a repeated charge (a
        // replayed step) meets its payment as a unique violation, so the first charge of an
        // order pays for no lookup.
        let (row, fresh) = self.insert_pending(&request, &fingerprint).await?;
        let status = store::decode_status(&row.status).map_err(db_kit::internal)?;
        let same_key = row.idempotency_key == request.idempotency_key.as_str();
        let same_fingerprint = row.fingerprint == fingerprint;
        match domain::repeat(status, same_key, same_fingerprint) {
            Repeat::Return => store::to_payment(row).map_err(db_kit::internal),
            Repeat::Resume => self.complete(row, &request, fresh).await,
            Repeat::KeyReused => {
                tracing::info!(same_key, "charge refused: idempotency key reused");
                Err(PaymentsError::IdempotencyKeyReused)
            }
        }
    }

    #[tracing::instrument(skip(self))]
    async fn cancel(&self, order_id: OrderId) -> Result<Payment, PaymentsError> {
        for _ in 0..MAX_ATTEMPTS {
            let Some(row) = self.payment_of(order_id).await? else {
                let key = domain::cancel_key(order_id);
                match store::insert_tombstone(&self.db, order_id, &key, self.clock.now()).await {
                    Ok(row) => {
                        tracing::info!(payment_id = %row.id, "payment voided before any charge");
                        return store::to_payment(row).map_err(db_kit::internal);
                    }
                    // A concurrent charge or cancel recorded the order first; look again.
                    Err(error) if db_kit::is_unique_violation(&error) => continue,
                    Err(error) => return Err(db_kit::internal(error)),
                }
            };
            match store::decode_status(&row.status).map_err(db_kit::internal)? {
                PaymentStatus::Pending => {
                    if !store::void_pending(&self.db, row.id, self.clock.now())
                        .await
                        .map_err(db_kit::internal)?
                    {
                        // The provider's answer was stored meanwhile; look again.
                        continue;
                    }
                    // What the provider did with the charge is still unknown: the payment
                    // stays due for reconciliation, which gives back anything it took.
                    tracing::info!(payment_id = %row.id, "pending payment voided");
                    return self
                        .payment_of(order_id)
                        .await?
                        .ok_or_else(db_kit::missing_row)
                        .and_then(|row| store::to_payment(row).map_err(db_kit::internal));
                }
                // A fully refunded payment goes through here too: if it was this cancel
                // that refunded it, a repeat finishes the provider's part if needed.
                PaymentStatus::Captured
                | PaymentStatus::PartiallyRefunded
                | PaymentStatus::Refunded => {
                    return self.refund_everything(order_id).await;
                }
                PaymentStatus::Failed | PaymentStatus::Voided => {
                    return store::to_payment(row).map_err(db_kit::internal);
                }
            }
        }
        tracing::error!("payment kept changing under us");
        Err(PaymentsError::Internal)
    }

    #[tracing::instrument(skip(self))]
    async fn refund_order(&self, order_id: OrderId) -> Result<Payment, PaymentsError> {
        self.refund_everything(order_id).await
    }

    #[tracing::instrument(skip(self))]
    async fn get_payment(&self, order_id: OrderId) -> Result<Payment, PaymentsError> {
        let row = self
            .payment_of(order_id)
            .await?
            .ok_or(PaymentsError::PaymentNotFound { order_id })?;
        store::to_payment(row).map_err(db_kit::internal)
    }
}

/// What the background sweep loop (`PaymentsModule::spawn_reconciliation`) needs.
impl PaymentsService {
    /// Both sweeps, then when the next payment or refund waiting for the provider becomes
    /// due (`None`: none is waiting).
    pub(crate) async fn sweep_and_learn(
        &self,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, PaymentsError> {
        self.sweep().await?;
        store::next_due(&self.db).await.map_err(db_kit::internal)
    }

    pub(crate) fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    pub(crate) fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }
}
