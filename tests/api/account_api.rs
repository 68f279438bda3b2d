//! The JSON account API for the first-party frontend (`/api/v1/account/*`, DESIGN.md
//! "Account and admin API shapes"): sign-up, e-mail verification, password reset and
//! change, the profile, the per-IP request limit and CORS. Mails are read from the file
//! transport's outbox.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::decode_quoted_printable;
use crate::helpers::jwt_claims;
use crate::helpers::{
    CLIENT, CLIENT_SECRET, Options, PASSWORD, REDIRECT, TestApp, USER, flow_options, query_param,
    spawn_app_with,
};

/// A first-party client with the password and refresh grants (the frontend's server).
pub(crate) const FP: &str = "frontend";
/// Passwords that pass every rule (length, not the username, not guessable).
pub(crate) const STRONG: &str = "quiet meadow lantern 42";
pub(crate) const STRONGER: &str = "amber harbour violin 77";

/// `flow_options()` plus the frontend client and `sections` (TOML tables). Unless
/// `sections` has its own `[ratelimit]`, the per-IP request limit is raised so that
/// tests sending many requests from 127.0.0.1 are not limited by it.
pub(crate) fn options(sections: &str) -> Options {
    let roomy = if sections.contains("[ratelimit]") {
        ""
    } else {
        "[ratelimit]\nrequests_per_minute_per_ip = 1000\n"
    };
    let mut options = flow_options();
    options.extra_toml.push_str(&format!(
        r#"
[[clients]]
id = "{FP}"
secret = "{CLIENT_SECRET}"
first_party = true
grant_types = ["password", "refresh_token"]

{roomy}
{sections}
"#
    ));
    options
}

pub(crate) async fn spawn(sections: &str) -> TestApp {
    spawn_app_with(options(sections)).await
}

// ---------------------------------------------------------------------------------
// Requests

/// Status and JSON body (`Null` when the body is empty, e.g. 204).
pub(crate) async fn read(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {text}"))
    };
    (status, body)
}

