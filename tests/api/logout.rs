//! RP-Initiated Logout 1.0: the end_session_endpoint `/logout`. Which requests end the
//! browser session (and the refresh and access tokens that live with it), where the
//! browser is sent afterwards, when the user is asked first, and what is refused.

use std::sync::Arc;

use reqwest::cookie::{CookieStore, Jar};
use serde_json::{Map, Value};

use crate::helpers::jwt_claims_map;
use crate::helpers::{
    CLIENT, CLIENT_SECRET, Options, PASSWORD, REDIRECT, TestApp, USER, html_decode, query_param,
    spawn_app_with,
};

const BOB: &str = "bob";
const BOB_PASSWORD: &str = "another long password";
/// A second relying party with its own post-logout URI.
const OTHER: &str = "other";
/// A first-party frontend signing users in with the password grant.
const FRONTEND: &str = "frontend";

const LOGGED_OUT: &str = "https://rp.example/logged-out";
const BYE: &str = "https://rp.example/bye?x=1";
const OTHER_LOGGED_OUT: &str = "https://other.example/logged-out";
const FRONTEND_SIGNED_OUT: &str = "https://app.example/signed-out";

const SESSION_COOKIE: &str = "oxidp_session";

fn options() -> Options {
    Options {
        extra_toml: format!(
            r#"
[[users]]
username = "{USER}"
email = "alice@example.com"
password = "{PASSWORD}"
name = "Alice Example"

[[users]]
username = "{BOB}"
email = "bob@example.com"
password = "{BOB_PASSWORD}"

[[clients]]
id = "{CLIENT}"
name = "Relying Party"
secret = "{CLIENT_SECRET}"
redirect_uris = ["{REDIRECT}"]
post_logout_redirect_uris = ["{LOGGED_OUT}", "{BYE}"]

[[clients]]
id = "{OTHER}"
name = "Other App"
secret = "{CLIENT_SECRET}"
redirect_uris = ["{REDIRECT}"]
post_logout_redirect_uris = ["{OTHER_LOGGED_OUT}"]

[[clients]]
id = "{FRONTEND}"
secret = "{CLIENT_SECRET}"
first_party = true
grant_types = ["password", "refresh_token"]
post_logout_redirect_uris = ["{FRONTEND_SIGNED_OUT}"]
"#
        ),
        ..Options::default()
    }
}

async fn spawn() -> TestApp {
    spawn_app_with(options()).await
}

/// A browser: its own cookie jar, no automatic redirects.
struct Browser {
    http: reqwest::Client,
    jar: Arc<Jar>,
}

impl Browser {
    fn new() -> Self {
        let jar = Arc::new(Jar::default());
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .cookie_provider(jar.clone())
            .build()
            .unwrap();
        Self { http, jar }
    }

    fn cookie(&self, app: &TestApp, name: &str) -> Option<String> {
        let url = url::Url::parse(&app.address).unwrap();
        let header = self.jar.cookies(&url)?;
        header
            .to_str()
            .ok()?
            .split("; ")
            .find_map(|c| c.strip_prefix(&format!("{name}=")).map(str::to_string))
    }
}

/// What a relying party holds after a sign-in.
#[derive(Clone)]
struct Tokens {
    client: &'static str,
    id: String,
    access: String,
    refresh: String,
}

fn auth_url(app: &TestApp, client: &str, scope: &str, extra: &str) -> String {
    let mut url = url::Url::parse(&app.url("/authorize")).unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("scope", scope)
        .append_pair("state", "st");
    format!("{url}{extra}")
}

async fn exchange(app: &TestApp, client: &'static str, back: &url::Url) -> Tokens {
    let code = query_param(back, "code").unwrap_or_else(|| panic!("no code in {back}"));
    let response = app
        .token(
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
            ],
            Some((client, CLIENT_SECRET)),
        )
        .await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    let field = |name: &str| {
        body[name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} in {body}"))
            .to_string()
    };
    Tokens {
        client,
        id: field("id_token"),
        access: field("access_token"),
        refresh: field("refresh_token"),
    }
}

/// Signs `user` in through the pages in `browser` for `client` (consenting when asked)
/// and exchanges the code.
async fn sign_in_as(
    app: &TestApp,
    browser: &Browser,
    client: &'static str,
    scope: &str,
    user: &str,
    password: &str,
) -> Tokens {
    let back = app
        .authorize_in(
            &browser.http,
            &auth_url(app, client, scope, ""),
            user,
            password,
            "allow",
        )
        .await;
    exchange(app, client, &back).await
}

/// Alice signs in to "rp" with scope `openid`.
async fn sign_in(app: &TestApp, browser: &Browser) -> Tokens {
    sign_in_as(app, browser, CLIENT, "openid", USER, PASSWORD).await
}

/// `prompt=none` for "rp" in this browser: whether its session still signs the user in
/// silently (a code) rather than `login_required`.
async fn session_alive(app: &TestApp, http: &reqwest::Client) -> bool {
    let response = http
        .get(auth_url(app, CLIENT, "openid", "&prompt=none"))
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_redirection(),
        "prompt=none: {}",
        response.status()
    );
    let location = location(&response).expect("Location");
    let back = url::Url::parse(&location).unwrap();
    assert!(location.starts_with(REDIRECT), "{location}");
    if query_param(&back, "code").is_some() {
        true
    } else {
        assert_eq!(
            query_param(&back, "error").as_deref(),
            Some("login_required"),
            "{back}"
        );
        false
    }
}

/// `prompt=none` with an old session cookie sent by hand: whether the server still
/// honours that session (it must be ended server-side, not only forgotten by the jar).
async fn cookie_alive(app: &TestApp, session_cookie: &str) -> bool {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(
            [(
                reqwest::header::COOKIE,
                format!("{SESSION_COOKIE}={session_cookie}")
                    .parse()
                    .unwrap(),
            )]
            .into_iter()
            .collect(),
        )
        .build()
        .unwrap();
    session_alive(app, &http).await
}

fn rp_http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// RFC 7662 as the token's client: whether it is active (does not rotate anything).
async fn active(app: &TestApp, client: &str, token: &str) -> bool {
    let body: Value = rp_http()
        .post(app.url("/introspect"))
        .basic_auth(client, Some(CLIENT_SECRET))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["active"].as_bool().unwrap_or_else(|| panic!("{body}"))
}

