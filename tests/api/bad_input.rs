//! Bad input, endpoint by endpoint, as tables: each case gets its standard error in its
//! endpoint's shape (page, redirect, JSON, `WWW-Authenticate`), nothing stored changes,
//! and no request a client can send produces a 5xx or a panic.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use openidconnect::PkceCodeChallenge;
use reqwest::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, LOCATION, SET_COOKIE, WWW_AUTHENTICATE,
};
use serde_json::Value;
use sqlx::Connection;

use crate::helpers::{
    CLIENT, CLIENT_SECRET, PASSWORD, PUBLIC_CLIENT, REDIRECT, TestApp, USER, flow_options,
    hidden_input, query_param, spawn_app_with, spawn_flow_app,
};

const FORM: &str = "application/x-www-form-urlencoded";
const BAD_CREDENTIALS: &str = "Incorrect username or password.";

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// An `Authorization: Basic` value, id and secret form-encoded first (RFC 6749 §2.3.1).
fn basic(id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", enc(id), enc(secret)))
    )
}

/// Row counts of everything a request can store; compared before and after a bad
/// request, they show it stored nothing (DESIGN.md "Errors and bad input").
const STORED: [&str; 10] = [
    "SELECT COUNT(*) FROM browser_sessions",
    "SELECT COUNT(*) FROM browser_sessions WHERE ended_at IS NULL",
    "SELECT COUNT(*) FROM authorization_requests",
    "SELECT COUNT(*) FROM authorization_requests WHERE completed_at IS NULL",
    "SELECT COUNT(*) FROM authorization_codes",
    "SELECT COUNT(*) FROM authorization_codes WHERE used_at IS NULL",
    "SELECT COUNT(*) FROM consents",
    "SELECT COUNT(*) FROM revocations",
    "SELECT COUNT(*) FROM refresh_tokens",
    "SELECT COUNT(*) FROM refresh_tokens WHERE used_at IS NULL AND revoked_at IS NULL",
];

/// A connection of the test's own to the server's database, for the snapshots.
enum Peek {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl Peek {
    async fn open(app: &TestApp) -> Self {
        if app.db.url.starts_with("sqlite") {
            Self::Sqlite(sqlx::SqliteConnection::connect(&app.db.url).await.unwrap())
        } else {
            Self::Postgres(sqlx::PgConnection::connect(&app.db.url).await.unwrap())
        }
    }

