//! A user's own sessions: the account API (`/api/v1/account/sessions`, first-party
//! tokens only) and the `/account/sessions` page. Which sessions are listed, what ending
//! one (or all) of them ends, and what is refused without ending anything.

use std::collections::BTreeSet;
use std::sync::Arc;

use reqwest::cookie::{CookieStore, Jar};
use serde_json::Value;

use crate::helpers::jwt_claims_map;
use crate::helpers::{
    CLIENT, CLIENT_SECRET, Options, PASSWORD, REDIRECT, TestApp, USER, hidden_input, query_param,
    spawn_app_with,
};

const BOB: &str = "bob";
const BOB_PASSWORD: &str = "another long password";
/// A first-party frontend signing users in with the password grant.
const FRONTEND: &str = "frontend";
/// The header the frontend asserts the end user's address in.
const IP_HEADER: &str = "x-end-user-ip";
const ORIGIN: &str = "http://localhost:3000";
const SESSIONS: &str = "/api/v1/account/sessions";
const SESSION_COOKIE: &str = "oxidp_session";
/// The fields of a listed session, sorted.
#[rustfmt::skip]
const ITEM_FIELDS: [&str; 7] =
    ["auth_time", "created_at", "current", "id", "ip", "last_seen_at", "user_agent"];

fn options() -> Options {
    Options {
        extra_toml: format!(
            r#"
[[users]]
username = "{USER}"
email = "alice@example.com"
password = "{PASSWORD}"

[[users]]
username = "{BOB}"
email = "bob@example.com"
password = "{BOB_PASSWORD}"

[[clients]]
id = "{CLIENT}"
name = "Relying Party"
secret = "{CLIENT_SECRET}"
redirect_uris = ["{REDIRECT}"]

[[clients]]
id = "{FRONTEND}"
secret = "{CLIENT_SECRET}"
first_party = true
grant_types = ["password", "refresh_token"]

[ratelimit]
client_ip_header = "{IP_HEADER}"

[cors]
allowed_origins = ["{ORIGIN}"]
"#
        ),
        ..Options::default()
    }
}

async fn spawn() -> TestApp {
    spawn_app_with(options()).await
}

// ---- clients, browsers and tokens ------------------------------------------------------

/// A client without cookies (an app's server, or a script).
fn plain() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A browser with its own cookie jar and `User-Agent`.
struct Browser {
    http: reqwest::Client,
    jar: Arc<Jar>,
}

impl Browser {
    fn new(agent: &str) -> Self {
        let jar = Arc::new(Jar::default());
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .cookie_provider(jar.clone())
            .user_agent(agent)
            .build()
            .unwrap();
        Self { http, jar }
    }

    fn session_cookie(&self, app: &TestApp) -> String {
        let url = url::Url::parse(&app.address).unwrap();
        let header = self.jar.cookies(&url).expect("cookies");
        header
            .to_str()
            .unwrap()
            .split("; ")
            .find_map(|c| c.strip_prefix(&format!("{SESSION_COOKIE}=")))
            .expect("a session cookie")
            .to_string()
    }
}

