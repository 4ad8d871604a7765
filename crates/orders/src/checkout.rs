//! The checkout saga: reserve stock → charge → confirm, compensating on failure; and the
//! cancellation of a confirmed order: refund → restock.
//!
//! The saga's state *is* the order's status, persisted after every step:
//!
//! ```text
//! pending ──reserve──▶ stock_reserved ──charge──▶ payment_captured ──commit──▶ confirmed
//!    │                      │                                                   │
//!    │ out of stock         │ declined / provider error / outcome unknown       │ cancel
//!    ▼                      ▼ (decide; void payment, release stock)             ▼
//! rejected            payment_failed                       cancelled ◀──refund, restock── cancelling
//! ```
//!
//! **One runner per order.** A run first takes the order's lease (a runner id and an expiry
//! in the order's row, taken by one conditional update; a new order is born held by its
//! request's runner), and records each transition only while it still holds it, renewing
//! the lease in the same statement (and giving it back with the transition that ends the
//! run). A second run of the same order — a replayed request, the recovery sweep, another
//! process during a rolling deploy — finds the lease taken and does nothing; a runner that
//! dies lets its lease expire, and only then can another take over.
//!
//! **The runner keeps what it knows.** Only the lease holder writes the order, so after its
//! own transition a runner knows the row without reading it back: a checkout reads nothing
//! of its own between steps, and one whose transition was not recorded (lease lost) reads
//! the order again before anything else.
//!
//! **Decide, then compensate.** Giving a checkout up is recorded first, by a conditional
//! update that stores the failure reason on the `stock_reserved` order; only then does the
//! runner void the payment and release the stock. A runner that finds the decision carries it
//! out and never charges or confirms, so two runners can never disagree about an order.
//!
//! Each step calls another context through its `-api` trait, and every one of those calls is
//! idempotent, keyed by the order id, so re-running a step after a crash is harmless. A step
//! that cannot complete now (a context unavailable) ends the run: the attempt is booked on
//! the order and the recovery sweep runs it again later, with backoff, until it parks it.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use catalog_api::{CatalogApi, CatalogError, StockLine};
use kernel::{Clock, IdempotencyKey, IntegrationEvent, Money, OrderId};
use messaging::Outbox;
use orders_api::{
    Order, OrderCancelled, OrderConfirmed, OrderFailure, OrderPaymentFailed, OrderStatus,
    OrdersError,
};
use payments_api::{
    ChargeRequest, FailureReason, PaymentStatus, PaymentToken, PaymentsApi, PaymentsError,
};
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use crate::domain::can_move;
use crate::store::{self, Attempt};

/// Orders that reached a terminal status, by status and failure reason.
pub const CHECKOUTS: &str = "shop_checkouts_total";
/// Checkouts the recovery sweep gave up on (parked for an administrator).
pub const PARKED: &str = "shop_checkouts_parked_total";

/// How a drive of the steps ended.
enum Driven {
    /// The order reached the end of its run; `holding` says whether this runner still holds
    /// its lease (an order found finished) or gave it back with its last transition.
    Finished { order: Box<Order>, holding: bool },
    /// A step could not complete now, for this reason.
    Later(String),
    /// Stopped without booking anything (fault hook, or the lease was lost).
    Halted,
}

/// A point in the saga where a test can stop it, as if the process died there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    Reserve,
    Charge,
    CancelPayment,
    ReleaseStock,
    Confirm,
    Refund,
    Restock,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Moment {
    /// Before the step calls the other context.
    Before,
    /// After the other context answered, before the new status is persisted.
    After,
}

/// Fault injection for tests: returning `false` stops the saga at that point, leaving the
/// order exactly as a crash there would. Production uses [`NoFaults`].
pub trait CheckoutHook: Send + Sync + Debug + 'static {
    fn proceed(&self, order_id: OrderId, step: Step, moment: Moment) -> bool;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct NoFaults;

impl CheckoutHook for NoFaults {
    fn proceed(&self, _: OrderId, _: Step, _: Moment) -> bool {
        true
    }
}

