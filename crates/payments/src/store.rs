//! Payments' tables, in payments' own schema, and every query over them. The rest of
//! payments never writes SQL: `service` orchestrates, `domain` decides, and these functions
//! read and write (on the connection or the caller's transaction).

use chrono::{DateTime, Utc};
use kernel::{Currency, Money, OrderId, PaymentId, UserId};
use payments_api::{ChargeRequest, FailureReason, Payment, PaymentStatus};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{Expr, ExprTrait, UpdateStatement};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, PaginatorTrait, QueryOrder, QuerySelect, QueryTrait,
};

pub mod payments {
    use sea_orm::entity::prelude::*;

    /// One payment per order. `refunded_minor <= captured_minor <= amount_minor` is a
    /// `CHECK` in the schema.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "payments")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        #[sea_orm(unique)]
        pub order_id: Uuid,
        pub customer_id: Uuid,
        #[sea_orm(unique)]
        pub idempotency_key: String,
        pub fingerprint: String,
        pub amount_minor: i64,
        pub currency: String,
        pub status: String,
        pub captured_minor: i64,
        pub refunded_minor: i64,
        pub provider_reference: Option<String>,
        pub failure_reason: Option<String>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        /// When to ask the provider what became of the charge; null when payments knows
        /// (or never sent one).
        pub reconcile_at: Option<DateTimeUtc>,
        /// Lookups so far that did not settle the charge.
        pub reconcile_attempts: i32,
        /// The sweep holding the current lookup, if any.
        pub reconcile_claim: Option<Uuid>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod refunds {
    use sea_orm::entity::prelude::*;

    /// One row per refund key. `provider_reference` is null until the provider confirmed.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "refunds")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub payment_id: Uuid,
        #[sea_orm(unique)]
        pub idempotency_key: String,
        pub amount_minor: i64,
        pub provider_reference: Option<String>,
        pub created_at: DateTimeUtc,
        /// When to ask the provider (again) while it has not confirmed; null once it has.
        pub retry_at: Option<DateTimeUtc>,
        /// Attempts of the refund sweep so far.
        pub attempts: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// How a status is stored: its wire name.
pub fn status_code(status: PaymentStatus) -> &'static str {
    status.into()
}

pub fn decode_status(stored: &str) -> Result<PaymentStatus, DbErr> {
    stored
        .parse()
        .map_err(|_| DbErr::Type(format!("unknown payment status {stored:?}")))
}

fn decode_reason(stored: &str) -> Result<FailureReason, DbErr> {
    stored
        .parse()
        .map_err(|_| DbErr::Type(format!("unknown failure reason {stored:?}")))
}

/// The schema keeps amounts non-negative, so a failed conversion is a corrupted row.
fn money(amount_minor: i64, currency: Currency) -> Result<Money, DbErr> {
    Money::new(amount_minor, currency).map_err(|error| DbErr::Type(error.to_string()))
}

fn currency(code: &str) -> Result<Currency, DbErr> {
    Currency::parse(code).map_err(|error| DbErr::Type(error.to_string()))
}

/// A refund's amount, in its payment's currency.
pub fn refund_amount(payment: &payments::Model, refund: &refunds::Model) -> Result<Money, DbErr> {
    money(refund.amount_minor, currency(&payment.currency)?)
}

pub fn to_payment(row: payments::Model) -> Result<Payment, DbErr> {
    let currency = currency(&row.currency)?;
    Ok(Payment {
        id: PaymentId::from_uuid(row.id),
        order_id: OrderId::from_uuid(row.order_id),
        customer_id: UserId::from_uuid(row.customer_id),
        amount: money(row.amount_minor, currency)?,
        status: decode_status(&row.status)?,
        captured: money(row.captured_minor, currency)?,
        refunded: money(row.refunded_minor, currency)?,
        provider_reference: row.provider_reference,
        failure_reason: row
            .failure_reason
            .as_deref()
            .map(decode_reason)
            .transpose()?,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

pub async fn find_by_order<C: ConnectionTrait>(
    db: &C,
    order_id: OrderId,
) -> Result<Option<payments::Model>, DbErr> {
    payments::Entity::find()
        .filter(payments::Column::OrderId.eq(order_id.as_uuid()))
        .one(db)
        .await
}

pub async fn find_by_key<C: ConnectionTrait>(
    db: &C,
    key: &str,
) -> Result<Option<payments::Model>, DbErr> {
    payments::Entity::find()
        .filter(payments::Column::IdempotencyKey.eq(key))
        .one(db)
        .await
}

pub async fn find_refund_by_key<C: ConnectionTrait>(
    db: &C,
    key: &str,
) -> Result<Option<refunds::Model>, DbErr> {
    refunds::Entity::find()
        .filter(refunds::Column::IdempotencyKey.eq(key))
        .one(db)
        .await
}

pub async fn find_by_id<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
) -> Result<Option<payments::Model>, DbErr> {
    payments::Entity::find_by_id(id).one(db).await
}

/// Records a charge as `pending`, before the provider is asked, due for reconciliation at
/// `reconcile_at` (the end of the first attempt) in case its answer is never stored. One
/// payment per order and one per key: a second insert for either is a unique violation.
pub async fn insert_pending<C: ConnectionTrait>(
    db: &C,
    request: &ChargeRequest,
    fingerprint: &str,
    now: DateTime<Utc>,
    reconcile_at: DateTime<Utc>,
) -> Result<payments::Model, DbErr> {
    payments::ActiveModel {
        id: Set(Uuid::now_v7()),
        order_id: Set(request.order_id.as_uuid()),
        customer_id: Set(request.customer_id.as_uuid()),
        idempotency_key: Set(request.idempotency_key.as_str().to_owned()),
        fingerprint: Set(fingerprint.to_owned()),
        amount_minor: Set(request.amount.amount_minor()),
        currency: Set(request.amount.currency().to_string()),
        status: Set(status_code(PaymentStatus::Pending).to_owned()),
        captured_minor: Set(0),
        refunded_minor: Set(0),
        provider_reference: Set(None),
        failure_reason: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        reconcile_at: Set(Some(reconcile_at)),
        reconcile_attempts: Set(0),
        reconcile_claim: Set(None),
    }
    .insert(db)
    .await
}

/// Records that an order gave up before any charge: a `voided` payment of zero for nobody
/// (nil customer), under payments' own `key`, that no request can match (empty
/// fingerprint). A late charge then finds it and is refused.
pub async fn insert_tombstone<C: ConnectionTrait>(
    db: &C,
    order_id: OrderId,
    key: &str,
    now: DateTime<Utc>,
) -> Result<payments::Model, DbErr> {
    payments::ActiveModel {
        id: Set(Uuid::now_v7()),
        order_id: Set(order_id.as_uuid()),
        customer_id: Set(Uuid::nil()),
        idempotency_key: Set(key.to_owned()),
        fingerprint: Set(String::new()),
        amount_minor: Set(0),
        currency: Set(Currency::EUR.to_string()),
        status: Set(status_code(PaymentStatus::Voided).to_owned()),
        captured_minor: Set(0),
        refunded_minor: Set(0),
        provider_reference: Set(None),
        failure_reason: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        // No charge was ever sent: there is nothing to ask the provider.
        reconcile_at: Set(None),
        reconcile_attempts: Set(0),
        reconcile_claim: Set(None),
    }
    .insert(db)
    .await
}

/// The provider's answer to a pending charge.
#[derive(Debug)]
pub struct Outcome {
    pub status: PaymentStatus,
    pub captured_minor: i64,
    pub provider_reference: Option<String>,
    pub failure_reason: Option<FailureReason>,
}

impl Outcome {
    /// `row` as [`record_outcome`] leaves it, for a caller that need not read it back.
    pub fn applied_to(&self, mut row: payments::Model, now: DateTime<Utc>) -> payments::Model {
        row.status = status_code(self.status).to_owned();
        row.captured_minor = self.captured_minor;
        row.provider_reference.clone_from(&self.provider_reference);
        row.failure_reason = self.failure_reason.map(|reason| {
            let reason: &'static str = reason.into();
            reason.to_owned()
        });
        row.updated_at = now;
        row.reconcile_at = None;
        row.reconcile_claim = None;
        row
    }
}

/// Stores the provider's answer if the payment is still `pending` (and, for a sweep, if
/// `claim` still holds it); nothing is left to reconcile. A conditional `UPDATE`, written
/// with the event announcing the outcome (`Outbox::commit_change`): when two callers race,
/// exactly one stores it.
pub fn record_outcome(
    id: Uuid,
    outcome: Outcome,
    claim: Option<Uuid>,
    now: DateTime<Utc>,
) -> UpdateStatement {
    let reason: Option<&'static str> = outcome.failure_reason.map(Into::into);
    let mut update = payments::Entity::update_many()
        .col_expr(
            payments::Column::Status,
            Expr::value(status_code(outcome.status)),
        )
        .col_expr(
            payments::Column::CapturedMinor,
            Expr::value(outcome.captured_minor),
        )
        .col_expr(
            payments::Column::ProviderReference,
            Expr::value(outcome.provider_reference),
        )
        .col_expr(payments::Column::FailureReason, Expr::value(reason))
        .col_expr(payments::Column::UpdatedAt, Expr::value(now))
        .col_expr(
            payments::Column::ReconcileAt,
            Expr::value(None::<DateTime<Utc>>),
        )
        .col_expr(payments::Column::ReconcileClaim, Expr::value(None::<Uuid>))
        .filter(payments::Column::Id.eq(id))
        .filter(payments::Column::Status.eq(status_code(PaymentStatus::Pending)));
    if let Some(claim) = claim {
        update = update.filter(payments::Column::ReconcileClaim.eq(claim));
    }
    update.into_query()
}

/// `pending` → `voided`, if it is still pending. Returns whether it moved. What the provider
/// did with the charge is still unknown, so the payment stays due for reconciliation.
pub async fn void_pending<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let changed = payments::Entity::update_many()
        .col_expr(
            payments::Column::Status,
            Expr::value(status_code(PaymentStatus::Voided)),
        )
        .col_expr(payments::Column::UpdatedAt, Expr::value(now))
        .filter(payments::Column::Id.eq(id))
        .filter(payments::Column::Status.eq(status_code(PaymentStatus::Pending)))
        .exec(db)
        .await?
        .rows_affected;
    Ok(changed == 1)
}

/// Adds `amount_minor` to what the payment refunded, and moves it to `refunded` or
/// `partially_refunded`, in one conditional statement: only while it is refundable and the
/// refund fits in what was captured. Returns whether it applied. Concurrent refunds can
/// therefore never give back more than was taken (and the schema's `CHECK` refuses it
/// anyway).
pub async fn add_refund<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
    amount_minor: i64,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let refunded_after = Expr::col(payments::Column::RefundedMinor).add(amount_minor);
    let changed = payments::Entity::update_many()
        .col_expr(payments::Column::RefundedMinor, refunded_after.clone())
        // Every expression of an UPDATE sees the row as it was, so this is the status for
        // the new total, decided by the database on the row it actually updates.
        .col_expr(
            payments::Column::Status,
            Expr::case(
                refunded_after
                    .clone()
                    .gte(Expr::col(payments::Column::CapturedMinor)),
                Expr::val(status_code(PaymentStatus::Refunded)),
            )
            .finally(Expr::val(status_code(PaymentStatus::PartiallyRefunded)))
            .into(),
        )
        .col_expr(payments::Column::UpdatedAt, Expr::value(now))
        .filter(payments::Column::Id.eq(id))
        .filter(payments::Column::Status.is_in([
            status_code(PaymentStatus::Captured),
            status_code(PaymentStatus::PartiallyRefunded),
        ]))
        .filter(refunded_after.lte(Expr::col(payments::Column::CapturedMinor)))
        .exec(db)
        .await?
        .rows_affected;
    Ok(changed == 1)
}

/// Records a refund under its key, to be confirmed by the provider (the refund sweep asks
/// from `retry_at` on if nobody else did). A second refund with the same key is a unique
/// violation.
pub async fn insert_refund<C: ConnectionTrait>(
    db: &C,
    payment_id: Uuid,
    key: &str,
    amount_minor: i64,
    now: DateTime<Utc>,
    retry_at: DateTime<Utc>,
) -> Result<refunds::Model, DbErr> {
    refunds::ActiveModel {
        id: Set(Uuid::now_v7()),
        payment_id: Set(payment_id),
        idempotency_key: Set(key.to_owned()),
        amount_minor: Set(amount_minor),
        provider_reference: Set(None),
        created_at: Set(now),
        retry_at: Set(Some(retry_at)),
        attempts: Set(0),
    }
    .insert(db)
    .await
}

/// Stores the provider's reference of a refund, once; nothing is left to retry.
pub async fn set_refund_reference<C: ConnectionTrait>(
    db: &C,
    refund_id: Uuid,
    reference: String,
) -> Result<(), DbErr> {
    refunds::Entity::update_many()
        .col_expr(refunds::Column::ProviderReference, Expr::value(reference))
        .col_expr(refunds::Column::RetryAt, Expr::value(None::<DateTime<Utc>>))
        .filter(refunds::Column::Id.eq(refund_id))
        .filter(refunds::Column::ProviderReference.is_null())
        .exec(db)
        .await?;
    Ok(())
}

/// A live charge attempt of a pending payment starts: nobody looks the charge up before
/// `deadline`, and a sweep's claim on it lapses (its answer may predate this attempt).
/// Returns whether the payment was still pending.
pub async fn start_attempt<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
    deadline: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let changed = payments::Entity::update_many()
        .col_expr(payments::Column::ReconcileAt, Expr::value(deadline))
        .col_expr(payments::Column::ReconcileClaim, Expr::value(None::<Uuid>))
        .filter(payments::Column::Id.eq(id))
        .filter(payments::Column::Status.eq(status_code(PaymentStatus::Pending)))
        .exec(db)
        .await?
        .rows_affected;
    Ok(changed == 1)
}