    async fn stored(&mut self) -> Vec<(&'static str, i64)> {
        let mut out = Vec::with_capacity(STORED.len());
        for q in STORED {
            let n: i64 = match self {
                Self::Sqlite(c) => sqlx::query_scalar(q).fetch_one(c).await.unwrap(),
                Self::Postgres(c) => sqlx::query_scalar(q).fetch_one(c).await.unwrap(),
            };
            out.push((q, n));
        }
        out
    }
}

fn header(response: &reqwest::Response, name: reqwest::header::HeaderName) -> String {
    response
        .headers()
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default()
}

fn sets_session_cookie(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .any(|v| v.as_bytes().starts_with(b"oxidp_session="))
}

/// An HTML error page with `status` and no redirect; returns the page.
async fn assert_page(response: reqwest::Response, status: u16, case: &str) -> String {
    assert_eq!(response.status(), status, "{case}");
    assert!(
        response.headers().get(LOCATION).is_none(),
        "{case}: a page was expected, got a redirect to {}",
        header(&response, LOCATION)
    );
    let content_type = header(&response, CONTENT_TYPE);
    assert!(
        content_type.starts_with("text/html"),
        "{case}: content-type {content_type}"
    );
    response.text().await.unwrap()
}

/// An authorization error response (RFC 6749 §4.1.2.1, RFC 9207): 303 to the client's
/// redirect URI with `error`, the request's `state` (when `state` is given) and `iss`.
fn assert_redirect_error(
    app: &TestApp,
    response: &reqwest::Response,
    error: &str,
    state: Option<&str>,
    case: &str,
) {
    assert_eq!(response.status(), 303, "{case}");
    let location = header(response, LOCATION);
    let url = url::Url::parse(&location).unwrap_or_else(|e| panic!("{case}: {location}: {e}"));
    assert_eq!(
        format!(
            "{}://{}{}",
            url.scheme(),
            url.host_str().unwrap(),
            url.path()
        ),
        REDIRECT,
        "{case}"
    );
    assert_eq!(query_param(&url, "error").as_deref(), Some(error), "{case}");
    if let Some(state) = state {
        assert_eq!(query_param(&url, "state").as_deref(), Some(state), "{case}");
    }
    assert_eq!(
        query_param(&url, "iss").as_deref(),
        Some(app.issuer.as_str()),
        "{case}"
    );
    assert_eq!(query_param(&url, "code"), None, "{case}");
}

#[derive(Clone, Copy, Debug)]
enum Via {
    Get,
    Post,
}

async fn authorize_via(app: &TestApp, via: Via, query: &str) -> reqwest::Response {
    match via {
        Via::Get => app.http.get(app.url(&format!("/authorize?{query}"))),
        Via::Post => app
            .http
            .post(app.url("/authorize"))
            .header(CONTENT_TYPE, FORM)
            .body(query.to_string()),
    }
    .send()
    .await
    .unwrap()
}

fn authorize_url(client: &str, extra: &str) -> String {
    format!(
        "/authorize?response_type=code&client_id={client}&redirect_uri={}&scope=openid&state=s{extra}",
        enc(REDIRECT)
    )
}

/// Signs in (once per app) and consents; returns a fresh code for `client`.
async fn code_for(app: &TestApp, client: &str, extra: &str) -> String {
    let back = app.authorize(&app.url(&authorize_url(client, extra))).await;
    query_param(&back, "code").unwrap_or_else(|| panic!("no code in {back}"))
}

async fn post_token(
    app: &TestApp,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
    authorization: Option<&str>,
) -> reqwest::Response {
    let mut request = app.http.post(app.url("/token")).body(body);
    if let Some(ct) = content_type {
        request = request.header(CONTENT_TYPE, ct);
    }
    if let Some(a) = authorization {
        request = request.header(AUTHORIZATION, a);
    }
    request.send().await.unwrap()
}

/// RFC 6749 §5.2 error: status, `error`, `Cache-Control: no-store`, and
/// `WWW-Authenticate` when the client tried Basic and failed (§5.2 `invalid_client`).
async fn assert_token_error(
    response: reqwest::Response,
    status: u16,
    errors: &[&str],
    www_basic: bool,
    case: &str,
) {
    assert_eq!(response.status(), status, "{case}");
    assert_eq!(header(&response, CACHE_CONTROL), "no-store", "{case}");
    let www = header(&response, WWW_AUTHENTICATE);
    if www_basic {
        assert!(
            www.starts_with("Basic "),
            "{case}: WWW-Authenticate {www:?}"
        );
    }
    let body: Value = response.json().await.unwrap();
    let error = body["error"].as_str().unwrap_or_default();
    assert!(errors.contains(&error), "{case}: {body}");
}

fn decode_part(token: &str, part: usize) -> Value {
    let segment = token.split('.').nth(part).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
}

async fn redeem_ok(app: &TestApp, form_pairs: &[(&str, &str)], auth: Option<&str>) -> Value {
    let response = post_token(app, Some(FORM), form(form_pairs), auth).await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

// ---------------------------------------------------------------------------------------
// 1. /authorize: errors that must be a page (RFC 6749 §4.1.2.1, §3.1.2.4)
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn authorize_client_and_redirect_errors_are_pages_never_redirects() {
    let app = spawn_flow_app().await;
    let mut peek = Peek::open(&app).await;
    let cb = enc(REDIRECT);
    let rest = "response_type=code&scope=openid&state=xyz";
    let long_id = "a".repeat(10 * 1024);
    let cases: Vec<(&str, String)> = vec![
        ("missing client_id", format!("redirect_uri={cb}&{rest}")),
        (
            "empty client_id",
            format!("client_id=&redirect_uri={cb}&{rest}"),
        ),
        (
            "unknown client_id",
            format!("client_id=nobody&redirect_uri={cb}&{rest}"),
        ),
        (
            "client_id in other case",
            format!("client_id=RP&redirect_uri={cb}&{rest}"),
        ),
        (
            "repeated client_id",
            format!("client_id={CLIENT}&client_id={CLIENT}&redirect_uri={cb}&{rest}"),
        ),
        (
            "repeated client_id with two values",
            format!("client_id=poster&client_id={CLIENT}&redirect_uri={cb}&{rest}"),
        ),
        // Regression: a repeated client_id after another repeated key must still be
        // seen in phase one (RFC 6749 §4.1.2.1: MUST NOT redirect when the client
        // identifier is invalid).
        (
            "repeated client_id after a repeated state",
            format!(
                "state=a&state=b&client_id=poster&client_id={CLIENT}&redirect_uri={cb}&response_type=code&scope=openid"
            ),
        ),
        (
            "client_id of 10 KB",
            format!("client_id={long_id}&redirect_uri={cb}&{rest}"),
        ),
        (
            "client_id invalid UTF-8",
            format!("client_id=%FF%FE&redirect_uri={cb}&{rest}"),
        ),
        // Regression (PostgreSQL refuses text with 0x00): the unknown-client page, not a
        // 503.
        (
            "client_id with NUL",
            format!("client_id=r%00p&redirect_uri={cb}&{rest}"),
        ),
        (
            "missing redirect_uri, openid, one registered",
            format!("client_id=first&{rest}"),
        ),
        (
            "missing redirect_uri, two registered",
            format!("client_id={CLIENT}&response_type=code&scope=profile&state=xyz"),
        ),
        (
            "unregistered redirect_uri",
            format!(
                "client_id={CLIENT}&redirect_uri={}&{rest}",
                enc("https://evil.example/cb")
            ),
        ),
        (
            "redirect_uri with trailing slash",
            format!(
                "client_id={CLIENT}&redirect_uri={}&{rest}",
                enc("https://rp.example/cb/")
            ),
        ),
        (
            "redirect_uri host in other case",
            format!(
                "client_id={CLIENT}&redirect_uri={}&{rest}",
                enc("https://RP.example/cb")
            ),
        ),
        (
            "redirect_uri path in other case",
            format!(
                "client_id={CLIENT}&redirect_uri={}&{rest}",
                enc("https://rp.example/CB")
            ),
        ),
        (
            "redirect_uri with extra query",
            format!(
                "client_id={CLIENT}&redirect_uri={}&{rest}",
                enc("https://rp.example/cb?x=1")
            ),
        ),
        (
            "redirect_uri with fragment",
            format!(
                "client_id={CLIENT}&redirect_uri={}&{rest}",
                enc("https://rp.example/cb#f")
            ),
        ),
        (
            "redirect_uri http instead of https",
            format!(
                "client_id={CLIENT}&redirect_uri={}&{rest}",
                enc("http://rp.example/cb")
            ),
        ),
        (
            "loopback redirect_uri with other path",
            format!(
                "client_id={CLIENT}&redirect_uri={}&{rest}",
                enc("http://127.0.0.1:5555/other")
            ),
        ),
        (
            "redirect_uri registered for another client only",
            format!(
                "client_id=first&redirect_uri={}&{rest}",
                enc("http://127.0.0.1/native")
            ),
        ),
        (
            "repeated redirect_uri",
            format!("client_id={CLIENT}&redirect_uri={cb}&redirect_uri={cb}&{rest}"),
        ),
        // Regression: a repeated redirect_uri after a repeated scope is a page too.
        (
            "repeated redirect_uri after a repeated scope",
            format!(
                "scope=openid&scope=openid&client_id={CLIENT}&redirect_uri={}&redirect_uri={cb}&response_type=code&state=xyz",
                enc("https://evil.example/cb")
            ),
        ),
        (
            "redirect_uri invalid UTF-8",
            format!("client_id={CLIENT}&redirect_uri=%FF&{rest}"),
        ),
        (
            "redirect_uri of 10 KB",
            format!(
                "client_id={CLIENT}&redirect_uri={}&{rest}",
                enc(&format!("https://rp.example/cb?{}", "x".repeat(10 * 1024)))
            ),
        ),
        ("no parameters at all", String::new()),
    ];
    for via in [Via::Get, Via::Post] {
        for (case, query) in &cases {
            let case = format!("{via:?} {case}");
            let before = peek.stored().await;
            let response = authorize_via(&app, via, query).await;
            assert!(!sets_session_cookie(&response), "{case}");
            let html = assert_page(response, 400, &case).await;
            assert!(html.contains("<h1>"), "{case}: {html}");
            assert_eq!(peek.stored().await, before, "{case}: something was stored");
        }
    }
    // A POST whose body is not a form carries no parameters: the same page.
    let response = app
        .http
        .post(app.url("/authorize"))
        .header(CONTENT_TYPE, "application/json")
        .body(format!(
            r#"{{"client_id":"{CLIENT}","redirect_uri":"{REDIRECT}"}}"#
        ))
        .send()
        .await
        .unwrap();
    assert_page(response, 400, "POST JSON body").await;
}

// ---------------------------------------------------------------------------------------
// 2. /authorize: errors redirected to the client (RFC 6749 §4.1.2.1, OIDC Core §3.1.2.6)
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn authorize_request_errors_redirect_with_error_state_and_iss() {
    let app = spawn_flow_app().await;
    let mut peek = Peek::open(&app).await;
    let cb = enc(REDIRECT);
    let base = format!("client_id={CLIENT}&redirect_uri={cb}&state=xyz");
    let public = format!("client_id={PUBLIC_CLIENT}&redirect_uri={cb}&state=xyz");
    let code = format!("{base}&response_type=code");
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let long_state = "s".repeat(5000);
    let xyz = Some("xyz".to_string());
    let cases: Vec<(&str, String, &str, Option<String>)> = vec![
        (
            "missing response_type",
            format!("{base}&scope=openid"),
            "invalid_request",
            xyz.clone(),
        ),
        (
            "response_type=token",
            format!("{base}&scope=openid&response_type=token"),
            "unsupported_response_type",
            xyz.clone(),
        ),
        (
            "response_type=code id_token",
            format!("{base}&scope=openid&response_type=code%20id_token"),
            "unsupported_response_type",
            xyz.clone(),
        ),
        ("no scope", code.clone(), "invalid_scope", xyz.clone()),
        (
            "only unknown scopes",
            format!("{code}&scope=foo%20bar"),
            "invalid_scope",
            xyz.clone(),
        ),
        (
            "scope invalid UTF-8",
            format!("{code}&scope=%FF%FE"),
            "invalid_scope",
            xyz.clone(),
        ),
        (
            "code_challenge_method=plain",
            format!("{code}&scope=openid&code_challenge={challenge}&code_challenge_method=plain"),
            "invalid_request",
            xyz.clone(),
        ),
        (
            "code_challenge without method",
            format!("{code}&scope=openid&code_challenge={challenge}"),
            "invalid_request",
            xyz.clone(),
        ),
        (
            "code_challenge_method without challenge",
            format!("{code}&scope=openid&code_challenge_method=S256"),
            "invalid_request",
            xyz.clone(),
        ),
        (
            "malformed code_challenge",
            format!("{code}&scope=openid&code_challenge=abc&code_challenge_method=S256"),
            "invalid_request",
            xyz.clone(),
        ),
        (
            "public client without PKCE",
            format!("{public}&response_type=code&scope=openid"),
            "invalid_request",
            xyz.clone(),
        ),
        (
            "request object",
            format!("{code}&scope=openid&request=eyJhbGciOiJub25lIn0.e30."),
            "request_not_supported",
            xyz.clone(),
        ),
        (
            "request_uri",
            format!(
                "{code}&scope=openid&request_uri={}",
                enc("https://rp.example/r")
            ),
            "request_uri_not_supported",
            xyz.clone(),
        ),
        (
            "registration",
            format!("{code}&scope=openid&registration=%7B%7D"),
            "registration_not_supported",
            xyz.clone(),
        ),
        (
            "prompt=none without a session",
            format!("{code}&scope=openid&prompt=none"),
            "login_required",
            xyz.clone(),
        ),
        (
            "prompt=none login",
            format!("{code}&scope=openid&prompt=none%20login"),
            "invalid_request",
            xyz.clone(),
        ),
        (
            "prompt=none consent",
            format!("{code}&scope=openid&prompt=none%20consent"),
            "invalid_request",
            xyz.clone(),
        ),
        (
            "max_age=-1",
            format!("{code}&scope=openid&max_age=-1"),
            "invalid_request",
            xyz.clone(),
        ),
        (
            "max_age not a number",
            format!("{code}&scope=openid&max_age=soon"),
            "invalid_request",
            xyz.clone(),
        ),
        (
            "claims not JSON",
            format!("{code}&scope=openid&claims=not-json"),
            "invalid_request",
            xyz.clone(),
        ),
        (
            "claims JSON but not an object",
            format!("{code}&scope=openid&claims=%5B1%5D"),
            "invalid_request",
            xyz.clone(),
        ),
        (
            "response_mode=fragment",
            format!("{code}&scope=openid&response_mode=fragment"),
            "invalid_request",
            xyz.clone(),
        ),
        (
            "id_token_hint not ours",
            format!("{code}&scope=openid&id_token_hint=garbage"),
            "invalid_request",
            xyz.clone(),
        ),
        // Which of two states to echo is anyone's guess: only the error is checked.
        (
            "repeated state",
            format!(
                "client_id={CLIENT}&redirect_uri={cb}&response_type=code&scope=openid&state=a&state=b"
            ),
            "invalid_request",
            None,
        ),
        (
            "repeated scope",
            format!("{code}&scope=openid&scope=profile"),
            "invalid_request",
            xyz.clone(),
        ),
        (
            "repeated response_type",
            format!("{code}&scope=openid&response_type=code"),
            "invalid_request",
            xyz.clone(),
        ),
        (
            "a 5000-byte state",
            format!(
                "client_id={CLIENT}&redirect_uri={cb}&response_type=code&scope=openid&state={long_state}"
            ),
            "invalid_request",
            Some(long_state.clone()),
        ),
        (
            "a 5000-byte nonce",
            format!("{code}&scope=openid&nonce={long_state}"),
            "invalid_request",
            xyz.clone(),
        ),
        (
            "state invalid UTF-8 (echoed as replacement characters)",
            format!(
                "client_id={CLIENT}&redirect_uri={cb}&response_type=token&scope=openid&state=%FF"
            ),
            "unsupported_response_type",
            Some("\u{FFFD}".to_string()),
        ),
    ];
    for via in [Via::Get, Via::Post] {
        for (case, query, error, state) in &cases {
            let case = format!("{via:?} {case}");
            let before = peek.stored().await;
            let response = authorize_via(&app, via, query).await;
            assert_redirect_error(&app, &response, error, state.as_deref(), &case);
            assert_eq!(peek.stored().await, before, "{case}: something was stored");
        }
    }
}

/// Invalid UTF-8 where a valid scope remains is not an error at all: the unknown scope is
/// dropped and sign-in proceeds. Either way, never a 5xx.
#[tokio::test]
async fn invalid_utf8_in_authorization_parameters_is_never_a_server_error() {
    let app = spawn_flow_app().await;
    let cb = enc(REDIRECT);
    for (case, query) in [
        (
            "scope openid + invalid UTF-8",
            format!("client_id={CLIENT}&redirect_uri={cb}&response_type=code&scope=openid%20%FF"),
        ),
        (
            "nonce invalid UTF-8",
            format!(
                "client_id={CLIENT}&redirect_uri={cb}&response_type=code&scope=openid&nonce=%FF%00"
            ),
        ),
        (
            "login_hint invalid UTF-8 and NUL",
            format!(
                "client_id={CLIENT}&redirect_uri={cb}&response_type=code&scope=openid&login_hint=%FF%00"
            ),
        ),
        (
            "parameter name invalid UTF-8",
            format!("client_id={CLIENT}&redirect_uri={cb}&response_type=code&scope=openid&%FF=1"),
        ),
    ] {
        for via in [Via::Get, Via::Post] {
            let response = authorize_via(&app, via, &query).await;
            assert_eq!(response.status(), 303, "{via:?} {case}");
            let location = header(&response, LOCATION);
            assert!(
                location.starts_with("/login?req="),
                "{via:?} {case}: {location}"
            );
            let page = app.get(&location).await;
            assert_eq!(page.status(), 200, "{via:?} {case}");
        }
    }
}

/// OIDC Core §3.1.2.6: a signed-in user who has not consented, with prompt=none, gets
/// `consent_required`; no page, nothing stored.
#[tokio::test]
async fn prompt_none_before_consent_is_consent_required() {
    let app = spawn_flow_app().await;
    let mut peek = Peek::open(&app).await;
    // Sign in through a first-party client (no consent asked).
    let back = app.authorize(&app.url(&authorize_url("first", ""))).await;
    assert!(query_param(&back, "code").is_some(), "{back}");

    let cb = enc(REDIRECT);
    for via in [Via::Get, Via::Post] {
        let before = peek.stored().await;
        let query = format!(
            "client_id={CLIENT}&redirect_uri={cb}&response_type=code&scope=openid&state=q1&prompt=none"
        );
        let response = authorize_via(&app, via, &query).await;
        assert_redirect_error(&app, &response, "consent_required", Some("q1"), "consent");
        assert_eq!(peek.stored().await, before, "{via:?}: something was stored");
    }
}

// ---------------------------------------------------------------------------------------
// 3. /token (RFC 6749 §5.2)
// ---------------------------------------------------------------------------------------

struct TokenCase {
    name: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    authorization: Option<String>,
    /// 0: any 4xx, and the body need not be the §5.2 JSON.
    status: u16,
    errors: &'static [&'static str],
    www_basic: bool,
}

#[tokio::test]
async fn token_request_errors() {
    let app = spawn_flow_app().await;
    let mut peek = Peek::open(&app).await;
    let code = code_for(&app, CLIENT, "").await;
    let good = basic(CLIENT, CLIENT_SECRET);
    let ac = "authorization_code";
    let exchange = |extra: &[(&str, &str)]| -> Vec<u8> {
        let mut pairs = vec![
            ("grant_type", ac),
            ("code", &code),
            ("redirect_uri", REDIRECT),
        ];
        pairs.extend_from_slice(extra);
        form(&pairs).into_bytes()
    };
    let raw = |s: &str| -> Vec<u8> { s.as_bytes().to_vec() };
    const INVALID_REQUEST: &[&str] = &["invalid_request"];
    const INVALID_CLIENT: &[&str] = &["invalid_client"];
    const INVALID_GRANT: &[&str] = &["invalid_grant"];
    let case = |name: &'static str,
                content_type: Option<&'static str>,
                body: Vec<u8>,
                authorization: Option<&str>,
                status: u16,
                errors: &'static [&'static str],
                www: bool| {
        TokenCase {
            name,
            content_type,
            body,
            authorization: authorization.map(str::to_string),
            status,
            errors,
            www_basic: www,
        }
    };
    let json_body = serde_json::to_vec(&serde_json::json!({
        "grant_type": ac, "code": code, "redirect_uri": REDIRECT,
    }))
    .unwrap();
    let long = "c".repeat(10 * 1024);
    let mut utf8 = b"grant_type=authorization_code&code=\xff\xfe\xfd&redirect_uri=".to_vec();
    utf8.extend_from_slice(enc(REDIRECT).as_bytes());
    let mut big = exchange(&[]);
    big.extend_from_slice(b"&pad=");
    big.extend(std::iter::repeat_n(b'a', 100 * 1024));

