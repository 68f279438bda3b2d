//! The admin CLI, run as the real binary against a spawned app's config; the database is
//! inspected through the app's `Store`.

use sha2::{Digest, Sha256};

use crate::helpers::{CLIENT, CliOutput, TestApp, spawn_app, spawn_flow_app};

/// Asserts the command succeeded and returns its stdout.
fn ok(out: CliOutput, what: &str) -> String {
    assert_eq!(
        out.code(),
        0,
        "{what}: exit {}, stdout {:?}, stderr {:?}",
        out.code(),
        out.stdout,
        out.stderr
    );
    out.stdout
}

/// The value after `label` on the stdout line that starts with it.
fn field<'a>(stdout: &'a str, label: &str) -> Option<&'a str> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(label))
        .map(str::trim)
}

async fn run(app: &TestApp, args: &[&str]) -> String {
    ok(app.cli(args).await, &args.join(" "))
}

#[tokio::test]
async fn confidential_client_gets_a_secret_once_and_only_its_hash_is_stored() {
    let app = spawn_app().await;

    let stdout = run(
        &app,
        &[
            "client",
            "add",
            "--id",
            "web",
            "--redirect-uri",
            "https://app.example/cb",
        ],
    )
    .await;
    assert_eq!(field(&stdout, "client_id:"), Some("web"), "{stdout}");
    let secret = field(&stdout, "client_secret:")
        .unwrap_or_else(|| panic!("no secret printed: {stdout}"))
        .to_string();
    assert!(secret.len() >= 43, "secret too short: {secret}");
    assert!(
        secret
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "secret is not URL-safe: {secret}"
    );

    let stored = app.store.get_client("web").await.unwrap().expect("stored");
    assert_eq!(
        stored.secret_hash.as_deref(),
        Some(Sha256::digest(secret.as_bytes()).as_slice())
    );
    assert!(
        !format!("{stored:?}").contains(&secret),
        "the secret itself is stored: {stored:?}"
    );
    assert_ne!(stored.token_endpoint_auth_method, "none");
    assert_eq!(stored.grant_types, ["authorization_code", "refresh_token"]);
    assert_eq!(stored.redirect_uris, ["https://app.example/cb"]);
    assert!(!stored.first_party);

    // A second confidential client gets a different secret.
    let other = run(
        &app,
        &[
            "client",
            "add",
            "--id",
            "svc",
            "--grant-type",
            "client_credentials",
        ],
    )
    .await;
    let other_secret = field(&other, "client_secret:").expect("second secret");
    assert_ne!(other_secret, secret);

    let list = run(&app, &["client", "list"]).await;
    let ids: Vec<&str> = list
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(ids, ["svc", "web"], "{list}");

    let show = run(&app, &["client", "show", "web"]).await;
    assert!(show.contains("https://app.example/cb"), "{show}");
    assert!(!show.contains(&secret), "show prints the secret: {show}");
    assert!(!show.contains("secret:"), "show mentions a secret: {show}");
    assert!(!list.contains(&secret), "list prints the secret: {list}");

    run(&app, &["client", "remove", "web"]).await;
    assert!(app.store.get_client("web").await.unwrap().is_none());
    let ids: Vec<String> = app
        .store
        .list_clients()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, ["svc"]);
}

