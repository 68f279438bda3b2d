//! Metrics after real traffic, and the hardened HTTP surface (docs/operations.md
//! "Response headers and limits" and "Metrics"): security headers on every hosted page
//! and on the form_post page, `Cache-Control: no-store` on every answer that carries a
//! token or personal data, HSTS only for an https issuer, a request id on every
//! response, and the body and header limits.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::HeaderMap;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{
    CLIENT, CLIENT_SECRET, Options, PASSWORD, REDIRECT, TestApp, TestDb, USER, flow_options,
    hidden_input, html_decode, query_param, spawn_app_with,
};

/// A first-party client allowed the password grant.
const FP: &str = "frontend";
/// A service client allowed client credentials.
const SVC: &str = "svc";
const SVC_SECRET: &str = "svc-secret-that-is-long-enough-0123456789";
const BODY_LIMIT: usize = 64 * 1024;

/// `flow_options()` plus a password-grant client, a client-credentials client and
/// `extra` TOML.
fn options(extra: &str) -> Options {
    let mut options = flow_options();
    options.extra_toml.push_str(&format!(
        r#"
[[clients]]
id = "{FP}"
secret = "{CLIENT_SECRET}"
first_party = true
grant_types = ["password", "refresh_token"]

[[clients]]
id = "{SVC}"
secret = "{SVC_SECRET}"
grant_types = ["client_credentials"]
scopes = ["api:read"]

{extra}
"#
    ));
    options
}

fn auth_url(app: &TestApp, extra: &str) -> String {
    app.url(&format!(
        "/authorize?response_type=code&client_id={CLIENT}&redirect_uri={REDIRECT}\
         &scope=openid%20profile&state=st{extra}"
    ))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().expect("ASCII header"))
}

fn location(response: &reqwest::Response) -> String {
    header(response.headers(), "location")
        .unwrap_or_else(|| panic!("no Location on {}", response.status()))
        .to_string()
}

/// Signs in and consents as USER for "rp"; returns the authorization code.
async fn code(app: &TestApp) -> String {
    let back = app.authorize(&auth_url(app, "")).await;
    query_param(&back, "code").unwrap_or_else(|| panic!("no code in {back}"))
}

async fn exchange(app: &TestApp, code: &str) -> reqwest::Response {
    app.token(
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
        ],
        Some((CLIENT, CLIENT_SECRET)),
    )
    .await
}

async fn password_grant(app: &TestApp, username: &str, password: &str) -> reqwest::Response {
    app.token(
        &[
            ("grant_type", "password"),
            ("username", username),
            ("password", password),
        ],
        Some((FP, CLIENT_SECRET)),
    )
    .await
}

// ---------------------------------------------------------------------------------------
// Metrics text
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The sample lines of Prometheus/OpenMetrics text (comments skipped). Label values
/// may hold escaped quotes and backslashes.
fn parse_metrics(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .unwrap_or_else(|| panic!("no value on {line:?}"));
        let name = line[..name_end].to_string();
        let mut labels = BTreeMap::new();
        let mut rest = &line[name_end..];
        if let Some(after) = rest.strip_prefix('{') {
            let mut chars = after.char_indices();
            let mut key = String::new();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '}' => {
                        end = Some(i);
                        break;
                    }
                    ',' => {}
                    '=' => {
                        assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line}");
                        let mut value = String::new();
                        loop {
                            match chars.next().map(|(_, c)| c) {
                                Some('\\') => match chars.next().map(|(_, c)| c) {
                                    Some('n') => value.push('\n'),
                                    Some(other) => value.push(other),
                                    None => panic!("unterminated label in {line}"),
                                },
                                Some('"') => break,
                                Some(other) => value.push(other),
                                None => panic!("unterminated label in {line}"),
                            }
                        }
                        labels.insert(std::mem::take(&mut key), value);
                    }
                    other => key.push(other),
                }
            }
            let end = end.unwrap_or_else(|| panic!("no closing brace in {line}"));
            rest = &after[end + 1..];
        }
        let value = rest
            .split_whitespace()
            .next()
            .unwrap_or_else(|| panic!("no value on {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|e| panic!("value {value:?} on {line:?}: {e}"));
        samples.push(Sample {
            name,
            labels,
            value,
        });
    }
    samples
}

struct Scrape {
    text: String,
    samples: Vec<Sample>,
}

impl Scrape {
    async fn take(app: &TestApp) -> Self {
        let response = app.get("/metrics").await;
        assert_eq!(response.status(), 200);
        assert!(
            header(response.headers(), "content-type")
                .unwrap_or_default()
                .starts_with("application/openmetrics-text"),
            "{:?}",
            response.headers()
        );
        let text = response.text().await.unwrap();
        assert_eq!(text.lines().last(), Some("# EOF"), "{text}");
        let samples = parse_metrics(&text);
        Self { text, samples }
    }

