//! Minimal in-memory implementations of `CatalogApi` and `PaymentsApi`, with switches to
//! make them fail, hang, or stop at a gate the test opens.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::Notify;

use async_trait::async_trait;
use catalog_api::{
    CatalogApi, CatalogError, Product, Reservation, ReservationStatus, StockLevel, StockLine,
};
use chrono::Utc;
use kernel::{Currency, Money, OrderId, PaymentId, ProductId};
use payments_api::{
    ChargeRequest, FailureReason, Payment, PaymentStatus, PaymentsApi, PaymentsError,
};

pub fn eur(cents: i64) -> Money {
    Money::new(cents, Currency::EUR).expect("valid money")
}

#[derive(Debug, Default)]
pub struct Catalog {
    pub products: Mutex<HashMap<ProductId, Product>>,
    pub reservations: Mutex<HashMap<OrderId, ReservationStatus>>,
    /// The lines each reservation holds, to give them back on release.
    pub reserved_lines: Mutex<HashMap<OrderId, Vec<StockLine>>>,
    pub get_products_calls: AtomicUsize,
    /// Reserving any of these products answers `unavailable`, as a catalog that is down.
    pub unavailable: Mutex<HashSet<ProductId>>,
    /// `get_products` never answers while set.
    pub hang_lookups: AtomicBool,
}

/// A point where a call waits until the test lets it go on: `arrived` is notified when a
/// call reaches it, `open` lets one call through.
#[derive(Debug, Default)]
pub struct Gate {
    pub arrived: Notify,
    pub open: Notify,
}

impl Catalog {
    pub fn add(&self, name: &str, cents: i64, available: u32) -> ProductId {
        let id = ProductId::new();
        let now = Utc::now();
        let product = Product {
            id,
            sku: name.to_uppercase(),
            name: name.into(),
            description: String::new(),
            price: eur(cents),
            category: "things".into(),
            active: true,
            stock: StockLevel {
                available,
                reserved: 0,
            },
            created_at: now,
            updated_at: now,
        };
        self.products.lock().expect("lock").insert(id, product);
        id
    }

    pub fn available(&self, id: ProductId) -> u32 {
        self.products.lock().expect("lock")[&id].stock.available
    }
}

#[async_trait]
impl CatalogApi for Catalog {
    async fn get_products(&self, ids: Vec<ProductId>) -> Result<Vec<Product>, CatalogError> {
        self.get_products_calls.fetch_add(1, Ordering::SeqCst);
        if self.hang_lookups.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        let products = self.products.lock().expect("lock");
        Ok(ids
            .iter()
            .filter_map(|id| products.get(id).cloned())
            .collect())
    }

    async fn reserve_stock(
        &self,
        order_id: OrderId,
        lines: Vec<StockLine>,
    ) -> Result<Reservation, CatalogError> {
        {
            let down = self.unavailable.lock().expect("lock");
            if lines.iter().any(|line| down.contains(&line.product_id)) {
                return Err(CatalogError::Unavailable {
                    reason: "down for the test".into(),
                });
            }
        }
        let mut reservations = self.reservations.lock().expect("lock");
        if let Some(status) = reservations.get(&order_id) {
            return Ok(Reservation {
                order_id,
                status: *status,
                lines,
            });
        }
        let mut products = self.products.lock().expect("lock");
        let short: Vec<_> = lines
            .iter()
            .filter(|line| products[&line.product_id].stock.available < line.quantity)
            .map(|line| line.product_id)
            .collect();
        if !short.is_empty() {
            return Err(CatalogError::OutOfStock { product_ids: short });
        }
        for line in &lines {
            let stock = &mut products.get_mut(&line.product_id).expect("known").stock;
            stock.available -= line.quantity;
            stock.reserved += line.quantity;
        }
        reservations.insert(order_id, ReservationStatus::Reserved);
        self.reserved_lines
            .lock()
            .expect("lock")
            .insert(order_id, lines.clone());
        Ok(Reservation {
            order_id,
            status: ReservationStatus::Reserved,
            lines,
        })
    }

    async fn commit_reservation(&self, order_id: OrderId) -> Result<Reservation, CatalogError> {
        self.reservations
            .lock()
            .expect("lock")
            .insert(order_id, ReservationStatus::Committed);
        Ok(Reservation {
            order_id,
            status: ReservationStatus::Committed,
            lines: vec![],
        })
    }

