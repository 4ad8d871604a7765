//! Stock adjustments and reservations: all-or-nothing, idempotent, never negative.

use std::sync::Arc;

use catalog::CatalogService;
use catalog_api::{
    CatalogApi, CatalogError, ProductPatch, Reservation, ReservationStatus, StockLevel, StockLine,
};
use futures::future::join_all;
use kernel::{OrderId, ProductId};
use proptest::prelude::*;
use testkit::{Backend, PropertyTest, TestStore};

use crate::{catalog, create};

fn line(product_id: ProductId, quantity: u32) -> StockLine {
    StockLine {
        product_id,
        quantity,
    }
}

async fn level(catalog: &Arc<CatalogService>, id: ProductId) -> StockLevel {
    catalog.get_product(id).await.expect("product").stock
}

fn stock(available: u32, reserved: u32) -> StockLevel {
    StockLevel {
        available,
        reserved,
    }
}

async fn adjustments_never_take_stock_below_zero(store: TestStore) {
    let catalog = catalog(&store).await;
    let product = create(&catalog, "ADJ", 3).await;
    assert_eq!(catalog.adjust_stock(product.id, 4).await, Ok(stock(7, 0)));
    assert_eq!(catalog.adjust_stock(product.id, -7).await, Ok(stock(0, 0)));
    assert_eq!(
        catalog.adjust_stock(product.id, -1).await,
        Err(CatalogError::InsufficientStock {
            product_id: product.id,
            available: 0
        })
    );
    // Zero is a no-op that answers the level; out-of-range deltas (even the most negative
    // i64) are field errors; past the limit is a conflict with the current stock.
    assert_eq!(catalog.adjust_stock(product.id, 0).await, Ok(stock(0, 0)));
    for delta in [i64::MIN, -1_000_000_001, 1_000_000_001, i64::MAX] {
        assert!(
            matches!(
                catalog.adjust_stock(product.id, delta).await,
                Err(CatalogError::ValidationFailed { .. })
            ),
            "{delta}"
        );
    }
    assert_eq!(
        catalog.adjust_stock(product.id, 1_000_000_000).await,
        Ok(stock(1_000_000_000, 0))
    );
    assert_eq!(
        catalog.adjust_stock(product.id, 1).await,
        Err(CatalogError::StockLimitExceeded {
            product_id: product.id,
            available: 1_000_000_000,
            limit: 1_000_000_000
        })
    );
    let missing = ProductId::new();
    assert_eq!(
        catalog.adjust_stock(missing, 1).await,
        Err(CatalogError::ProductNotFound {
            product_id: missing
        })
    );
}

async fn reservations_are_all_or_nothing(store: TestStore) {
    let catalog = catalog(&store).await;
    let plenty = create(&catalog, "PLENTY", 10).await;
    let scarce = create(&catalog, "SCARCE", 1).await;
    let order = OrderId::new();
    let refused = catalog
        .reserve_stock(order, vec![line(plenty.id, 5), line(scarce.id, 2)])
        .await;
    assert_eq!(
        refused,
        Err(CatalogError::OutOfStock {
            product_ids: vec![scarce.id]
        })
    );
    assert_eq!(
        level(&catalog, plenty.id).await,
        stock(10, 0),
        "nothing taken"
    );
    assert_eq!(level(&catalog, scarce.id).await, stock(1, 0));

    // The refused order left no reservation behind, so it may try again.
    let reserved = catalog
        .reserve_stock(order, vec![line(plenty.id, 5), line(scarce.id, 1)])
        .await
        .expect("reserve");
    assert_eq!(reserved.status, ReservationStatus::Reserved);
    assert_eq!(level(&catalog, plenty.id).await, stock(5, 5));
    assert_eq!(level(&catalog, scarce.id).await, stock(0, 1));
}