/// POSTs JSON without client authentication.
pub(crate) async fn post(app: &TestApp, path: &str, body: &Value) -> (u16, Value) {
    read(
        app.http
            .post(app.url(path))
            .json(body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// `POST /api/v1/account/register` as the frontend client.
pub(crate) async fn register(app: &TestApp, body: &Value) -> (u16, Value) {
    read(
        app.http
            .post(app.url("/api/v1/account/register"))
            .basic_auth(FP, Some(CLIENT_SECRET))
            .json(body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// Registers `username` with `email` and `STRONG`; returns the 201 body.
pub(crate) async fn register_ok(app: &TestApp, username: &str, email: &str) -> Value {
    let (status, body) = register(
        app,
        &json!({"username": username, "email": email, "password": STRONG}),
    )
    .await;
    assert_eq!(status, 201, "register {username}: {body}");
    body
}

/// The password grant as the frontend client.
pub(crate) async fn grant(
    app: &TestApp,
    username: &str,
    password: &str,
    scope: &str,
) -> (u16, Value) {
    read(
        app.token(
            &[
                ("grant_type", "password"),
                ("username", username),
                ("password", password),
                ("scope", scope),
            ],
            Some((FP, CLIENT_SECRET)),
        )
        .await,
    )
    .await
}

/// A successful password grant's token response (scope `openid profile email`).
pub(crate) async fn sign_in(app: &TestApp, username: &str, password: &str) -> Value {
    let (status, body) = grant(app, username, password, "openid profile email").await;
    assert_eq!(status, 200, "sign in as {username}: {body}");
    body
}

/// The frontend client's access token for a user.
pub(crate) async fn access_token(app: &TestApp, username: &str, password: &str) -> String {
    sign_in(app, username, password).await["access_token"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `email_verified` in the ID token of a password grant with scope `openid email`.
async fn id_token_email_verified(app: &TestApp, username: &str, password: &str) -> Value {
    let (status, body) = grant(app, username, password, "openid email").await;
    assert_eq!(status, 200, "{body}");
    jwt_claims(body["id_token"].as_str().unwrap())["email_verified"].clone()
}

/// An access token of the third-party client "rp" for alice, through the code flow.
async fn third_party_token(app: &TestApp, scope: &str) -> String {
    let url = app.url(&format!(
        "/authorize?response_type=code&client_id={CLIENT}&redirect_uri={REDIRECT}\
         &scope={}&state=st",
        scope.replace(' ', "%20")
    ));
    let back = app.authorize(&url).await;
    let code = query_param(&back, "code").unwrap_or_else(|| panic!("no code in {back}"));
    let (status, body) = read(
        app.token(
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
            ],
            Some((CLIENT, CLIENT_SECRET)),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_string()
}

async fn get_me(app: &TestApp, token: &str) -> reqwest::Response {
    app.http
        .get(app.url("/api/v1/account/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

pub(crate) async fn me(app: &TestApp, token: &str) -> Value {
    let (status, body) = read(get_me(app, token).await).await;
    assert_eq!(status, 200, "{body}");
    body
}

pub(crate) async fn patch_me(app: &TestApp, token: &str, body: &Value) -> (u16, Value) {
    read(
        app.http
            .patch(app.url("/api/v1/account/me"))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

pub(crate) async fn post_bearer(
    app: &TestApp,
    path: &str,
    token: &str,
    body: &Value,
) -> reqwest::Response {
    app.http
        .post(app.url(path))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// The names in a validation failure's `fields`, sorted.
fn field_names(body: &Value) -> Vec<String> {
    let mut names: Vec<String> = body["fields"]
        .as_object()
        .unwrap_or_else(|| panic!("no fields in {body}"))
        .keys()
        .cloned()
        .collect();
    names.sort();
    names
}

pub(crate) fn assert_validation_failed(case: &str, status: u16, body: &Value, fields: &[&str]) {
    assert_eq!(status, 400, "{case}: {body}");
    assert_eq!(body["error"], "validation_failed", "{case}: {body}");
    assert!(body["error_description"].is_string(), "{case}: {body}");
    let mut want: Vec<&str> = fields.to_vec();
    want.sort();
    assert_eq!(field_names(body), want, "{case}: {body}");
    for field in fields {
        assert!(
            body["fields"][field]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{case}: {field} has no message: {body}"
        );
    }
}

fn assert_retry_after(response: &reqwest::Response) {
    let retry: u64 = response
        .headers()
        .get("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After on {}", response.status()))
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After: {retry}");
}

// ---------------------------------------------------------------------------------
// The outbox

/// A mail from the outbox: its headers and its decoded body.
pub(crate) struct Mail {
    pub(crate) headers: String,
    pub(crate) body: String,
}

impl Mail {
    fn parse(raw: &str) -> Self {
        let raw = raw.replace("\r\n", "\n");
        let (headers, body) = raw.split_once("\n\n").unwrap_or((&raw, ""));
        let lower = headers.to_ascii_lowercase();
        let body = if lower.contains("content-transfer-encoding: quoted-printable") {
            decode_quoted_printable(body)
        } else if lower.contains("content-transfer-encoding: base64") {
            use base64::Engine;
            let compact: String = body.split_whitespace().collect();
            base64::engine::general_purpose::STANDARD
                .decode(compact)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        } else {
            body.to_string()
        };
        Self {
            headers: headers.to_string(),
            body,
        }
    }

    pub(crate) fn is_to(&self, address: &str) -> bool {
        self.headers.lines().any(|line| {
            line.to_ascii_lowercase().starts_with("to:")
                && line.to_lowercase().contains(&address.to_lowercase())
        })
    }

    pub(crate) fn subject(&self) -> String {
        self.headers
            .lines()
            .find_map(|line| {
                line.get(..8)
                    .filter(|h| h.eq_ignore_ascii_case("subject:"))
                    .map(|_| line[8..].trim().to_string())
            })
            .unwrap_or_default()
    }

    /// The token of the `<issuer>/{page}?token=…` link, if the mail has a whole one.
    pub(crate) fn token(&self, issuer: &str, page: &str) -> Option<String> {
        let marker = format!("{issuer}/{page}?token=");
        let start = self.body.find(&marker)? + marker.len();
        let rest = &self.body[start..];
        let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))?;
        Some(rest[..end].to_string())
    }
}

#[test]
fn quoted_printable_bodies_are_decoded() {
    let raw = "To: bob@example.com\r\nSubject: Verify\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
               Open http://x.example/verify-email?token=3Dabc=\r\ndef_-1 now.\r\n";
    let mail = Mail::parse(raw);
    assert!(mail.is_to("BOB@example.com"));
    assert_eq!(mail.subject(), "Verify");
    assert_eq!(
        mail.token("http://x.example", "verify-email").as_deref(),
        Some("abcdef_-1")
    );
}

/// Every mail to `address` in the outbox now.
pub(crate) fn mails_to(app: &TestApp, address: &str) -> Vec<Mail> {
    let Ok(dir) = std::fs::read_dir(app.dir.path().join("outbox")) else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|raw| Mail::parse(&raw))
        .filter(|m| m.is_to(address))
        .collect()
}

/// Mail is sent in the background: waits up to 5 s for a mail to `address` that
/// `pick` accepts.
pub(crate) async fn wait_for_mail<T>(
    app: &TestApp,
    address: &str,
    what: &str,
    pick: impl Fn(&Mail) -> Option<T>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(found) = mails_to(app, address).iter().find_map(&pick) {
            return found;
        }
        if Instant::now() > deadline {
            let subjects: Vec<String> = mails_to(app, address).iter().map(Mail::subject).collect();
            panic!("no {what} mail to {address} within 5 s; mails to it: {subjects:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The token of a mailed `<issuer>/{page}?token=…` link to `address` that is not one of
/// `known` (so a second mail can be told from the first).
pub(crate) async fn mailed_token(
    app: &TestApp,
    address: &str,
    page: &str,
    known: &[&str],
) -> String {
    let token = wait_for_mail(app, address, page, |m| {
        m.token(&app.issuer, page)
            .filter(|t| !known.contains(&t.as_str()))
    })
    .await;
    assert_eq!(token.len(), 43, "{token}");
    token
}

/// Gives background mail a moment, for "no mail was sent" assertions.
pub(crate) async fn settle() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// Registers `username` and verifies its address through the mailed link.
pub(crate) async fn register_verified(app: &TestApp, username: &str, email: &str) -> Value {
    let body = register_ok(app, username, email).await;
    let token = mailed_token(app, email, "verify-email", &[]).await;
    let (status, answer) = post(
        app,
        "/api/v1/account/verify-email",
        &json!({"token": token}),
    )
    .await;
    assert_eq!(status, 204, "{answer}");
    body
}

// ---------------------------------------------------------------------------------
// Sign-up

#[tokio::test]
async fn register_creates_an_unverified_account_and_mails_a_verification_link() {
    let app = spawn("").await;
    let response = app
        .http
        .post(app.url("/api/v1/account/register"))
        .basic_auth(FP, Some(CLIENT_SECRET))
        .header("content-type", "application/json; charset=utf-8")
        .body(
            json!({
                "username": "bob",
                "email": "Bob@Example.COM",
                "password": STRONG,
                "name": "Bob Builder",
            })
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    let (status, body) = read(response).await;
    assert_eq!(status, 201, "{body}");
    let mut keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        ["email", "email_verified", "sub", "username"],
        "{body}"
    );
    assert_eq!(body["username"], "bob");
    assert_eq!(body["email"], "bob@example.com");
    assert_eq!(body["email_verified"], false);
    let sub = body["sub"].as_str().unwrap();
    assert!(!sub.is_empty() && !sub.contains("bob"), "{sub}");

    // The account is stored, unverified, with its name.
    let users = app.store.list_users().await.unwrap();
    let bob = users
        .iter()
        .find(|u| u.username == "bob")
        .expect("bob is stored");
    assert_eq!(bob.id, sub);
    assert_eq!(bob.email, "bob@example.com");
    assert!(!bob.email_verified);
    assert_eq!(bob.name.as_deref(), Some("Bob Builder"));

    // The verification link comes by mail: <issuer>/verify-email?token=<43 base64url>.
    let token = mailed_token(&app, "bob@example.com", "verify-email", &[]).await;
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{token}"
    );

    // The new user can sign in at once (verification is not required by default), and
    // the ID token says the address is not verified yet.
    assert_eq!(
        id_token_email_verified(&app, "bob", STRONG).await,
        false,
        "before verification"
    );
    let token = access_token(&app, "bob", STRONG).await;
    let profile = me(&app, &token).await;
    assert_eq!(profile["sub"], sub);
    assert_eq!(profile["name"], "Bob Builder");
    assert_eq!(profile["email_verified"], false);
}

#[tokio::test]
async fn register_needs_first_party_client_authentication() {
    let app = spawn("").await;
    let before = app.snapshot().await;
    let body = json!({"username": "bob", "email": "bob@example.com", "password": STRONG});
    let url = app.url("/api/v1/account/register");
    for (case, request, want_status, want) in [
        ("no credentials", app.http.post(&url), 401, "invalid_client"),
        (
            "wrong secret",
            app.http.post(&url).basic_auth(FP, Some("wrong-secret")),
            401,
            "invalid_client",
        ),
        (
            "unknown client",
            app.http
                .post(&url)
                .basic_auth("nobody", Some(CLIENT_SECRET)),
            401,
            "invalid_client",
        ),
        (
            "bearer instead of Basic",
            app.http.post(&url).bearer_auth("not-a-client"),
            401,
            "invalid_client",
        ),
        (
            "third-party client",
            app.http.post(&url).basic_auth(CLIENT, Some(CLIENT_SECRET)),
            400,
            "unauthorized_client",
        ),
    ] {
        let (status, answer) = read(request.json(&body).send().await.unwrap()).await;
        assert_eq!(status, want_status, "{case}: {answer}");
        assert_eq!(answer["error"], want, "{case}: {answer}");
    }
    assert_eq!(app.snapshot().await, before, "nothing is stored");
    settle().await;
    assert!(mails_to(&app, "bob@example.com").is_empty());
}

#[tokio::test]
async fn register_reports_every_bad_field_at_once() {
    let app = spawn("").await;
    let before = app.snapshot().await;
    let long_name = "x".repeat(129);
    let cases: Vec<(&str, Value, &[&str])> = vec![
        (
            "everything wrong",
            json!({"username": "a b", "email": "nope", "password": "short"}),
            &["email", "password", "username"],
        ),
        (
            "username too short",
            json!({"username": "ab", "email": "ab@example.com", "password": STRONG}),
            &["username"],
        ),
        (
            "username too long",
            json!({"username": "u".repeat(33), "email": "long@example.com", "password": STRONG}),
            &["username"],
        ),
        (
            "username with a space",
            json!({"username": "bob smith", "email": "bs@example.com", "password": STRONG}),
            &["username"],
        ),
        (
            "username with @",
            json!({"username": "bob@home", "email": "bh@example.com", "password": STRONG}),
            &["username"],
        ),
        (
            "username with a non-ASCII letter",
            json!({"username": "bøb", "email": "bo@example.com", "password": STRONG}),
            &["username"],
        ),
        (
            "e-mail without @",
            json!({"username": "carol", "email": "carol.example.com", "password": STRONG}),
            &["email"],
        ),
        (
            "e-mail without domain",
            json!({"username": "carol", "email": "carol@", "password": STRONG}),
            &["email"],
        ),
        (
            "e-mail with two @",
            json!({"username": "carol", "email": "a@b@example.com", "password": STRONG}),
            &["email"],
        ),
        (
            "empty e-mail",
            json!({"username": "carol", "email": "", "password": STRONG}),
            &["email"],
        ),
        (
            "password too short",
            json!({"username": "dave", "email": "dave@example.com", "password": "x7#Kq!2"}),
            &["password"],
        ),
        (
            "password too long",
            json!({"username": "dave", "email": "dave@example.com", "password": "Zq7!".repeat(33)}),
            &["password"],
        ),
        (
            "password equal to the username",
            json!({"username": "lantern-keeper-42", "email": "lk@example.com", "password": "Lantern-Keeper-42"}),
            &["password"],
        ),
        (
            "password equal to the e-mail address",
            json!({"username": "erin", "email": "lantern.keeper@example.com", "password": "lantern.keeper@example.com"}),
            &["password"],
        ),
        (
            "common password",
            json!({"username": "frank", "email": "frank@example.com", "password": "password123"}),
            &["password"],
        ),
        (
            "name too long",
            json!({"username": "gina", "email": "gina@example.com", "password": STRONG, "name": long_name}),
            &["name"],
        ),
    ];
    for (case, body, fields) in cases {
        let (status, answer) = register(&app, &body).await;
        assert_validation_failed(case, status, &answer, fields);
    }
    assert_eq!(app.snapshot().await, before, "nothing is stored");
    settle().await;
    for address in ["dave@example.com", "frank@example.com", "gina@example.com"] {
        assert!(mails_to(&app, address).is_empty(), "{address}");
    }
}

#[tokio::test]
async fn register_refuses_what_is_not_the_json_it_expects() {
    let app = spawn("").await;
    let before = app.snapshot().await;
    let good = json!({"username": "bob", "email": "bob@example.com", "password": STRONG});
    let url = app.url("/api/v1/account/register");
    let send = |content_type: Option<&'static str>, body: String| {
        let mut request = app
            .http
            .post(&url)
            .basic_auth(FP, Some(CLIENT_SECRET))
            .body(body);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        async move { read(request.send().await.unwrap()).await }
    };
    for (case, content_type, body) in [
        ("no content type", None, good.to_string()),
        ("text/plain", Some("text/plain"), good.to_string()),
        (
            "form-encoded",
            Some("application/x-www-form-urlencoded"),
            format!("username=bob&email=bob%40example.com&password={STRONG}"),
        ),
        ("malformed JSON", Some("application/json"), "{\"username\": \"bob\",".into()),
        ("empty body", Some("application/json"), String::new()),
        ("a JSON array", Some("application/json"), "[]".into()),
        (
            "unknown field",
            Some("application/json"),
            json!({"username": "bob", "email": "bob@example.com", "password": STRONG, "roles": ["admin"]}).to_string(),
        ),
        (
            "email_verified sent by the client",
            Some("application/json"),
            json!({"username": "bob", "email": "bob@example.com", "password": STRONG, "email_verified": true}).to_string(),
        ),
        (
            "missing password",
            Some("application/json"),
            json!({"username": "bob", "email": "bob@example.com"}).to_string(),
        ),
        (
            "a number for the username",
            Some("application/json"),
            json!({"username": 42, "email": "bob@example.com", "password": STRONG}).to_string(),
        ),
    ] {
        let (status, answer) = send(content_type, body).await;
        assert_eq!(status, 400, "{case}: {answer}");
        assert_eq!(answer["error"], "invalid_request", "{case}: {answer}");
        assert!(answer["error_description"].is_string(), "{case}: {answer}");
    }
    assert_eq!(app.snapshot().await, before, "nothing is stored");
    // A proper sign-up still works: no half-made account is in the way.
    register_ok(&app, "bob", "bob@example.com").await;
}

#[tokio::test]
async fn a_taken_username_is_409_whatever_its_case() {
    let app = spawn("").await;
    register_ok(&app, "bob", "bob@example.com").await;
    mailed_token(&app, "bob@example.com", "verify-email", &[]).await;
    let before = app.snapshot().await;
    for (case, username, email) in [
        ("same case", "bob", "bob2@example.com"),
        ("other case", "BoB", "bob3@example.com"),
        ("seeded user", "Alice", "alice2@example.com"),
    ] {
        let (status, body) = register(
            &app,
            &json!({"username": username, "email": email, "password": STRONGER}),
        )
        .await;
        assert_eq!(status, 409, "{case}: {body}");
        assert_eq!(body["error"], "username_taken", "{case}: {body}");
    }
    assert_eq!(app.snapshot().await, before, "nothing is stored");
    // The first bob's password is untouched.
    sign_in(&app, "bob", STRONG).await;
    settle().await;
    for address in ["bob2@example.com", "bob3@example.com", "alice2@example.com"] {
        assert!(mails_to(&app, address).is_empty(), "{address}");
    }
}

#[tokio::test]
async fn an_e_mail_in_use_gets_the_same_answer_and_a_mail_to_its_owner() {
    let app = spawn("").await;
    let bob = register_ok(&app, "bob", "bob@example.com").await;
    let first_token = mailed_token(&app, "bob@example.com", "verify-email", &[]).await;
    let before = app.snapshot().await;

    let (status, body) = register(
        &app,
        &json!({"username": "robert", "email": "BOB@example.com", "password": STRONGER}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let mut keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        ["email", "email_verified", "sub", "username"],
        "{body}"
    );
    assert_eq!(body["username"], "robert");
    assert_eq!(body["email"], "bob@example.com");
    assert_eq!(body["email_verified"], false);
    let fake_sub = body["sub"].as_str().unwrap();
    assert!(!fake_sub.is_empty());
    assert_ne!(body["sub"], bob["sub"], "a fresh sub, not the owner's");
    assert_eq!(
        fake_sub.len(),
        bob["sub"].as_str().unwrap().len(),
        "looks like a real sub"
    );

    // The owner is told by mail; no account was created.
    wait_for_mail(&app, "bob@example.com", "already-have-an-account", |m| {
        m.subject()
            .contains("You already have an account")
            .then_some(())
    })
    .await;
    settle().await;
    assert_eq!(app.snapshot().await, before, "no account is created");
    let (status, refused) = grant(&app, "robert", STRONGER, "openid").await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    // No second verification link was sent for the address.
    let tokens: Vec<String> = mails_to(&app, "bob@example.com")
        .iter()
        .filter_map(|m| m.token(&app.issuer, "verify-email"))
        .collect();
    assert_eq!(tokens, [first_token]);
    // The seeded user's address behaves the same.
    let (status, body) = register(
        &app,
        &json!({"username": "alicia", "email": "alice@example.com", "password": STRONGER}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["email_verified"], false);
    wait_for_mail(&app, "alice@example.com", "already-have-an-account", |m| {
        m.subject()
            .contains("You already have an account")
            .then_some(())
    })
    .await;
    // The username "robert" was not reserved by the refused sign-up.
    register_ok(&app, "robert", "robert@example.com").await;
}

#[tokio::test]
async fn registration_can_be_turned_off() {
    let app = spawn("[accounts]\nallow_registration = false\n").await;
    let before = app.snapshot().await;
    let (status, body) = register(
        &app,
        &json!({"username": "bob", "email": "bob@example.com", "password": STRONG}),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "registration_disabled");
    assert!(body["error_description"].is_string());
    assert_eq!(app.snapshot().await, before);
    settle().await;
    assert!(mails_to(&app, "bob@example.com").is_empty());
}

// ---------------------------------------------------------------------------------
// E-mail verification

#[tokio::test]
async fn verifying_the_e_mail_address_with_the_mailed_token() {
    let app = spawn("").await;
    register_ok(&app, "bob", "bob@example.com").await;
    let token = mailed_token(&app, "bob@example.com", "verify-email", &[]).await;
    assert_eq!(id_token_email_verified(&app, "bob", STRONG).await, false);

    let (status, body) = post(
        &app,
        "/api/v1/account/verify-email",
        &json!({"token": token}),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(id_token_email_verified(&app, "bob", STRONG).await, true);
    let access = access_token(&app, "bob", STRONG).await;
    assert_eq!(me(&app, &access).await["email_verified"], true);

    // The token is single-use.
    let (status, body) = post(
        &app,
        "/api/v1/account/verify-email",
        &json!({"token": token}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_token");
}

#[tokio::test]
async fn bad_verification_tokens_are_refused() {
    let app = spawn("").await;
    register_ok(&app, "bob", "bob@example.com").await;
    let real = mailed_token(&app, "bob@example.com", "verify-email", &[]).await;
    let unknown = "A".repeat(43);
    let with_padding = format!("{}=", &real[..42]);
    let longer = format!("{real}A");
    let shorter = real[..42].to_string();
    let before = app.snapshot().await;
    for (case, token) in [
        ("unknown", unknown.as_str()),
        ("empty", ""),
        ("garbage", "not-a-token"),
        ("one character short", shorter.as_str()),
        ("one character long", longer.as_str()),
        ("padding", with_padding.as_str()),
        ("spaces", "                                           "),
    ] {
        let (status, body) = post(
            &app,
            "/api/v1/account/verify-email",
            &json!({"token": token}),
        )
        .await;
        assert_eq!(status, 400, "{case}: {body}");
        assert_eq!(body["error"], "invalid_token", "{case}: {body}");
    }
    for (case, body) in [
        ("no token", json!({})),
        ("a number", json!({"token": 7})),
        (
            "unknown field",
            json!({"token": real, "email": "bob@example.com"}),
        ),
    ] {
        let (status, answer) = post(&app, "/api/v1/account/verify-email", &body).await;
        assert_eq!(status, 400, "{case}: {answer}");
        assert_eq!(answer["error"], "invalid_request", "{case}: {answer}");
    }
    let (status, answer) = read(
        app.http
            .post(app.url("/api/v1/account/verify-email"))
            .form(&[("token", real.as_str())])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_request")),
        "form-encoded: {answer}"
    );
    assert_eq!(app.snapshot().await, before, "nothing changed");
    // The real token still works after all that.
    let (status, body) = post(
        &app,
        "/api/v1/account/verify-email",
        &json!({"token": real}),
    )
    .await;
    assert_eq!(status, 204, "{body}");
}

#[tokio::test]
async fn unverified_users_cannot_sign_in_when_verification_is_required() {
    let app = spawn("[accounts]\nrequire_verified_email = true\n").await;
    register_ok(&app, "bob", "bob@example.com").await;
    let (status, body) = grant(&app, "bob", STRONG, "openid").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_grant");
    let token = mailed_token(&app, "bob@example.com", "verify-email", &[]).await;
    let (status, body) = post(
        &app,
        "/api/v1/account/verify-email",
        &json!({"token": token}),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(id_token_email_verified(&app, "bob", STRONG).await, true);
}

#[tokio::test]
async fn resending_the_verification_mail() {
    let app = spawn("").await;
    register_ok(&app, "bob", "bob@example.com").await;
    let first = mailed_token(&app, "bob@example.com", "verify-email", &[]).await;
    let token = access_token(&app, "bob", STRONG).await;
    let response = post_bearer(&app, "/api/v1/account/me/verification", &token, &json!({})).await;
    assert_eq!(response.status(), 202);
    let second = mailed_token(&app, "bob@example.com", "verify-email", &[&first]).await;
    assert_ne!(first, second);
    let (status, body) = post(
        &app,
        "/api/v1/account/verify-email",
        &json!({"token": second}),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(me(&app, &token).await["email_verified"], true);

    // A verified user gets 202 and no mail.
    let alice = access_token(&app, USER, PASSWORD).await;
    let response = app
        .http
        .post(app.url("/api/v1/account/me/verification"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    settle().await;
    assert!(mails_to(&app, "alice@example.com").is_empty());

    // Without a token: 401.
    let response = app
        .http
        .post(app.url("/api/v1/account/me/verification"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.headers().contains_key("www-authenticate"));
}

#[tokio::test]
async fn a_link_mailed_to_a_previous_address_does_not_verify_the_new_one() {
    let app = spawn("").await;
    register_ok(&app, "bob", "bob@example.com").await;
    let old_link = mailed_token(&app, "bob@example.com", "verify-email", &[]).await;
    let token = access_token(&app, "bob", STRONG).await;
    let (status, body) = patch_me(
        &app,
        &token,
        &json!({"email": "bobby@example.org", "current_password": STRONG}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let new_link = mailed_token(&app, "bobby@example.org", "verify-email", &[]).await;
    let (status, body) = post(
        &app,
        "/api/v1/account/verify-email",
        &json!({"token": new_link}),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let profile = me(&app, &token).await;
    assert_eq!(profile["email"], "bobby@example.org");
    assert_eq!(profile["email_verified"], true);

    // The link mailed to the address the account had before does nothing now.
    let (status, body) = post(
        &app,
        "/api/v1/account/verify-email",
        &json!({"token": old_link}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_token");
    assert_eq!(me(&app, &token).await["email"], "bobby@example.org");
}

// ---------------------------------------------------------------------------------
// Password reset

#[tokio::test]
async fn a_reset_request_is_202_for_any_address_and_mails_only_an_owner() {
    let app = spawn("").await;
    register_ok(&app, "bob", "bob@example.com").await;
    register_ok(&app, "dora", "dora@example.com").await;
    assert_eq!(app.cli(&["user", "disable", "dora"]).await.code(), 0);
    settle().await;
    let before = app.snapshot().await;

    for address in ["nobody@example.com", "dora@example.com", "Bob@Example.com"] {
        let (status, body) = post(
            &app,
            "/api/v1/account/password-reset",
            &json!({"email": address}),
        )
        .await;
        assert_eq!(status, 202, "{address}: {body}");
    }
    let token = mailed_token(&app, "bob@example.com", "reset-password", &[]).await;
    assert_eq!(token.len(), 43);
    settle().await;
    assert!(mails_to(&app, "nobody@example.com").is_empty());
    assert!(
        mails_to(&app, "dora@example.com")
            .iter()
            .all(|m| m.token(&app.issuer, "reset-password").is_none()),
        "a disabled account gets no reset link"
    );
    assert_eq!(app.snapshot().await, before, "a request changes no account");

    for (case, body, want) in [
        (
            "invalid address",
            json!({"email": "not an address"}),
            "validation_failed",
        ),
        ("empty address", json!({"email": ""}), "validation_failed"),
        ("no address", json!({}), "invalid_request"),
        (
            "unknown field",
            json!({"email": "bob@example.com", "username": "bob"}),
            "invalid_request",
        ),
        (
            "a list",
            json!({"email": ["bob@example.com"]}),
            "invalid_request",
        ),
    ] {
        let (status, answer) = post(&app, "/api/v1/account/password-reset", &body).await;
        assert_eq!(status, 400, "{case}: {answer}");
        assert_eq!(answer["error"], want, "{case}: {answer}");
        if want == "validation_failed" {
            assert_validation_failed(case, status, &answer, &["email"]);
        }
    }
    let (status, answer) = read(
        app.http
            .post(app.url("/api/v1/account/password-reset"))
            .form(&[("email", "bob@example.com")])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_request")),
        "{answer}"
    );
}

#[tokio::test]
async fn a_reset_sets_a_new_password_once_and_ends_every_refresh_token() {
    let app = spawn("").await;
    register_ok(&app, "bob-the-builder", "bob@example.com").await;
    let before_reset = sign_in(&app, "bob-the-builder", STRONG).await;
    let old_refresh = before_reset["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_string();

    let (status, _) = post(
        &app,
        "/api/v1/account/password-reset",
        &json!({"email": "bob@example.com"}),
    )
    .await;
    assert_eq!(status, 202);
    let token = mailed_token(&app, "bob@example.com", "reset-password", &[]).await;

    // A weak or unsuitable new password is refused and leaves the token usable.
    let unchanged = app.snapshot().await;
    for (case, password) in [
        ("common", "password123"),
        ("too short", "x7#Kq!2"),
        ("too long", &"Zq7!".repeat(33)),
        ("the username", "Bob-The-Builder"),
        ("the e-mail address", "bob@example.com"),
    ] {
        let (status, body) = post(
            &app,
            "/api/v1/account/password-reset/confirm",
            &json!({"token": token, "password": password}),
        )
        .await;
        assert_validation_failed(case, status, &body, &["password"]);
    }
    assert_eq!(app.snapshot().await, unchanged, "nothing changed");
    sign_in(&app, "bob-the-builder", STRONG).await;

    let (status, body) = post(
        &app,
        "/api/v1/account/password-reset/confirm",
        &json!({"token": token, "password": STRONGER}),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = grant(&app, "bob-the-builder", STRONG, "openid").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "old password"
    );
    sign_in(&app, "bob-the-builder", STRONGER).await;

    // Single use.
    let (status, body) = post(
        &app,
        "/api/v1/account/password-reset/confirm",
        &json!({"token": token, "password": "another fine passphrase 9"}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_token");
    sign_in(&app, "bob-the-builder", STRONGER).await;

    // The refresh token from before the reset no longer works.
    let (status, body) = read(
        app.token(
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &old_refresh),
            ],
            Some((FP, CLIENT_SECRET)),
        )
        .await,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_grant");
    // So does the access token issued with it (its family is revoked).
    let old_access = before_reset["access_token"].as_str().unwrap();
    assert_eq!(get_me(&app, old_access).await.status(), 401);
}

#[tokio::test]
async fn bad_reset_confirmations_are_refused() {
    let app = spawn("").await;
    register_ok(&app, "bob", "bob@example.com").await;
    post(
        &app,
        "/api/v1/account/password-reset",
        &json!({"email": "bob@example.com"}),
    )
    .await;
    let real = mailed_token(&app, "bob@example.com", "reset-password", &[]).await;
    let verify = mailed_token(&app, "bob@example.com", "verify-email", &[]).await;
    let before = app.snapshot().await;
    let unknown = "B".repeat(43);
    for (case, token) in [
        ("unknown", unknown.as_str()),
        ("empty", ""),
        ("garbage", "garbage!"),
        ("a verification token", verify.as_str()),
    ] {
        let (status, body) = post(
            &app,
            "/api/v1/account/password-reset/confirm",
            &json!({"token": token, "password": STRONGER}),
        )
        .await;
        assert_eq!(status, 400, "{case}: {body}");
        assert_eq!(body["error"], "invalid_token", "{case}: {body}");
    }
    for (case, body) in [
        ("no password", json!({"token": real})),
        ("no token", json!({"password": STRONGER})),
        (
            "unknown field",
            json!({"token": real, "password": STRONGER, "username": "bob"}),
        ),
    ] {
        let (status, answer) = post(&app, "/api/v1/account/password-reset/confirm", &body).await;
        assert_eq!(status, 400, "{case}: {answer}");
        assert_eq!(answer["error"], "invalid_request", "{case}: {answer}");
    }
    assert_eq!(app.snapshot().await, before, "nothing changed");
    sign_in(&app, "bob", STRONG).await;
    // The verification token was not used up by being presented as a reset token.
    let (status, body) = post(
        &app,
        "/api/v1/account/verify-email",
        &json!({"token": verify}),
    )
    .await;
    assert_eq!(status, 204, "{body}");
}

// ---------------------------------------------------------------------------------
// The profile

const PROFILE_KEYS: [&str; 12] = [
    "email",
    "email_verified",
    "family_name",
    "given_name",
    "locale",
    "name",
    "pending_email",
    "picture",
    "roles",
    "sub",
    "updated_at",
    "username",
];

#[tokio::test]
async fn me_returns_the_profile_of_the_tokens_user() {
    let app = spawn("").await;
    let tokens = sign_in(&app, USER, PASSWORD).await;
    let response = get_me(&app, tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(response.status(), 200);
    let (_, profile) = read(response).await;
    let mut keys: Vec<&str> = profile
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(keys, PROFILE_KEYS, "{profile}");
    let id = jwt_claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(profile["sub"], id["sub"]);
    assert_eq!(profile["username"], USER);
    assert_eq!(profile["email"], "alice@example.com");
    assert_eq!(profile["email_verified"], true);
    assert_eq!(profile["name"], "Alice Example");
    assert_eq!(profile["given_name"], "Alice");
    assert_eq!(profile["family_name"], "Example");
    assert_eq!(profile["picture"], Value::Null);
    assert_eq!(profile["locale"], Value::Null);
    let roles = profile["roles"].as_array().unwrap();
    assert!(roles.contains(&json!("admin")), "{profile}");
    assert!(profile["updated_at"].is_i64(), "{profile}");
}

#[tokio::test]
async fn me_without_a_usable_bearer_token_is_401() {
    let app = spawn("").await;
    let tokens = sign_in(&app, USER, PASSWORD).await;
    let id_token = tokens["id_token"].as_str().unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    // A token signed by us but altered: the signature no longer matches.
    let mut parts: Vec<String> = access.split('.').map(str::to_string).collect();
    parts[1] = {
        use base64::Engine;
        let mut c = jwt_claims(access);
        c["sub"] = json!("someone-else");
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(c.to_string())
    };
    let forged = parts.join(".");

    let response = app
        .http
        .get(app.url("/api/v1/account/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401, "no token");
    let challenge = response.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Bearer"), "{challenge}");

    for (case, token) in [
        ("garbage", "garbage"),
        ("an ID token", id_token),
        ("a forged token", forged.as_str()),
    ] {
        let response = get_me(&app, token).await;
        assert_eq!(response.status(), 401, "{case}");
        let challenge = response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(challenge.starts_with("Bearer"), "{case}: {challenge}");
        assert!(challenge.contains("invalid_token"), "{case}: {challenge}");
        let (_, body) = read(response).await;
        assert_eq!(body["error"], "invalid_token", "{case}: {body}");
    }

    // A valid token of a user who has since been disabled.
    register_ok(&app, "bob", "bob@example.com").await;
    let bob = access_token(&app, "bob", STRONG).await;
    assert_eq!(get_me(&app, &bob).await.status(), 200);
    assert_eq!(app.cli(&["user", "disable", "bob"]).await.code(), 0);
    let response = get_me(&app, &bob).await;
    assert_eq!(response.status(), 401, "disabled user");
    assert!(response.headers().contains_key("www-authenticate"));
    let (status, _) = patch_me(&app, &bob, &json!({"name": "Still Here"})).await;
    assert_eq!(status, 401, "disabled user's PATCH");
}

#[tokio::test]
async fn a_third_party_token_reads_the_profile_only_with_scope_profile_and_changes_nothing() {
    let app = spawn("").await;
    let without_profile = third_party_token(&app, "openid email").await;
    let response = get_me(&app, &without_profile).await;
    assert_eq!(response.status(), 403);
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(challenge.contains("insufficient_scope"), "{challenge}");
    let (_, body) = read(response).await;
    assert_eq!(body["error"], "insufficient_scope");

    let with_profile = third_party_token(&app, "openid profile").await;
    let profile = me(&app, &with_profile).await;
    assert_eq!(profile["username"], USER);

    let before = app.snapshot().await;
    for token in [&without_profile, &with_profile] {
        let (status, body) = patch_me(&app, token, &json!({"name": "Mallory"})).await;
        assert_eq!(status, 403, "PATCH: {body}");
        assert_eq!(body["error"], "insufficient_scope");
        let response = post_bearer(
            &app,
            "/api/v1/account/me/password",
            token,
            &json!({"current_password": PASSWORD, "new_password": STRONGER}),
        )
        .await;
        assert_eq!(response.status(), 403, "password change");
        let response =
            post_bearer(&app, "/api/v1/account/me/verification", token, &json!({})).await;
        assert_eq!(response.status(), 403, "verification");
    }
    assert_eq!(app.snapshot().await, before, "nothing changed");
    sign_in(&app, USER, PASSWORD).await;
}

#[tokio::test]
async fn patch_me_sets_and_clears_profile_fields() {
    let app = spawn("").await;
    register_verified(&app, "bob", "bob@example.com").await;
    let token = access_token(&app, "bob", STRONG).await;
    let before = me(&app, &token).await;

    let (status, profile) = patch_me(
        &app,
        &token,
        &json!({
            "name": "Bob Builder",
            "given_name": "Bob",
            "family_name": "Builder",
            "picture": "https://img.example/bob.png",
            "locale": "pt-BR",
        }),
    )
    .await;
    assert_eq!(status, 200, "{profile}");
    let mut keys: Vec<&str> = profile
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(keys, PROFILE_KEYS, "{profile}");
    assert_eq!(profile["name"], "Bob Builder");
    assert_eq!(profile["given_name"], "Bob");
    assert_eq!(profile["family_name"], "Builder");
    assert_eq!(profile["picture"], "https://img.example/bob.png");
    assert_eq!(profile["locale"], "pt-BR");
    assert_eq!(profile["email"], "bob@example.com");
    assert_eq!(
        profile["email_verified"], true,
        "the address did not change"
    );
    assert_eq!(profile["sub"], before["sub"]);
    assert!(profile["updated_at"].as_i64() >= before["updated_at"].as_i64());
    assert_eq!(
        me(&app, &token).await,
        profile,
        "GET shows what PATCH returned"
    );

    // "" clears a field; fields not sent stay as they are; http pictures are fine.
    let (status, profile) = patch_me(
        &app,
        &token,
        &json!({"given_name": "", "locale": "", "picture": "http://localhost:3000/b.png"}),
    )
    .await;
    assert_eq!(status, 200, "{profile}");
    assert_eq!(profile["given_name"], Value::Null);
    assert_eq!(profile["locale"], Value::Null);
    assert_eq!(profile["picture"], "http://localhost:3000/b.png");
    assert_eq!(profile["name"], "Bob Builder");
    assert_eq!(profile["family_name"], "Builder");

    // The ID token carries the new profile.
    let id = jwt_claims(
        sign_in(&app, "bob", STRONG).await["id_token"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(id["name"], "Bob Builder");
    assert!(id.get("given_name").is_none_or(Value::is_null), "{id}");
}

#[tokio::test]
async fn changing_the_e_mail_address_needs_a_new_verification() {
    let app = spawn("").await;
    register_verified(&app, "bob", "bob@example.com").await;
    let token = access_token(&app, "bob", STRONG).await;

    // The same address in another case is no change (and needs no password).
    let (status, profile) = patch_me(&app, &token, &json!({"email": "BOB@example.com"})).await;
    assert_eq!(status, 200, "{profile}");
    assert_eq!(profile["email"], "bob@example.com");
    assert_eq!(profile["email_verified"], true);
    assert!(profile["pending_email"].is_null());

    let (status, profile) = patch_me(
        &app,
        &token,
        &json!({"email": "New@Example.org", "current_password": STRONG}),
    )
    .await;
    assert_eq!(status, 200, "{profile}");
    assert_eq!(profile["email"], "bob@example.com");
    assert_eq!(profile["pending_email"], "new@example.org");
    assert_eq!(profile["email_verified"], true);
    assert_eq!(id_token_email_verified(&app, "bob", STRONG).await, true);
    let link = mailed_token(&app, "new@example.org", "verify-email", &[]).await;
    let (status, body) = post(
        &app,
        "/api/v1/account/verify-email",
        &json!({"token": link}),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let profile = me(&app, &token).await;
    assert_eq!(profile["email"], "new@example.org");
    assert_eq!(profile["email_verified"], true);
    // The new address signs in; the old one is free for someone else.
    sign_in(&app, "new@example.org", STRONG).await;
    register_ok(&app, "bobette", "bob@example.com").await;
    mailed_token(&app, "bob@example.com", "verify-email", &[]).await;
}

#[tokio::test]
async fn bad_profile_edits_change_nothing() {
    let app = spawn("").await;
    let token = access_token(&app, USER, PASSWORD).await;
    let before = app.snapshot().await;
    let profile_before = me(&app, &token).await;
    for (case, body) in [
        ("roles", json!({"roles": ["admin", "superuser"]})),
        ("username", json!({"username": "mallory"})),
        ("email_verified", json!({"email_verified": true})),
        ("sub", json!({"sub": "other"})),
        ("password", json!({"password": STRONGER})),
        ("a number for a name", json!({"name": 42})),
        (
            "known and unknown fields",
            json!({"name": "Eve", "roles": ["admin"]}),
        ),
        ("not an object", json!(["name", "Eve"])),
    ] {
        let (status, answer) = patch_me(&app, &token, &body).await;
        assert_eq!(status, 400, "{case}: {answer}");
        assert_eq!(answer["error"], "invalid_request", "{case}: {answer}");
    }
    let long = "n".repeat(129);
    let cases: Vec<(&str, Value, &[&str])> = vec![
        (
            "javascript picture",
            json!({"picture": "javascript:alert(1)"}),
            &["picture"],
        ),
        (
            "relative picture",
            json!({"picture": "/me.png"}),
            &["picture"],
        ),
        (
            "ftp picture",
            json!({"picture": "ftp://img.example/me.png"}),
            &["picture"],
        ),
        (
            "locale with a space",
            json!({"locale": "not a locale"}),
            &["locale"],
        ),
        (
            "locale with an underscore",
            json!({"locale": "pt_BR"}),
            &["locale"],
        ),
        ("one-letter locale", json!({"locale": "e"}), &["locale"]),
        ("bad e-mail", json!({"email": "nope"}), &["email"]),
        ("empty e-mail", json!({"email": ""}), &["email"]),
        ("name too long", json!({"name": long}), &["name"]),
        (
            "control character",
            json!({"family_name": "a\u{0}b"}),
            &["family_name"],
        ),
        (
            "every bad field at once, good ones not applied",
            json!({
                "name": "Should Not Stick",
                "picture": "javascript:alert(1)",
                "locale": "not a locale",
                "email": "nope",
            }),
            &["email", "locale", "picture"],
        ),
    ];
    for (case, body, fields) in cases {
        let (status, answer) = patch_me(&app, &token, &body).await;
        assert_validation_failed(case, status, &answer, fields);
    }
    let (status, answer) = read(
        app.http
            .patch(app.url("/api/v1/account/me"))
            .bearer_auth(&token)
            .header("content-type", "text/plain")
            .body(json!({"name": "Eve"}).to_string())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, _) = read(
        app.http
            .patch(app.url("/api/v1/account/me"))
            .json(&json!({"name": "Eve"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401, "no token");

    assert_eq!(app.snapshot().await, before, "nothing changed");
    assert_eq!(me(&app, &token).await, profile_before);
    settle().await;
    assert!(mails_to(&app, "alice@example.com").is_empty());
}

// ---------------------------------------------------------------------------------
// Password change

pub(crate) async fn change_password(
    app: &TestApp,
    token: &str,
    current: &str,
    new: &str,
) -> reqwest::Response {
    post_bearer(
        app,
        "/api/v1/account/me/password",
        token,
        &json!({"current_password": current, "new_password": new}),
    )
    .await
}

#[tokio::test]
async fn changing_the_password_needs_the_current_one() {
    let app = spawn("").await;
    register_ok(&app, "bob", "bob@example.com").await;
    let token = access_token(&app, "bob", STRONG).await;
    let before = app.snapshot().await;
    for (case, current, new, fields) in [
        (
            "wrong current",
            "not my password 1",
            STRONGER,
            &["current_password"][..],
        ),
        ("weak new", STRONG, "password123", &["new_password"][..]),
        (
            "new equals the e-mail address",
            STRONG,
            "bob@example.com",
            &["new_password"][..],
        ),
        (
            "both wrong",
            "not my password 2",
            "short",
            &["current_password", "new_password"][..],
        ),
    ] {
        let (status, body) = read(change_password(&app, &token, current, new).await).await;
        assert_validation_failed(case, status, &body, fields);
    }
    for (case, body) in [
        ("no new password", json!({"current_password": STRONG})),
        (
            "unknown field",
            json!({"current_password": STRONG, "new_password": STRONGER, "username": "x"}),
        ),
    ] {
        let (status, answer) =
            read(post_bearer(&app, "/api/v1/account/me/password", &token, &body).await).await;
        assert_eq!(status, 400, "{case}: {answer}");
        assert_eq!(answer["error"], "invalid_request", "{case}: {answer}");
    }
    assert_eq!(app.snapshot().await, before, "nothing changed");

    let response = change_password(&app, &token, STRONG, STRONGER).await;
    assert_eq!(response.status(), 204);
    let (status, body) = grant(&app, "bob", STRONG, "openid").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "old password"
    );
    sign_in(&app, "bob", STRONGER).await;
}

#[tokio::test]
async fn wrong_current_passwords_are_limited_per_username() {
    let app = spawn("").await;
    register_ok(&app, "bob", "bob@example.com").await;
    let token = access_token(&app, "bob", STRONG).await;
    for i in 0..5 {
        let (status, body) =
            read(change_password(&app, &token, &format!("wrong password {i}"), STRONGER).await)
                .await;
        assert_validation_failed(
            &format!("attempt {i}"),
            status,
            &body,
            &["current_password"],
        );
    }
    // The sixth attempt is refused before the password is checked, even the right one.
    let limited = change_password(&app, &token, STRONG, STRONGER).await;
    assert_eq!(limited.status(), 429);
    assert_retry_after(&limited);
    let (_, body) = read(limited).await;
    assert_eq!(body["error"], "temporarily_unavailable");
    assert!(body["error_description"].is_string());
    // The password did not change, and the same limit protects the password grant.
    let (status, body) = grant(&app, "bob", STRONG, "openid").await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable");
}

// ---------------------------------------------------------------------------------
// Per-IP request limit

/// One request to each limited endpoint, in turn, from 127.0.0.1 with no client
/// authentication (register: the frontend client without an asserted address).
async fn limited_request(app: &TestApp, i: usize) -> reqwest::Response {
    let (path, body) = match i % 4 {
        0 => (
            "/api/v1/account/password-reset",
            json!({"email": format!("nobody{i}@example.com")}),
        ),
        1 => (
            "/api/v1/account/verify-email",
            json!({"token": "C".repeat(43)}),
        ),
        2 => (
            "/api/v1/account/password-reset/confirm",
            json!({"token": "D".repeat(43), "password": STRONGER}),
        ),
        _ => {
            return app
                .http
                .post(app.url("/api/v1/account/register"))
                .basic_auth(FP, Some(CLIENT_SECRET))
                .json(&json!({
                    "username": format!("user{i}"),
                    "email": format!("user{i}@example.com"),
                    "password": STRONG,
                }))
                .send()
                .await
                .unwrap();
        }
    };
    app.http
        .post(app.url(path))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn ten_requests_per_minute_per_ip_by_default(backend: &str) {
    let app = spawn(&format!("[ratelimit]\n{backend}\n")).await;
    for i in 0..10 {
        let response = limited_request(&app, i).await;
        assert_ne!(response.status(), 429, "request {i}");
        assert!(
            [201, 202, 400].contains(&response.status().as_u16()),
            "request {i}: {}",
            response.status()
        );
    }
    for i in 10..14 {
        let limited = limited_request(&app, i).await;
        assert_eq!(limited.status(), 429, "request {i}");
        assert_retry_after(&limited);
        let (_, body) = read(limited).await;
        assert_eq!(body["error"], "temporarily_unavailable", "request {i}");
        assert!(body["error_description"].is_string());
    }
    // Limited sign-ups stored nothing.
    assert!(
        app.store
            .find_user_by_username("user11")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        app.store
            .find_user_by_username("user3")
            .await
            .unwrap()
            .is_some()
    );
    // Other endpoints are not limited per IP.
    sign_in(&app, USER, PASSWORD).await;
}

async fn an_asserted_end_user_ip_has_its_own_budget(backend: &str) {
    let app = spawn(&format!(
        "[ratelimit]\n{backend}\nrequests_per_minute_per_ip = 3\nclient_ip_header = \"x-end-user-ip\"\n"
    ))
    .await;
    let sign_up = |n: u32, ip: &'static str| {
        let app = &app;
        async move {
            app.http
                .post(app.url("/api/v1/account/register"))
                .basic_auth(FP, Some(CLIENT_SECRET))
                .header("x-end-user-ip", ip)
                .json(&json!({
                    "username": format!("user{n}"),
                    "email": format!("user{n}@example.com"),
                    "password": STRONG,
                }))
                .send()
                .await
                .unwrap()
        }
    };
    for n in 0..3 {
        assert_eq!(sign_up(n, "203.0.113.7").await.status(), 201, "sign-up {n}");
    }
    let limited = sign_up(3, "203.0.113.7").await;
    assert_eq!(limited.status(), 429);
    assert_retry_after(&limited);
    let (_, body) = read(limited).await;
    assert_eq!(body["error"], "temporarily_unavailable");
    // Another end user behind the same frontend server has a budget of its own.
    assert_eq!(sign_up(4, "203.0.113.8").await.status(), 201);

    // Without client authentication the header is ignored: every request counts for
    // the peer (127.0.0.1), whatever address it claims.
    let reset = |ip: &'static str| {
        let app = &app;
        async move {
            app.http
                .post(app.url("/api/v1/account/password-reset"))
                .header("x-end-user-ip", ip)
                .json(&json!({"email": "user0@example.com"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    for ip in ["198.51.100.1", "198.51.100.2", "198.51.100.3"] {
        assert_eq!(reset(ip).await, 202, "{ip}");
    }
    assert_eq!(
        reset("198.51.100.4").await,
        429,
        "a claimed address does not help"
    );

    // With the frontend's credentials the asserted address is honoured at the reset
    // endpoints too; bad credentials are refused, not ignored.
    let response = app
        .http
        .post(app.url("/api/v1/account/password-reset"))
        .basic_auth(FP, Some(CLIENT_SECRET))
        .header("x-end-user-ip", "198.51.100.9")
        .json(&json!({"email": "user0@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let (status, body) = read(
        app.http
            .post(app.url("/api/v1/account/password-reset"))
            .basic_auth(FP, Some("wrong-secret"))
            .header("x-end-user-ip", "198.51.100.10")
            .json(&json!({"email": "user0@example.com"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
}

const MEMORY: &str = "backend = \"memory\"";
const DATABASE: &str = "backend = \"database\"";

mod memory {
    #[tokio::test]
    async fn ten_requests_per_minute_per_ip_by_default() {
        super::ten_requests_per_minute_per_ip_by_default(super::MEMORY).await;
    }

    #[tokio::test]
    async fn an_asserted_end_user_ip_has_its_own_budget() {
        super::an_asserted_end_user_ip_has_its_own_budget(super::MEMORY).await;
    }
}

mod database {
    #[tokio::test]
    async fn ten_requests_per_minute_per_ip_by_default() {
        super::ten_requests_per_minute_per_ip_by_default(super::DATABASE).await;
    }

    #[tokio::test]
    async fn an_asserted_end_user_ip_has_its_own_budget() {
        super::an_asserted_end_user_ip_has_its_own_budget(super::DATABASE).await;
    }
}

// ---------------------------------------------------------------------------------
// CORS

#[tokio::test]
async fn cors_preflight_for_the_account_api_from_a_configured_origin() {
    const ORIGIN: &str = "http://localhost:3000";
    let app = spawn(&format!("[cors]\nallowed_origins = [\"{ORIGIN}\"]\n")).await;
    let preflight = |origin: &'static str, path: &'static str, method: &'static str| {
        let app = &app;
        async move {
            app.http
                .request(reqwest::Method::OPTIONS, app.url(path))
                .header("Origin", origin)
                .header("Access-Control-Request-Method", method)
                .header(
                    "Access-Control-Request-Headers",
                    "authorization, content-type",
                )
                .send()
                .await
                .unwrap()
        }
    };
    for (path, method) in [
        ("/api/v1/account/me", "PATCH"),
        ("/api/v1/account/me", "GET"),
        ("/api/v1/account/register", "POST"),
        ("/api/v1/account/password-reset", "POST"),
    ] {
        let response = preflight(ORIGIN, path, method).await;
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        let h = response.headers();
        assert_eq!(h["access-control-allow-origin"], ORIGIN, "{path}");
        assert_eq!(h["access-control-allow-credentials"], "true", "{path}");
        let methods = h["access-control-allow-methods"].to_str().unwrap();
        assert!(methods.contains(method), "{path}: {methods}");
        let headers = h["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .to_lowercase();
        assert!(
            headers.contains("authorization") && headers.contains("content-type"),
            "{path}: {headers}"
        );
    }
    let other = preflight("https://evil.example", "/api/v1/account/me", "PATCH").await;
    assert!(
        !other.headers().contains_key("access-control-allow-origin"),
        "{:?}",
        other.headers()
    );

    // The actual request carries the exact origin too.
    let token = access_token(&app, USER, PASSWORD).await;
    let response = app
        .http
        .get(app.url("/api/v1/account/me"))
        .bearer_auth(&token)
        .header("Origin", ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["access-control-allow-origin"], ORIGIN);
    let response = app
        .http
        .get(app.url("/api/v1/account/me"))
        .bearer_auth(&token)
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(
        !response
            .headers()
            .contains_key("access-control-allow-origin")
    );
}