/// A charge's answer was not heard (timeout, provider error): ask the provider from `now` on.
/// Only for a payment still waiting for that answer (pending, or voided meanwhile).
pub async fn mark_unknown<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let changed = payments::Entity::update_many()
        .col_expr(payments::Column::ReconcileAt, Expr::value(now))
        .filter(payments::Column::Id.eq(id))
        .filter(payments::Column::ReconcileAt.is_not_null())
        .exec(db)
        .await?
        .rows_affected;
    Ok(changed == 1)
}

/// Payments whose charge is due for a lookup at `now`, longest due first.
pub async fn find_due<C: ConnectionTrait>(
    db: &C,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<payments::Model>, DbErr> {
    payments::Entity::find()
        .filter(payments::Column::ReconcileAt.lte(now))
        .order_by_asc(payments::Column::ReconcileAt)
        .limit(limit)
        .all(db)
        .await
}

/// When the next payment or unconfirmed refund becomes due for the sweep (possibly already
/// past: it became due after the sweep looked); `None` when none is waiting.
pub async fn next_due<C: ConnectionTrait>(db: &C) -> Result<Option<DateTime<Utc>>, DbErr> {
    let payment: Option<DateTime<Utc>> = payments::Entity::find()
        .select_only()
        .column_as(payments::Column::ReconcileAt.min(), "due")
        .into_tuple::<Option<DateTime<Utc>>>()
        .one(db)
        .await?
        .flatten();
    let refund: Option<DateTime<Utc>> = refunds::Entity::find()
        .select_only()
        .column_as(refunds::Column::RetryAt.min(), "due")
        .filter(refunds::Column::ProviderReference.is_null())
        .into_tuple::<Option<DateTime<Utc>>>()
        .one(db)
        .await?
        .flatten();
    Ok(match (payment, refund) {
        (Some(a), Some(b)) => Some(Ord::min(a, b)),
        (a, b) => a.or(b),
    })
}

/// Takes a due payment for one lookup under `claim`, and schedules the next lookup at `next`
/// in case this one does not settle it (or its sweep dies). Conditional on the payment
/// still being due, so of several sweeps exactly one takes it. Returns whether this did.
pub async fn claim<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
    now: DateTime<Utc>,
    next: DateTime<Utc>,
    claim: Uuid,
) -> Result<bool, DbErr> {
    let changed = payments::Entity::update_many()
        .col_expr(payments::Column::ReconcileAt, Expr::value(next))
        .col_expr(payments::Column::ReconcileClaim, Expr::value(claim))
        .col_expr(
            payments::Column::ReconcileAttempts,
            Expr::col(payments::Column::ReconcileAttempts).add(1),
        )
        .filter(payments::Column::Id.eq(id))
        .filter(payments::Column::ReconcileAt.lte(now))
        .exec(db)
        .await?
        .rows_affected;
    Ok(changed == 1)
}