/// The body of a page the request must answer with 200.
async fn page(request: reqwest::RequestBuilder) -> String {
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

/// A browser signed in at `/login` (no application waiting: it lands on `/account`).
async fn signed_in_browser(app: &TestApp, agent: &str, user: &str, password: &str) -> Browser {
    let browser = Browser::new(agent);
    let html = page(browser.http.get(app.url("/login"))).await;
    let csrf = hidden_input(&html, "csrf_token").expect("csrf_token on /login");
    let form = [
        ("username", user),
        ("password", password),
        ("csrf_token", &csrf),
    ];
    let response = browser.http.post(app.url("/login")).form(&form).send();
    let response = response.await.unwrap();
    assert!(response.status().is_redirection(), "{}", response.status());
    assert_eq!(location(&response).as_deref(), Some("/account"));
    browser
}

/// Whether `/account` shows the account (true) or sends the browser to `/login`.
async fn shows_account(request: reqwest::RequestBuilder) -> bool {
    let response = request.send().await.unwrap();
    if response.status() == 200 {
        return true;
    }
    assert_to_login(&response);
    false
}

fn assert_to_login(response: &reqwest::Response) {
    assert!(response.status().is_redirection(), "{}", response.status());
    assert_eq!(location(response).as_deref(), Some("/login"));
}

async fn signed_in(app: &TestApp, http: &reqwest::Client) -> bool {
    shows_account(http.get(app.url("/account"))).await
}

/// Whether the server still honours a session cookie sent by hand (ended server-side,
/// not only forgotten by the browser).
async fn cookie_signed_in(app: &TestApp, cookie: &str) -> bool {
    let cookie = format!("{SESSION_COOKIE}={cookie}");
    shows_account(plain().get(app.url("/account")).header("cookie", cookie)).await
}

/// What a client holds after a sign-in, with the session (`sid`) it lives in.
#[derive(Clone, Debug)]
struct Tokens {
    client: &'static str,
    access: String,
    refresh: String,
    sid: String,
}

impl Tokens {
    fn from_body(client: &'static str, body: &Value) -> Self {
        let field = |name: &str| {
            body[name]
                .as_str()
                .unwrap_or_else(|| panic!("no {name} in {body}"))
                .to_string()
        };
        let sid = jwt_claims_map(&field("id_token"))["sid"]
            .as_str()
            .expect("sid in the ID token")
            .to_string();
        Self {
            client,
            access: field("access_token"),
            refresh: field("refresh_token"),
            sid,
        }
    }
}

/// POSTs `form` to `path` (/token, /introspect) as `client`, with extra headers.
async fn post_as(
    app: &TestApp,
    path: &str,
    client: &str,
    form: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut request = plain()
        .post(app.url(path))
        .basic_auth(client, Some(CLIENT_SECRET))
        .form(form);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// The frontend signs `user` in with the password grant, from a browser with `agent`
/// at address `ip`.
async fn password_sign_in(
    app: &TestApp,
    user: &str,
    password: &str,
    scope: &str,
    agent: &str,
    ip: &str,
) -> Tokens {
    let form = [
        ("grant_type", "password"),
        ("username", user),
        ("password", password),
        ("scope", scope),
    ];
    let headers = [("user-agent", agent), (IP_HEADER, ip)];
    let (status, body) = post_as(app, "/token", FRONTEND, &form, &headers).await;
    assert_eq!(status, 200, "{body}");
    Tokens::from_body(FRONTEND, &body)
}

/// Alice at the frontend (`openid`) from a browser with `agent` at `ip`.
async fn alice_at(app: &TestApp, agent: &str, ip: &str) -> Tokens {
    password_sign_in(app, USER, PASSWORD, "openid", agent, ip).await
}

async fn alice_frontend(app: &TestApp) -> Tokens {
    alice_at(app, "Frontend/1.0", "203.0.113.7").await
}

/// Alice at the frontend with `offline_access`: a grant not bound to its session.
async fn alice_offline(app: &TestApp) -> Tokens {
    let scope = "openid offline_access";
    password_sign_in(app, USER, PASSWORD, scope, "Tablet/1.0", "192.0.2.3").await
}

async fn bob_frontend(app: &TestApp) -> Tokens {
    password_sign_in(app, BOB, BOB_PASSWORD, "openid", "Bob/1.0", "198.51.100.9").await
}

/// "rp" signs the browser's user in with the code flow (consenting); returns its tokens.
async fn rp_sign_in(app: &TestApp, browser: &Browser) -> Tokens {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("response_type", "code"),
            ("client_id", CLIENT),
            ("redirect_uri", REDIRECT),
            ("scope", "openid profile"),
        ])
        .finish();
    let url = app.url(&format!("/authorize?{query}"));
    let back = app.authorize_in(&browser.http, &url, USER, PASSWORD, "allow");
    let back = back.await;
    let code = query_param(&back, "code").unwrap_or_else(|| panic!("no code in {back}"));
    let form = [
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", REDIRECT),
    ];
    let (status, body) = post_as(app, "/token", CLIENT, &form, &[]).await;
    assert_eq!(status, 200, "{body}");
    Tokens::from_body(CLIENT, &body)
}

async fn userinfo_status(app: &TestApp, access: &str) -> u16 {
    let request = plain().get(app.url("/userinfo")).bearer_auth(access);
    request.send().await.unwrap().status().as_u16()
}

/// RFC 7662 as the token's client (rotates nothing).
async fn active(app: &TestApp, tokens: &Tokens) -> bool {
    let form = [("token", tokens.refresh.as_str())];
    let (_, body) = post_as(app, "/introspect", tokens.client, &form, &[]).await;
    body["active"].as_bool().unwrap_or_else(|| panic!("{body}"))
}

/// Both tokens still work.
async fn assert_live(app: &TestApp, tokens: &Tokens, context: &str) {
    assert!(
        active(app, tokens).await,
        "{context}: the refresh token of session {} was revoked",
        tokens.sid
    );
    assert_eq!(
        userinfo_status(app, &tokens.access).await,
        200,
        "{context}: the access token of session {} was revoked",
        tokens.sid
    );
}