async fn refresh(app: &TestApp, client: &str, token: &str) -> (u16, Value) {
    let response = rp_http()
        .post(app.url("/token"))
        .basic_auth(client, Some(CLIENT_SECRET))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn userinfo_status(app: &TestApp, access_token: &str) -> u16 {
    rp_http()
        .get(app.url("/userinfo"))
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The tokens still work (checked without rotating the refresh token).
async fn assert_tokens_live(app: &TestApp, tokens: &Tokens, context: &str) {
    assert!(
        active(app, tokens.client, &tokens.refresh).await,
        "{context}: the refresh token was revoked"
    );
    assert_eq!(
        userinfo_status(app, &tokens.access).await,
        200,
        "{context}: the access token was revoked"
    );
}

/// The refresh token is refused with `invalid_grant` and the access token at UserInfo.
async fn assert_tokens_revoked(app: &TestApp, tokens: &Tokens, context: &str) {
    let (status, body) = refresh(app, tokens.client, &tokens.refresh).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{context}: the refresh token still works: {body}"
    );
    assert_eq!(
        userinfo_status(app, &tokens.access).await,
        401,
        "{context}: the access token still works"
    );
}

/// Session and tokens untouched.
async fn assert_intact(app: &TestApp, browser: &Browser, tokens: &Tokens, context: &str) {
    assert!(
        session_alive(app, &browser.http).await,
        "{context}: the browser session was ended"
    );
    assert_tokens_live(app, tokens, context).await;
}

/// Session ended (in this browser and on the server) and its tokens revoked.
async fn assert_ended(
    app: &TestApp,
    browser: &Browser,
    old_cookie: &str,
    tokens: &Tokens,
    context: &str,
) {
    assert!(
        !session_alive(app, &browser.http).await,
        "{context}: the browser still has a session"
    );
    assert!(
        !cookie_alive(app, old_cookie).await,
        "{context}: the old session cookie still signs in (session not ended server-side)"
    );
    assert_tokens_revoked(app, tokens, context).await;
}

fn logout_url(app: &TestApp, params: &[(&str, &str)]) -> String {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    if query.is_empty() {
        app.url("/logout")
    } else {
        app.url(&format!("/logout?{query}"))
    }
}

async fn logout_get(
    app: &TestApp,
    http: &reqwest::Client,
    params: &[(&str, &str)],
) -> reqwest::Response {
    http.get(logout_url(app, params)).send().await.unwrap()
}

async fn logout_post(
    app: &TestApp,
    http: &reqwest::Client,
    params: &[(&str, &str)],
) -> reqwest::Response {
    http.post(app.url("/logout"))
        .form(params)
        .send()
        .await
        .unwrap()
}

fn location(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string())
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
    assert_eq!(
        headers.get("x-frame-options").map(|v| v.to_str().unwrap()),
        Some("DENY"),
        "{what}"
    );
    assert_eq!(
        headers.get("cache-control").map(|v| v.to_str().unwrap()),
        Some("no-store"),
        "{what}"
    );
    assert_eq!(
        headers
            .get("x-content-type-options")
            .map(|v| v.to_str().unwrap()),
        Some("nosniff"),
        "{what}"
    );
    assert!(
        headers
            .get("content-type")
            .is_some_and(|v| v.to_str().unwrap().starts_with("text/html")),
        "{what}: {:?}",
        headers.get("content-type")
    );
}

/// A refused request (§3: never redirected): a 400 HTML error page without Location.
async fn assert_refused(response: reqwest::Response, what: &str) -> String {
    assert_eq!(response.status(), 400, "{what}");
    assert_eq!(location(&response), None, "{what}: redirected");
    assert_page_headers(&response, what);
    let html = response.text().await.unwrap();
    assert!(
        html.contains("This sign-out request cannot be completed"),
        "{what}: {html}"
    );
    html
}

/// The confirmation page: its status, headers, and the fields a browser would post
/// back when the user presses "Sign out".
async fn assert_confirmation(
    response: reqwest::Response,
    what: &str,
) -> (String, Vec<(String, String)>) {
    assert_eq!(response.status(), 200, "{what}: not the confirmation page");
    assert_eq!(location(&response), None, "{what}");
    assert_page_headers(&response, what);
    let html = response.text().await.unwrap();
    let fields = form_fields(&html);
    assert!(
        fields
            .iter()
            .any(|(k, v)| k == "csrf_token" && !v.is_empty()),
        "{what}: no csrf_token: {html}"
    );
    assert!(
        fields.iter().any(|(k, v)| k == "decision" && v == "logout"),
        "{what}: no decision=logout button: {html}"
    );
    (html, fields)
}

/// The signed-out page (no redirect asked for).
async fn assert_signed_out_page(response: reqwest::Response, what: &str) {
    assert_eq!(response.status(), 200, "{what}");
    assert_eq!(location(&response), None, "{what}");
    assert_page_headers(&response, what);
    let html = response.text().await.unwrap();
    assert!(html.contains("You are signed out"), "{what}: {html}");
    assert!(!html.contains("<form"), "{what}: {html}");
}

/// The "form has expired" page of a confirmation POST with a bad CSRF token.
async fn assert_form_expired(response: reqwest::Response, what: &str) {
    assert_eq!(response.status(), 400, "{what}");
    assert_eq!(location(&response), None, "{what}: redirected");
    assert_page_headers(&response, what);
    let html = response.text().await.unwrap();
    assert!(html.contains("This form has expired"), "{what}: {html}");
}