async fn reservations_refuse_unknown_inactive_and_invalid_lines(store: TestStore) {
    let catalog = catalog(&store).await;
    let product = create(&catalog, "P", 5).await;
    let unknown = ProductId::new();
    assert_eq!(
        catalog
            .reserve_stock(OrderId::new(), vec![line(unknown, 1)])
            .await,
        Err(CatalogError::ProductNotFound {
            product_id: unknown
        })
    );
    assert!(matches!(
        catalog.reserve_stock(OrderId::new(), vec![]).await,
        Err(CatalogError::ValidationFailed { .. })
    ));
    assert!(matches!(
        catalog
            .reserve_stock(OrderId::new(), vec![line(product.id, 0)])
            .await,
        Err(CatalogError::ValidationFailed { .. })
    ));
    catalog
        .update_product(
            product.id,
            ProductPatch {
                active: Some(false),
                ..ProductPatch::default()
            },
        )
        .await
        .expect("deactivate");
    assert_eq!(
        catalog
            .reserve_stock(OrderId::new(), vec![line(product.id, 1)])
            .await,
        Err(CatalogError::ProductInactive {
            product_id: product.id
        })
    );
    assert_eq!(level(&catalog, product.id).await, stock(5, 0));
}

async fn every_reservation_step_is_idempotent(store: TestStore) {
    let catalog = catalog(&store).await;
    let product = create(&catalog, "IDEM", 10).await;
    let order = OrderId::new();
    let first = catalog
        .reserve_stock(order, vec![line(product.id, 2), line(product.id, 1)])
        .await
        .expect("reserve");
    assert_eq!(
        first.lines,
        vec![line(product.id, 3)],
        "lines of one product are merged"
    );
    let again = catalog
        .reserve_stock(order, vec![line(product.id, 3)])
        .await
        .expect("reserve again");
    assert_eq!(again, first);
    assert_eq!(level(&catalog, product.id).await, stock(7, 3), "taken once");

    let committed = catalog.commit_reservation(order).await.expect("commit");
    assert_eq!(committed.status, ReservationStatus::Committed);
    assert_eq!(
        catalog.commit_reservation(order).await,
        Ok(committed.clone())
    );
    assert_eq!(
        level(&catalog, product.id).await,
        stock(7, 0),
        "sold units leave stock"
    );
    assert_eq!(
        catalog.release_reservation(order).await,
        Err(CatalogError::ReservationClosed {
            order_id: order,
            status: ReservationStatus::Committed
        })
    );

    let other = OrderId::new();
    catalog
        .reserve_stock(other, vec![line(product.id, 4)])
        .await
        .expect("reserve");
    let released = catalog.release_reservation(other).await.expect("release");
    assert_eq!(released.status, ReservationStatus::Released);
    assert_eq!(catalog.release_reservation(other).await, Ok(released));
    assert_eq!(
        level(&catalog, product.id).await,
        stock(7, 0),
        "released units return"
    );
    assert_eq!(
        catalog.commit_reservation(other).await,
        Err(CatalogError::ReservationClosed {
            order_id: other,
            status: ReservationStatus::Released
        })
    );

    // A cancelled sale: the committed units go back, once.
    let restocked = catalog.restock_reservation(order).await.expect("restock");
    assert_eq!(restocked.status, ReservationStatus::Released);
    assert_eq!(catalog.restock_reservation(order).await, Ok(restocked));
    assert_eq!(
        level(&catalog, product.id).await,
        stock(10, 0),
        "sold units return"
    );
    let never = OrderId::new();
    assert_eq!(
        catalog.restock_reservation(never).await,
        Err(CatalogError::ReservationNotFound { order_id: never })
    );
}

async fn releasing_first_refuses_a_late_reservation(store: TestStore) {
    let catalog = catalog(&store).await;
    let product = create(&catalog, "LATE", 5).await;
    let order = OrderId::new();
    let tombstone = catalog.release_reservation(order).await.expect("release");
    assert_eq!(
        tombstone,
        Reservation {
            order_id: order,
            status: ReservationStatus::Released,
            lines: vec![]
        }
    );
    assert_eq!(
        catalog
            .reserve_stock(order, vec![line(product.id, 1)])
            .await,
        Err(CatalogError::ReservationClosed {
            order_id: order,
            status: ReservationStatus::Released
        })
    );
    assert_eq!(level(&catalog, product.id).await, stock(5, 0));
    let unknown = OrderId::new();
    assert_eq!(
        catalog.commit_reservation(unknown).await,
        Err(CatalogError::ReservationNotFound { order_id: unknown })
    );
}