/// The refresh token is refused with `invalid_grant`, the access token at UserInfo.
async fn assert_revoked(app: &TestApp, tokens: &Tokens, context: &str) {
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", tokens.refresh.as_str()),
    ];
    let (status, body) = post_as(app, "/token", tokens.client, &form, &[]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{context}: the refresh token of session {} still works: {body}",
        tokens.sid
    );
    assert_eq!(
        userinfo_status(app, &tokens.access).await,
        401,
        "{context}: the access token of session {} still works",
        tokens.sid
    );
}

fn location(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string())
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

// ---- the API ---------------------------------------------------------------------------

/// One API request: the status, the `WWW-Authenticate` challenge, the JSON body (or
/// Null). Every answer is `no-store`.
async fn api(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    access: Option<&str>,
) -> (u16, String, Value) {
    let mut request = plain().request(method, app.url(path));
    if let Some(access) = access {
        request = request.bearer_auth(access);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let challenge = header("www-authenticate").unwrap_or_default();
    if status != 204 {
        assert_eq!(
            header("cache-control").as_deref(),
            Some("no-store"),
            "{path}"
        );
    }
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, challenge, body)
}

/// `GET /api/v1/account/sessions` with `access`: the items.
async fn api_list(app: &TestApp, access: &str) -> Vec<Value> {
    let (status, _, body) = api(app, reqwest::Method::GET, SESSIONS, Some(access)).await;
    assert_eq!(status, 200, "{body}");
    body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items in {body}"))
        .clone()
}

fn ids(items: &[Value]) -> BTreeSet<String> {
    items
        .iter()
        .map(|i| i["id"].as_str().expect("id").to_string())
        .collect()
}

fn set(sids: &[&str]) -> BTreeSet<String> {
    sids.iter().map(|s| s.to_string()).collect()
}

/// `DELETE` on `path` with `access`: the status and the JSON body (or Null).
async fn api_delete(app: &TestApp, access: &str, path: &str) -> (u16, Value) {
    let (status, _, body) = api(app, reqwest::Method::DELETE, path, Some(access)).await;
    (status, body)
}

fn one(sid: &str) -> String {
    format!("{SESSIONS}/{sid}")
}

#[tokio::test]
async fn the_api_lists_the_callers_live_sessions_with_where_they_came_from() {
    let app = spawn().await;
    let before = now();
    let first = alice_frontend(&app).await;
    let second = alice_at(&app, "Frontend/2.0", "2001:db8::1").await;
    let browser = signed_in_browser(&app, "Browser/3.0", USER, PASSWORD).await;
    let bob = bob_frontend(&app).await;
    let after = now();

    let items = api_list(&app, &first.access).await;
    assert_eq!(items.len(), 3, "{items:?}");
    let browser_sid = ids(&items)
        .into_iter()
        .find(|sid| *sid != first.sid && *sid != second.sid)
        .unwrap();
    assert_eq!(
        ids(&items),
        set(&[&first.sid, &second.sid, &browser_sid]),
        "{items:?}"
    );
    assert!(!ids(&items).contains(&bob.sid), "bob's session listed");
    for i in &items {
        let mut keys: Vec<&str> = i.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ITEM_FIELDS, "{i}");
        for field in ["created_at", "last_seen_at", "auth_time"] {
            let t = i[field].as_i64().unwrap_or_else(|| panic!("{field}: {i}"));
            assert!(before - 1 <= t && t <= after + 1, "{field}: {i}");
        }
        assert!(
            i["last_seen_at"].as_i64() >= i["created_at"].as_i64(),
            "{i}"
        );
    }
    let expect = [
        (&first.sid, "Frontend/1.0", "203.0.113.7", true),
        (&second.sid, "Frontend/2.0", "2001:db8::1", false),
        (&browser_sid, "Browser/3.0", "127.0.0.1", false),
    ];
    for (sid, agent, ip, current) in expect {
        let i = items.iter().find(|i| i["id"] == sid.as_str()).unwrap();
        assert_eq!(i["user_agent"], agent, "{i}");
        assert_eq!(i["ip"], ip, "{i}");
        assert_eq!(i["current"], current, "{i}");
    }

    // `current` follows the token: the second sign-in's token marks only its session.
    let items = api_list(&app, &second.access).await;
    let current: Vec<&Value> = items.iter().filter(|i| i["current"] == true).collect();
    assert_eq!(current.len(), 1, "{items:?}");
    assert_eq!(current[0]["id"], second.sid.as_str());

    // Bob sees only his own session.
    let items = api_list(&app, &bob.access).await;
    assert_eq!(ids(&items), set(&[&bob.sid]), "{items:?}");
    assert_eq!(items[0]["current"], true);
    assert!(signed_in(&app, &browser.http).await);
}