    async fn release_reservation(&self, order_id: OrderId) -> Result<Reservation, CatalogError> {
        let previous = self
            .reservations
            .lock()
            .expect("lock")
            .insert(order_id, ReservationStatus::Released);
        if previous == Some(ReservationStatus::Reserved) {
            let lines = self
                .reserved_lines
                .lock()
                .expect("lock")
                .remove(&order_id)
                .unwrap_or_default();
            let mut products = self.products.lock().expect("lock");
            for line in lines {
                let stock = &mut products.get_mut(&line.product_id).expect("known").stock;
                stock.available += line.quantity;
                stock.reserved -= line.quantity;
            }
        }
        Ok(Reservation {
            order_id,
            status: ReservationStatus::Released,
            lines: vec![],
        })
    }

    async fn restock_reservation(&self, order_id: OrderId) -> Result<Reservation, CatalogError> {
        self.release_reservation(order_id).await
    }
}

/// Approves `tok_visa`, declines everything else; remembers one payment per order.
#[derive(Debug, Default)]
pub struct Payments {
    pub payments: Mutex<HashMap<OrderId, Payment>>,
    /// Charges that took money.
    pub charges: AtomicUsize,
    /// Every call of `charge`, whatever it answered.
    pub charge_calls: AtomicUsize,
    pub cancel_calls: AtomicUsize,
    pub get_payment_calls: AtomicUsize,
    /// When set, every charge waits at this gate before it answers.
    pub gate: Option<Gate>,
    /// Charges never answer while set (the caller's timeout decides).
    pub hang_charges: AtomicBool,
    /// `get_payment` answers `unavailable` while set.
    pub fail_lookups: AtomicBool,
}

#[async_trait]
impl PaymentsApi for Payments {
    async fn charge(&self, request: ChargeRequest) -> Result<Payment, PaymentsError> {
        self.charge_calls.fetch_add(1, Ordering::SeqCst);
        if self.hang_charges.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        if let Some(gate) = &self.gate {
            gate.arrived.notify_one();
            gate.open.notified().await;
        }
        let mut payments = self.payments.lock().expect("lock");
        if let Some(payment) = payments.get(&request.order_id) {
            return Ok(payment.clone());
        }
        let approved = request.payment_token.as_str() == "tok_visa";
        if approved {
            self.charges.fetch_add(1, Ordering::SeqCst);
        }
        let now = Utc::now();
        let payment = Payment {
            id: PaymentId::new(),
            order_id: request.order_id,
            customer_id: request.customer_id,
            amount: request.amount,
            status: if approved {
                PaymentStatus::Captured
            } else {
                PaymentStatus::Failed
            },
            captured: if approved {
                request.amount
            } else {
                Money::zero(request.amount.currency())
            },
            refunded: Money::zero(request.amount.currency()),
            provider_reference: approved.then(|| "ref".to_owned()),
            failure_reason: (!approved).then_some(FailureReason::Declined),
            created_at: now,
            updated_at: now,
        };
        payments.insert(request.order_id, payment.clone());
        Ok(payment)
    }

    async fn refund_order(&self, order_id: OrderId) -> Result<Payment, PaymentsError> {
        let mut payments = self.payments.lock().expect("lock");
        let payment = payments
            .get_mut(&order_id)
            .ok_or(PaymentsError::PaymentNotFound { order_id })?;
        payment.refunded = payment.captured;
        payment.status = PaymentStatus::Refunded;
        Ok(payment.clone())
    }

    async fn cancel(&self, order_id: OrderId) -> Result<Payment, PaymentsError> {
        self.cancel_calls.fetch_add(1, Ordering::SeqCst);
        let mut payments = self.payments.lock().expect("lock");
        let now = Utc::now();
        let payment = payments.entry(order_id).or_insert_with(|| Payment {
            id: PaymentId::new(),
            order_id,
            customer_id: kernel::UserId::new(),
            amount: eur(0),
            status: PaymentStatus::Voided,
            captured: eur(0),
            refunded: eur(0),
            provider_reference: None,
            failure_reason: None,
            created_at: now,
            updated_at: now,
        });
        if payment.status == PaymentStatus::Captured {
            payment.refunded = payment.captured;
            payment.status = PaymentStatus::Refunded;
        }
        Ok(payment.clone())
    }

    async fn get_payment(&self, order_id: OrderId) -> Result<Payment, PaymentsError> {
        self.get_payment_calls.fetch_add(1, Ordering::SeqCst);
        if self.fail_lookups.load(Ordering::SeqCst) {
            return Err(PaymentsError::Unavailable {
                reason: "down for the test".into(),
            });
        }
        self.payments
            .lock()
            .expect("lock")
            .get(&order_id)
            .cloned()
            .ok_or(PaymentsError::PaymentNotFound { order_id })
    }
}
