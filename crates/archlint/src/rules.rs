//! The catalogue of rules: stable ids, one-line summaries and the long `archlint explain` texts.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Every rule archlint reports, including the configuration checks (exit code 2).
///
/// The ids are part of the interface (baseline files and CI logs refer to them): never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    UnclassifiedMember,
    UnusedEntry,
    InvalidConfig,
    UndeclaredContextEdge,
    ImplementationDependency,
    ApiForbiddenDependency,
    ApiUnlistedDependency,
    UndeclaredInfrastructureEdge,
    KernelDependency,
    ToolingDependency,
    CompositionRootDependency,
    ContextCycle,
    PathEscape,
    ApiReexport,
    PortSpec,
    ForeignSchema,
    ForeignTable,
    StaleBaselineEntry,
}

impl Rule {
    pub const ALL: [Rule; 18] = [
        Rule::UnclassifiedMember,
        Rule::UnusedEntry,
        Rule::InvalidConfig,
        Rule::UndeclaredContextEdge,
        Rule::ImplementationDependency,
        Rule::ApiForbiddenDependency,
        Rule::ApiUnlistedDependency,
        Rule::UndeclaredInfrastructureEdge,
        Rule::KernelDependency,
        Rule::ToolingDependency,
        Rule::CompositionRootDependency,
        Rule::ContextCycle,
        Rule::PathEscape,
        Rule::ApiReexport,
        Rule::PortSpec,
        Rule::ForeignSchema,
        Rule::ForeignTable,
        Rule::StaleBaselineEntry,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Rule::UnclassifiedMember => "unclassified-member",
            Rule::UnusedEntry => "unused-entry",
            Rule::InvalidConfig => "invalid-config",
            Rule::UndeclaredContextEdge => "undeclared-context-edge",
            Rule::ImplementationDependency => "implementation-dependency",
            Rule::ApiForbiddenDependency => "api-forbidden-dependency",
            Rule::ApiUnlistedDependency => "api-unlisted-dependency",
            Rule::UndeclaredInfrastructureEdge => "undeclared-infrastructure-edge",
            Rule::KernelDependency => "kernel-dependency",
            Rule::ToolingDependency => "tooling-dependency",
            Rule::CompositionRootDependency => "composition-root-dependency",
            Rule::ContextCycle => "context-cycle",
            Rule::PathEscape => "path-escape",
            Rule::ApiReexport => "api-reexport",
            Rule::PortSpec => "port-spec",
            Rule::ForeignSchema => "foreign-schema",
            Rule::ForeignTable => "foreign-table",
            Rule::StaleBaselineEntry => "stale-baseline-entry",
        }
    }

    /// Configuration rules make the check exit with 2 instead of 1 and cannot be baselined.
    pub fn is_configuration(self) -> bool {
        matches!(
            self,
            Rule::UnclassifiedMember | Rule::UnusedEntry | Rule::InvalidConfig
        )
    }

    pub fn summary(self) -> &'static str {
        match self {
            Rule::UnclassifiedMember => "every workspace member is classified in arch.toml",
            Rule::UnusedEntry => {
                "every crate named in arch.toml is a workspace member, and every declared edge is used"
            }
            Rule::InvalidConfig => "arch.toml and the baseline are well-formed and consistent",
            Rule::UndeclaredContextEdge => {
                "a context uses another context only along an edge declared in arch.toml"
            }
            Rule::ImplementationDependency => {
                "only the composition root depends on implementation and migrations crates"
            }
            Rule::ApiForbiddenDependency => {
                "an -api crate never depends on a database, web, HTTP client or runtime crate"
            }
            Rule::ApiUnlistedDependency => {
                "an -api crate depends only on the kernel, allow-listed data crates and other -api crates"
            }
            Rule::UndeclaredInfrastructureEdge => {
                "an infrastructure crate uses a context's -api crate only along a declared edge"
            }
            Rule::KernelDependency => "the kernel depends on no other workspace crate",
            Rule::ToolingDependency => "tooling crates are only dev-dependencies",
            Rule::CompositionRootDependency => {
                "nothing but tooling depends on the composition root"
            }
            Rule::ContextCycle => "the context graph (declared and actual edges) has no cycle",
            Rule::PathEscape => {
                "#[path] modules and include!/include_str!/include_bytes! stay inside their crate"
            }
            Rule::ApiReexport => "an -api crate does not re-export another context's items",
            Rule::PortSpec => {
                "an -api crate's PORT lists exactly its port trait's methods, each idempotent or not"
            }
            Rule::ForeignSchema => "a context's code names only its own database schema",
            Rule::ForeignTable => "a context's code names only tables its own context owns",
            Rule::StaleBaselineEntry => "every entry of the baseline still matches a violation",
        }
    }

    /// The long text of `archlint explain <id>`: why the rule exists, an example, how to fix it.
    pub fn explanation(self) -> &'static str {
        match self {
            Rule::UnclassifiedMember => include_str!("explain/unclassified-member.md"),
            Rule::UnusedEntry => include_str!("explain/unused-entry.md"),
            Rule::InvalidConfig => include_str!("explain/invalid-config.md"),
            Rule::UndeclaredContextEdge => include_str!("explain/undeclared-context-edge.md"),
            Rule::ImplementationDependency => include_str!("explain/implementation-dependency.md"),
            Rule::ApiForbiddenDependency => include_str!("explain/api-forbidden-dependency.md"),
            Rule::ApiUnlistedDependency => include_str!("explain/api-unlisted-dependency.md"),
            Rule::UndeclaredInfrastructureEdge => {
                include_str!("explain/undeclared-infrastructure-edge.md")
            }
            Rule::KernelDependency => include_str!("explain/kernel-dependency.md"),
            Rule::ToolingDependency => include_str!("explain/tooling-dependency.md"),
            Rule::CompositionRootDependency => {
                include_str!("explain/composition-root-dependency.md")
            }
            Rule::ContextCycle => include_str!("explain/context-cycle.md"),
            Rule::PathEscape => include_str!("explain/path-escape.md"),
            Rule::ApiReexport => include_str!("explain/api-reexport.md"),
            Rule::PortSpec => include_str!("explain/port-spec.md"),
            Rule::ForeignSchema => include_str!("explain/foreign-schema.md"),
            Rule::ForeignTable => include_str!("explain/foreign-table.md"),
            Rule::StaleBaselineEntry => include_str!("explain/stale-baseline-entry.md"),
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// An id that names no rule.
#[derive(Debug, thiserror::Error)]
#[error("unknown rule `{0}` (run `archlint explain` for the list)")]
pub struct UnknownRule(pub String);

impl FromStr for Rule {
    type Err = UnknownRule;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Rule::ALL
            .into_iter()
            .find(|rule| rule.id() == s)
            .ok_or_else(|| UnknownRule(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_are_unique() {
        for rule in Rule::ALL {
            assert_eq!(rule.id().parse::<Rule>().unwrap(), rule);
            assert!(rule.explanation().starts_with(&format!("# {}", rule.id())));
        }
        let mut ids: Vec<_> = Rule::ALL.iter().map(|r| r.id()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), Rule::ALL.len());
    }

    #[test]
    fn serde_uses_the_id() {
        assert_eq!(
            serde_json::to_string(&Rule::ForeignTable).unwrap(),
            "\"foreign-table\""
        );
    }
}
