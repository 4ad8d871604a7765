//! The context graph (declared edges plus the edges the manifests actually create) and the
//! `context-cycle` rule: every strongly connected group of contexts is reported once, with one
//! full cycle through it, the crates and manifest lines behind each edge, and the edge to cut.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::config::{ArchConfig, Edge};
use crate::diagnostic::{Diagnostic, Location, Violation};
use crate::rules::Rule;
use crate::workspace::Workspace;

/// A dependency of a crate of one context on a crate of another.
#[derive(Debug, Clone)]
pub struct ActualDependency {
    pub from_crate: String,
    pub to_crate: String,
    /// "dependency", "dev-dependency", ...
    pub kind: String,
    pub location: Location,
}

/// Everything that connects one context to another.
#[derive(Debug, Clone)]
pub struct ContextEdge {
    pub from: String,
    pub to: String,
    pub declared: Option<Edge>,
    pub actual: Vec<ActualDependency>,
}

/// Contexts and the edges between them, declared or actual.
#[derive(Debug, Clone, Default)]
pub struct ContextGraph {
    pub edges: BTreeMap<(String, String), ContextEdge>,
}

impl ContextGraph {
    pub fn build(config: &ArchConfig, workspace: &Workspace) -> Self {
        let mut graph = Self::default();
        for edge in config.edges() {
            graph
                .entry(&edge.from, &edge.to)
                .declared
                .replace(edge.clone());
        }
        for member in &workspace.members {
            let Some(from) = config.krate(&member.name).and_then(|c| c.context.clone()) else {
                continue;
            };
            for dependency in &member.dependencies {
                let Some(to) = config
                    .krate(&dependency.name)
                    .and_then(|c| c.context.clone())
                else {
                    continue;
                };
                if to == from {
                    continue;
                }
                graph.entry(&from, &to).actual.push(ActualDependency {
                    from_crate: member.name.clone(),
                    to_crate: dependency.name.clone(),
                    kind: dependency.describe_kind(),
                    location: dependency.location.clone(),
                });
            }
        }
        graph
    }

    fn entry(&mut self, from: &str, to: &str) -> &mut ContextEdge {
        self.edges
            .entry((from.to_owned(), to.to_owned()))
            .or_insert_with(|| ContextEdge {
                from: from.to_owned(),
                to: to.to_owned(),
                declared: None,
                actual: Vec::new(),
            })
    }

    fn successors(
        &self,
        node: &str,
        within: &BTreeSet<String>,
        skip: Option<&(String, String)>,
    ) -> Vec<String> {
        self.edges
            .keys()
            .filter(|key| key.0 == node && within.contains(&key.1) && Some(*key) != skip)
            .map(|key| key.1.clone())
            .collect()
    }

    fn nodes(&self) -> BTreeSet<String> {
        self.edges
            .keys()
            .flat_map(|(a, b)| [a.clone(), b.clone()])
            .collect()
    }

    /// Strongly connected components with more than one context, each sorted, in a stable order.
    pub fn tangles(&self) -> Vec<BTreeSet<String>> {
        self.components(&self.nodes(), None)
            .into_iter()
            .filter(|c| c.len() > 1)
            .collect()
    }

    /// Tarjan's algorithm over `nodes`, ignoring the edge `skip`.
    fn components(
        &self,
        nodes: &BTreeSet<String>,
        skip: Option<&(String, String)>,
    ) -> Vec<BTreeSet<String>> {
        struct State {
            index: BTreeMap<String, usize>,
            low: BTreeMap<String, usize>,
            stack: Vec<String>,
            on_stack: BTreeSet<String>,
            out: Vec<BTreeSet<String>>,
        }
        fn visit(
            graph: &ContextGraph,
            nodes: &BTreeSet<String>,
            skip: Option<&(String, String)>,
            node: &str,
            state: &mut State,
        ) {
            let index = state.index.len();
            state.index.insert(node.to_owned(), index);
            state.low.insert(node.to_owned(), index);
            state.stack.push(node.to_owned());
            state.on_stack.insert(node.to_owned());
            for next in graph.successors(node, nodes, skip) {
                if !state.index.contains_key(&next) {
                    visit(graph, nodes, skip, &next, state);
                    let low = state.low[node].min(state.low[&next]);
                    state.low.insert(node.to_owned(), low);
                } else if state.on_stack.contains(&next) {
                    let low = state.low[node].min(state.index[&next]);
                    state.low.insert(node.to_owned(), low);
                }
            }
            if state.low[node] == state.index[node] {
                let mut component = BTreeSet::new();
                while let Some(top) = state.stack.pop() {
                    state.on_stack.remove(&top);
                    let done = top == node;
                    component.insert(top);
                    if done {
                        break;
                    }
                }
                state.out.push(component);
            }
        }
        let mut state = State {
            index: BTreeMap::new(),
            low: BTreeMap::new(),
            stack: Vec::new(),
            on_stack: BTreeSet::new(),
            out: Vec::new(),
        };
        for node in nodes {
            if !state.index.contains_key(node) {
                visit(self, nodes, skip, node, &mut state);
            }
        }
        state.out.sort();
        state.out
    }

