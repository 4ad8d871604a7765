//! Dependency rules: what a crate of each role may depend on (context edges, implementation and
//! migrations crates, `-api` purity, infrastructure edges, the kernel, tooling, the composition
//! root), checked on every declared dependency of every member: normal, dev and build,
//! optional or not, for every target.

use crate::config::{ArchConfig, Context, CrateDecl, Role};
use crate::diagnostic::{Diagnostic, Violation};
use crate::rules::Rule;
use crate::workspace::{DepKind, Dependency, Member, Workspace};

/// Checks every dependency of every member; members must all be classified.
pub fn check(config: &ArchConfig, workspace: &Workspace, out: &mut Vec<Violation>) {
    for member in &workspace.members {
        let Some(from) = config.krate(&member.name) else {
            continue;
        };
        for dependency in &member.dependencies {
            if dependency.name == member.name {
                continue;
            }
            let check = Check {
                config,
                from,
                member,
                dependency,
                to: config.krate(&dependency.name),
            };
            if let Some(diagnostic) = check.run() {
                out.push(Violation::new(
                    &member.name,
                    &dependency.name,
                    diagnostic.at(dependency.location.clone()),
                ));
            }
        }
    }
}

/// One dependency edge under judgement.
struct Check<'a> {
    config: &'a ArchConfig,
    from: &'a CrateDecl,
    member: &'a Member,
    dependency: &'a Dependency,
    /// `None` for third-party crates.
    to: Option<&'a CrateDecl>,
}

