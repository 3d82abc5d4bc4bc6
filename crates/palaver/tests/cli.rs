//! The `palaver` binary as a user runs it: generated credentials, API keys, tokens, graceful stop.
// Servers are reaped by `stop` or killed and waited for at the end of each test.
#![allow(clippy::zombie_processes)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_palaver");

struct Served {
    child: Child,
    url: String,
    output: Vec<String>,
}

fn serve(data_dir: &Path) -> Served {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env_remove("PALAVER_ACCOUNT_SID")
        .env_remove("PALAVER_AUTH_TOKEN")
        .env("PALAVER_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start palaver serve");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut output = Vec::new();
    loop {
        let line = lines.next().expect("the server prints its address").unwrap();
        output.push(line.clone());
        if let Some(url) = line.split("listening on ").nth(1) {
            return Served { child, url: url.trim().to_string(), output };
        }
    }
}

fn stop(mut served: Served) -> std::process::ExitStatus {
    Command::new("kill").args(["-TERM", &served.child.id().to_string()]).status().unwrap();
    for _ in 0..100 {
        if let Some(status) = served.child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    served.child.kill().unwrap();
    panic!("the server did not stop on SIGTERM");
}

fn palaver(args: &[&str], data_dir: &Path) -> String {
    let out = Command::new(BIN).args(args).arg("--data-dir").arg(data_dir).env("PALAVER_LOG", "warn").output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn value_after<'a>(text: &'a str, label: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {label} in {text}"))
}

#[tokio::test]
async fn first_start_generates_credentials_that_survive_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(dir.path());
    let printed = served.output.join("\n");
    let account = value_after(&printed, "account SID:").to_string();
    let token = value_after(&printed, "auth token:").to_string();
    assert!(account.starts_with("AC"));
    let http = reqwest::Client::new();
    let created: serde_json::Value = http
        .post(format!("{}/v1/Conversations", served.url))
        .basic_auth(&account, Some(&token))
        .form(&[("FriendlyName", "kept")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sid = created["sid"].as_str().unwrap().to_string();
    assert!(stop(served).success(), "a graceful stop exits 0");

    // Second start: no credentials printed, the same ones work, the data is there.
    let served = serve(dir.path());
    assert!(!served.output.join("\n").contains("auth token:"));
    let fetched = http
        .get(format!("{}/v1/Conversations/{sid}", served.url))
        .basic_auth(&account, Some(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(fetched.status(), 200);

    // API keys are REST credentials too.
    let created = palaver(&["keys", "create", "--name", "ci"], dir.path());
    let (key, secret) = (value_after(&created, "sid:"), value_after(&created, "secret:"));
    let listed = palaver(&["keys", "list"], dir.path());
    assert!(listed.contains(key));
    let with_key =
        http.get(format!("{}/v1/Conversations", served.url)).basic_auth(key, Some(secret)).send().await.unwrap();
    assert_eq!(with_key.status(), 200);
    palaver(&["keys", "delete", key], dir.path());
    let revoked =
        http.get(format!("{}/v1/Conversations", served.url)).basic_auth(key, Some(secret)).send().await.unwrap();
    assert_eq!(revoked.status(), 401);

    // A minted token is a three-part JWT in Twilio's format.
    let jwt = palaver(&["token", "--identity", "alice"], dir.path());
    let parts: Vec<&str> = jwt.trim().split('.').collect();
    assert_eq!(parts.len(), 3);
    assert!(stop(served).success());
}

#[test]
fn a_config_file_sets_what_flags_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("palaver.toml");
    std::fs::write(&config, "account_sid = \"AC0123456789abcdef0123456789abcdef\"\nauth_token = \"from-the-file\"\n")
        .unwrap();
    let data = dir.path().join("data");
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .env_remove("PALAVER_ACCOUNT_SID")
        .env_remove("PALAVER_AUTH_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("listening on"), "configured credentials are not regenerated: {first}");
    assert!(!data.join("credentials.toml").exists());
    child.kill().unwrap();
    child.wait().unwrap();

    std::fs::write(&config, "unknown_key = 1\n").unwrap();
    let out = Command::new(BIN).args(["serve", "--config"]).arg(&config).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Limits come from flags, the environment or a `[limits]` table; nonsense is refused before serving.
#[test]
fn limits_are_configured_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("palaver.toml");
    let serve = |extra: &[&str]| {
        Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .arg("--config")
            .arg(&config)
            .args(extra)
            .env_remove("PALAVER_CONVERSATION_RATE")
            .env("PALAVER_ACCOUNT_SID", "AC0123456789abcdef0123456789abcdef")
            .env("PALAVER_AUTH_TOKEN", "0123456789abcdef")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    std::fs::write(&config, "[limits]\nconversation_rate = 0\nmax_body_bytes = 65536\nrequest_timeout = 5\n").unwrap();
    let mut child = serve(&["--connection-rate", "50"]);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("listening on"), "{first}");
    child.kill().unwrap();
    child.wait().unwrap();
    for (file, flags, complaint) in [
        ("[limits]\nconversation_rate = -1\n", &[][..], "conversation-rate"),
        ("", &["--max-header-bytes", "100"][..], "max-header-bytes"),
        ("", &["--request-timeout", "0"][..], "request-timeout"),
        ("[limits]\nnot_a_limit = 1\n", &[][..], "unknown"),
    ] {
        std::fs::write(&config, file).unwrap();
        let out = serve(flags).wait_with_output().unwrap();
        assert!(!out.status.success(), "{file} {flags:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(complaint), "{file} {flags:?}: {stderr}");
    }
}

/// The benchmark runs end to end on tiny workloads and prints a parsable JSON line (figures are not asserted:
/// speed belongs to `docs/performance.md`, not to tests).
#[test]
fn bench_scenarios_run_and_report() {
    for args in [
        &["bench", "ingest", "--messages", "40", "--senders", "2", "--conversations", "1", "--window", "2"][..],
        &["bench", "fanout", "--listeners", "3", "--rate", "20", "--seconds", "1"][..],
        &["bench", "connections", "--listeners", "5"][..],
        &["bench", "history", "--messages", "70"][..],
        &["bench", "rest", "--messages", "20", "--senders", "2"][..],
        &["bench", "unread", "--messages", "30", "--seconds", "1", "--senders", "1", "--window", "1"][..],
    ] {
        let out = Command::new(BIN).args(args).env("PALAVER_LOG", "error").output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8(out.stdout).unwrap();
        let json: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        assert_eq!(json["scenario"], args[1], "{stdout}");
        assert!(json["server_rss_mib"].as_f64().unwrap() > 0.0, "{stdout}");
        // Stopping the server after the run is expected: no connection reports it as a failure.
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("connection failed") && !stderr.contains("closed by the server"), "{stderr}");
        match args[1] {
            "fanout" => assert_eq!(json["delivered_fraction"], 1.0, "every send reaches every listener: {stdout}"),
            "history" => {
                assert!(json["pages_backwards"].as_f64().unwrap() > 0.0, "{stdout}");
                assert!(json["pages_forward"].as_f64().unwrap() > 0.0, "{stdout}");
            }
            _ => {}
        }
    }
    let out = Command::new(BIN).args(["bench", "nonsense"]).output().unwrap();
    assert!(!out.status.success());
}
