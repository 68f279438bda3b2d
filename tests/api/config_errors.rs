//! A bad setting stops start-up before anything is touched: exit code 2 and one line on
//! stderr naming the key (DESIGN.md "Running"; STYLE.md §5). Black-box, through the real
//! binary: `oxidp --config <tmp>/config.toml migrate`.

use std::path::Path;

use crate::helpers::{CliOutput, run_binary};

/// Every secret in these cases contains this, so one check covers all of them.
const SECRET_MARK: &str = "hunter2";
/// Long enough for a client secret (≥ 32 bytes), so only the intended rule fails.
const GOOD_SECRET: &str = "hunter2-0123456789abcdef0123456789abcdef";

/// (case name, TOML, environment, substring of the key the error must name)
type Case = (
    &'static str,
    String,
    Vec<(&'static str, &'static str)>,
    &'static str,
);

/// The settings that make a config valid and keep every file inside `dir`; all others
/// keep their defaults (bind 127.0.0.1:9000, issuer http://localhost:9000), also valid.
fn base_settings(dir: &Path) -> [(&'static str, &'static str, String); 3] {
    let quoted = |name: &str| format!("{:?}", dir.join(name).display().to_string());
    [
        (
            "database",
            "url",
            format!("{:?}", format!("sqlite://{}", dir.join("x.db").display())),
        ),
        ("keys", "dir", quoted("keys")),
        ("email", "outbox_dir", quoted("outbox")),
    ]
}

/// `case` with the base settings merged in. A base key goes under the case's own header
/// for its section (unless the case sets that key), else into a section appended at the
/// end; the case's text comes first, so its top-level keys stay top-level.
fn config_text(dir: &Path, case: &str) -> String {
    let base = base_settings(dir);
    let mut set = Vec::new();
    let mut section = String::new();
    for line in case.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.trim_matches(['[', ']']).trim().to_string();
        } else if let Some((key, _)) = line.split_once('=')
            && !line.starts_with('#')
        {
            set.push(format!("{section}.{}", key.trim()));
        }
    }
    let mut out = String::new();
    let mut opened = Vec::new();
    for line in case.lines() {
        out.push_str(line);
        out.push('\n');
        for (section, key, value) in &base {
            if line.trim() == format!("[{section}]") {
                opened.push(*section);
                if !set.contains(&format!("{section}.{key}")) {
                    out.push_str(&format!("{key} = {value}\n"));
                }
            }
        }
    }
    for (section, key, value) in &base {
        if !opened.contains(section) {
            out.push_str(&format!("\n[{section}]\n{key} = {value}\n"));
        }
    }
    out
}

fn migrate(config: &Path, env: &[(&str, &str)]) -> CliOutput {
    run_binary(Some(config), &["migrate".to_string()], None, env)
}

/// Names of the entries in `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The key an error line names: `error: invalid setting <key>: <value> (allowed: …)`.
fn named_key(stderr: &str) -> &str {
    stderr
        .strip_prefix("error: invalid setting ")
        .and_then(|rest| rest.split_once(": "))
        .map_or("", |(key, _)| key)
}

/// Asserts the refusal every bad setting must get; returns stderr for extra checks.
fn assert_refused(case: &str, out: &CliOutput, dir: &Path, want_key: &str) {
    assert_eq!(out.code(), 2, "{case}: exit code; stderr: {}", out.stderr);
    assert_eq!(
        out.stderr.lines().count(),
        1,
        "{case}: one line on stderr, got: {:?}",
        out.stderr
    );
    let key = named_key(&out.stderr);
    assert!(
        key.contains(want_key),
        "{case}: names {want_key:?}, got key {key:?} in {:?}",
        out.stderr
    );
    assert!(
        !out.stderr.contains(SECRET_MARK),
        "{case}: secret leaked: {:?}",
        out.stderr
    );
    assert_eq!(out.stdout, "", "{case}: stdout");
    // Config errors stop before the database, keys or outbox are touched.
    assert_eq!(entries(dir), ["config.toml"], "{case}: files created");
}

fn check(cases: Vec<Case>) {
    for (case, toml, env, want_key) in cases {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        std::fs::write(&config, config_text(dir.path(), &toml)).unwrap();
        let out = migrate(&config, &env);
        assert_refused(case, &out, dir.path(), want_key);
    }
}

fn no_env() -> Vec<(&'static str, &'static str)> {
    Vec::new()
}

/// A confidential client-credentials client with `extra` lines; valid when `extra` is empty.
fn service_client(extra: &str) -> String {
    format!(
        "[[clients]]\nid = \"svc\"\nsecret = \"{GOOD_SECRET}\"\ngrant_types = [\"client_credentials\"]\n{extra}"
    )
}