/// `pending` → `voided` because the provider never received the charge: nothing was taken
/// and nothing is left to ask. Only while `claim` holds the payment.
pub async fn void_unreceived<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
    claim: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let changed = payments::Entity::update_many()
        .col_expr(
            payments::Column::Status,
            Expr::value(status_code(PaymentStatus::Voided)),
        )
        .col_expr(payments::Column::UpdatedAt, Expr::value(now))
        .col_expr(
            payments::Column::ReconcileAt,
            Expr::value(None::<DateTime<Utc>>),
        )
        .col_expr(payments::Column::ReconcileClaim, Expr::value(None::<Uuid>))
        .filter(payments::Column::Id.eq(id))
        .filter(payments::Column::Status.eq(status_code(PaymentStatus::Pending)))
        .filter(payments::Column::ReconcileClaim.eq(claim))
        .exec(db)
        .await?
        .rows_affected;
    Ok(changed == 1)
}

/// Nothing is left to ask about a voided payment: the provider declined its charge or never
/// received it. Only while the payment holds no money (and, for a sweep, `claim` holds it).
pub async fn settle_voided<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
    claim: Option<Uuid>,
) -> Result<bool, DbErr> {
    // Nothing a reader of the payment sees changes, so `updated_at` stays.
    let mut update = payments::Entity::update_many()
        .col_expr(
            payments::Column::ReconcileAt,
            Expr::value(None::<DateTime<Utc>>),
        )
        .col_expr(payments::Column::ReconcileClaim, Expr::value(None::<Uuid>))
        .filter(payments::Column::Id.eq(id))
        .filter(payments::Column::Status.eq(status_code(PaymentStatus::Voided)))
        .filter(payments::Column::CapturedMinor.eq(0));
    if let Some(claim) = claim {
        update = update.filter(payments::Column::ReconcileClaim.eq(claim));
    }
    Ok(update.exec(db).await?.rows_affected == 1)
}