    let cases = vec![
        case(
            "JSON body",
            Some("application/json"),
            json_body,
            Some(&good),
            400,
            INVALID_REQUEST,
            false,
        ),
        case(
            "no content type",
            None,
            exchange(&[]),
            Some(&good),
            400,
            INVALID_REQUEST,
            false,
        ),
        case(
            "text/plain body",
            Some("text/plain"),
            exchange(&[]),
            Some(&good),
            400,
            INVALID_REQUEST,
            false,
        ),
        case(
            "missing grant_type",
            Some(FORM),
            form(&[("code", &code), ("redirect_uri", REDIRECT)]).into_bytes(),
            Some(&good),
            400,
            INVALID_REQUEST,
            false,
        ),
        case(
            "grant_type=magic",
            Some(FORM),
            form(&[("grant_type", "magic"), ("code", &code)]).into_bytes(),
            Some(&good),
            400,
            &["unsupported_grant_type"],
            false,
        ),
        case(
            "grant_type=code",
            Some(FORM),
            form(&[("grant_type", "code"), ("code", &code)]).into_bytes(),
            Some(&good),
            400,
            &["unsupported_grant_type"],
            false,
        ),
        case(
            "refresh_token grant with a bogus token",
            Some(FORM),
            form(&[("grant_type", "refresh_token"), ("refresh_token", "bogus")]).into_bytes(),
            Some(&good),
            400,
            &[
                "unsupported_grant_type",
                "unauthorized_client",
                "invalid_grant",
            ],
            false,
        ),
        case(
            "client_credentials grant",
            Some(FORM),
            form(&[("grant_type", "client_credentials")]).into_bytes(),
            Some(&good),
            400,
            &["unsupported_grant_type", "unauthorized_client"],
            false,
        ),
        case(
            "password grant by a third-party client",
            Some(FORM),
            form(&[
                ("grant_type", "password"),
                ("username", USER),
                ("password", PASSWORD),
            ])
            .into_bytes(),
            Some(&good),
            400,
            &["unsupported_grant_type", "unauthorized_client"],
            false,
        ),
        case(
            "no client authentication",
            Some(FORM),
            exchange(&[]),
            None,
            401,
            INVALID_CLIENT,
            false,
        ),
        case(
            "wrong secret via Basic",
            Some(FORM),
            exchange(&[]),
            Some(&basic(CLIENT, "wrong-secret-wrong-secret-wrong-secret")),
            401,
            INVALID_CLIENT,
            true,
        ),
        case(
            "empty secret via Basic",
            Some(FORM),
            exchange(&[]),
            Some(&basic(CLIENT, "")),
            401,
            INVALID_CLIENT,
            true,
        ),
        case(
            "wrong secret via post",
            Some(FORM),
            exchange(&[("client_id", "poster"), ("client_secret", "wrong")]),
            None,
            401,
            INVALID_CLIENT,
            false,
        ),
        case(
            "wrong secret via post for a Basic client",
            Some(FORM),
            exchange(&[("client_id", CLIENT), ("client_secret", "wrong")]),
            None,
            401,
            INVALID_CLIENT,
            false,
        ),
        case(
            "unknown client via Basic",
            Some(FORM),
            exchange(&[]),
            Some(&basic("nobody", CLIENT_SECRET)),
            401,
            INVALID_CLIENT,
            true,
        ),
        case(
            "unknown client via post",
            Some(FORM),
            exchange(&[("client_id", "nobody"), ("client_secret", CLIENT_SECRET)]),
            None,
            401,
            INVALID_CLIENT,
            false,
        ),
        case(
            "confidential client with client_id only",
            Some(FORM),
            exchange(&[("client_id", CLIENT)]),
            None,
            401,
            INVALID_CLIENT,
            false,
        ),
        case(
            "Basic and client_secret in the body",
            Some(FORM),
            exchange(&[("client_secret", CLIENT_SECRET)]),
            Some(&good),
            400,
            INVALID_REQUEST,
            false,
        ),
        case(
            "Basic for one client, client_id of another",
            Some(FORM),
            exchange(&[("client_id", "poster")]),
            Some(&good),
            400,
            INVALID_REQUEST,
            false,
        ),
        case(
            "Basic not base64",
            Some(FORM),
            exchange(&[]),
            Some("Basic !!!not-base64!!!"),
            401,
            INVALID_CLIENT,
            true,
        ),
        case(
            "Basic without a colon",
            Some(FORM),
            exchange(&[]),
            Some(&format!("Basic {}", STANDARD.encode(CLIENT))),
            401,
            INVALID_CLIENT,
            true,
        ),
        case(
            "Basic with an empty id",
            Some(FORM),
            exchange(&[]),
            Some(&format!("Basic {}", STANDARD.encode(":x"))),
            401,
            INVALID_CLIENT,
            true,
        ),
        case(
            "Basic of invalid UTF-8",
            Some(FORM),
            exchange(&[]),
            Some(&format!("Basic {}", STANDARD.encode(b"\xff:\xfe"))),
            401,
            INVALID_CLIENT,
            true,
        ),
        // Regression (PostgreSQL): a NUL in the id is an unknown client, not a 503.
        case(
            "Basic with NUL in the id",
            Some(FORM),
            exchange(&[]),
            Some(&basic("r\0p", CLIENT_SECRET)),
            401,
            INVALID_CLIENT,
            true,
        ),
        case(
            "Basic with a 10 KB id",
            Some(FORM),
            exchange(&[]),
            Some(&basic(&long, CLIENT_SECRET)),
            401,
            INVALID_CLIENT,
            true,
        ),
        case(
            "Bearer instead of Basic",
            Some(FORM),
            exchange(&[]),
            Some("Bearer abc"),
            401,
            INVALID_CLIENT,
            true,
        ),
        case(
            "public client sending a secret",
            Some(FORM),
            exchange(&[("client_id", PUBLIC_CLIENT), ("client_secret", "anything")]),
            None,
            401,
            INVALID_CLIENT,
            false,
        ),
        case(
            "public client via Basic",
            Some(FORM),
            exchange(&[]),
            Some(&basic(PUBLIC_CLIENT, "anything")),
            401,
            INVALID_CLIENT,
            true,
        ),
        case(
            "client_id invalid UTF-8",
            Some(FORM),
            [exchange(&[]), raw("&client_id=%FF&client_secret=x")].concat(),
            None,
            401,
            INVALID_CLIENT,
            false,
        ),
        // Regression (PostgreSQL): a NUL in the id is an unknown client, not a 503.
        case(
            "client_id with NUL",
            Some(FORM),
            [exchange(&[]), raw("&client_id=r%00p&client_secret=x")].concat(),
            None,
            401,
            INVALID_CLIENT,
            false,
        ),
        case(
            "missing code",
            Some(FORM),
            form(&[("grant_type", ac), ("redirect_uri", REDIRECT)]).into_bytes(),
            Some(&good),
            400,
            INVALID_REQUEST,
            false,
        ),
        case(
            "unknown code",
            Some(FORM),
            form(&[
                ("grant_type", ac),
                ("code", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
                ("redirect_uri", REDIRECT),
            ])
            .into_bytes(),
            Some(&good),
            400,
            INVALID_GRANT,
            false,
        ),
        case(
            "code of 10 KB",
            Some(FORM),
            form(&[
                ("grant_type", ac),
                ("code", &long),
                ("redirect_uri", REDIRECT),
            ])
            .into_bytes(),
            Some(&good),
            400,
            &["invalid_request", "invalid_grant"],
            false,
        ),
        case(
            "code invalid UTF-8",
            Some(FORM),
            utf8,
            Some(&good),
            400,
            INVALID_GRANT,
            false,
        ),
        case(
            "code with NUL",
            Some(FORM),
            [
                raw("grant_type=authorization_code&code=a%00b&redirect_uri="),
                raw(&enc(REDIRECT)),
            ]
            .concat(),
            Some(&good),
            400,
            INVALID_GRANT,
            false,
        ),
        case(
            "repeated code",
            Some(FORM),
            exchange(&[("code", &code)]),
            Some(&good),
            400,
            INVALID_REQUEST,
            false,
        ),
        case(
            "repeated grant_type",
            Some(FORM),
            exchange(&[("grant_type", ac)]),
            Some(&good),
            400,
            INVALID_REQUEST,
            false,
        ),
        case(
            "repeated client_secret",
            Some(FORM),
            exchange(&[
                ("client_id", "poster"),
                ("client_secret", CLIENT_SECRET),
                ("client_secret", CLIENT_SECRET),
            ]),
            None,
            400,
            INVALID_REQUEST,
            false,
        ),
        case("a 100 KB body", Some(FORM), big, Some(&good), 0, &[], false),
    ];

    for c in cases {
        let case = c.name;
        let before = peek.stored().await;
        let response = post_token(&app, c.content_type, c.body, c.authorization.as_deref()).await;
        if c.status == 0 {
            assert!(
                response.status().is_client_error(),
                "{case}: {}",
                response.status()
            );
        } else {
            assert_token_error(response, c.status, c.errors, c.www_basic, case).await;
        }
        assert_eq!(peek.stored().await, before, "{case}: something was stored");
    }

    // None of that touched the code: it is still good, once.
    let body = redeem_ok(
        &app,
        &[
            ("grant_type", ac),
            ("code", &code),
            ("redirect_uri", REDIRECT),
        ],
        Some(&good),
    )
    .await;
    assert!(body["access_token"].is_string());
}

type Pairs<'a> = Vec<(&'a str, &'a str)>;

/// A failed exchange changes nothing: wrong redirect URI, wrong or missing verifier,
/// another client. The same code is then redeemed once with the right parameters.
#[tokio::test]
async fn failed_code_exchanges_leave_the_code_redeemable() {
    let app = spawn_flow_app().await;
    let mut peek = Peek::open(&app).await;
    let ac = "authorization_code";
    let good = basic(CLIENT, CLIENT_SECRET);
    let first = basic("first", CLIENT_SECRET);

    // A confidential client without PKCE.
    let plain = code_for(&app, CLIENT, "").await;
    let (good_s, first_s) = (good.as_str(), first.as_str());
    let cases: Vec<(&str, Pairs, Option<&str>)> = vec![
        (
            "wrong redirect_uri",
            vec![
                ("grant_type", ac),
                ("code", &plain),
                ("redirect_uri", "https://rp.example/cb/"),
            ],
            Some(good_s),
        ),
        (
            "other registered redirect_uri",
            vec![
                ("grant_type", ac),
                ("code", &plain),
                ("redirect_uri", "http://127.0.0.1/native"),
            ],
            Some(good_s),
        ),
        (
            "missing redirect_uri although it was sent",
            vec![("grant_type", ac), ("code", &plain)],
            Some(good_s),
        ),
        (
            "code issued to another client (Basic)",
            vec![
                ("grant_type", ac),
                ("code", &plain),
                ("redirect_uri", REDIRECT),
            ],
            Some(first_s),
        ),
        (
            "code issued to another client (post)",
            vec![
                ("grant_type", ac),
                ("code", &plain),
                ("redirect_uri", REDIRECT),
                ("client_id", "poster"),
                ("client_secret", CLIENT_SECRET),
            ],
            None,
        ),
        (
            "code issued to another client (public)",
            vec![
                ("grant_type", ac),
                ("code", &plain),
                ("redirect_uri", REDIRECT),
                ("client_id", PUBLIC_CLIENT),
            ],
            None,
        ),
        (
            "code_verifier sent when no challenge was",
            vec![
                ("grant_type", ac),
                ("code", &plain),
                ("redirect_uri", REDIRECT),
                (
                    "code_verifier",
                    "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
                ),
            ],
            Some(good_s),
        ),
    ];
    for (case, pairs, auth) in &cases {
        let before = peek.stored().await;
        let response = post_token(&app, Some(FORM), form(pairs), *auth).await;
        assert_token_error(response, 400, &["invalid_grant"], false, case).await;
        assert_eq!(peek.stored().await, before, "{case}: something was stored");
    }
    redeem_ok(
        &app,
        &[
            ("grant_type", ac),
            ("code", &plain),
            ("redirect_uri", REDIRECT),
        ],
        Some(&good),
    )
    .await;

    // A confidential client with PKCE, then a public one.
    for (client, auth) in [(CLIENT, Some(good.as_str())), (PUBLIC_CLIENT, None)] {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (_, other_verifier) = PkceCodeChallenge::new_random_sha256();
        let pkce = format!(
            "&code_challenge={}&code_challenge_method=S256",
            challenge.as_str()
        );
        let code = code_for(&app, client, &pkce).await;
        let base = |extra: &[(&'static str, &'static str)]| {
            let mut v: Vec<(String, String)> = vec![
                ("grant_type".into(), ac.into()),
                ("code".into(), code.clone()),
                ("redirect_uri".into(), REDIRECT.into()),
            ];
            if auth.is_none() {
                v.push(("client_id".into(), client.into()));
            }
            v.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            v
        };
        let with_verifier = |v: &str| {
            let mut pairs = base(&[]);
            pairs.push(("code_verifier".into(), v.to_string()));
            pairs
        };
        let cases: Vec<(&str, Vec<(String, String)>)> = vec![
            ("missing code_verifier", base(&[])),
            (
                "wrong code_verifier",
                with_verifier(other_verifier.secret()),
            ),
            ("code_verifier too short", with_verifier("abc")),
            ("code_verifier too long", with_verifier(&"a".repeat(129))),
            (
                "code_verifier with bad characters",
                with_verifier(&"~!".repeat(30)),
            ),
            (
                "the challenge as verifier",
                with_verifier(challenge.as_str()),
            ),
            ("code_verifier invalid UTF-8", {
                let mut pairs = base(&[]);
                pairs.push(("code_verifier".into(), "\u{FFFD}".repeat(43)));
                pairs
            }),
        ];
        for (case, pairs) in &cases {
            let case = format!("{client}: {case}");
            let pairs: Vec<(&str, &str)> = pairs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let before = peek.stored().await;
            let response = post_token(&app, Some(FORM), form(&pairs), auth).await;
            assert_token_error(response, 400, &["invalid_grant"], false, &case).await;
            assert_eq!(peek.stored().await, before, "{case}: something was stored");
        }
        let pairs = with_verifier(verifier.secret());
        let pairs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        redeem_ok(&app, &pairs, auth).await;
    }
    // The poster client (client_secret_post, its registered method) is unaffected by
    // all of this.
    let code = code_for(&app, "poster", "").await;
    let response = post_token(
        &app,
        Some(FORM),
        form(&[
            ("grant_type", ac),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("client_id", "poster"),
            ("client_secret", CLIENT_SECRET),
        ]),
        None,
    )
    .await;
    assert_eq!(response.status(), 200);
}

/// RFC 6749 §4.1.2: a code used twice is refused, and the tokens from its first use are
/// revoked.
#[tokio::test]
async fn code_replay_is_refused_and_revokes_the_first_access_token() {
    let app = spawn_flow_app().await;
    let good = basic(CLIENT, CLIENT_SECRET);
    let code = code_for(&app, CLIENT, "").await;
    let pairs = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
    ];
    let body = redeem_ok(&app, &pairs, Some(&good)).await;
    let access = body["access_token"].as_str().unwrap().to_string();
    let ok = app
        .http
        .get(app.url("/userinfo"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);

    // A replay is refused, whoever sends it; by the client it was issued to, it also
    // revokes what the first use issued.
    let response = post_token(
        &app,
        Some(FORM),
        form(&pairs),
        Some(&basic("first", CLIENT_SECRET)),
    )
    .await;
    assert_token_error(
        response,
        400,
        &["invalid_grant"],
        false,
        "replay by another client",
    )
    .await;
    let response = post_token(&app, Some(FORM), form(&pairs), Some(&good)).await;
    assert_token_error(response, 400, &["invalid_grant"], false, "replay").await;

    let response = app
        .http
        .get(app.url("/userinfo"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(
        header(&response, WWW_AUTHENTICATE).contains("error=\"invalid_token\""),
        "{:?}",
        response.headers()
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_token");

    // A third try is still refused.
    let response = post_token(&app, Some(FORM), form(&pairs), Some(&good)).await;
    assert_token_error(response, 400, &["invalid_grant"], false, "third use").await;
}

/// An expired code is `invalid_grant` (RFC 6749 §4.1.2; issue 4: codes live 60 s, here
/// the shortest allowed, 10 s).
#[tokio::test]
async fn expired_code_is_invalid_grant() {
    let mut options = flow_options();
    options
        .extra_toml
        .push_str("\n[tokens]\nauthorization_code_seconds = 10\n");
    let app = spawn_app_with(options).await;
    let mut peek = Peek::open(&app).await;
    let good = basic(CLIENT, CLIENT_SECRET);
    let code = code_for(&app, CLIENT, "").await;
    tokio::time::sleep(Duration::from_secs(11)).await;
    let before = peek.stored().await;
    let response = post_token(
        &app,
        Some(FORM),
        form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
        ]),
        Some(&good),
    )
    .await;
    assert_token_error(response, 400, &["invalid_grant"], false, "expired code").await;
    assert_eq!(peek.stored().await, before, "something was stored");
}

// ---------------------------------------------------------------------------------------
// 4. /userinfo (RFC 6750 §3, OIDC Core §5.3.3)
// ---------------------------------------------------------------------------------------

/// A token with our claims and `kid`, signed by a key that is not ours.
fn signed_by_a_stranger(real: &str) -> String {
    use josekit::jwk::KeyPair;
    use josekit::jws::{JwsHeader, RS256};
    use josekit::jwt::{self, JwtPayload};
    let real_header = decode_part(real, 0);
    let claims = decode_part(real, 1);
    let pair = RS256.generate_key_pair(2048).unwrap();
    let signer = RS256.signer_from_pem(pair.to_pem_private_key()).unwrap();
    let mut header = JwsHeader::new();
    header.set_token_type("at+jwt");
    header.set_key_id(real_header["kid"].as_str().unwrap());
    let payload = JwtPayload::from_map(claims.as_object().unwrap().clone()).unwrap();
    jwt::encode_with_signer(&payload, &header, &signer).unwrap()
}

fn unsigned(real: &str) -> String {
    let mut header = decode_part(real, 0);
    header["alg"] = "none".into();
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    format!("{}.{}.", b64(&header), b64(&decode_part(real, 1)))
}

fn tampered(real: &str) -> String {
    let mut claims = decode_part(real, 1);
    claims["sub"] = "someone-else".into();
    let parts: Vec<&str> = real.split('.').collect();
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    format!("{}.{}.{}", parts[0], payload, parts[2])
}

/// (case, POST?, Authorization, form body, status, error code in WWW-Authenticate)
type UserinfoCase<'a> = (
    &'a str,
    bool,
    Option<String>,
    Option<String>,
    u16,
    Option<&'a str>,
);

#[tokio::test]
async fn userinfo_errors() {
    let app = spawn_flow_app().await;
    let mut peek = Peek::open(&app).await;
    let code = code_for(&app, CLIENT, "").await;
    let tokens = redeem_ok(
        &app,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
        ],
        Some(&basic(CLIENT, CLIENT_SECRET)),
    )
    .await;
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let id_token = tokens["id_token"].as_str().unwrap().to_string();
    let bearer = |t: &str| format!("Bearer {t}");