#[tokio::test]
async fn client_add_stores_public_service_and_fully_specified_clients() {
    let app = spawn_app().await;

    // Public: no secret printed or stored.
    let stdout = run(
        &app,
        &[
            "client",
            "add",
            "--id",
            "spa",
            "--public",
            "--redirect-uri",
            "http://localhost:3000/cb",
        ],
    )
    .await;
    assert_eq!(field(&stdout, "client_id:"), Some("spa"), "{stdout}");
    assert!(!stdout.contains("secret"), "{stdout}");
    let spa = app.store.get_client("spa").await.unwrap().expect("spa");
    assert_eq!(spa.token_endpoint_auth_method, "none");
    assert_eq!(spa.secret_hash, None);
    assert_eq!(spa.grant_types, ["authorization_code", "refresh_token"]);
    assert_eq!(spa.redirect_uris, ["http://localhost:3000/cb"]);

    // A service client needs no redirect URI.
    let stdout = run(
        &app,
        &[
            "client",
            "add",
            "--id",
            "svc",
            "--grant-type",
            "client_credentials",
        ],
    )
    .await;
    assert!(field(&stdout, "client_secret:").is_some(), "{stdout}");
    let svc = app.store.get_client("svc").await.unwrap().expect("svc");
    assert_eq!(svc.grant_types, ["client_credentials"]);
    assert!(svc.redirect_uris.is_empty());
    assert!(svc.secret_hash.is_some());

    // Every option: `code` is authorization_code, URIs keep their order.
    run(
        &app,
        &[
            "client",
            "add",
            "--id",
            "full",
            "--name",
            "Full App",
            "--first-party",
            "--grant-type",
            "code",
            "--grant-type",
            "refresh_token",
            "--grant-type",
            "password",
            "--redirect-uri",
            "https://z.example/cb",
            "--redirect-uri",
            "https://a.example/cb",
            "--redirect-uri",
            "http://127.0.0.1:8080/cb",
            "--post-logout-redirect-uri",
            "https://z.example/bye",
            "--post-logout-redirect-uri",
            "https://a.example/bye",
            "--backchannel-logout-uri",
            "https://a.example/backchannel",
        ],
    )
    .await;
    let full = app.store.get_client("full").await.unwrap().expect("full");
    assert_eq!(
        full.backchannel_logout_uri.as_deref(),
        Some("https://a.example/backchannel")
    );
    assert_eq!(full.name.as_deref(), Some("Full App"));
    assert!(full.first_party);
    assert_eq!(
        full.grant_types,
        ["authorization_code", "refresh_token", "password"]
    );
    assert_eq!(
        full.redirect_uris,
        [
            "https://z.example/cb",
            "https://a.example/cb",
            "http://127.0.0.1:8080/cb"
        ]
    );
    assert_eq!(
        full.post_logout_redirect_uris,
        ["https://z.example/bye", "https://a.example/bye"]
    );
    let show = run(&app, &["client", "show", "full"]).await;
    assert!(
        show.contains("backchannel_logout_uri: https://a.example/backchannel"),
        "{show}"
    );
    assert!(
        show.contains("https://z.example/cb https://a.example/cb http://127.0.0.1:8080/cb"),
        "{show}"
    );
}

#[tokio::test]
async fn user_commands_create_list_change_password_and_toggle_disabled() {
    let app = spawn_app().await;

    let stdout = ok(
        app.cli_with_stdin(
            &[
                "user",
                "add",
                "--username",
                "bob",
                "--email",
                "Bob@Example.com",
                "--password-stdin",
            ],
            Some("correct horse battery staple\n"),
        )
        .await,
        "user add bob",
    );
    assert!(stdout.contains("bob"), "{stdout}");
    let bob = app
        .store
        .find_user_by_username("bob")
        .await
        .unwrap()
        .expect("bob stored");
    assert_eq!(bob.email, "bob@example.com");
    let hash = bob.password_hash.clone().expect("password hash");
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    assert_eq!(bob.roles, ["user"]);
    assert!(!bob.disabled);
    assert_ne!(bob.id, "bob");
    assert!(!bob.id.to_lowercase().contains("bob"), "sub {}", bob.id);
    assert!(!bob.id.contains("example"), "sub {}", bob.id);

    // No password: cheap, and the user simply has none yet.
    run(
        &app,
        &[
            "user",
            "add",
            "--username",
            "alice",
            "--email",
            "alice@example.com",
            "--role",
            "admin",
        ],
    )
    .await;
    let alice = app
        .store
        .find_user_by_username("alice")
        .await
        .unwrap()
        .expect("alice stored");
    assert!(
        alice.roles.contains(&"user".to_string()),
        "{:?}",
        alice.roles
    );
    assert!(
        alice.roles.contains(&"admin".to_string()),
        "{:?}",
        alice.roles
    );
    assert_eq!(alice.password_hash, None);
    assert_ne!(alice.id, bob.id);

    let list = run(&app, &["user", "list"]).await;
    for needle in ["bob", "bob@example.com", "alice", bob.id.as_str()] {
        assert!(list.contains(needle), "{needle} missing from {list}");
    }
    assert!(!list.contains(&hash), "user list prints the hash: {list}");

    ok(
        app.cli_with_stdin(
            &["user", "set-password", "bob", "--password-stdin"],
            Some("another long passphrase\n"),
        )
        .await,
        "set-password",
    );
    let bob2 = app
        .store
        .find_user_by_username("bob")
        .await
        .unwrap()
        .unwrap();
    let new_hash = bob2.password_hash.expect("hash");
    assert_ne!(new_hash, hash);
    assert!(new_hash.starts_with("$argon2id$"), "{new_hash}");
    assert_eq!(bob2.id, bob.id, "sub is stable");

    run(&app, &["user", "disable", "bob"]).await;
    assert!(
        app.store
            .find_user_by_username("bob")
            .await
            .unwrap()
            .unwrap()
            .disabled
    );
    run(&app, &["user", "enable", "bob"]).await;
    assert!(
        !app.store
            .find_user_by_username("bob")
            .await
            .unwrap()
            .unwrap()
            .disabled
    );
}