/// Stops reconciling a payment whose outcome is already known, if `claim` still holds it.
pub async fn release_claim<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
    claim: Uuid,
) -> Result<bool, DbErr> {
    let changed = payments::Entity::update_many()
        .col_expr(
            payments::Column::ReconcileAt,
            Expr::value(None::<DateTime<Utc>>),
        )
        .col_expr(payments::Column::ReconcileClaim, Expr::value(None::<Uuid>))
        .filter(payments::Column::Id.eq(id))
        .filter(payments::Column::ReconcileClaim.eq(claim))
        .exec(db)
        .await?
        .rows_affected;
    Ok(changed == 1)
}

/// The provider approved the charge of a payment that was voided meanwhile: the money was
/// taken and is owed back. Records it as captured *and* refunded in full, with the charge's
/// reference, still `voided` (the order gave the payment up; nothing stays taken). The
/// refund row goes in the same transaction. Only while the voided payment holds no money
/// (and, for a sweep, `claim` holds it), so it is recorded once.
pub async fn record_late_approval<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
    reference: &str,
    claim: Option<Uuid>,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let mut update = payments::Entity::update_many()
        .col_expr(
            payments::Column::CapturedMinor,
            Expr::col(payments::Column::AmountMinor),
        )
        .col_expr(
            payments::Column::RefundedMinor,
            Expr::col(payments::Column::AmountMinor),
        )
        .col_expr(payments::Column::ProviderReference, Expr::value(reference))
        .col_expr(payments::Column::UpdatedAt, Expr::value(now))
        .col_expr(
            payments::Column::ReconcileAt,
            Expr::value(None::<DateTime<Utc>>),
        )
        .col_expr(payments::Column::ReconcileClaim, Expr::value(None::<Uuid>))
        .filter(payments::Column::Id.eq(id))
        .filter(payments::Column::Status.eq(status_code(PaymentStatus::Voided)))
        .filter(payments::Column::CapturedMinor.eq(0));
    if let Some(claim) = claim {
        update = update.filter(payments::Column::ReconcileClaim.eq(claim));
    }
    Ok(update.exec(db).await?.rows_affected == 1)
}