/// Every field the page's (single) form submits, with the `decision` button the user
/// presses; asserts the form posts to /logout.
fn form_fields(html: &str) -> Vec<(String, String)> {
    let start = html.find("<form").expect("a form on the page");
    let form = &html[start..];
    let form = &form[..form.find("</form>").expect("end of the form")];
    let open = &form[..form.find('>').unwrap()];
    assert_eq!(attr(open, "method").as_deref(), Some("post"), "{open}");
    assert_eq!(attr(open, "action").as_deref(), Some("/logout"), "{open}");
    let mut fields = Vec::new();
    for tag in form.split('<').skip(1) {
        let tag = &tag[..tag.find('>').unwrap_or(tag.len())];
        if !(tag.starts_with("input") || tag.starts_with("button")) {
            continue;
        }
        if let Some(name) = attr(tag, "name") {
            fields.push((name, attr(tag, "value").unwrap_or_default()));
        }
    }
    fields
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let marker = format!(" {name}=\"");
    let start = tag.find(&marker)? + marker.len();
    let end = start + tag[start..].find('"')?;
    Some(html_decode(&tag[start..end]))
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn as_pairs(fields: &[(String, String)]) -> Vec<(&str, &str)> {
    fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// The `Set-Cookie` header that removes the session cookie, if any.
fn removes_session_cookie(response: &reqwest::Response) -> bool {
    response.headers().get_all("set-cookie").iter().any(|c| {
        let c = c.to_str().unwrap();
        c.starts_with(&format!("{SESSION_COOKIE}="))
            && (c.contains("Max-Age=0")
                || c.to_ascii_lowercase().contains("expires=thu, 01 jan 1970"))
    })
}

/// A JWS (RS256) over `claims`, signed with the PEM key `pem`, with header `kid` and
/// `typ` as given.
fn sign_jwt(claims: Map<String, Value>, pem: &[u8], kid: &str, typ: Option<&str>) -> String {
    use josekit::jws::JwsHeader;
    use josekit::jwt::JwtPayload;
    let signer = josekit::jws::RS256.signer_from_pem(pem).unwrap();
    let mut header = JwsHeader::new();
    header.set_key_id(kid);
    if let Some(typ) = typ {
        header.set_token_type(typ);
    }
    let payload = JwtPayload::from_map(claims).unwrap();
    josekit::jwt::encode_with_signer(&payload, &header, &signer).unwrap()
}

fn header_of(token: &str) -> (String, Option<String>) {
    let header = josekit::jwt::decode_header(token).unwrap();
    (
        header.claim("kid").unwrap().as_str().unwrap().to_string(),
        header
            .claim("typ")
            .and_then(Value::as_str)
            .map(str::to_string),
    )
}

/// The server's own signing key (the test writes it into the key directory).
fn server_key_pem(app: &TestApp) -> Vec<u8> {
    std::fs::read(app.keys_dir().join("test.pem")).unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn discovery_advertises_the_end_session_endpoint() {
    let app = spawn().await;
    let doc = app.get_json("/.well-known/openid-configuration").await;
    assert_eq!(doc["end_session_endpoint"], app.url("/logout"));
    assert_eq!(doc["frontchannel_logout_supported"], false);
    assert_eq!(doc["backchannel_logout_supported"], true);
    assert_eq!(doc["backchannel_logout_session_supported"], true);
    let oauth = app
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    assert_eq!(oauth["end_session_endpoint"], app.url("/logout"));
}

#[tokio::test]
async fn a_hint_naming_the_session_ends_it_and_redirects_with_state() {
    let app = spawn().await;
    let browser = Browser::new();
    let tokens = sign_in(&app, &browser).await;
    let id = jwt_claims_map(&tokens.id);
    assert!(id["sid"].is_string(), "no sid in the ID token: {id:?}");
    let cookie = browser
        .cookie(&app, SESSION_COOKIE)
        .expect("session cookie");
    // A second application signed in through the same browser session.
    let other = sign_in_as(&app, &browser, OTHER, "openid", USER, PASSWORD).await;
    assert_eq!(jwt_claims_map(&other.id)["sid"], id["sid"]);
    // And tokens from a refresh of the other application's family.
    let (status, body) = refresh(&app, OTHER, &other.refresh).await;
    assert_eq!(status, 200, "{body}");
    let rotated = Tokens {
        client: OTHER,
        id: body["id_token"].as_str().unwrap().to_string(),
        access: body["access_token"].as_str().unwrap().to_string(),
        refresh: body["refresh_token"].as_str().unwrap().to_string(),
    };
    assert_eq!(jwt_claims_map(&rotated.id)["sid"], id["sid"]);
    assert_intact(&app, &browser, &tokens, "before logout").await;
    assert!(
        cookie_alive(&app, &cookie).await,
        "the cookie probe is broken"
    );

    let response = logout_get(
        &app,
        &browser.http,
        &[
            ("id_token_hint", &tokens.id),
            ("post_logout_redirect_uri", LOGGED_OUT),
            ("state", "abc"),
        ],
    )
    .await;
    assert_eq!(response.status(), 303);
    assert_eq!(
        location(&response).as_deref(),
        Some("https://rp.example/logged-out?state=abc")
    );
    assert!(
        removes_session_cookie(&response),
        "the session cookie is not removed: {:?}",
        response.headers().get_all("set-cookie")
    );
    assert_eq!(browser.cookie(&app, SESSION_COOKIE), None);

    assert_ended(&app, &browser, &cookie, &tokens, "after GET /logout").await;
    // The other application's session-bound tokens end with the session too.
    assert_tokens_revoked(&app, &rotated, "other client after logout").await;
    // The rotated-away refresh token is still inside the refresh grace window, which
    // must not hand out the family's successor again once the session is over.
    let (status, body) = refresh(&app, OTHER, &other.refresh).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "a refresh inside the grace window after logout: {body}"
    );
    assert!(!active(&app, CLIENT, &tokens.refresh).await);
    assert_eq!(
        userinfo_status(&app, &other.access).await,
        401,
        "other client's first access token after logout"
    );
}

#[tokio::test]
async fn logout_by_form_post_works_the_same() {
    let app = spawn().await;
    let browser = Browser::new();
    let tokens = sign_in(&app, &browser).await;
    let cookie = browser.cookie(&app, SESSION_COOKIE).unwrap();
    let response = logout_post(
        &app,
        &browser.http,
        &[
            ("id_token_hint", &tokens.id),
            ("post_logout_redirect_uri", LOGGED_OUT),
            ("state", "abc"),
        ],
    )
    .await;
    assert_eq!(response.status(), 303);
    assert_eq!(
        location(&response).as_deref(),
        Some("https://rp.example/logged-out?state=abc")
    );
    assert_ended(&app, &browser, &cookie, &tokens, "after POST /logout").await;
}

#[tokio::test]
async fn an_offline_access_refresh_token_outlives_logout() {
    let app = spawn().await;
    let browser = Browser::new();
    let online = sign_in(&app, &browser).await;
    let offline = sign_in_as(
        &app,
        &browser,
        CLIENT,
        "openid offline_access",
        USER,
        PASSWORD,
    )
    .await;
    assert_eq!(
        jwt_claims_map(&offline.id)["sid"],
        jwt_claims_map(&online.id)["sid"]
    );
    let cookie = browser.cookie(&app, SESSION_COOKIE).unwrap();

    let response = logout_get(
        &app,
        &browser.http,
        &[
            ("id_token_hint", &online.id),
            ("post_logout_redirect_uri", LOGGED_OUT),
        ],
    )
    .await;
    assert_eq!(response.status(), 303);
    assert_ended(&app, &browser, &cookie, &online, "session-bound tokens").await;

    // OIDC Core §11: the offline grant is not bound to the browser session.
    assert!(
        active(&app, CLIENT, &offline.refresh).await,
        "logout revoked an offline_access refresh token"
    );
    let (status, body) = refresh(&app, CLIENT, &offline.refresh).await;
    assert_eq!(status, 200, "{body}");
    let access = body["access_token"].as_str().unwrap();
    assert_eq!(userinfo_status(&app, access).await, 200);
}

#[tokio::test]
async fn state_is_appended_only_when_sent_and_a_registered_query_is_kept() {
    let app = spawn().await;
    let browser = Browser::new();
    // (post_logout_redirect_uri, state, exact Location)
    let cases: [(&str, Option<&str>, &str); 4] = [
        (LOGGED_OUT, None, "https://rp.example/logged-out"),
        (BYE, Some("abc"), "https://rp.example/bye?x=1&state=abc"),
        (BYE, None, "https://rp.example/bye?x=1"),
        (
            LOGGED_OUT,
            Some("a b&c=d/é"),
            "https://rp.example/logged-out?state=a+b%26c%3Dd%2F%C3%A9",
        ),
    ];
    for (uri, state, expected) in cases {
        let tokens = sign_in(&app, &browser).await;
        let cookie = browser.cookie(&app, SESSION_COOKIE).unwrap();
        let mut params = vec![
            ("id_token_hint", tokens.id.as_str()),
            ("post_logout_redirect_uri", uri),
        ];
        if let Some(state) = state {
            params.push(("state", state));
        }
        let response = logout_get(&app, &browser.http, &params).await;
        assert_eq!(response.status(), 303, "{uri} {state:?}");
        let location = location(&response).unwrap();
        assert_eq!(location, expected, "{uri} {state:?}");
        let back = url::Url::parse(&location).unwrap();
        assert_eq!(query_param(&back, "state").as_deref(), state, "{location}");
        assert_ended(&app, &browser, &cookie, &tokens, uri).await;
    }
    // RFC 6749 §3.1: an empty state is no state.
    let tokens = sign_in(&app, &browser).await;
    let response = logout_get(
        &app,
        &browser.http,
        &[
            ("id_token_hint", &tokens.id),
            ("post_logout_redirect_uri", LOGGED_OUT),
            ("state", ""),
        ],
    )
    .await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response).as_deref(), Some(LOGGED_OUT));

    // A hint and no post_logout_redirect_uri: the session ends, and the browser stays
    // on the "signed out" page.
    let tokens = sign_in(&app, &browser).await;
    let cookie = browser.cookie(&app, SESSION_COOKIE).unwrap();
    let response = logout_get(
        &app,
        &browser.http,
        &[("id_token_hint", &tokens.id), ("state", "abc")],
    )
    .await;
    assert_signed_out_page(response, "hint without a redirect URI").await;
    assert_ended(
        &app,
        &browser,
        &cookie,
        &tokens,
        "hint without a redirect URI",
    )
    .await;
}

