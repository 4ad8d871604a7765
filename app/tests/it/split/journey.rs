//! The checkout journey, black-box, against a split deployment: the shop (auth, orders,
//! notifications), catalog and payments, each in its own `shop serve --contexts` process.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::Backend;

use crate::split::collector::Collector;
use crate::split::harness::{Layout, SERVICE_TOKEN, Split, sample};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_journey_across_three_processes_on_postgres() {
    journey(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_journey_across_three_processes_on_sqlite() {
    journey(Backend::Sqlite).await;
}

/// The `request_id` fields of the spans a JSON log line was written in.
fn request_ids(line: &Value) -> Vec<String> {
    line["spans"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|span| span["request_id"].as_str().map(str::to_owned))
        .collect()
}

fn trace_id(response: &reqwest::Response) -> String {
    let header = response
        .headers()
        .get("traceresponse")
        .expect("every public answer names its trace")
        .to_str()
        .expect("ascii");
    header
        .split('-')
        .nth(1)
        .expect("version-trace-span-flags")
        .to_owned()
}

async fn journey(backend: Backend) {
    let collector = Collector::start().await;
    let split = Split::start(
        backend,
        Layout::CatalogAndPayments,
        &[
            ("SHOP__TELEMETRY__OTLP_ENDPOINT", collector.url.clone()),
            ("SHOP__TELEMETRY__OTLP_PROTOCOL", "http/json".to_owned()),
            // Export batches every 100 ms rather than every 5 s.
            ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
        ],
    )
    .await;
    let catalog = split.catalog.as_ref().expect("catalog runs apart");
    let http = &split.http;

    // Readiness: the shop names each context it calls in another process.
    let ready = split.wait_until_ready(&split.shop).await;
    let remotes: BTreeSet<(&str, &str)> = ready["remotes"]
        .as_array()
        .expect("remotes")
        .iter()
        .map(|remote| {
            (
                remote["context"].as_str().expect("context"),
                remote["status"].as_str().expect("status"),
            )
        })
        .collect();
    assert_eq!(
        remotes,
        BTreeSet::from([("catalog", "ok"), ("payments", "ok")]),
        "{ready}"
    );
    // The extracted processes call auth in the shop; they are ready too.
    split.wait_until_ready(catalog).await;
    split.wait_until_ready(&split.payments).await;

    // An administrator creates a product through the shop's public port: the request goes on
    // to catalog's process with its request id.
    let admin = split.admin().await;
    let created = http
        .post(format!("{}/api/catalog/products", split.shop.public))
        .bearer_auth(&admin)
        .header("X-Request-Id", "journey-create-product")
        .json(&json!({
            "sku": "LAMP-1", "name": "Desk lamp",
            "price": {"amount_minor": 2999, "currency": "EUR"},
            "category": "home", "initial_stock": 10,
        }))
        .send()
        .await
        .expect("create product");
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(created.headers()["x-request-id"], "journey-create-product");
    let create_trace = trace_id(&created);
    let product: Value = created.json().await.expect("json");
    let product = product["id"].as_str().expect("id").to_owned();
    catalog.wait_for_log(|line| {
        line["fields"]["message"] == "product created"
            && request_ids(line).contains(&"journey-create-product".to_owned())
    });

    // A customer registers, logs in (auth is in the shop) and checks out: orders reserves
    // stock in catalog's process and charges in payments' process.
    let customer = split.customer("ada@example.com").await;
    let placed = http
        .post(format!("{}/api/orders", split.shop.public))
        .bearer_auth(&customer)
        .header("Idempotency-Key", "journey-order-1")
        .header("X-Request-Id", "journey-checkout")
        .json(&crate::split::harness::order_body(&product, "tok_visa"))
        .send()
        .await
        .expect("place order");
    assert_eq!(placed.status(), StatusCode::CREATED);
    let trace = trace_id(&placed);
    let order: Value = placed.json().await.expect("json");
    assert_eq!(order["status"], "confirmed", "{order}");
    assert_eq!(order["total"]["amount_minor"], 2999);
    let order_id = order["id"].as_str().expect("id").to_owned();

    // The charge ran in payments' process, in the checkout's request.
    split.payments.wait_for_log(|line| {
        line["fields"]["message"] == "payment captured"
            && request_ids(line).contains(&"journey-checkout".to_owned())
    });

    // The order's detail gathers the payment from payments' process.
    let detail = split
        .get_json(&format!("/api/orders/{order_id}"), Some(&customer))
        .await;
    assert_eq!(detail["payment"]["status"], "captured", "{detail}");
    assert_eq!(detail["payment"]["captured"]["amount_minor"], 2999);
    assert!(
        detail["unavailable"]
            .as_array()
            .is_none_or(|missing| missing.is_empty()),
        "{detail}"
    );
    assert_eq!(split.stock(&product).await, (9, 0));

    // The customer's confirmation, from notifications in the shop.
    let notifications = split
        .notifications_until(&customer, |kinds| {
            kinds.iter().any(|kind| kind == "order_confirmed")
        })
        .await;
    assert!(notifications.contains(&"welcome".to_owned()));

    // Metrics of the shop: the boundary calls went to other processes, and so did the
    // routed request.
    let metrics = split.metrics(&split.shop).await;
    for (callee, method) in [
        ("payments", "charge"),
        ("catalog", "reserve_stock"),
        ("catalog", "commit_reservation"),
    ] {
        let calls = sample(
            &metrics,
            "shop_boundary_calls_total",
            &[
                "caller=\"orders\"",
                &format!("callee=\"{callee}\""),
                &format!("method=\"{method}\""),
                "placement=\"remote\"",
                "outcome=\"ok\"",
            ],
        );
        assert!(calls >= Some(1.0), "{callee}.{method}: {metrics}");
    }
    assert!(
        sample(
            &metrics,
            "shop_routed_requests_total",
            &[
                "context=\"catalog\"",
                "destination=\"remote\"",
                "outcome=\"answered\""
            ],
        ) >= Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "shop_circuit_breaker_state",
            &["caller=\"orders\"", "callee=\"payments\""],
        ),
        Some(0.0),
        "the breaker to payments is closed: {metrics}"
    );

    // One checkout is one trace, across the three processes: the shop's request, catalog's
    // and payments' served calls, each the child of the shop's call span.
    let served_with_parent = |spans: &[crate::split::collector::ExportedSpan], service: &str| {
        spans.iter().any(|served| {
            served.service == service
                && served.name == "boundary_serve"
                && served.trace_id == trace
                && spans
                    .iter()
                    .any(|span| span.span_id == served.parent_span_id)
        })
    };
    let spans = collector
        .wait_for(|spans| {
            served_with_parent(spans, "shop-catalog")
                && served_with_parent(spans, "shop-payments")
                // The routed request is one trace too: catalog's process continued it.
                && spans.iter().any(|span| {
                    span.service == "shop-catalog"
                        && span.name == "http"
                        && span.trace_id == create_trace
                })
        })
        .await;
    let in_trace: Vec<_> = spans.iter().filter(|span| span.trace_id == trace).collect();
    let served = in_trace
        .iter()
        .find(|span| span.service == "shop-payments" && span.name == "boundary_serve")
        .expect("payments served the charge in the checkout's trace");
    let caller = in_trace
        .iter()
        .find(|span| span.span_id == served.parent_span_id)
        .expect("the served call's parent is a span of the shop");
    assert_eq!(caller.service, "shop");
    assert_eq!(caller.name, "boundary_call");

    // Internal routes: not on the public port, and only with the service credential.
    let public = http
        .post(format!(
            "{}/internal/payments/v1/get_payment",
            split.shop.public
        ))
        .bearer_auth(SERVICE_TOKEN)
        .json(&json!({"order_id": order_id}))
        .send()
        .await
        .expect("post");
    assert_eq!(public.status(), StatusCode::NOT_FOUND);
    for credential in [None, Some(customer.as_str()), Some("not-the-service-token")] {
        let mut request = http
            .post(format!(
                "{}/internal/payments/v1/get_payment",
                split.payments.internal
            ))
            .json(&json!({"order_id": order_id}));
        if let Some(credential) = credential {
            request = request.bearer_auth(credential);
        }
        let refused = request.send().await.expect("post");
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "{credential:?}");
        let body: Value = refused.json().await.expect("json");
        assert_eq!(body["error"]["code"], "unauthenticated");
    }

    // The shop's console (/console) marks catalog and payments remote, at the addresses the
    // shop calls them at, and counts the calls that crossed to them.
    let console = split.console_page("/console").await;
    for (context, process) in [("catalog", catalog), ("payments", &split.payments)] {
        assert!(
            console.contains(&format!(
                "<tr data-context=\"{context}\" data-placement=\"remote\">"
            )),
            "{context} is remote on the console"
        );
        assert!(
            console.contains(process.internal.trim_end_matches('/')),
            "{context}'s address is on the console"
        );
    }
    assert!(console.contains("<tr data-context=\"orders\" data-placement=\"local\">"));
    let calls = console
        .split("data-edge=\"orders-&gt;payments\"")
        .nth(2)
        .and_then(|row| row.split("data-metric=\"calls-total\">").nth(1))
        .and_then(|cell| cell.split('<').next())
        .and_then(|count| count.parse::<u64>().ok())
        .expect("the edge's calls on the console");
    assert!(calls >= 1, "the charge crossed orders -> payments");
}