/// The concurrency requirement: 50 orders race for the last 5 units.
async fn fifty_concurrent_reservations_for_five_units(store: TestStore) {
    let catalog = catalog(&store).await;
    let product = create(&catalog, "LAST5", 5).await;
    let attempts = (0..50).map(|_| {
        let catalog = catalog.clone();
        tokio::spawn(async move {
            catalog
                .reserve_stock(OrderId::new(), vec![line(product.id, 1)])
                .await
        })
    });
    let outcomes: Vec<_> = join_all(attempts)
        .await
        .into_iter()
        .map(|joined| joined.expect("task"))
        .collect();
    let succeeded = outcomes.iter().filter(|outcome| outcome.is_ok()).count();
    let out_of_stock = outcomes
        .iter()
        .filter(|outcome| matches!(outcome, Err(CatalogError::OutOfStock { .. })))
        .count();
    assert_eq!((succeeded, out_of_stock), (5, 45), "{outcomes:?}");
    assert_eq!(level(&catalog, product.id).await, stock(0, 5));
}

/// Reservations that share products, reserved and then committed or released all at once,
/// never deadlock and never lose a unit: every one of them locks its stock rows in product
/// order (on Postgres inside one statement), whatever order its lines came in.
async fn concurrent_reservations_sharing_products_neither_deadlock_nor_lose_units(
    store: TestStore,
) {
    let catalog = catalog(&store).await;
    let mut products = Vec::new();
    for sku in ["SHARED-A", "SHARED-B", "SHARED-C"] {
        products.push(create(&catalog, sku, 100).await.id);
    }
    let orders: Vec<OrderId> = (0..24).map(|_| OrderId::new()).collect();
    let reservations = orders.iter().enumerate().map(|(n, &order)| {
        let catalog = catalog.clone();
        // Each order names the products in an order of its own.
        let mut lines: Vec<StockLine> = products.iter().map(|&id| line(id, 2)).collect();
        lines.rotate_left(n % 3);
        if n % 2 == 1 {
            lines.reverse();
        }
        tokio::spawn(async move { catalog.reserve_stock(order, lines).await })
    });
    for outcome in join_all(reservations).await {
        outcome.expect("task").expect("reserve");
    }
    for &id in &products {
        assert_eq!(level(&catalog, id).await, stock(52, 48));
    }
    let closings = orders.iter().enumerate().map(|(n, &order)| {
        let catalog = catalog.clone();
        tokio::spawn(async move {
            if n % 2 == 0 {
                catalog.commit_reservation(order).await
            } else {
                catalog.release_reservation(order).await
            }
        })
    });
    for outcome in join_all(closings).await {
        outcome.expect("task").expect("close");
    }
    // Half the orders bought 2 units of each product; the other half gave theirs back.
    for &id in &products {
        assert_eq!(level(&catalog, id).await, stock(76, 0));
    }
}

/// Many callers closing one reservation at once move its units exactly once.
async fn concurrent_releases_return_units_once(store: TestStore) {
    let catalog = catalog(&store).await;
    let product = create(&catalog, "RACE", 10).await;
    let order = OrderId::new();
    catalog
        .reserve_stock(order, vec![line(product.id, 4)])
        .await
        .expect("reserve");
    let releases = (0..10).map(|_| {
        let catalog = catalog.clone();
        tokio::spawn(async move { catalog.release_reservation(order).await })
    });
    for outcome in join_all(releases).await {
        assert_eq!(
            outcome.expect("task").map(|r| r.status),
            Ok(ReservationStatus::Released)
        );
    }
    assert_eq!(level(&catalog, product.id).await, stock(10, 0));
}

testkit::backend_tests!(
    adjustments_never_take_stock_below_zero,
    reservations_are_all_or_nothing,
    reservations_refuse_unknown_inactive_and_invalid_lines,
    every_reservation_step_is_idempotent,
    releasing_first_refuses_a_late_reservation,
    fifty_concurrent_reservations_for_five_units,
    concurrent_releases_return_units_once,
    concurrent_reservations_sharing_products_neither_deadlock_nor_lose_units,
);

/// One step of the stock model test.
#[derive(Debug, Clone)]
enum Op {
    Adjust(i64),
    Reserve(usize, u32),
    Commit(usize),
    Release(usize),
    Restock(usize),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        (-6i64..=6)
            .prop_filter("non-zero", |d| *d != 0)
            .prop_map(Op::Adjust),
        (0..4usize, 1u32..4).prop_map(|(order, quantity)| Op::Reserve(order, quantity)),
        (0..4usize).prop_map(Op::Commit),
        (0..4usize).prop_map(Op::Release),
        (0..4usize).prop_map(Op::Restock),
    ];
    proptest::collection::vec(op, 1..30)
}

