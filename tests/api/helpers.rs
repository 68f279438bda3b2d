//! `spawn_app`: the real server on a free loopback port, with its own temporary
//! directory (SQLite file, keys, outbox) or, when `TEST_DATABASE_URL` is set, its own
//! freshly created PostgreSQL database, dropped again when the test ends.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use oxidp::config::Config;
use oxidp::startup::Application;
use oxidp::storage::Store;
use sqlx::Connection;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// One RSA key per test process: generating one costs ~100 ms, and most tests do not
/// care which key signs. Tests about key generation opt out with `fresh_keys`.
fn shared_key_pem() -> &'static [u8] {
    static PEM: OnceLock<Vec<u8>> = OnceLock::new();
    PEM.get_or_init(|| {
        use josekit::jwk::KeyPair;
        josekit::jws::RS256
            .generate_key_pair(2048)
            .expect("generate test key")
            .to_pem_private_key()
    })
}

/// Where a test's data lives: a SQLite file in the temp dir, or a PostgreSQL database
/// created for this test alone.
pub struct TestDb {
    pub url: String,
    postgres: Option<(String, String)>,
}

impl TestDb {
    pub async fn new(dir: &Path) -> Self {
        match std::env::var("TEST_DATABASE_URL") {
            Ok(admin) if !admin.is_empty() => {
                let name = format!("oxidp_test_{}", uuid::Uuid::new_v4().simple());
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .expect("connect to TEST_DATABASE_URL");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .expect("create test database");
                let mut url = url::Url::parse(&admin).expect("TEST_DATABASE_URL is a URL");
                url.set_path(&name);
                Self {
                    url: url.to_string(),
                    postgres: Some((admin, name)),
                }
            }
            _ => Self {
                url: format!("sqlite://{}", dir.join("oxidp.db").display()),
                postgres: None,
            },
        }
    }

    /// Simulates an outage: the database disappears under the running server.
    pub async fn destroy(&self, dir: &Path) {
        match &self.postgres {
            Some((admin, name)) => drop_database(admin, name).await,
            None => {
                // Replace the file (and its WAL) with garbage: every later read fails.
                for suffix in ["", "-wal", "-shm"] {
                    let path = dir.join(format!("oxidp.db{suffix}"));
                    let _ = std::fs::remove_file(&path);
                }
                std::fs::write(dir.join("oxidp.db"), vec![0x42u8; 8192]).unwrap();
            }
        }
    }
}

async fn drop_database(admin: &str, name: &str) {
    if let Ok(mut conn) = sqlx::PgConnection::connect(admin).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await;
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin, name)) = self.postgres.take() {
            // Drop runs inside the test's runtime; a separate thread with its own runtime
            // can block on the async driver without stalling that one.
            let _ = std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    rt.block_on(drop_database(&admin, &name));
                }
            })
            .join();
        }
    }
}

/// Options for `spawn_app_with`.
#[derive(Default, Clone)]
pub struct Options {
    /// Extra TOML appended to the generated config (sections must not repeat
    /// `[server]`, `[database]`, `[keys]` or `[email]`; use `server_extra` etc.).
    pub extra_toml: String,
    /// Lines added inside `[keys]`.
    pub keys_extra: String,
    /// Lines added inside `[server]`.
    pub server_extra: String,
    /// Start with an empty key directory, so the server generates its own key.
    pub fresh_keys: bool,
}

pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub issuer: String,
    pub http: reqwest::Client,
    cookies: std::sync::Arc<reqwest::cookie::Jar>,
    pub dir: TempDir,
    pub db: TestDb,
    /// The exact TOML the server was started with; CLI tests pass it as `--config`.
    pub config_toml: String,
    pub store: Store,
    options: Options,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_with(options: Options) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = TestDb::new(dir.path()).await;
    let keys = dir.path().join("keys");
    if !options.fresh_keys {
        std::fs::create_dir_all(&keys).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o700)).unwrap();
        let path = keys.join("test.pem");
        std::fs::write(&path, shared_key_pem()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    start(dir, db, options).await
}