/// What a step decided.
enum Next {
    /// Give the checkout up for `reason`: record the decision, then compensate.
    Fail(OrderFailure),
    /// The run must end here without booking anything: the fault hook stopped it (as if the
    /// process died, keeping its lease) or the lease was lost to another runner.
    Halt,
    /// Move from the status the step started in to this one.
    Move {
        to: OrderStatus,
        reason: Option<OrderFailure>,
        /// What the payment refunded, for `OrderCancelled`.
        refunded: Option<Money>,
    },
    /// The step cannot complete now; leave the order for a later run.
    Later(String),
}

/// What a runner knows of the order it holds. Only the lease holder writes the order, so
/// after each of its own transitions the runner knows the row without reading it back; it
/// reads the order only to start, or when a transition was not recorded (lease lost).
#[derive(Debug)]
pub(crate) struct Held {
    pub order: Order,
    /// The token the order is charged with: orders' own copy, never shown.
    pub payment_token: String,
}

pub(crate) struct Checkout {
    pub db: DatabaseConnection,
    pub catalog: Arc<dyn CatalogApi>,
    pub payments: Arc<dyn PaymentsApi>,
    pub outbox: Outbox,
    pub clock: Arc<dyn Clock>,
    pub charge_timeout: Duration,
    /// How long a runner's lease lasts without renewal; longer than any one step.
    pub lease: Duration,
    pub retry: RetryPolicy,
    pub hook: Arc<dyn CheckoutHook>,
    /// Wakes the recovery sweep when a run leaves its order unfinished.
    pub sweep: db_kit::wake::Wake,
}

/// When the sweep runs an unfinished checkout again, and when it gives up on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The wait after the first attempt that could not finish; doubled after each one.
    pub base: Duration,
    /// The longest wait between attempts.
    pub max: Duration,
    /// Attempts before the order is parked for an administrator.
    pub max_attempts: u32,
}

impl RetryPolicy {
    /// The wait after `attempts` unfinished runs.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(20));
        self.base.saturating_mul(factor).min(self.max)
    }
}

/// Where a run starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// From the order's persisted status.
    Resume,
    /// Cancel a confirmed order first (a cancellation under way simply goes on).
    Cancel,
}

/// How a run of the saga ended.
#[derive(Debug)]
pub(crate) enum Ran {
    /// The order reached a status no step changes on its own (or `confirmed`).
    Finished(Order),
    /// The run stopped before that; the order as it stands. The sweep takes it from here.
    Unfinished(Order),
    /// Another runner holds the order; it may finish in `retry_after`.
    Busy { retry_after: Duration },
}

impl Debug for Checkout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkout")
            .field("charge_timeout", &self.charge_timeout)
            .field("lease", &self.lease)
            .field("retry", &self.retry)
            .field("hook", &self.hook)
            .finish_non_exhaustive()
    }
}

impl Checkout {
    /// Runs the order's saga from its persisted status until it is terminal (or `confirmed`
    /// for a checkout), or until a step must be retried later — if no live runner holds the
    /// order; otherwise it answers `Busy` and touches nothing.
    pub async fn run(&self, order_id: OrderId) -> Result<Ran, OrdersError> {
        self.run_as(order_id, Uuid::now_v7(), Start::Resume, None)
            .await
    }