#[tokio::test]
async fn the_api_needs_a_first_party_token() {
    let app = spawn().await;
    let alice = alice_frontend(&app).await;
    let browser = Browser::new("Browser/1.0");
    let rp = rp_sign_in(&app, &browser).await;

    use reqwest::Method;
    let paths = [SESSIONS.to_string(), one(&alice.sid)];
    let requests = [
        (Method::GET, &paths[0]),
        (Method::DELETE, &paths[0]),
        (Method::DELETE, &paths[1]),
    ];
    for (method, path) in requests {
        // No token: 401 with a challenge.
        let (status, challenge, body) = api(&app, method.clone(), path, None).await;
        assert_eq!(status, 401, "{method} {path}: {body}");
        assert!(
            challenge.starts_with("Bearer"),
            "{method} {path}: {challenge}"
        );
        // A token that is not one: 401 invalid_token.
        let (status, challenge, _) = api(&app, method.clone(), path, Some("not-a-token")).await;
        assert_eq!(status, 401, "{method} {path}");
        assert!(challenge.contains("invalid_token"), "{challenge}");
        // A third-party client's token (even with `profile`): 403 insufficient_scope.
        let (status, challenge, body) = api(&app, method.clone(), path, Some(&rp.access)).await;
        assert_eq!(status, 403, "{method} {path}: {body}");
        assert!(challenge.contains("insufficient_scope"), "{challenge}");
        assert_eq!(
            body["error"], "insufficient_scope",
            "{method} {path}: {body}"
        );
    }
    let (status, body) = api_delete(&app, &rp.access, &one(&rp.sid)).await;
    assert_eq!(status, 403, "{body}");
    // Nothing ended.
    assert_live(&app, &alice, "after refused requests").await;
    assert_live(&app, &rp, "after refused requests").await;
    assert!(signed_in(&app, &browser.http).await);
}

#[tokio::test]
async fn deleting_one_session_ends_it_and_its_tokens_only() {
    let app = spawn().await;
    let caller = alice_frontend(&app).await;
    let doomed = alice_at(&app, "Phone/1.0", "192.0.2.1").await;
    let browser = Browser::new("Browser/1.0");
    let rp = rp_sign_in(&app, &browser).await;
    let bob = bob_frontend(&app).await;

    let (status, body) = api_delete(&app, &caller.access, &one(&doomed.sid)).await;
    assert_eq!(status, 204, "{body}");
    assert_revoked(&app, &doomed, "the deleted session").await;
    assert_live(&app, &caller, "the caller's session").await;
    assert_live(&app, &rp, "the browser's session").await;
    assert!(signed_in(&app, &browser.http).await);
    assert_live(&app, &bob, "bob").await;
    let items = api_list(&app, &caller.access).await;
    assert_eq!(ids(&items), set(&[&caller.sid, &rp.sid]), "{items:?}");

    // Ending a browser's session signs that browser out (server-side).
    let cookie = browser.session_cookie(&app);
    let (status, body) = api_delete(&app, &caller.access, &one(&rp.sid)).await;
    assert_eq!(status, 204, "{body}");
    assert!(
        !signed_in(&app, &browser.http).await,
        "the browser is still signed in"
    );
    assert!(!cookie_signed_in(&app, &cookie).await);
    assert_revoked(&app, &rp, "the browser's session").await;
    assert_live(&app, &caller, "the caller's session").await;

    // Ending one's own session: the token used for it stops working too.
    let (status, body) = api_delete(&app, &caller.access, &one(&caller.sid)).await;
    assert_eq!(status, 204, "{body}");
    assert_revoked(&app, &caller, "the caller's own session").await;
    let (status, _, _) = api(&app, reqwest::Method::GET, SESSIONS, Some(&caller.access)).await;
    assert_eq!(status, 401, "the ended session's token still lists");
    assert_live(&app, &bob, "bob").await;
}