/// Builds the config text for a test directory and database.
fn config_text(dir: &Path, db_url: &str, port: u16, options: &Options) -> String {
    format!(
        r#"
[server]
bind = "127.0.0.1:{port}"
issuer = "http://127.0.0.1:{port}"
shutdown_timeout_seconds = 5
{server_extra}

[database]
url = "{db_url}"
max_connections = 5

[keys]
dir = "{keys}"
{keys_extra}

[email]
outbox_dir = "{outbox}"

{extra}
"#,
        keys = dir.join("keys").display(),
        outbox = dir.join("outbox").display(),
        keys_extra = options.keys_extra,
        server_extra = options.server_extra,
        extra = options.extra_toml,
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

async fn start(dir: TempDir, db: TestDb, options: Options) -> TestApp {
    // The issuer must carry the real port (clients compare it with the URL they
    // fetched), so the port is chosen before start; retry if another test took it.
    for attempt in 0.. {
        let port = free_port();
        let text = config_text(dir.path(), &db.url, port, &options);
        let config = Config::from_sources(&text, Vec::new()).expect("test config is valid");
        match Application::build(config).await {
            Ok(app) => {
                let store = app.state().store.clone();
                let (tx, rx) = oneshot::channel::<()>();
                let server = tokio::spawn(app.run_until(async move {
                    let _ = rx.await;
                }));
                let address = format!("http://127.0.0.1:{port}");
                let cookies = std::sync::Arc::new(reqwest::cookie::Jar::default());
                return TestApp {
                    issuer: address.clone(),
                    address,
                    port,
                    http: reqwest::Client::builder()
                        .redirect(reqwest::redirect::Policy::none())
                        .cookie_provider(cookies.clone())
                        .build()
                        .unwrap(),
                    cookies,
                    dir,
                    db,
                    config_toml: text,
                    store,
                    options,
                    stop: Some(tx),
                    server: Some(server),
                };
            }
            Err(oxidp::startup::StartupError::Bind { .. }) if attempt < 5 => continue,
            Err(e) => panic!("server did not start: {e}"),
        }
    }
    unreachable!()
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.expect("request")
    }

    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        self.get(path).await.json().await.expect("JSON body")
    }

    pub fn keys_dir(&self) -> PathBuf {
        self.dir.path().join("keys")
    }

    pub fn config_path(&self) -> PathBuf {
        let path = self.dir.path().join("config.toml");
        std::fs::write(&path, &self.config_toml).unwrap();
        path
    }

    /// Stops the server gracefully and waits for it; the directory and database stay.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server result");
        }
    }

    /// Stops this server and starts a new one on the same directory and database.
    pub async fn restart(self) -> TestApp {
        let options = self.options.clone();
        self.restart_with(options).await
    }

    /// Like `restart`, with other options (e.g. a changed `[[clients]]` list).
    pub async fn restart_with(mut self, options: Options) -> TestApp {
        self.stop().await;
        let TestApp { dir, db, .. } = self;
        start(dir, db, options).await
    }

    /// Builds (but does not serve) an application on this directory and database with
    /// `options`, returning the start-up error if there is one.
    pub async fn try_build(
        &mut self,
        options: &Options,
    ) -> Result<(), oxidp::startup::StartupError> {
        self.stop().await;
        let text = config_text(self.dir.path(), &self.db.url, free_port(), options);
        let config = Config::from_sources(&text, Vec::new()).expect("test config is valid");
        Application::build(config).await.map(|_| ())
    }

    /// Runs the real binary with this app's config: `oxidp --config … args…`.
    pub async fn cli(&self, args: &[&str]) -> CliOutput {
        self.cli_with_stdin(args, None).await
    }

    pub async fn cli_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> CliOutput {
        let config = self.config_path();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let stdin = stdin.map(str::to_string);
        tokio::task::spawn_blocking(move || run_binary(Some(&config), &args, stdin.as_deref(), &[]))
            .await
            .unwrap()
    }

    /// Everything the CLI can change, for "nothing changed" assertions.
    pub async fn snapshot(&self) -> String {
        let users = self.store.list_users().await.unwrap();
        let clients = self.store.list_clients().await.unwrap();
        let keys = self.store.list_keys().await.unwrap();
        let mut files: Vec<String> = std::fs::read_dir(self.keys_dir())
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        format!("{users:?}\n{clients:?}\n{keys:?}\n{files:?}")
    }
}

pub struct CliOutput {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }
}

