//! The binary on a scratch copy of the real `-api` crates, with the shop's own registry: exit
//! codes, finding the root, and that `write` refuses an incompatible change.

use std::path::Path;

use crate::support::{copy_dir, run_in, workspace_root};

/// A scratch repository holding the real `crates/*-api` sources and a workspace manifest.
fn real_api_crates() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary directory");
    let crates = workspace_root().join("crates");
    for entry in std::fs::read_dir(&crates).expect("crates/ is readable") {
        let entry = entry.expect("readable");
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with("-api") {
            let to = dir.path().join("crates").join(&name).join("src");
            copy_dir(&entry.path().join("src"), &to);
        }
    }
    std::fs::write(dir.path().join("Cargo.toml"), "[workspace]\n").expect("written");
    dir
}

fn run(root: &Path, args: &[&str]) -> crate::support::Output {
    let mut all = vec!["--root", root.to_str().expect("UTF-8 path")];
    all.extend(args);
    run_in(root, &all)
}

#[test]
fn check_write_check() {
    let repo = real_api_crates();
    let output = run(repo.path(), &["check"]);
    assert_eq!(output.code, 1, "{output:?}");
    assert!(
        output.stdout.contains("error[uncommitted-contract]"),
        "{output:?}"
    );
    assert!(!output.stdout.contains("unregistered"), "{output:?}");

    let output = run(repo.path(), &["write"]);
    assert_eq!(output.code, 0, "{output:?}");
    assert!(
        output
            .stdout
            .contains("wrote contracts/ports/orders.port.v1.json")
    );

    let output = run(repo.path(), &["check"]);
    assert_eq!(output.code, 0, "{output:?}");
    assert!(output.stdout.starts_with("ok: "), "{output:?}");
}

#[test]
fn an_incompatible_change_fails_check_and_write() {
    let repo = real_api_crates();
    assert_eq!(run(repo.path(), &["write"]).code, 0);
    // As if the committed contract knew a payment status the code no longer has.
    let file = repo.path().join("contracts/ports/payments.port.v1.json");
    let text = std::fs::read_to_string(&file).expect("written");
    let old = text.replacen("\"voided\"", "\"voided\",\n          \"disputed\"", 1);
    assert_ne!(old, text);
    std::fs::write(&file, &old).expect("written");

    let output = run(repo.path(), &["check"]);
    assert_eq!(output.code, 1, "{output:?}");
    assert!(output.stdout.contains("error[breaking-change]: `Payment.status` in `payments.port.v1`: enum value `disputed` removed"), "{}", output.stdout);
    assert!(
        output.stdout.contains("`payments.port.v2`"),
        "{}",
        output.stdout
    );

    let output = run(repo.path(), &["write"]);
    assert_eq!(output.code, 1, "{output:?}");
    assert!(
        output.stdout.contains("nothing was written"),
        "{}",
        output.stdout
    );
    assert_eq!(std::fs::read_to_string(&file).expect("kept"), old);
}

#[test]
fn the_root_is_the_enclosing_workspace() {
    let repo = real_api_crates();
    let output = run_in(&repo.path().join("crates/orders-api/src"), &["check"]);
    assert_eq!(output.code, 1, "{output:?}");
    assert!(
        output
            .stdout
            .contains("contracts/ports/orders.port.v1.json")
    );
}

#[test]
fn usage_and_io_errors_exit_with_2() {
    let repo = real_api_crates();
    let output = run(repo.path(), &["publish"]);
    assert_eq!(output.code, 2, "{output:?}");
    let output = run_in(repo.path(), &["--root", "/no/such/folder", "check"]);
    assert_eq!(output.code, 2, "{output:?}");
    assert!(output.stderr.contains("is not a directory"), "{output:?}");
    // A folder where a contract file should go.
    std::fs::create_dir_all(repo.path().join("contracts/ports/auth.port.v1.json"))
        .expect("created");
    let output = run(repo.path(), &["write"]);
    assert_eq!(output.code, 2, "{output:?}");
    assert!(
        output
            .stderr
            .contains("cannot write contracts/ports/auth.port.v1.json"),
        "{output:?}"
    );
}