    /// The shortest cycle through the first node of `tangle`, as a closed path `[a, .., a]`.
    fn shortest_cycle(&self, tangle: &BTreeSet<String>) -> Vec<String> {
        let start = tangle.first().cloned().unwrap_or_default();
        let mut previous: BTreeMap<String, String> = BTreeMap::new();
        let mut queue = VecDeque::from([start.clone()]);
        while let Some(node) = queue.pop_front() {
            for next in self.successors(&node, tangle, None) {
                if next == start {
                    let mut path = vec![start.clone(), node.clone()];
                    let mut cursor = node.clone();
                    while let Some(p) = previous.get(&cursor) {
                        path.push(p.clone());
                        cursor = p.clone();
                    }
                    path.push(start.clone());
                    path.dedup();
                    path.reverse();
                    return path;
                }
                if next != start && !previous.contains_key(&next) {
                    previous.insert(next.clone(), node.clone());
                    queue.push_back(next);
                }
            }
        }
        vec![start]
    }
}

/// Reports one `context-cycle` per tangle of contexts.
pub fn check(graph: &ContextGraph, config: &ArchConfig, out: &mut Vec<Violation>) {
    for tangle in graph.tangles() {
        let cycle = graph.shortest_cycle(&tangle);
        let edges: Vec<&ContextEdge> = cycle
            .windows(2)
            .filter_map(|w| graph.edges.get(&(w[0].clone(), w[1].clone())))
            .collect();
        let Some(cut) = edges
            .iter()
            .min_by_key(|edge| {
                let key = (edge.from.clone(), edge.to.clone());
                // Prefer an edge whose removal untangles the whole group, then one no crate
                // uses yet (free to drop), then the one with the fewest dependencies to replace,
                // then an undeclared one (nobody decided on it).
                let untangles = graph
                    .components(&tangle, Some(&key))
                    .iter()
                    .all(|c| c.len() == 1);
                (!untangles, edge.actual.len(), edge.declared.is_some(), key)
            })
            .copied()
        else {
            continue;
        };
        out.push(violation(&cycle, &edges, cut, &tangle, config));
    }
}

fn violation(
    cycle: &[String],
    edges: &[&ContextEdge],
    cut: &ContextEdge,
    tangle: &BTreeSet<String>,
    config: &ArchConfig,
) -> Violation {
    let path = cycle.join(" -> ");
    let location = match (cut.actual.first(), &cut.declared) {
        (Some(actual), _) => actual.location.clone(),
        (None, Some(declared)) => config.location(declared.span.clone()),
        (None, None) => Location::from_line_column(crate::config::FILE_NAME, &config.text, 1, 1, 1),
    };
    let mut diagnostic = Diagnostic::new(
        Rule::ContextCycle,
        format!("contexts depend on each other in a cycle: {path}"),
    )
    .at(location)
    .label(format!("cut {} -> {} here", cut.from, cut.to));
    for edge in edges {
        diagnostic = diagnostic.note(describe_edge(edge, config));
    }
    if tangle.len() + 1 > cycle.len() {
        let names: Vec<&str> = tangle.iter().map(String::as_str).collect();
        diagnostic = diagnostic.note(format!(
            "these contexts are all tangled together: {}",
            names.join(", ")
        ));
    }
    let (from, to) = (&cut.from, &cut.to);
    let help = if cut.actual.is_empty() {
        format!(
            "cut {from} -> {to}: no crate uses it yet, so remove its `[[edges]]` entry from arch.toml; if a synchronous call from `{from}` into `{to}` is planned, use an integration event instead (`{from}` publishes, `{to}` subscribes)"
        )
    } else {
        let crates: BTreeSet<String> = cut
            .actual
            .iter()
            .map(|a| format!("`{}` on `{}`", a.from_crate, a.to_crate))
            .collect();
        let declared = if cut.declared.is_some() {
            " and its `[[edges]]` entry from arch.toml"
        } else {
            ""
        };
        format!(
            "cut {from} -> {to}: replace the synchronous call with an integration event (`{from}` publishes, `{to}` subscribes), then remove the dependency of {}{declared}",
            crates.into_iter().collect::<Vec<_>>().join(", ")
        )
    };
    let key = path.clone();
    Violation::new(from, key, diagnostic.help(help))
}

fn describe_edge(edge: &ContextEdge, config: &ArchConfig) -> String {
    let mut parts = Vec::new();
    match &edge.declared {
        Some(declared) => {
            let location = config.location(declared.span.clone());
            let line = location.line_column().map_or(0, |(line, _)| line);
            parts.push(format!(
                "declared at {}:{line} (reason: \"{}\")",
                crate::config::FILE_NAME,
                declared.reason
            ));
        }
        None => parts.push("not declared in arch.toml".to_owned()),
    }
    for actual in &edge.actual {
        let line = actual.location.line_column().map_or(0, |(line, _)| line);
        parts.push(format!(
            "`{}` -> `{}` ({}, {}:{line})",
            actual.from_crate, actual.to_crate, actual.kind, actual.location.file
        ));
    }
    format!("{} -> {}: {}", edge.from, edge.to, parts.join("; "))
}