#[tokio::test]
async fn an_unregistered_post_logout_redirect_uri_is_refused_and_ends_nothing() {
    let app = spawn().await;
    let browser = Browser::new();
    let tokens = sign_in(&app, &browser).await;
    for uri in [
        "https://evil.example/logged-out",
        "https://rp.example/logged-out/extra",
        "https://rp.example/logged-out/",
        "https://rp.example/logged-out?x=1",
        "https://rp.example/logged-out#top",
        "https://rp.example/bye",
        "https://rp.example/bye?x=2",
        "https://rp.example/bye?x=1&y=2",
        "http://rp.example/logged-out",
        "https://RP.example/logged-out",
        "https://rp.example:443/logged-out",
        "https://rp.example/logged-out%20",
        "https://rp.example.evil.example/logged-out",
        "//evil.example/logged-out",
        "javascript:alert(1)",
        // The login redirect URI is not a post-logout one.
        REDIRECT,
        // Registered, but for another client.
        OTHER_LOGGED_OUT,
        FRONTEND_SIGNED_OUT,
    ] {
        let params = [
            ("id_token_hint", tokens.id.as_str()),
            ("post_logout_redirect_uri", uri),
            ("state", "abc"),
        ];
        let html = assert_refused(logout_get(&app, &browser.http, &params).await, uri).await;
        assert!(html.contains("not registered"), "{uri}: {html}");
        assert_refused(logout_post(&app, &browser.http, &params).await, uri).await;
        // Naming the client explicitly changes nothing.
        let params = [
            ("client_id", CLIENT),
            ("post_logout_redirect_uri", uri),
            ("state", "abc"),
        ];
        assert_refused(logout_get(&app, &browser.http, &params).await, uri).await;
    }
    assert!(browser.cookie(&app, SESSION_COOKIE).is_some());
    assert_intact(&app, &browser, &tokens, "after unregistered URIs").await;
}

#[tokio::test]
async fn a_post_logout_redirect_uri_needs_a_hint_or_a_client_id() {
    let app = spawn().await;
    let browser = Browser::new();
    let tokens = sign_in(&app, &browser).await;
    for params in [
        vec![("post_logout_redirect_uri", LOGGED_OUT)],
        vec![("post_logout_redirect_uri", LOGGED_OUT), ("state", "abc")],
        // Empty values name nothing.
        vec![
            ("post_logout_redirect_uri", LOGGED_OUT),
            ("id_token_hint", ""),
            ("client_id", ""),
        ],
    ] {
        let what = format!("{params:?}");
        assert_refused(logout_get(&app, &browser.http, &params).await, &what).await;
        assert_refused(logout_post(&app, &browser.http, &params).await, &what).await;
    }
    // Without a session either.
    let fresh = Browser::new();
    assert_refused(
        logout_get(
            &app,
            &fresh.http,
            &[("post_logout_redirect_uri", LOGGED_OUT)],
        )
        .await,
        "no session",
    )
    .await;
    assert_intact(&app, &browser, &tokens, "after refused requests").await;
}

