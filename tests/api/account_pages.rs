//! The hosted account pages (`/register`, `/verify-email`, `/forgot-password`,
//! `/reset-password`, `/account`) and `prompt=create`, driven as a browser would: GET the
//! page, keep its cookies, POST every form field back. Mails are read from the file
//! outbox.

use std::time::Duration;

use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge,
    RedirectUrl, Scope, TokenResponse,
};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::helpers::decode_quoted_printable;
use crate::helpers::jwt_claims;
use crate::helpers::{
    CLIENT, CLIENT_SECRET, Options, PASSWORD, REDIRECT, TestApp, USER, flow_options, hidden_input,
    html_decode, query_param, spawn_app_with, spawn_flow_app,
};

/// Strong passwords (the zxcvbn rule accepts them).
pub(crate) const NEW_PASSWORD: &str = "quiet meadow lantern 42";
pub(crate) const OTHER_PASSWORD: &str = "violet harbor compass 77";

pub(crate) type Browser = reqwest::Client;
/// A sign-up form's four fields.
type Form<'a> = [(&'a str, &'a str); 4];

// ---- helpers -------------------------------------------------------------------------

/// `[accounts] sign_in_after_registration = true`: a sign-up signs in at once (the
/// enumerating mode, by choice) for tests about what follows a sign-up.
const SIGN_IN_AT_ONCE: &str = "\n[accounts]\nsign_in_after_registration = true\n";

async fn spawn_signing_in_app() -> TestApp {
    spawn_app_with(options_with(SIGN_IN_AT_ONCE)).await
}

pub(crate) fn options_with(extra: &str) -> Options {
    let mut options = flow_options();
    options.extra_toml.push_str(extra);
    options
}

pub(crate) struct Page {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) html: String,
}

impl Page {
    pub(crate) async fn of(response: reqwest::Response) -> Self {
        Self {
            status: response.status(),
            headers: response.headers().clone(),
            html: response.text().await.unwrap(),
        }
    }

    /// The page with HTML entities decoded, for text assertions.
    pub(crate) fn text(&self) -> String {
        html_decode(&self.html)
    }

    pub(crate) fn csrf(&self) -> String {
        hidden_input(&self.html, "csrf_token")
            .unwrap_or_else(|| panic!("no csrf_token on the page ({}): {}", self.status, self.html))
    }

    pub(crate) fn has_input(&self, name: &str) -> bool {
        self.html.contains(&format!("name=\"{name}\""))
    }

    fn has_action(&self, action: &str) -> bool {
        self.html
            .contains(&format!("name=\"action\" value=\"{action}\""))
    }

    /// Whether the form shows a message on `field` (the `field()` macro's error line).
    pub(crate) fn field_error(&self, field: &str) -> Option<String> {
        let marker = format!("id=\"{field}-error\">");
        let start = self.html.find(&marker)? + marker.len();
        let end = start + self.html[start..].find('<')?;
        Some(html_decode(&self.html[start..end]))
    }

    fn field_errors(&self) -> Vec<String> {
        self.html
            .match_indices("class=\"field-error\" id=\"")
            .map(|(i, m)| {
                let rest = &self.html[i + m.len()..];
                rest[..rest.find("-error\"").unwrap()].to_string()
            })
            .collect()
    }
}

pub(crate) async fn get_page(browser: &Browser, url: &str) -> Page {
    Page::of(browser.get(url).send().await.unwrap()).await
}

pub(crate) fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .unwrap_or_else(|| panic!("no Location on {}", response.status()))
        .to_str()
        .unwrap()
        .to_string()
}

/// Whether the response sets a (non-empty) session cookie.
pub(crate) fn sets_session(headers: &HeaderMap) -> bool {
    headers.get_all("set-cookie").iter().any(|c| {
        let c = c.to_str().unwrap();
        c.starts_with("oxidp_session=") && !c.starts_with("oxidp_session=;")
    })
}

pub(crate) fn assert_redirect_to(response: &reqwest::Response, expected: &str) {
    assert!(
        response.status() == 303 || response.status() == 302,
        "expected a redirect to {expected}, got {}",
        response.status()
    );
    assert_eq!(location(response), expected);
}

/// GETs `/register` (with `req`), then posts the form back with `fields`.
pub(crate) async fn register(
    app: &TestApp,
    browser: &Browser,
    req: Option<&str>,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let path = match req {
        Some(r) => format!("/register?req={r}"),
        None => "/register".to_string(),
    };
    let page = get_page(browser, &app.url(&path)).await;
    assert_eq!(page.status, 200, "{}", page.html);
    assert_eq!(hidden_input(&page.html, "req").as_deref(), req);
    let csrf = page.csrf();
    let mut form: Vec<(&str, &str)> = vec![("csrf_token", &csrf)];
    if let Some(r) = req {
        form.push(("req", r));
    }
    form.extend_from_slice(fields);
    browser
        .post(app.url("/register"))
        .form(&form)
        .send()
        .await
        .unwrap()
}

/// A complete sign-up form.
pub(crate) async fn sign_up(
    app: &TestApp,
    browser: &Browser,
    username: &str,
    email: &str,
    password: &str,
) -> reqwest::Response {
    register(
        app,
        browser,
        None,
        &[
            ("username", username),
            ("email", email),
            ("name", ""),
            ("password", password),
        ],
    )
    .await
}

/// Signs in at `/login` without a pending request.
pub(crate) async fn sign_in(
    app: &TestApp,
    browser: &Browser,
    username: &str,
    password: &str,
) -> reqwest::Response {
    let page = get_page(browser, &app.url("/login")).await;
    assert_eq!(page.status, 200, "{}", page.html);
    let csrf = page.csrf();
    browser
        .post(app.url("/login"))
        .form(&[
            ("username", username),
            ("password", password),
            ("csrf_token", &csrf),
        ])
        .send()
        .await
        .unwrap()
}

/// A browser signed in (at `/login`) as `username`.
pub(crate) async fn signed_in(app: &TestApp, username: &str, password: &str) -> Browser {
    let browser = app.new_browser();
    let response = sign_in(app, &browser, username, password).await;
    assert_redirect_to(&response, "/account");
    assert!(sets_session(response.headers()));
    browser
}