    /// The sample named `name` whose label set is exactly `labels`.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let found: Vec<f64> = self
            .samples
            .iter()
            .filter(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
            .collect();
        assert!(found.len() <= 1, "{name}{labels:?} twice:\n{}", self.text);
        found.first().copied()
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no sample {name}{labels:?} in:\n{}", self.text))
    }

    /// Every sample of `name`, as (labels, value).
    fn all(&self, name: &str) -> Vec<(&BTreeMap<String, String>, f64)> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| (&s.labels, s.value))
            .collect()
    }

    fn has_type(&self, family: &str, kind: &str) -> bool {
        self.text
            .lines()
            .any(|l| l == format!("# TYPE {family} {kind}"))
    }
}

#[tokio::test]
async fn metrics_count_tokens_failures_and_refusals_and_report_every_gauge() {
    let app = spawn_app_with(options("")).await;

    // Before any traffic: the families exist, without series.
    let before = Scrape::take(&app).await;
    assert!(before.all("oxidp_tokens_issued_total").is_empty());
    assert!(before.all("oxidp_login_failures_total").is_empty());
    assert!(before.all("oxidp_ratelimit_rejections_total").is_empty());

    // Code flow, code exchange, refresh.
    let code = code(&app).await;
    let response = exchange(&app, &code).await;
    assert_eq!(response.status(), 200);
    let tokens: Value = response.json().await.unwrap();
    let refresh = tokens["refresh_token"].as_str().expect("refresh_token");
    let response = app
        .token(
            &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
            Some((CLIENT, CLIENT_SECRET)),
        )
        .await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());

    // Client credentials.
    let response = app
        .token(
            &[("grant_type", "client_credentials")],
            Some((SVC, SVC_SECRET)),
        )
        .await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());

    // Password grant: one success, one unknown user, five wrong passwords (the
    // per-username limit), then a refusal even with the right password.
    assert_eq!(password_grant(&app, USER, PASSWORD).await.status(), 200);
    assert_eq!(
        password_grant(&app, "nobody-here", "whatever it is")
            .await
            .status(),
        400
    );
    for i in 0..5 {
        assert_eq!(
            password_grant(&app, USER, "wrong password!").await.status(),
            400,
            "failure {i}"
        );
    }
    let limited = password_grant(&app, USER, PASSWORD).await;
    assert_eq!(limited.status(), 429);

    let m = Scrape::take(&app).await;
    let tokens = "oxidp_tokens_issued_total";
    assert!(m.has_type("oxidp_tokens_issued", "counter"), "{}", m.text);
    assert_eq!(
        m.value(tokens, &[("grant_type", "authorization_code")]),
        1.0
    );
    assert_eq!(m.value(tokens, &[("grant_type", "refresh_token")]), 1.0);
    assert_eq!(
        m.value(tokens, &[("grant_type", "client_credentials")]),
        1.0
    );
    assert_eq!(m.value(tokens, &[("grant_type", "password")]), 1.0);
    assert_eq!(m.all(tokens).len(), 4, "{}", m.text);

    let failures = "oxidp_login_failures_total";
    assert!(m.has_type("oxidp_login_failures", "counter"), "{}", m.text);
    assert_eq!(m.value(failures, &[("reason", "bad_password")]), 5.0);
    assert_eq!(m.value(failures, &[("reason", "unknown_user")]), 1.0);
    // The refused attempt never reached the password check: no third reason, no sixth
    // bad password.
    assert_eq!(m.all(failures).len(), 2, "{}", m.text);

    let refusals = "oxidp_ratelimit_rejections_total";
    assert!(
        m.has_type("oxidp_ratelimit_rejections", "counter"),
        "{}",
        m.text
    );
    assert_eq!(m.value(refusals, &[("route", "/token")]), 1.0);
    assert_eq!(m.all(refusals).len(), 1, "{}", m.text);

    // Requests at /token by status: 4 tokens, 6 failures, 1 refusal.
    let requests = "oxidp_http_requests_total";
    let token_requests = |status: &str| {
        m.value(
            requests,
            &[("route", "/token"), ("method", "POST"), ("status", status)],
        )
    };
    assert_eq!(token_requests("200"), 4.0);
    assert_eq!(token_requests("400"), 6.0);
    assert_eq!(token_requests("429"), 1.0);
    // The latency histogram agrees: 11 observations, cumulative buckets.
    let duration = "oxidp_http_request_duration_seconds";
    assert!(m.has_type(duration, "histogram"), "{}", m.text);
    assert_eq!(
        m.value(&format!("{duration}_count"), &[("route", "/token")]),
        11.0
    );
    assert!(m.value(&format!("{duration}_sum"), &[("route", "/token")]) > 0.0);
    let mut buckets: Vec<(f64, f64)> = m
        .all(&format!("{duration}_bucket"))
        .into_iter()
        .filter(|(labels, _)| labels.get("route").map(String::as_str) == Some("/token"))
        .map(|(labels, v)| (labels["le"].parse::<f64>().unwrap(), v))
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert_eq!(buckets.len(), 17, "16 buckets and +Inf: {buckets:?}");
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");
    assert_eq!(buckets.last(), Some(&(f64::INFINITY, 11.0)));

    // Gauges, read at scrape time.
    for gauge in [
        "oxidp_argon2_queue_depth",
        "oxidp_db_pool_connections",
        "oxidp_db_pool_idle_connections",
        "oxidp_signing_key_age_seconds",
        "oxidp_audit_queue_depth",
        "oxidp_audit_events_dropped",
    ] {
        assert!(m.has_type(gauge, "gauge"), "{gauge}:\n{}", m.text);
        let v = m.value(gauge, &[]);
        assert!(v >= 0.0 && v.fract() == 0.0, "{gauge} = {v}");
    }
    // Nothing is being hashed now.
    assert_eq!(m.value("oxidp_argon2_queue_depth", &[]), 0.0);
    // The pool has at least the connection that answered, at most max_connections (5).
    let open = m.value("oxidp_db_pool_connections", &[]);
    assert!((1.0..=5.0).contains(&open), "pool connections {open}");
    let idle = m.value("oxidp_db_pool_idle_connections", &[]);
    assert!(idle <= open, "idle {idle} > open {open}");
    // The key was activated when this server first started, seconds ago.
    let age = m.value("oxidp_signing_key_age_seconds", &[]);
    assert!((0.0..300.0).contains(&age), "key age {age}");
    assert!(m.value("oxidp_audit_queue_depth", &[]) <= 10_000.0);
    assert_eq!(m.value("oxidp_audit_events_dropped", &[]), 0.0);

    // The key ages while nothing else happens.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let later = Scrape::take(&app).await;
    let older = later.value("oxidp_signing_key_age_seconds", &[]);
    assert!(older >= age + 1.0, "key age {age} then {older}");
    // Scraping changed no counter of tokens or failures.
    assert_eq!(
        later.value(tokens, &[("grant_type", "password")]),
        1.0,
        "{}",
        later.text
    );
    assert_eq!(later.value(failures, &[("reason", "bad_password")]), 5.0);
}

