//! The context map: Mermaid and dot output, and keeping a Markdown block up to date.

use archlint::graph::{self, Format};

use crate::support::{check, run_in};

#[test]
fn mermaid_of_a_clean_workspace() {
    insta::assert_snapshot!(graph::mermaid(&check("clean")));
}

#[test]
fn mermaid_shows_violations_in_red() {
    insta::assert_snapshot!(graph::mermaid(&check("context-cycle")));
}

#[test]
fn dot_shows_clusters_and_violations() {
    insta::assert_snapshot!(graph::dot(&check("context-cycle")));
}

#[test]
fn output_is_deterministic() {
    let first = graph::render(&check("clean"), Format::Mermaid);
    let second = graph::render(&check("clean"), Format::Mermaid);
    assert_eq!(first, second);
}

#[test]
fn write_and_check_a_markdown_block() {
    let dir = crate::support::copy_fixture("clean");
    let doc = dir.path().join("MAP.md");
    let original = "# Context map\n\nIntro.\n\n<!-- archlint:graph:start -->\nold\n<!-- archlint:graph:end -->\n\nOutro.\n";
    std::fs::write(&doc, original).unwrap();

    let stale = run_in(dir.path(), &["graph", "--check", "MAP.md"]);
    assert_eq!(stale.code, 1);
    assert_eq!(
        stale.stdout,
        "error: MAP.md is stale: run `cargo run -p archlint -- graph --write MAP.md`\n"
    );

    let write = run_in(
        dir.path(),
        &["graph", "--format", "mermaid", "--write", "MAP.md"],
    );
    assert_eq!(write.code, 0, "{write:?}");
    let written = std::fs::read_to_string(&doc).unwrap();
    assert!(written.starts_with(
        "# Context map\n\nIntro.\n\n<!-- archlint:graph:start -->\n```mermaid\n%% Generated"
    ));
    assert!(written.ends_with("```\n<!-- archlint:graph:end -->\n\nOutro.\n"));

    let fresh = run_in(dir.path(), &["graph", "--check", "MAP.md"]);
    assert_eq!(fresh.code, 0, "{fresh:?}");
    assert_eq!(fresh.stdout, "ok: MAP.md is up to date\n");
}

#[test]
fn writing_needs_the_markers() {
    let dir = crate::support::copy_fixture("clean");
    std::fs::write(dir.path().join("MAP.md"), "# No markers\n").unwrap();
    let output = run_in(dir.path(), &["graph", "--write", "MAP.md"]);
    assert_eq!(output.code, 2);
    assert!(
        output
            .stderr
            .contains("MAP.md cannot hold the graph: no line `<!-- archlint:graph:start -->`"),
        "{output:?}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("MAP.md")).unwrap(),
        "# No markers\n"
    );
}
