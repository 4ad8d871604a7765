//! The console's pages, rendered on the server (maud escapes every value). Each works
//! without JavaScript; `console.js` only refreshes them. The `id`s and `data-` attributes
//! are the pages' interface to their browser test (`scripts/browser/console_test.py`).

use std::time::Duration;

use maud::{DOCTYPE, Markup, html};
use messaging::{FailedEvent, Stage};
use orders_api::ParkedOrder;

use super::canvas::{Canvas, Edge, Map};
use super::live::{EdgeStats, P99, Rate, Window};

/// Where each context runs, as the console shows it.
#[derive(Debug, Clone)]
pub struct Placed {
    pub context: String,
    /// `None`: in this process; otherwise the address of the process it runs in.
    pub remote: Option<String>,
}

/// Everything the overview shows.
pub struct Overview<'a> {
    pub map: &'a Map,
    pub placed: &'a [Placed],
    pub window: &'a Window,
    /// `None`: the bus could not be asked.
    pub parked_events: Option<&'a [FailedEvent]>,
    /// `None`: orders runs elsewhere (or could not be asked); its address or the error.
    pub parked_orders: Result<&'a [ParkedOrder], String>,
    /// Orders unfinished and not parked, when orders runs here and answered.
    pub unfinished_orders: Option<u64>,
    pub notice: Option<&'static str>,
    pub refresh_ms: u64,
}

fn page(title: &str, refresh_ms: u64, contexts: &[Placed], body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · shop console" }
                link rel="stylesheet" href="/console/assets/console.css";
                script src="/console/assets/console.js" defer {}
            }
            body data-refresh-ms=(refresh_ms) {
                header {
                    nav {
                        a.brand href="/console" { "shop console" }
                        @for placed in contexts {
                            a href={ "/console/contexts/" (placed.context) } { (placed.context) }
                        }
                    }
                    form #logout method="post" action="/console/logout" {
                        button type="submit" { "Log out" }
                    }
                }
                main { (body) }
                footer {
                    span #refresh-state { "Reload the page for new figures." }
                }
            }
        }
    }
}

/// The login form, with an error when the last attempt failed.
pub fn login(error: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Log in · shop console" }
                link rel="stylesheet" href="/console/assets/console.css";
            }
            body.login {
                main {
                    h1 { "shop console" }
                    p { "For administrators: the bounded contexts at work." }
                    @if let Some(error) = error {
                        p.error role="alert" { (error) }
                    }
                    form #login method="post" action="/console/login" {
                        label { "Email" input type="email" name="email" autocomplete="username" required; }
                        label { "Password" input type="password" name="password" autocomplete="current-password" required; }
                        button type="submit" { "Log in" }
                    }
                }
            }
        }
    }
}

/// A page that only says something went wrong (403, 404, 503), with a way back.
pub fn problem(title: &str, text: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) " · shop console" }
                link rel="stylesheet" href="/console/assets/console.css";
            }
            body.login {
                main {
                    h1 { (title) }
                    p { (text) }
                    p { a href="/console" { "Back to the console" } " · " a href="/console/login" { "Log in" } }
                }
            }
        }
    }
}

fn rate(rate: Rate) -> String {
    match rate.per_second {
        Some(per_second) => format!("{per_second:.1}/s"),
        None => "–".to_owned(),
    }
}

