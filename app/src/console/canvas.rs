//! Each context's canvas, from one source: what the code says (the port and its methods,
//! from the trait via `remote::docs` and the `-api` crate's `PORT`; the events, from their
//! types and the consumers' subscriptions; the edges and the schema, from
//! `arch.toml`; the tables, from the migrated store) and what only people can say (purpose,
//! language, invariants: each context's `canvas.toml`). The console's context pages and
//! `docs/contexts/<context>.md` are both rendered from a [`Canvas`], so they cannot disagree,
//! and a test keeps the committed files equal to what this module renders.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use kernel::{IntegrationEvent, PortSpec};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};
use serde::Deserialize;

/// `arch.toml`, compiled in (`build.rs` copies it): the console draws its map from the file
/// the lint checks.
const ARCH: &str = include_str!(concat!(env!("OUT_DIR"), "/arch.toml"));

/// Every integration event, by type: its name and its meaning come from the type itself
/// (`IntegrationEvent::NAME` and its doc comment, through its schema). A test checks that
/// every committed event contract is here.
fn event_types() -> Vec<(&'static str, String)> {
    fn event<E: IntegrationEvent + utoipa::PartialSchema>() -> (&'static str, String) {
        let description = match E::schema() {
            utoipa::openapi::RefOr::T(utoipa::openapi::schema::Schema::Object(object)) => {
                object.description.unwrap_or_default()
            }
            _ => String::new(),
        };
        (E::NAME, description)
    }
    let mut events = vec![
        event::<auth_api::UserRegistered>(),
        event::<orders_api::OrderPlaced>(),
        event::<orders_api::OrderConfirmed>(),
        event::<orders_api::OrderPaymentFailed>(),
        event::<orders_api::OrderCancelled>(),
        event::<payments_api::PaymentCaptured>(),
        event::<payments_api::PaymentFailed>(),
        event::<payments_api::PaymentRefunded>(),
    ];
    events.sort();
    events
}

/// Each consumer and the events it subscribes to, as the composition root registers them.
pub const CONSUMERS: &[(&str, &[&str])] = &[(
    notifications::CONSUMER,
    &notifications::NotificationsModule::SUBSCRIPTIONS,
)];

/// The contexts, their edges and their canvases: everything the console shows that does not
/// change while the shop runs.
#[derive(Debug, Clone)]
pub struct Map {
    pub contexts: Vec<Canvas>,
    pub edges: Vec<Edge>,
    pub events: Vec<EventDoc>,
}

/// A declared edge between contexts: `from` may depend on `to`'s api crate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    pub from: String,
    pub to: String,
    pub reason: String,
    /// `from` takes events `to` publishes (otherwise the edge carries calls only).
    pub events: Vec<String>,
}

impl Edge {
    /// `orders->catalog`: the edge's name in the console's markup.
    pub fn key(&self) -> String {
        format!("{}->{}", self.from, self.to)
    }
}

/// One integration event: its contract and who takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventDoc {
    /// The versioned name, `orders.order_confirmed.v1`.
    pub name: String,
    pub publisher: String,
    pub description: String,
    pub consumers: Vec<String>,
}

/// A context's canvas.
#[derive(Debug, Clone)]
pub struct Canvas {
    pub name: String,
    pub schema: String,
    pub purpose: String,
    /// The words the context owns, and what they mean in it.
    pub language: Vec<(String, String)>,
    pub invariants: Vec<String>,
    pub port: &'static PortSpec,
    pub port_docs: Option<&'static remote::docs::PortDocs>,
    pub events_out: Vec<EventDoc>,
    pub events_in: Vec<EventDoc>,
    /// Contexts this one depends on, with the reason.
    pub uses: Vec<(String, String)>,
    /// Contexts that depend on this one, with the reason.
    pub used_by: Vec<(String, String)>,
}