/// Notifications in a process of its own: auth's and orders' events reach it through NATS
/// JetStream, and its public route through the shop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_in_its_own_process_gets_every_event_through_the_broker() {
    let split = Split::start(Backend::Postgres, Layout::PaymentsAndNotifications, &[]).await;
    let notifications = split
        .notifications
        .as_ref()
        .expect("notifications runs apart");
    split.shop.wait_for_log(|line| {
        line["fields"]["message"] == "events relayed to the broker for another process"
            && line["fields"]["publisher"] == "orders"
    });
    notifications.wait_for_log(|line| {
        line["fields"]["message"] == "events taken from the broker, from another process"
            && line["fields"]["publisher"] == "auth"
    });
    split.wait_until_ready(notifications).await;

    let admin = split.admin().await;
    let product = split.product(&admin, "LAMP-1", 2999, 5).await;
    let customer = split.customer("ada@example.com").await;
    let (status, order) = split.checkout(&customer, &product, "broker-order-1").await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(order["status"], "confirmed", "{order}");

    // The welcome (auth's event) and the confirmation (orders' event), each exactly once.
    let kinds = split
        .notifications_until(&customer, |kinds| {
            kinds.iter().any(|kind| kind == "order_confirmed")
        })
        .await;
    let mut sorted = kinds.clone();
    sorted.sort();
    assert_eq!(sorted, ["order_confirmed", "welcome"], "{kinds:?}");
}