    /// Like [`run`](Self::run), as `runner`, starting as `start` says. `held` is the order
    /// as `runner` just wrote it, when it holds the lease already (a new order is inserted
    /// with its request's runner holding it): the run then starts without a read.
    #[tracing::instrument(skip(self, runner, held))]
    pub async fn run_as(
        &self,
        order_id: OrderId,
        runner: Uuid,
        start: Start,
        held: Option<Held>,
    ) -> Result<Ran, OrdersError> {
        if held.is_none()
            && let Some(busy) = self.take(order_id, runner, start).await?
        {
            return Ok(busy);
        }
        let driven = self.drive(order_id, runner, held).await;
        let current = |db: DatabaseConnection| async move {
            store::find_order(&db, order_id)
                .await
                .map_err(db_kit::internal)?
                .ok_or(OrdersError::OrderNotFound { order_id })
        };
        match driven {
            Ok(Driven::Finished { order, holding }) => {
                if holding {
                    store::release_lease(&self.db, order_id, runner)
                        .await
                        .map_err(db_kit::internal)?;
                }
                Ok(Ran::Finished(*order))
            }
            Ok(Driven::Later(why)) => {
                self.book_attempt(order_id, runner, why).await?;
                Ok(Ran::Unfinished(current(self.db.clone()).await?))
            }
            // Stopped as a crash would stop it: the lease stays until it expires.
            Ok(Driven::Halted) => Ok(Ran::Unfinished(current(self.db.clone()).await?)),
            Err(error) => {
                if let Err(release) = store::release_lease(&self.db, order_id, runner).await {
                    tracing::warn!(order_id = %order_id, error = %release, "could not give the lease back");
                }
                Err(error)
            }
        }
    }

    /// Takes the order's lease for `runner` (and, to cancel, moves it to `cancelling`), or
    /// answers `Busy` when a live runner holds it.
    async fn take(
        &self,
        order_id: OrderId,
        runner: Uuid,
        start: Start,
    ) -> Result<Option<Ran>, OrdersError> {
        let now = self.clock.now();
        let acquired =
            store::acquire_lease(&self.db, order_id, runner, now, now + self.lease_span())
                .await
                .map_err(db_kit::internal)?;
        if !acquired {
            let row = store::find_row(&self.db, order_id)
                .await
                .map_err(db_kit::internal)?
                .ok_or(OrdersError::OrderNotFound { order_id })?;
            let left = row
                .lease_until
                .map(|until| (until - now).to_std().unwrap_or_default())
                .unwrap_or_default();
            tracing::info!(order_id = %order_id, "checkout already running elsewhere");
            return Ok(Some(Ran::Busy {
                retry_after: left.max(Duration::from_secs(1)),
            }));
        }
        if start == Start::Cancel
            && let Err(error) = self.start_cancelling(order_id, runner).await
        {
            if let Err(release) = store::release_lease(&self.db, order_id, runner).await {
                tracing::warn!(order_id = %order_id, error = %release, "could not give the lease back");
            }
            return Err(error);
        }
        Ok(None)
    }

    /// A confirmed order moves to `cancelling` (under `runner`'s lease); a cancellation
    /// already under way carries on; any other status cannot be cancelled.
    async fn start_cancelling(&self, order_id: OrderId, runner: Uuid) -> Result<(), OrdersError> {
        let row = store::find_row(&self.db, order_id)
            .await
            .map_err(db_kit::internal)?
            .ok_or(OrdersError::OrderNotFound { order_id })?;
        match store::status_of(&row).map_err(db_kit::internal)? {
            OrderStatus::Confirmed => {
                let moved = store::move_status(
                    &self.db,
                    order_id,
                    runner,
                    OrderStatus::Confirmed,
                    OrderStatus::Cancelling,
                    None,
                    self.clock.now(),
                    store::Lease::Until(self.clock.now() + self.lease_span()),
                )
                .await
                .map_err(db_kit::internal)?;
                if moved {
                    tracing::info!(order_id = %order_id, "order cancellation started");
                }
                Ok(())
            }
            OrderStatus::Cancelling | OrderStatus::Cancelled => Ok(()),
            status => Err(OrdersError::NotCancellable { status }),
        }
    }