/// Refunds the provider has not confirmed that are due for another attempt at `now`.
pub async fn find_due_refunds<C: ConnectionTrait>(
    db: &C,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<refunds::Model>, DbErr> {
    refunds::Entity::find()
        .filter(refunds::Column::ProviderReference.is_null())
        .filter(refunds::Column::RetryAt.lte(now))
        .order_by_asc(refunds::Column::RetryAt)
        .limit(limit)
        .all(db)
        .await
}

/// Takes a due refund for one attempt, scheduling the next at `next`. Conditional on it
/// still being due and unconfirmed, so of several sweeps exactly one takes it.
pub async fn claim_refund<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
    now: DateTime<Utc>,
    next: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let changed = refunds::Entity::update_many()
        .col_expr(refunds::Column::RetryAt, Expr::value(next))
        .col_expr(
            refunds::Column::Attempts,
            Expr::col(refunds::Column::Attempts).add(1),
        )
        .filter(refunds::Column::Id.eq(id))
        .filter(refunds::Column::ProviderReference.is_null())
        .filter(refunds::Column::RetryAt.lte(now))
        .exec(db)
        .await?
        .rows_affected;
    Ok(changed == 1)
}

/// What is still open: payments waiting for the provider's answer, refunds waiting for its
/// confirmation.
pub async fn backlog<C: ConnectionTrait>(db: &C) -> Result<(u64, u64), DbErr> {
    let payments = payments::Entity::find()
        .filter(payments::Column::ReconcileAt.is_not_null())
        .count(db)
        .await?;
    let refunds = refunds::Entity::find()
        .filter(refunds::Column::ProviderReference.is_null())
        .count(db)
        .await?;
    Ok((payments, refunds))
}