#[tokio::test]
async fn unknown_ended_or_foreign_session_ids_are_not_found_and_end_nothing() {
    let app = spawn().await;
    let caller = alice_frontend(&app).await;
    let ended = alice_at(&app, "Old/1.0", "192.0.2.2").await;
    let bob = bob_frontend(&app).await;
    let bob_browser = signed_in_browser(&app, "Bob's browser", BOB, BOB_PASSWORD).await;
    let bob_sids = ids(&api_list(&app, &bob.access).await);
    assert_eq!(bob_sids.len(), 2);

    let (status, _) = api_delete(&app, &caller.access, &one(&ended.sid)).await;
    assert_eq!(status, 204);

    let unknown = uuid::Uuid::new_v4().to_string();
    let long = "a".repeat(300);
    let mut ids_to_try = vec![ended.sid.clone(), unknown, long, "%20".to_string()];
    ids_to_try.extend(bob_sids.iter().cloned());
    for sid in &ids_to_try {
        let (status, body) = api_delete(&app, &caller.access, &one(sid)).await;
        assert_eq!(status, 404, "DELETE {sid}: {body}");
        assert_eq!(body["error"], "not_found", "DELETE {sid}: {body}");
    }
    assert_live(&app, &bob, "bob's password sign-in").await;
    assert!(signed_in(&app, &bob_browser.http).await, "bob's browser");
    assert_eq!(ids(&api_list(&app, &bob.access).await), bob_sids);
    assert_live(&app, &caller, "the caller").await;
    assert_eq!(
        ids(&api_list(&app, &caller.access).await),
        set(&[&caller.sid])
    );
}

#[tokio::test]
async fn deleting_all_sessions_signs_the_user_out_everywhere() {
    let app = spawn().await;
    let caller = alice_frontend(&app).await;
    let other = alice_at(&app, "Phone/1.0", "192.0.2.1").await;
    let offline = alice_offline(&app).await;
    let browser = Browser::new("Browser/1.0");
    let rp = rp_sign_in(&app, &browser).await;
    let cookie = browser.session_cookie(&app);
    let bob = bob_frontend(&app).await;
    let bob_browser = signed_in_browser(&app, "Bob's browser", BOB, BOB_PASSWORD).await;
    // The offline grant is not bound to its session: ending that session alone keeps it.
    let (status, _) = api_delete(&app, &caller.access, &one(&offline.sid)).await;
    assert_eq!(status, 204);
    assert!(
        active(&app, &offline).await,
        "the offline_access grant ended with its session"
    );

    let (status, body) = api_delete(&app, &caller.access, SESSIONS).await;
    assert_eq!(status, 204, "{body}");
    for (tokens, what) in [
        (&caller, "the caller"),
        (&other, "another password sign-in"),
        (&offline, "the offline_access grant"),
        (&rp, "the browser's relying party"),
    ] {
        assert_revoked(&app, tokens, what).await;
    }
    assert!(!signed_in(&app, &browser.http).await, "the browser");
    assert!(
        !cookie_signed_in(&app, &cookie).await,
        "the browser's cookie"
    );

    // A new sign-in sees only itself.
    let fresh = alice_frontend(&app).await;
    assert_eq!(
        ids(&api_list(&app, &fresh.access).await),
        set(&[&fresh.sid])
    );

    // Bob is untouched.
    assert_live(&app, &bob, "bob").await;
    assert!(signed_in(&app, &bob_browser.http).await, "bob's browser");
    assert_eq!(api_list(&app, &bob.access).await.len(), 2);
}

#[tokio::test]
async fn a_preflight_for_delete_from_an_allowed_origin_is_allowed() {
    let app = spawn().await;
    for path in [SESSIONS.to_string(), one("some-session")] {
        let preflight = |origin: &'static str| {
            plain()
                .request(reqwest::Method::OPTIONS, app.url(&path))
                .header("Origin", origin)
                .header("Access-Control-Request-Method", "DELETE")
                .header("Access-Control-Request-Headers", "authorization")
                .send()
        };
        let response = preflight(ORIGIN).await.unwrap();
        let status = response.status();
        assert!(status.is_success(), "{path}: {status}");
        let h = response.headers();
        assert_eq!(h["access-control-allow-origin"], ORIGIN, "{path}");
        assert_eq!(h["access-control-allow-credentials"], "true", "{path}");
        let methods = h["access-control-allow-methods"].to_str().unwrap();
        assert!(methods.contains("DELETE"), "{path}: {methods}");
        let headers = h["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .to_lowercase();
        assert!(headers.contains("authorization"), "{path}: {headers}");

        let response = preflight("https://evil.example").await.unwrap();
        let h = response.headers();
        let allowed = h.get("access-control-allow-origin");
        assert!(allowed.is_none(), "{path}: an unlisted origin: {allowed:?}");
    }
}