#[tokio::test]
async fn keys_list_shows_the_one_active_key() {
    let app = spawn_app().await;
    let keys = app.store.list_keys().await.unwrap();
    assert_eq!(keys.len(), 1);
    let list = run(&app, &["keys", "list"]).await;
    let rows: Vec<&str> = list.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{list}");
    let cols: Vec<&str> = rows[0].split_whitespace().collect();
    assert_eq!(cols[0], keys[0].kid, "{list}");
    assert_eq!(cols[1], "active", "{list}");
}

#[tokio::test]
async fn client_remove_refuses_a_client_declared_in_the_config() {
    let app = spawn_flow_app().await;
    let before = app.snapshot().await;

    let out = app.cli(&["client", "remove", CLIENT]).await;

    assert_eq!(
        out.code(),
        1,
        "stdout {:?}, stderr {:?}",
        out.stdout,
        out.stderr
    );
    let stderr = out.stderr.trim_end();
    assert_eq!(stderr.lines().count(), 1, "one stderr line: {stderr:?}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains("[[clients]]"),
        "stderr names the rule: {stderr:?}"
    );
    let client = app.store.get_client(CLIENT).await.unwrap();
    assert_eq!(client.map(|c| c.source), Some("config".to_string()));
    assert_eq!(app.snapshot().await, before, "the database changed");
}