/// A valid seed user with `field` replaced (or added).
fn seed_user(field: &str) -> String {
    let mut lines = vec![
        "[[users]]".to_string(),
        "username = \"alice\"".to_string(),
        "email = \"alice@example.com\"".to_string(),
        "password = \"correct horse battery staple\"".to_string(),
    ];
    let name = field.split('=').next().unwrap_or_default().trim();
    lines.retain(|l| l.split('=').next().unwrap_or_default().trim() != name);
    if name == "password_env" {
        lines.retain(|l| !l.starts_with("password"));
    }
    lines.push(field.to_string());
    lines.join("\n")
}

#[test]
fn the_base_config_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    for (case, toml) in [
        ("base", String::new()),
        ("base with a service client", service_client("")),
        (
            "base with a seed user",
            seed_user("name = \"Alice Example\""),
        ),
    ] {
        std::fs::write(&config, config_text(dir.path(), &toml)).unwrap();
        let out = migrate(&config, &[]);
        assert_eq!(out.code(), 0, "{case}: {}", out.stderr);
    }
    assert!(dir.path().join("x.db").exists());
}

#[test]
fn unknown_keys_are_refused() {
    check(vec![
        ("unknown top-level key", "nope = 1".into(), no_env(), "nope"),
        ("unknown table", "[nope]\na = 1".into(), no_env(), "nope"),
        (
            "unknown key in [server]",
            "[server]\nnope = 1".into(),
            no_env(),
            "server.nope",
        ),
        (
            "unknown key in [database]",
            "[database]\npassword = \"hunter2\"".into(),
            no_env(),
            "database.password",
        ),
        // Named `clients.0.nope` today (figment's path), `clients[0].x` by validation.
        (
            "unknown key in [[clients]]",
            service_client("nope = 1"),
            no_env(),
            "nope",
        ),
        (
            "unknown key in [[users]]",
            seed_user("nope = 1"),
            no_env(),
            "nope",
        ),
    ]);
}

#[test]
fn server_settings_are_checked() {
    let issuer = |v: &str| format!("[server]\nissuer = \"{v}\"");
    check(vec![
        (
            "bind is a host name",
            "[server]\nbind = \"localhost:9000\"".into(),
            no_env(),
            "server.bind",
        ),
        (
            "bind is not an address",
            "[server]\nbind = \"nope\"".into(),
            no_env(),
            "server.bind",
        ),
        (
            "issuer http on a public host",
            issuer("http://id.example.com"),
            no_env(),
            "server.issuer",
        ),
        (
            "issuer not a URL",
            issuer("not a url"),
            no_env(),
            "server.issuer",
        ),
        (
            "issuer with query",
            issuer("https://id.example.com/?a=b"),
            no_env(),
            "server.issuer",
        ),
        (
            "issuer with trailing slash",
            issuer("https://id.example.com/"),
            no_env(),
            "server.issuer",
        ),
        (
            "issuer ftp",
            issuer("ftp://id.example.com"),
            no_env(),
            "server.issuer",
        ),
        (
            "issuer a number",
            "[server]\nissuer = 9000".into(),
            no_env(),
            "server.issuer",
        ),
    ]);
}

#[test]
fn database_url_is_checked_without_printing_the_password() {
    // `assert_refused` also checks that `hunter2` is not in stderr.
    check(vec![
        (
            "unsupported scheme",
            "[database]\nurl = \"mysql://u:hunter2@h/db\"".into(),
            no_env(),
            "database.url",
        ),
        (
            "postgres without a host",
            "[database]\nurl = \"postgres://u:hunter2@/db\"".into(),
            no_env(),
            "database.url",
        ),
        (
            "sqlite without a path",
            "[database]\nurl = \"sqlite://\"".into(),
            no_env(),
            "database.url",
        ),
        (
            "client cache over an hour",
            "[database]\nclient_cache_seconds = 3601".into(),
            no_env(),
            "database.client_cache_seconds",
        ),
        (
            "client cache negative, from the environment",
            String::new(),
            vec![("OXIDP_DATABASE__CLIENT_CACHE_SECONDS", "-1")],
            "database.client_cache_seconds",
        ),
    ]);
}