// ---- the page --------------------------------------------------------------------------

/// One session as the page lists it.
struct Listed {
    sid: String,
    current: bool,
    html: String,
}

/// The `<li data-sid=…>` items of the sessions page.
fn listed(html: &str) -> Vec<Listed> {
    html.split("data-sid=\"")
        .skip(1)
        .map(|rest| {
            let sid = rest[..rest.find('"').unwrap()].to_string();
            let item = &rest[..rest.find("</li>").unwrap_or(rest.len())];
            Listed {
                sid,
                current: item.contains("this browser"),
                html: item.to_string(),
            }
        })
        .collect()
}

/// The security headers of oxidp's pages.
fn assert_page_headers(response: &reqwest::Response, what: &str) {
    let headers = response.headers();
    let csp = headers
        .get("content-security-policy")
        .unwrap_or_else(|| panic!("{what}: no Content-Security-Policy"))
        .to_str()
        .unwrap();
    assert!(csp.contains("default-src 'none'"), "{what}: {csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap());
    assert_eq!(header("x-frame-options"), Some("DENY"), "{what}");
    assert_eq!(header("cache-control"), Some("no-store"), "{what}");
    assert!(
        header("content-type").is_some_and(|v| v.starts_with("text/html")),
        "{what}"
    );
}

/// The sessions page in `browser` (asserting 200 and the page headers).
async fn sessions_page(app: &TestApp, browser: &Browser) -> String {
    let response = browser.http.get(app.url("/account/sessions")).send();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    assert_page_headers(&response, "/account/sessions");
    response.text().await.unwrap()
}

/// The session this browser is in, as its page marks it.
async fn own_sid(app: &TestApp, browser: &Browser) -> String {
    let html = sessions_page(app, browser).await;
    let mine: Vec<Listed> = listed(&html).into_iter().filter(|l| l.current).collect();
    assert_eq!(mine.len(), 1, "{html}");
    mine[0].sid.clone()
}

/// What a POST to the page answered.
struct Posted {
    status: u16,
    html: String,
    /// Whether it removed the session cookie.
    clears_cookie: bool,
}

/// Loads the page and posts its form back with `fields` (and the page's CSRF token).
async fn sessions_post(app: &TestApp, browser: &Browser, fields: &[(&str, &str)]) -> Posted {
    let html = sessions_page(app, browser).await;
    let csrf = hidden_input(&html, "csrf_token").expect("csrf_token on the page");
    let mut form = vec![("csrf_token", csrf.as_str())];
    form.extend_from_slice(fields);
    post_raw(app, browser, &form).await
}

async fn post_raw(app: &TestApp, browser: &Browser, form: &[(&str, &str)]) -> Posted {
    let url = app.url("/account/sessions");
    let response = browser.http.post(url).form(form).send().await.unwrap();
    assert_page_headers(&response, "POST /account/sessions");
    let clears_cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            let lower = v.to_ascii_lowercase();
            v.starts_with(&format!("{SESSION_COOKIE}=;"))
                && (lower.contains("max-age=0") || lower.contains("expires="))
        });
    Posted {
        status: response.status().as_u16(),
        clears_cookie,
        html: response.text().await.unwrap(),
    }
}