    let cases: Vec<UserinfoCase> = vec![
        ("GET without a token", false, None, None, 401, None),
        (
            "POST without a token",
            true,
            None,
            Some(String::new()),
            401,
            None,
        ),
        ("token in the query string", false, None, None, 401, None),
        (
            "garbage token",
            false,
            Some(bearer("garbage")),
            None,
            401,
            Some("invalid_token"),
        ),
        (
            "garbage JWT",
            false,
            Some(bearer("a.b.c")),
            None,
            401,
            Some("invalid_token"),
        ),
        (
            "garbage token in the body",
            true,
            None,
            Some(form(&[("access_token", "garbage")])),
            401,
            Some("invalid_token"),
        ),
        (
            "ID token as access token",
            false,
            Some(bearer(&id_token)),
            None,
            401,
            Some("invalid_token"),
        ),
        (
            "signed by another key",
            false,
            Some(bearer(&signed_by_a_stranger(&access))),
            None,
            401,
            Some("invalid_token"),
        ),
        (
            "alg none",
            false,
            Some(bearer(&unsigned(&access))),
            None,
            401,
            Some("invalid_token"),
        ),
        (
            "payload tampered",
            false,
            Some(bearer(&tampered(&access))),
            None,
            401,
            Some("invalid_token"),
        ),
        (
            "token of 20 KB",
            false,
            Some(bearer(&"a".repeat(20 * 1024))),
            None,
            401,
            Some("invalid_token"),
        ),
        (
            "token in header and body",
            true,
            Some(bearer(&access)),
            Some(form(&[("access_token", &access)])),
            400,
            Some("invalid_request"),
        ),
        (
            "token twice in the body",
            true,
            None,
            Some(form(&[
                ("access_token", &access),
                ("access_token", &access),
            ])),
            400,
            Some("invalid_request"),
        ),
        (
            "Basic authorization",
            false,
            Some(basic(CLIENT, CLIENT_SECRET)),
            None,
            400,
            Some("invalid_request"),
        ),
        (
            "Basic authorization on POST",
            true,
            Some(basic(CLIENT, CLIENT_SECRET)),
            Some(String::new()),
            400,
            Some("invalid_request"),
        ),
        (
            "Bearer without a token",
            false,
            Some("Bearer".to_string()),
            None,
            400,
            Some("invalid_request"),
        ),
    ];
    for (case, post, authorization, body, status, error) in cases {
        let before = peek.stored().await;
        let mut request = if post {
            app.http
                .post(app.url("/userinfo"))
                .header(CONTENT_TYPE, FORM)
                .body(body.unwrap_or_default())
        } else if case == "token in the query string" {
            app.http
                .get(app.url(&format!("/userinfo?access_token={access}")))
        } else {
            app.http.get(app.url("/userinfo"))
        };
        if let Some(a) = authorization {
            request = request.header(AUTHORIZATION, a);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status, "{case}");
        let www = header(&response, WWW_AUTHENTICATE);
        match error {
            // RFC 6750 §3.1: no error code when the request had no authentication.
            None => assert_eq!(www, "Bearer realm=\"oxidp\"", "{case}"),
            Some(code) => {
                assert!(www.starts_with("Bearer realm=\"oxidp\""), "{case}: {www}");
                assert!(www.contains(&format!("error=\"{code}\"")), "{case}: {www}");
                let body: Value = response.json().await.unwrap();
                assert_eq!(body["error"], code, "{case}");
            }
        }
        assert_eq!(peek.stored().await, before, "{case}: something was stored");
    }