#[tokio::test]
async fn client_id_without_a_hint_asks_the_user_then_ends_the_session() {
    let app = spawn().await;
    let browser = Browser::new();
    let tokens = sign_in(&app, &browser).await;
    let cookie = browser.cookie(&app, SESSION_COOKIE).unwrap();
    let response = logout_get(
        &app,
        &browser.http,
        &[
            ("client_id", CLIENT),
            ("post_logout_redirect_uri", LOGGED_OUT),
            ("state", "abc"),
        ],
    )
    .await;
    let (html, fields) = assert_confirmation(response, "client_id without hint").await;
    assert!(
        html.contains("Relying Party"),
        "client name not shown: {html}"
    );
    assert!(html.contains(USER), "username not shown: {html}");
    assert_eq!(field(&fields, "client_id"), Some(CLIENT));
    assert_eq!(field(&fields, "post_logout_redirect_uri"), Some(LOGGED_OUT));
    assert_eq!(field(&fields, "state"), Some("abc"));
    // The state is reflected into the page escaped, and comes back intact.
    let nasty = r#""><script>alert(1)</script>&amp;'"#;
    let response = logout_get(
        &app,
        &browser.http,
        &[
            ("client_id", CLIENT),
            ("post_logout_redirect_uri", LOGGED_OUT),
            ("state", nasty),
        ],
    )
    .await;
    let (nasty_html, nasty_fields) = assert_confirmation(response, "state with markup").await;
    assert!(!nasty_html.contains("<script>"), "{nasty_html}");
    assert_eq!(field(&nasty_fields, "state"), Some(nasty));
    // Asking ends nothing.
    assert_intact(&app, &browser, &tokens, "confirmation shown").await;

    // The user presses "Sign out": the browser posts every field back.
    let response = logout_post(&app, &browser.http, &as_pairs(&fields)).await;
    assert_eq!(response.status(), 303);
    assert_eq!(
        location(&response).as_deref(),
        Some("https://rp.example/logged-out?state=abc")
    );
    assert_ended(&app, &browser, &cookie, &tokens, "confirmed").await;
}

#[tokio::test]
async fn client_id_must_match_the_hint_and_be_registered() {
    let app = spawn().await;
    let browser = Browser::new();
    let tokens = sign_in(&app, &browser).await;
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            "client_id is not the hint's audience",
            vec![("id_token_hint", &tokens.id), ("client_id", OTHER)],
        ),
        (
            "client_id is not the hint's audience, with its own registered URI",
            vec![
                ("id_token_hint", &tokens.id),
                ("client_id", OTHER),
                ("post_logout_redirect_uri", OTHER_LOGGED_OUT),
            ],
        ),
        (
            "client_id is not the hint's audience, with the hint's client's URI",
            vec![
                ("id_token_hint", &tokens.id),
                ("client_id", OTHER),
                ("post_logout_redirect_uri", LOGGED_OUT),
            ],
        ),
        (
            "unknown client_id with a hint",
            vec![("id_token_hint", &tokens.id), ("client_id", "nobody")],
        ),
        ("unknown client_id", vec![("client_id", "nobody")]),
        (
            "unknown client_id with a URI",
            vec![
                ("client_id", "nobody"),
                ("post_logout_redirect_uri", LOGGED_OUT),
            ],
        ),
        (
            "client_id differs in case",
            vec![("id_token_hint", &tokens.id), ("client_id", "RP")],
        ),
    ];
    for (what, params) in cases {
        assert_refused(logout_get(&app, &browser.http, &params).await, what).await;
        assert_refused(logout_post(&app, &browser.http, &params).await, what).await;
    }
    assert_intact(&app, &browser, &tokens, "after client mismatches").await;

    // The matching client_id with the hint is fine.
    let cookie = browser.cookie(&app, SESSION_COOKIE).unwrap();
    let response = logout_get(
        &app,
        &browser.http,
        &[
            ("id_token_hint", &tokens.id),
            ("client_id", CLIENT),
            ("post_logout_redirect_uri", BYE),
        ],
    )
    .await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response).as_deref(), Some(BYE));
    assert_ended(&app, &browser, &cookie, &tokens, "matching client_id").await;
}

