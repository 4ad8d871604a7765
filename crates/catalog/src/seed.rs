//! The demo catalog a fresh shop starts with, so `cargo run` has something to browse.

use catalog_api::{CatalogError, NewProduct};
use kernel::{Currency, Money};

use crate::service::CatalogService;

/// (sku, name, description, price in cents, category, units in stock)
const DEMO: &[(&str, &str, &str, i64, &str, u32)] = &[
    (
        "BK-DDD",
        "Domain-Driven Design",
        "Tackling complexity in the heart of software.",
        5499,
        "books",
        12,
    ),
    (
        "BK-IDDD",
        "Implementing Domain-Driven Design",
        "Aggregates, bounded contexts and events in practice.",
        4999,
        "books",
        8,
    ),
    (
        "BK-RUST",
        "The Rust Programming Language",
        "The book, in print.",
        3999,
        "books",
        25,
    ),
    (
        "BK-DDIA",
        "Designing Data-Intensive Applications",
        "Reliable, scalable and maintainable systems.",
        4599,
        "books",
        15,
    ),
    (
        "BK-ZERO2PROD",
        "Zero To Production In Rust",
        "Backend development in Rust, end to end.",
        3900,
        "books",
        10,
    ),
    (
        "BK-REFACTOR",
        "Refactoring",
        "Improving the design of existing code.",
        4299,
        "books",
        6,
    ),
    (
        "EL-KEYBOARD",
        "Mechanical keyboard",
        "Tenkeyless, hot-swappable switches, USB-C.",
        12900,
        "electronics",
        20,
    ),
    (
        "EL-MOUSE",
        "Wireless mouse",
        "Silent clicks, three-month battery.",
        3490,
        "electronics",
        40,
    ),
    (
        "EL-MONITOR",
        "27-inch monitor",
        "2560x1440, IPS, height-adjustable stand.",
        32900,
        "electronics",
        5,
    ),
    (
        "EL-HEADPHONES",
        "Noise-cancelling headphones",
        "Over-ear, thirty hours of play.",
        24900,
        "electronics",
        9,
    ),
    (
        "EL-DOCK",
        "USB-C dock",
        "Two displays, ethernet, 100 W charging.",
        17900,
        "electronics",
        7,
    ),
    (
        "EL-WEBCAM",
        "HD webcam",
        "1080p, privacy shutter.",
        6990,
        "electronics",
        18,
    ),
    (
        "KT-KETTLE",
        "Gooseneck kettle",
        "Temperature control for pour-over coffee.",
        7990,
        "kitchen",
        11,
    ),
    (
        "KT-GRINDER",
        "Burr coffee grinder",
        "Forty grind settings.",
        11900,
        "kitchen",
        6,
    ),
    (
        "KT-TEAPOT",
        "Cast-iron teapot",
        "Keeps tea hot for an hour.",
        4590,
        "kitchen",
        14,
    ),
    (
        "KT-KNIFE",
        "Chef's knife",
        "20 cm, stainless steel.",
        8900,
        "kitchen",
        10,
    ),
    (
        "KT-BOARD",
        "Oak cutting board",
        "End-grain, 40 x 30 cm.",
        5900,
        "kitchen",
        8,
    ),
    (
        "KT-MUGS",
        "Stoneware mugs, set of four",
        "Dishwasher safe.",
        3200,
        "kitchen",
        30,
    ),
    (
        "OD-TENT",
        "Two-person tent",
        "Freestanding, 1.9 kg.",
        28900,
        "outdoor",
        4,
    ),
    (
        "OD-SLEEPINGBAG",
        "Down sleeping bag",
        "Comfort rating -5 C.",
        19900,
        "outdoor",
        6,
    ),
    (
        "OD-STOVE",
        "Camping stove",
        "Folding, gas canister.",
        4990,
        "outdoor",
        16,
    ),
    (
        "OD-BOTTLE",
        "Insulated bottle",
        "750 ml, cold for 24 hours.",
        2990,
        "outdoor",
        50,
    ),
    (
        "OD-HEADLAMP",
        "Headlamp",
        "400 lumens, rechargeable.",
        3990,
        "outdoor",
        22,
    ),
    (
        "OD-BACKPACK",
        "Hiking backpack",
        "38 litres, rain cover included.",
        13900,
        "outdoor",
        9,
    ),
];

/// Creates the demo products when the catalog has none. Returns how many were created.
/// Two processes starting at once on one database may both try; duplicates are skipped.
pub(crate) async fn seed_demo_catalog(catalog: &CatalogService) -> Result<usize, CatalogError> {
    if catalog.count_products().await? > 0 {
        return Ok(0);
    }
    let mut created = 0;
    for &(sku, name, description, cents, category, stock) in DEMO {
        let product = NewProduct {
            sku: sku.into(),
            name: name.into(),
            description: description.into(),
            price: Money::new(cents, Currency::EUR).map_err(|_| CatalogError::Internal)?,
            category: category.into(),
            initial_stock: stock,
            active: true,
        };
        match catalog.create_product(product).await {
            Ok(_) => created += 1,
            Err(CatalogError::SkuTaken { .. }) => {}
            Err(error) => return Err(error),
        }
    }
    tracing::info!(products = created, "seeded the demo catalog");
    Ok(created)
}