#[tokio::test]
async fn sign_in_failures_on_the_login_page_are_counted_and_its_429_under_its_route() {
    let app = spawn_app_with(options("")).await;
    let response = app.http.get(auth_url(&app, "")).send().await.unwrap();
    let login = app.get(&location(&response)).await.text().await.unwrap();
    let csrf = hidden_input(&login, "csrf_token").expect("csrf_token");
    let req = hidden_input(&login, "req").expect("req");
    let submit = |username: &'static str, password: &'static str| {
        app.http.post(app.url("/login")).form(&[
            ("username", username),
            ("password", password),
            ("csrf_token", csrf.as_str()),
            ("req", req.as_str()),
        ])
    };

    assert_eq!(
        submit("nobody-here", "whatever it is")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    for i in 0..5 {
        let response = submit(USER, "wrong password!").send().await.unwrap();
        assert_eq!(response.status(), 200, "failure {i}");
    }
    let limited = submit(USER, PASSWORD).send().await.unwrap();
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key("retry-after"));
    // The refusal is a hosted page like any other.
    assert_page("login page 429", limited.headers());

    let m = Scrape::take(&app).await;
    let failures = "oxidp_login_failures_total";
    assert_eq!(m.value(failures, &[("reason", "bad_password")]), 5.0);
    assert_eq!(m.value(failures, &[("reason", "unknown_user")]), 1.0);
    assert_eq!(m.all(failures).len(), 2, "{}", m.text);
    let refusals = "oxidp_ratelimit_rejections_total";
    assert_eq!(m.value(refusals, &[("route", "/login")]), 1.0);
    assert_eq!(m.all(refusals).len(), 1, "{}", m.text);
    assert_eq!(
        m.value(
            "oxidp_http_requests_total",
            &[("route", "/login"), ("method", "POST"), ("status", "429")]
        ),
        1.0
    );
    // No token was issued by any of it.
    assert!(m.all("oxidp_tokens_issued_total").is_empty(), "{}", m.text);
}

// ---------------------------------------------------------------------------------------
// Page headers
// ---------------------------------------------------------------------------------------

/// A Content-Security-Policy as directive → sources.
fn csp_directives(csp: &str) -> BTreeMap<String, Vec<String>> {
    csp.split(';')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| {
            let mut parts = d.split_whitespace();
            let name = parts.next().unwrap().to_ascii_lowercase();
            (name, parts.map(str::to_string).collect())
        })
        .collect()
}

