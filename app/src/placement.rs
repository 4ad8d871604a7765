//! Which contexts this process runs, and where the others live.
//!
//! The same `shop` binary runs any subset of the five contexts (`shop serve --contexts
//! payments`, or `placement.contexts`); every context it does not run is reached over HTTP at
//! the base URL of its process's internal listener (`placement.<context>_url`). The default
//! runs every context here, as one process, exactly as before extraction existed.
//!
//! A placement that cannot work is refused before anything opens, with the reason: a context
//! this process needs that is neither here nor given a URL, a context both here and given a
//! URL, or a split of contexts whose integration events would have to cross processes
//! without a broker (`broker.url`).

use std::collections::BTreeSet;
use std::fmt;

use url::Url;

use crate::settings::PlacementSettings;

/// The five contexts, in the order they are opened.
pub const ALL: [&str; 5] = [
    auth::CONTEXT,
    catalog::CONTEXT,
    payments::CONTEXT,
    orders::CONTEXT,
    notifications::CONTEXT,
];

/// Who listens to whose integration events: (consumer, publisher, what). Where the two run in
/// different processes, the events travel through the broker.
pub const LISTENS: [(&str, &str, &str); 2] = [
    (
        notifications::CONTEXT,
        auth::CONTEXT,
        "notifications listens to auth's UserRegistered",
    ),
    (
        notifications::CONTEXT,
        orders::CONTEXT,
        "notifications listens to orders' events",
    ),
];

/// Where each context runs, as this process sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    local: BTreeSet<&'static str>,
    remote: Vec<(&'static str, Url)>,
    /// Whether a broker is configured, for events between processes.
    broker: bool,
}

/// Why a placement cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("placement: {0}")]
pub struct PlacementError(String);

impl Placement {
    /// Every context in this process.
    pub fn all_local() -> Self {
        Self {
            local: ALL.into_iter().collect(),
            remote: Vec::new(),
            broker: false,
        }
    }

    /// Reads `placement.*`, and refuses a placement that cannot work; `broker` says whether
    /// `broker.url` is set.
    pub fn resolve(settings: &PlacementSettings, broker: bool) -> Result<Self, PlacementError> {
        let local = parse_contexts(&settings.contexts)?;
        let mut remote = Vec::new();
        for context in ALL {
            let url = settings.url(context).trim();
            if url.is_empty() {
                continue;
            }
            if local.contains(context) {
                return Err(PlacementError(format!(
                    "{context} runs in this process and also has placement.{context}_url; \
                     a context is either here or there (clear the URL, or leave {context} out \
                     of placement.contexts)"
                )));
            }
            let parsed = Url::parse(url)
                .ok()
                .filter(|url| matches!(url.scheme(), "http" | "https") && url.has_host())
                .ok_or_else(|| {
                    PlacementError(format!(
                        "placement.{context}_url must be an http:// or https:// base URL, \
                         got {url:?}"
                    ))
                })?;
            remote.push((context, parsed));
        }
        let placement = Self {
            local,
            remote,
            broker,
        };
        placement.check()?;
        Ok(placement)
    }

    fn check(&self) -> Result<(), PlacementError> {
        // Events between processes need the broker.
        if !self.broker {
            for (consumer, publisher, reason) in LISTENS {
                if self.is_local(publisher) != self.is_local(consumer) {
                    let (here, there) = if self.is_local(consumer) {
                        (consumer, publisher)
                    } else {
                        (publisher, consumer)
                    };
                    return Err(PlacementError(format!(
                        "{here} cannot run without {there} in the same process: {reason}, \
                         and without a broker integration events do not cross processes. Set \
                         broker.url (NATS JetStream), or run auth, orders and notifications \
                         together"
                    )));
                }
            }
        }
        // Synchronous calls: whatever a local context calls must be here or have a URL.
        for (context, needed_by) in self.needs() {
            if !self.is_local(context) && self.url(context).is_none() {
                return Err(PlacementError(format!(
                    "{context} is not in this process and has no URL, but {needed_by} calls it: \
                     set placement.{context}_url to the internal listener of the process that \
                     runs it, or run {context} here"
                )));
            }
        }
        Ok(())
    }