#[tokio::test]
async fn a_forged_or_foreign_hint_is_refused_and_ends_nothing() {
    let app = spawn().await;
    let browser = Browser::new();
    let tokens = sign_in(&app, &browser).await;
    let (kid, typ) = header_of(&tokens.id);
    let claims = jwt_claims_map(&tokens.id);

    // Signature bytes changed: flip the significant bits of the last base64url
    // character, and separately one character in the middle.
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let change = |token: &str, position: usize, mask: usize| {
        let mut bytes = token.as_bytes().to_vec();
        let index = B64.iter().position(|b| *b == bytes[position]).unwrap();
        bytes[position] = B64[index ^ mask];
        String::from_utf8(bytes).unwrap()
    };
    let last = tokens.id.len() - 1;
    let middle = tokens.id.rfind('.').unwrap() + 100;
    let last_changed = change(&tokens.id, last, 0b110000);
    let middle_changed = change(&tokens.id, middle, 0b000001);

    // Another key: with the server's kid (bad signature) and with its own (unknown).
    let other_pem = {
        use josekit::jwk::KeyPair;
        josekit::jws::RS256
            .generate_key_pair(2048)
            .unwrap()
            .to_pem_private_key()
    };
    let other_key_same_kid = sign_jwt(claims.clone(), &other_pem, &kid, typ.as_deref());
    let other_key_own_kid = sign_jwt(claims.clone(), &other_pem, "someone-else", None);
    // Our key, but not an ID token of this issuer / not an ID token.
    let pem = server_key_pem(&app);
    let mut foreign = claims.clone();
    foreign.insert("iss".into(), "https://evil.example".into());
    let foreign_issuer = sign_jwt(foreign, &pem, &kid, typ.as_deref());
    let as_access_token = sign_jwt(claims.clone(), &pem, &kid, Some("at+jwt"));
    // alg=none.
    let unsigned = {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.",
            b64.encode(format!(r#"{{"alg":"none","kid":"{kid}"}}"#)),
            tokens.id.split('.').nth(1).unwrap()
        )
    };
    let hs256 = {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut parts = tokens.id.split('.');
        let _ = parts.next();
        format!(
            "{}.{}.{}",
            b64.encode(format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#)),
            parts.next().unwrap(),
            parts.next().unwrap()
        )
    };

    let cases: Vec<(&str, String)> = vec![
        ("last signature character changed", last_changed),
        ("a signature character changed", middle_changed),
        ("signed by another key under our kid", other_key_same_kid),
        ("signed by another key", other_key_own_kid),
        ("another issuer", foreign_issuer),
        ("typ at+jwt", as_access_token),
        ("the access token", tokens.access.clone()),
        ("alg none", unsigned),
        ("alg HS256 header", hs256),
        ("the refresh token", tokens.refresh.clone()),
        ("not a JWT", "abc".into()),
        ("two parts", "eyJhbGciOiJSUzI1NiJ9.e30".into()),
    ];
    for (what, hint) in &cases {
        for params in [
            vec![("id_token_hint", hint.as_str())],
            vec![
                ("id_token_hint", hint.as_str()),
                ("post_logout_redirect_uri", LOGGED_OUT),
                ("state", "abc"),
            ],
        ] {
            assert_refused(logout_get(&app, &browser.http, &params).await, what).await;
            assert_refused(logout_post(&app, &browser.http, &params).await, what).await;
        }
        // Nor from a browser without a session (a hint alone may end the session it
        // names there; a forged one must not).
        let fresh = Browser::new();
        assert_refused(
            logout_get(&app, &fresh.http, &[("id_token_hint", hint.as_str())]).await,
            what,
        )
        .await;
    }
    assert!(browser.cookie(&app, SESSION_COOKIE).is_some());
    assert_intact(&app, &browser, &tokens, "after forged hints").await;
}

/// §2: "The OP need not be the one that issued the ID Token ... it SHOULD accept an
/// expired ID Token as a hint". Produced by re-signing the real ID token's claims with
/// an `exp` in the past, with the server's own key (which the test put in its key
/// directory), rather than waiting for `id_token_seconds` (at least 60) to pass.
#[tokio::test]
async fn an_expired_id_token_is_still_a_good_hint() {
    let app = spawn().await;
    let browser = Browser::new();
    let tokens = sign_in(&app, &browser).await;
    let cookie = browser.cookie(&app, SESSION_COOKIE).unwrap();
    let (kid, typ) = header_of(&tokens.id);
    let mut claims = jwt_claims_map(&tokens.id);
    let now = now();
    claims.insert("iat".into(), (now - 7200).into());
    claims.insert("exp".into(), (now - 3600).into());
    let expired = sign_jwt(claims, &server_key_pem(&app), &kid, typ.as_deref());

    let response = logout_get(
        &app,
        &browser.http,
        &[
            ("id_token_hint", &expired),
            ("post_logout_redirect_uri", LOGGED_OUT),
            ("state", "abc"),
        ],
    )
    .await;
    assert_eq!(
        response.status(),
        303,
        "{}",
        response.text().await.unwrap_or_default()
    );
    assert_eq!(
        location(&response).as_deref(),
        Some("https://rp.example/logged-out?state=abc")
    );
    assert_ended(&app, &browser, &cookie, &tokens, "expired hint").await;
}

#[tokio::test]
async fn a_hint_for_another_session_asks_first() {
    let app = spawn().await;
    let alice_browser = Browser::new();
    let alice = sign_in(&app, &alice_browser).await;
    let bob_browser = Browser::new();
    let bob = sign_in_as(&app, &bob_browser, CLIENT, "openid", BOB, BOB_PASSWORD).await;
    let bob_cookie = bob_browser.cookie(&app, SESSION_COOKIE).unwrap();

    // Alice's hint in Bob's browser: not Bob's session, so Bob is asked; nothing ends.
    for params in [
        vec![("id_token_hint", alice.id.as_str())],
        vec![
            ("id_token_hint", alice.id.as_str()),
            ("post_logout_redirect_uri", LOGGED_OUT),
            ("state", "abc"),
        ],
    ] {
        let response = logout_get(&app, &bob_browser.http, &params).await;
        let (html, _) = assert_confirmation(response, "Alice's hint in Bob's browser").await;
        assert!(html.contains(BOB), "{html}");
        let response = logout_post(&app, &bob_browser.http, &params).await;
        assert_confirmation(response, "Alice's hint in Bob's browser (POST)").await;
    }
    assert_intact(&app, &alice_browser, &alice, "Alice, hint used elsewhere").await;
    assert_intact(&app, &bob_browser, &bob, "Bob, asked").await;

    // An older ID token of the same user from an earlier session: also asked.
    let old_alice = Browser::new();
    let old = sign_in(&app, &old_alice).await;
    let old_cookie = old_alice.cookie(&app, SESSION_COOKIE).unwrap();
    let response = logout_get(&app, &old_alice.http, &[("id_token_hint", &old.id)]).await;
    assert_signed_out_page(response, "old session").await;
    assert_ended(&app, &old_alice, &old_cookie, &old, "old session").await;
    let renewed = sign_in(&app, &old_alice).await;
    assert_ne!(
        jwt_claims_map(&renewed.id)["sid"],
        jwt_claims_map(&old.id)["sid"]
    );
    let response = logout_get(&app, &old_alice.http, &[("id_token_hint", &old.id)]).await;
    assert_confirmation(response, "an ended session's hint").await;
    assert_intact(&app, &old_alice, &renewed, "a previous session's hint").await;

    // Bob confirms: Bob's own session ends, Alice's does not.
    let response = logout_get(
        &app,
        &bob_browser.http,
        &[
            ("id_token_hint", &alice.id),
            ("post_logout_redirect_uri", LOGGED_OUT),
            ("state", "abc"),
        ],
    )
    .await;
    let (_, fields) = assert_confirmation(response, "before confirming").await;
    let response = logout_post(&app, &bob_browser.http, &as_pairs(&fields)).await;
    assert_eq!(response.status(), 303);
    assert_eq!(
        location(&response).as_deref(),
        Some("https://rp.example/logged-out?state=abc")
    );
    assert_ended(&app, &bob_browser, &bob_cookie, &bob, "Bob confirmed").await;
    assert_intact(&app, &alice_browser, &alice, "Alice after Bob's logout").await;
}

#[tokio::test]
async fn no_parameters_asks_with_a_session_and_says_signed_out_without() {
    let app = spawn().await;
    // No session at all.
    let fresh = Browser::new();
    assert_signed_out_page(logout_get(&app, &fresh.http, &[]).await, "GET, no session").await;
    assert_signed_out_page(
        logout_post(&app, &fresh.http, &[]).await,
        "POST, no session",
    )
    .await;
    let response = fresh.http.post(app.url("/logout")).send().await.unwrap();
    assert_signed_out_page(response, "POST without a body, no session").await;
    // state alone, client_id alone: nothing to redirect to.
    assert_signed_out_page(
        logout_get(&app, &fresh.http, &[("state", "abc")]).await,
        "state only, no session",
    )
    .await;

    let browser = Browser::new();
    let tokens = sign_in(&app, &browser).await;
    let cookie = browser.cookie(&app, SESSION_COOKIE).unwrap();
    for (what, response) in [
        ("GET", logout_get(&app, &browser.http, &[]).await),
        ("POST", logout_post(&app, &browser.http, &[]).await),
        (
            "POST, no body",
            browser.http.post(app.url("/logout")).send().await.unwrap(),
        ),
        (
            "client_id only",
            logout_get(&app, &browser.http, &[("client_id", CLIENT)]).await,
        ),
    ] {
        let (html, fields) = assert_confirmation(response, what).await;
        assert!(html.contains(USER), "{what}: {html}");
        assert_eq!(field(&fields, "post_logout_redirect_uri"), None, "{what}");
    }
    assert_intact(&app, &browser, &tokens, "confirmation pages").await;

    let response = logout_get(&app, &browser.http, &[]).await;
    let (_, fields) = assert_confirmation(response, "GET").await;
    let response = logout_post(&app, &browser.http, &as_pairs(&fields)).await;
    assert!(removes_session_cookie(&response), "session cookie kept");
    assert_signed_out_page(response, "confirmed").await;
    assert_ended(
        &app,
        &browser,
        &cookie,
        &tokens,
        "confirmed without parameters",
    )
    .await;
}

#[tokio::test]
async fn the_confirmation_form_is_protected_and_cannot_be_replayed() {
    let app = spawn().await;
    let browser = Browser::new();
    let tokens = sign_in(&app, &browser).await;
    let cookie = browser.cookie(&app, SESSION_COOKIE).unwrap();
    let ask = [
        ("client_id", CLIENT),
        ("post_logout_redirect_uri", LOGGED_OUT),
        ("state", "abc"),
    ];
    let (_, fields) = assert_confirmation(logout_get(&app, &browser.http, &ask).await, "ask").await;
    let csrf = field(&fields, "csrf_token").unwrap().to_string();
    let without_csrf: Vec<(&str, &str)> = as_pairs(&fields)
        .into_iter()
        .filter(|(k, _)| *k != "csrf_token")
        .collect();
    let with_csrf = |token: &'static str| -> Vec<(&str, &str)> {
        as_pairs(&fields)
            .into_iter()
            .map(|(k, v)| {
                if k == "csrf_token" {
                    (k, token)
                } else {
                    (k, v)
                }
            })
            .collect()
    };
    let tampered = {
        let mut t = csrf.clone();
        let c = t.pop().unwrap();
        t.push(if c == 'A' { 'B' } else { 'A' });
        t
    };
    let mut tampered_fields = as_pairs(&fields);
    for (k, v) in tampered_fields.iter_mut() {
        if *k == "csrf_token" {
            *v = tampered.as_str();
        }
    }
    for (what, form) in [
        ("no csrf_token", without_csrf.clone()),
        ("empty csrf_token", with_csrf("")),
        ("wrong csrf_token", with_csrf("not-the-token")),
        ("tampered csrf_token", tampered_fields),
    ] {
        assert_form_expired(logout_post(&app, &browser.http, &form).await, what).await;
    }
    // decision=logout in the query of a GET is no way around it.
    let response = logout_get(&app, &browser.http, &without_csrf).await;
    assert!(
        !response.status().is_redirection(),
        "GET with decision=logout and no csrf_token redirected to {:?}",
        location(&response)
    );
    // The token from another browser (its own CSRF cookie) is no good either: a
    // cross-site attacker who signs in and copies their own form.
    let attacker = Browser::new();
    sign_in_as(&app, &attacker, CLIENT, "openid", BOB, BOB_PASSWORD).await;
    let (_, attacker_fields) = assert_confirmation(
        logout_get(&app, &attacker.http, &ask).await,
        "attacker's form",
    )
    .await;
    assert_form_expired(
        logout_post(&app, &browser.http, &as_pairs(&attacker_fields)).await,
        "another browser's form",
    )
    .await;
    // And Alice's token is no good in the attacker's browser.
    assert_form_expired(
        logout_post(&app, &attacker.http, &as_pairs(&fields)).await,
        "Alice's form in another browser",
    )
    .await;
    assert_intact(&app, &browser, &tokens, "after bad confirmations").await;

    // The real submission works.
    let response = logout_post(&app, &browser.http, &as_pairs(&fields)).await;
    assert_eq!(response.status(), 303);
    assert_eq!(
        location(&response).as_deref(),
        Some("https://rp.example/logged-out?state=abc")
    );
    assert_ended(&app, &browser, &cookie, &tokens, "confirmed").await;

    // Signed in again (a new session): replaying the used form ends nothing.
    let again = sign_in(&app, &browser).await;
    let response = logout_post(&app, &browser.http, &as_pairs(&fields)).await;
    assert!(
        !response.status().is_redirection(),
        "a replayed form was answered with a redirect to {:?}",
        location(&response)
    );
    assert_form_expired(response, "replayed form").await;
    assert_intact(&app, &browser, &again, "after a replayed form").await;
}

#[tokio::test]
async fn repeated_parameters_are_refused() {
    let app = spawn().await;
    let browser = Browser::new();
    let tokens = sign_in(&app, &browser).await;
    let id = tokens.id.as_str();
    let (_, fields) =
        assert_confirmation(logout_get(&app, &browser.http, &[]).await, "confirmation").await;
    let csrf = field(&fields, "csrf_token").unwrap().to_string();
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            "state twice",
            vec![
                ("id_token_hint", id),
                ("post_logout_redirect_uri", LOGGED_OUT),
                ("state", "a"),
                ("state", "b"),
            ],
        ),
        (
            "id_token_hint twice",
            vec![
                ("id_token_hint", id),
                ("id_token_hint", id),
                ("post_logout_redirect_uri", LOGGED_OUT),
            ],
        ),
        (
            "post_logout_redirect_uri twice",
            vec![
                ("id_token_hint", id),
                ("post_logout_redirect_uri", LOGGED_OUT),
                ("post_logout_redirect_uri", BYE),
            ],
        ),
        (
            "client_id twice",
            vec![
                ("id_token_hint", id),
                ("client_id", CLIENT),
                ("client_id", CLIENT),
            ],
        ),
        (
            "decision twice",
            vec![
                ("csrf_token", &csrf),
                ("decision", "logout"),
                ("decision", "logout"),
            ],
        ),
        (
            "csrf_token twice",
            vec![
                ("csrf_token", &csrf),
                ("csrf_token", &csrf),
                ("decision", "logout"),
            ],
        ),
    ];
    for (what, params) in cases {
        assert_refused(logout_get(&app, &browser.http, &params).await, what).await;
        assert_refused(logout_post(&app, &browser.http, &params).await, what).await;
    }
    assert_intact(&app, &browser, &tokens, "after repeated parameters").await;
}