/// The headers every hosted page carries, whatever its status; returns the parsed CSP.
fn assert_hardened_html(what: &str, headers: &HeaderMap) -> BTreeMap<String, Vec<String>> {
    let content_type = header(headers, "content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/html"),
        "{what}: content-type {content_type:?}"
    );
    let policies: Vec<_> = headers.get_all("content-security-policy").iter().collect();
    assert_eq!(policies.len(), 1, "{what}: {policies:?}");
    let csp = policies[0].to_str().unwrap();
    assert!(csp.contains("default-src 'none'"), "{what}: {csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    assert!(!csp.contains("'unsafe-inline'"), "{what}: {csp}");
    assert!(!csp.contains("'unsafe-eval'"), "{what}: {csp}");
    let directives = csp_directives(csp);
    assert_eq!(directives["default-src"], ["'none'"], "{what}: {csp}");
    assert_eq!(directives["frame-ancestors"], ["'none'"], "{what}: {csp}");
    assert_eq!(
        header(headers, "x-frame-options"),
        Some("DENY"),
        "{what}: {headers:?}"
    );
    assert_eq!(
        header(headers, "x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(
        header(headers, "referrer-policy"),
        Some("no-referrer"),
        "{what}"
    );
    assert_eq!(header(headers, "cache-control"), Some("no-store"), "{what}");
    directives
}

/// A hosted page: hardened, and with no script allowed at all.
fn assert_page(what: &str, headers: &HeaderMap) {
    let directives = assert_hardened_html(what, headers);
    for scripting in ["script-src", "script-src-elem", "script-src-attr"] {
        assert!(
            !directives.contains_key(scripting),
            "{what}: pages run no script: {directives:?}"
        );
    }
}

/// GETs `path` in the app's browser, expects `status`, checks the page headers and
/// returns the HTML.
async fn page(app: &TestApp, path: &str, status: u16) -> String {
    let response = app.get(path).await;
    let headers = response.headers().clone();
    let got = response.status().as_u16();
    let html = response.text().await.unwrap();
    assert_eq!(got, status, "{path}: {html}");
    assert_page(path, &headers);
    assert!(html.contains("<html"), "{path}: {html}");
    html
}

/// A redirect (not a page): the headers every response has, and where it goes.
async fn redirect(app: &TestApp, path: &str) -> String {
    let response = app.get(path).await;
    assert!(
        response.status().is_redirection(),
        "{path}: {}",
        response.status()
    );
    let headers = response.headers();
    assert_eq!(header(headers, "x-content-type-options"), Some("nosniff"));
    assert_eq!(header(headers, "referrer-policy"), Some("no-referrer"));
    location(&response)
}

#[tokio::test]
async fn every_hosted_page_carries_the_security_headers() {
    let app = spawn_app_with(options("")).await;

    // Signed out.
    let login_path = redirect(&app, &auth_url(&app, "")[app.address.len()..]).await;
    assert!(login_path.starts_with("/login?req="), "{login_path}");
    let login = page(&app, &login_path, 200).await;
    let csrf = hidden_input(&login, "csrf_token").expect("csrf_token");
    let req = hidden_input(&login, "req").expect("req");
    page(&app, "/login", 200).await;
    page(&app, "/login?req=no-such-request", 400).await;
    page(&app, "/consent", 400).await;
    page(&app, "/register", 200).await;
    page(&app, "/forgot-password", 200).await;
    page(&app, "/reset-password?token=x", 400).await;
    page(&app, "/verify-email?token=x", 400).await;
    // Unknown client: an error page, never a redirect.
    page(
        &app,
        &format!(
            "/authorize?response_type=code&client_id=no-such-client&redirect_uri={REDIRECT}\
             &scope=openid"
        ),
        400,
    )
    .await;
    // The account pages send a signed-out browser to the (hardened) login page.
    for path in ["/account", "/account/sessions"] {
        let to = redirect(&app, path).await;
        assert_eq!(to, "/login", "{path}");
        page(&app, &to, 200).await;
    }
    // Logout without a session: the "signed out" page.
    page(&app, "/logout", 200).await;

    // A failed sign-in re-renders the login page.
    let response = app
        .http
        .post(app.url("/login"))
        .form(&[
            ("username", USER),
            ("password", "wrong password!"),
            ("csrf_token", &csrf),
            ("req", &req),
        ])
        .send()
        .await
        .unwrap();
    let headers = response.headers().clone();
    let status = response.status();
    let html = response.text().await.unwrap();
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Incorrect username or password"), "{html}");
    assert_page("failed sign-in", &headers);
    // A form with a bad CSRF token: the "form has expired" page.
    let response = app
        .http
        .post(app.url("/login"))
        .form(&[
            ("username", USER),
            ("password", PASSWORD),
            ("csrf_token", "forged"),
            ("req", &req),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_page("expired form", response.headers());

    // Sign in: on to the consent page.
    let response = app
        .http
        .post(app.url("/login"))
        .form(&[
            ("username", USER),
            ("password", PASSWORD),
            ("csrf_token", &csrf),
            ("req", &req),
        ])
        .send()
        .await
        .unwrap();
    let mut next = location(&response);
    while !next.starts_with("/consent") {
        assert!(next.starts_with('/'), "left oxidp before consent: {next}");
        next = redirect(&app, &next).await;
    }
    let consent = page(&app, &next, 200).await;
    let response = app
        .http
        .post(app.url("/consent"))
        .form(&[
            ("decision", "allow"),
            ("csrf_token", &hidden_input(&consent, "csrf_token").unwrap()),
            ("req", &hidden_input(&consent, "req").unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert!(location(&response).starts_with(REDIRECT));

    // Signed in.
    page(&app, "/account", 200).await;
    page(&app, "/account/sessions", 200).await;
    let confirmation = page(&app, "/logout", 200).await;
    assert!(
        confirmation.contains("name=\"decision\""),
        "not the confirmation page: {confirmation}"
    );

    // Unknown routes answer JSON, not HTML: nothing for a browser to render.
    let response = app.get("/no/such/page").await;
    assert_eq!(response.status(), 404);
    assert!(
        header(response.headers(), "content-type")
            .unwrap_or_default()
            .starts_with("application/json")
    );
    assert_eq!(
        header(response.headers(), "x-content-type-options"),
        Some("nosniff")
    );
    assert_eq!(
        header(response.headers(), "referrer-policy"),
        Some("no-referrer")
    );

    // The HTML 404: sign-up when registration is closed.
    let closed = spawn_app_with(options("[accounts]\nallow_registration = false\n")).await;
    page(&closed, "/register", 404).await;
}

#[tokio::test]
async fn the_form_post_page_runs_only_its_nonced_script_and_posts_only_to_the_client() {
    let app = spawn_app_with(options("")).await;
    // Sign in and consent first, so that form_post answers at once.
    app.authorize(&auth_url(&app, "")).await;

    let mut nonces = Vec::new();
    for (redirect_uri, origin) in [
        (REDIRECT, "https://rp.example"),
        (REDIRECT, "https://rp.example"),
        ("http://127.0.0.1/native", "http://127.0.0.1"),
    ] {
        let url = app.url(&format!(
            "/authorize?response_type=code&client_id={CLIENT}&redirect_uri={redirect_uri}\
             &scope=openid%20profile&state=st&response_mode=form_post"
        ));
        let response = app.http.get(url).send().await.unwrap();
        assert_eq!(
            response.status(),
            200,
            "{redirect_uri}: {:?}",
            response.headers().get("location")
        );
        let headers = response.headers().clone();
        let html = response.text().await.unwrap();
        let directives = assert_hardened_html("form_post", &headers);

        let script = &directives["script-src"];
        assert_eq!(script.len(), 1, "one source only: {directives:?}");
        let nonce = script[0]
            .strip_prefix("'nonce-")
            .and_then(|n| n.strip_suffix('\''))
            .unwrap_or_else(|| panic!("not a nonce source: {script:?}"));
        assert!(nonce.len() >= 22, "short nonce {nonce:?}");
        assert!(
            nonce
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{nonce:?}"
        );
        assert_eq!(directives["form-action"], [origin], "{directives:?}");
        for scripting in ["script-src-elem", "script-src-attr"] {
            assert!(!directives.contains_key(scripting), "{directives:?}");
        }

        // The one script in the body carries that nonce; no inline handlers.
        assert_eq!(html.matches("<script").count(), 1, "{html}");
        let marker = "<script nonce=\"";
        let start = html.find(marker).expect("a nonced script") + marker.len();
        let body_nonce = &html[start..start + html[start..].find('"').unwrap()];
        assert_eq!(body_nonce, nonce);
        assert!(!html.contains(" onload="), "{html}");
        assert!(
            html_decode(&html).contains(&format!("action=\"{redirect_uri}\"")),
            "{html}"
        );
        assert!(hidden_input(&html, "code").is_some(), "{html}");
        nonces.push(nonce.to_string());
    }
    // A fresh nonce per response.
    assert_ne!(nonces[0], nonces[1]);
    assert_ne!(nonces[1], nonces[2]);
}

// ---------------------------------------------------------------------------------------
// Cache-Control
// ---------------------------------------------------------------------------------------

fn assert_no_store(what: &str, response: &reqwest::Response) {
    assert_eq!(
        header(response.headers(), "cache-control"),
        Some("no-store"),
        "{what} ({}): {:?}",
        response.status(),
        response.headers()
    );
}

#[tokio::test]
async fn answers_with_tokens_or_personal_data_are_never_stored() {
    let app = spawn_app_with(options("")).await;
    let code = code(&app).await;

    let response = exchange(&app, &code).await;
    assert_eq!(response.status(), 200);
    assert_no_store("/token success", &response);
    let tokens: Value = response.json().await.unwrap();
    let access = tokens["access_token"].as_str().unwrap().to_string();

    // An unknown code: invalid_grant.
    let response = exchange(&app, "no-such-code").await;
    assert_eq!(response.status(), 400);
    assert_no_store("/token invalid_grant", &response);
    // A wrong secret: invalid_client.
    let response = app
        .token(
            &[("grant_type", "client_credentials")],
            Some((SVC, "not the secret")),
        )
        .await;
    assert_eq!(response.status(), 401);
    assert_no_store("/token invalid_client", &response);
    // A refused password grant.
    let response = password_grant(&app, USER, "wrong password!").await;
    assert_eq!(response.status(), 400);
    assert_no_store("/token password failure", &response);

    let bearer = format!("Bearer {access}");
    let response = app
        .http
        .get(app.url("/userinfo"))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_no_store("/userinfo", &response);
    let response = app.get("/userinfo").await;
    assert_eq!(response.status(), 401);
    assert_no_store("/userinfo without a token", &response);

    let response = app
        .http
        .post(app.url("/introspect"))
        .basic_auth(CLIENT, Some(CLIENT_SECRET))
        .form(&[("token", access.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_no_store("/introspect", &response);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["active"], true);

    let response = app
        .http
        .get(app.url("/api/v1/account/me"))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_no_store("/api/v1/account/me", &response);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["username"], USER);
    let response = app.get("/api/v1/account/me").await;
    assert_eq!(response.status(), 401);
    assert_no_store("/api/v1/account/me without a token", &response);

    for path in [
        "/api/v1/admin/users",
        "/api/v1/admin/clients",
        "/api/v1/admin/keys",
        "/api/v1/admin/audit",
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 401, "{path}");
        assert_no_store(path, &response);
        assert!(
            header(response.headers(), "www-authenticate")
                .unwrap_or_default()
                .starts_with("Bearer"),
            "{path}"
        );
        // A token without the admin scope: 403, not stored either.
        let response = app
            .http
            .get(app.url(path))
            .header("authorization", &bearer)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{path}");
        assert_no_store(path, &response);
    }
}

// ---------------------------------------------------------------------------------------
// HSTS
// ---------------------------------------------------------------------------------------

const HTTPS_ISSUER: &str = "https://id.hardening.example";

/// A server whose issuer is https (the test helpers always use an http one). The
/// server itself speaks plain HTTP, as behind a TLS-terminating proxy.
struct HttpsApp {
    address: String,
    http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    // Dropped last: the database outlives the server.
    _db: TestDb,
    _dir: tempfile::TempDir,
}

impl HttpsApp {
    async fn spawn() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = TestDb::new(dir.path()).await;
        for attempt in 0.. {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .unwrap();
            let text = format!(
                r#"
[server]
bind = "127.0.0.1:{port}"
issuer = "{HTTPS_ISSUER}"
shutdown_timeout_seconds = 5

[database]
url = "{db_url}"
max_connections = 5

[keys]
dir = "{keys}"

[email]
outbox_dir = "{outbox}"

[[clients]]
id = "{CLIENT}"
secret = "{CLIENT_SECRET}"
redirect_uris = ["{REDIRECT}"]
"#,
                db_url = db.url,
                keys = dir.path().join("keys").display(),
                outbox = dir.path().join("outbox").display(),
            );
            let config =
                oxidp::config::Config::from_sources(&text, Vec::new()).expect("valid config");
            match oxidp::startup::Application::build(config).await {
                Ok(app) => {
                    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                    let server = tokio::spawn(app.run_until(async move {
                        let _ = rx.await;
                    }));
                    return Self {
                        address: format!("http://127.0.0.1:{port}"),
                        http: reqwest::Client::builder()
                            .redirect(reqwest::redirect::Policy::none())
                            .build()
                            .unwrap(),
                        stop: Some(tx),
                        server: Some(server),
                        _db: db,
                        _dir: dir,
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

/// One request of each kind: (what, method, path, body).
fn assorted_requests() -> Vec<(&'static str, &'static str, String, Option<String>)> {
    vec![
        ("healthz", "GET", "/healthz".into(), None),
        ("readyz", "GET", "/readyz".into(), None),
        ("404", "GET", "/no/such/path".into(), None),
        ("405", "DELETE", "/healthz".into(), None),
        (
            "discovery",
            "GET",
            "/.well-known/openid-configuration".into(),
            None,
        ),
        ("jwks", "GET", "/jwks.json".into(), None),
        ("metrics", "GET", "/metrics".into(), None),
        ("stylesheet", "GET", "/assets/oxidp.css".into(), None),
        ("login page", "GET", "/login".into(), None),
        ("account redirect", "GET", "/account".into(), None),
        (
            "authorize error page",
            "GET",
            "/authorize?client_id=no-such-client".into(),
            None,
        ),
        (
            "token error",
            "POST",
            "/token".into(),
            Some("grant_type=client_credentials".into()),
        ),
        (
            "413",
            "POST",
            "/token".into(),
            Some("a".repeat(BODY_LIMIT + 1024)),
        ),
        ("userinfo 401", "GET", "/userinfo".into(), None),
        ("admin 401", "GET", "/api/v1/admin/users".into(), None),
    ]
}

async fn send(
    http: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    body: Option<&String>,
    request_id: Option<&str>,
) -> reqwest::Response {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = http.request(method, format!("{base}{path}"));
    if let Some(body) = body {
        request = request
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.clone());
    }
    if let Some(id) = request_id {
        request = request.header("x-request-id", id);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn hsts_only_with_an_https_issuer_and_then_on_every_response() {
    let plain = spawn_app_with(flow_options()).await;
    for (what, method, path, body) in assorted_requests() {
        let response = send(
            &plain.http,
            &plain.address,
            method,
            &path,
            body.as_ref(),
            None,
        )
        .await;
        assert!(
            !response.headers().contains_key("strict-transport-security"),
            "http issuer, {what}: {:?}",
            response.headers()
        );
    }

    let mut app = HttpsApp::spawn().await;
    let discovery: Value = app
        .http
        .get(app.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["issuer"], HTTPS_ISSUER);
    let mut statuses = Vec::new();
    for (what, method, path, body) in assorted_requests() {
        let response = send(&app.http, &app.address, method, &path, body.as_ref(), None).await;
        statuses.push((what, response.status().as_u16()));
        let values: Vec<_> = response
            .headers()
            .get_all("strict-transport-security")
            .iter()
            .collect();
        assert_eq!(
            values,
            ["max-age=31536000"],
            "https issuer, {what} ({}): {:?}",
            response.status(),
            response.headers()
        );
    }
    // The list really covered successes, redirects, client errors and the limits.
    let status_of = |what: &str| statuses.iter().find(|(w, _)| *w == what).unwrap().1;
    assert_eq!(status_of("healthz"), 200);
    assert_eq!(status_of("404"), 404);
    assert_eq!(status_of("405"), 405);
    assert_eq!(status_of("413"), 413);
    assert_eq!(status_of("login page"), 200);
    assert!((300..400).contains(&status_of("account redirect")));
    assert_eq!(status_of("authorize error page"), 400);
    assert_eq!(status_of("token error"), 401);

    // Behind https, the pages' cookies are Secure as well.
    let login = app.http.get(app.url("/login")).send().await.unwrap();
    let cookies: Vec<&str> = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(!cookies.is_empty());
    for cookie in cookies {
        for attribute in ["Secure", "HttpOnly", "SameSite=Lax"] {
            assert!(
                cookie.split("; ").any(|a| a == attribute),
                "{attribute}: {cookie}"
            );
        }
    }
    let login = plain.get("/login").await;
    for cookie in login.headers().get_all("set-cookie") {
        let cookie = cookie.to_str().unwrap();
        assert!(!cookie.split("; ").any(|a| a == "Secure"), "{cookie}");
    }
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// Request ids
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn every_response_carries_a_request_id_generated_or_echoed() {
    let app = spawn_app_with(flow_options()).await;
    let mut generated = std::collections::HashSet::new();
    for (i, (what, method, path, body)) in assorted_requests().into_iter().enumerate() {
        // None sent: a fresh UUID v4.
        let response = send(&app.http, &app.address, method, &path, body.as_ref(), None).await;
        let status = response.status();
        let id = header(response.headers(), "x-request-id")
            .unwrap_or_else(|| panic!("{what} ({status}): no x-request-id"))
            .to_string();
        let uuid = uuid::Uuid::parse_str(&id)
            .unwrap_or_else(|e| panic!("{what} ({status}): {id:?} is no UUID: {e}"));
        assert_eq!(uuid.get_version_num(), 4, "{what}: {id}");
        assert!(generated.insert(id.clone()), "{what}: {id} reused");
        if what == "413" {
            assert_eq!(status, 413);
        }
        if what == "404" {
            assert_eq!(status, 404);
        }

        // One sent: echoed unchanged.
        let sent = format!("hardening-{i}-{}", what.replace(' ', "-"));
        let response = send(
            &app.http,
            &app.address,
            method,
            &path,
            body.as_ref(),
            Some(&sent),
        )
        .await;
        let status = response.status();
        let values: Vec<_> = response.headers().get_all("x-request-id").iter().collect();
        assert_eq!(values, [sent.as_str()], "{what} ({status})");
    }
}

// ---------------------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------------------

/// `pairs` form-encoded, padded with `padN` parameters (each shorter than the 4096
/// bytes a parameter value may have) to exactly `len` bytes.
fn padded_form(pairs: &[(&str, &str)], len: usize) -> String {
    let mut body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    for i in 0.. {
        let name = format!("&pad{i}=");
        assert!(body.len() + name.len() <= len);
        body.push_str(&name);
        let value = (len - body.len()).min(4000);
        body.push_str(&"a".repeat(value));
        if body.len() == len {
            break;
        }
    }
    body
}

/// Sends raw bytes on a new connection and reads the answer until the server closes.
async fn raw(app: &TestApp, request: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .unwrap();
    // The server may answer (and close) before it has read everything.
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer within 10 s");
    String::from_utf8_lossy(&answer).into_owned()
}

fn raw_status(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"))
}

#[tokio::test]
async fn a_body_over_64_kib_is_refused_with_413_and_changes_nothing() {
    let app = spawn_app_with(options("")).await;
    let code = code(&app).await;
    let exchange_pairs = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
    ];

    // A complete, valid code exchange, padded to 65 KiB.
    let body = padded_form(&exchange_pairs, 65 * 1024);
    let response = app
        .http
        .post(app.url("/token"))
        .basic_auth(CLIENT, Some(CLIENT_SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert!(response.headers().contains_key("x-request-id"));
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"], "invalid_request", "{error}");

    // The same without Content-Length (chunked): refused all the same.
    let chunk = padded_form(&exchange_pairs, 65 * 1024);
    let auth = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT}:{CLIENT_SECRET}"))
    };
    let mut request = format!(
        "POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {auth}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n"
    )
    .into_bytes();
    for part in chunk.as_bytes().chunks(8 * 1024) {
        request.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        request.extend_from_slice(part);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let answer = raw(&app, &request).await;
    assert_eq!(raw_status(&answer), 413, "{answer}");

    // Nothing was issued, and the code is still unused: the handler never ran.
    let m = Scrape::take(&app).await;
    assert_eq!(
        m.get(
            "oxidp_tokens_issued_total",
            &[("grant_type", "authorization_code")]
        ),
        None
    );
    let response = exchange(&app, &code).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());

    // Exactly 64 KiB is within the limit: the endpoint answers on the merits.
    let body = padded_form(
        &[
            ("grant_type", "authorization_code"),
            ("code", "no-such-code"),
            ("redirect_uri", REDIRECT),
        ],
        BODY_LIMIT,
    );
    let response = app
        .http
        .post(app.url("/token"))
        .basic_auth(CLIENT, Some(CLIENT_SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"], "invalid_grant", "{error}");

    // A JSON API: an oversized sign-up creates no account.
    let users = app.store.list_users().await.unwrap().len();
    let sign_up = serde_json::json!({
        "username": "bigbody",
        "email": "bigbody@example.com",
        "password": "quiet meadow lantern 42",
        "name": "x".repeat(65 * 1024),
    });
    let response = app
        .http
        .post(app.url("/api/v1/account/register"))
        .json(&sign_up)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(app.store.list_users().await.unwrap().len(), users);
}

#[tokio::test]
async fn too_many_header_fields_get_a_4xx_and_the_server_keeps_answering() {
    let app = spawn_app_with(flow_options()).await;

    let mut request = app.http.get(app.url("/healthz"));
    for i in 0..200 {
        request = request.header(format!("x-filler-{i}"), "v");
    }
    let status = match request.send().await {
        Ok(response) => response.status().as_u16(),
        Err(e) => panic!("no answer to 200 header fields: {e}"),
    };
    assert!(
        status == 431 || status == 400,
        "200 header fields: {status}"
    );

    // The same on a raw connection, to see the exact answer.
    let mut raw_request = String::from("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for i in 0..200 {
        raw_request.push_str(&format!("X-Filler-{i}: v\r\n"));
    }
    raw_request.push_str("Connection: close\r\n\r\n");
    let answer = raw(&app, raw_request.as_bytes()).await;
    let status = raw_status(&answer);
    assert!(status == 431 || status == 400, "{answer}");

    // One header field of 1 MiB, beyond the HTTP library's buffer: refused too.
    let answer = raw(
        &app,
        format!(
            "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Huge: {}\r\nConnection: close\r\n\r\n",
            "h".repeat(1024 * 1024)
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(raw_status(&answer), 431, "{answer}");

    // 100 fields are still fine (the documented ceiling, minus what reqwest adds).
    let mut request = app.http.get(app.url("/healthz"));
    for i in 0..90 {
        request = request.header(format!("x-filler-{i}"), "v");
    }
    assert_eq!(request.send().await.unwrap().status(), 200);

    // The server is unharmed.
    for _ in 0..3 {
        assert_eq!(app.get("/healthz").await.status(), 200);
    }
    assert_eq!(app.get("/readyz").await.status(), 200);
}