fn plural(count: u64, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

fn share(share: Option<f64>) -> String {
    share.map_or_else(|| "–".to_owned(), |share| format!("{:.1} %", share * 100.0))
}

fn latency(p99: Option<P99>) -> String {
    match p99 {
        None => "–".to_owned(),
        Some(P99::Seconds(seconds)) => duration(seconds),
        Some(P99::Above(seconds)) => format!("> {}", duration(seconds)),
    }
}

fn duration(seconds: f64) -> String {
    if seconds < 0.001 {
        format!("{:.0} µs", seconds * 1e6)
    } else if seconds < 1.0 {
        format!("{:.1} ms", seconds * 1e3)
    } else {
        format!("{seconds:.2} s")
    }
}

fn window_text(length: Option<Duration>) -> String {
    length.map_or_else(
        || "since the start (rates appear from the next refresh)".to_owned(),
        |length| format!("over the last {:.0} s", length.as_secs_f64()),
    )
}

/// The overview: the map, its edges and events, and what is parked.
pub fn overview(view: &Overview<'_>) -> Markup {
    let window = view.window;
    let body = html! {
        @if let Some(notice) = view.notice {
            p.notice role="status" { (notice) }
        }
        h1 { "The contexts at work" }
        p.lead {
            "Five bounded contexts, the edges " code { "arch.toml" } " allows between them, and the calls and events crossing them now, "
            (window_text(window.length())) "."
        }
        (map_svg(view.map, view.placed, window))
        p.caption { "Solid edges carry calls through a port; dashed edges carry events. A dashed, orange context runs in another process. * no call in the window: the error share and p99 since the start." }
        section {
            h2 { "Contexts" }
            table #contexts {
                thead { tr { th { "context" } th { "runs" } th { "schema" } th { "port" } th { "parked events" } } }
                tbody {
                    @for canvas in &view.map.contexts {
                        @let placed = view.placed.iter().find(|placed| placed.context == canvas.name);
                        @let remote = placed.and_then(|placed| placed.remote.clone());
                        tr data-context=(canvas.name) data-placement=(if remote.is_some() { "remote" } else { "local" }) {
                            td { a href={ "/console/contexts/" (canvas.name) } { (canvas.name) } }
                            td { @match &remote { Some(url) => { "in another process, " code { (url) } }, None => "in this process" } }
                            td { code { (canvas.schema) } }
                            td { code { (canvas.port.trait_name) } " v" (canvas.port.version) }
                            td data-metric="parked" { (parked_for(view.parked_events, &canvas.name)) }
                        }
                    }
                }
            }
        }
        section {
            h2 { "Edges" }
            p { "Declared in " code { "arch.toml" } "; calls are measured at the boundary (" code { "shop_boundary_calls_total" } "), events at the outbox and the inbox." }
            table #edges {
                thead { tr { th { "edge" } th { "why" } th { "calls" } th { "calls/s" } th { "errors" } th { "p99" } th { "events" } } }
                tbody {
                    @for edge in &view.map.edges {
                        (edge_row(edge, window.edge(&edge.from, &edge.to), window))
                    }
                    @if let Some(stats) = window.edge("http", "auth") {
                        tr data-edge="http->auth" data-declared="true" {
                            td { "public routes → auth" }
                            td { "every protected route verifies its bearer token (web-kit → auth-api, an infrastructure edge)" }
                            td data-metric="calls-total" { (stats.calls.total) }
                            td data-metric="rate" { (rate(stats.calls)) }
                            td data-metric="errors" { (share(stats.error_share)) }
                            td data-metric="p99" { (latency(stats.p99)) }
                            td { "–" }
                        }
                    }
                }
            }
        }
        section {
            h2 { "Events" }
            table #events {
                thead { tr { th { "event" } th { "from" } th { "written" } th { "written/s" } th { "to" } th { "done" } th { "done/s" } th { "failed attempts" } th { "parked" } } }
                tbody {
                    @for event in &view.map.events {
                        @let written = window.written(&event.name);
                        @if event.consumers.is_empty() {
                            tr data-event=(event.name) {
                                td { code { (event.name) } }
                                td { (event.publisher) }
                                td data-metric="written-total" { (written.total) }
                                td { (rate(written)) }
                                td colspan="5" { "no consumer yet: written already dispatched" }
                            }
                        }
                        @for consumer in &event.consumers {
                            @let (done, failed, parked) = window.consumed(&event.name, consumer);
                            tr data-event=(event.name) data-consumer=(consumer) {
                                td { code { (event.name) } }
                                td { (event.publisher) }
                                td data-metric="written-total" { (written.total) }
                                td { (rate(written)) }
                                td { (consumer) }
                                td data-metric="done-total" { (done.total) }
                                td { (rate(done)) }
                                td data-metric="failed" { (failed) }
                                td data-metric="parked" { (parked) }
                            }
                        }
                    }
                }
            }
        }
        section {
            h2 { "Parked events" }
            p { "Events whose delivery or handling failed every allowed attempt. Each holds back the later events of its aggregate until it is retried or discarded (" code { "/api/admin/events" } " does the same)." }
            @match view.parked_events {
                None => p.error { "The event store could not be read; see the log." },
                Some(events) => {
                    table #parked-events {
                        thead { tr { th { "event" } th { "owner" } th { "stage" } th { "aggregate" } th { "attempts" } th { "last error" } th { "" } } }
                        tbody {
                            @for event in events {
                                tr data-parked-event=(event.id) data-owner=(event.owner) data-event-name=(event.event_name) {
                                    td { code { (event.event_name) } }
                                    td { (event.owner) }
                                    td { (stage(event.stage)) }
                                    td { code { (event.aggregate_id) } }
                                    td { (event.attempts) }
                                    td.error-text { (event.last_error.as_deref().unwrap_or("")) }
                                    td.actions {
                                        form method="post" action={ "/console/events/" (event.id) "/retry" } {
                                            button type="submit" data-action="retry" { "Retry" }
                                        }
                                        a.button.danger href={ "/console/events/" (event.id) "/discard" } data-action="discard" { "Discard…" }
                                    }
                                }
                            }
                        }
                    }
                    @if events.is_empty() { p.empty { "Nothing parked." } }
                }
            }
        }
        section {
            h2 { "Parked orders" }
            p { "Checkouts and cancellations the recovery sweep gave up on: each waits for an operator (" code { "/api/admin/orders/parked" } " does the same)." }
            @if let Some(unfinished) = view.unfinished_orders {
                p #unfinished-orders data-metric="unfinished" data-count=(unfinished) {
                    (plural(unfinished, "order is", "orders are")) " unfinished and not parked: in checkout now, or waiting for the recovery sweep to run them again."
                }
            }
            @match &view.parked_orders {
                Err(why) => p #parked-orders-elsewhere { (why) },
                Ok(orders) => {
                    table #parked-orders {
                        thead { tr { th { "order" } th { "status" } th { "attempts" } th { "last error" } th { "parked at" } th { "" } } }
                        tbody {
                            @for parked in orders.iter() {
                                tr data-parked-order=(parked.order.id) {
                                    td { code { (parked.order.id) } }
                                    td { (format!("{:?}", parked.order.status)) }
                                    td { (parked.attempts) }
                                    td.error-text { (parked.last_error.as_deref().unwrap_or("")) }
                                    td { (parked.parked_at.format("%Y-%m-%d %H:%M:%S UTC")) }
                                    td.actions {
                                        form method="post" action={ "/console/orders/" (parked.order.id) "/retry" } {
                                            button type="submit" data-action="retry" { "Retry" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    @if orders.is_empty() { p.empty { "No parked order." } }
                }
            }
        }
    };
    page("Overview", view.refresh_ms, view.placed, body)
}

fn stage(stage: Stage) -> &'static str {
    match stage {
        Stage::Delivery => "delivery",
        Stage::Handling => "handling",
        Stage::AfterCommit => "after_commit",
    }
}

fn parked_for(events: Option<&[FailedEvent]>, context: &str) -> String {
    events.map_or_else(
        || "?".to_owned(),
        |events| {
            events
                .iter()
                .filter(|event| event.owner == context)
                .count()
                .to_string()
        },
    )
}

fn edge_row(edge: &Edge, stats: Option<EdgeStats>, window: &Window) -> Markup {
    let stats = stats.unwrap_or_default();
    html! {
        tr data-edge=(edge.key()) data-declared="true" data-kind=(if edge.events.is_empty() { "calls" } else { "events" }) {
            td { (edge.from) " → " (edge.to) }
            td { (edge.reason) }
            td data-metric="calls-total" { (stats.calls.total) }
            td data-metric="rate" { (rate(stats.calls)) }
            td data-metric="errors" { (share(stats.error_share)) @if stats.since_start && stats.calls.total > 0 { small { " since start" } } }
            td data-metric="p99" { (latency(stats.p99)) @if stats.since_start && stats.calls.total > 0 { small { " since start" } } }
            td data-metric="events" {
                @for event in &edge.events {
                    @let (done, _, _) = window.consumed(event, &edge.from);
                    div { code { (event) } " " (done.total) " (" (rate(done)) ")" }
                }
            }
        }
    }
}

/// The context map as SVG: callers above the contexts they depend on, one row per depth.
fn map_svg(map: &Map, placed: &[Placed], window: &Window) -> Markup {
    const WIDTH: f64 = 900.0;
    const ROW: f64 = 150.0;
    const BOX_W: f64 = 170.0;
    const BOX_H: f64 = 64.0;
    // Depth: the longest path of edges below a context (a context nothing depends on is 0).
    let depth = |name: &str| -> usize {
        fn walk(map: &Map, name: &str, seen: usize) -> usize {
            if seen > map.contexts.len() {
                return 0;
            }
            map.edges
                .iter()
                .filter(|edge| edge.from == name)
                .map(|edge| 1 + walk(map, &edge.to, seen + 1))
                .max()
                .unwrap_or(0)
        }
        walk(map, name, 0)
    };
    let deepest = map
        .contexts
        .iter()
        .map(|canvas| depth(&canvas.name))
        .max()
        .unwrap_or(0);
    let mut position = std::collections::BTreeMap::new();
    for row in 0..=deepest {
        let names: Vec<&Canvas> = map
            .contexts
            .iter()
            .filter(|canvas| deepest - depth(&canvas.name) == row)
            .collect();
        for (index, canvas) in names.iter().enumerate() {
            #[allow(clippy::cast_precision_loss)]
            let x = WIDTH * (index as f64 + 0.5) / names.len() as f64;
            #[allow(clippy::cast_precision_loss)]
            let y = 50.0 + ROW * row as f64;
            position.insert(canvas.name.clone(), (x, y));
        }
    }
    #[allow(clippy::cast_precision_loss)]
    let height = 50.0 + ROW * deepest as f64 + BOX_H + 20.0;
    html! {
        svg #context-map viewBox={ "0 0 " (WIDTH) " " (height) } role="img" aria-label="The context map: contexts and the edges between them" {
            defs {
                marker #arrow viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse" {
                    path d="M 0 0 L 10 5 L 0 10 z" {}
                }
            }
            @for edge in &map.edges {
                @if let (Some(from), Some(to)) = (position.get(&edge.from), position.get(&edge.to)) {
                    @let stats = window.edge(&edge.from, &edge.to).unwrap_or_default();
                    @let (x1, y1) = (from.0, from.1 + BOX_H / 2.0);
                    @let (x2, y2) = (to.0, to.1 - BOX_H / 2.0);
                    g.edge data-edge=(edge.key()) data-kind=(if edge.events.is_empty() { "calls" } else { "events" }) {
                        title { (edge.from) " → " (edge.to) ": " (edge.reason) }
                        line x1=(x1) y1=(y1) x2=(x2) y2=(y2) marker-end="url(#arrow)" {}
                        // The label sits beside the middle of the line, on the side it leans to,
                        // so the labels of two edges leaving one context do not meet.
                        // A slanted edge's label sits further along its line than a vertical one's.
                        @let along = if (x2 - x1).abs() < 1.0 { 0.5 } else { 0.62 };
                        @let (mx, my) = (x1 + (x2 - x1) * along, y1 + (y2 - y1) * along);
                        @let (lx, anchor) = if x2 + 1.0 < x1 { (mx - 8.0, "end") } else { (mx + 8.0, "start") };
                        @let ly = my;
                        text x=(lx) y=(ly) text-anchor=(anchor) {
                            @if edge.events.is_empty() {
                                tspan x=(lx) dy="-0.2em" { (plural(stats.calls.total, "call", "calls")) " · " (rate(stats.calls)) }
                                tspan x=(lx) dy="1.2em" { "p99 " (latency(stats.p99)) " · " (share(stats.error_share)) " err" @if stats.since_start { "*" } }
                            } @else {
                                @let written: u64 = edge.events.iter().map(|event| window.written(event).total).sum();
                                @let done: u64 = edge.events.iter().map(|event| window.consumed(event, &edge.from).0.total).sum();
                                @let remote = |context: &str| placed.iter().any(|placed| placed.context == context && placed.remote.is_some());
                                tspan x=(lx) dy="-0.2em" {
                                    @if remote(&edge.to) { "events written in " (edge.to) "'s process" } @else { (plural(written, "event", "events")) " written" }
                                }
                                tspan x=(lx) dy="1.2em" {
                                    @if remote(&edge.from) { "handled in " (edge.from) "'s process" } @else { (done) " handled" }
                                }
                            }
                        }
                    }
                }
            }
            @for canvas in &map.contexts {
                @if let Some((x, y)) = position.get(&canvas.name) {
                    @let remote = placed.iter().find(|placed| placed.context == canvas.name).and_then(|placed| placed.remote.clone());
                    a href={ "/console/contexts/" (canvas.name) } {
                        g.context.remote[remote.is_some()] data-context=(canvas.name) data-placement=(if remote.is_some() { "remote" } else { "local" }) {
                            rect x=(x - BOX_W / 2.0) y=(y - BOX_H / 2.0) width=(BOX_W) height=(BOX_H) rx="8" {}
                            text.name x=(x) y=(y - 4.0) text-anchor="middle" { (canvas.name) }
                            text.placement x=(x) y=(y + 16.0) text-anchor="middle" {
                                @match &remote { Some(url) => (url), None => "local" }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A context's page: its canvas, where it runs, its tables, and its port's traffic.
pub fn context(
    canvas: &Canvas,
    placed: &[Placed],
    tables: Result<&[String], String>,
    window: &Window,
    refresh_ms: u64,
) -> Markup {
    let remote = placed
        .iter()
        .find(|placed| placed.context == canvas.name)
        .and_then(|placed| placed.remote.clone());
    let body = html! {
        h1 { "The " (canvas.name) " context" }
        p #placement data-placement=(if remote.is_some() { "remote" } else { "local" }) {
            @match &remote { Some(url) => { "Runs in another process, at " code { (url) } "." }, None => "Runs in this process." }
        }
        p #purpose { (canvas.purpose) }
        section {
            h2 { "Language" }
            p { "The words this context owns, and what they mean here (elsewhere they may mean something else)." }
            dl #language {
                @for (word, meaning) in &canvas.language {
                    dt { (word) }
                    dd { (meaning) }
                }
            }
        }
        section {
            h2 { "Port: " code { (canvas.port.trait_name) } ", version " (canvas.port.version) }
            @if let Some(docs) = canvas.port_docs.filter(|docs| !docs.doc.is_empty()) { p { (docs.doc) } }
            table #port {
                thead { tr { th { "method" } th { "idempotent" } th { "calls through the port" } th { "what it does" } } }
                tbody {
                    @if let Some(docs) = canvas.port_docs {
                        @for method in docs.methods {
                            @let idempotent = canvas.idempotent(method.name);
                            tr data-method=(method.name) data-idempotent=(idempotent) {
                                td { code { (method.signature) } }
                                td { @if idempotent { "yes: may be retried" } @else { "no: never retried" } }
                                td data-metric="calls-total" { (window.method_calls(&canvas.name, method.name)) }
                                td { (method.doc) }
                            }
                        }
                    }
                }
            }
        }
        section {
            h2 { "Events out" }
            table #events-out {
                thead { tr { th { "event" } th { "taken by" } th { "written" } th { "meaning" } } }
                tbody {
                    @if canvas.events_out.is_empty() { tr.empty { td colspan="4" { "None: " (canvas.name) " publishes no event." } } }
                    @for event in &canvas.events_out {
                        tr data-event=(event.name) {
                            td { code { (event.name) } }
                            td { @if event.consumers.is_empty() { "nobody yet" } @else { (event.consumers.join(", ")) } }
                            td data-metric="written-total" { (window.written(&event.name).total) }
                            td { (event.description) }
                        }
                    }
                }
            }
        }
        section {
            h2 { "Events in" }
            table #events-in {
                thead { tr { th { "event" } th { "from" } th { "handled" } th { "meaning" } } }
                tbody {
                    @if canvas.events_in.is_empty() { tr.empty { td colspan="4" { "None: " (canvas.name) " reacts to no other context's event." } } }
                    @for event in &canvas.events_in {
                        tr data-event=(event.name) {
                            td { code { (event.name) } }
                            td { (event.publisher) }
                            td data-metric="done-total" { (window.consumed(&event.name, &canvas.name).0.total) }
                            td { (event.description) }
                        }
                    }
                }
            }
        }
        section {
            h2 { "Edges" }
            ul #uses { @for (to, reason) in &canvas.uses { li data-edge={ (canvas.name) "->" (to) } { "uses " a href={ "/console/contexts/" (to) } { (to) } ": " (reason) } } }
            ul #used-by { @for (from, reason) in &canvas.used_by { li data-edge={ (from) "->" (canvas.name) } { a href={ "/console/contexts/" (from) } { (from) } " uses it: " (reason) } } }
        }
        section {
            h2 { "Data owned" }
            p { "Schema " code { (canvas.schema) } " on Postgres, reached only through this context's connection (its own role where provisioned); one SQLite file on the default store." }
            @match tables {
                Ok(tables) => {
                    table #tables {
                        thead { tr { th { "table" } } }
                        tbody { @for table in tables { tr data-table=(table) { td { code { (table) } } } } }
                    }
                }
                Err(why) => p #tables-elsewhere { (why) },
            }
        }
        section {
            h2 { "Invariants" }
            ul #invariants { @for invariant in &canvas.invariants { li { (invariant) } } }
        }
        p.source { "From " code { "crates/" (canvas.name) "/canvas.toml" } ", the " code { (canvas.name) "-api" } " crate, the event types and " code { "arch.toml" } "; the same source as " code { "docs/contexts/" (canvas.name) ".md" } "." }
    };
    page(&canvas.name, refresh_ms, placed, body)
}

/// Asks before discarding a parked event: the only action that cannot be undone.
pub fn confirm_discard(event: &FailedEvent, placed: &[Placed]) -> Markup {
    let body = html! {
        h1 { "Discard this event?" }
        p { "A discarded event is never delivered or handled, and the later events of its aggregate go on without it. This cannot be undone." }
        dl {
            dt { "event" } dd { code { (event.event_name) } }
            dt { "owner" } dd { (event.owner) }
            dt { "aggregate" } dd { code { (event.aggregate_id) } }
            dt { "attempts" } dd { (event.attempts) }
            dt { "last error" } dd { (event.last_error.as_deref().unwrap_or("")) }
        }
        form #confirm-discard method="post" action={ "/console/events/" (event.id) "/discard" } {
            button.danger type="submit" data-action="confirm-discard" { "Discard the event" }
            " "
            a href="/console#parked-events" data-action="cancel" { "Cancel" }
        }
    };
    // No refresh here: the page waits for an answer.
    page("Discard?", 0, placed, body)
}

/// The stylesheet and the refresh script, compiled in.
pub const CSS: &str = include_str!("assets/console.css");
pub const JS: &str = include_str!("assets/console.js");