#[tokio::test]
async fn a_password_grant_session_ends_by_its_hint_from_a_browser_without_cookies() {
    let app = spawn().await;
    let grant = |scope: &'static str| {
        let app = &app;
        async move {
            let response = app
                .token(
                    &[
                        ("grant_type", "password"),
                        ("username", USER),
                        ("password", PASSWORD),
                        ("scope", scope),
                    ],
                    Some((FRONTEND, CLIENT_SECRET)),
                )
                .await;
            let status = response.status();
            let body: Value = response.json().await.unwrap();
            assert_eq!(status, 200, "{body}");
            Tokens {
                client: FRONTEND,
                id: body["id_token"].as_str().unwrap().to_string(),
                access: body["access_token"].as_str().unwrap().to_string(),
                refresh: body["refresh_token"]
                    .as_str()
                    .unwrap_or_else(|| panic!("no refresh_token: {body}"))
                    .to_string(),
            }
        }
    };
    let tokens = grant("openid profile").await;
    let second = grant("openid").await;
    let sid = jwt_claims_map(&tokens.id)["sid"].clone();
    assert!(sid.is_string(), "no sid in the password grant's ID token");
    assert_ne!(jwt_claims_map(&second.id)["sid"], sid);
    // Alice is also signed in through the pages in a browser: a separate session.
    let browser = Browser::new();
    let pages = sign_in(&app, &browser).await;

    // From her browser (another session) the frontend's hint only asks.
    let response = logout_get(
        &app,
        &browser.http,
        &[
            ("id_token_hint", &tokens.id),
            ("post_logout_redirect_uri", FRONTEND_SIGNED_OUT),
        ],
    )
    .await;
    assert_confirmation(response, "password-grant hint in a browser with a session").await;
    assert_tokens_live(&app, &tokens, "asked").await;

    // The frontend sends the browser (no oxidp cookie) to /logout with the hint.
    let cookieless = Browser::new();
    let response = logout_get(
        &app,
        &cookieless.http,
        &[
            ("id_token_hint", &tokens.id),
            ("post_logout_redirect_uri", FRONTEND_SIGNED_OUT),
            ("state", "xyz"),
        ],
    )
    .await;
    assert_eq!(response.status(), 303);
    assert_eq!(
        location(&response).as_deref(),
        Some("https://app.example/signed-out?state=xyz")
    );
    assert_tokens_revoked(&app, &tokens, "password-grant session after logout").await;
    // Only the session the hint names.
    assert_tokens_live(&app, &second, "another password-grant session").await;
    assert_intact(&app, &browser, &pages, "the browser session").await;

    // Also by POST, without a redirect URI.
    let response = logout_post(&app, &Browser::new().http, &[("id_token_hint", &second.id)]).await;
    assert_signed_out_page(response, "POST with a password-grant hint").await;
    assert_tokens_revoked(&app, &second, "second password-grant session").await;
    assert_intact(&app, &browser, &pages, "the browser session").await;
}