    // The real token still works after all that.
    let response = app
        .http
        .get(app.url("/userinfo"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// Plain OAuth 2.0 (no `openid` scope) yields an access token but no UserInfo: 403
/// `insufficient_scope` (RFC 6750 §3.1, OIDC Core §5.3).
#[tokio::test]
async fn userinfo_without_openid_scope_is_insufficient_scope() {
    let app = spawn_flow_app().await;
    let url = app.url(&format!(
        "/authorize?response_type=code&client_id={CLIENT}&redirect_uri={}&scope=profile&state=s",
        enc(REDIRECT)
    ));
    let back = app.authorize(&url).await;
    let code = query_param(&back, "code").unwrap();
    let tokens = redeem_ok(
        &app,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
        ],
        Some(&basic(CLIENT, CLIENT_SECRET)),
    )
    .await;
    assert!(tokens.get("id_token").is_none(), "{tokens}");
    assert_eq!(tokens["scope"], "profile");
    let access = tokens["access_token"].as_str().unwrap();
    for post in [false, true] {
        let response = if post {
            app.http
                .post(app.url("/userinfo"))
                .form(&[("access_token", access)])
        } else {
            app.http.get(app.url("/userinfo")).bearer_auth(access)
        }
        .send()
        .await
        .unwrap();
        assert_eq!(response.status(), 403, "post={post}");
        let www = header(&response, WWW_AUTHENTICATE);
        assert!(www.contains("error=\"insufficient_scope\""), "{www}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "insufficient_scope");
    }
}

// ---------------------------------------------------------------------------------------
// 5. /login and /consent
// ---------------------------------------------------------------------------------------

/// A browser without cookies except a CSRF secret we chose, so we can mint a valid CSRF
/// token for any `req` (double submit: the cookie is ours to set).
fn own_csrf(req: &str) -> (reqwest::Client, String, String) {
    let secret = "S".repeat(43);
    let token = oxidp::http::pages::csrf_token(&secret, req);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    (client, format!("oxidp_csrf={secret}"), token)
}

#[tokio::test]
async fn login_and_consent_form_errors() {
    let app = spawn_flow_app().await;
    let mut peek = Peek::open(&app).await;
    let start = app.get(&authorize_url(CLIENT, "")).await;
    assert_eq!(start.status(), 303);
    let location = header(&start, LOCATION);
    let req = location.strip_prefix("/login?req=").unwrap().to_string();
    let page = app.get(&location).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let csrf = hidden_input(&html, "csrf_token").unwrap();

    // Pages that cannot be shown.
    let long_req = "r".repeat(10 * 1024);
    for (case, path) in [
        ("login, unknown req", "/login?req=unknown".to_string()),
        ("login, 10 KB req", format!("/login?req={long_req}")),
        ("login, req with NUL", "/login?req=a%00b".to_string()),
        ("consent, unknown req", "/consent?req=unknown".to_string()),
        ("consent, no req", "/consent".to_string()),
        ("consent, req invalid UTF-8", "/consent?req=%FF".to_string()),
    ] {
        assert_page(app.get(&path).await, 400, case).await;
    }

    // Login form submissions that are refused before any password is checked.
    let wrong_csrf = "x".repeat(43);
    let login_cases: Vec<(&str, &str, String)> = vec![
        (
            "no csrf_token",
            FORM,
            form(&[("username", USER), ("password", PASSWORD), ("req", &req)]),
        ),
        (
            "wrong csrf_token",
            FORM,
            form(&[
                ("username", USER),
                ("password", PASSWORD),
                ("req", &req),
                ("csrf_token", &wrong_csrf),
            ]),
        ),
        (
            "csrf_token of another req",
            FORM,
            form(&[
                ("username", USER),
                ("password", PASSWORD),
                ("req", "other"),
                ("csrf_token", &csrf),
            ]),
        ),
        (
            "no req",
            FORM,
            form(&[
                ("username", USER),
                ("password", PASSWORD),
                ("csrf_token", &csrf),
            ]),
        ),
        (
            "repeated username",
            FORM,
            form(&[
                ("username", USER),
                ("username", "mallory"),
                ("password", PASSWORD),
                ("req", &req),
                ("csrf_token", &csrf),
            ]),
        ),
        (
            "10 KB username",
            FORM,
            form(&[
                ("username", &long_req),
                ("password", PASSWORD),
                ("req", &req),
                ("csrf_token", &csrf),
            ]),
        ),
        (
            "JSON body",
            "application/json",
            format!(
                r#"{{"username":"{USER}","password":"{PASSWORD}","req":"{req}","csrf_token":"{csrf}"}}"#
            ),
        ),
        ("empty body", FORM, String::new()),
    ];
    for (case, content_type, body) in login_cases {
        let case = format!("login: {case}");
        let before = peek.stored().await;
        let response = app
            .http
            .post(app.url("/login"))
            .header(CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(!sets_session_cookie(&response), "{case}");
        assert_page(response, 400, &case).await;
        assert_eq!(peek.stored().await, before, "{case}: something was stored");
    }

    // A valid CSRF token for a request that does not exist.
    let (stranger, cookie, token) = own_csrf("unknown-req");
    let before = peek.stored().await;
    let response = stranger
        .post(app.url("/login"))
        .header("cookie", &cookie)
        .form(&[
            ("username", USER),
            ("password", PASSWORD),
            ("req", "unknown-req"),
            ("csrf_token", &token),
        ])
        .send()
        .await
        .unwrap();
    assert!(!sets_session_cookie(&response));
    assert_page(response, 400, "login: unknown req with a valid CSRF token").await;
    assert_eq!(
        peek.stored().await,
        before,
        "unknown req: something was stored"
    );

    // Wrong credentials: the same answer whether or not the user exists (no enumeration).
    let mut pages = Vec::new();
    for (case, username, password) in [
        ("wrong password", USER, "wrong password"),
        ("unknown user", "mallory", PASSWORD),
        (
            "e-mail with wrong password",
            "alice@example.com",
            "wrong password",
        ),
        // Regression (PostgreSQL): a NUL in the username is a failed login, not a 503.
        ("username with NUL", "al\0ice", PASSWORD),
        ("username non-ASCII", "\u{FFFD}\u{e9}", PASSWORD),
    ] {
        let before = peek.stored().await;
        let response = app
            .http
            .post(app.url("/login"))
            .form(&[
                ("username", username),
                ("password", password),
                ("req", &req),
                ("csrf_token", &csrf),
            ])
            .send()
            .await
            .unwrap();
        assert!(!sets_session_cookie(&response), "{case}");
        assert_eq!(response.status(), 200, "{case}");
        let html = response.text().await.unwrap();
        assert!(html.contains(BAD_CREDENTIALS), "{case}: {html}");
        assert_eq!(peek.stored().await, before, "{case}: something was stored");
        pages.push((case, html.replace(&html_escape(username), "USERNAME")));
    }
    for (case, html) in &pages[1..] {
        assert_eq!(html, &pages[0].1, "{case} differs from {}", pages[0].0);
    }

    // Sign in for real: on to consent.
    let response = app
        .http
        .post(app.url("/login"))
        .form(&[
            ("username", USER),
            ("password", PASSWORD),
            ("req", &req),
            ("csrf_token", &csrf),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(header(&response, LOCATION), format!("/consent?req={req}"));
    let html = app
        .get(&format!("/consent?req={req}"))
        .await
        .text()
        .await
        .unwrap();
    let csrf = hidden_input(&html, "csrf_token").unwrap();

    let consent_cases: Vec<(&str, String)> = vec![
        (
            "no csrf_token",
            form(&[("decision", "allow"), ("req", &req)]),
        ),
        (
            "wrong csrf_token",
            form(&[
                ("decision", "allow"),
                ("req", &req),
                ("csrf_token", &wrong_csrf),
            ]),
        ),
        (
            "csrf_token of another req",
            form(&[
                ("decision", "allow"),
                ("req", "other"),
                ("csrf_token", &csrf),
            ]),
        ),
        (
            "no req",
            form(&[("decision", "allow"), ("csrf_token", &csrf)]),
        ),
        ("no decision", form(&[("req", &req), ("csrf_token", &csrf)])),
        (
            "unknown decision",
            form(&[("decision", "maybe"), ("req", &req), ("csrf_token", &csrf)]),
        ),
        (
            "two decisions",
            form(&[
                ("decision", "allow"),
                ("decision", "deny"),
                ("req", &req),
                ("csrf_token", &csrf),
            ]),
        ),
        ("empty body", String::new()),
    ];
    for (case, body) in consent_cases {
        let case = format!("consent: {case}");
        let before = peek.stored().await;
        let response = app
            .http
            .post(app.url("/consent"))
            .header(CONTENT_TYPE, FORM)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_page(response, 400, &case).await;
        assert_eq!(peek.stored().await, before, "{case}: something was stored");
    }
    let (stranger, cookie, token) = own_csrf("unknown-req");
    let before = peek.stored().await;
    let response = stranger
        .post(app.url("/consent"))
        .header("cookie", &cookie)
        .form(&[
            ("decision", "allow"),
            ("req", "unknown-req"),
            ("csrf_token", &token),
        ])
        .send()
        .await
        .unwrap();
    assert_page(
        response,
        400,
        "consent: unknown req with a valid CSRF token",
    )
    .await;
    assert_eq!(
        peek.stored().await,
        before,
        "consent unknown req: something was stored"
    );

    // Answer once: a code. Answer again: a page, and no second code.
    let allow = [
        ("decision", "allow"),
        ("req", req.as_str()),
        ("csrf_token", csrf.as_str()),
    ];
    let response = app
        .http
        .post(app.url("/consent"))
        .form(&allow)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert!(header(&response, LOCATION).starts_with(REDIRECT));
    let after_first = peek.stored().await;
    for (case, decision) in [("allow again", "allow"), ("deny after allow", "deny")] {
        let response = app
            .http
            .post(app.url("/consent"))
            .form(&[("decision", decision), ("req", &req), ("csrf_token", &csrf)])
            .send()
            .await
            .unwrap();
        assert_page(response, 400, case).await;
        assert_eq!(
            peek.stored().await,
            after_first,
            "{case}: something was stored"
        );
    }
    // The login form of the answered request is dead too, and starts no session.
    let response = app
        .http
        .post(app.url("/login"))
        .form(&[
            ("username", USER),
            ("password", PASSWORD),
            ("req", &req),
            ("csrf_token", &csrf),
        ])
        .send()
        .await
        .unwrap();
    assert!(!sets_session_cookie(&response));
    assert_page(response, 400, "login for an answered request").await;
    assert_eq!(
        peek.stored().await,
        after_first,
        "login replay: something was stored"
    );
    assert_page(
        app.get(&format!("/consent?req={req}")).await,
        400,
        "consent page of an answered request",
    )
    .await;
}

/// A pending request answers once, even when the form is submitted several times at
/// once: one code is issued, the other submissions get the expired page and store
/// nothing.
#[tokio::test]
async fn concurrent_consent_answers_issue_one_code() {
    let app = spawn_flow_app().await;
    let mut peek = Peek::open(&app).await;
    let start = app.get(&authorize_url(CLIENT, "")).await;
    let location = header(&start, LOCATION);
    let html = app.get(&location).await.text().await.unwrap();
    let csrf = hidden_input(&html, "csrf_token").unwrap();
    let req = hidden_input(&html, "req").unwrap();
    let response = app
        .http
        .post(app.url("/login"))
        .form(&[
            ("username", USER),
            ("password", PASSWORD),
            ("req", &req),
            ("csrf_token", &csrf),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(header(&response, LOCATION), format!("/consent?req={req}"));
    let before = peek.stored().await;
    let submissions: Vec<_> = (0..8)
        .map(|_| {
            let (http, url) = (app.http.clone(), app.url("/consent"));
            let form = [("decision", "allow"), ("req", &req), ("csrf_token", &csrf)]
                .map(|(k, v)| (k, v.to_string()));
            tokio::spawn(async move { http.post(url).form(&form).send().await.unwrap() })
        })
        .collect();
    let mut codes = 0;
    for submission in submissions {
        let response = submission.await.unwrap();
        if response.status() == 303 {
            assert!(header(&response, LOCATION).starts_with(REDIRECT));
            codes += 1;
        } else {
            assert_page(response, 400, "a concurrent second answer").await;
        }
    }
    assert_eq!(codes, 1, "one answer reaches the client");
    // Regression: the request is claimed before its code is created, so the losing
    // submissions store no undelivered codes.
    let after = peek.stored().await;
    let count = |snapshot: &[(&str, i64)], q: &str| {
        snapshot
            .iter()
            .find(|(k, _)| *k == q)
            .map(|(_, n)| *n)
            .unwrap()
    };
    assert_eq!(
        count(&after, STORED[4]) - count(&before, STORED[4]),
        1,
        "codes stored for one answered request"
    );
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;")
        .replace('/', "&#x2f;")
}

// ---------------------------------------------------------------------------------------
// 6. A sweep: hostile bodies at every endpoint are never a 5xx
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn hostile_bodies_are_never_a_server_error() {
    let app = spawn_flow_app().await;
    let mut peek = Peek::open(&app).await;
    let mut nul = b"client_id=r\0p&redirect_uri=\0&username=al\0ice&password=\0&req=\0&code=\0&grant_type=authorization_code&access_token=\0&csrf_token=\0&decision=allow".to_vec();
    nul.extend_from_slice(b"&scope=openid%00&state=%00&client_secret=%00");
    let bodies: Vec<(&str, &str, Vec<u8>)> = vec![
        ("empty", FORM, Vec::new()),
        ("1 MiB of a", FORM, vec![b'a'; 1024 * 1024]),
        (
            "invalid UTF-8",
            FORM,
            b"\xff\xfe=\xfd&client_id=\xc3\x28&code=\x80&username=\xff&req=\xff&access_token=\xff"
                .to_vec(),
        ),
        ("NUL bytes", FORM, nul),
        ("JSON {}", "application/json", b"{}".to_vec()),
        (
            "JSON with parameters",
            "application/json",
            br#"{"client_id":"rp","grant_type":"authorization_code"}"#.to_vec(),
        ),
        (
            "multipart",
            "multipart/form-data; boundary=x",
            b"--x\r\nContent-Disposition: form-data; name=\"client_id\"\r\n\r\nrp\r\n--x--\r\n"
                .to_vec(),
        ),
        (
            "text/plain",
            "text/plain",
            b"client_id=rp&grant_type=authorization_code".to_vec(),
        ),
    ];
    // Regression (PostgreSQL refuses text containing 0x00): a NUL in client_id at
    // /authorize and /token is a 4xx.
    let queries = [
        "",
        "?%FF=%FE&client_id=%00&req=%00&access_token=%FF",
        "?client_id=rp&client_id=rp&req=a&req=b",
    ];
    for (method, path) in [
        ("GET", "/authorize"),
        ("POST", "/authorize"),
        ("POST", "/token"),
        ("GET", "/userinfo"),
        ("POST", "/userinfo"),
        ("GET", "/login"),
        ("POST", "/login"),
        ("GET", "/consent"),
        ("POST", "/consent"),
    ] {
        for query in queries {
            for (name, content_type, body) in &bodies {
                let case = format!("{method} {path}{query} {name}");
                let before = peek.stored().await;
                let request = app
                    .http
                    .request(method.parse().unwrap(), app.url(&format!("{path}{query}")))
                    .header(CONTENT_TYPE, *content_type)
                    .body(body.clone());
                match request.send().await {
                    Ok(response) => {
                        let status = response.status();
                        assert!(status.as_u16() < 500, "{case}: {status}");
                        // The 1 MiB body is refused by size, not by content.
                        if *name == "1 MiB of a" && method == "POST" {
                            assert!(status.is_client_error(), "{case}: {status}");
                        }
                    }
                    // The server may answer early and close before reading the whole
                    // body; the request is then refused, which is fine.
                    Err(e) if body.len() > 64 * 1024 => {
                        assert!(!e.is_timeout(), "{case}: {e}");
                    }
                    Err(e) => panic!("{case}: {e}"),
                }
                assert_eq!(peek.stored().await, before, "{case}: something was stored");
            }
        }
    }
    // Still serving.
    assert_eq!(app.get("/healthz").await.status(), 200);
}

/// RFC 6749 §4.1.2 under a race: the same code sent eight times at once is exchanged
/// exactly once (redemption is one conditional UPDATE … RETURNING), and the losers are
/// replays, so the winner's tokens end up revoked.
#[tokio::test]
async fn a_code_sent_eight_times_at_once_is_exchanged_once() {
    let app = spawn_flow_app().await;
    let good = basic(CLIENT, CLIENT_SECRET);
    let code = code_for(&app, CLIENT, "").await;
    let pairs = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
    ];
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (http, url, body, auth) = (
            app.http.clone(),
            app.url("/token"),
            form(&pairs),
            good.clone(),
        );
        tasks.spawn(async move {
            let response = http
                .post(url)
                .header(CONTENT_TYPE, FORM)
                .header(AUTHORIZATION, auth)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        });
    }
    let mut won = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (status, body) = done.unwrap();
        match status {
            200 => won.push(body),
            400 => assert_eq!(body["error"], "invalid_grant", "{body}"),
            other => panic!("status {other}: {body}"),
        }
    }
    assert_eq!(won.len(), 1, "exactly one exchange wins: {won:?}");
    let access = won[0]["access_token"].as_str().unwrap();
    let response = app
        .http
        .get(app.url("/userinfo"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        401,
        "the replays revoked the winner's tokens"
    );
}