#[derive(Deserialize)]
struct Arch {
    contexts: BTreeMap<String, ArchContext>,
    edges: Vec<ArchEdge>,
}

#[derive(Deserialize)]
struct ArchContext {
    schema: String,
}

#[derive(Deserialize)]
struct ArchEdge {
    from: String,
    to: String,
    reason: String,
}

#[derive(Deserialize)]
struct Source {
    purpose: String,
    language: BTreeMap<String, String>,
    invariants: Vec<String>,
}

/// The compiled-in description of `context`: its `canvas.toml` and its port.
fn source(context: &str) -> Option<(&'static str, &'static PortSpec)> {
    Some(match context {
        "auth" => (auth::CANVAS, &auth_api::PORT),
        "catalog" => (catalog::CANVAS, &catalog_api::PORT),
        "orders" => (orders::CANVAS, &orders_api::PORT),
        "payments" => (payments::CANVAS, &payments_api::PORT),
        "notifications" => (notifications::CANVAS, &notifications_api::PORT),
        _ => return None,
    })
}

/// Every event, with its publisher (the first part of its name) and its consumers.
pub fn events() -> Vec<EventDoc> {
    event_types()
        .into_iter()
        .map(|(name, description)| EventDoc {
            name: name.to_owned(),
            publisher: name.split('.').next().unwrap_or_default().to_owned(),
            description,
            consumers: CONSUMERS
                .iter()
                .filter(|(_, names)| names.contains(&name))
                .map(|(consumer, _)| (*consumer).to_owned())
                .collect(),
        })
        .collect()
}

impl Map {
    /// The map, from the compiled-in sources. They are part of the binary and checked by
    /// tests, so a failure here is a build defect: it panics.
    pub fn load() -> Self {
        let arch: Arch = toml::from_str(ARCH).expect("arch.toml parses (the lint checks it)");
        let events = events();
        let edges: Vec<Edge> = arch
            .edges
            .iter()
            .map(|edge| Edge {
                from: edge.from.clone(),
                to: edge.to.clone(),
                reason: edge.reason.clone(),
                events: events
                    .iter()
                    .filter(|event| {
                        event.publisher == edge.to && event.consumers.contains(&edge.from)
                    })
                    .map(|event| event.name.clone())
                    .collect(),
            })
            .collect();
        // In the order of crate::placement::ALL, callees before callers.
        let contexts = crate::placement::ALL
            .iter()
            .filter_map(|name| {
                let declared = arch.contexts.get(*name)?;
                let (text, port) = source(name)?;
                let source: Source = toml::from_str(text).expect("canvas.toml parses");
                Some(Canvas {
                    name: (*name).to_owned(),
                    schema: declared.schema.clone(),
                    purpose: source.purpose.trim().replace('\n', " "),
                    language: source.language.into_iter().collect(),
                    invariants: source.invariants,
                    port,
                    port_docs: remote::docs::port(name),
                    events_out: events
                        .iter()
                        .filter(|event| event.publisher == *name)
                        .cloned()
                        .collect(),
                    events_in: events
                        .iter()
                        .filter(|event| event.consumers.iter().any(|consumer| consumer == name))
                        .cloned()
                        .collect(),
                    uses: edges
                        .iter()
                        .filter(|edge| edge.from == *name)
                        .map(|edge| (edge.to.clone(), edge.reason.clone()))
                        .collect(),
                    used_by: edges
                        .iter()
                        .filter(|edge| edge.to == *name)
                        .map(|edge| (edge.from.clone(), edge.reason.clone()))
                        .collect(),
                })
            })
            .collect();
        Self {
            contexts,
            edges,
            events,
        }
    }

    pub fn context(&self, name: &str) -> Option<&Canvas> {
        self.contexts.iter().find(|canvas| canvas.name == name)
    }
}

impl Canvas {
    /// Whether the port marks `method` idempotent (a caller may retry it).
    pub fn idempotent(&self, method: &str) -> bool {
        self.port
            .methods
            .iter()
            .any(|spec| spec.name == method && spec.idempotent)
    }