/// GETs `/account` and posts one of its forms back with `fields`.
pub(crate) async fn account_post(
    app: &TestApp,
    browser: &Browser,
    action: &str,
    fields: &[(&str, &str)],
) -> Page {
    let page = get_page(browser, &app.url("/account")).await;
    assert_eq!(page.status, 200, "{}", page.html);
    let csrf = page.csrf();
    let mut form: Vec<(&str, &str)> = vec![("csrf_token", &csrf), ("action", action)];
    form.extend_from_slice(fields);
    Page::of(
        browser
            .post(app.url("/account"))
            .form(&form)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// The profile form as the page shows it, with `changes` applied.
fn profile_fields(page: &Page, changes: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    [
        "email",
        "name",
        "given_name",
        "family_name",
        "picture",
        "locale",
    ]
    .into_iter()
    .map(|name| {
        let value = changes
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
            .unwrap_or_else(|| input_value(&page.html, name).unwrap_or_default());
        (name, value)
    })
    .collect()
}

/// The `value` of the visible input `name` (rendered by the `field()` macro).
fn input_value(html: &str, name: &str) -> Option<String> {
    let start = html.find(&format!("<input id=\"{name}\""))?;
    let tag = &html[start..start + html[start..].find('>')?];
    let v = tag.find(" value=\"")? + " value=\"".len();
    Some(html_decode(&tag[v..v + tag[v..].find('"')?]))
}

async fn save_profile(app: &TestApp, browser: &Browser, changes: &[(&'static str, &str)]) -> Page {
    let current = get_page(browser, &app.url("/account")).await;
    assert_eq!(current.status, 200, "{}", current.html);
    let fields = profile_fields(&current, changes);
    let mut form: Vec<(&str, &str)> = vec![("action", "profile")];
    let csrf = current.csrf();
    form.push(("csrf_token", &csrf));
    form.extend(fields.iter().map(|(k, v)| (*k, v.as_str())));
    Page::of(
        browser
            .post(app.url("/account"))
            .form(&form)
            .send()
            .await
            .unwrap(),
    )
    .await
}

fn assert_page_headers(page: &Page, what: &str) {
    let h = &page.headers;
    assert!(
        h.get("content-security-policy").is_some(),
        "{what}: no Content-Security-Policy"
    );
    assert_eq!(
        h.get("x-frame-options").map(|v| v.to_str().unwrap()),
        Some("DENY"),
        "{what}"
    );
    assert_eq!(
        h.get("cache-control").map(|v| v.to_str().unwrap()),
        Some("no-store"),
        "{what}"
    );
    assert_eq!(
        h.get("x-content-type-options").map(|v| v.to_str().unwrap()),
        Some("nosniff"),
        "{what}"
    );
    assert!(
        h.get("content-type")
            .is_some_and(|v| v.to_str().unwrap().starts_with("text/html")),
        "{what}"
    );
}

fn retry_after(page: &Page) -> u64 {
    page.headers
        .get("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After on {}: {}", page.status, page.html))
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn assert_rate_limited(page: &Page, what: &str) {
    assert_eq!(page.status, 429, "{what}: {}", page.html);
    let retry = retry_after(page);
    assert!((1..=60).contains(&retry), "{what}: Retry-After {retry}");
    assert!(
        page.text().contains("Too many requests"),
        "{what}: {}",
        page.html
    );
    assert_page_headers(page, what);
}

// ---- users, through the CLI ----------------------------------------------------------

#[derive(Debug)]
struct UserRow {
    sub: String,
    username: String,
    email: String,
    verified: bool,
}

async fn users(app: &TestApp) -> Vec<UserRow> {
    let out = app.cli(&["user", "list"]).await;
    assert_eq!(out.code(), 0, "user list: {}", out.stderr);
    out.stdout
        .lines()
        .skip(1)
        .filter_map(|line| {
            let c: Vec<&str> = line.split_whitespace().collect();
            (c.len() >= 5).then(|| UserRow {
                sub: c[0].to_string(),
                username: c[1].to_string(),
                email: c[2].to_string(),
                verified: c[3] == "true",
            })
        })
        .collect()
}

async fn user(app: &TestApp, username: &str) -> Option<UserRow> {
    users(app)
        .await
        .into_iter()
        .find(|u| u.username == username)
}

// ---- mail ----------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Mail {
    to: String,
    subject: String,
    body: String,
}

fn parse_mail(raw: &str) -> Option<Mail> {
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .or_else(|| raw.split_once("\n\n"))?;
    // Unfold continuation lines.
    let head = head.replace("\r\n ", " ").replace("\r\n\t", " ");
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let to = header("To")?
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_lowercase();
    let subject = header("Subject").unwrap_or_default();
    let encoding = header("Content-Transfer-Encoding")
        .unwrap_or_default()
        .to_lowercase();
    let body = match encoding.as_str() {
        "quoted-printable" => decode_quoted_printable(body),
        "base64" => {
            use base64::Engine;
            let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
            String::from_utf8_lossy(
                &base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .ok()?,
            )
            .into_owned()
        }
        _ => body.to_string(),
    };
    Some(Mail { to, subject, body })
}

/// Every mail in the outbox so far.
fn outbox(app: &TestApp) -> Vec<Mail> {
    let Ok(entries) = std::fs::read_dir(app.dir.path().join("outbox")) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|raw| parse_mail(&raw))
        .collect()
}

fn mails_to(app: &TestApp, to: &str, subject: &str) -> Vec<Mail> {
    outbox(app)
        .into_iter()
        .filter(|m| m.to == to.to_lowercase() && m.subject.contains(subject))
        .collect()
}

/// Waits (mail is written in the background) until `count` mails to `to` whose subject
/// contains `subject` are in the outbox, and returns them.
async fn wait_for_mails(app: &TestApp, to: &str, subject: &str, count: usize) -> Vec<Mail> {
    for _ in 0..100 {
        let found = mails_to(app, to, subject);
        if found.len() >= count && found.iter().all(|m| m.body.ends_with('\n')) {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "no {count} mail(s) to {to} about {subject:?}; outbox: {:#?}",
        outbox(app)
    );
}

async fn wait_for_mail(app: &TestApp, to: &str, subject: &str) -> Mail {
    wait_for_mails(app, to, subject, 1).await.remove(0)
}

/// The token of the `<issuer><path>?token=…` link in a mail.
fn link_token(app: &TestApp, mail: &Mail, path: &str) -> String {
    let marker = format!("{}{path}?token=", app.issuer);
    let start = mail
        .body
        .find(&marker)
        .unwrap_or_else(|| panic!("no {marker} link in {:?}", mail.body))
        + marker.len();
    let token: String = mail.body[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    assert_eq!(token.len(), 43, "token in {:?}", mail.body);
    token
}

async fn verification_token(app: &TestApp, to: &str) -> String {
    let mail = wait_for_mail(app, to, "Verify").await;
    link_token(app, &mail, "/verify-email")
}

/// Asks for a reset link for `email` and returns its token.
async fn reset_token(app: &TestApp, email: &str) -> String {
    let browser = app.new_browser();
    let page = get_page(&browser, &app.url("/forgot-password")).await;
    let response = browser
        .post(app.url("/forgot-password"))
        .form(&[("csrf_token", page.csrf().as_str()), ("email", email)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mail = wait_for_mail(app, email, "Reset").await;
    link_token(app, &mail, "/reset-password")
}

// ---- sign-up -------------------------------------------------------------------------

#[tokio::test]
async fn register_signs_up_signs_in_and_mails_a_verification_link() {
    // Signed in right after sign-up: the opt-in mode.
    let app = spawn_signing_in_app().await;
    let browser = app.new_browser();
    let page = get_page(&browser, &app.url("/register")).await;
    assert_eq!(page.status, 200);
    for name in ["csrf_token", "username", "email", "name", "password"] {
        assert!(
            page.has_input(name),
            "no {name} on /register: {}",
            page.html
        );
    }
    assert!(hidden_input(&page.html, "req").is_none());

    let response = register(
        &app,
        &browser,
        None,
        &[
            ("username", "bob"),
            ("email", "Bob@Example.com"),
            ("name", "Bob Builder"),
            ("password", NEW_PASSWORD),
        ],
    )
    .await;
    assert_redirect_to(&response, "/account");
    assert!(sets_session(response.headers()), "no session after sign-up");

    // Signed in: the account page shows the new, unverified account.
    let account = get_page(&browser, &app.url("/account")).await;
    assert_eq!(account.status, 200, "{}", account.html);
    assert!(account.text().contains("bob"), "{}", account.html);
    assert!(account.text().contains("not verified"), "{}", account.html);
    assert!(account.has_action("verification"), "{}", account.html);
    assert_eq!(
        input_value(&account.html, "email").as_deref(),
        Some("bob@example.com")
    );
    assert_eq!(
        input_value(&account.html, "name").as_deref(),
        Some("Bob Builder")
    );

    let row = user(&app, "bob").await.expect("bob was created");
    assert_eq!(row.email, "bob@example.com");
    assert!(!row.verified);
    // The verification mail goes to the (normalised) address, with an issuer link.
    let mail = wait_for_mail(&app, "bob@example.com", "Verify").await;
    link_token(&app, &mail, "/verify-email");

    // The new password works at /login from another browser.
    signed_in(&app, "bob", NEW_PASSWORD).await;
}

#[tokio::test]
async fn verify_email_link_works_once_and_marks_the_address_verified() {
    // Signed in right after sign-up: the opt-in mode.
    let app = spawn_signing_in_app().await;
    let browser = app.new_browser();
    let response = sign_up(&app, &browser, "carol", "carol@example.com", NEW_PASSWORD).await;
    assert_redirect_to(&response, "/account");
    let token = verification_token(&app, "carol@example.com").await;
    assert!(!user(&app, "carol").await.unwrap().verified);

    // The link is opened from the mail client: no session, no cookies needed.
    let mail_client = app.new_browser();
    let url = app.url(&format!("/verify-email?token={token}"));
    let page = get_page(&mail_client, &url).await;
    assert_eq!(page.status, 200, "{}", page.html);
    assert!(
        page.text().contains("Your e-mail address is verified"),
        "{}",
        page.html
    );
    assert_page_headers(&page, "verify-email");
    assert!(user(&app, "carol").await.unwrap().verified);

    // Once only.
    let again = get_page(&mail_client, &url).await;
    assert_eq!(again.status, 400, "{}", again.html);
    assert!(!again.text().contains("Your e-mail address is verified"));
    // Garbage, an unknown well-formed token, and no token at all.
    for bad in [
        "/verify-email?token=abc".to_string(),
        format!("/verify-email?token={}", "A".repeat(43)),
        "/verify-email".to_string(),
        format!("/verify-email?token={token}x"),
    ] {
        let page = get_page(&mail_client, &app.url(&bad)).await;
        assert_eq!(page.status, 400, "{bad}: {}", page.html);
        assert_page_headers(&page, &bad);
    }

    // The account page now says so and offers no new link.
    let account = get_page(&browser, &app.url("/account")).await;
    assert_eq!(account.status, 200);
    assert!(!account.text().contains("not verified"), "{}", account.html);
    assert!(!account.has_action("verification"), "{}", account.html);
}

#[tokio::test]
async fn register_reports_bad_fields_and_keeps_what_was_typed_except_the_password() {
    let app = spawn_flow_app().await;
    let browser = app.new_browser();
    let response = register(
        &app,
        &browser,
        None,
        &[
            ("username", "a"),
            ("email", "not-an-email"),
            ("name", "Bell\u{7}Ringer"),
            ("password", "Zq1!"),
        ],
    )
    .await;
    assert!(!sets_session(response.headers()));
    let page = Page::of(response).await;
    assert_eq!(page.status, 400, "{}", page.html);
    assert_page_headers(&page, "register 400");
    for field in ["username", "email", "password", "name"] {
        assert!(
            page.field_error(field).is_some(),
            "no message on {field}: {}",
            page.html
        );
    }
    assert_eq!(input_value(&page.html, "username").as_deref(), Some("a"));
    assert_eq!(
        input_value(&page.html, "email").as_deref(),
        Some("not-an-email")
    );
    assert_eq!(input_value(&page.html, "password"), None);
    assert!(!page.html.contains("Zq1!"), "the password came back");

    // The re-rendered form works: now only the (common) password is wrong.
    let csrf = page.csrf();
    let page = Page::of(
        browser
            .post(app.url("/register"))
            .form(&[
                ("csrf_token", csrf.as_str()),
                ("username", "dave"),
                ("email", "dave@example.com"),
                ("name", ""),
                ("password", "password123"),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(page.status, 400, "{}", page.html);
    assert_eq!(page.field_errors(), ["password"], "{}", page.html);
    assert!(!page.html.contains("password123"));
    assert_eq!(input_value(&page.html, "username").as_deref(), Some("dave"));

    // Too short.
    let page = Page::of(
        browser
            .post(app.url("/register"))
            .form(&[
                ("csrf_token", page.csrf().as_str()),
                ("username", "dave"),
                ("email", "dave@example.com"),
                ("name", ""),
                ("password", "short"),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(page.status, 400, "{}", page.html);
    assert_eq!(page.field_errors(), ["password"], "{}", page.html);

    // Nothing was created.
    let all = users(&app).await;
    assert_eq!(all.len(), 1, "{all:?}");
    assert!(outbox(&app).is_empty());

    // An unknown pending request is not a sign-up page.
    let page = get_page(&browser, &app.url("/register?req=no-such-request")).await;
    assert_eq!(page.status, 400, "{}", page.html);
}

#[tokio::test]
async fn register_with_a_taken_username_is_400_on_the_username_field() {
    let app = spawn_flow_app().await;
    let browser = app.new_browser();
    let response = sign_up(
        &app,
        &browser,
        USER,
        "someone.else@example.com",
        NEW_PASSWORD,
    )
    .await;
    assert!(!sets_session(response.headers()));
    let page = Page::of(response).await;
    assert_eq!(page.status, 400, "{}", page.html);
    assert_eq!(page.field_errors(), ["username"], "{}", page.html);
    assert!(
        page.field_error("username").unwrap().contains("taken"),
        "{}",
        page.html
    );
    assert_eq!(
        input_value(&page.html, "email").as_deref(),
        Some("someone.else@example.com")
    );
    assert!(!page.html.contains(NEW_PASSWORD));
    let all = users(&app).await;
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].email, "alice@example.com");
}

#[tokio::test]
async fn register_with_an_address_in_use_creates_nothing_and_tells_the_owner() {
    let app = spawn_flow_app().await;
    let browser = app.new_browser();
    let response = sign_up(&app, &browser, "alice2", "Alice@Example.com", NEW_PASSWORD).await;
    assert!(!sets_session(response.headers()));
    let page = Page::of(response).await;
    assert_eq!(page.status, 200, "{}", page.html);
    assert!(page.text().contains("Check your e-mail"), "{}", page.html);
    assert!(user(&app, "alice2").await.is_none());
    assert_eq!(users(&app).await.len(), 1);

    let mail = wait_for_mail(&app, "alice@example.com", "You already have an account").await;
    assert!(
        mail.body
            .contains(&format!("{}/forgot-password", app.issuer))
    );
    // No verification link went to the address (it is not the new account's).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(mails_to(&app, "alice@example.com", "Verify").is_empty());
    // Not signed in.
    let account = browser.get(app.url("/account")).send().await.unwrap();
    assert_redirect_to(&account, "/login");
}

#[tokio::test]
async fn register_with_required_verification_shows_check_your_mail_and_no_session() {
    let app = spawn_app_with(options_with(
        "\n[accounts]\nrequire_verified_email = true\n",
    ))
    .await;
    let browser = app.new_browser();
    let response = sign_up(&app, &browser, "erin", "erin@example.com", NEW_PASSWORD).await;
    assert!(
        !sets_session(response.headers()),
        "session before verification"
    );
    let page = Page::of(response).await;
    assert_eq!(page.status, 200, "{}", page.html);
    assert!(page.text().contains("Check your e-mail"), "{}", page.html);
    let account = browser.get(app.url("/account")).send().await.unwrap();
    assert_redirect_to(&account, "/login");
    assert!(!user(&app, "erin").await.expect("erin was created").verified);

    // Cannot sign in before verifying.
    let other = app.new_browser();
    let response = sign_in(&app, &other, "erin", NEW_PASSWORD).await;
    assert!(!sets_session(response.headers()));
    assert!(!response.status().is_redirection());

    let token = verification_token(&app, "erin@example.com").await;
    let page = get_page(&other, &app.url(&format!("/verify-email?token={token}"))).await;
    assert_eq!(page.status, 200, "{}", page.html);
    signed_in(&app, "erin", NEW_PASSWORD).await;
}

#[tokio::test]
async fn closed_registration_hides_the_pages_the_link_and_prompt_create() {
    let app = spawn_app_with(options_with("\n[accounts]\nallow_registration = false\n")).await;
    let browser = app.new_browser();
    for path in ["/register", "/register?req=abc"] {
        let page = get_page(&browser, &app.url(path)).await;
        assert_eq!(page.status, 404, "GET {path}: {}", page.html);
        assert!(!page.has_input("password"));
    }
    // A form posted anyway (with a token the browser did get elsewhere).
    let login = get_page(&browser, &app.url("/login")).await;
    assert_eq!(login.status, 200);
    let response = browser
        .post(app.url("/register"))
        .form(&[
            ("csrf_token", login.csrf().as_str()),
            ("username", "mallory"),
            ("email", "mallory@example.com"),
            ("name", ""),
            ("password", NEW_PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert!(!sets_session(response.headers()));
    assert!(user(&app, "mallory").await.is_none());

    assert!(!login.html.contains("/register"), "{}", login.html);
    assert!(
        login.html.contains("href=\"/forgot-password\""),
        "{}",
        login.html
    );

    let discovery = app.get_json("/.well-known/openid-configuration").await;
    let prompts = discovery["prompt_values_supported"].as_array().unwrap();
    assert!(!prompts.iter().any(|p| p == "create"), "{prompts:?}");

    // prompt=create does not lead to a sign-up page.
    let response = browser
        .get(app.url(&format!(
            "/authorize?response_type=code&client_id={CLIENT}&redirect_uri={REDIRECT}&scope=openid&state=st&prompt=create"
        )))
        .send()
        .await
        .unwrap();
    if response.status().is_redirection() {
        assert!(!location(&response).starts_with("/register"));
    }
}

#[tokio::test]
async fn the_login_page_links_to_sign_up_and_password_reset_and_discovery_offers_create() {
    let app = spawn_flow_app().await;
    let browser = app.new_browser();
    let login = get_page(&browser, &app.url("/login")).await;
    assert_eq!(login.status, 200);
    assert!(login.html.contains("href=\"/register\""), "{}", login.html);
    assert!(
        login.html.contains("href=\"/forgot-password\""),
        "{}",
        login.html
    );

    // From an authorization request, the sign-up link carries it along.
    let response = browser
        .get(app.url(&format!(
            "/authorize?response_type=code&client_id={CLIENT}&redirect_uri={REDIRECT}&scope=openid&state=st"
        )))
        .send()
        .await
        .unwrap();
    let to_login = location(&response);
    let req = to_login.strip_prefix("/login?req=").expect("to login");
    let login = get_page(&browser, &app.url(&to_login)).await;
    assert!(
        login
            .text()
            .contains(&format!("href=\"/register?req={req}\"")),
        "{}",
        login.html
    );

    let discovery = app.get_json("/.well-known/openid-configuration").await;
    let prompts = discovery["prompt_values_supported"].as_array().unwrap();
    assert!(prompts.iter().any(|p| p == "create"), "{prompts:?}");
}

// ---- CSRF ----------------------------------------------------------------------------

#[tokio::test]
async fn forms_without_this_browsers_csrf_token_have_expired() {
    let app = spawn_flow_app().await;
    let a = app.new_browser();
    let b = app.new_browser();

    // /register: no token, and the other browser's token.
    let a_page = get_page(&a, &app.url("/register")).await;
    let b_page = get_page(&b, &app.url("/register")).await;
    assert_ne!(a_page.csrf(), b_page.csrf());
    let fields = [
        ("username", "mallory"),
        ("email", "mallory@example.com"),
        ("name", ""),
        ("password", NEW_PASSWORD),
    ];
    let b_csrf = b_page.csrf();
    for (what, token) in [("no token", None), ("other browser's token", Some(&b_csrf))] {
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        if let Some(t) = token {
            form.push(("csrf_token", t));
        }
        let response = a
            .post(app.url("/register"))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert!(!sets_session(response.headers()), "{what}");
        let page = Page::of(response).await;
        assert_eq!(page.status, 400, "{what}: {}", page.html);
        assert!(
            page.text().contains("This form has expired"),
            "{what}: {}",
            page.html
        );
        assert_page_headers(&page, what);
    }
    // A token for another form (the login page's) does not work either.
    let login = get_page(&a, &app.url("/login")).await;
    let mut form: Vec<(&str, &str)> = fields.to_vec();
    let login_csrf = login.csrf();
    form.push(("csrf_token", &login_csrf));
    let page = Page::of(
        a.post(app.url("/register"))
            .form(&form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(page.status, 400, "{}", page.html);
    assert!(page.text().contains("This form has expired"));
    assert!(user(&app, "mallory").await.is_none());

    // /forgot-password.
    let b_forgot = get_page(&b, &app.url("/forgot-password")).await;
    get_page(&a, &app.url("/forgot-password")).await;
    let page = Page::of(
        a.post(app.url("/forgot-password"))
            .form(&[
                ("csrf_token", b_forgot.csrf().as_str()),
                ("email", "alice@example.com"),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(page.status, 400, "{}", page.html);
    assert!(page.text().contains("This form has expired"));

    // /reset-password, with a live token.
    let token = reset_token(&app, "alice@example.com").await;
    let reset_url = app.url(&format!("/reset-password?token={token}"));
    let b_reset = get_page(&b, &reset_url).await;
    assert_eq!(get_page(&a, &reset_url).await.status, 200);
    let page = Page::of(
        a.post(app.url("/reset-password"))
            .form(&[
                ("csrf_token", b_reset.csrf().as_str()),
                ("token", token.as_str()),
                ("password", NEW_PASSWORD),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(page.status, 400, "{}", page.html);
    assert!(page.text().contains("This form has expired"));
    assert_eq!(get_page(&a, &reset_url).await.status, 200, "token used up");
    // The old password still works (nothing was reset).
    let a = signed_in(&app, USER, PASSWORD).await;

    // /account: signed in in both browsers as alice, but the token is per session.
    let b = signed_in(&app, USER, PASSWORD).await;
    let b_account = get_page(&b, &app.url("/account")).await;
    assert_eq!(get_page(&a, &app.url("/account")).await.status, 200);
    let page = Page::of(
        a.post(app.url("/account"))
            .form(&[
                ("csrf_token", b_account.csrf().as_str()),
                ("action", "profile"),
                ("email", "alice@example.com"),
                ("name", "Mallory"),
                ("given_name", ""),
                ("family_name", ""),
                ("picture", ""),
                ("locale", ""),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(page.status, 400, "{}", page.html);
    assert!(page.text().contains("This form has expired"));
    let page = Page::of(
        a.post(app.url("/account"))
            .form(&[
                ("action", "password"),
                ("current_password", PASSWORD),
                ("new_password", NEW_PASSWORD),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(page.status, 400, "{}", page.html);
    assert!(page.text().contains("This form has expired"));
    let account = get_page(&a, &app.url("/account")).await;
    assert_eq!(
        input_value(&account.html, "name").as_deref(),
        Some("Alice Example")
    );
    signed_in(&app, USER, PASSWORD).await;
}

// ---- password reset ------------------------------------------------------------------

#[tokio::test]
async fn forgot_password_answers_the_same_and_mails_only_real_accounts() {
    let app = spawn_flow_app().await;
    let browser = app.new_browser();
    let page = get_page(&browser, &app.url("/forgot-password")).await;
    assert_eq!(page.status, 200);
    assert_page_headers(&page, "forgot-password");
    assert!(page.has_input("csrf_token") && page.has_input("email"));

    let mut bodies = Vec::new();
    for email in ["nobody@example.com", "alice@example.com"] {
        let page = get_page(&browser, &app.url("/forgot-password")).await;
        let response = Page::of(
            browser
                .post(app.url("/forgot-password"))
                .form(&[("csrf_token", page.csrf().as_str()), ("email", email)])
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(response.status, 200, "{email}: {}", response.html);
        assert!(
            response.text().contains("Check your e-mail"),
            "{}",
            response.html
        );
        bodies.push(response.html.replace(email, "EMAIL"));
    }
    assert_eq!(bodies[0], bodies[1], "the answer tells addresses apart");

    let mail = wait_for_mail(&app, "alice@example.com", "Reset").await;
    link_token(&app, &mail, "/reset-password");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        outbox(&app).iter().all(|m| m.to != "nobody@example.com"),
        "{:#?}",
        outbox(&app)
    );
    assert_eq!(outbox(&app).len(), 1);

    // Not an address at all: the form again, with a message on the field.
    let page = get_page(&browser, &app.url("/forgot-password")).await;
    let response = Page::of(
        browser
            .post(app.url("/forgot-password"))
            .form(&[
                ("csrf_token", page.csrf().as_str()),
                ("email", "not an address"),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(response.status, 400, "{}", response.html);
    assert!(response.field_error("email").is_some(), "{}", response.html);
    assert_eq!(
        input_value(&response.html, "email").as_deref(),
        Some("not an address")
    );
}

#[tokio::test]
async fn reset_password_page_shows_a_form_only_for_a_live_token() {
    let app = spawn_flow_app().await;
    let browser = app.new_browser();
    for bad in [
        "/reset-password".to_string(),
        "/reset-password?token=".to_string(),
        "/reset-password?token=abc".to_string(),
        format!("/reset-password?token={}", "A".repeat(43)),
    ] {
        let page = get_page(&browser, &app.url(&bad)).await;
        assert_eq!(page.status, 400, "{bad}: {}", page.html);
        assert!(!page.has_input("password"), "{bad}");
        assert_page_headers(&page, &bad);
    }
    // A verification token is not a reset token.
    sign_up(
        &app,
        &app.new_browser(),
        "frank",
        "frank@example.com",
        NEW_PASSWORD,
    )
    .await;
    let verify = verification_token(&app, "frank@example.com").await;
    let page = get_page(
        &browser,
        &app.url(&format!("/reset-password?token={verify}")),
    )
    .await;
    assert_eq!(page.status, 400, "{}", page.html);

    let token = reset_token(&app, "alice@example.com").await;
    let page = get_page(
        &browser,
        &app.url(&format!("/reset-password?token={token}")),
    )
    .await;
    assert_eq!(page.status, 200, "{}", page.html);
    assert_page_headers(&page, "reset-password");
    assert_eq!(
        hidden_input(&page.html, "token").as_deref(),
        Some(token.as_str())
    );
    assert!(page.has_input("csrf_token") && page.has_input("password"));
}

#[tokio::test]
async fn reset_password_rejects_weak_passwords_then_sets_the_new_one_and_ends_sessions() {
    let app = spawn_flow_app().await;
    // A session from before the reset.
    let before = signed_in(&app, USER, PASSWORD).await;
    assert_eq!(get_page(&before, &app.url("/account")).await.status, 200);

    let token = reset_token(&app, "alice@example.com").await;
    let browser = app.new_browser();
    let reset_url = app.url(&format!("/reset-password?token={token}"));
    let mut page = get_page(&browser, &reset_url).await;
    assert_eq!(page.status, 200, "{}", page.html);
    for weak in ["password123", "short"] {
        page = Page::of(
            browser
                .post(app.url("/reset-password"))
                .form(&[
                    ("csrf_token", page.csrf().as_str()),
                    ("token", hidden_input(&page.html, "token").unwrap().as_str()),
                    ("password", weak),
                ])
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(page.status, 400, "{weak}: {}", page.html);
        assert!(
            page.field_error("password").is_some(),
            "{weak}: {}",
            page.html
        );
        assert!(!page.html.contains(weak), "{weak} came back");
        assert_eq!(
            hidden_input(&page.html, "token").as_deref(),
            Some(token.as_str())
        );
    }
    // Still usable.
    assert_eq!(get_page(&browser, &reset_url).await.status, 200);
    signed_in(&app, USER, PASSWORD).await;

    let csrf = page.csrf();
    let form = [
        ("csrf_token", csrf.as_str()),
        ("token", token.as_str()),
        ("password", NEW_PASSWORD),
    ];
    let done = Page::of(
        browser
            .post(app.url("/reset-password"))
            .form(&form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(done.status, 200, "{}", done.html);
    assert!(
        done.text().contains("password was changed"),
        "{}",
        done.html
    );
    assert_page_headers(&done, "reset done");

    // The token is used up.
    let page = get_page(&browser, &reset_url).await;
    assert_eq!(page.status, 400, "{}", page.html);
    let replay = Page::of(
        browser
            .post(app.url("/reset-password"))
            .form(&[
                ("csrf_token", csrf.as_str()),
                ("token", token.as_str()),
                ("password", OTHER_PASSWORD),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(replay.status, 400, "{}", replay.html);

    // The session from before no longer reaches the account page.
    let response = before.get(app.url("/account")).send().await.unwrap();
    assert_redirect_to(&response, "/login");
    // Old password out, new one in (and not the one the replay tried).
    let other = app.new_browser();
    let response = sign_in(&app, &other, USER, PASSWORD).await;
    assert!(!sets_session(response.headers()));
    let page = Page::of(response).await;
    assert!(
        page.text().contains("Incorrect username or password."),
        "{}",
        page.html
    );
    let response = sign_in(&app, &other, USER, OTHER_PASSWORD).await;
    assert!(!sets_session(response.headers()));
    signed_in(&app, USER, NEW_PASSWORD).await;
}

// ---- the account page ----------------------------------------------------------------

#[tokio::test]
async fn account_page_needs_a_session_and_sign_in_lands_there() {
    let app = spawn_flow_app().await;
    let browser = app.new_browser();
    let response = browser.get(app.url("/account")).send().await.unwrap();
    assert_redirect_to(&response, "/login");
    let response = browser
        .post(app.url("/account"))
        .form(&[("action", "profile"), ("name", "x")])
        .send()
        .await
        .unwrap();
    assert_redirect_to(&response, "/login");

    let response = sign_in(&app, &browser, USER, PASSWORD).await;
    assert_redirect_to(&response, "/account");
    assert!(sets_session(response.headers()));
    let page = get_page(&browser, &app.url("/account")).await;
    assert_eq!(page.status, 200, "{}", page.html);
    assert_page_headers(&page, "account");
    assert!(page.has_action("profile"), "{}", page.html);
    assert!(page.has_action("password"), "{}", page.html);
    assert!(
        !page.has_action("verification"),
        "alice is verified: {}",
        page.html
    );
    for name in [
        "csrf_token",
        "email",
        "name",
        "given_name",
        "family_name",
        "picture",
        "locale",
        "current_password",
        "new_password",
    ] {
        assert!(page.has_input(name), "no {name} on /account");
    }
    assert_eq!(
        input_value(&page.html, "email").as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(
        input_value(&page.html, "name").as_deref(),
        Some("Alice Example")
    );
    assert_eq!(
        input_value(&page.html, "given_name").as_deref(),
        Some("Alice")
    );
    assert_eq!(
        input_value(&page.html, "family_name").as_deref(),
        Some("Example")
    );
    assert!(!page.html.contains(PASSWORD));

    // An unknown or missing action is a bad request.
    for action in ["delete-everything", ""] {
        let page = account_post(&app, &browser, action, &[]).await;
        assert_eq!(page.status, 400, "action {action:?}: {}", page.html);
    }
}

#[tokio::test]
async fn account_profile_saves_and_rejects_bad_values() {
    let app = spawn_app_with(options_with(
        r#"
[[users]]
username = "bob"
email = "bob@example.com"
password = "another long password"
"#,
    ))
    .await;
    let browser = signed_in(&app, USER, PASSWORD).await;
    let page = save_profile(
        &app,
        &browser,
        &[
            ("name", "Alice Liddell"),
            ("family_name", "Liddell"),
            ("picture", "https://img.example/alice.png"),
            ("locale", "en-GB"),
        ],
    )
    .await;
    assert_eq!(page.status, 200, "{}", page.html);
    assert!(page.text().contains("Profile saved."), "{}", page.html);
    assert!(!page.text().contains("verification link"), "{}", page.html);
    assert_page_headers(&page, "profile saved");
    let saved = get_page(&browser, &app.url("/account")).await;
    for (field, value) in [
        ("email", "alice@example.com"),
        ("name", "Alice Liddell"),
        ("given_name", "Alice"),
        ("family_name", "Liddell"),
        ("picture", "https://img.example/alice.png"),
        ("locale", "en-GB"),
    ] {
        assert_eq!(
            input_value(&saved.html, field).as_deref(),
            Some(value),
            "{field}"
        );
    }

    // Bad picture and locale: 400, messages on both fields, nothing saved.
    let page = save_profile(
        &app,
        &browser,
        &[
            ("name", "Mad Hatter"),
            ("picture", "javascript:alert(1)"),
            ("locale", "not a locale"),
        ],
    )
    .await;
    assert_eq!(page.status, 400, "{}", page.html);
    let mut errors = page.field_errors();
    errors.sort();
    assert_eq!(errors, ["locale", "picture"], "{}", page.html);
    assert!(!page.text().contains("Profile saved."));
    let after = get_page(&browser, &app.url("/account")).await;
    assert_eq!(
        input_value(&after.html, "name").as_deref(),
        Some("Alice Liddell")
    );
    assert_eq!(
        input_value(&after.html, "picture").as_deref(),
        Some("https://img.example/alice.png")
    );
    assert_eq!(input_value(&after.html, "locale").as_deref(), Some("en-GB"));

    // Other bad values, one at a time.
    for (field, value) in [
        ("picture", "ftp://img.example/a.png"),
        ("picture", "/relative.png"),
        ("locale", "e"),
        ("email", "nope"),
        ("family_name", "a\u{0}b"),
    ] {
        let page = save_profile(&app, &browser, &[(field, value)]).await;
        assert_eq!(page.status, 400, "{field}={value:?}: {}", page.html);
        assert_eq!(
            page.field_errors(),
            [field],
            "{field}={value:?}: {}",
            page.html
        );
    }
    // Another account's address, like any new one, needs the current password first
    // (whether it is taken is never said: see account_security).
    let page = save_profile(&app, &browser, &[("email", "bob@example.com")]).await;
    assert_eq!(page.status, 400, "{}", page.html);
    assert_eq!(page.field_errors(), ["email_password"], "{}", page.html);
    let after = get_page(&browser, &app.url("/account")).await;
    assert_eq!(
        input_value(&after.html, "email").as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(
        input_value(&after.html, "family_name").as_deref(),
        Some("Liddell")
    );

    // An empty field clears it.
    let page = save_profile(&app, &browser, &[("given_name", ""), ("picture", "")]).await;
    assert_eq!(page.status, 200, "{}", page.html);
    let after = get_page(&browser, &app.url("/account")).await;
    assert_eq!(input_value(&after.html, "given_name"), None);
    assert_eq!(input_value(&after.html, "picture"), None);
    assert_eq!(
        input_value(&after.html, "name").as_deref(),
        Some("Alice Liddell")
    );
    let row = user(&app, USER).await.unwrap();
    assert_eq!(row.email, "alice@example.com");
    assert!(row.verified);
}

#[tokio::test]
async fn account_email_change_waits_for_the_link_mailed_to_the_new_address() {
    let app = spawn_flow_app().await;
    let browser = signed_in(&app, USER, PASSWORD).await;
    let fields = |password: &'static str| {
        [
            ("email", "Alice@New.Example"),
            ("name", "Alice Example"),
            ("given_name", "Alice"),
            ("family_name", "Example"),
            ("picture", ""),
            ("locale", ""),
            ("email_password", password),
        ]
    };
    // Without the current password: refused, nothing changes, nothing is mailed.
    let page = account_post(&app, &browser, "profile", &fields("")).await;
    assert_eq!(page.status, 400, "{}", page.html);
    assert_eq!(page.field_errors(), ["email_password"], "{}", page.html);
    let page = account_post(&app, &browser, "profile", &fields(PASSWORD)).await;
    assert_eq!(page.status, 200, "{}", page.html);
    assert!(page.text().contains("Profile saved."), "{}", page.html);
    assert!(page.text().contains("alice@new.example"), "{}", page.html);
    let row = user(&app, USER).await.unwrap();
    assert_eq!(
        row.email, "alice@example.com",
        "the address waits for its link"
    );
    assert!(row.verified);
    let token = verification_token(&app, "alice@new.example").await;
    // No verification link went to the old address (it was told, without a link).
    assert!(mails_to(&app, "alice@example.com", "Verify").is_empty());

    let page = get_page(&browser, &app.url(&format!("/verify-email?token={token}"))).await;
    assert_eq!(page.status, 200, "{}", page.html);
    let row = user(&app, USER).await.unwrap();
    assert_eq!(row.email, "alice@new.example");
    assert!(row.verified);
    let account = get_page(&browser, &app.url("/account")).await;
    assert!(!account.text().contains("not verified"));
    // The new address signs in.
    signed_in(&app, "alice@new.example", PASSWORD).await;
}

#[tokio::test]
async fn account_password_change_needs_the_current_password_and_a_strong_new_one() {
    let app = spawn_flow_app().await;
    let browser = signed_in(&app, USER, PASSWORD).await;
    let page = account_post(
        &app,
        &browser,
        "password",
        &[
            ("username", USER),
            ("current_password", "not my password"),
            ("new_password", NEW_PASSWORD),
        ],
    )
    .await;
    assert_eq!(page.status, 400, "{}", page.html);
    assert_eq!(page.field_errors(), ["current_password"], "{}", page.html);
    assert!(!page.html.contains(NEW_PASSWORD));

    let page = account_post(
        &app,
        &browser,
        "password",
        &[
            ("username", USER),
            ("current_password", PASSWORD),
            ("new_password", "password123"),
        ],
    )
    .await;
    assert_eq!(page.status, 400, "{}", page.html);
    assert_eq!(page.field_errors(), ["new_password"], "{}", page.html);
    signed_in(&app, USER, PASSWORD).await;

    let page = account_post(
        &app,
        &browser,
        "password",
        &[
            ("username", USER),
            ("current_password", PASSWORD),
            ("new_password", NEW_PASSWORD),
        ],
    )
    .await;
    assert_eq!(page.status, 200, "{}", page.html);
    assert!(page.text().contains("Password changed."), "{}", page.html);
    assert!(!page.html.contains(NEW_PASSWORD) && !page.html.contains(PASSWORD));

    let other = app.new_browser();
    let response = sign_in(&app, &other, USER, PASSWORD).await;
    assert!(
        !sets_session(response.headers()),
        "the old password still works"
    );
    signed_in(&app, USER, NEW_PASSWORD).await;
}

#[tokio::test]
async fn account_wrong_current_passwords_are_limited() {
    let app = spawn_flow_app().await;
    let browser = signed_in(&app, USER, PASSWORD).await;
    for i in 0..5 {
        let page = account_post(
            &app,
            &browser,
            "password",
            &[
                ("username", USER),
                ("current_password", &format!("wrong password {i}")),
                ("new_password", NEW_PASSWORD),
            ],
        )
        .await;
        assert_eq!(page.status, 400, "attempt {i}: {}", page.html);
        assert!(page.field_error("current_password").is_some());
    }
    let page = account_post(
        &app,
        &browser,
        "password",
        &[
            ("username", USER),
            ("current_password", PASSWORD),
            ("new_password", NEW_PASSWORD),
        ],
    )
    .await;
    assert_eq!(page.status, 429, "{}", page.html);
    assert!(!page.text().contains("Password changed."), "{}", page.html);
    assert!(
        page.headers.contains_key("retry-after"),
        "{:?}",
        page.headers
    );
    assert_page_headers(&page, "account 429");
}

// ---- per-IP request limit ------------------------------------------------------------

fn limited_options() -> Options {
    options_with("\n[ratelimit]\nrequests_per_minute_per_ip = 2\n")
}

#[tokio::test]
async fn request_limit_per_ip_applies_to_sign_up() {
    let app = spawn_app_with(limited_options()).await;
    let browser = app.new_browser();
    for i in 0..2 {
        let page = Page::of(sign_up(&app, &browser, "x", "bad", "short").await).await;
        assert_eq!(page.status, 400, "attempt {i}: {}", page.html);
    }
    let response = sign_up(&app, &browser, "grace", "grace@example.com", NEW_PASSWORD).await;
    assert!(!sets_session(response.headers()));
    let page = Page::of(response).await;
    assert_rate_limited(&page, "POST /register");
    // The form comes back with what was typed.
    assert!(page.has_input("csrf_token"), "{}", page.html);
    assert_eq!(
        input_value(&page.html, "username").as_deref(),
        Some("grace")
    );
    assert!(user(&app, "grace").await.is_none());
}

#[tokio::test]
async fn request_limit_per_ip_applies_to_forgot_password() {
    let app = spawn_app_with(limited_options()).await;
    let browser = app.new_browser();
    let mut statuses = Vec::new();
    let mut last = None;
    for email in [
        "nobody@example.com",
        "alice@example.com",
        "alice@example.com",
    ] {
        let page = get_page(&browser, &app.url("/forgot-password")).await;
        let page = Page::of(
            browser
                .post(app.url("/forgot-password"))
                .form(&[("csrf_token", page.csrf().as_str()), ("email", email)])
                .send()
                .await
                .unwrap(),
        )
        .await;
        statuses.push(page.status.as_u16());
        last = Some(page);
    }
    assert_eq!(statuses, [200, 200, 429]);
    let page = last.unwrap();
    assert_rate_limited(&page, "POST /forgot-password");
    assert!(page.has_input("email"), "{}", page.html);
    // Only the one allowed request for alice mailed her.
    wait_for_mail(&app, "alice@example.com", "Reset").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(mails_to(&app, "alice@example.com", "Reset").len(), 1);
}

#[tokio::test]
async fn request_limit_per_ip_applies_to_reset_password() {
    let app = spawn_app_with(limited_options()).await;
    let token = reset_token(&app, "alice@example.com").await; // request 1
    let browser = app.new_browser();
    let reset_url = app.url(&format!("/reset-password?token={token}"));
    let page = get_page(&browser, &reset_url).await;
    let weak = Page::of(
        browser
            .post(app.url("/reset-password"))
            .form(&[
                ("csrf_token", page.csrf().as_str()),
                ("token", token.as_str()),
                ("password", "password123"),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await; // request 2
    assert_eq!(weak.status, 400, "{}", weak.html);
    let page = Page::of(
        browser
            .post(app.url("/reset-password"))
            .form(&[
                ("csrf_token", weak.csrf().as_str()),
                ("token", token.as_str()),
                ("password", NEW_PASSWORD),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_rate_limited(&page, "POST /reset-password");
    // Nothing changed: the token is still live and the old password still works.
    assert_eq!(get_page(&browser, &reset_url).await.status, 200);
    signed_in(&app, USER, PASSWORD).await;
}

#[tokio::test]
async fn request_limit_per_ip_applies_to_verify_email() {
    let mut options = limited_options();
    options.extra_toml.push_str(SIGN_IN_AT_ONCE);
    let app = spawn_app_with(options).await;
    let browser = app.new_browser();
    let response = sign_up(&app, &browser, "heidi", "heidi@example.com", NEW_PASSWORD).await; // 1
    assert_redirect_to(&response, "/account");
    let token = verification_token(&app, "heidi@example.com").await;
    let page = get_page(&browser, &app.url("/verify-email?token=garbage")).await; // 2
    assert_eq!(page.status, 400, "{}", page.html);
    let page = get_page(&browser, &app.url(&format!("/verify-email?token={token}"))).await;
    assert_rate_limited(&page, "GET /verify-email");
    assert!(!user(&app, "heidi").await.unwrap().verified);
}

// ---- prompt=create -------------------------------------------------------------------

#[tokio::test]
async fn prompt_create_signs_up_and_continues_the_authorization() {
    // Signed in right after sign-up: the opt-in mode.
    let app = spawn_signing_in_app().await;
    // Even while someone is signed in, prompt=create asks for a new account.
    let browser = signed_in(&app, USER, PASSWORD).await;
    let url = app.url(&format!(
        "/authorize?response_type=code&client_id=first&redirect_uri={REDIRECT}&scope=openid%20profile%20email&state=st&nonce=n1&prompt=create"
    ));
    let response = browser.get(&url).send().await.unwrap();
    assert!(response.status().is_redirection(), "{}", response.status());
    let to_register = location(&response);
    let req = to_register
        .strip_prefix("/register?req=")
        .unwrap_or_else(|| panic!("not sent to sign up: {to_register}"))
        .to_string();
    let page = get_page(&browser, &app.url(&to_register)).await;
    assert_eq!(page.status, 200);
    assert!(
        page.text().contains(&format!("href=\"/login?req={req}\"")),
        "the sign-in link loses the request: {}",
        page.html
    );

    // A bad sign-up keeps the request.
    let page = Page::of(
        register(
            &app,
            &browser,
            Some(&req),
            &[
                ("username", "ivan"),
                ("email", "ivan@example.com"),
                ("name", ""),
                ("password", "short"),
            ],
        )
        .await,
    )
    .await;
    assert_eq!(page.status, 400, "{}", page.html);
    assert_eq!(
        hidden_input(&page.html, "req").as_deref(),
        Some(req.as_str())
    );

    // First-party client: straight back to the client with a code.
    let response = register(
        &app,
        &browser,
        Some(&req),
        &[
            ("username", "ivan"),
            ("email", "ivan@example.com"),
            ("name", "Ivan Example"),
            ("password", NEW_PASSWORD),
        ],
    )
    .await;
    assert!(sets_session(response.headers()));
    let back = url::Url::parse(&location(&response)).unwrap();
    assert_eq!(back.as_str().split('?').next(), Some(REDIRECT));
    assert_eq!(query_param(&back, "state").as_deref(), Some("st"));
    assert_eq!(
        query_param(&back, "iss").as_deref(),
        Some(app.issuer.as_str())
    );
    let code = query_param(&back, "code").expect("code");
    let tokens: Value = app
        .token(
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
            ],
            Some(("first", CLIENT_SECRET)),
        )
        .await
        .json()
        .await
        .unwrap();
    let claims = jwt_claims(tokens["id_token"].as_str().expect("id_token"));
    let ivan = user(&app, "ivan").await.expect("ivan was created");
    let alice = user(&app, USER).await.unwrap();
    assert_eq!(claims["sub"], ivan.sub.as_str());
    assert_ne!(claims["sub"], alice.sub.as_str());
    assert_eq!(claims["preferred_username"], "ivan");
    assert_eq!(claims["email"], "ivan@example.com");
    assert_eq!(claims["email_verified"], false);
    assert_eq!(claims["name"], "Ivan Example");
    assert_eq!(claims["nonce"], "n1");

    // The browser is now Ivan's.
    let account = get_page(&browser, &app.url("/account")).await;
    assert_eq!(
        input_value(&account.html, "email").as_deref(),
        Some("ivan@example.com")
    );
    // The request was answered; it cannot be answered again.
    let page = get_page(&browser, &app.url(&to_register)).await;
    assert_ne!(page.status, 200, "{}", page.html);
}

#[tokio::test]
async fn prompt_none_with_create_is_invalid_request() {
    let app = spawn_flow_app().await;
    let response = app
        .http
        .get(app.url(&format!(
            "/authorize?response_type=code&client_id={CLIENT}&redirect_uri={REDIRECT}&scope=openid&state=st&prompt=none%20create"
        )))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_redirection(), "{}", response.status());
    let back = url::Url::parse(&location(&response)).unwrap();
    assert_eq!(back.as_str().split('?').next(), Some(REDIRECT));
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("invalid_request")
    );
    assert_eq!(query_param(&back, "state").as_deref(), Some("st"));
    assert_eq!(
        query_param(&back, "iss").as_deref(),
        Some(app.issuer.as_str())
    );
}

fn rp_http() -> openidconnect::reqwest::Client {
    openidconnect::reqwest::Client::builder()
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// One `prompt=create` round trip with the `openidconnect` crate and a third-party
/// client: sign-up, consent, code exchange with full ID-token verification.
#[tokio::test]
async fn openidconnect_rp_prompt_create_round_trip() {
    // Signed in right after sign-up: the opt-in mode.
    let app = spawn_signing_in_app().await;
    let http = rp_http();
    let metadata =
        CoreProviderMetadata::discover_async(IssuerUrl::new(app.issuer.clone()).unwrap(), &http)
            .await
            .expect("discovery");
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(CLIENT.to_string()),
        Some(ClientSecret::new(CLIENT_SECRET.to_string())),
    )
    .set_redirect_uri(RedirectUrl::new(REDIRECT.to_string()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, csrf, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .add_extra_param("prompt", "create")
        .set_pkce_challenge(challenge)
        .url();

    // The browser: authorize → sign-up → consent → back to the client.
    let browser = app.new_browser();
    let response = browser.get(auth_url.as_str()).send().await.unwrap();
    let to_register = location(&response);
    let req = to_register
        .strip_prefix("/register?req=")
        .unwrap_or_else(|| panic!("not sent to sign up: {to_register}"))
        .to_string();
    let response = register(
        &app,
        &browser,
        Some(&req),
        &[
            ("username", "judy"),
            ("email", "Judy@Example.com"),
            ("name", "Judy Example"),
            ("password", NEW_PASSWORD),
        ],
    )
    .await;
    assert!(sets_session(response.headers()));
    let to_consent = location(&response);
    assert!(to_consent.starts_with("/consent?req="), "{to_consent}");
    let consent = get_page(&browser, &app.url(&to_consent)).await;
    assert_eq!(consent.status, 200, "{}", consent.html);
    let response = browser
        .post(app.url("/consent"))
        .form(&[
            ("decision", "allow"),
            ("csrf_token", consent.csrf().as_str()),
            ("req", hidden_input(&consent.html, "req").unwrap().as_str()),
        ])
        .send()
        .await
        .unwrap();
    let back = url::Url::parse(&location(&response)).unwrap();
    assert_eq!(back.as_str().split('?').next(), Some(REDIRECT));
    assert_eq!(
        query_param(&back, "state").as_deref(),
        Some(csrf.secret().as_str())
    );
    let code = query_param(&back, "code").expect("code");

    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("code exchange");
    let id_token = tokens.id_token().expect("id_token");
    let claims = id_token
        .claims(&client.id_token_verifier(), &nonce)
        .expect("ID token verifies");
    assert_eq!(
        claims.preferred_username().map(|u| u.as_str()),
        Some("judy")
    );
    assert_eq!(claims.email().map(|e| e.as_str()), Some("judy@example.com"));
    assert_eq!(claims.email_verified(), Some(false));
    let judy = user(&app, "judy").await.expect("judy was created");
    assert_eq!(claims.subject().as_str(), judy.sub);
}

// ---- headers -------------------------------------------------------------------------

#[tokio::test]
async fn account_pages_carry_the_security_headers() {
    let app = spawn_flow_app().await;
    let browser = signed_in(&app, USER, PASSWORD).await;
    for path in [
        "/register",
        "/forgot-password",
        "/reset-password?token=nope",
        "/verify-email?token=nope",
        "/account",
        "/login",
    ] {
        let page = get_page(&browser, &app.url(path)).await;
        assert_page_headers(&page, path);
        let csp = page.headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
    }
    // Answers to posted forms too.
    let page = Page::of(sign_up(&app, &app.new_browser(), "x", "bad", "short").await).await;
    assert_eq!(page.status, 400);
    assert_page_headers(&page, "POST /register");
    let page = save_profile(&app, &browser, &[("locale", "?")]).await;
    assert_eq!(page.status, 400);
    assert_page_headers(&page, "POST /account");
    let page = Page::of(
        app.new_browser()
            .post(app.url("/forgot-password"))
            .form(&[("email", "alice@example.com")])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(page.status, 400);
    assert_page_headers(&page, "POST /forgot-password without a token");
}

// ---- more bad input and races --------------------------------------------------------

#[tokio::test]
async fn register_rejects_hostile_and_oversized_input_without_reflecting_it() {
    let app = spawn_flow_app().await;
    let browser = app.new_browser();
    let script = "<script>alert(1)</script>";
    let long = "a".repeat(300);
    let long_password = "x7$".repeat(50);
    let long_name = "N".repeat(200);
    let cases: [(&str, Form, &[&str]); 4] = [
        (
            "markup",
            [
                ("username", script),
                ("email", "\"><script>alert(2)</script>@example.com"),
                ("name", script),
                ("password", NEW_PASSWORD),
            ],
            &["email", "username"],
        ),
        (
            "oversized",
            [
                ("username", &long),
                ("email", &format!("{long}@example.com")),
                ("name", &long_name),
                ("password", &long_password),
            ],
            &["email", "name", "password", "username"],
        ),
        (
            "password equal to the username",
            [
                ("username", "kevin.long.name"),
                ("email", "kevin@example.com"),
                ("name", ""),
                ("password", "kevin.long.name"),
            ],
            &["password"],
        ),
        (
            "empty",
            [
                ("username", ""),
                ("email", ""),
                ("name", ""),
                ("password", ""),
            ],
            &["email", "password", "username"],
        ),
    ];
    for (what, fields, expected) in cases {
        let response = register(&app, &browser, None, &fields).await;
        assert!(!sets_session(response.headers()), "{what}");
        let page = Page::of(response).await;
        assert_eq!(page.status, 400, "{what}: {}", page.html);
        let mut errors = page.field_errors();
        errors.sort();
        assert_eq!(errors, expected, "{what}: {}", page.html);
        assert!(!page.html.contains("<script>"), "{what}: markup reflected");
    }
    // A field over the size any form parameter may have (4 KiB) is refused outright.
    let huge = "a".repeat(10_000);
    let response = register(
        &app,
        &browser,
        None,
        &[
            ("username", "lena"),
            ("email", "lena@example.com"),
            ("name", &huge),
            ("password", NEW_PASSWORD),
        ],
    )
    .await;
    assert!(!sets_session(response.headers()));
    assert_eq!(response.status(), 400);
    // Duplicate fields are not a form this page made.
    let page = get_page(&browser, &app.url("/register")).await;
    let csrf = page.csrf();
    let response = browser
        .post(app.url("/register"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("username", "lena"),
            ("username", "alice"),
            ("email", "lena@example.com"),
            ("name", ""),
            ("password", NEW_PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    // Nor is a JSON body.
    let response = browser
        .post(app.url("/register"))
        .json(&serde_json::json!({
            "csrf_token": csrf, "username": "lena", "email": "lena@example.com",
            "password": NEW_PASSWORD
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(!sets_session(response.headers()));
    assert_eq!(users(&app).await.len(), 1, "{:?}", users(&app).await);
}

#[tokio::test]
async fn usernames_are_taken_whatever_their_case() {
    // Signed in right after sign-up: the opt-in mode.
    let app = spawn_signing_in_app().await;
    let browser = app.new_browser();
    let page =
        Page::of(sign_up(&app, &browser, "ALICE", "upper@example.com", NEW_PASSWORD).await).await;
    assert_eq!(page.status, 400, "{}", page.html);
    assert_eq!(page.field_errors(), ["username"], "{}", page.html);
    // Surrounding spaces are trimmed, not part of the name.
    let response = sign_up(
        &app,
        &browser,
        "  mallory  ",
        "mallory@example.com",
        NEW_PASSWORD,
    )
    .await;
    assert_redirect_to(&response, "/account");
    assert!(
        user(&app, "mallory").await.is_some(),
        "{:?}",
        users(&app).await
    );
}

#[tokio::test]
async fn concurrent_sign_ups_for_one_username_or_address_create_one_account() {
    let app = spawn_flow_app().await;
    let (a, b) = (app.new_browser(), app.new_browser());
    let (ra, rb) = tokio::join!(
        sign_up(&app, &a, "nina", "nina.a@example.com", NEW_PASSWORD),
        sign_up(&app, &b, "nina", "nina.b@example.com", NEW_PASSWORD),
    );
    let mut statuses = [ra.status().as_u16(), rb.status().as_u16()];
    statuses.sort();
    // Verification first: the winner sees "Check your e-mail" (200).
    assert_eq!(statuses, [200, 400], "same username at once");
    let loser = if ra.status() == 400 { ra } else { rb };
    let page = Page::of(loser).await;
    assert_eq!(page.field_errors(), ["username"], "{}", page.html);
    assert_eq!(users(&app).await.len(), 2);

    let (c, d) = (app.new_browser(), app.new_browser());
    let (rc, rd) = tokio::join!(
        sign_up(&app, &c, "oscar1", "oscar@example.com", NEW_PASSWORD),
        sign_up(&app, &d, "oscar2", "oscar@example.com", NEW_PASSWORD),
    );
    let mut statuses = [rc.status().as_u16(), rd.status().as_u16()];
    statuses.sort();
    // A new address and one in use answer alike.
    assert_eq!(statuses, [200, 200], "same address at once");
    let all = users(&app).await;
    assert_eq!(all.len(), 3, "{all:?}");
    assert_eq!(
        all.iter()
            .filter(|u| u.email == "oscar@example.com")
            .count(),
        1
    );
}

#[tokio::test]
async fn a_reset_link_submitted_twice_at_once_changes_the_password_once() {
    let app = spawn_flow_app().await;
    let token = reset_token(&app, "alice@example.com").await;
    let url = app.url(&format!("/reset-password?token={token}"));
    let (a, b) = (app.new_browser(), app.new_browser());
    let (pa, pb) = (get_page(&a, &url).await, get_page(&b, &url).await);
    let post = |browser: &Browser, page: &Page, password: &'static str| {
        browser
            .post(app.url("/reset-password"))
            .form(&[
                ("csrf_token", page.csrf()),
                ("token", token.clone()),
                ("password", password.to_string()),
            ])
            .send()
    };
    let (ra, rb) = tokio::join!(post(&a, &pa, NEW_PASSWORD), post(&b, &pb, OTHER_PASSWORD));
    let (ra, rb) = (ra.unwrap().status(), rb.unwrap().status());
    let mut statuses = [ra.as_u16(), rb.as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 400]);
    let (winner, loser) = if ra == 200 {
        (NEW_PASSWORD, OTHER_PASSWORD)
    } else {
        (OTHER_PASSWORD, NEW_PASSWORD)
    };
    signed_in(&app, USER, winner).await;
    let response = sign_in(&app, &app.new_browser(), USER, loser).await;
    assert!(!sets_session(response.headers()), "both passwords were set");
}

#[tokio::test]
async fn a_verification_link_for_a_replaced_address_verifies_nothing() {
    // Signed in right after sign-up: the opt-in mode.
    let app = spawn_signing_in_app().await;
    let browser = app.new_browser();
    let response = sign_up(&app, &browser, "paul", "paul@old.example", NEW_PASSWORD).await;
    assert_redirect_to(&response, "/account");
    let old = verification_token(&app, "paul@old.example").await;
    let page = account_post(
        &app,
        &browser,
        "profile",
        &[
            ("email", "paul@new.example"),
            ("name", ""),
            ("given_name", ""),
            ("family_name", ""),
            ("picture", ""),
            ("locale", ""),
            ("email_password", NEW_PASSWORD),
        ],
    )
    .await;
    assert_eq!(page.status, 200, "{}", page.html);
    // The new address's link applies it, verified.
    let new = verification_token(&app, "paul@new.example").await;
    let page = get_page(
        &app.new_browser(),
        &app.url(&format!("/verify-email?token={new}")),
    )
    .await;
    assert_eq!(page.status, 200, "{}", page.html);
    let row = user(&app, "paul").await.unwrap();
    assert_eq!(row.email, "paul@new.example");
    assert!(row.verified);
    // The old address's link does nothing any more.
    let page = get_page(
        &app.new_browser(),
        &app.url(&format!("/verify-email?token={old}")),
    )
    .await;
    assert_eq!(page.status, 400, "{}", page.html);
    assert_eq!(user(&app, "paul").await.unwrap().email, "paul@new.example");
}

#[tokio::test]
async fn a_disabled_user_loses_the_account_page_and_gets_no_reset_mail() {
    let app = spawn_flow_app().await;
    let browser = signed_in(&app, USER, PASSWORD).await;
    assert_eq!(app.cli(&["user", "disable", USER]).await.code(), 0);
    let response = browser.get(app.url("/account")).send().await.unwrap();
    assert_redirect_to(&response, "/login");

    let forgot = app.new_browser();
    let page = get_page(&forgot, &app.url("/forgot-password")).await;
    let response = Page::of(
        forgot
            .post(app.url("/forgot-password"))
            .form(&[
                ("csrf_token", page.csrf().as_str()),
                ("email", "alice@example.com"),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.html);
    assert!(response.text().contains("Check your e-mail"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(outbox(&app).is_empty(), "{:#?}", outbox(&app));
}