    fn lease_span(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::MAX)
    }

    /// Gives the lease back after a run that could not finish, with the attempt booked: when
    /// to try again (backoff), why, and whether to park the order.
    async fn book_attempt(
        &self,
        order_id: OrderId,
        runner: Uuid,
        why: String,
    ) -> Result<(), OrdersError> {
        let row = store::find_row(&self.db, order_id)
            .await
            .map_err(db_kit::internal)?
            .ok_or(OrdersError::OrderNotFound { order_id })?;
        let attempts = u32::try_from(row.attempts).unwrap_or(0).saturating_add(1);
        let now = self.clock.now();
        let wait = chrono::Duration::from_std(self.retry.backoff(attempts))
            .unwrap_or(chrono::Duration::MAX);
        let park = attempts >= self.retry.max_attempts;
        if park {
            tracing::error!(order_id = %order_id, attempts, why, "checkout parked: an administrator must replay it");
            metrics::counter!(PARKED).increment(1);
        } else {
            tracing::warn!(order_id = %order_id, attempts, why, "checkout step postponed");
        }
        store::release_after_attempt(
            &self.db,
            order_id,
            runner,
            Attempt {
                attempts: i32::try_from(attempts).unwrap_or(i32::MAX),
                next_at: now + wait,
                parked_at: park.then_some(now),
                error: why,
            },
        )
        .await
        .map_err(db_kit::internal)
    }

    /// Reads the order `runner` holds; `None` when the lease is no longer its own.
    async fn load(&self, order_id: OrderId, runner: Uuid) -> Result<Option<Held>, OrdersError> {
        let Some(row) = store::find_row(&self.db, order_id)
            .await
            .map_err(db_kit::internal)?
        else {
            return Err(OrdersError::OrderNotFound { order_id });
        };
        if row.runner_id != Some(runner) {
            tracing::warn!(order_id = %order_id, "lease lost to another runner; stopping");
            return Ok(None);
        }
        let payment_token = row.payment_token.clone();
        let order = store::with_lines(&self.db, vec![row])
            .await
            .map_err(db_kit::internal)?
            .pop()
            .ok_or(OrdersError::Internal)?;
        Ok(Some(Held {
            order,
            payment_token,
        }))
    }

    /// Runs the steps while `runner` holds the lease. Each recorded transition renews the
    /// lease (or gives it back, when the run ends with it) in the same statement, and the
    /// runner carries on from what it wrote; only a transition that was not recorded makes
    /// it read the order again.
    async fn drive(
        &self,
        order_id: OrderId,
        runner: Uuid,
        held: Option<Held>,
    ) -> Result<Driven, OrdersError> {
        let mut held = match held {
            Some(held) => held,
            None => match self.load(order_id, runner).await? {
                Some(held) => held,
                None => return Ok(Driven::Halted),
            },
        };
        loop {
            let order = &held.order;
            let next = match order.status {
                OrderStatus::Pending => self.reserve(order).await?,
                OrderStatus::StockReserved => match order.failure_reason {
                    // Given up already: carry the decision out.
                    Some(reason) => self.compensate(order, reason).await?,
                    None => self.charge(order, &held.payment_token).await?,
                },
                OrderStatus::PaymentCaptured => self.confirm(order).await?,
                OrderStatus::Cancelling => self.refund_and_restock(order).await?,
                OrderStatus::Confirmed
                | OrderStatus::Rejected
                | OrderStatus::PaymentFailed
                | OrderStatus::Cancelled => {
                    return Ok(Driven::Finished {
                        order: Box::new(held.order),
                        holding: true,
                    });
                }
            };
            let now = kernel::stored_precision(self.clock.now());
            let recorded = match next {
                Next::Move {
                    to,
                    reason,
                    refunded,
                } => {
                    let ends = ends_run(to);
                    let lease = if ends {
                        store::Lease::Release
                    } else {
                        store::Lease::Until(now + self.lease_span())
                    };
                    let moved = self
                        .record(&held.order, runner, to, reason, refunded, now, lease)
                        .await?;
                    if moved {
                        held.order.status = to;
                        held.order.failure_reason = reason.or(held.order.failure_reason);
                        held.order.updated_at = now;
                        if ends {
                            return Ok(Driven::Finished {
                                order: Box::new(held.order),
                                holding: false,
                            });
                        }
                    }
                    moved
                }
                Next::Fail(reason) => {
                    let until = now + self.lease_span();
                    let decided =
                        store::decide_failure(&self.db, order.id, runner, reason, now, until)
                            .await
                            .map_err(db_kit::internal)?;
                    if decided {
                        tracing::info!(order_id = %order.id, ?reason, "checkout given up; compensating");
                        held.order.failure_reason = Some(reason);
                        held.order.updated_at = now;
                    }
                    decided
                }
                Next::Later(why) => return Ok(Driven::Later(why)),
                Next::Halt => return Ok(Driven::Halted),
            };
            if !recorded {
                // Another runner took the order (or decided it) meanwhile: go on from the
                // order as it stands, if this runner still holds it.
                match self.load(order_id, runner).await? {
                    Some(current) => held = current,
                    None => return Ok(Driven::Halted),
                }
            }
        }
    }

    /// Asks the fault hook whether to go on; `false` ends the run where a crash would.
    fn proceed(&self, order: &Order, step: Step, moment: Moment) -> bool {
        let go_on = self.hook.proceed(order.id, step, moment);
        if !go_on {
            tracing::warn!(order_id = %order.id, ?step, ?moment, "checkout stopped by a fault hook");
        }
        go_on
    }

    async fn reserve(&self, order: &Order) -> Result<Next, OrdersError> {
        let lines = order
            .lines
            .iter()
            .map(|line| StockLine {
                product_id: line.product_id,
                quantity: line.quantity,
            })
            .collect();
        if !self.proceed(order, Step::Reserve, Moment::Before) {
            return Ok(Next::Halt);
        }
        let reserved = self.catalog.reserve_stock(order.id, lines).await;
        if !self.proceed(order, Step::Reserve, Moment::After) {
            return Ok(Next::Halt);
        }
        Ok(match reserved {
            Ok(_) => move_to(OrderStatus::StockReserved, None),
            Err(CatalogError::OutOfStock { .. } | CatalogError::InsufficientStock { .. }) => {
                move_to(OrderStatus::Rejected, Some(OrderFailure::OutOfStock))
            }
            Err(
                CatalogError::ProductNotFound { .. }
                | CatalogError::ProductInactive { .. }
                | CatalogError::ReservationClosed { .. }
                | CatalogError::ValidationFailed { .. },
            ) => move_to(
                OrderStatus::Rejected,
                Some(OrderFailure::ProductUnavailable),
            ),
            Err(error) => Next::Later(format!("catalog: {error}")),
        })
    }

    async fn charge(&self, order: &Order, token: &str) -> Result<Next, OrdersError> {
        // Parsed when the order was placed; a stored token that no longer parses is a
        // corrupted row, and the order cannot be charged.
        let Ok(payment_token) = PaymentToken::parse(token) else {
            tracing::error!(order_id = %order.id, "stored payment token is not a token");
            return Ok(Next::Fail(OrderFailure::PaymentRejected));
        };
        // orders' own key for the charge: one charge per order, whoever runs the step.
        let idempotency_key =
            IdempotencyKey::parse(&format!("order:{}", order.id)).map_err(|error| {
                tracing::error!(%error, "an order's charge key is not a valid key");
                OrdersError::Internal
            })?;
        let request = ChargeRequest {
            order_id: order.id,
            customer_id: order.customer_id,
            amount: order.total,
            payment_token,
            idempotency_key,
        };
        if !self.proceed(order, Step::Charge, Moment::Before) {
            return Ok(Next::Halt);
        }
        let charged =
            tokio::time::timeout(self.charge_timeout, self.payments.charge(request)).await;
        if !self.proceed(order, Step::Charge, Moment::After) {
            return Ok(Next::Halt);
        }
        Ok(match charged {
            Ok(Ok(payment)) => match payment.status {
                PaymentStatus::Captured | PaymentStatus::PartiallyRefunded => {
                    move_to(OrderStatus::PaymentCaptured, None)
                }
                // Taken and already given back in full: nothing is held for the order, so it
                // cannot be confirmed on it.
                PaymentStatus::Refunded => Next::Fail(OrderFailure::PaymentRejected),
                PaymentStatus::Failed => Next::Fail(
                    payment
                        .failure_reason
                        .map_or(OrderFailure::Declined, order_failure),
                ),
                // The outcome is not known (payments' own deadline on the provider passed) or
                // the payment was given up already: give the checkout up too. Payments keeps
                // asking the provider, and gives back a late approval of a voided payment.
                PaymentStatus::Pending | PaymentStatus::Voided => {
                    Next::Fail(OrderFailure::PaymentTimedOut)
                }
            },
            Ok(Err(
                PaymentsError::ValidationFailed { .. } | PaymentsError::IdempotencyKeyReused,
            )) => Next::Fail(OrderFailure::PaymentRejected),
            Ok(Err(error)) => {
                tracing::warn!(order_id = %order.id, error = %error, "charge failed; giving up the payment");
                Next::Fail(OrderFailure::PaymentUnavailable)
            }
            Err(_elapsed) => {
                tracing::warn!(order_id = %order.id, timeout_ms = self.charge_timeout.as_millis() as u64, "charge timed out");
                Next::Fail(OrderFailure::PaymentTimedOut)
            }
        })
    }

    /// Carries out the decision to give a checkout up: the payment is voided (or, if it was
    /// taken after all, refunded in full by payments), then the stock goes back. Every step
    /// is idempotent, so a runner that takes over after a crash simply does it again.
    async fn compensate(&self, order: &Order, reason: OrderFailure) -> Result<Next, OrdersError> {
        if !self.proceed(order, Step::CancelPayment, Moment::Before) {
            return Ok(Next::Halt);
        }
        if let Err(error) = self.payments.cancel(order.id).await {
            return Ok(Next::Later(format!("payments: {error}")));
        }
        if !self.proceed(order, Step::CancelPayment, Moment::After) {
            return Ok(Next::Halt);
        }
        if !self.proceed(order, Step::ReleaseStock, Moment::Before) {
            return Ok(Next::Halt);
        }
        let released = self.catalog.release_reservation(order.id).await;
        if !self.proceed(order, Step::ReleaseStock, Moment::After) {
            return Ok(Next::Halt);
        }
        Ok(match released {
            Ok(_) => move_to(OrderStatus::PaymentFailed, Some(reason)),
            Err(error) => Next::Later(format!("catalog: {error}")),
        })
    }

    async fn confirm(&self, order: &Order) -> Result<Next, OrdersError> {
        if !self.proceed(order, Step::Confirm, Moment::Before) {
            return Ok(Next::Halt);
        }
        let committed = self.catalog.commit_reservation(order.id).await;
        if !self.proceed(order, Step::Confirm, Moment::After) {
            return Ok(Next::Halt);
        }
        Ok(match committed {
            Ok(_) => move_to(OrderStatus::Confirmed, None),
            Err(error) => Next::Later(format!("catalog: {error}")),
        })
    }

    async fn refund_and_restock(&self, order: &Order) -> Result<Next, OrdersError> {
        if !self.proceed(order, Step::Refund, Moment::Before) {
            return Ok(Next::Halt);
        }
        // Keyed by the order on payments' side: a repeat of this step (after a crash, by a
        // second runner) answers the payment as the first refund left it.
        let refunded = match self.payments.refund_order(order.id).await {
            Ok(payment) => payment.refunded,
            Err(error) => return Ok(Next::Later(format!("payments: {error}"))),
        };
        if !self.proceed(order, Step::Refund, Moment::After) {
            return Ok(Next::Halt);
        }
        if !self.proceed(order, Step::Restock, Moment::Before) {
            return Ok(Next::Halt);
        }
        let restocked = self.catalog.restock_reservation(order.id).await;
        if !self.proceed(order, Step::Restock, Moment::After) {
            return Ok(Next::Halt);
        }
        Ok(match restocked {
            Ok(_) => Next::Move {
                to: OrderStatus::Cancelled,
                reason: None,
                refunded: Some(refunded),
            },
            Err(error) => Next::Later(format!("catalog: {error}")),
        })
    }

    /// Persists a transition, with the lease as `lease` says, and its event if it has one,
    /// together (`move_announcing`); a transition without an event is one statement.
    /// Returns whether it was recorded: if another runner moved the order first, nothing is
    /// written.
    #[allow(clippy::too_many_arguments)]
    async fn record(
        &self,
        order: &Order,
        runner: Uuid,
        to: OrderStatus,
        reason: Option<OrderFailure>,
        refunded: Option<Money>,
        now: chrono::DateTime<chrono::Utc>,
        lease: store::Lease,
    ) -> Result<bool, OrdersError> {
        debug_assert!(can_move(order.status, to), "{:?} -> {to:?}", order.status);
        let moved = match to {
            OrderStatus::Confirmed => {
                let event = OrderConfirmed {
                    order_id: order.id,
                    customer_id: order.customer_id,
                    total: order.total,
                    line_count: u32::try_from(order.lines.len()).unwrap_or(u32::MAX),
                    confirmed_at: now,
                };
                self.move_announcing(order, runner, to, reason, now, lease, &event)
                    .await?
            }
            OrderStatus::PaymentFailed => {
                let event = OrderPaymentFailed {
                    order_id: order.id,
                    customer_id: order.customer_id,
                    total: order.total,
                    reason: reason.unwrap_or(OrderFailure::PaymentRejected),
                    failed_at: now,
                };
                self.move_announcing(order, runner, to, reason, now, lease, &event)
                    .await?
            }
            OrderStatus::Cancelled => {
                let event = OrderCancelled {
                    order_id: order.id,
                    customer_id: order.customer_id,
                    refunded: refunded.unwrap_or(order.total),
                    cancelled_at: now,
                };
                self.move_announcing(order, runner, to, reason, now, lease, &event)
                    .await?
            }
            _ => store::move_status(
                &self.db,
                order.id,
                runner,
                order.status,
                to,
                reason,
                now,
                lease,
            )
            .await
            .map_err(db_kit::internal)?,
        };
        if moved {
            self.recorded(order, to, reason);
        }
        Ok(moved)
    }

    /// Counts and logs a recorded transition.
    fn recorded(&self, order: &Order, to: OrderStatus, reason: Option<OrderFailure>) {
        if to.is_terminal() {
            let outcome: &'static str = to.into();
            let reason: &'static str = reason.map_or("", Into::into);
            metrics::counter!(CHECKOUTS, "outcome" => outcome, "reason" => reason).increment(1);
        }
        tracing::info!(order_id = %order.id, from = ?order.status, to = ?to, reason = ?reason, "order moved");
    }

    /// Records a transition and the event that announces it, together or not at all
    /// (`Outbox::commit_change`: one statement on Postgres). Returns whether it was recorded.
    #[allow(clippy::too_many_arguments)]
    async fn move_announcing<E: IntegrationEvent>(
        &self,
        order: &Order,
        runner: Uuid,
        to: OrderStatus,
        reason: Option<OrderFailure>,
        now: chrono::DateTime<chrono::Utc>,
        lease: store::Lease,
        event: &E,
    ) -> Result<bool, OrdersError> {
        let change =
            store::move_status_change(order.id, runner, order.status, to, reason, now, lease);
        let written = self
            .outbox
            .commit_change(&self.db, change, event, now)
            .await
            .map_err(db_kit::internal)?;
        Ok(written.is_some())
    }
}

/// Whether a run ends when the order reaches `to`: a checkout ends confirmed or failed, a
/// cancellation cancelled.
fn ends_run(to: OrderStatus) -> bool {
    matches!(
        to,
        OrderStatus::Confirmed
            | OrderStatus::Rejected
            | OrderStatus::PaymentFailed
            | OrderStatus::Cancelled
    )
}

fn move_to(to: OrderStatus, reason: Option<OrderFailure>) -> Next {
    Next::Move {
        to,
        reason,
        refunded: None,
    }
}

/// orders' words for payments' reasons: a new reason in payments breaks this match, not
/// orders' clients.
fn order_failure(reason: FailureReason) -> OrderFailure {
    match reason {
        FailureReason::Declined => OrderFailure::Declined,
        FailureReason::InsufficientFunds => OrderFailure::InsufficientFunds,
        FailureReason::ProviderError => OrderFailure::ProviderError,
        FailureReason::InvalidToken => OrderFailure::InvalidPaymentToken,
    }
}
