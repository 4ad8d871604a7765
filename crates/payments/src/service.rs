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

use std::sync::Arc;

use async_trait::async_trait;
use kernel::{Clock, IdempotencyKey, Money, OrderId};
use messaging::Outbox;
use payments_api::{
    ChargeRequest, Payment, PaymentCaptured, PaymentFailed, PaymentRefunded, PaymentStatus,
    PaymentsApi, PaymentsError,
};
use sea_orm::{DatabaseConnection, TransactionTrait};

use crate::domain::{self, RefundRequest, Repeat};
use crate::provider::{PaymentProvider, ProviderOutcome};
use crate::store::{self, Outcome, payments, refunds};

/// How often a change is retried after losing a race to a concurrent caller. Every lost
/// race means another caller moved the payment on, so a second look normally settles it.
const MAX_ATTEMPTS: usize = 3;

#[derive(Debug)]
pub struct PaymentsService {
    db: DatabaseConnection,
    clock: Arc<dyn Clock>,
    provider: Arc<dyn PaymentProvider>,
    outbox: Outbox,
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
    ) -> Self {
        Self {
            db,
            clock,
            provider,
            outbox,
        }
    }

    async fn payment_of(
        &self,
        order_id: OrderId,
    ) -> Result<Option<payments::Model>, PaymentsError> {
        store::find_by_order(&self.db, order_id)
            .await
            .map_err(db_kit::internal)
    }

    /// Records the charge as pending, or finds the payment a concurrent call recorded.
    async fn insert_pending(
        &self,
        request: &ChargeRequest,
        fingerprint: &str,
    ) -> Result<payments::Model, PaymentsError> {
        let inserted =
            store::insert_pending(&self.db, request, fingerprint, self.clock.now()).await;
        match inserted {
            Ok(row) => {
                tracing::info!(payment_id = %row.id, "payment pending");
                Ok(row)
            }
            Err(error) if db_kit::is_unique_violation(&error) => {
                // Either a concurrent charge of this order inserted first (carry on with its
                // row), or the key already belongs to another order's payment.
                if let Some(row) = self.payment_of(request.order_id).await? {
                    return Ok(row);
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
    /// event announcing it, unless another caller stored an answer first.
    async fn complete(
        &self,
        row: payments::Model,
        request: &ChargeRequest,
    ) -> Result<Payment, PaymentsError> {
        let outcome = self
            .provider
            .charge(
                request.idempotency_key.as_str(),
                request.amount,
                request.payment_token.as_str(),
            )
            .await;
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
        let now = self.clock.now();
        let txn = self.db.begin().await.map_err(db_kit::internal)?;
        let recorded = store::record_outcome(&txn, row.id, stored, now)
            .await
            .map_err(db_kit::internal)?;
        if !recorded {
            txn.rollback().await.map_err(db_kit::internal)?;
            let current = store::find_by_id(&self.db, row.id)
                .await
                .map_err(db_kit::internal)?
                .ok_or_else(db_kit::missing_row)?;
            let current = store::to_payment(current).map_err(db_kit::internal)?;
            if let (PaymentStatus::Voided, ProviderOutcome::Approved { reference }) =
                (current.status, &outcome)
            {
                self.refund_late_approval(&current, reference, request.amount)
                    .await;
            }
            return Ok(current);
        }
        let updated = store::find_by_id(&txn, row.id)
            .await
            .map_err(db_kit::internal)?
            .ok_or_else(db_kit::missing_row)?;
        let payment = store::to_payment(updated).map_err(db_kit::internal)?;
        let published = match outcome {
            ProviderOutcome::Approved { reference } => {
                let event = PaymentCaptured {
                    payment_id: payment.id,
                    order_id: payment.order_id,
                    customer_id: payment.customer_id,
                    amount: payment.captured,
                    provider_reference: reference,
                };
                self.outbox.commit_with(txn, &event, now).await
            }
            ProviderOutcome::Declined(reason) => {
                let event = PaymentFailed {
                    payment_id: payment.id,
                    order_id: payment.order_id,
                    customer_id: payment.customer_id,
                    amount: payment.amount,
                    reason,
                };
                self.outbox.commit_with(txn, &event, now).await
            }
        };
        published.map_err(db_kit::internal)?;
        match payment.failure_reason {
            None => tracing::info!(payment_id = %payment.id, "payment captured"),
            Some(reason) => tracing::info!(payment_id = %payment.id, ?reason, "payment failed"),
        }
        Ok(payment)
    }

    /// The provider approved a charge after its order gave up on it (the payment was voided
    /// meanwhile): give the money back at once, there is no order to charge for.
    async fn refund_late_approval(&self, payment: &Payment, reference: &str, amount: Money) {
        let key = domain::cancel_key(payment.order_id);
        match self.provider.refund(reference, amount, &key).await {
            Ok(refund_reference) => tracing::warn!(
                payment_id = %payment.id,
                %reference,
                %refund_reference,
                "late approval of a voided payment refunded"
            ),
            // Nothing retries this automatically: the voided payment answers every later
            // call as it is. The log line is what an operator refunds by hand from.
            Err(error) => tracing::error!(
                payment_id = %payment.id,
                %reference,
                %error,
                "late approval of a voided payment could not be refunded"
            ),
        }
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
        let inserted = store::insert_refund(&txn, row.id, key, amount.amount_minor(), now).await;
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
    /// idempotent per refund key), and stores its reference.
    async fn confirm_refund(
        &self,
        row: payments::Model,
        refund: refunds::Model,
    ) -> Result<Payment, PaymentsError> {
        if refund.provider_reference.is_none() {
            let amount = store::refund_amount(&row, &refund).map_err(db_kit::internal)?;
            let Some(charge) = row.provider_reference.as_deref() else {
                tracing::error!(payment_id = %row.id, "a refunded payment has no charge reference");
                return Err(PaymentsError::Internal);
            };
            let reference = self
                .provider
                .refund(charge, amount, &refund.idempotency_key)
                .await
                .map_err(|error| {
                    tracing::error!(refund_id = %refund.id, %error, "provider refund failed");
                    PaymentsError::Unavailable {
                        reason: "the provider did not confirm the refund; retry with the same key"
                            .into(),
                    }
                })?;
            store::set_refund_reference(&self.db, refund.id, reference)
                .await
                .map_err(db_kit::internal)?;
        }
        let current = store::find_by_id(&self.db, row.id)
            .await
            .map_err(db_kit::internal)?
            .ok_or_else(db_kit::missing_row)?;
        store::to_payment(current).map_err(db_kit::internal)
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

#[async_trait]
impl PaymentsApi for PaymentsService {
    #[tracing::instrument(
        skip(self, request),
        fields(order_id = %request.order_id, key = %request.idempotency_key)
    )]
    async fn charge(&self, request: ChargeRequest) -> Result<Payment, PaymentsError> {
        domain::validate_charge(&request)?;
        let fingerprint = domain::fingerprint(&request);
        let row = match self.payment_of(request.order_id).await? {
            Some(row) => row,
            None => self.insert_pending(&request, &fingerprint).await?,
        };
        let status = store::decode_status(&row.status).map_err(db_kit::internal)?;
        let same_key = row.idempotency_key == request.idempotency_key.as_str();
        let same_fingerprint = row.fingerprint == fingerprint;
        match domain::repeat(status, same_key, same_fingerprint) {
            Repeat::Return => store::to_payment(row).map_err(db_kit::internal),
            Repeat::Resume => self.complete(row, &request).await,
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
