//! Source escapes the compiler accepts but the architecture forbids: `#[path]` modules and
//! `include!`-family paths that leave the crate's folder (`path-escape`), and `-api` crates
//! re-exporting another context's items (`api-reexport`).

use std::collections::BTreeMap;

use crate::config::{ArchConfig, Role};
use crate::diagnostic::{Diagnostic, Violation};
use crate::rules::Rule;
use crate::source::CrateSources;
use crate::workspace::{Member, Workspace, relative};

/// `path-escape` for one member.
pub fn check_paths(
    workspace: &Workspace,
    member: &Member,
    sources: &CrateSources,
    out: &mut Vec<Violation>,
) {
    for file in &sources.files {
        for reference in &file.paths {
            if reference.resolved.starts_with(&member.dir) {
                continue;
            }
            let target = if reference.resolved.starts_with(&workspace.root) {
                format!("`{}`", relative(&workspace.root, &reference.resolved))
            } else {
                "a file outside the workspace".to_owned()
            };
            let owner = workspace
                .members
                .iter()
                .filter(|m| reference.resolved.starts_with(&m.dir))
                .max_by_key(|m| m.dir.components().count());
            let mut diagnostic = Diagnostic::new(
                Rule::PathEscape,
                format!(
                    "{} `{}` leaves the folder of crate `{}`",
                    reference.via, reference.written, member.name
                ),
            )
            .at(file.location(reference.pos))
            .label(format!("resolves to {target}"))
            .note(format!(
                "`{}` is compiled as part of `{}` although it lives outside `{}`: the dependency rules cannot see what it brings in",
                relative(&workspace.root, &reference.resolved),
                member.name,
                relative(&workspace.root, &member.dir),
            ));
            if let Some(owner) = owner {
                diagnostic = diagnostic.note(format!("the file belongs to crate `{}`", owner.name));
            }
            let help = match owner {
                Some(owner) => format!(
                    "depend on `{}` and use its public API instead, or move the file into `{}`",
                    owner.name,
                    relative(&workspace.root, &member.dir)
                ),
                None => format!(
                    "move the file into `{}`",
                    relative(&workspace.root, &member.dir)
                ),
            };
            out.push(Violation::new(
                &member.name,
                &reference.written,
                diagnostic.help(help),
            ));
        }
    }
}

/// `api-reexport` for one `-api` member.
pub fn check_reexports(
    config: &ArchConfig,
    member: &Member,
    sources: &CrateSources,
    out: &mut Vec<Violation>,
) {
    let Some(decl) = config.krate(&member.name) else {
        return;
    };
    if decl.role != Role::Api {
        return;
    }
    // What each name the code can write refers to: its dependencies' extern names.
    let externs: BTreeMap<&str, &str> = member
        .dependencies
        .iter()
        .map(|d| (d.extern_name.as_str(), d.name.as_str()))
        .collect();
    for file in &sources.files {
        let aliases: BTreeMap<&str, &str> = file
            .aliases
            .iter()
            .map(|(alias, root)| (alias.as_str(), root.as_str()))
            .collect();
        for reexport in &file.reexports {
            let root = aliases
                .get(reexport.root.as_str())
                .copied()
                .unwrap_or(reexport.root.as_str());
            let Some(target) = externs.get(root).and_then(|name| config.krate(name)) else {
                continue;
            };
            let Some(context) = target.context.as_deref() else {
                continue;
            };
            if decl.context.as_deref() == Some(context) {
                continue;
            }
            let diagnostic = Diagnostic::new(
                Rule::ApiReexport,
                format!(
                    "`{}` re-exports `{}` from context `{context}`",
                    member.name, reexport.path
                ),
            )
            .at(file.location(reexport.pos))
            .label(format!("re-export of `{}`", target.name))
            .note(format!(
                "{} is then part of `{}`'s contract: every crate using `{}` silently depends on context `{context}`",
                target.describe(),
                member.name,
                member.name
            ))
            .help(format!(
                "define the types `{}` needs in `{}` itself (or in the kernel if every context shares them) and convert in the implementation; importing privately (`use`) is fine",
                member.name, member.name
            ));
            out.push(Violation::new(&member.name, &reexport.path, diagnostic));
        }
    }
}
