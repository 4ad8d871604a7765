//! The `CatalogApi` contract: batch lookups, and stock reservations keyed by order, every
//! step idempotent.

use std::sync::Arc;

use async_trait::async_trait;
use catalog_api::{
    CatalogApi, CatalogError, NewProduct, Product, Reservation, ReservationStatus, StockLevel,
    StockLine,
};
use kernel::{OrderId, ProductId};

use crate::{answered, eur, field_codes, refused, unique};

/// What the catalog suite needs that the port cannot do.
#[async_trait]
pub trait CatalogFixture: Send + Sync {
    /// Creates `product` as the catalog's administration does and returns its id. In
    /// process: `CatalogService::create_product`; over HTTP: `POST /api/catalog/products`
    /// with `product` as the body, as an administrator (201, the product's `id`).
    ///
    /// Panics if the product cannot be created.
    async fn create_product(&self, product: NewProduct) -> ProductId;
}

/// A product no other run has: a fresh sku (upper-case, as the catalog stores it), priced
/// at `cents` euro cents, with `stock` units available.
pub fn new_product(cents: i64, stock: u32, active: bool) -> NewProduct {
    let sku = unique("SUITE-").to_uppercase();
    NewProduct {
        name: format!("Suite product {sku}"),
        sku,
        description: "Made by a port contract suite.".into(),
        price: eur(cents),
        category: "suite".into(),
        initial_stock: stock,
        active,
    }
}

/// Runs every case of the `CatalogApi` contract against `api`.
pub async fn suite(api: Arc<dyn CatalogApi>, fixture: &dyn CatalogFixture) {
    let suite = Suite {
        api: api.as_ref(),
        fixture,
    };
    suite.get_products().await;
    suite.reserve_stock().await;
    suite.reserve_stock_refusals().await;
    suite.commit_and_restock().await;
    suite.release_reservation().await;
}

struct Suite<'a> {
    api: &'a dyn CatalogApi,
    fixture: &'a dyn CatalogFixture,
}

fn line(product_id: ProductId, quantity: u32) -> StockLine {
    StockLine {
        product_id,
        quantity,
    }
}

fn level(available: u32, reserved: u32) -> StockLevel {
    StockLevel {
        available,
        reserved,
    }
}

/// A reservation with its lines in product order: the port does not promise an order.
fn sorted(mut reservation: Reservation) -> Reservation {
    reservation.lines.sort_by_key(|line| line.product_id);
    reservation
}

fn reservation(order_id: OrderId, status: ReservationStatus, lines: Vec<StockLine>) -> Reservation {
    sorted(Reservation {
        order_id,
        status,
        lines,
    })
}