    /// The canvas as Markdown: `docs/contexts/<context>.md`.
    pub fn markdown(&self, tables: &[String]) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "<!-- Generated from crates/{name}/canvas.toml, the `-api` crates (port and events) and arch.toml; do not edit. -->\n\
             <!-- Regenerate: UPDATE_CANVASES=1 cargo nextest run -p shop-tests canvases. -->\n\
             # The {name} context\n\n{purpose}\n",
            name = self.name,
            purpose = self.purpose,
        );
        out.push_str("## Language\n\n| word | what it means in this context |\n|---|---|\n");
        for (word, meaning) in &self.language {
            let _ = writeln!(out, "| {word} | {} |", cell(meaning));
        }
        let _ = writeln!(
            out,
            "\n## Port: `{trait_name}`, version {version}\n",
            trait_name = self.port.trait_name,
            version = self.port.version,
        );
        if let Some(docs) = self.port_docs {
            if !docs.doc.is_empty() {
                let _ = writeln!(out, "{}\n", docs.doc);
            }
            out.push_str("| method | idempotent | what it does |\n|---|---|---|\n");
            for method in docs.methods {
                let _ = writeln!(
                    out,
                    "| `{}` | {} | {} |",
                    method.signature,
                    if self.idempotent(method.name) {
                        "yes: may be retried"
                    } else {
                        "no: never retried"
                    },
                    cell(method.doc),
                );
            }
        }
        out.push_str("\n## Events out\n\n");
        events_table(&mut out, &self.events_out, "taken by", |event| {
            list_or(&event.consumers, "nobody yet")
        });
        out.push_str("\n## Events in\n\n");
        events_table(&mut out, &self.events_in, "from", |event| {
            event.publisher.clone()
        });
        out.push_str("\n## Depends on\n\n");
        edges_list(&mut out, &self.uses);
        out.push_str("\n## Depended on by\n\n");
        edges_list(&mut out, &self.used_by);
        let _ = writeln!(
            out,
            "\n## Data owned\n\nSchema `{}` on Postgres (its own role where provisioned), one SQLite file on the default store. Tables:\n",
            self.schema
        );
        for table in tables {
            let _ = writeln!(out, "- `{table}`");
        }
        out.push_str("\n## Invariants\n\n");
        for invariant in &self.invariants {
            let _ = writeln!(out, "- {invariant}");
        }
        out
    }
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn list_or(items: &[String], empty: &str) -> String {
    if items.is_empty() {
        empty.to_owned()
    } else {
        items.join(", ")
    }
}

fn events_table(
    out: &mut String,
    events: &[EventDoc],
    who: &str,
    party: impl Fn(&EventDoc) -> String,
) {
    if events.is_empty() {
        out.push_str("None.\n");
        return;
    }
    let _ = writeln!(out, "| event | {who} | meaning |\n|---|---|---|");
    for event in events {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} |",
            event.name,
            party(event),
            cell(&event.description)
        );
    }
}

fn edges_list(out: &mut String, edges: &[(String, String)]) {
    if edges.is_empty() {
        out.push_str("None.\n");
        return;
    }
    for (context, reason) in edges {
        let _ = writeln!(out, "- **{context}**: {reason}");
    }
}

/// The tables in a context's store (its Postgres schema, or its SQLite file), by name.
pub async fn tables(db: &DatabaseConnection) -> Result<Vec<String>, DbErr> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "SELECT table_name AS name FROM information_schema.tables \
             WHERE table_schema = current_schema() ORDER BY 1"
        }
        _ => {
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND name NOT LIKE 'sqlite_%' ORDER BY 1"
        }
    };
    let rows = db
        .query_all_raw(Statement::from_string(backend, sql))
        .await?;
    rows.iter()
        .map(|row| row.try_get::<String>("", "name"))
        .collect()
}