    /// The ports this process calls, and who calls them.
    fn needs(&self) -> Vec<(&'static str, &'static str)> {
        // Every context's protected public routes verify tokens through auth's port.
        let mut needs = vec![(auth::CONTEXT, "every protected route")];
        if self.is_local(orders::CONTEXT) {
            needs.push((catalog::CONTEXT, "orders"));
            needs.push((payments::CONTEXT, "orders"));
        }
        needs
    }

    pub fn is_local(&self, context: &str) -> bool {
        self.local.contains(context)
    }

    /// The base URL of a context that runs elsewhere.
    pub fn url(&self, context: &str) -> Option<&Url> {
        self.remote
            .iter()
            .find(|(name, _)| *name == context)
            .map(|(_, url)| url)
    }

    /// The contexts this process runs, in opening order.
    pub fn local(&self) -> impl Iterator<Item = &'static str> + '_ {
        ALL.into_iter().filter(|context| self.is_local(context))
    }

    /// The events this process publishes that a context in another process consumes: it
    /// relays them to the broker too.
    pub fn publishes_away(&self) -> Vec<(&'static str, &'static str)> {
        LISTENS
            .into_iter()
            .filter(|(consumer, publisher, _)| self.is_local(publisher) && !self.is_local(consumer))
            .map(|(consumer, publisher, _)| (publisher, consumer))
            .collect()
    }

    /// The events that stay in this process, publisher and consumer both here: the in-process
    /// bus hands them over, with no broker.
    pub fn delivers_here(&self) -> Vec<(&'static str, &'static str)> {
        LISTENS
            .into_iter()
            .filter(|(consumer, publisher, _)| self.is_local(publisher) && self.is_local(consumer))
            .map(|(consumer, publisher, _)| (publisher, consumer))
            .collect()
    }

    /// The events a context of this process consumes that another process publishes: it
    /// takes them from the broker.
    pub fn consumes_from_away(&self) -> Vec<(&'static str, &'static str)> {
        LISTENS
            .into_iter()
            .filter(|(consumer, publisher, _)| self.is_local(consumer) && !self.is_local(publisher))
            .map(|(consumer, publisher, _)| (consumer, publisher))
            .collect()
    }

    /// Whether this process runs fewer than all contexts: part of a split deployment, so it
    /// serves its ports on the internal listener.
    pub fn is_split(&self) -> bool {
        self.local.len() < ALL.len()
    }
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let local: Vec<_> = self.local().collect();
        write!(f, "here: {}", local.join(", "))?;
        for (context, url) in &self.remote {
            write!(f, "; {context} at {url}")?;
        }
        Ok(())
    }
}