#[tokio::test]
async fn the_page_needs_a_session_and_lists_the_sessions_with_their_forms() {
    let app = spawn().await;
    // Without a session: to /login.
    let nobody = Browser::new("Browser/1.0");
    let url = app.url("/account/sessions");
    assert_to_login(&nobody.http.get(&url).send().await.unwrap());
    let form = [("all", "1")];
    assert_to_login(&nobody.http.post(&url).form(&form).send().await.unwrap());

    let a = signed_in_browser(&app, "Browser A", USER, PASSWORD).await;
    let b = signed_in_browser(&app, "Browser B", USER, PASSWORD).await;
    let frontend = alice_at(&app, "Evil <script>alert(1)</script>", "203.0.113.7").await;
    let bob = bob_frontend(&app).await;

    // `/account` links here.
    let account = page(a.http.get(app.url("/account"))).await;
    assert!(
        account.contains("href=\"/account/sessions\""),
        "/account does not link to /account/sessions: {account}"
    );

    let html = sessions_page(&app, &a).await;
    let items = listed(&html);
    let api: BTreeSet<String> = ids(&api_list(&app, &frontend.access).await);
    let page: BTreeSet<String> = items.iter().map(|l| l.sid.clone()).collect();
    assert_eq!(page, api, "{html}");
    assert_eq!(page.len(), 3, "{html}");
    assert!(!page.contains(&bob.sid), "bob's session on alice's page");
    assert!(!html.contains(&bob.sid), "bob's session on alice's page");

    let current: Vec<&Listed> = items.iter().filter(|l| l.current).collect();
    assert_eq!(current.len(), 1, "'this browser' marks one session: {html}");
    assert!(current[0].html.contains("Browser A"), "{}", current[0].html);
    let b_sid = own_sid(&app, &b).await;
    assert_ne!(b_sid, current[0].sid);
    let b_item = items.iter().find(|l| l.sid == b_sid).unwrap();
    assert!(b_item.html.contains("Browser B"), "{}", b_item.html);
    let f_item = items.iter().find(|l| l.sid == frontend.sid).unwrap();
    assert!(f_item.html.contains("203.0.113.7"), "{}", f_item.html);
    // The agent is the user's input: shown escaped, never as markup.
    assert!(!html.contains("<script>alert(1)"), "{html}");
    assert!(f_item.html.contains("&lt;script&gt;"), "{}", f_item.html);

    for l in &items {
        let csrf = hidden_input(&l.html, "csrf_token");
        assert!(csrf.is_some_and(|c| !c.is_empty()), "{}", l.html);
        assert_eq!(
            hidden_input(&l.html, "sid").as_deref(),
            Some(l.sid.as_str())
        );
        assert!(
            l.html.contains("action=\"/account/sessions\""),
            "{}",
            l.html
        );
        assert!(l.html.contains("method=\"post\""), "{}", l.html);
    }
    let all = &html[html
        .find("name=\"all\"")
        .expect("a sign-out-everywhere form")..];
    assert_eq!(hidden_input(&html, "all").as_deref(), Some("1"));
    assert!(all.contains("Sign out everywhere"), "{html}");
}

#[tokio::test]
async fn the_page_signs_out_another_session() {
    let app = spawn().await;
    let a = signed_in_browser(&app, "Browser A", USER, PASSWORD).await;
    let b = Browser::new("Browser B");
    let b_tokens = rp_sign_in(&app, &b).await;
    let b_cookie = b.session_cookie(&app);
    let frontend = alice_frontend(&app).await;
    assert_eq!(own_sid(&app, &b).await, b_tokens.sid);

    let Posted { status, html, .. } = sessions_post(&app, &a, &[("sid", &b_tokens.sid)]).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Signed out of that session."), "{html}");
    let left: BTreeSet<String> = listed(&html).into_iter().map(|l| l.sid).collect();
    assert!(!left.contains(&b_tokens.sid), "{html}");
    assert!(left.contains(&frontend.sid), "{html}");
    assert!(
        !signed_in(&app, &b.http).await,
        "browser B is still signed in"
    );
    assert!(!cookie_signed_in(&app, &b_cookie).await);
    assert_revoked(&app, &b_tokens, "browser B's relying party").await;
    assert!(signed_in(&app, &a.http).await, "browser A was signed out");
    assert_live(&app, &frontend, "the frontend's session").await;

    // Again: that session had already ended; nothing else changes.
    let Posted { status, html, .. } = sessions_post(&app, &a, &[("sid", &b_tokens.sid)]).await;
    assert_eq!(status, 200, "{html}");
    assert!(!html.contains("Signed out of that session."), "{html}");
    assert!(signed_in(&app, &a.http).await);
    assert_live(&app, &frontend, "the frontend's session").await;
}

#[tokio::test]
async fn the_page_signs_out_this_browser() {
    let app = spawn().await;
    let a = Browser::new("Browser A");
    let a_tokens = rp_sign_in(&app, &a).await;
    let a_cookie = a.session_cookie(&app);
    let b = signed_in_browser(&app, "Browser B", USER, PASSWORD).await;
    let frontend = alice_frontend(&app).await;

    let posted = sessions_post(&app, &a, &[("sid", &a_tokens.sid)]).await;
    assert_eq!(posted.status, 200, "{}", posted.html);
    assert!(posted.clears_cookie, "the session cookie is not removed");
    assert!(
        posted.html.contains("You are signed out"),
        "{}",
        posted.html
    );
    assert!(
        !signed_in(&app, &a.http).await,
        "browser A is still signed in"
    );
    assert!(
        !cookie_signed_in(&app, &a_cookie).await,
        "ended only in the browser"
    );
    assert_revoked(&app, &a_tokens, "browser A's relying party").await;

    assert!(signed_in(&app, &b.http).await, "browser B was signed out");
    assert_live(&app, &frontend, "the frontend's session").await;
}

