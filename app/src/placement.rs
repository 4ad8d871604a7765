//! Which contexts this process runs, and where the others live.
//!
//! The same `shop` binary runs any subset of the five contexts (`shop serve --contexts
//! payments`, or `placement.contexts`); every context it does not run is reached over HTTP at
//! the base URL of its process's internal listener (`placement.<context>_url`). The default
//! runs every context here, as one process, exactly as before extraction existed.
//!
//! A placement that cannot work is refused before anything opens, with the reason: a context
//! this process needs that is neither here nor given a URL, a context both here and given a
//! URL, or a split of contexts whose integration events would have to cross processes (that
//! needs a broker, which comes with the events issue).

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

/// Contexts that must share a process, and why: integration events travel in process only
/// until the events issue carries them over a broker.
const TOGETHER: [(&str, &str); 2] = [
    (
        auth::CONTEXT,
        "notifications listens to auth's UserRegistered in process",
    ),
    (
        orders::CONTEXT,
        "notifications listens to orders' events in process",
    ),
];

/// Where each context runs, as this process sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    local: BTreeSet<&'static str>,
    remote: Vec<(&'static str, Url)>,
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
        }
    }

    /// Reads `placement.*`, and refuses a placement that cannot work.
    pub fn resolve(settings: &PlacementSettings) -> Result<Self, PlacementError> {
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
        let placement = Self { local, remote };
        placement.check()?;
        Ok(placement)
    }

    fn check(&self) -> Result<(), PlacementError> {
        // Events: notifications consumes auth's and orders' events through the in-process bus.
        let notifications_here = self.is_local(notifications::CONTEXT);
        for (publisher, reason) in TOGETHER {
            if self.is_local(publisher) != notifications_here {
                let (here, there) = if notifications_here {
                    (notifications::CONTEXT, publisher)
                } else {
                    (publisher, notifications::CONTEXT)
                };
                return Err(PlacementError(format!(
                    "{here} cannot run without {there} in the same process: {reason}, and \
                     integration events do not cross processes yet. Run auth, orders and \
                     notifications together; catalog and payments can run anywhere"
                )));
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
        Placement::resolve(&settings(contexts, urls))
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn the_default_is_every_context_here() {
        let placement = Placement::resolve(&settings("all", &[])).expect("valid");
        assert_eq!(placement, Placement::all_local());
        assert!(!placement.is_split());
        assert_eq!(placement.local().collect::<Vec<_>>(), ALL);
    }

    #[test]
    fn catalog_and_payments_may_run_elsewhere() {
        let placement = Placement::resolve(&settings(
            "auth, orders,notifications",
            &[
                ("catalog", "http://127.0.0.1:9101"),
                ("payments", "http://127.0.0.1:9102/"),
            ],
        ))
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
        Placement::resolve(&settings("payments", &[("auth", "http://shop:9000")])).expect("valid");
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
