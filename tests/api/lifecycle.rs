use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::helpers::{Options, spawn_app_with};

const SECRET: &str = "a-test-secret-that-is-long-enough-0123456789";

fn seeds(redirect: &str, name: &str) -> Options {
    Options {
        extra_toml: format!(
            r#"
[[clients]]
id = "seeded"
secret = "{SECRET}"
redirect_uris = ["{redirect}"]
post_logout_redirect_uris = ["https://app.example/bye"]

[[clients]]
id = "seeded-public"
token_endpoint_auth_method = "none"
redirect_uris = ["http://localhost:3000/cb"]

[[users]]
username = "alice"
email = "Alice@Example.com"
password = "correct horse battery staple"
name = "{name}"
roles = ["admin"]
"#
        ),
        ..Options::default()
    }
}

#[tokio::test]
async fn config_clients_and_users_are_upserted_at_every_start() {
    let app = spawn_app_with(seeds("https://app.example/cb", "Alice Example")).await;
    let client = app.store.get_client("seeded").await.unwrap().unwrap();
    assert_eq!(
        client.secret_hash.as_deref(),
        Some(&Sha256::digest(SECRET)[..])
    );
    assert_eq!(client.token_endpoint_auth_method, "client_secret_basic");
    assert_eq!(client.redirect_uris, vec!["https://app.example/cb"]);
    assert_eq!(
        client.post_logout_redirect_uris,
        vec!["https://app.example/bye"]
    );
    assert_eq!(
        client.grant_types,
        vec!["authorization_code", "refresh_token"]
    );
    let public = app
        .store
        .get_client("seeded-public")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(public.token_endpoint_auth_method, "none");
    assert!(public.secret_hash.is_none());

    let alice = app
        .store
        .find_user_by_username("alice")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(alice.email, "alice@example.com");
    assert!(alice.email_verified, "seeded users count as verified");
    assert_eq!(alice.roles, vec!["admin", "user"]);
    assert_eq!(alice.name.as_deref(), Some("Alice Example"));
    let hash = alice.password_hash.clone().unwrap();
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );

    // A changed config updates in place: same sub, same hash (the password still
    // matches), new redirect URI and name, no duplicates.
    let app = app
        .restart_with(seeds("https://app.example/callback", "Alice E."))
        .await;
    let client = app.store.get_client("seeded").await.unwrap().unwrap();
    assert_eq!(client.redirect_uris, vec!["https://app.example/callback"]);
    let again = app
        .store
        .find_user_by_username("alice")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.id, alice.id);
    assert_eq!(again.password_hash.as_deref(), Some(hash.as_str()));
    assert_eq!(again.name.as_deref(), Some("Alice E."));
    assert_eq!(app.store.list_users().await.unwrap().len(), 1);
    assert_eq!(app.store.list_clients().await.unwrap().len(), 2);
}

/// The real binary: JSON logs with a request id per request; SIGTERM stops it cleanly
/// (exit 0) and promptly.
#[tokio::test]
async fn the_binary_serves_logs_json_and_stops_gracefully_on_sigterm() {
    let app = spawn_app_with(Options {
        extra_toml: "[log]\nformat = \"json\"\nlevel = \"info\"\n".into(),
        ..Options::default()
    })
    .await;
    let mut app = app;
    app.stop().await;
    let config = app.config_path();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_oxidp"))
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut up = false;
    while started.elapsed() < Duration::from_secs(20) {
        if let Ok(r) = reqwest::get(app.url("/healthz")).await
            && r.status() == 200
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "the binary did not come up");
    let discovery = app.get_json("/.well-known/openid-configuration").await;
    assert_eq!(discovery["issuer"], app.issuer.as_str());

    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let stopping = Instant::now();
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            stopping.elapsed() < Duration::from_secs(10),
            "did not stop after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "exit status {exit:?}");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not a JSON log line: {l}")))
        .collect();
    let request_line = lines
        .iter()
        .find(|l| l["span"]["path"] == "/.well-known/openid-configuration")
        .unwrap_or_else(|| panic!("no log line for the discovery request: {stderr}"));
    assert!(
        request_line["span"]["request_id"]
            .as_str()
            .is_some_and(|id| id.len() == 36),
        "{request_line}"
    );
    assert!(
        reqwest::get(app.url("/healthz")).await.is_err(),
        "still accepting after exit"
    );
}

#[tokio::test]
async fn a_taken_port_stops_start_up_before_touching_the_database() {
    let mut app = spawn_app_with(Options::default()).await;
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    app.stop().await;
    let config = app.config_toml.replace(
        &format!("bind = \"127.0.0.1:{}\"", app.port),
        &format!("bind = \"127.0.0.1:{port}\""),
    );
    let path = app.dir.path().join("busy.toml");
    std::fs::write(&path, config).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        crate::helpers::run_binary(Some(&path), &["serve".to_string()], None, &[])
    })
    .await
    .unwrap();
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("127.0.0.1:{port}")),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    drop(busy);
}

/// Input is checked before the database is opened: on a fresh directory a rejected
/// command leaves no database, no key and no outbox behind.
#[tokio::test]
async fn rejected_cli_input_on_a_fresh_install_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"sqlite://{0}/data/oxidp.db\"\n[keys]\ndir = \"{0}/keys\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    for args in [
        vec![
            "client",
            "add",
            "--id",
            "a b",
            "--redirect-uri",
            "https://a.example/cb",
        ],
        vec![
            "client",
            "add",
            "--id",
            "ok",
            "--redirect-uri",
            "http://a.example/cb",
        ],
        vec!["user", "add", "--username", "x", "--email", "x@example.com"],
        vec![
            "user",
            "add",
            "--username",
            "bob",
            "--email",
            "not-an-address",
        ],
    ] {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let path = config.clone();
        let out = tokio::task::spawn_blocking(move || {
            crate::helpers::run_binary(Some(&path), &args, None, &[])
        })
        .await
        .unwrap();
        assert_eq!(out.code(), 1, "{}", out.stderr);
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            left,
            vec![std::ffi::OsString::from("config.toml")],
            "{}",
            out.stderr
        );
    }
}
