//! The `shop` binary as its user runs it: a fresh data directory, `shop admin create`,
//! `shop serve`, then SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

const SHOP: &str = env!("CARGO_BIN_EXE_shop");

fn shop(data_dir: &std::path::Path) -> Command {
    let mut command = Command::new(SHOP);
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("SHOP__DATA_DIR", data_dir)
        .env("SHOP__SERVER__PORT", "0")
        .env("SHOP__SERVER__WORKERS", "1")
        .env("SHOP__LOG__FORMAT", "json");
    command
}

/// Reads the server's JSON log lines until the "listening" line and returns its address.
/// Log lines keep arriving on the channel afterwards.
fn wait_until_listening(child: &mut Child) -> (String, mpsc::Receiver<Value>) {
    let stdout = child.stdout.take().expect("piped stdout");
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(value) = serde_json::from_str::<Value>(&line) {
                let _ = lines.send(value);
            }
        }
    });
    loop {
        let line = received
            .recv_timeout(Duration::from_secs(60))
            .expect("the shop logs that it listens");
        if line["fields"]["message"] == "listening" {
            let address = line["fields"]["address"]
                .as_str()
                .expect("address")
                .to_owned();
            return (address, received);
        }
    }
}

#[tokio::test]
async fn a_new_user_creates_an_admin_then_serves_the_demo_shop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");

    let created = shop(&data)
        .args([
            "admin",
            "create",
            "--email",
            "boss@example.com",
            "--display-name",
            "Boss",
        ])
        .env("SHOP_ADMIN_PASSWORD", "boss password")
        .output()
        .expect("run shop admin create");
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    assert!(data.join("auth.db").exists() && data.join("catalog.db").exists());
    assert!(
        data.join("jwt-dev-key").exists(),
        "a development key is kept with the data"
    );

    let duplicate = shop(&data)
        .args([
            "admin",
            "create",
            "--email",
            "boss@example.com",
            "--password",
            "other password",
        ])
        .output()
        .expect("run shop admin create");
    assert!(!duplicate.status.success());
    assert!(String::from_utf8_lossy(&duplicate.stderr).contains("already exists"));

    let mut server = shop(&data)
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start shop serve");
    let (address, logs) = wait_until_listening(&mut server);
    let client = reqwest::Client::new();

    let login: Value = client
        .post(format!("{address}/api/auth/login"))
        .json(&json!({"email": "boss@example.com", "password": "boss password"}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("json");
    let token = login["access_token"].as_str().expect("the admin logs in");
    let me: Value = client
        .get(format!("{address}/api/auth/me"))
        .bearer_auth(token)
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("json");
    assert_eq!(me["role"], "admin");

    let products: Value = client
        .get(format!("{address}/api/catalog/products"))
        .send()
        .await
        .expect("browse")
        .json()
        .await
        .expect("json");
    assert!(products["total"].as_u64() >= Some(20), "{products}");

    // Request logs carry the request id.
    let answered = client
        .get(format!("{address}/healthz"))
        .header("X-Request-Id", "cli-test-1")
        .send()
        .await
        .expect("health");
    assert_eq!(answered.headers()["x-request-id"], "cli-test-1");
    let logged =
        std::iter::from_fn(|| logs.recv_timeout(Duration::from_secs(10)).ok()).find(|line| {
            line["fields"]["message"] == "request completed"
                && line["span"]["request_id"] == "cli-test-1"
        });
    assert!(logged.is_some(), "the request's log line carries its id");

    // Graceful shutdown on SIGTERM.
    let pid = server.id().to_string();
    let killed = Command::new("sh")
        .args(["-c", &format!("kill -TERM {pid}")])
        .status()
        .expect("send SIGTERM");
    assert!(killed.success());
    let status = server.wait().expect("the shop exits");
    assert!(status.success(), "{status:?}");
    let shut_down = std::iter::from_fn(|| logs.recv_timeout(Duration::from_secs(10)).ok())
        .any(|line| line["fields"]["message"] == "shut down");
    assert!(shut_down, "the shop says it shut down");
}

#[test]
fn bad_configuration_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = shop(&dir.path().join("data"))
        .arg("migrate")
        .env("SHOP__AUTH__JWT_SECRET", "short")
        .output()
        .expect("run shop");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("auth.jwt_secret must be at least 32 bytes"),
        "{stderr}"
    );
}

#[test]
fn a_postgres_store_without_a_signing_key_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Refused before any connection is tried: nothing listens on port 1.
    let output = shop(&dir.path().join("data"))
        .arg("serve")
        .env("SHOP__DATABASE__URL", "postgres://shop@127.0.0.1:1/shop")
        .output()
        .expect("run shop");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("auth.jwt_secret must be set when database.url is a Postgres URL"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("data").join("jwt-dev-key").exists(),
        "no development key for a shared store"
    );
}

#[test]
fn placements_that_cannot_work_are_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = "a-service-token-of-at-least-32-bytes!";
    for (contexts, env, expected) in [
        (
            "notifications",
            vec![("SHOP__PLACEMENT__AUTH_URL", "http://127.0.0.1:9")],
            "notifications cannot run without auth in the same process",
        ),
        (
            "auth,orders,notifications",
            vec![("SHOP__PLACEMENT__CATALOG_URL", "http://127.0.0.1:9")],
            "payments is not in this process and has no URL, but orders calls it",
        ),
        (
            "payments",
            vec![
                ("SHOP__PLACEMENT__AUTH_URL", "http://127.0.0.1:9"),
                ("SHOP__PLACEMENT__PAYMENTS_URL", "http://127.0.0.1:9"),
            ],
            "payments runs in this process and also has placement.payments_url",
        ),
        ("warehouse", vec![], "unknown context \"warehouse\""),
    ] {
        let output = shop(&dir.path().join("data"))
            .args(["serve", "--contexts", contexts])
            .env("SHOP__INTERNAL__TOKEN", token)
            .envs(env)
            .output()
            .expect("run shop");
        assert_eq!(output.status.code(), Some(2), "{contexts}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{contexts}: {stderr}");
    }
    // A split deployment needs the service credential.
    let output = shop(&dir.path().join("data"))
        .args(["serve", "--contexts", "payments"])
        .env("SHOP__PLACEMENT__AUTH_URL", "http://127.0.0.1:9")
        .output()
        .expect("run shop");
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("internal.token must be at least 32 bytes")
    );
}
