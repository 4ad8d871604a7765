//! The `OrdersApi` contract: placing an order runs checkout to its end (confirmed,
//! rejected or payment failed), idempotently per customer and key; customers see and cancel
//! only their own orders, administrators all of them.
//!
//! Orders calls catalog and payments: the suite needs the process under test to run them
//! (or reach them), with payments in test mode (the fake provider's tokens).

use std::sync::Arc;

use async_trait::async_trait;
use catalog_api::NewProduct;
use kernel::{IdempotencyKey, Money, OrderId, PageRequest, ProductId, UserId};
use orders_api::{
    LineRequest, Order, OrderDetail, OrderFailure, OrderLine, OrderStatus, OrdersApi, OrdersError,
    PaymentState, PlaceOrder, ProductView, ShippingAddress, Viewer,
};

use crate::catalog::new_product;
use crate::{Customer, answered, eur, field_codes, refused, unique};

/// What the orders suite needs that the port cannot do.
#[async_trait]
pub trait OrdersFixture: Send + Sync {
    /// A fresh registered customer (as `AuthFixture::customer`). Registered, because
    /// notifications learns its recipients from auth's events and waits for them.
    async fn customer(&self) -> Customer;

    /// Creates a product (as `CatalogFixture::create_product`).
    async fn create_product(&self, product: NewProduct) -> ProductId;
}

/// Runs every case of the `OrdersApi` contract against `api`.
pub async fn suite(api: Arc<dyn OrdersApi>, fixture: &dyn OrdersFixture) {
    let suite = Suite {
        api: api.as_ref(),
        fixture,
        // Orders takes the viewer from its caller (the web layer establishes it from a
        // token): any id with `admin` set is an administrator.
        admin: Viewer {
            user_id: UserId::new(),
            admin: true,
        },
    };
    suite.run().await;
}

struct Suite<'a> {
    api: &'a dyn OrdersApi,
    fixture: &'a dyn OrdersFixture,
    admin: Viewer,
}

/// A product made for the run, and what it was made with.
struct Made {
    id: ProductId,
    spec: NewProduct,
}

fn viewer(customer: &Customer) -> Viewer {
    Viewer {
        user_id: customer.user_id,
        admin: false,
    }
}

fn address() -> ShippingAddress {
    ShippingAddress {
        name: "Ada Lovelace".into(),
        line1: "12 St James's Square".into(),
        line2: None,
        city: "London".into(),
        postal_code: "SW1Y 4JH".into(),
        country: "gb".into(),
    }
}

fn key() -> IdempotencyKey {
    IdempotencyKey::parse(&unique("suite-order-")).expect("a valid key")
}

fn line(product: &Made, quantity: u32) -> LineRequest {
    LineRequest {
        product_id: product.id,
        quantity,
    }
}

fn request(customer: &Customer, lines: Vec<LineRequest>, payment_token: &str) -> PlaceOrder {
    PlaceOrder {
        customer_id: customer.user_id,
        idempotency_key: key(),
        lines,
        shipping_address: address(),
        payment_token: payment_token.into(),
    }
}

fn page(page: u32, per_page: u32) -> PageRequest {
    PageRequest::new(Some(page), Some(per_page)).expect("a valid page")
}

fn money(cents: i64) -> Money {
    eur(cents)
}

/// The line orders snapshots of `product` for `quantity` units.
fn snapshot(product: &Made, quantity: u32) -> OrderLine {
    OrderLine {
        product_id: product.id,
        sku: product.spec.sku.clone(),
        name: product.spec.name.clone(),
        unit_price: product.spec.price,
        quantity,
        line_total: product
            .spec
            .price
            .checked_mul(quantity)
            .expect("a small total"),
    }
}

/// `product` as an order's detail shows it, with `available` units left.
fn view(product: &Made, available: u32) -> ProductView {
    ProductView {
        product_id: product.id,
        name: product.spec.name.clone(),
        current_price: product.spec.price,
        active: product.spec.active,
        available,
    }
}

/// An order's detail with its products in id order: the port does not promise an order.
fn sorted(mut detail: OrderDetail) -> OrderDetail {
    detail.products.sort_by_key(|product| product.product_id);
    detail
}

fn ids(orders: &[Order]) -> Vec<OrderId> {
    orders.iter().map(|order| order.id).collect()
}

