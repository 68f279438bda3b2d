//! The deployment surface: file modes of the data oxidp writes, `__Host-` cookie names
//! behind an https issuer, the form_post CSP for native apps, per-address flood
//! control, and the separate management listener (`server.metrics_bind`).
//!
//! These tests build their own config text (the issuer, the database path and the
//! listeners differ from `spawn_app`'s), so they start the server themselves.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{CLIENT_SECRET, PASSWORD, REDIRECT, TestDb, USER, hidden_input, html_decode};

const NATIVE: &str = "native";
const NATIVE_REDIRECT: &str = "com.example.app:/cb";
const FIRST: &str = "first";

/// A server started from a config text built by the test.
struct App {
    address: String,
    dir: tempfile::TempDir,
    /// Plain client: no cookie store, no redirects (cookies are sent by hand).
    http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    metrics_port: Option<u16>,
    db: TestDb,
}

/// What varies between the tests' configs.
#[derive(Default)]
struct Setup {
    /// `None`: `http://127.0.0.1:<port>`.
    issuer: Option<String>,
    /// Lines inside `[server]`; `{mport}` is replaced by a free port.
    server_extra: String,
    /// Lines inside `[ratelimit]`.
    ratelimit: String,
    /// Put the SQLite file and the outbox under `data/`, which oxidp creates.
    data_subdir: bool,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl App {
    async fn spawn(setup: Setup) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = TestDb::new(dir.path()).await;
        let db_url = if setup.data_subdir && db.url.starts_with("sqlite:") {
            format!("sqlite://{}", dir.path().join("data/oxidp.db").display())
        } else {
            db.url.clone()
        };
        let outbox = if setup.data_subdir {
            dir.path().join("data/outbox")
        } else {
            dir.path().join("outbox")
        };
        for attempt in 0.. {
            let port = free_port();
            let mport = free_port();
            let issuer = setup
                .issuer
                .clone()
                .unwrap_or_else(|| format!("http://127.0.0.1:{port}"));
            let text = format!(
                r#"
[server]
bind = "127.0.0.1:{port}"
issuer = "{issuer}"
shutdown_timeout_seconds = 5
{server_extra}

[database]
url = "{db_url}"
max_connections = 5

[keys]
dir = "{keys}"

[email]
outbox_dir = "{outbox}"

[ratelimit]
{ratelimit}

[[users]]
username = "{USER}"
email = "alice@example.com"
password = "{PASSWORD}"

[[clients]]
id = "{FIRST}"
secret = "{CLIENT_SECRET}"
first_party = true
redirect_uris = ["{REDIRECT}"]
grant_types = ["authorization_code", "password"]

[[clients]]
id = "{NATIVE}"
token_endpoint_auth_method = "none"
redirect_uris = ["{NATIVE_REDIRECT}"]
"#,
                server_extra = setup.server_extra.replace("{mport}", &mport.to_string()),
                keys = dir.path().join("keys").display(),
                outbox = outbox.display(),
                ratelimit = setup.ratelimit,
            );
            let config = oxidp::config::Config::from_sources(&text, Vec::new())
                .unwrap_or_else(|e| panic!("config refused: {e}"));
            match oxidp::startup::Application::build(config).await {
                Ok(app) => {
                    let metrics_port = app.metrics_port();
                    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                    let server = tokio::spawn(app.run_until(async move {
                        let _ = rx.await;
                    }));
                    return Self {
                        address: format!("http://127.0.0.1:{port}"),
                        dir,
                        http: reqwest::Client::builder()
                            .redirect(reqwest::redirect::Policy::none())
                            .build()
                            .unwrap(),
                        stop: Some(tx),
                        server: Some(server),
                        metrics_port,
                        db,
                    };
                }
                Err(oxidp::startup::StartupError::Bind { .. }) if attempt < 5 => continue,
                Err(e) => panic!("server did not start: {e}"),
            }
        }
        unreachable!()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server result");
        }
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn set_cookies(response: &reqwest::Response) -> Vec<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

/// `name=value` of the cookie called `name` among `Set-Cookie` headers.
fn cookie_pair(cookies: &[String], name: &str) -> Option<String> {
    cookies
        .iter()
        .find(|c| c.starts_with(&format!("{name}=")))
        .map(|c| c.split(';').next().unwrap_or_default().to_string())
}

// ---------------------------------------------------------------------------------------
// File modes
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn data_files_are_private_to_the_service_user() {
    let mut app = App::spawn(Setup {
        data_subdir: true,
        ..Setup::default()
    })
    .await;
    let data = app.dir.path().join("data");
    // A mail with a live reset link.
    let response = app
        .http
        .post(app.url("/api/v1/account/password-reset"))
        .json(&json!({"email": "alice@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let outbox = data.join("outbox");
    let mut mails = Vec::new();
    for _ in 0..100 {
        mails = std::fs::read_dir(&outbox)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                    .collect()
            })
            .unwrap_or_default();
        if !mails.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!mails.is_empty(), "no mail in {}", outbox.display());
    let mut checked = vec![(outbox.clone(), mode(&outbox), 0o700)];
    for mail in &mails {
        checked.push((mail.clone(), mode(mail), 0o600));
    }
    if app.db.url.starts_with("sqlite:") {
        checked.push((data.clone(), mode(&data), 0o700));
        for suffix in ["", "-wal", "-shm"] {
            let path = data.join(format!("oxidp.db{suffix}"));
            if suffix.is_empty() || path.exists() {
                checked.push((path.clone(), mode(&path), 0o600));
            }
        }
        assert!(data.join("oxidp.db-wal").exists(), "WAL mode");
    }
    let wrong: Vec<String> = checked
        .iter()
        .filter(|(_, got, want)| got != want)
        .map(|(p, got, want)| format!("{}: {got:o}, want {want:o}", p.display()))
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}");
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// Cookie names
// ---------------------------------------------------------------------------------------

const HTTPS_ROOT: &str = "https://id.infra.example";

/// Signs in through `/authorize` → `/login` sending cookies by hand (they are Secure,
/// and the test server speaks plain HTTP); returns the login's `Set-Cookie` headers and
/// the final answer of `/authorize`.
async fn sign_in_by_hand(app: &App, csrf_name: &str) -> (Vec<String>, reqwest::Response) {
    let authorize = format!(
        "/authorize?response_type=code&client_id={FIRST}&redirect_uri={REDIRECT}\
         &scope=openid&state=st"
    );
    let first = app.http.get(app.url(&authorize)).send().await.unwrap();
    assert!(first.status().is_redirection(), "{}", first.status());
    let location = first.headers()["location"].to_str().unwrap().to_string();
    // The login page may be named by the https issuer: ask this server for its path.
    let path = location
        .strip_prefix(HTTPS_ROOT)
        .unwrap_or(&location)
        .to_string();
    let page = app.http.get(app.url(&path)).send().await.unwrap();
    let cookies = set_cookies(&page);
    let csrf = cookie_pair(&cookies, csrf_name)
        .unwrap_or_else(|| panic!("no {csrf_name} among {cookies:?}"));
    let html = page.text().await.unwrap();
    let token = hidden_input(&html, "csrf_token").expect("csrf_token");
    let req = hidden_input(&html, "req").unwrap_or_default();
    let login = app
        .http
        .post(app.url("/login"))
        .header("cookie", &csrf)
        .form(&[
            ("username", USER),
            ("password", PASSWORD),
            ("csrf_token", &token),
            ("req", &req),
        ])
        .send()
        .await
        .unwrap();
    assert!(login.status().is_redirection(), "login: {}", login.status());
    let login_cookies = set_cookies(&login);
    let session = login_cookies
        .iter()
        .find(|c| c.contains("session="))
        .map(|c| c.split(';').next().unwrap_or_default().to_string())
        .unwrap_or_else(|| panic!("no session cookie among {login_cookies:?}"));
    let again = app
        .http
        .get(app.url(&authorize))
        .header("cookie", format!("{session}; {csrf}"))
        .send()
        .await
        .unwrap();
    (login_cookies, again)
}

#[tokio::test]
async fn https_root_issuer_uses_host_prefixed_cookies() {
    let mut app = App::spawn(Setup {
        issuer: Some(HTTPS_ROOT.into()),
        ..Setup::default()
    })
    .await;
    let page = app.http.get(app.url("/login")).send().await.unwrap();
    let cookies = set_cookies(&page);
    let csrf = cookies
        .iter()
        .find(|c| c.starts_with("__Host-oxidp_csrf="))
        .unwrap_or_else(|| panic!("no __Host-oxidp_csrf among {cookies:?}"));
    // RFC 6265bis §4.1.3.2: Secure, Path=/ and no Domain, or the browser drops it.
    let attributes: Vec<&str> = csrf.split("; ").collect();
    assert!(attributes.contains(&"Secure"), "{csrf}");
    assert!(attributes.contains(&"Path=/"), "{csrf}");
    assert!(
        !attributes
            .iter()
            .any(|a| a.to_ascii_lowercase().starts_with("domain")),
        "{csrf}"
    );
    assert!(
        !cookies.iter().any(|c| c.starts_with("oxidp_")),
        "{cookies:?}"
    );

    // The whole sign-in works with the prefixed names, and the session comes back.
    let (login_cookies, back) = sign_in_by_hand(&app, "__Host-oxidp_csrf").await;
    let session = login_cookies
        .iter()
        .find(|c| c.starts_with("__Host-oxidp_session="))
        .unwrap_or_else(|| panic!("no __Host-oxidp_session among {login_cookies:?}"));
    for attribute in ["Secure", "Path=/", "HttpOnly"] {
        assert!(session.split("; ").any(|a| a == attribute), "{session}");
    }
    let location = back.headers()["location"].to_str().unwrap();
    assert!(
        location.starts_with(REDIRECT) && location.contains("code="),
        "{location}"
    );

    // A cookie under the old name, as a sibling subdomain could plant it, is not ours:
    // a CSRF token made from it is refused, and it signs nobody in.
    let planted = "A".repeat(43);
    let token = {
        // The token the attacker can compute for its own secret.
        let page = app
            .http
            .get(app.url("/login"))
            .header("cookie", format!("oxidp_csrf={planted}"))
            .send()
            .await
            .unwrap();
        let html = page.text().await.unwrap();
        hidden_input(&html, "csrf_token").unwrap_or_default()
    };
    let forged = app
        .http
        .post(app.url("/login"))
        .header("cookie", format!("oxidp_csrf={planted}"))
        .form(&[
            ("username", USER),
            ("password", PASSWORD),
            ("csrf_token", token.as_str()),
            ("req", ""),
        ])
        .send()
        .await
        .unwrap();
    assert!(
        !set_cookies(&forged)
            .iter()
            .any(|c| c.contains("oxidp_session=") && !c.contains("oxidp_session=;")),
        "a planted oxidp_csrf signed in: {:?}",
        set_cookies(&forged)
    );
    app.stop().await;
}

#[tokio::test]
async fn http_and_path_issuers_keep_the_plain_cookie_names() {
    for issuer in [None, Some("https://infra.example/idp".to_string())] {
        let mut app = App::spawn(Setup {
            issuer: issuer.clone(),
            ..Setup::default()
        })
        .await;
        let page = app.http.get(app.url("/login")).send().await.unwrap();
        let cookies = set_cookies(&page);
        assert!(
            cookies.iter().any(|c| c.starts_with("oxidp_csrf=")),
            "{issuer:?}: {cookies:?}"
        );
        assert!(
            !cookies.iter().any(|c| c.starts_with("__Host-")),
            "{issuer:?}: {cookies:?}"
        );
        app.stop().await;
    }
}

// ---------------------------------------------------------------------------------------
// form_post CSP
// ---------------------------------------------------------------------------------------

/// CSP3 §6.3.2 form-action: the auto-posting form must be allowed to reach the
/// redirect URI, also for a native app's private-use scheme (RFC 8252 §7.1).
#[tokio::test]
async fn form_post_csp_allows_the_redirect_target() {
    let mut app = App::spawn(Setup::default()).await;
    for (client, redirect, want) in [
        (NATIVE, NATIVE_REDIRECT, "form-action com.example.app:;"),
        (FIRST, REDIRECT, "form-action https://rp.example;"),
    ] {
        // An unsupported response_type is answered at the redirect URI, by form_post.
        let response = app
            .http
            .get(app.url("/authorize"))
            .query(&[
                ("client_id", client),
                ("redirect_uri", redirect),
                ("response_type", "token"),
                ("response_mode", "form_post"),
                ("scope", "openid"),
                ("state", "s"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{client}");
        let csp = response.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(csp.contains(want), "{client}: {csp}");
        assert!(!csp.contains("null"), "{client}: {csp}");
        let html = response.text().await.unwrap();
        assert!(html_decode(&html).contains(redirect), "{html}");
    }
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// Flood control
// ---------------------------------------------------------------------------------------

/// Loopback counted, three requests of burst, one more every ten seconds.
const TIGHT: &str =
    "flood_exempt_loopback = false\nflood_burst = 3\nflood_requests_per_second = 0.1\n";

async fn post_token(app: &App, forwarded_for: Option<&str>) -> reqwest::Response {
    let mut request = app
        .http
        .post(app.url("/token"))
        .form(&[("grant_type", "client_credentials")]);
    if let Some(f) = forwarded_for {
        request = request.header("x-forwarded-for", f);
    }
    request.send().await.unwrap()
}

async fn assert_json_429(response: reqwest::Response, what: &str) {
    assert_eq!(response.status(), 429, "{what}");
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1, "{what}: Retry-After {retry}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable", "{what}: {body}");
    assert!(body["error_description"].is_string(), "{what}: {body}");
}

#[tokio::test]
async fn flood_control_limits_each_address_in_the_routes_shape() {
    let mut app = App::spawn(Setup {
        ratelimit: TIGHT.into(),
        ..Setup::default()
    })
    .await;
    // Routes outside flood control are never limited.
    for _ in 0..10 {
        let jwks = app.http.get(app.url("/jwks.json")).send().await.unwrap();
        assert_eq!(jwks.status(), 200);
    }
    for i in 0..3 {
        let page = app.http.get(app.url("/login")).send().await.unwrap();
        assert_eq!(page.status(), 200, "login page {i}");
    }
    // The fourth: an HTML page, not a redirect, with Retry-After.
    let page = app.http.get(app.url("/login")).send().await.unwrap();
    assert_eq!(page.status(), 429);
    assert!(page.headers().contains_key("retry-after"));
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"),
        "{:?}",
        page.headers()
    );
    // The budget is the address's, across routes: /token and the JSON API answer in
    // their own shape. A forged X-Forwarded-For from an untrusted peer changes nothing.
    assert_json_429(post_token(&app, None).await, "/token").await;
    assert_json_429(post_token(&app, Some("203.0.113.7")).await, "/token XFF").await;
    let api = app
        .http
        .post(app.url("/api/v1/account/password-reset"))
        .json(&json!({"email": "alice@example.com"}))
        .send()
        .await
        .unwrap();
    assert_json_429(api, "account API").await;
    let jwks = app.http.get(app.url("/jwks.json")).send().await.unwrap();
    assert_eq!(jwks.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn flood_control_keys_by_the_address_behind_trusted_proxies() {
    let mut app = App::spawn(Setup {
        ratelimit: TIGHT.into(),
        server_extra: "trusted_proxies = [\"127.0.0.1\"]".into(),
        ..Setup::default()
    })
    .await;
    for _ in 0..3 {
        assert_ne!(post_token(&app, Some("203.0.113.7")).await.status(), 429);
    }
    assert_json_429(post_token(&app, Some("203.0.113.7")).await, "fourth").await;
    // Another end user behind the same proxy has its own budget.
    assert_ne!(post_token(&app, Some("203.0.113.8")).await.status(), 429);
    app.stop().await;
}

#[tokio::test]
async fn flood_control_exempts_loopback_by_default_and_can_be_turned_off() {
    for ratelimit in [
        "",
        "flood_control = false\nflood_exempt_loopback = false\nflood_burst = 1\n",
    ] {
        let mut app = App::spawn(Setup {
            ratelimit: ratelimit.into(),
            ..Setup::default()
        })
        .await;
        for i in 0..40 {
            let status = post_token(&app, None).await.status();
            assert_ne!(status, 429, "{ratelimit:?}: request {i}");
        }
        app.stop().await;
    }
}

#[test]
fn flood_settings_are_validated() {
    for (toml, key) in [
        (
            "[ratelimit]\nflood_requests_per_second = 0\n",
            "ratelimit.flood_requests_per_second",
        ),
        (
            "[ratelimit]\nflood_requests_per_second = -1.5\n",
            "ratelimit.flood_requests_per_second",
        ),
        ("[ratelimit]\nflood_burst = 0\n", "ratelimit.flood_burst"),
        (
            "[server]\nmetrics_bind = \"localhost\"\n",
            "server.metrics_bind",
        ),
        (
            "[server]\nbind = \"127.0.0.1:9000\"\nmetrics_bind = \"127.0.0.1:9000\"\n",
            "server.metrics_bind",
        ),
    ] {
        let e = oxidp::config::Config::from_sources(toml, Vec::new())
            .expect_err(toml)
            .to_string();
        assert!(e.contains(key), "{toml}: {e}");
        assert_eq!(e.lines().count(), 1, "{e}");
    }
    let ok = oxidp::config::Config::from_sources(
        "[ratelimit]\nflood_requests_per_second = 0.5\nflood_burst = 1\n\
         [server]\nmetrics_bind = \"127.0.0.1:9100\"\n",
        Vec::new(),
    );
    assert!(ok.is_ok(), "{ok:?}");
}

// ---------------------------------------------------------------------------------------
// Management listener
// ---------------------------------------------------------------------------------------

const PROBES: [&str; 3] = ["/metrics", "/healthz", "/readyz"];

#[tokio::test]
async fn metrics_bind_moves_the_probes_to_their_own_listener() {
    let mut app = App::spawn(Setup {
        server_extra: "metrics_bind = \"127.0.0.1:{mport}\"".into(),
        ..Setup::default()
    })
    .await;
    let management = format!(
        "http://127.0.0.1:{}",
        app.metrics_port.expect("a metrics port")
    );
    for path in PROBES {
        let public = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(public.status(), 404, "public {path}");
        let private = app
            .http
            .get(format!("{management}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(private.status(), 200, "management {path}");
    }
    // Only the probes are there; the public routes stay public.
    let other = app
        .http
        .get(format!("{management}/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
    let jwks = app.http.get(app.url("/jwks.json")).send().await.unwrap();
    assert_eq!(jwks.status(), 200);
    // The management listener counts the public traffic.
    let metrics = app
        .http
        .get(format!("{management}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("/jwks.json"), "{metrics}");
    app.stop().await;
}

#[tokio::test]
async fn without_metrics_bind_the_probes_stay_on_the_public_listener() {
    let mut app = App::spawn(Setup::default()).await;
    assert_eq!(app.metrics_port, None);
    for path in PROBES {
        let public = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(public.status(), 200, "public {path}");
    }
    app.stop().await;
}