#[tokio::test]
async fn a_replayed_hint_after_logout_ends_nothing_new() {
    // After logout the same hint (its session already ended) in a browser without a
    // session: nothing left to end, the browser is still sent back.
    let app = spawn().await;
    let browser = Browser::new();
    let tokens = sign_in(&app, &browser).await;
    let params = [
        ("id_token_hint", tokens.id.as_str()),
        ("post_logout_redirect_uri", LOGGED_OUT),
        ("state", "abc"),
    ];
    let response = logout_get(&app, &browser.http, &params).await;
    assert_eq!(response.status(), 303);
    let response = logout_get(&app, &browser.http, &params).await;
    assert_eq!(response.status(), 303);
    assert_eq!(
        location(&response).as_deref(),
        Some("https://rp.example/logged-out?state=abc")
    );
    // A new session in the same browser is not ended by the old hint without asking.
    let again = sign_in(&app, &browser).await;
    let response = logout_get(&app, &browser.http, &params).await;
    assert_confirmation(response, "old hint, new session").await;
    assert_intact(&app, &browser, &again, "old hint, new session").await;
}

#[tokio::test]
async fn a_hint_from_a_browser_without_a_session_ends_the_session_it_names() {
    // The RP's own logout button may open /logout in a context without oxidp's cookie
    // (another browser profile, a SameSite-less webview): the valid hint alone names
    // the session to end, and only that one.
    let app = spawn().await;
    let browser = Browser::new();
    let tokens = sign_in(&app, &browser).await;
    let cookie = browser.cookie(&app, SESSION_COOKIE).unwrap();
    let bystander = Browser::new();
    let bob = sign_in_as(&app, &bystander, CLIENT, "openid", BOB, BOB_PASSWORD).await;
    let response = logout_get(
        &app,
        &Browser::new().http,
        &[
            ("id_token_hint", &tokens.id),
            ("post_logout_redirect_uri", LOGGED_OUT),
            ("state", "abc"),
        ],
    )
    .await;
    assert_eq!(response.status(), 303);
    assert_eq!(
        location(&response).as_deref(),
        Some("https://rp.example/logged-out?state=abc")
    );
    assert_ended(&app, &browser, &cookie, &tokens, "ended from elsewhere").await;
    assert_intact(&app, &bystander, &bob, "another user's session").await;
}

#[tokio::test]
async fn oversized_parameters_are_refused() {
    let app = spawn().await;
    let browser = Browser::new();
    let tokens = sign_in(&app, &browser).await;
    let long = "x".repeat(5000);
    for (what, params) in [
        (
            "long state",
            vec![
                ("id_token_hint", tokens.id.as_str()),
                ("post_logout_redirect_uri", LOGGED_OUT),
                ("state", long.as_str()),
            ],
        ),
        ("long client_id", vec![("client_id", long.as_str())]),
        ("long id_token_hint", vec![("id_token_hint", long.as_str())]),
    ] {
        let response = logout_get(&app, &browser.http, &params).await;
        assert_eq!(response.status(), 400, "{what}");
        assert_eq!(location(&response), None, "{what}");
        let response = logout_post(&app, &browser.http, &params).await;
        assert_eq!(response.status(), 400, "{what}");
        assert_eq!(location(&response), None, "{what}");
    }
    assert_intact(&app, &browser, &tokens, "after oversized parameters").await;
}