/// What a bad command must produce.
enum Want {
    /// Exit 1 and one stderr line that contains this text.
    Error(&'static str),
    /// A clap usage error: non-zero exit, something on stderr.
    Usage,
}

#[tokio::test]
async fn bad_cli_input_prints_one_line_exits_non_zero_and_changes_nothing() {
    let app = spawn_app().await;
    run(
        &app,
        &[
            "client",
            "add",
            "--id",
            "web",
            "--redirect-uri",
            "https://app.example/cb",
        ],
    )
    .await;
    run(
        &app,
        &[
            "user",
            "add",
            "--username",
            "bob",
            "--email",
            "bob@example.com",
        ],
    )
    .await;
    let active_kid = app.store.list_keys().await.unwrap()[0].kid.clone();
    let before = app.snapshot().await;

    let pw = Some("correct horse battery staple\n");
    let add_client = |extra: &[&'static str]| -> Vec<&'static str> {
        let mut args = vec!["client", "add"];
        args.extend_from_slice(extra);
        args
    };
    let cases: Vec<(&str, Vec<&str>, Option<&str>, Want)> = vec![
        (
            "duplicate client id",
            add_client(&["--id", "web", "--redirect-uri", "https://other.example/cb"]),
            None,
            Want::Error("already exists"),
        ),
        (
            "malformed redirect URI",
            add_client(&["--id", "c1", "--redirect-uri", "not a url"]),
            None,
            Want::Error("--redirect-uri"),
        ),
        (
            "http redirect URI on a public host",
            add_client(&["--id", "c2", "--redirect-uri", "http://app.example/cb"]),
            None,
            Want::Error("--redirect-uri"),
        ),
        (
            "redirect URI with fragment",
            add_client(&["--id", "c3", "--redirect-uri", "https://app.example/cb#x"]),
            None,
            Want::Error("--redirect-uri"),
        ),
        (
            "post-logout redirect URI over http",
            add_client(&[
                "--id",
                "c3b",
                "--redirect-uri",
                "https://app.example/cb",
                "--post-logout-redirect-uri",
                "http://app.example/bye",
            ]),
            None,
            Want::Error("--post-logout-redirect-uri"),
        ),
        (
            "back-channel logout URI over http to another host",
            add_client(&[
                "--id",
                "c3c",
                "--grant-type",
                "client_credentials",
                "--backchannel-logout-uri",
                "http://app.example/bc",
            ]),
            None,
            Want::Error("--backchannel-logout-uri"),
        ),
        (
            "unknown grant type",
            add_client(&[
                "--id",
                "c4",
                "--grant-type",
                "implicit",
                "--redirect-uri",
                "https://app.example/cb",
            ]),
            None,
            Want::Error("implicit"),
        ),
        (
            "public client with client_credentials",
            add_client(&[
                "--id",
                "c5",
                "--public",
                "--grant-type",
                "client_credentials",
            ]),
            None,
            Want::Error("client_credentials"),
        ),
        (
            "password grant without first party",
            add_client(&["--id", "c6", "--grant-type", "password"]),
            None,
            Want::Error("first_party"),
        ),
        (
            "authorization_code without redirect URI",
            add_client(&["--id", "c7", "--grant-type", "authorization_code"]),
            None,
            Want::Error("redirect URI"),
        ),
        (
            "bad client id",
            add_client(&["--id", "a b", "--redirect-uri", "https://app.example/cb"]),
            None,
            Want::Error("--id"),
        ),
        (
            "show unknown client",
            vec!["client", "show", "nope"],
            None,
            Want::Error("nope"),
        ),
        (
            "remove unknown client",
            vec!["client", "remove", "nope"],
            None,
            Want::Error("nope"),
        ),
        (
            "duplicate username",
            vec![
                "user",
                "add",
                "--username",
                "bob",
                "--email",
                "other@example.com",
            ],
            None,
            Want::Error("username"),
        ),
        (
            "duplicate username in another case",
            vec![
                "user",
                "add",
                "--username",
                "BOB",
                "--email",
                "other@example.com",
            ],
            None,
            Want::Error("username"),
        ),
        (
            "duplicate email in another case",
            vec![
                "user",
                "add",
                "--username",
                "robert",
                "--email",
                "Bob@Example.COM",
            ],
            None,
            Want::Error("e-mail"),
        ),
        (
            "bad email",
            vec![
                "user",
                "add",
                "--username",
                "carol",
                "--email",
                "not-an-email",
            ],
            None,
            Want::Error("email"),
        ),
        (
            "bad username",
            vec![
                "user",
                "add",
                "--username",
                "ab",
                "--email",
                "ab@example.com",
            ],
            None,
            Want::Error("username"),
        ),
        (
            "too-short password",
            vec![
                "user",
                "add",
                "--username",
                "carol",
                "--email",
                "carol@example.com",
                "--password-stdin",
            ],
            Some("short\n"),
            Want::Error("password"),
        ),
        (
            "password equal to the username",
            vec![
                "user",
                "add",
                "--username",
                "carol.brown",
                "--email",
                "carol@example.com",
                "--password-stdin",
            ],
            Some("Carol.Brown\n"),
            Want::Error("password"),
        ),
        (
            "empty password on stdin",
            vec![
                "user",
                "add",
                "--username",
                "carol",
                "--email",
                "carol@example.com",
                "--password-stdin",
            ],
            Some(""),
            Want::Error("password"),
        ),
        (
            "set-password for unknown user",
            vec!["user", "set-password", "nobody", "--password-stdin"],
            pw,
            Want::Error("nobody"),
        ),
        (
            "disable unknown user",
            vec!["user", "disable", "nobody"],
            None,
            Want::Error("nobody"),
        ),
        (
            "enable unknown user",
            vec!["user", "enable", "nobody"],
            None,
            Want::Error("nobody"),
        ),
        (
            "bad role",
            vec![
                "user",
                "add",
                "--username",
                "carol",
                "--email",
                "carol@example.com",
                "--role",
                "Admin",
            ],
            None,
            Want::Error("role"),
        ),
        (
            "retire unknown kid",
            vec!["keys", "retire", "no-such-kid"],
            None,
            Want::Error("no-such-kid"),
        ),
        (
            "retire the active key",
            vec!["keys", "retire", &active_kid],
            None,
            Want::Error("active"),
        ),
        (
            "client add without --id",
            add_client(&["--redirect-uri", "https://app.example/cb"]),
            None,
            Want::Usage,
        ),
        (
            "user add without --email",
            vec!["user", "add", "--username", "carol"],
            None,
            Want::Usage,
        ),
        (
            "set-password without --password-stdin",
            vec!["user", "set-password", "bob"],
            pw,
            Want::Usage,
        ),
        (
            "keys retire without kid",
            vec!["keys", "retire"],
            None,
            Want::Usage,
        ),
        (
            "unknown subcommand",
            vec!["client", "frobnicate"],
            None,
            Want::Usage,
        ),
    ];

    for (case, args, stdin, want) in cases {
        let out = app.cli_with_stdin(&args, stdin).await;
        let stderr = out.stderr.trim_end();
        match want {
            Want::Error(text) => {
                assert_eq!(
                    out.code(),
                    1,
                    "{case}: exit code; stdout {:?}, stderr {:?}",
                    out.stdout,
                    out.stderr
                );
                assert_eq!(
                    stderr.lines().count(),
                    1,
                    "{case}: want exactly one stderr line, got {:?}",
                    out.stderr
                );
                assert!(!stderr.trim().is_empty(), "{case}: empty stderr line");
                assert!(
                    stderr.contains(text),
                    "{case}: stderr {stderr:?} does not mention {text:?}"
                );
            }
            Want::Usage => {
                assert_ne!(out.code(), 0, "{case}: exit code");
                assert!(!stderr.is_empty(), "{case}: empty stderr");
            }
        }
        assert!(
            !out.stdout.contains("client_secret"),
            "{case}: a secret was printed: {:?}",
            out.stdout
        );
        assert_eq!(app.snapshot().await, before, "{case}: the database changed");
    }
}
