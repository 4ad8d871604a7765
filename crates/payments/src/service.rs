//! `PaymentsService`, the in-process implementation of `PaymentsApi`.
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
use kernel::{Clock, Currency, Money, OrderId};
use messaging::Outbox;
use payments_api::{
    ChargeRequest, Payment, PaymentCaptured, PaymentFailed, PaymentRefunded, PaymentStatus,
    PaymentsApi, PaymentsError, RefundRequest,
};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter,
    TransactionTrait,
};
use uuid::Uuid;

use crate::domain::{self, Repeat};
use crate::provider::{PaymentProvider, ProviderOutcome};
use crate::store::{self, payments, refunds};

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
        let now = self.clock.now();
        let inserted = payments::ActiveModel {
            id: Set(Uuid::now_v7()),
            order_id: Set(request.order_id.as_uuid()),
            customer_id: Set(request.customer_id.as_uuid()),
            idempotency_key: Set(request.idempotency_key.clone()),
            fingerprint: Set(fingerprint.to_owned()),
            amount_minor: Set(request.amount.amount_minor()),
            currency: Set(request.amount.currency().to_string()),
            status: Set(store::status_to_str(PaymentStatus::Pending).to_owned()),
            captured_minor: Set(0),
            refunded_minor: Set(0),
            provider_reference: Set(None),
            failure_reason: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&self.db)
        .await;
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
                let owner = store::find_by_key(&self.db, &request.idempotency_key)
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
                &request.idempotency_key,
                request.amount,
                &request.payment_token,
            )
            .await;
        let (status, captured, reference, reason) = match &outcome {
            ProviderOutcome::Approved { reference } => (
                PaymentStatus::Captured,
                request.amount.amount_minor(),
                Some(reference.clone()),
                None,
            ),
            ProviderOutcome::Declined(reason) => (
                PaymentStatus::Failed,
                0,
                None,
                Some(store::reason_to_str(*reason).to_owned()),
            ),
        };
        let now = self.clock.now();
        let txn = self.db.begin().await.map_err(db_kit::internal)?;
        let changed = payments::Entity::update_many()
            .col_expr(
                payments::Column::Status,
                Expr::value(store::status_to_str(status)),
            )
            .col_expr(payments::Column::CapturedMinor, Expr::value(captured))
            .col_expr(payments::Column::ProviderReference, Expr::value(reference))
            .col_expr(payments::Column::FailureReason, Expr::value(reason))
            .col_expr(payments::Column::UpdatedAt, Expr::value(now))
            .filter(payments::Column::Id.eq(row.id))
            .filter(payments::Column::Status.eq(store::status_to_str(PaymentStatus::Pending)))
            .exec(&txn)
            .await
            .map_err(db_kit::internal)?
            .rows_affected;
        if changed == 0 {
            txn.rollback().await.map_err(db_kit::internal)?;
            let current = payments::Entity::find_by_id(row.id)
                .one(&self.db)
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
        let updated = payments::Entity::find_by_id(row.id)
            .one(&txn)
            .await
            .map_err(db_kit::internal)?
            .ok_or_else(db_kit::missing_row)?;
        let payment = store::to_payment(updated).map_err(db_kit::internal)?;
        match outcome {
            ProviderOutcome::Approved { reference } => {
                let event = PaymentCaptured {
                    payment_id: payment.id,
                    order_id: payment.order_id,
                    customer_id: payment.customer_id,
                    amount: payment.captured,
                    provider_reference: reference,
                };
                self.outbox
                    .append(&txn, &event, now)
                    .await
                    .map_err(db_kit::internal)?;
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
                    .append(&txn, &event, now)
                    .await
                    .map_err(db_kit::internal)?;
            }
        }
        txn.commit().await.map_err(db_kit::internal)?;
        self.outbox.notify();
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
        let x = amount.amount_minor();
        let refunded_after = Expr::col(payments::Column::RefundedMinor).add(x);
        let txn = self.db.begin().await.map_err(db_kit::internal)?;
        let changed = payments::Entity::update_many()
            .col_expr(payments::Column::RefundedMinor, refunded_after.clone())
            // Every expression of an UPDATE sees the row as it was, so this is the status
            // for the new total, decided by the database on the row it actually updates.
            .col_expr(
                payments::Column::Status,
                Expr::case(
                    refunded_after
                        .clone()
                        .gte(Expr::col(payments::Column::CapturedMinor)),
                    Expr::val(store::status_to_str(PaymentStatus::Refunded)),
                )
                .finally(Expr::val(store::status_to_str(
                    PaymentStatus::PartiallyRefunded,
                )))
                .into(),
            )
            .col_expr(payments::Column::UpdatedAt, Expr::value(now))
            .filter(payments::Column::Id.eq(row.id))
            .filter(payments::Column::Status.is_in([
                store::status_to_str(PaymentStatus::Captured),
                store::status_to_str(PaymentStatus::PartiallyRefunded),
            ]))
            .filter(refunded_after.lte(Expr::col(payments::Column::CapturedMinor)))
            .exec(&txn)
            .await
            .map_err(db_kit::internal)?
            .rows_affected;
        if changed == 0 {
            txn.rollback().await.map_err(db_kit::internal)?;
            return Ok(Recorded::Raced);
        }
        let inserted = refunds::ActiveModel {
            id: Set(Uuid::now_v7()),
            payment_id: Set(row.id),
            idempotency_key: Set(key.to_owned()),
            amount_minor: Set(x),
            provider_reference: Set(None),
            created_at: Set(now),
        }
        .insert(&txn)
        .await;
        let refund = match inserted {
            Ok(refund) => refund,
            Err(error) if db_kit::is_unique_violation(&error) => {
                // The same key, concurrently: the next look finds its refund.
                txn.rollback().await.map_err(db_kit::internal)?;
                return Ok(Recorded::Raced);
            }
            Err(error) => return Err(db_kit::internal(error)),
        };
        let updated = payments::Entity::find_by_id(row.id)
            .one(&txn)
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
            .append(&txn, &event, now)
            .await
            .map_err(db_kit::internal)?;
        txn.commit().await.map_err(db_kit::internal)?;
        self.outbox.notify();
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
            refunds::Entity::update_many()
                .col_expr(refunds::Column::ProviderReference, Expr::value(reference))
                .filter(refunds::Column::Id.eq(refund.id))
                .filter(refunds::Column::ProviderReference.is_null())
                .exec(&self.db)
                .await
                .map_err(db_kit::internal)?;
        }
        let current = payments::Entity::find_by_id(row.id)
            .one(&self.db)
            .await
            .map_err(db_kit::internal)?
            .ok_or_else(db_kit::missing_row)?;
        store::to_payment(current).map_err(db_kit::internal)
    }

    /// Records that the order gave up before any charge, so that a late charge is refused.
    /// Nothing about the charge is known: the tombstone is zero EUR for nobody (nil
    /// customer id), and its key is payments' own.
    async fn insert_tombstone(&self, order_id: OrderId) -> Result<payments::Model, sea_orm::DbErr> {
        let now = self.clock.now();
        payments::ActiveModel {
            id: Set(Uuid::now_v7()),
            order_id: Set(order_id.as_uuid()),
            customer_id: Set(Uuid::nil()),
            idempotency_key: Set(domain::cancel_key(order_id)),
            // No request was ever made, so no request can match it.
            fingerprint: Set(String::new()),
            amount_minor: Set(0),
            currency: Set(Currency::EUR.to_string()),
            status: Set(store::status_to_str(PaymentStatus::Voided).to_owned()),
            captured_minor: Set(0),
            refunded_minor: Set(0),
            provider_reference: Set(None),
            failure_reason: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&self.db)
        .await
    }

    /// `pending` → `voided`, if it is still pending.
    async fn void_pending(&self, row: &payments::Model) -> Result<bool, PaymentsError> {
        let changed = payments::Entity::update_many()
            .col_expr(
                payments::Column::Status,
                Expr::value(store::status_to_str(PaymentStatus::Voided)),
            )
            .col_expr(payments::Column::UpdatedAt, Expr::value(self.clock.now()))
            .filter(payments::Column::Id.eq(row.id))
            .filter(payments::Column::Status.eq(store::status_to_str(PaymentStatus::Pending)))
            .exec(&self.db)
            .await
            .map_err(db_kit::internal)?
            .rows_affected;
        Ok(changed == 1)
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
        let status = store::status_from_str(&row.status).map_err(db_kit::internal)?;
        let same_key = row.idempotency_key == request.idempotency_key;
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

    #[tracing::instrument(
        skip(self, request),
        fields(order_id = %request.order_id, key = %request.idempotency_key)
    )]
    async fn refund(&self, request: RefundRequest) -> Result<Payment, PaymentsError> {
        domain::validate_refund(&request)?;
        self.refund_payment(request.order_id, request.amount, &request.idempotency_key)
            .await
    }

    #[tracing::instrument(skip(self))]
    async fn cancel(&self, order_id: OrderId) -> Result<Payment, PaymentsError> {
        for _ in 0..MAX_ATTEMPTS {
            let Some(row) = self.payment_of(order_id).await? else {
                match self.insert_tombstone(order_id).await {
                    Ok(row) => {
                        tracing::info!(payment_id = %row.id, "payment voided before any charge");
                        return store::to_payment(row).map_err(db_kit::internal);
                    }
                    // A concurrent charge or cancel recorded the order first; look again.
                    Err(error) if db_kit::is_unique_violation(&error) => continue,
                    Err(error) => return Err(db_kit::internal(error)),
                }
            };
            match store::status_from_str(&row.status).map_err(db_kit::internal)? {
                PaymentStatus::Pending => {
                    if !self.void_pending(&row).await? {
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
                    let key = domain::cancel_key(order_id);
                    return match self.refund_payment(order_id, None, &key).await {
                        // Refunded in full by earlier refunds: nothing left to give back.
                        Err(PaymentsError::NotRefundable { .. }) => {
                            self.get_payment(order_id).await
                        }
                        other => other,
                    };
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
    async fn get_payment(&self, order_id: OrderId) -> Result<Payment, PaymentsError> {
        let row = self
            .payment_of(order_id)
            .await?
            .ok_or(PaymentsError::PaymentNotFound { order_id })?;
        store::to_payment(row).map_err(db_kit::internal)
    }
}