impl Check<'_> {
    /// The first rule the edge breaks, most specific first.
    fn run(&self) -> Option<Diagnostic> {
        let Some(to) = self.to else {
            return self.third_party();
        };
        if to.role == Role::Tooling {
            return (self.from.role != Role::Tooling && self.dependency.kind != DepKind::Dev)
                .then(|| self.tooling(to));
        }
        if self.from.role == Role::Tooling {
            return None;
        }
        if to.role == Role::CompositionRoot {
            return Some(self.composition_root(to));
        }
        if self.from.role == Role::CompositionRoot {
            return None;
        }
        if matches!(to.role, Role::Implementation | Role::Migrations) {
            let own_migrations = self.from.role == Role::Implementation
                && to.role == Role::Migrations
                && self.from.context == to.context;
            return (!own_migrations).then(|| self.implementation(to));
        }
        match self.from.role {
            Role::Kernel => Some(self.kernel(to)),
            Role::Api => match to.role {
                Role::Kernel => None,
                Role::Api => self.context_edge(to),
                _ => Some(self.api_unlisted_workspace(to)),
            },
            Role::Implementation | Role::Migrations => match to.role {
                Role::Api => self.context_edge(to),
                _ => None,
            },
            Role::Infrastructure => match to.role {
                Role::Api => self.infrastructure_edge(to),
                _ => None,
            },
            Role::CompositionRoot | Role::Tooling => None,
        }
    }

    fn name(&self) -> &str {
        &self.from.name
    }

    fn dep(&self) -> &str {
        &self.dependency.name
    }

    fn kind(&self) -> String {
        self.dependency.describe_kind()
    }

    fn source_context(&self) -> Option<&Context> {
        self.from
            .context
            .as_deref()
            .and_then(|c| self.config.context(c))
    }

    /// "`orders` (implementation of context `orders`) -> `x` (...), dev-dependency".
    fn edge_note(&self, to: &str) -> String {
        format!("{} -> {to}, {}", self.from.describe(), self.kind())
    }

    fn third_party(&self) -> Option<Diagnostic> {
        if self.from.role != Role::Api {
            return None;
        }
        let (name, dep) = (self.name(), self.dep());
        if let Some(deny) = self.config.api_denies(dep) {
            let category = &deny.category;
            let article = article(category);
            let implementation = self
                .source_context()
                .and_then(|c| c.implementation.as_deref())
                .map_or_else(
                    || "the context's implementation crate".to_owned(),
                    |i| format!("`{i}`"),
                );
            let contract = self
                .source_context()
                .and_then(|c| c.api_trait.as_deref())
                .map_or_else(String::new, |t| format!(" and the `{t}` trait"));
            return Some(
                Diagnostic::new(
                    Rule::ApiForbiddenDependency,
                    format!("`{name}` depends on `{dep}`, which is {article} {category} crate"),
                )
                .label(format!("{article} {category} crate"))
                .note(self.edge_note(&format!("`{dep}` (third-party)")))
                .note(format!(
                    "arch.toml denies {category} crates in api crates (`{}` matches `[api.deny] {}`)",
                    dep,
                    toml_key(category)
                ))
                .note("an -api crate is the contract other contexts compile against: it must not bring persistence, web, HTTP or runtime crates into them")
                .help(format!(
                    "move the code that needs `{dep}` into {implementation}; keep `{name}` to plain data types{contract}"
                )),
            );
        }
        if self.config.api_allows(dep) {
            return None;
        }
        let allowed = self
            .config
            .api_allow_list()
            .iter()
            .map(|p| format!("`{p}`"))
            .collect::<Vec<_>>()
            .join(", ");
        Some(
            Diagnostic::new(
                Rule::ApiUnlistedDependency,
                format!("`{name}` depends on `{}`, which is not on the api allow-list", self.dep()),
            )
            .label("not an allowed api dependency")
            .note(self.edge_note(&format!("`{dep}` (third-party)")))
            .note(format!(
                "api crates may use the kernel, other contexts' api crates along declared edges, and: {}",
                if allowed.is_empty() { "(nothing else)".to_owned() } else { allowed }
            ))
            .help(format!(
                "move the code that needs `{dep}` into the implementation crate, or, if `{dep}` only describes data, add it to `[api] allow` in arch.toml"
            )),
        )
    }

    fn api_unlisted_workspace(&self, to: &CrateDecl) -> Diagnostic {
        let (name, dep) = (self.name(), self.dep());
        Diagnostic::new(
            Rule::ApiUnlistedDependency,
            format!("`{name}` depends on `{dep}`, {} crate", with_article(&to.role.to_string())),
        )
        .label(format!("{} crate", to.role))
        .note(self.edge_note(&to.describe()))
        .note("api crates may use only the kernel, allow-listed data crates and other contexts' api crates along declared edges")
        .help(format!(
            "move the code that needs `{dep}` into the implementation crate and keep `{name}` to plain data types and its trait"
        ))
    }

    fn context_edge(&self, to: &CrateDecl) -> Option<Diagnostic> {
        let from_context = self.from.context.as_deref()?;
        let to_context = to.context.as_deref()?;
        if from_context == to_context || self.config.edge(from_context, to_context).is_some() {
            return None;
        }
        let (name, dep) = (self.name(), self.dep());
        let declared: Vec<String> = self
            .config
            .edges()
            .iter()
            .filter(|e| e.from == from_context)
            .map(|e| format!("{} -> {}", e.from, e.to))
            .collect();
        let declared = if declared.is_empty() {
            format!("arch.toml declares no edge from `{from_context}`")
        } else {
            format!(
                "declared edges from `{from_context}`: {}",
                declared.join(", ")
            )
        };
        let trait_name = self
            .config
            .context(to_context)
            .and_then(|c| c.api_trait.as_deref())
            .map_or_else(|| format!("`{dep}`"), |t| format!("`{t}`"));
        Some(
            Diagnostic::new(
                Rule::UndeclaredContextEdge,
                format!(
                    "`{name}` depends on `{dep}`, but arch.toml declares no edge {from_context} -> {to_context}"
                ),
            )
            .label(format!("undeclared edge {from_context} -> {to_context}"))
            .note(self.edge_note(&to.describe()))
            .note(declared)
            .help(format!(
                "if `{from_context}` must call {trait_name}, declare the edge in arch.toml: [[edges]] from = \"{from_context}\", to = \"{to_context}\", reason = \"..\"; otherwise subscribe to an integration event of `{to_context}` instead"
            )),
        )
    }

    fn implementation(&self, to: &CrateDecl) -> Diagnostic {
        let (name, dep) = (self.name(), self.dep());
        let to_context = to.context.as_deref().unwrap_or_default();
        let target = self.config.context(to_context);
        let role = to.role.to_string();
        let mut diagnostic = Diagnostic::new(
            Rule::ImplementationDependency,
            format!("`{name}` depends on `{dep}`, the {role} crate of context `{to_context}`"),
        )
        .label(format!("{role} crate"))
        .note(self.edge_note(&to.describe()))
        .note(
            "only the composition root depends on implementation and migrations crates \
             (and a context's implementation on its own migrations)",
        );
        let api = target.and_then(|c| c.api.as_deref());
        let read_through = match (api, target.and_then(|c| c.api_trait.as_deref())) {
            (Some(api), Some(api_trait)) => {
                format!("; to use `{to_context}`'s data, depend on `{api}` and call `{api_trait}`")
            }
            (Some(api), None) => format!("; to use `{to_context}`'s data, depend on `{api}`"),
            (None, _) => String::new(),
        };
        let help = match api {
            _ if to.role == Role::Migrations => format!(
                "migrations of `{to_context}` are run by the composition root (or by `{}` itself){read_through}",
                target
                    .and_then(|c| c.implementation.as_deref())
                    .unwrap_or(to_context)
            ),
            Some(api) if self.from.context.as_deref() == Some(to_context) => format!(
                "use `{api}` (the context's contract) instead, or move the code into `{dep}`"
            ),
            Some(api) => {
                let via = target
                    .and_then(|c| c.api_trait.as_deref())
                    .map_or_else(String::new, |t| format!(" and call `{t}`"));
                let edge = match self.from.context.as_deref() {
                    Some(from) if self.config.edge(from, to_context).is_none() => format!(
                        " (declaring the edge {from} -> {to_context} in arch.toml with a reason)"
                    ),
                    _ => String::new(),
                };
                format!(
                    "depend on `{api}`{via} instead{edge}; the composition root wires `{dep}` in"
                )
            }
            None => format!(
                "give context `{to_context}` an api crate (`{to_context}-api`) and depend on that; the composition root wires `{dep}` in"
            ),
        };
        diagnostic = diagnostic.help(help);
        diagnostic
    }

    fn infrastructure_edge(&self, to: &CrateDecl) -> Option<Diagnostic> {
        let (name, dep) = (self.name(), self.dep());
        if self.config.infrastructure_edge(name, dep).is_some() {
            return None;
        }
        Some(
            Diagnostic::new(
                Rule::UndeclaredInfrastructureEdge,
                format!(
                    "infrastructure crate `{name}` depends on `{dep}`, but arch.toml declares no infrastructure edge {name} -> {dep}"
                ),
            )
            .label("undeclared infrastructure edge")
            .note(self.edge_note(&to.describe()))
            .note("infrastructure may use the kernel, other infrastructure and third-party crates; each use of a context's api crate is declared with a reason")
            .help(format!(
                "declare it in arch.toml: [[infrastructure_edges]] from = \"{name}\", to = \"{dep}\", reason = \"..\"; or move the code that needs `{dep}` into a context"
            )),
        )
    }

    fn kernel(&self, to: &CrateDecl) -> Diagnostic {
        let (name, dep) = (self.name(), self.dep());
        Diagnostic::new(
            Rule::KernelDependency,
            format!("the kernel `{name}` depends on `{dep}`, {} crate", with_article(&to.role.to_string())),
        )
        .label(format!("{} crate", to.role))
        .note(self.edge_note(&to.describe()))
        .note("every crate may use the kernel, so the kernel depends on no other workspace crate")
        .help(format!(
            "move the code that needs `{dep}` out of the kernel, into `{dep}` or into the crates that use it"
        ))
    }

    fn tooling(&self, to: &CrateDecl) -> Diagnostic {
        let (name, dep) = (self.name(), self.dep());
        let kind = self.dependency.kind;
        Diagnostic::new(
            Rule::ToolingDependency,
            format!("`{name}` depends on the tooling crate `{dep}` as a {kind}"),
        )
        .label(format!("tooling as a {kind}"))
        .note(self.edge_note(&to.describe()))
        .note("tooling (test support, linters) is never part of the shipped program: it may only be a dev-dependency")
        .help(format!("move `{dep}` to `[dev-dependencies]` in `{}`", self.member.manifest))
    }

    fn composition_root(&self, to: &CrateDecl) -> Diagnostic {
        let (name, dep) = (self.name(), self.dep());
        Diagnostic::new(
            Rule::CompositionRootDependency,
            format!("`{name}` depends on `{dep}`, the composition root"),
        )
        .label("the composition root")
        .note(self.edge_note(&to.describe()))
        .note("the composition root depends on every context; depending on it makes every crate depend on every other")
        .help("depend on the api crate (or kernel) that holds what you need; only tooling such as black-box tests may use the composition root")
    }
}

/// "a database", "an HTTP client", "an async runtime".
pub(crate) fn article(phrase: &str) -> &'static str {
    let first_word = phrase.split_whitespace().next().unwrap_or_default();
    let first = first_word.chars().next().unwrap_or('x');
    // Acronyms are read letter by letter: "an HTTP", "an SQL", but "a UUID".
    let acronym = first_word.len() > 1 && first_word.chars().all(|c| c.is_ascii_uppercase());
    let vowel_sound = if acronym {
        "AEFHILMNORSX".contains(first)
    } else {
        "aeiouAEIOU".contains(first)
    };
    if vowel_sound { "an" } else { "a" }
}

fn with_article(phrase: &str) -> String {
    format!("{} {phrase}", article(phrase))
}

/// A category as it must be written as a TOML key.
fn toml_key(key: &str) -> String {
    if key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn articles() {
        assert_eq!(article("database"), "a");
        assert_eq!(article("HTTP client"), "an");
        assert_eq!(article("async runtime"), "an");
        assert_eq!(article("web framework"), "a");
        assert_eq!(article("infrastructure"), "an");
        assert_eq!(article("UUID"), "a");
    }
}