#[test]
fn client_entries_are_checked() {
    let client = |lines: &str| format!("[[clients]]\nid = \"app\"\n{lines}");
    check(vec![
        (
            "secret shorter than 32 bytes",
            client("secret = \"hunter2-short\"\ngrant_types = [\"client_credentials\"]"),
            no_env(),
            "clients[0].secret",
        ),
        (
            "back-channel logout URI over plain http to another host",
            client(&format!(
                "secret = \"{GOOD_SECRET}\"\ngrant_types = [\"client_credentials\"]\nbackchannel_logout_uri = \"http://rp.example/bc\""
            )),
            no_env(),
            "clients[0].backchannel_logout_uri",
        ),
        (
            "malformed redirect URI",
            client(&format!(
                "secret = \"{GOOD_SECRET}\"\nredirect_uris = [\"not a uri\"]"
            )),
            no_env(),
            "clients[0].redirect_uris[0]",
        ),
        (
            "http redirect URI on a public host",
            client(&format!(
                "secret = \"{GOOD_SECRET}\"\nredirect_uris = [\"http://app.example/cb\"]"
            )),
            no_env(),
            "clients[0].redirect_uris[0]",
        ),
        (
            "unknown grant type",
            client(&format!(
                "secret = \"{GOOD_SECRET}\"\nredirect_uris = [\"https://app.example/cb\"]\ngrant_types = [\"authorization_code\", \"implicit\"]"
            )),
            no_env(),
            "clients[0].grant_types[1]",
        ),
        (
            "public client with a secret",
            client(&format!(
                "secret = \"{GOOD_SECRET}\"\ntoken_endpoint_auth_method = \"none\"\nredirect_uris = [\"https://app.example/cb\"]"
            )),
            no_env(),
            "clients[0].secret",
        ),
        (
            "public client with client_credentials",
            client("token_endpoint_auth_method = \"none\"\ngrant_types = [\"client_credentials\"]"),
            no_env(),
            "clients[0].grant_types",
        ),
        (
            "confidential client without a secret",
            client(
                "token_endpoint_auth_method = \"client_secret_basic\"\nredirect_uris = [\"https://app.example/cb\"]",
            ),
            no_env(),
            "clients[0].secret",
        ),
        (
            "password grant without first_party",
            client(&format!(
                "secret = \"{GOOD_SECRET}\"\ngrant_types = [\"password\"]"
            )),
            no_env(),
            "clients[0].grant_types",
        ),
        (
            "unknown auth method",
            client(
                "token_endpoint_auth_method = \"private_key_jwt\"\ngrant_types = [\"client_credentials\"]",
            ),
            no_env(),
            "token_endpoint_auth_method",
        ),
        (
            "secret_env too short",
            client("secret_env = \"CFGTEST_APP_SECRET\"\ngrant_types = [\"client_credentials\"]"),
            vec![("CFGTEST_APP_SECRET", "hunter2-short")],
            "clients[0].secret_env",
        ),
        (
            "secret_env not set",
            client("secret_env = \"CFGTEST_UNSET_SECRET\"\ngrant_types = [\"client_credentials\"]"),
            no_env(),
            "clients[0].secret_env",
        ),
        (
            "duplicate client ids",
            format!("{}\n{}", service_client(""), service_client("")),
            no_env(),
            "clients[1].id",
        ),
    ]);
}

#[test]
fn email_log_token_and_ratelimit_settings_are_checked() {
    check(vec![
        (
            "email.from malformed",
            "[email]\nfrom = \"not an address\"".into(),
            no_env(),
            "email.from",
        ),
        (
            "smtp without smtp_url",
            "[email]\ntransport = \"smtp\"".into(),
            no_env(),
            "email.smtp_url",
        ),
        (
            "smtp_url not smtp",
            "[email]\ntransport = \"smtp\"\nsmtp_url = \"http://u:hunter2@mail.example\"".into(),
            no_env(),
            "email.smtp_url",
        ),
        (
            "unknown transport",
            "[email]\ntransport = \"pigeon\"".into(),
            no_env(),
            "email.transport",
        ),
        (
            "log.level not a filter",
            "[log]\nlevel = \"info,,=x=y\"".into(),
            no_env(),
            "log.level",
        ),
        (
            "unknown log.format",
            "[log]\nformat = \"xml\"".into(),
            no_env(),
            "log.format",
        ),
        (
            "refresh_grace_seconds too large",
            "[tokens]\nrefresh_grace_seconds = 301".into(),
            no_env(),
            "tokens.refresh_grace_seconds",
        ),
        (
            "refresh_grace_seconds negative",
            "[tokens]\nrefresh_grace_seconds = -1".into(),
            no_env(),
            "tokens.refresh_grace_seconds",
        ),
        (
            "a string where a number belongs",
            "[tokens]\nrefresh_grace_seconds = \"ten\"".into(),
            no_env(),
            "tokens.refresh_grace_seconds",
        ),
        (
            "a string where a boolean belongs",
            "[accounts]\nallow_registration = \"yes\"".into(),
            no_env(),
            "accounts.allow_registration",
        ),
        (
            "redis backend without redis_url",
            "[ratelimit]\nbackend = \"redis\"".into(),
            no_env(),
            "ratelimit.redis_url",
        ),
        (
            "redis key prefix with a space",
            "[ratelimit]\nredis_key_prefix = \"a b\"".into(),
            no_env(),
            "ratelimit.redis_key_prefix",
        ),
        (
            "unknown ratelimit backend",
            "[ratelimit]\nbackend = \"carrier-pigeon\"".into(),
            no_env(),
            "ratelimit.backend",
        ),
        (
            "malformed redis_url",
            "[ratelimit]\nredis_url = \"http://x\"".into(),
            no_env(),
            "ratelimit.redis_url",
        ),
    ]);
}