/// Runs the oxidp binary. `env` adds variables; OXIDP_* from the test's own
/// environment are removed so only what the test says applies.
pub fn run_binary(
    config: Option<&Path>,
    args: &[String],
    stdin: Option<&str>,
    env: &[(&str, &str)],
) -> CliOutput {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_oxidp"));
    for (k, _) in std::env::vars() {
        if k.starts_with("OXIDP_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("RUST_LOG", "warn");
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    cmd.args(args)
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run oxidp");
    if let Some(input) = stdin {
        use std::io::Write;
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input.as_bytes()).unwrap();
    }
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().expect("oxidp output");
    CliOutput {
        status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// The value of a hidden `<input name=… value=…>` in a page, HTML entities decoded.
pub fn hidden_input(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = start + html[start..].find('"')?;
    Some(html_decode(&html[start..end]))
}

pub fn html_decode(s: &str) -> String {
    s.replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// A seeded user and two clients (confidential and public) for flow tests.
pub const USER: &str = "alice";
pub const PASSWORD: &str = "correct horse battery staple";
pub const CLIENT: &str = "rp";
pub const CLIENT_SECRET: &str = "rp-secret-that-is-long-enough-0123456789";
pub const PUBLIC_CLIENT: &str = "spa";
pub const REDIRECT: &str = "https://rp.example/cb";

pub fn flow_options() -> Options {
    Options {
        extra_toml: format!(
            r#"
[[users]]
username = "{USER}"
email = "alice@example.com"
password = "{PASSWORD}"
name = "Alice Example"
given_name = "Alice"
family_name = "Example"
roles = ["admin"]

[[clients]]
id = "{CLIENT}"
name = "Relying Party"
secret = "{CLIENT_SECRET}"
redirect_uris = ["{REDIRECT}", "http://127.0.0.1/native"]

[[clients]]
id = "{PUBLIC_CLIENT}"
token_endpoint_auth_method = "none"
redirect_uris = ["{REDIRECT}"]

[[clients]]
id = "first"
secret = "{CLIENT_SECRET}"
first_party = true
redirect_uris = ["{REDIRECT}"]

[[clients]]
id = "poster"
secret = "{CLIENT_SECRET}"
token_endpoint_auth_method = "client_secret_post"
redirect_uris = ["{REDIRECT}"]
"#
        ),
        ..Options::default()
    }
}

pub async fn spawn_flow_app() -> TestApp {
    spawn_app_with(flow_options()).await
}

impl TestApp {
    fn location(response: &reqwest::Response) -> String {
        response
            .headers()
            .get("location")
            .unwrap_or_else(|| panic!("no Location on {}", response.status()))
            .to_str()
            .unwrap()
            .to_string()
    }

    fn absolute(&self, location: &str) -> String {
        if location.starts_with('/') {
            self.url(location)
        } else {
            location.to_string()
        }
    }

    /// Follows an authorization URL through login (when asked) and consent (when shown,
    /// answering `decision`) as a browser would, and returns the final redirect to the
    /// client.
    pub async fn authorize_as(
        &self,
        url: &str,
        username: &str,
        password: &str,
        decision: &str,
    ) -> url::Url {
        self.authorize_in(&self.http, url, username, password, decision)
            .await
    }

    /// A second, independent browser (its own cookie jar).
    pub fn new_browser(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .cookie_store(true)
            .build()
            .unwrap()
    }

    /// The value of one of oxidp's cookies in this app's browser.
    pub fn cookie(&self, name: &str) -> Option<String> {
        use reqwest::cookie::CookieStore;
        let url = url::Url::parse(&self.address).unwrap();
        let header = self.cookies.cookies(&url)?;
        header
            .to_str()
            .ok()?
            .split("; ")
            .find_map(|c| c.strip_prefix(&format!("{name}=")).map(str::to_string))
    }

    /// `authorize_as` in the given browser.
    pub async fn authorize_in(
        &self,
        http: &reqwest::Client,
        url: &str,
        username: &str,
        password: &str,
        decision: &str,
    ) -> url::Url {
        let mut response = http.get(url).send().await.unwrap();
        for _ in 0..6 {
            assert!(
                response.status().is_redirection(),
                "expected a redirect, got {}: {}",
                response.status(),
                response.text().await.unwrap_or_default()
            );
            let location = Self::location(&response);
            if !location.starts_with('/') && !location.starts_with(&self.address) {
                return url::Url::parse(&location).unwrap();
            }
            let page_url = self.absolute(&location);
            let page = http.get(&page_url).send().await.unwrap();
            assert_eq!(page.status(), 200, "{page_url}");
            let html = page.text().await.unwrap();
            let csrf = hidden_input(&html, "csrf_token").expect("csrf_token on the page");
            let req = hidden_input(&html, "req").unwrap_or_default();
            response = if page_url.contains("/login") {
                http.post(self.url("/login"))
                    .form(&[
                        ("username", username),
                        ("password", password),
                        ("csrf_token", &csrf),
                        ("req", &req),
                    ])
                    .send()
                    .await
                    .unwrap()
            } else {
                http.post(self.url("/consent"))
                    .form(&[("decision", decision), ("csrf_token", &csrf), ("req", &req)])
                    .send()
                    .await
                    .unwrap()
            };
        }
        panic!("too many steps");
    }

    /// Signs in and consents; returns the redirect to the client.
    pub async fn authorize(&self, url: &str) -> url::Url {
        self.authorize_as(url, USER, PASSWORD, "allow").await
    }

    /// Exchanges the code in `back` (the redirect to the client) for `client`, whose
    /// secret is `CLIENT_SECRET`; asserts 200 and returns the token response.
    pub async fn exchange_code(&self, client: &str, back: &url::Url) -> serde_json::Value {
        let code = query_param(back, "code").unwrap_or_else(|| panic!("no code in {back}"));
        let response = self
            .token(
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", REDIRECT),
                ],
                Some((client, CLIENT_SECRET)),
            )
            .await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// POSTs a form to /token with optional Basic credentials.
    pub async fn token(
        &self,
        form: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> reqwest::Response {
        let mut request = self.http.post(self.url("/token")).form(form);
        if let Some((id, secret)) = basic {
            request = request.basic_auth(id, Some(secret));
        }
        request.send().await.unwrap()
    }
}

/// The named query parameter of a URL.
pub fn query_param(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Rate-limit backends for `every_backend!`: in memory, in the database.
pub const MEMORY_BACKEND: &str = "backend = \"memory\"";
pub const DATABASE_BACKEND: &str = "backend = \"database\"";

/// The `[rate_limit]` settings for the Redis named by `TEST_REDIS_URL`, with a key prefix
/// of this test's own (parallel tests do not count each other's failures). Unset, the
/// Redis variant cannot run: under CI (`CI=true`, which sets the URL) that fails the
/// test; elsewhere the test says so on stderr and is skipped (`None`).
pub fn redis_backend() -> Option<String> {
    let url = std::env::var("TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty());
    let Some(url) = url else {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(
            !ci,
            "TEST_REDIS_URL is not set under CI: the Redis rate-limit variant must run there"
        );
        eprintln!(
            "SKIPPED: TEST_REDIS_URL is not set, so this Redis variant tested nothing \
             (set it to a Redis URL, e.g. redis://127.0.0.1:6379, to run it)"
        );
        return None;
    };
    let prefix = format!("oxidp-test-{}", uuid::Uuid::new_v4().simple());
    Some(format!(
        "backend = \"redis\"\nredis_url = \"{url}\"\nredis_key_prefix = \"{prefix}\""
    ))
}

/// Every rate-limit scenario `async fn scenario(backend: &str)` of the calling module,
/// as one test per backend: `memory::scenario`, `database::scenario`, `redis::scenario`
/// (see `redis_backend` for when that one runs).
macro_rules! every_backend {
    ($($scenario:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test]
            async fn $scenario() {
                super::$scenario($crate::helpers::MEMORY_BACKEND).await;
            })*
        }
        mod database {
            $(#[tokio::test]
            async fn $scenario() {
                super::$scenario($crate::helpers::DATABASE_BACKEND).await;
            })*
        }
        mod redis {
            $(#[tokio::test]
            async fn $scenario() {
                let Some(backend) = $crate::helpers::redis_backend() else {
                    return;
                };
                super::$scenario(&backend).await;
            })*
        }
    };
}
pub(crate) use every_backend;

/// A JWT's claims, decoded without checking the signature (tests that check it use the
/// JWKS).
pub fn jwt_claims(token: &str) -> serde_json::Value {
    use base64::Engine;
    let part = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

/// `jwt_claims` as a map, for tests that change claims and sign them again.
pub fn jwt_claims_map(token: &str) -> serde_json::Map<String, serde_json::Value> {
    match jwt_claims(token) {
        serde_json::Value::Object(map) => map,
        other => panic!("JWT claims are not an object: {other}"),
    }
}

/// A quoted-printable mail body decoded: soft line breaks (`=` at the end of a line) and
/// `=XX` escapes (RFC 2045 §6.7).
pub fn decode_quoted_printable(body: &str) -> String {
    let joined = body.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes
            .get(i + 1..i + 3)
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        if bytes[i] == b'='
            && let Some(b) = escaped
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