/// What the stock of one product should be, computed the obvious way.
#[derive(Debug, Default)]
struct Model {
    available: i64,
    reserved: i64,
    sold: i64,
    orders: [Option<(ReservationStatus, i64)>; 4],
}

impl Model {
    /// Applies `op` and says whether the catalog should accept it.
    fn apply(&mut self, op: &Op) -> bool {
        use ReservationStatus::*;
        match *op {
            Op::Adjust(delta) if self.available + delta >= 0 => {
                self.available += delta;
                true
            }
            Op::Adjust(_) => false,
            Op::Reserve(order, quantity) => match self.orders[order] {
                None if self.available >= i64::from(quantity) => {
                    self.available -= i64::from(quantity);
                    self.reserved += i64::from(quantity);
                    self.orders[order] = Some((Reserved, i64::from(quantity)));
                    true
                }
                None => false,
                Some((Released, _)) => false,
                Some(_) => true,
            },
            Op::Commit(order) => match self.orders[order] {
                Some((Reserved, quantity)) => {
                    self.reserved -= quantity;
                    self.sold += quantity;
                    self.orders[order] = Some((Committed, quantity));
                    true
                }
                Some((Committed, _)) => true,
                _ => false,
            },
            Op::Release(order) => match self.orders[order] {
                None => {
                    self.orders[order] = Some((Released, 0));
                    true
                }
                Some((Reserved, quantity)) => {
                    self.available += quantity;
                    self.reserved -= quantity;
                    self.orders[order] = Some((Released, quantity));
                    true
                }
                Some((Released, _)) => true,
                Some((Committed, _)) => false,
            },
            Op::Restock(order) => match self.orders[order] {
                Some((Committed, quantity)) => {
                    self.available += quantity;
                    self.sold -= quantity;
                    self.orders[order] = Some((Released, quantity));
                    true
                }
                Some((Released, _)) => true,
                _ => false,
            },
        }
    }
}

async fn run_ops(catalog: &Arc<CatalogService>, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let product = create(catalog, &format!("M-{}", uuid_suffix()), 5).await;
    let orders = [
        OrderId::new(),
        OrderId::new(),
        OrderId::new(),
        OrderId::new(),
    ];
    let mut model = Model {
        available: 5,
        ..Model::default()
    };
    let mut adjusted = 0;
    for op in &ops {
        let accepted = match *op {
            Op::Adjust(delta) => catalog.adjust_stock(product.id, delta).await.is_ok(),
            Op::Reserve(order, quantity) => catalog
                .reserve_stock(orders[order], vec![line(product.id, quantity)])
                .await
                .is_ok(),
            Op::Commit(order) => catalog.commit_reservation(orders[order]).await.is_ok(),
            Op::Release(order) => catalog.release_reservation(orders[order]).await.is_ok(),
            Op::Restock(order) => catalog.restock_reservation(orders[order]).await.is_ok(),
        };
        let expected = model.apply(op);
        prop_assert_eq!(accepted, expected, "{:?} after {:?}", op, model);
        if let (Op::Adjust(delta), true) = (op, accepted) {
            adjusted += delta;
        }
        let actual = level(catalog, product.id).await;
        prop_assert_eq!(i64::from(actual.available), model.available);
        prop_assert_eq!(i64::from(actual.reserved), model.reserved);
        // Conservation: every unit is available, held or sold; none appear or vanish.
        prop_assert_eq!(model.available + model.reserved + model.sold, 5 + adjusted);
    }
    Ok(())
}

fn uuid_suffix() -> String {
    OrderId::new().to_string().replace('-', "")
}

fn stock_matches_the_model(backend: Backend) {
    let test = PropertyTest::new(backend);
    let catalog = test.block_on(catalog(test.store()));
    test.check(24, ops(), |ops| test.block_on(run_ops(&catalog, ops)));
}

#[test]
fn stock_matches_the_model_on_sqlite() {
    stock_matches_the_model(Backend::Sqlite);
}

#[test]
fn stock_matches_the_model_on_postgres() {
    stock_matches_the_model(Backend::Postgres);
}