#[test]
fn seed_users_are_checked() {
    check(vec![
        (
            "bad username",
            seed_user("username = \"a b\""),
            no_env(),
            "users[0].username",
        ),
        (
            "bad email",
            seed_user("email = \"not-an-email\""),
            no_env(),
            "users[0].email",
        ),
        (
            "password too short",
            seed_user("password = \"hunter2\""),
            no_env(),
            "users[0].password",
        ),
        (
            "password_env not set",
            seed_user("password_env = \"CFGTEST_UNSET_PASSWORD\""),
            no_env(),
            "users[0].password_env",
        ),
        (
            "password_env too short",
            seed_user("password_env = \"CFGTEST_ALICE_PASSWORD\""),
            vec![("CFGTEST_ALICE_PASSWORD", "hunter2")],
            "users[0].password_env",
        ),
        (
            "password as a number",
            seed_user("password = 12345678"),
            no_env(),
            "password",
        ),
    ]);
}

#[test]
fn environment_overrides_are_checked_like_the_file() {
    check(vec![
        (
            "OXIDP_SERVER__ISSUER http on a public host",
            String::new(),
            vec![("OXIDP_SERVER__ISSUER", "http://example.com")],
            "server.issuer",
        ),
        (
            "OXIDP_DATABASE_URL with one underscore",
            String::new(),
            vec![("OXIDP_DATABASE_URL", "sqlite://elsewhere.db")],
            "OXIDP_DATABASE_URL",
        ),
        (
            "OXIDP_SERVER__NOPE",
            String::new(),
            vec![("OXIDP_SERVER__NOPE", "1")],
            "nope",
        ),
        (
            "OXIDP_DATABASE__URL unsupported, with a password",
            String::new(),
            vec![("OXIDP_DATABASE__URL", "mysql://u:hunter2@h/db")],
            "database.url",
        ),
        (
            "OXIDP_TOKENS__REFRESH_GRACE_SECONDS not a number",
            String::new(),
            vec![("OXIDP_TOKENS__REFRESH_GRACE_SECONDS", "abc")],
            "tokens.refresh_grace_seconds",
        ),
        (
            "env override beats a valid file value",
            "[server]\nissuer = \"https://id.example.com\"".into(),
            vec![("OXIDP_SERVER__ISSUER", "https://id.example.com/")],
            "server.issuer",
        ),
    ]);
}

#[test]
fn a_valid_environment_override_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, config_text(dir.path(), "")).unwrap();
    let out = migrate(&config, &[("OXIDP_SERVER__BIND", "127.0.0.1:0")]);
    assert_eq!(out.code(), 0, "stderr: {}", out.stderr);
    assert!(dir.path().join("x.db").exists());
}

#[test]
fn a_missing_config_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("missing.toml");
    let out = migrate(&config, &[]);
    assert_eq!(out.code(), 2, "stderr: {}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{:?}", out.stderr);
    assert!(
        out.stderr.contains(&config.display().to_string()),
        "{:?}",
        out.stderr
    );
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn a_toml_syntax_error_is_one_line() {
    for (case, toml) in [
        ("unclosed table header", "[server\nbind = \"127.0.0.1:0\""),
        (
            "duplicate key",
            "[server]\nbind = \"127.0.0.1:1\"\nbind = \"127.0.0.1:2\"",
        ),
        ("unterminated string", "[log]\nlevel = \"info"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        std::fs::write(&config, config_text(dir.path(), toml)).unwrap();
        let out = migrate(&config, &[]);
        assert_eq!(out.code(), 2, "{case}: {}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{case}: {:?}", out.stderr);
        assert_eq!(out.stdout, "", "{case}");
        assert_eq!(entries(dir.path()), ["config.toml"], "{case}");
    }
}

/// STYLE.md §5: a secret is redacted in error messages, including a TOML syntax error
/// on the line that holds it (the parser's excerpt of that line must not be printed).
#[test]
fn a_toml_syntax_error_does_not_echo_a_secret() {
    check(vec![(
        "unterminated client secret",
        service_client("").replace(&format!("\"{GOOD_SECRET}\""), &format!("\"{GOOD_SECRET}")),
        no_env(),
        "config.toml",
    )]);
}