#[tokio::test]
async fn the_page_signs_out_everywhere() {
    let app = spawn().await;
    let a = signed_in_browser(&app, "Browser A", USER, PASSWORD).await;
    let a_cookie = a.session_cookie(&app);
    let b = Browser::new("Browser B");
    let b_tokens = rp_sign_in(&app, &b).await;
    let frontend = alice_frontend(&app).await;
    let offline = alice_offline(&app).await;
    let bob = bob_frontend(&app).await;
    let bob_browser = signed_in_browser(&app, "Bob's browser", BOB, BOB_PASSWORD).await;

    let Posted {
        status,
        html,
        clears_cookie,
    } = sessions_post(&app, &a, &[("all", "1")]).await;
    assert!(clears_cookie, "the session cookie is not removed");
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("You are signed out"), "{html}");
    assert!(!signed_in(&app, &a.http).await, "browser A");
    assert!(
        !cookie_signed_in(&app, &a_cookie).await,
        "browser A's cookie"
    );
    assert!(!signed_in(&app, &b.http).await, "browser B");
    for (tokens, what) in [
        (&b_tokens, "browser B's relying party"),
        (&frontend, "the frontend"),
        (&offline, "the offline_access grant"),
    ] {
        assert_revoked(&app, tokens, what).await;
    }
    assert_live(&app, &bob, "bob").await;
    assert!(signed_in(&app, &bob_browser.http).await, "bob's browser");
}

#[tokio::test]
async fn a_bad_csrf_token_ends_nothing() {
    let app = spawn().await;
    let a = signed_in_browser(&app, "Browser A", USER, PASSWORD).await;
    let b = signed_in_browser(&app, "Browser B", USER, PASSWORD).await;
    let frontend = alice_frontend(&app).await;
    let b_sid = own_sid(&app, &b).await;
    let a_sid = own_sid(&app, &a).await;

    // Tokens that are not this form's: forged, another browser's, another form's.
    let b_page = sessions_page(&app, &b).await;
    let b_csrf = hidden_input(&b_page, "csrf_token").unwrap();
    let account = page(a.http.get(app.url("/account"))).await;
    let account_csrf = hidden_input(&account, "csrf_token").unwrap();
    sessions_page(&app, &a).await; // a's CSRF secret exists
    let mut attempts: Vec<Vec<(&str, &str)>> = Vec::new();
    for target in [
        ("sid", b_sid.as_str()),
        ("sid", a_sid.as_str()),
        ("all", "1"),
    ] {
        attempts.push(vec![target]);
        for csrf in ["forged", "", &b_csrf, &account_csrf] {
            attempts.push(vec![("csrf_token", csrf), target]);
        }
    }
    for form in &attempts {
        let Posted { status, html, .. } = post_raw(&app, &a, form).await;
        assert_eq!(status, 400, "{form:?}: {html}");
        assert!(html.contains("This form has expired"), "{form:?}: {html}");
    }
    // A good token but no session chosen: refused too.
    let Posted { status, html, .. } = sessions_post(&app, &a, &[]).await;
    assert_eq!(status, 400, "{html}");
    assert!(signed_in(&app, &a.http).await, "browser A was signed out");
    assert!(signed_in(&app, &b.http).await, "browser B was signed out");
    assert_live(&app, &frontend, "the frontend").await;
    assert_eq!(api_list(&app, &frontend.access).await.len(), 3);
}

#[tokio::test]
async fn another_users_session_cannot_be_ended_from_the_page() {
    let app = spawn().await;
    let a = signed_in_browser(&app, "Browser A", USER, PASSWORD).await;
    let bob_browser = signed_in_browser(&app, "Bob's browser", BOB, BOB_PASSWORD).await;
    let bob_sid = own_sid(&app, &bob_browser).await;
    let bob = bob_frontend(&app).await;

    for sid in [bob_sid.as_str(), bob.sid.as_str()] {
        let Posted { status, html, .. } = sessions_post(&app, &a, &[("sid", sid)]).await;
        assert_eq!(status, 200, "{html}");
        assert!(
            !html.contains("Signed out of that session."),
            "claims to have ended bob's session: {html}"
        );
        assert!(!html.contains(sid), "bob's session shown to alice: {html}");
    }
    assert!(signed_in(&app, &bob_browser.http).await, "bob's browser");
    assert_live(&app, &bob, "bob's frontend session").await;
    assert_eq!(api_list(&app, &bob.access).await.len(), 2);
    assert!(signed_in(&app, &a.http).await, "alice's browser");
}