impl Suite<'_> {
    async fn product(&self, cents: i64, stock: u32, active: bool) -> Made {
        let spec = new_product(cents, stock, active);
        let id = self.fixture.create_product(spec.clone()).await;
        Made { id, spec }
    }

    async fn detail(&self, viewer: Viewer, id: OrderId, case: &str) -> OrderDetail {
        sorted(answered(self.api.get_order(viewer, id).await, case))
    }

    #[track_caller]
    fn assert_validation(
        result: Result<orders_api::Placed, OrdersError>,
        expected: &[(&str, &str)],
        case: &str,
    ) {
        match refused(result, case) {
            OrdersError::ValidationFailed { fields } => {
                assert_eq!(field_codes(&fields), expected, "{case}");
            }
            other => panic!("{case}: expected validation_failed, got {other:?}"),
        }
    }

    async fn run(&self) {
        let keyboard = self.product(1250, 5, true).await;
        let cable = self.product(300, 2, true).await;
        let withdrawn = self.product(999, 5, false).await;
        let alice = self.fixture.customer().await;
        let bob = self.fixture.customer().await;

        // Placing: confirmed, replayed, refused.
        let first = request(
            &alice,
            vec![line(&keyboard, 2), line(&cable, 1)],
            "tok_visa",
        );
        let case = "orders.place_order: a paid order is confirmed with snapshot lines";
        let placed = answered(self.api.place_order(first.clone()).await, case);
        assert!(!placed.replayed, "{case}: a new key is not a replay");
        let confirmed = placed.order;
        assert_eq!(confirmed.customer_id, alice.user_id, "{case}: customer");
        assert_eq!(confirmed.status, OrderStatus::Confirmed, "{case}: status");
        assert_eq!(confirmed.failure_reason, None, "{case}: failure reason");
        assert_eq!(
            confirmed.lines,
            [snapshot(&keyboard, 2), snapshot(&cable, 1)],
            "{case}: lines"
        );
        assert_eq!(confirmed.total, money(2800), "{case}: total");
        assert_eq!(
            confirmed.shipping_address,
            ShippingAddress {
                country: "GB".into(),
                ..address()
            },
            "{case}: the address, its country upper-case"
        );
        assert!(
            confirmed.created_at <= confirmed.updated_at,
            "{case}: {confirmed:?}"
        );

        let case = "orders.place_order: the same key and request answer the same order, replayed";
        let replayed = answered(self.api.place_order(first.clone()).await, case);
        assert!(replayed.replayed, "{case}: replayed");
        assert_eq!(replayed.order, confirmed, "{case}");

        let case = "orders.place_order: the same key with another request is refused";
        let changed = PlaceOrder {
            lines: vec![line(&keyboard, 1)],
            ..first.clone()
        };
        assert_eq!(
            self.api.place_order(changed).await,
            Err(OrdersError::IdempotencyKeyReused),
            "{case}"
        );

        let case = "orders.get_order: the customer sees the order with its payment and products";
        let detail = self.detail(viewer(&alice), confirmed.id, case).await;
        assert_eq!(detail.order, confirmed, "{case}: order");
        let payment = detail.payment.clone().expect("orders.get_order: a payment");
        assert_eq!(payment.status, PaymentState::Captured, "{case}: payment");
        assert_eq!(payment.captured, money(2800), "{case}: captured");
        assert_eq!(payment.refunded, money(0), "{case}: refunded");
        assert!(payment.provider_reference.is_some(), "{case}: {payment:?}");
        let mut products = vec![view(&keyboard, 3), view(&cable, 1)];
        products.sort_by_key(|product| product.product_id);
        assert_eq!(detail.products, products, "{case}: products");
        assert!(
            detail.unavailable.is_empty(),
            "{case}: complete: {detail:?}"
        );

        let case = "orders.get_order: an administrator sees any order";
        assert_eq!(
            self.detail(self.admin, confirmed.id, case).await,
            detail,
            "{case}"
        );

        let case = "orders.get_order: another customer's order is not found";
        assert_eq!(
            self.api.get_order(viewer(&bob), confirmed.id).await,
            Err(OrdersError::OrderNotFound {
                order_id: confirmed.id
            }),
            "{case}"
        );

        let case = "orders.get_order: an unknown order is not found";
        let unknown = OrderId::new();
        assert_eq!(
            self.api.get_order(self.admin, unknown).await,
            Err(OrdersError::OrderNotFound { order_id: unknown }),
            "{case}"
        );

        // Orders that do not confirm are answers, not errors.
        let case =
            "orders.place_order: a declined card ends the order payment_failed, its stock released";
        let declined = answered(
            self.api
                .place_order(request(&alice, vec![line(&keyboard, 1)], "tok_declined"))
                .await,
            case,
        );
        assert!(!declined.replayed, "{case}");
        let declined = declined.order;
        assert_eq!(
            declined.status,
            OrderStatus::PaymentFailed,
            "{case}: status"
        );
        assert_eq!(
            declined.failure_reason,
            Some(OrderFailure::Declined),
            "{case}: reason"
        );
        assert_eq!(declined.total, money(1250), "{case}: total");
        let detail = self.detail(viewer(&alice), declined.id, case).await;
        let payment = detail.payment.expect("orders.get_order: a failed payment");
        assert_eq!(payment.status, PaymentState::Failed, "{case}: payment");
        assert!(payment.captured.is_zero(), "{case}: nothing taken");
        assert_eq!(detail.products, [view(&keyboard, 3)], "{case}: stock");

        let case = "orders.place_order: too few units ends the order rejected, without a payment";
        let rejected = answered(
            self.api
                .place_order(request(&alice, vec![line(&cable, 5)], "tok_visa"))
                .await,
            case,
        )
        .order;
        assert_eq!(rejected.status, OrderStatus::Rejected, "{case}: status");
        assert_eq!(
            rejected.failure_reason,
            Some(OrderFailure::OutOfStock),
            "{case}: reason"
        );
        let detail = self.detail(viewer(&alice), rejected.id, case).await;
        assert_eq!(detail.payment, None, "{case}: no payment");
        assert_eq!(detail.products, [view(&cable, 1)], "{case}: stock");

        for (payment_token, reason) in [
            ("tok_insufficient_funds", OrderFailure::InsufficientFunds),
            ("tok_provider_error", OrderFailure::ProviderError),
            ("tok_not_a_test_token", OrderFailure::InvalidPaymentToken),
        ] {
            let case = format!("orders.place_order: {payment_token} ends the order payment_failed");
            let order = answered(
                self.api
                    .place_order(request(&bob, vec![line(&keyboard, 1)], payment_token))
                    .await,
                &case,
            )
            .order;
            assert_eq!(order.status, OrderStatus::PaymentFailed, "{case}: status");
            assert_eq!(order.failure_reason, Some(reason), "{case}: reason");
        }

        // Requests that are refused leave no order.
        let case = "orders.place_order: no lines is a validation failure";
        Self::assert_validation(
            self.api
                .place_order(request(&alice, Vec::new(), "tok_visa"))
                .await,
            &[("lines", "required")],
            case,
        );
        let case = "orders.place_order: a malformed payment token is a validation failure";
        Self::assert_validation(
            self.api
                .place_order(request(&alice, vec![line(&keyboard, 1)], "tok visa"))
                .await,
            &[("payment_token", "invalid_payment_token")],
            case,
        );
        let case =
            "orders.place_order: a country that is not a country code is a validation failure";
        let mut elsewhere = request(&alice, vec![line(&keyboard, 1)], "tok_visa");
        elsewhere.shipping_address.country = "G1".into();
        Self::assert_validation(
            self.api.place_order(elsewhere).await,
            &[("shipping_address.country", "invalid_country")],
            case,
        );
        let case = "orders.place_order: an unknown product is a validation failure";
        let nowhere = Made {
            id: ProductId::new(),
            spec: keyboard.spec.clone(),
        };
        Self::assert_validation(
            self.api
                .place_order(request(&alice, vec![line(&nowhere, 1)], "tok_visa"))
                .await,
            &[("lines[0].product_id", "unknown_product")],
            case,
        );
        let case = "orders.place_order: a product not for sale is a validation failure";
        Self::assert_validation(
            self.api
                .place_order(request(&alice, vec![line(&withdrawn, 1)], "tok_visa"))
                .await,
            &[("lines[0].product_id", "product_unavailable")],
            case,
        );

        // Listing: newest first, the customer's own, all of them for administrators.
        let case = "orders.list_orders: a customer's orders, newest first";
        let listed = answered(
            self.api
                .list_orders(viewer(&alice), PageRequest::default())
                .await,
            case,
        );
        assert_eq!(
            ids(&listed.items),
            [rejected.id, declined.id, confirmed.id],
            "{case}: no refused request made an order"
        );
        assert_eq!(listed.total, 3, "{case}: total");
        assert_eq!(
            (listed.page, listed.per_page),
            (1, PageRequest::DEFAULT_PER_PAGE),
            "{case}: page"
        );
        assert_eq!(listed.items[2], confirmed, "{case}: the order as placed");

        let case = "orders.list_orders: pages of one";
        let second = answered(self.api.list_orders(viewer(&alice), page(2, 1)).await, case);
        assert_eq!(ids(&second.items), [declined.id], "{case}");
        assert_eq!(
            (second.total, second.page, second.per_page),
            (3, 2, 1),
            "{case}"
        );

        let case = "orders.list_orders: a page past the end is empty";
        let past = answered(
            self.api.list_orders(viewer(&alice), page(2, 20)).await,
            case,
        );
        assert_eq!((past.items.len(), past.total), (0, 3), "{case}");

        let case = "orders.list_orders: an administrator sees every customer's orders";
        let all = answered(self.api.list_orders(self.admin, page(1, 100)).await, case);
        let seen: Vec<OrderId> = ids(&all.items)
            .into_iter()
            .filter(|id| [rejected.id, declined.id, confirmed.id].contains(id))
            .collect();
        assert_eq!(
            seen,
            [rejected.id, declined.id, confirmed.id],
            "{case}: alice's orders, newest first"
        );
        assert!(all.total >= 6, "{case}: total {}", all.total);

        // Idempotency keys belong to their customer.
        let case = "orders.place_order: another customer's key is a new order";
        let bobs = PlaceOrder {
            customer_id: bob.user_id,
            lines: vec![line(&cable, 1)],
            ..first.clone()
        };
        let bobs = answered(self.api.place_order(bobs).await, case);
        assert!(!bobs.replayed, "{case}: not a replay");
        assert_ne!(bobs.order.id, confirmed.id, "{case}: another order");
        assert_eq!(bobs.order.customer_id, bob.user_id, "{case}: customer");
        assert_eq!(bobs.order.status, OrderStatus::Confirmed, "{case}: status");
        let bobs = bobs.order;

        let case = "orders.list_orders: a customer sees none of another customer's orders";
        let listed = answered(
            self.api
                .list_orders(viewer(&bob), PageRequest::default())
                .await,
            case,
        );
        assert_eq!(listed.total, 4, "{case}: bob's four orders");
        assert_eq!(listed.items[0].id, bobs.id, "{case}: newest first");
        assert!(
            listed
                .items
                .iter()
                .all(|order| order.customer_id == bob.user_id),
            "{case}: {listed:?}"
        );

        // Cancelling.
        let case = "orders.cancel_order: another customer's order is not found";
        assert_eq!(
            self.api.cancel_order(viewer(&bob), confirmed.id).await,
            Err(OrdersError::OrderNotFound {
                order_id: confirmed.id
            }),
            "{case}"
        );
        let case = "orders.cancel_order: an unknown order is not found";
        assert_eq!(
            self.api.cancel_order(viewer(&alice), unknown).await,
            Err(OrdersError::OrderNotFound { order_id: unknown }),
            "{case}"
        );
        let case = "orders.cancel_order: a rejected order cannot be cancelled";
        assert_eq!(
            self.api.cancel_order(viewer(&alice), rejected.id).await,
            Err(OrdersError::NotCancellable {
                status: OrderStatus::Rejected
            }),
            "{case}"
        );
        let case = "orders.cancel_order: an order whose payment failed cannot be cancelled";
        assert_eq!(
            self.api.cancel_order(viewer(&alice), declined.id).await,
            Err(OrdersError::NotCancellable {
                status: OrderStatus::PaymentFailed
            }),
            "{case}"
        );

        let case =
            "orders.cancel_order: the customer cancels a confirmed order: refunded and restocked";
        let cancelled = answered(
            self.api.cancel_order(viewer(&alice), confirmed.id).await,
            case,
        );
        assert_eq!(cancelled.id, confirmed.id, "{case}: the same order");
        assert_eq!(cancelled.status, OrderStatus::Cancelled, "{case}: status");
        assert_eq!(cancelled.lines, confirmed.lines, "{case}: lines");
        assert_eq!(cancelled.total, confirmed.total, "{case}: total");
        assert_eq!(cancelled.failure_reason, None, "{case}: failure reason");
        let detail = self.detail(viewer(&alice), confirmed.id, case).await;
        assert_eq!(detail.order, cancelled, "{case}: get_order");
        let payment = detail
            .payment
            .expect("orders.get_order: a refunded payment");
        assert_eq!(payment.status, PaymentState::Refunded, "{case}: payment");
        assert_eq!(payment.refunded, money(2800), "{case}: refunded");
        // Alice's units are back; bob's confirmed order still holds a cable.
        let mut products = vec![view(&keyboard, 5), view(&cable, 1)];
        products.sort_by_key(|product| product.product_id);
        assert_eq!(detail.products, products, "{case}: restocked");

        let case = "orders.cancel_order: cancelling a cancelled order answers it unchanged";
        assert_eq!(
            self.api.cancel_order(viewer(&alice), confirmed.id).await,
            Ok(cancelled.clone()),
            "{case}"
        );

        let case = "orders.cancel_order: an administrator cancels any customer's order";
        let cancelled = answered(self.api.cancel_order(self.admin, bobs.id).await, case);
        assert_eq!(
            (cancelled.id, cancelled.status),
            (bobs.id, OrderStatus::Cancelled),
            "{case}"
        );
    }
}