impl Suite<'_> {
    async fn create(&self, cents: i64, stock: u32, active: bool) -> (ProductId, NewProduct) {
        let product = new_product(cents, stock, active);
        let id = self.fixture.create_product(product.clone()).await;
        (id, product)
    }

    /// The stock of `product` as the port reports it now.
    async fn stock(&self, product: ProductId, case: &str) -> StockLevel {
        let found = answered(self.api.get_products(vec![product]).await, case);
        match found.as_slice() {
            [found] if found.id == product => found.stock,
            other => panic!("{case}: expected product {product}, got {other:?}"),
        }
    }

    #[track_caller]
    fn assert_product(found: &Product, id: ProductId, created: &NewProduct, case: &str) {
        assert_eq!(found.id, id, "{case}: id");
        assert_eq!(found.sku, created.sku, "{case}: sku");
        assert_eq!(found.name, created.name, "{case}: name");
        assert_eq!(
            found.description, created.description,
            "{case}: description"
        );
        assert_eq!(found.price, created.price, "{case}: price");
        assert_eq!(found.category, created.category, "{case}: category");
        assert_eq!(found.active, created.active, "{case}: active");
        assert_eq!(
            found.stock,
            level(created.initial_stock, 0),
            "{case}: a new product's stock"
        );
        assert!(
            found.created_at <= found.updated_at,
            "{case}: updated before created: {found:?}"
        );
    }

    async fn get_products(&self) {
        let (active, active_spec) = self.create(1250, 5, true).await;
        let (inactive, inactive_spec) = self.create(300, 0, false).await;
        let unknown = ProductId::new();

        let case = "catalog.get_products: known ids are answered, unknown ones left out, repeated ones once";
        let mut found = answered(
            self.api
                .get_products(vec![active, unknown, inactive, active])
                .await,
            case,
        );
        found.sort_by_key(|product| product.id);
        let mut expected = [(active, &active_spec), (inactive, &inactive_spec)];
        expected.sort_by_key(|(id, _)| *id);
        assert_eq!(found.len(), 2, "{case}: {found:?}");
        for (found, (id, spec)) in found.iter().zip(expected) {
            Self::assert_product(found, id, spec, case);
        }

        let case = "catalog.get_products: no ids, no products";
        assert_eq!(
            self.api.get_products(Vec::new()).await,
            Ok(Vec::new()),
            "{case}"
        );

        let case = "catalog.get_products: only unknown ids, no products";
        assert_eq!(
            self.api.get_products(vec![unknown]).await,
            Ok(Vec::new()),
            "{case}"
        );

        let case = "catalog.get_products: more than 500 ids is an invalid query";
        let many = (0..501).map(|_| ProductId::new()).collect();
        match refused(self.api.get_products(many).await, case) {
            CatalogError::InvalidQuery { fields } => {
                assert_eq!(field_codes(&fields), [("ids", "too_many")], "{case}");
            }
            other => panic!("{case}: expected invalid_query, got {other:?}"),
        }
    }

    async fn reserve_stock(&self) {
        let (a, _) = self.create(1000, 10, true).await;
        let (b, _) = self.create(500, 3, true).await;
        let order = OrderId::new();
        let expected = reservation(
            order,
            ReservationStatus::Reserved,
            vec![line(a, 3), line(b, 2)],
        );

        let case = "catalog.reserve_stock: every line reserved, lines of one product merged";
        let reserved = answered(
            self.api
                .reserve_stock(order, vec![line(b, 2), line(a, 1), line(a, 2)])
                .await,
            case,
        );
        assert_eq!(sorted(reserved), expected, "{case}");
        assert_eq!(self.stock(a, case).await, level(7, 3), "{case}: stock of a");
        assert_eq!(self.stock(b, case).await, level(1, 2), "{case}: stock of b");

        let case =
            "catalog.reserve_stock: reserving again for the order answers the same reservation";
        let again = answered(
            self.api
                .reserve_stock(order, vec![line(b, 2), line(a, 3)])
                .await,
            case,
        );
        assert_eq!(sorted(again), expected, "{case}");

        let case = "catalog.reserve_stock: other lines for a reserved order answer the first reservation and take nothing";
        let other = answered(self.api.reserve_stock(order, vec![line(a, 1)]).await, case);
        assert_eq!(sorted(other), expected, "{case}");
        assert_eq!(self.stock(a, case).await, level(7, 3), "{case}: stock of a");
        assert_eq!(self.stock(b, case).await, level(1, 2), "{case}: stock of b");
    }

    async fn reserve_stock_refusals(&self) {
        let (plenty, _) = self.create(1000, 5, true).await;
        let (few, _) = self.create(1000, 1, true).await;
        let (none, _) = self.create(1000, 0, true).await;
        let (inactive, _) = self.create(1000, 5, false).await;

        let case =
            "catalog.reserve_stock: out of stock names every short product and takes nothing";
        let order = OrderId::new();
        match refused(
            self.api
                .reserve_stock(order, vec![line(plenty, 2), line(few, 2), line(none, 1)])
                .await,
            case,
        ) {
            CatalogError::OutOfStock { mut product_ids } => {
                product_ids.sort();
                let mut expected = vec![few, none];
                expected.sort();
                assert_eq!(product_ids, expected, "{case}");
            }
            other => panic!("{case}: expected out_of_stock, got {other:?}"),
        }
        assert_eq!(self.stock(plenty, case).await, level(5, 0), "{case}");
        assert_eq!(self.stock(few, case).await, level(1, 0), "{case}");

        let case = "catalog.reserve_stock: a refused order may reserve later";
        let reserved = answered(
            self.api.reserve_stock(order, vec![line(plenty, 2)]).await,
            case,
        );
        assert_eq!(
            sorted(reserved),
            reservation(order, ReservationStatus::Reserved, vec![line(plenty, 2)]),
            "{case}"
        );
        assert_eq!(self.stock(plenty, case).await, level(3, 2), "{case}");

        let case = "catalog.reserve_stock: an unknown product is refused and nothing is taken";
        let unknown = ProductId::new();
        assert_eq!(
            self.api
                .reserve_stock(OrderId::new(), vec![line(plenty, 1), line(unknown, 1)])
                .await,
            Err(CatalogError::ProductNotFound {
                product_id: unknown
            }),
            "{case}"
        );
        assert_eq!(self.stock(plenty, case).await, level(3, 2), "{case}");

        let case = "catalog.reserve_stock: a product not for sale is refused";
        assert_eq!(
            self.api
                .reserve_stock(OrderId::new(), vec![line(inactive, 1)])
                .await,
            Err(CatalogError::ProductInactive {
                product_id: inactive
            }),
            "{case}"
        );
        assert_eq!(self.stock(inactive, case).await, level(5, 0), "{case}");

        let case = "catalog.reserve_stock: no lines is a validation failure";
        match refused(
            self.api.reserve_stock(OrderId::new(), Vec::new()).await,
            case,
        ) {
            CatalogError::ValidationFailed { fields } => {
                assert_eq!(field_codes(&fields), [("lines", "required")], "{case}");
            }
            other => panic!("{case}: expected validation_failed, got {other:?}"),
        }

        let case = "catalog.reserve_stock: a line of zero units is a validation failure";
        match refused(
            self.api
                .reserve_stock(OrderId::new(), vec![line(plenty, 0)])
                .await,
            case,
        ) {
            CatalogError::ValidationFailed { fields } => {
                assert_eq!(
                    field_codes(&fields),
                    [("lines[0].quantity", "invalid_quantity")],
                    "{case}"
                );
            }
            other => panic!("{case}: expected validation_failed, got {other:?}"),
        }
        assert_eq!(self.stock(plenty, case).await, level(3, 2), "{case}");
    }

    async fn commit_and_restock(&self) {
        let (product, _) = self.create(1000, 4, true).await;
        let order = OrderId::new();
        let lines = vec![line(product, 3)];
        let case = "catalog.commit_reservation: setup";
        answered(self.api.reserve_stock(order, lines.clone()).await, case);
        assert_eq!(self.stock(product, case).await, level(1, 3), "{case}");

        let case = "catalog.commit_reservation: a reservation becomes a sale";
        let committed = reservation(order, ReservationStatus::Committed, lines.clone());
        let answer = answered(self.api.commit_reservation(order).await, case);
        assert_eq!(sorted(answer), committed, "{case}");
        assert_eq!(self.stock(product, case).await, level(1, 0), "{case}");

        let case =
            "catalog.commit_reservation: committing again answers the sale and moves nothing";
        let answer = answered(self.api.commit_reservation(order).await, case);
        assert_eq!(sorted(answer), committed, "{case}");
        assert_eq!(self.stock(product, case).await, level(1, 0), "{case}");

        let case = "catalog.commit_reservation: an order without a reservation is refused";
        let unknown = OrderId::new();
        assert_eq!(
            self.api.commit_reservation(unknown).await,
            Err(CatalogError::ReservationNotFound { order_id: unknown }),
            "{case}"
        );

        let case = "catalog.release_reservation: a sale cannot be released";
        assert_eq!(
            self.api.release_reservation(order).await,
            Err(CatalogError::ReservationClosed {
                order_id: order,
                status: ReservationStatus::Committed
            }),
            "{case}"
        );
        assert_eq!(self.stock(product, case).await, level(1, 0), "{case}");

        let case = "catalog.restock_reservation: a sale's units go back to available stock";
        let released = reservation(order, ReservationStatus::Released, lines);
        let answer = answered(self.api.restock_reservation(order).await, case);
        assert_eq!(sorted(answer), released, "{case}");
        assert_eq!(self.stock(product, case).await, level(4, 0), "{case}");

        let case =
            "catalog.restock_reservation: restocking again answers the same and moves nothing";
        let answer = answered(self.api.restock_reservation(order).await, case);
        assert_eq!(sorted(answer), released, "{case}");
        assert_eq!(self.stock(product, case).await, level(4, 0), "{case}");

        let case = "catalog.commit_reservation: a restocked reservation cannot be committed";
        assert_eq!(
            self.api.commit_reservation(order).await,
            Err(CatalogError::ReservationClosed {
                order_id: order,
                status: ReservationStatus::Released
            }),
            "{case}"
        );

        let case = "catalog.restock_reservation: an order without a reservation is refused";
        assert_eq!(
            self.api.restock_reservation(unknown).await,
            Err(CatalogError::ReservationNotFound { order_id: unknown }),
            "{case}"
        );

        let case =
            "catalog.restock_reservation: a reservation that was not sold cannot be restocked";
        let held = OrderId::new();
        answered(
            self.api.reserve_stock(held, vec![line(product, 1)]).await,
            case,
        );
        assert_eq!(
            self.api.restock_reservation(held).await,
            Err(CatalogError::ReservationClosed {
                order_id: held,
                status: ReservationStatus::Reserved
            }),
            "{case}"
        );
        assert_eq!(self.stock(product, case).await, level(3, 1), "{case}");
    }

    async fn release_reservation(&self) {
        let (product, _) = self.create(1000, 4, true).await;
        let order = OrderId::new();
        let lines = vec![line(product, 3)];
        let case = "catalog.release_reservation: setup";
        answered(self.api.reserve_stock(order, lines.clone()).await, case);

        let case = "catalog.release_reservation: the units go back to available stock";
        let released = reservation(order, ReservationStatus::Released, lines);
        let answer = answered(self.api.release_reservation(order).await, case);
        assert_eq!(sorted(answer), released, "{case}");
        assert_eq!(self.stock(product, case).await, level(4, 0), "{case}");

        let case =
            "catalog.release_reservation: releasing again answers the same and moves nothing";
        let answer = answered(self.api.release_reservation(order).await, case);
        assert_eq!(sorted(answer), released, "{case}");
        assert_eq!(self.stock(product, case).await, level(4, 0), "{case}");

        let case = "catalog.reserve_stock: a released order cannot reserve again";
        assert_eq!(
            self.api.reserve_stock(order, vec![line(product, 1)]).await,
            Err(CatalogError::ReservationClosed {
                order_id: order,
                status: ReservationStatus::Released
            }),
            "{case}"
        );
        assert_eq!(self.stock(product, case).await, level(4, 0), "{case}");

        let case =
            "catalog.release_reservation: an order that never reserved is released with nothing";
        let never = OrderId::new();
        assert_eq!(
            self.api.release_reservation(never).await,
            Ok(reservation(never, ReservationStatus::Released, Vec::new())),
            "{case}"
        );

        let case =
            "catalog.reserve_stock: a reservation arriving after its order was released is refused";
        assert_eq!(
            self.api.reserve_stock(never, vec![line(product, 1)]).await,
            Err(CatalogError::ReservationClosed {
                order_id: never,
                status: ReservationStatus::Released
            }),
            "{case}"
        );
        assert_eq!(self.stock(product, case).await, level(4, 0), "{case}");
    }
}