fn parse_contexts(list: &str) -> Result<BTreeSet<&'static str>, PlacementError> {
    let list = list.trim();
    if list.eq_ignore_ascii_case("all") {
        return Ok(ALL.into_iter().collect());
    }
    let mut local = BTreeSet::new();
    for name in list
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
    {
        let context = ALL
            .into_iter()
            .find(|context| context.eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                PlacementError(format!(
                    "unknown context {name:?} in placement.contexts; the contexts are {}",
                    ALL.join(", ")
                ))
            })?;
        local.insert(context);
    }
    if local.is_empty() {
        return Err(PlacementError(
            "placement.contexts names no context; use \"all\" or a comma-separated list".into(),
        ));
    }
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(contexts: &str, urls: &[(&str, &str)]) -> PlacementSettings {
        let mut settings = PlacementSettings {
            contexts: contexts.to_owned(),
            ..PlacementSettings::default()
        };
        for (context, url) in urls {
            *settings.url_mut(context).expect("a context") = (*url).to_owned();
        }
        settings
    }

    fn refused(contexts: &str, urls: &[(&str, &str)]) -> String {
        Placement::resolve(&settings(contexts, urls), false)
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn the_default_is_every_context_here() {
        let placement = Placement::resolve(&settings("all", &[]), false).expect("valid");
        assert_eq!(placement, Placement::all_local());
        assert!(!placement.is_split());
        assert_eq!(placement.local().collect::<Vec<_>>(), ALL);
    }

    #[test]
    fn catalog_and_payments_may_run_elsewhere() {
        let placement = Placement::resolve(
            &settings(
                "auth, orders,notifications",
                &[
                    ("catalog", "http://127.0.0.1:9101"),
                    ("payments", "http://127.0.0.1:9102/"),
                ],
            ),
            false,
        )
        .expect("valid");
        assert!(placement.is_split());
        assert!(!placement.is_local("catalog"));
        assert_eq!(
            placement.url("payments").map(Url::as_str),
            Some("http://127.0.0.1:9102/")
        );
        assert_eq!(
            placement.to_string(),
            "here: auth, orders, notifications; catalog at http://127.0.0.1:9101/; \
             payments at http://127.0.0.1:9102/"
        );
        // And the payments process needs only auth's URL.
        Placement::resolve(
            &settings("payments", &[("auth", "http://shop:9000")]),
            false,
        )
        .expect("valid");
    }

    #[test]
    fn a_needed_context_without_a_url_is_refused() {
        let error = refused("auth,orders,notifications", &[("catalog", "http://c:1")]);
        assert!(
            error.contains("payments is not in this process and has no URL"),
            "{error}"
        );
        assert!(error.contains("orders calls it"), "{error}");
        let error = refused("payments", &[]);
        assert!(error.contains("auth is not in this process"), "{error}");
    }

    #[test]
    fn contexts_whose_events_cross_processes_are_refused() {
        let error = refused(
            "auth,catalog,payments,orders",
            &[("notifications", "http://n:1")],
        );
        assert!(
            error.contains("auth cannot run without notifications"),
            "{error}"
        );
        let error = refused("notifications", &[("auth", "http://a:1")]);
        assert!(
            error.contains("notifications cannot run without auth"),
            "{error}"
        );
        let error = refused(
            "auth,notifications,catalog,payments",
            &[("orders", "http://o:1")],
        );
        assert!(
            error.contains("notifications cannot run without orders"),
            "{error}"
        );
    }

    #[test]
    fn with_a_broker_events_cross_processes() {
        let shop = Placement::resolve(
            &settings(
                "auth,catalog,payments,orders",
                &[("notifications", "http://n:1")],
            ),
            true,
        )
        .expect("valid with a broker");
        assert_eq!(
            shop.publishes_away(),
            [("auth", "notifications"), ("orders", "notifications")]
        );
        assert!(shop.consumes_from_away().is_empty());
        let notifications =
            Placement::resolve(&settings("notifications", &[("auth", "http://a:1")]), true)
                .expect("valid with a broker");
        assert_eq!(
            notifications.consumes_from_away(),
            [("notifications", "auth"), ("notifications", "orders")]
        );
        assert!(notifications.publishes_away().is_empty());
        assert!(shop.delivers_here().is_empty() && notifications.delivers_here().is_empty());
        let whole = Placement::resolve(&settings("all", &[]), true).expect("valid");
        assert!(whole.publishes_away().is_empty() && whole.consumes_from_away().is_empty());
        assert_eq!(
            whole.delivers_here(),
            [("auth", "notifications"), ("orders", "notifications")]
        );
    }

    #[test]
    fn ambiguous_or_malformed_placements_are_refused() {
        let error = refused("all", &[("payments", "http://p:1")]);
        assert!(error.contains("either here or there"), "{error}");
        let error = refused("payments", &[("auth", "p:1")]);
        assert!(
            error.contains("placement.auth_url must be an http"),
            "{error}"
        );
        let error = refused("payments,shipping", &[]);
        assert!(error.contains("unknown context \"shipping\""), "{error}");
        let error = refused(" , ", &[]);
        assert!(error.contains("names no context"), "{error}");
    }
}
