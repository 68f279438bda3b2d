//! The audit trail, read back the way an operator reads it: `oxidp audit tail --json`
//! (the real binary, on the test's database). Sign-ins at the password grant and on the
//! login page, rate-limit lock-outs, tokens issued and refused, consent, logout and the
//! account API each leave an event with the request's context (end-user IP, user agent,
//! request id) and never a password, token or code. Events are written by a background
//! writer in batches, so every check polls the trail until the event is there.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::decode_quoted_printable;
use crate::helpers::jwt_claims;
use crate::helpers::{
    CLIENT, CLIENT_SECRET, Options, PASSWORD, REDIRECT, TestApp, USER, flow_options, query_param,
    run_binary, spawn_app_with,
};

/// A first-party client with the password and refresh grants (the frontend's server).
const FP: &str = "frontend";
/// A service client (client credentials).
const SVC: &str = "svc";
const SVC_SECRET: &str = "svc-secret-that-is-long-enough-0123456789";
/// The end-user IP the first-party client asserts in `x-end-user-ip`.
const END_USER_IP: &str = "203.0.113.7";
const AGENT: &str = "audit-test-agent/1.0 (+https://rp.example/agent)";
/// A wrong password for alice (long enough to be a plausible password).
const WRONG: &str = "wrong-password-for-alice-7391";
/// A username naming no account: it looks like a password typed into the wrong field.
const UNKNOWN: &str = "Zq8-typed-into-the-username-field-4406";
const UNKNOWN_PASSWORD: &str = "password-of-nobody-at-all-5512";
/// Passwords that pass every rule (length, not the username, not guessable).
const STRONG: &str = "quiet meadow lantern 42";
const STRONGER: &str = "amber harbour violin 77";
const AFTER_RESET: &str = "copper lighthouse sparrow 19";
/// How long the writer may take before an event counts as missing.
const WAIT: Duration = Duration::from_secs(10);

/// `flow_options()` plus the frontend and service clients; `ratelimit` goes into the
/// `[ratelimit]` table (which asserts the end-user IP in `x-end-user-ip` and leaves
/// room for many account-API requests from 127.0.0.1), `extra` is appended as is.
fn options(ratelimit: &str, extra: &str) -> Options {
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
scopes = ["api:read", "api:write"]

[ratelimit]
client_ip_header = "x-end-user-ip"
requests_per_minute_per_ip = 1000
{ratelimit}

{extra}
"#
    ));
    options
}

async fn spawn() -> TestApp {
    spawn_app_with(options("", "")).await
}

// ---------------------------------------------------------------------------------
// Reading the trail

/// What `oxidp audit tail --json` printed: the raw text and the parsed events.
struct Trail {
    stdout: String,
    events: Vec<Value>,
}

impl Trail {
    fn of_type(&self, kind: &str) -> Vec<&Value> {
        self.events.iter().filter(|e| e["type"] == kind).collect()
    }

    fn with_request_id(&self, kind: &str, request_id: &str) -> Option<&Value> {
        self.events
            .iter()
            .find(|e| e["type"] == kind && e["request_id"] == request_id)
    }
}

/// `oxidp audit tail --json -n 200 <args>`; every line must be one well-formed event.
async fn tail(app: &TestApp, args: &[&str]) -> Trail {
    let mut full = vec!["audit", "tail", "--json", "-n", "200"];
    full.extend_from_slice(args);
    let out = app.cli(&full).await;
    assert_eq!(out.code(), 0, "oxidp {full:?}: {}", out.stderr);
    let events: Vec<Value> = out
        .stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
        })
        .collect();
    for event in &events {
        assert_well_formed(event);
    }
    Trail {
        stdout: out.stdout,
        events,
    }
}

/// Polls the trail every 100 ms until `done` holds for it (at most `WAIT`).
async fn wait_until(app: &TestApp, what: &str, done: impl Fn(&Trail) -> bool) -> Trail {
    let deadline = Instant::now() + WAIT;
    loop {
        let trail = tail(app, &[]).await;
        if done(&trail) {
            return trail;
        }
        if Instant::now() > deadline {
            panic!(
                "{what}: not in the audit trail within {WAIT:?}; the trail:\n{}",
                trail.stdout
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for the event of type `kind` recorded by the request with `request_id`.
async fn wait_for(app: &TestApp, kind: &str, request_id: &str) -> (Value, Trail) {
    let trail = wait_until(app, &format!("{kind} of request {request_id}"), |t| {
        t.with_request_id(kind, request_id).is_some()
    })
    .await;
    let event = trail.with_request_id(kind, request_id).unwrap().clone();
    (event, trail)
}

/// Waits for the first event of type `kind` for which `pick` holds.
async fn wait_for_event(app: &TestApp, kind: &str, pick: impl Fn(&Value) -> bool) -> Value {
    let trail = wait_until(app, kind, |t| t.of_type(kind).into_iter().any(&pick)).await;
    trail
        .of_type(kind)
        .into_iter()
        .find(|e| pick(e))
        .unwrap()
        .clone()
}

/// Events are written in the order they were recorded: once an event recorded after
/// every request so far is in the trail, so is everything those requests recorded.
/// The marker is a client-credentials token.
async fn barrier(app: &TestApp) -> Trail {
    let response = client_credentials(app, "api:write").await;
    assert_eq!(response.status(), 200);
    let request_id = request_id(&response);
    wait_for(app, "token.issued", &request_id).await.1
}

/// Every event has exactly the documented keys, with a numeric id, an RFC 3339 time
/// of the last minutes, an outcome and a JSON object as detail.
fn assert_well_formed(event: &Value) {
    let object = event
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {event}"));
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "actor",
            "client_id",
            "detail",
            "id",
            "ip",
            "outcome",
            "request_id",
            "subject",
            "time",
            "type",
            "user_agent"
        ],
        "{event}"
    );
    assert!(
        event["id"]
            .as_str()
            .is_some_and(|id| id.parse::<i64>().is_ok_and(|n| n > 0)),
        "id: {event}"
    );
    let time = event["time"].as_str().unwrap_or_default();
    let seconds = parse_rfc3339_utc(time).unwrap_or_else(|| panic!("time: {event}"));
    let now = oxidp::storage::unix_now();
    assert!(
        (now - 600..=now + 1).contains(&seconds),
        "time {time} is not now: {event}"
    );
    assert!(
        event["type"].as_str().is_some_and(|t| !t.is_empty()),
        "{event}"
    );
    assert!(
        event["outcome"] == "success" || event["outcome"] == "failure",
        "{event}"
    );
    assert!(event["detail"].is_object(), "detail: {event}");
    for key in [
        "actor",
        "subject",
        "client_id",
        "ip",
        "user_agent",
        "request_id",
    ] {
        assert!(
            event[key].is_null() || event[key].is_string(),
            "{key}: {event}"
        );
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` (RFC 3339, UTC, whole seconds) as Unix seconds.
fn parse_rfc3339_utc(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(range)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    // Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

#[test]
fn rfc3339_times_are_parsed() {
    assert_eq!(parse_rfc3339_utc("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(
        parse_rfc3339_utc("2024-02-29T12:34:56Z"),
        Some(1_709_210_096)
    );
    assert_eq!(parse_rfc3339_utc("2024-02-29 12:34:56Z"), None);
    assert_eq!(parse_rfc3339_utc("2024-02-29T12:34:56"), None);
}

/// The scopes in an event's `detail.scope` (a space-separated set), sorted.
fn scopes(event: &Value) -> Vec<&str> {
    let mut scopes: Vec<&str> = event["detail"]["scope"]
        .as_str()
        .unwrap_or_else(|| panic!("no detail.scope: {event}"))
        .split(' ')
        .collect();
    scopes.sort_unstable();
    scopes
}

fn id_of(event: &Value) -> i64 {
    event["id"].as_str().unwrap().parse().unwrap()
}

/// Asserts that nothing the trail printed contains any of `secrets`.
fn assert_no_secrets(trail: &Trail, secrets: &[&str]) {
    for secret in secrets {
        assert!(!secret.is_empty());
        assert!(
            !trail.stdout.contains(secret),
            "the audit trail contains {secret:?}:\n{}",
            trail.stdout
        );
    }
}

// ---------------------------------------------------------------------------------
// Requests

/// The `x-request-id` the server answered with (a UUID it made up).
fn request_id(response: &reqwest::Response) -> String {
    let id = response
        .headers()
        .get("x-request-id")
        .unwrap_or_else(|| panic!("no x-request-id on {}", response.status()))
        .to_str()
        .unwrap()
        .to_string();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "request id {id:?}");
    id
}

async fn read(response: reqwest::Response) -> (u16, String, Value) {
    let status = response.status().as_u16();
    let id = request_id(&response);
    let text = response.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {text}"))
    };
    (status, id, body)
}

/// The password grant as the frontend client, with a user agent and, when given, the
/// asserted end-user IP. Returns status, request id and body.
async fn password_grant(
    app: &TestApp,
    username: &str,
    password: &str,
    ip: Option<&str>,
) -> (u16, String, Value) {
    let mut request = app
        .http
        .post(app.url("/token"))
        .basic_auth(FP, Some(CLIENT_SECRET))
        .header("user-agent", AGENT)
        .form(&[
            ("grant_type", "password"),
            ("username", username),
            ("password", password),
            ("scope", "openid profile"),
        ]);
    if let Some(ip) = ip {
        request = request.header("x-end-user-ip", ip);
    }
    read(request.send().await.unwrap()).await
}

async fn client_credentials(app: &TestApp, scope: &str) -> reqwest::Response {
    app.token(
        &[("grant_type", "client_credentials"), ("scope", scope)],
        Some((SVC, SVC_SECRET)),
    )
    .await
}

/// The sub of a user, from `oxidp user list`.
async fn sub_of(app: &TestApp, username: &str) -> String {
    let out = app.cli(&["user", "list"]).await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    out.stdout
        .lines()
        .skip(1)
        .find_map(|line| {
            let mut columns = line.split_whitespace();
            let sub = columns.next()?;
            (columns.next()? == username).then(|| sub.to_string())
        })
        .unwrap_or_else(|| panic!("no user {username} in:\n{}", out.stdout))
}

/// `oxidp user add` (password on stdin); returns the new user's sub.
async fn add_user(app: &TestApp, username: &str, password: &str, extra: &[&str]) -> String {
    let email = format!("{username}@example.com");
    let mut args = vec![
        "user",
        "add",
        "--username",
        username,
        "--email",
        &email,
        "--password-stdin",
    ];
    args.extend_from_slice(extra);
    let out = app
        .cli_with_stdin(&args, Some(&format!("{password}\n")))
        .await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    sub_of(app, username).await
}

fn auth_url(app: &TestApp, client: &str, scope: &str) -> String {
    let mut url = url::Url::parse(&app.url("/authorize")).unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("scope", scope)
        .append_pair("state", "st");
    url.to_string()
}

/// Exchanges a code as "rp"; returns status, request id and body.
async fn exchange(app: &TestApp, code: &str) -> (u16, String, Value) {
    read(
        app.token(
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", REDIRECT),
            ],
            Some((CLIENT, CLIENT_SECRET)),
        )
        .await,
    )
    .await
}

/// Alice signs in to "rp" through the pages in `http` and the code is exchanged.
async fn code_flow_in(app: &TestApp, http: &reqwest::Client, scope: &str) -> Value {
    let back = app
        .authorize_in(http, &auth_url(app, CLIENT, scope), USER, PASSWORD, "allow")
        .await;
    let code = query_param(&back, "code").unwrap_or_else(|| panic!("no code in {back}"));
    let (status, _, body) = exchange(app, &code).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn refresh(app: &TestApp, token: &str) -> (u16, String, Value) {
    read(
        app.token(
            &[("grant_type", "refresh_token"), ("refresh_token", token)],
            Some((CLIENT, CLIENT_SECRET)),
        )
        .await,
    )
    .await
}

fn field<'a>(body: &'a Value, name: &str) -> &'a str {
    body[name]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} in {body}"))
}

// ---------------------------------------------------------------------------------
// The outbox

/// The tokens of `<issuer>/{page}?token=…` links in mails to `address` now.
fn mailed_tokens(app: &TestApp, address: &str, page: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(app.dir.path().join("outbox")) else {
        return Vec::new();
    };
    let marker = format!("{}/{page}?token=", app.issuer);
    let mut tokens = Vec::new();
    for path in dir.filter_map(|e| e.ok()).map(|e| e.path()) {
        if path.extension().is_none_or(|x| x != "eml") {
            continue;
        }
        let Ok(raw) = std::fs::read_to_string(&path) else {
            continue;
        };
        let raw = raw.replace("\r\n", "\n");
        let (headers, body) = raw.split_once("\n\n").unwrap_or((&raw, ""));
        let to_address = headers.lines().any(|line| {
            line.to_ascii_lowercase().starts_with("to:")
                && line.to_lowercase().contains(&address.to_lowercase())
        });
        if !to_address {
            continue;
        }
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
        if let Some(start) = body.find(&marker).map(|i| i + marker.len()) {
            let rest = &body[start..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                .unwrap_or(rest.len());
            tokens.push(rest[..end].to_string());
        }
    }
    tokens
}

/// Mail is sent in the background: waits for a `{page}` link to `address`.
async fn mailed_token(app: &TestApp, address: &str, page: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(token) = mailed_tokens(app, address, page).pop() {
            assert_eq!(token.len(), 43, "{token}");
            return token;
        }
        assert!(
            Instant::now() < deadline,
            "no {page} mail to {address} within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------
// 1. The password grant

#[tokio::test]
async fn password_grant_sign_ins_are_recorded_with_context_and_without_secrets() {
    let app = spawn().await;
    let alice = sub_of(&app, USER).await;

    // A wrong password for an existing user.
    let (status, wrong_id, body) = password_grant(&app, USER, WRONG, Some(END_USER_IP)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (failed, _) = wait_for(&app, "login.failed", &wrong_id).await;
    assert_eq!(failed["outcome"], "failure", "{failed}");
    assert_eq!(failed["detail"]["reason"], "bad_password", "{failed}");
    assert_eq!(failed["subject"], alice.as_str(), "{failed}");
    assert_eq!(failed["client_id"], FP, "{failed}");
    assert_eq!(
        failed["ip"], END_USER_IP,
        "the asserted end-user IP: {failed}"
    );
    assert_eq!(failed["user_agent"], AGENT, "{failed}");
    assert_eq!(failed["request_id"], wrong_id.as_str(), "{failed}");

    // A username that names no account: no subject, and the name is nowhere.
    let (status, unknown_id, body) =
        password_grant(&app, UNKNOWN, UNKNOWN_PASSWORD, Some(END_USER_IP)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (unknown, _) = wait_for(&app, "login.failed", &unknown_id).await;
    assert_eq!(unknown["outcome"], "failure", "{unknown}");
    assert_eq!(unknown["detail"], json!({"reason": "unknown_user"}));
    assert_eq!(unknown["subject"], Value::Null, "{unknown}");
    assert_eq!(unknown["actor"], Value::Null, "{unknown}");
    assert_eq!(unknown["client_id"], FP, "{unknown}");
    assert_eq!(unknown["ip"], END_USER_IP, "{unknown}");
    assert_eq!(unknown["user_agent"], AGENT, "{unknown}");
    assert!(
        !unknown.to_string().contains(UNKNOWN),
        "the unknown username is in the event: {unknown}"
    );

    // Without the header the peer address is the end user's.
    let (status, peer_id, _) = password_grant(&app, USER, WRONG, None).await;
    assert_eq!(status, 400);
    let (from_peer, _) = wait_for(&app, "login.failed", &peer_id).await;
    assert_eq!(from_peer["ip"], "127.0.0.1", "{from_peer}");
    assert_eq!(from_peer["subject"], alice.as_str(), "{from_peer}");

    // Success: the sign-in, then the token.
    let (status, ok_id, tokens) = password_grant(&app, USER, PASSWORD, Some(END_USER_IP)).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(
        jwt_claims(field(&tokens, "id_token"))["sub"],
        alice.as_str()
    );
    let (issued, _) = wait_for(&app, "token.issued", &ok_id).await;
    let trail = wait_until(&app, "login.succeeded", |t| {
        t.with_request_id("login.succeeded", &ok_id).is_some()
    })
    .await;
    let succeeded = trail.with_request_id("login.succeeded", &ok_id).unwrap();
    assert_eq!(succeeded["outcome"], "success", "{succeeded}");
    assert_eq!(succeeded["actor"], alice.as_str(), "{succeeded}");
    assert_eq!(succeeded["subject"], alice.as_str(), "{succeeded}");
    assert_eq!(succeeded["client_id"], FP, "{succeeded}");
    assert_eq!(succeeded["detail"]["method"], "pwd", "{succeeded}");
    assert_eq!(succeeded["ip"], END_USER_IP, "{succeeded}");
    assert_eq!(succeeded["user_agent"], AGENT, "{succeeded}");

    assert_eq!(issued["outcome"], "success", "{issued}");
    assert_eq!(issued["actor"], format!("client:{FP}"), "{issued}");
    assert_eq!(issued["subject"], alice.as_str(), "{issued}");
    assert_eq!(issued["client_id"], FP, "{issued}");
    assert_eq!(issued["detail"]["grant_type"], "password", "{issued}");
    assert_eq!(issued["detail"]["scope"], tokens["scope"], "{issued}");
    assert_eq!(scopes(&issued), ["openid", "profile"], "{issued}");
    assert_eq!(issued["ip"], END_USER_IP, "{issued}");
    assert_eq!(issued["user_agent"], AGENT, "{issued}");
    assert!(id_of(succeeded) < id_of(&issued), "sign-in before token");

    // Nothing anywhere in the trail holds a password, the unknown name, a secret or a
    // token.
    let trail = tail(&app, &[]).await;
    assert_no_secrets(
        &trail,
        &[
            WRONG,
            PASSWORD,
            UNKNOWN,
            UNKNOWN_PASSWORD,
            CLIENT_SECRET,
            field(&tokens, "access_token"),
            field(&tokens, "refresh_token"),
            field(&tokens, "id_token"),
        ],
    );
}

/// Every reason a sign-in is refused is told apart in the trail (the client still
/// gets one answer for all of them).
#[tokio::test]
async fn every_rejection_reason_is_recorded() {
    let app = spawn_app_with(options("", "[accounts]\nrequire_verified_email = true\n")).await;
    let dora = add_user(&app, "dora", STRONG, &["--email-verified"]).await;
    assert_eq!(app.cli(&["user", "disable", "dora"]).await.code(), 0);
    let eve = add_user(&app, "eve", STRONG, &[]).await;
    let long_name = "n".repeat(300);
    for (case, username, password, reason, subject) in [
        ("disabled", "dora", STRONG, "disabled", Some(dora.as_str())),
        (
            "unverified",
            "eve",
            STRONG,
            "email_unverified",
            Some(eve.as_str()),
        ),
        ("blank username", "   ", STRONG, "malformed", None),
        (
            "over-long username",
            long_name.as_str(),
            STRONG,
            "malformed",
            None,
        ),
        ("unknown", UNKNOWN, UNKNOWN_PASSWORD, "unknown_user", None),
    ] {
        let (status, id, body) = password_grant(&app, username, password, Some(END_USER_IP)).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant")),
            "{case}: {body}"
        );
        let (event, _) = wait_for(&app, "login.failed", &id).await;
        assert_eq!(event["outcome"], "failure", "{case}: {event}");
        assert_eq!(event["detail"]["reason"], reason, "{case}: {event}");
        assert_eq!(event["subject"].as_str(), subject, "{case}: {event}");
        assert_eq!(event["client_id"], FP, "{case}: {event}");
        assert_eq!(event["ip"], END_USER_IP, "{case}: {event}");
    }
    let trail = tail(&app, &[]).await;
    assert_no_secrets(&trail, &[STRONG, UNKNOWN, UNKNOWN_PASSWORD, &long_name]);
    assert!(
        trail.of_type("login.succeeded").is_empty(),
        "{}",
        trail.stdout
    );
}

/// A password too short to be anyone's is refused without checking it; the
/// attempt is still against alice's account (and counts towards her limit), so it is
/// hers in the trail.
#[tokio::test]
async fn a_malformed_password_for_an_existing_user_is_attributed_to_that_user() {
    let app = spawn().await;
    let alice = sub_of(&app, USER).await;
    let mut last = String::new();
    for _ in 0..5 {
        let (status, id, _) = password_grant(&app, USER, "hunter2", Some(END_USER_IP)).await;
        assert_eq!(status, 400);
        last = id;
    }
    let (status, _, _) = password_grant(&app, USER, PASSWORD, Some(END_USER_IP)).await;
    assert_eq!(status, 429, "five failures lock alice out");
    let (failed, trail) = wait_for(&app, "login.failed", &last).await;
    assert_eq!(failed["detail"]["reason"], "malformed", "{failed}");
    let triggered = trail
        .with_request_id("ratelimit.triggered", &last)
        .unwrap_or_else(|| panic!("no ratelimit.triggered:\n{}", trail.stdout));
    assert_eq!(
        triggered["detail"]["limit"], "password_failures_per_user",
        "{triggered}"
    );
    assert_eq!(
        (&failed["subject"], &triggered["subject"]),
        (&json!(alice), &json!(alice)),
        "subjects of login.failed and ratelimit.triggered:\n{}",
        trail.stdout
    );
}

// ---------------------------------------------------------------------------------
// 2. Rate limits

const BACKENDS: [&str; 2] = ["backend = \"memory\"", "backend = \"database\""];

#[tokio::test]
async fn reaching_the_per_username_limit_is_recorded_once() {
    for backend in BACKENDS {
        let app = spawn_app_with(options(backend, "")).await;
        let alice = sub_of(&app, USER).await;
        let mut ids = Vec::new();
        for i in 0..5 {
            let (status, id, body) = password_grant(&app, USER, WRONG, Some(END_USER_IP)).await;
            assert_eq!(status, 400, "{backend}: failure {i}: {body}");
            ids.push(id);
        }
        // Refused before the password is checked, the right one too.
        for password in [WRONG, PASSWORD, WRONG] {
            let (status, _, body) = password_grant(&app, USER, password, Some(END_USER_IP)).await;
            assert_eq!(status, 429, "{backend}: {body}");
        }
        let trail = barrier(&app).await;
        let triggered = trail.of_type("ratelimit.triggered");
        assert_eq!(triggered.len(), 1, "{backend}:\n{}", trail.stdout);
        let event = triggered[0];
        assert_eq!(event["outcome"], "failure", "{backend}: {event}");
        assert_eq!(
            event["detail"]["limit"], "password_failures_per_user",
            "{backend}: {event}"
        );
        assert!(
            event["detail"]["blocked_seconds"]
                .as_i64()
                .is_some_and(|s| (1..=60).contains(&s)),
            "{backend}: {event}"
        );
        assert_eq!(event["subject"], alice.as_str(), "{backend}: {event}");
        assert_eq!(event["client_id"], FP, "{backend}: {event}");
        assert_eq!(event["ip"], END_USER_IP, "{backend}: {event}");
        assert_eq!(
            event["request_id"],
            ids[4].as_str(),
            "{backend}: the fifth failure reached the limit: {event}"
        );
        // Five failures were checked and recorded; the refused attempts were not.
        let failures: Vec<&Value> = trail
            .of_type("login.failed")
            .into_iter()
            .filter(|e| e["subject"] == alice.as_str())
            .collect();
        assert_eq!(failures.len(), 5, "{backend}:\n{}", trail.stdout);
        assert!(trail.of_type("login.succeeded").is_empty(), "{backend}");
        assert_no_secrets(&trail, &[WRONG, PASSWORD]);
    }
}

#[tokio::test]
async fn reaching_the_per_ip_limit_is_recorded_once() {
    for backend in BACKENDS {
        let app = spawn_app_with(options(
            &format!("{backend}\npassword_failures_per_minute_per_ip = 3"),
            "",
        ))
        .await;
        let mut ids = Vec::new();
        for user in ["u1", "u2", "u3"] {
            let (status, id, _) =
                password_grant(&app, user, UNKNOWN_PASSWORD, Some(END_USER_IP)).await;
            assert_eq!(status, 400, "{backend}");
            ids.push(id);
        }
        for user in ["u4", USER] {
            let (status, _, _) = password_grant(&app, user, WRONG, Some(END_USER_IP)).await;
            assert_eq!(status, 429, "{backend}");
        }
        let trail = barrier(&app).await;
        let triggered = trail.of_type("ratelimit.triggered");
        assert_eq!(triggered.len(), 1, "{backend}:\n{}", trail.stdout);
        let event = triggered[0];
        assert_eq!(
            event["detail"]["limit"], "password_failures_per_ip",
            "{backend}: {event}"
        );
        assert!(
            event["detail"]["blocked_seconds"]
                .as_i64()
                .is_some_and(|s| (1..=60).contains(&s)),
            "{backend}: {event}"
        );
        assert_eq!(event["subject"], Value::Null, "{backend}: {event}");
        assert_eq!(event["ip"], END_USER_IP, "{backend}: {event}");
        assert_eq!(event["client_id"], FP, "{backend}: {event}");
        assert_eq!(event["request_id"], ids[2].as_str(), "{backend}: {event}");
        assert_eq!(trail.of_type("login.failed").len(), 3, "{backend}");
    }
}

// ---------------------------------------------------------------------------------
// 3. The code flow through the pages

#[tokio::test]
async fn the_code_flow_records_sign_in_consent_token_and_code_replay() {
    let app = spawn().await;
    let alice = sub_of(&app, USER).await;
    let url = auth_url(&app, CLIENT, "openid profile");

    // A wrong password on the login page of a pending authorization.
    let start = app.http.get(&url).send().await.unwrap();
    assert!(start.status().is_redirection(), "{}", start.status());
    let login = start.headers()["location"].to_str().unwrap().to_string();
    assert!(login.starts_with("/login"), "{login}");
    let page = app
        .http
        .get(app.url(&login))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = crate::helpers::hidden_input(&page, "csrf_token").expect("csrf_token");
    let req = crate::helpers::hidden_input(&page, "req").expect("req");
    let refused = app
        .http
        .post(app.url("/login"))
        .header("user-agent", AGENT)
        .header("x-end-user-ip", "192.0.2.66")
        .form(&[
            ("username", USER),
            ("password", WRONG),
            ("csrf_token", &csrf),
            ("req", &req),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 200, "the form again");
    let refused_id = request_id(&refused);
    let (failed, _) = wait_for(&app, "login.failed", &refused_id).await;
    assert_eq!(failed["detail"]["reason"], "bad_password", "{failed}");
    assert_eq!(failed["subject"], alice.as_str(), "{failed}");
    assert_eq!(
        failed["client_id"], CLIENT,
        "the client of the pending authorization: {failed}"
    );
    assert_eq!(
        failed["ip"], "127.0.0.1",
        "the page never trusts the asserted-IP header: {failed}"
    );
    assert_eq!(failed["user_agent"], AGENT, "{failed}");

    // Sign in, consent, exchange.
    let back = app.authorize_as(&url, USER, PASSWORD, "allow").await;
    let code = query_param(&back, "code").unwrap_or_else(|| panic!("no code in {back}"));
    let (status, token_id, tokens) = exchange(&app, &code).await;
    assert_eq!(status, 200, "{tokens}");
    let (issued, trail) = wait_for(&app, "token.issued", &token_id).await;
    assert_eq!(issued["outcome"], "success", "{issued}");
    assert_eq!(issued["actor"], format!("client:{CLIENT}"), "{issued}");
    assert_eq!(issued["subject"], alice.as_str(), "{issued}");
    assert_eq!(issued["client_id"], CLIENT, "{issued}");
    assert_eq!(
        issued["detail"]["grant_type"], "authorization_code",
        "{issued}"
    );
    assert_eq!(issued["detail"]["scope"], tokens["scope"], "{issued}");
    assert_eq!(scopes(&issued), ["openid", "profile"], "{issued}");
    assert_eq!(issued["ip"], "127.0.0.1", "{issued}");

    let succeeded = trail.of_type("login.succeeded");
    assert_eq!(succeeded.len(), 1, "{}", trail.stdout);
    let succeeded = succeeded[0];
    assert_eq!(succeeded["outcome"], "success", "{succeeded}");
    assert_eq!(succeeded["actor"], alice.as_str(), "{succeeded}");
    assert_eq!(succeeded["subject"], alice.as_str(), "{succeeded}");
    assert_eq!(succeeded["client_id"], CLIENT, "{succeeded}");
    assert_eq!(succeeded["detail"]["method"], "pwd", "{succeeded}");
    assert_eq!(succeeded["ip"], "127.0.0.1", "{succeeded}");

    let granted = trail.of_type("consent.granted");
    assert_eq!(granted.len(), 1, "{}", trail.stdout);
    let granted = granted[0];
    assert_eq!(granted["outcome"], "success", "{granted}");
    assert_eq!(granted["actor"], alice.as_str(), "{granted}");
    assert_eq!(granted["subject"], alice.as_str(), "{granted}");
    assert_eq!(granted["client_id"], CLIENT, "{granted}");
    assert_eq!(scopes(granted), ["openid", "profile"], "{granted}");
    assert!(
        id_of(&failed) < id_of(succeeded)
            && id_of(succeeded) < id_of(granted)
            && id_of(granted) < id_of(&issued),
        "in the order they happened:\n{}",
        trail.stdout
    );

    // The same code again: refused, and recorded as a replay.
    let (status, replay_id, body) = exchange(&app, &code).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (replay, _) = wait_for(&app, "token.code_replay", &replay_id).await;
    assert_eq!(replay["outcome"], "failure", "{replay}");
    assert_eq!(replay["actor"], format!("client:{CLIENT}"), "{replay}");
    assert_eq!(replay["subject"], alice.as_str(), "{replay}");
    assert_eq!(replay["client_id"], CLIENT, "{replay}");

    // Denying another client's request.
    let back = app
        .authorize_as(
            &auth_url(&app, "poster", "openid email"),
            USER,
            PASSWORD,
            "deny",
        )
        .await;
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("access_denied")
    );
    let denied = wait_for_event(&app, "consent.denied", |e| e["client_id"] == "poster").await;
    assert_eq!(denied["outcome"], "failure", "{denied}");
    assert_eq!(denied["subject"], alice.as_str(), "{denied}");
    assert_eq!(denied["actor"], alice.as_str(), "{denied}");
    assert_eq!(scopes(&denied), ["email", "openid"], "{denied}");

    let trail = barrier(&app).await;
    assert_eq!(trail.of_type("token.issued").len(), 2, "{}", trail.stdout);
    assert_no_secrets(
        &trail,
        &[
            &code,
            WRONG,
            PASSWORD,
            CLIENT_SECRET,
            field(&tokens, "access_token"),
            field(&tokens, "refresh_token"),
            field(&tokens, "id_token"),
        ],
    );
}

// ---------------------------------------------------------------------------------
// 4. Refresh token reuse

#[tokio::test]
async fn reusing_a_rotated_refresh_token_is_recorded() {
    let app = spawn_app_with(options("", "[tokens]\nrefresh_grace_seconds = 0\n")).await;
    let alice = sub_of(&app, USER).await;
    let first = code_flow_in(&app, &app.http, "openid").await;
    let old = field(&first, "refresh_token").to_string();

    let (status, rotate_id, rotated) = refresh(&app, &old).await;
    assert_eq!(status, 200, "{rotated}");
    let (issued, _) = wait_for(&app, "token.issued", &rotate_id).await;
    assert_eq!(issued["detail"]["grant_type"], "refresh_token", "{issued}");
    assert_eq!(issued["actor"], format!("client:{CLIENT}"), "{issued}");
    assert_eq!(issued["subject"], alice.as_str(), "{issued}");
    assert_eq!(issued["client_id"], CLIENT, "{issued}");
    assert_eq!(issued["detail"]["scope"], rotated["scope"], "{issued}");
    assert_eq!(scopes(&issued), ["openid"], "{issued}");

    // Times are whole seconds: a grace of 0 still covers the second of the rotation.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, reuse_id, body) = refresh(&app, &old).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (reuse, trail) = wait_for(&app, "token.refresh_reuse", &reuse_id).await;
    assert_eq!(reuse["outcome"], "failure", "{reuse}");
    assert_eq!(reuse["actor"], format!("client:{CLIENT}"), "{reuse}");
    assert_eq!(reuse["client_id"], CLIENT, "{reuse}");
    assert_eq!(reuse["ip"], "127.0.0.1", "{reuse}");
    assert_eq!(trail.of_type("token.refresh_reuse").len(), 1);
    assert_no_secrets(
        &trail,
        &[
            &old,
            field(&rotated, "refresh_token"),
            field(&rotated, "access_token"),
        ],
    );
}

// ---------------------------------------------------------------------------------
// 5. Client credentials

#[tokio::test]
async fn a_client_credentials_token_is_recorded_without_a_subject() {
    let app = spawn().await;
    let response = app
        .http
        .post(app.url("/token"))
        .basic_auth(SVC, Some(SVC_SECRET))
        .header("user-agent", AGENT)
        .form(&[("grant_type", "client_credentials"), ("scope", "api:read")])
        .send()
        .await
        .unwrap();
    let (status, id, body) = read(response).await;
    assert_eq!(status, 200, "{body}");
    let (issued, trail) = wait_for(&app, "token.issued", &id).await;
    assert_eq!(issued["outcome"], "success", "{issued}");
    assert_eq!(issued["actor"], format!("client:{SVC}"), "{issued}");
    assert_eq!(issued["subject"], Value::Null, "{issued}");
    assert_eq!(issued["client_id"], SVC, "{issued}");
    assert_eq!(
        issued["detail"]["grant_type"], "client_credentials",
        "{issued}"
    );
    assert_eq!(issued["detail"]["scope"], body["scope"], "{issued}");
    assert_eq!(scopes(&issued), ["api:read"], "{issued}");
    assert_eq!(issued["ip"], "127.0.0.1", "{issued}");
    assert_eq!(issued["user_agent"], AGENT, "{issued}");
    assert_eq!(trail.events.len(), 1, "only the token:\n{}", trail.stdout);
    assert_no_secrets(&trail, &[SVC_SECRET, field(&body, "access_token")]);
}

// ---------------------------------------------------------------------------------
// 6. Logout

#[tokio::test]
async fn logout_is_recorded_with_how_it_happened() {
    let app = spawn().await;
    let alice = sub_of(&app, USER).await;

    // At the end_session_endpoint, with the browser's session named by the hint.
    let browser = app.new_browser();
    let tokens = code_flow_in(&app, &browser, "openid").await;
    let id_token = field(&tokens, "id_token").to_string();
    let sid = jwt_claims(&id_token)["sid"].clone();
    assert!(sid.is_string(), "no sid in the ID token");
    let response = browser
        .get(app.url("/logout"))
        .query(&[("id_token_hint", id_token.as_str())])
        .header("user-agent", AGENT)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "the signed-out page");
    let logout_id = request_id(&response);
    let (event, _) = wait_for(&app, "logout", &logout_id).await;
    assert_eq!(event["outcome"], "success", "{event}");
    assert_eq!(event["actor"], alice.as_str(), "{event}");
    assert_eq!(event["subject"], alice.as_str(), "{event}");
    assert_eq!(event["client_id"], CLIENT, "{event}");
    assert_eq!(event["detail"]["via"], "end_session_endpoint", "{event}");
    assert_eq!(event["detail"]["sessions"], "one", "{event}");
    assert_eq!(event["detail"]["sid"], sid, "{event}");
    assert_eq!(event["ip"], "127.0.0.1", "{event}");
    assert_eq!(event["user_agent"], AGENT, "{event}");

    // A first-party frontend's sign-in has no oxidp cookie: the hint alone names it.
    let (status, _, signed_in) = password_grant(&app, USER, PASSWORD, Some(END_USER_IP)).await;
    assert_eq!(status, 200, "{signed_in}");
    let fp_id_token = field(&signed_in, "id_token").to_string();
    let fp_sid = jwt_claims(&fp_id_token)["sid"].clone();
    let response = app
        .new_browser()
        .get(app.url("/logout"))
        .query(&[("id_token_hint", fp_id_token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (event, _) = wait_for(&app, "logout", &request_id(&response)).await;
    assert_eq!(event["subject"], alice.as_str(), "{event}");
    assert_eq!(event["client_id"], FP, "{event}");
    assert_eq!(event["detail"]["via"], "end_session_endpoint", "{event}");
    assert_eq!(event["detail"]["sessions"], "one", "{event}");
    assert_eq!(event["detail"]["sid"], fp_sid, "{event}");

    // Through the account API, everywhere at once.
    let (status, _, signed_in) = password_grant(&app, USER, PASSWORD, Some(END_USER_IP)).await;
    assert_eq!(status, 200, "{signed_in}");
    let response = app
        .http
        .delete(app.url("/api/v1/account/sessions"))
        .bearer_auth(field(&signed_in, "access_token"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let (event, trail) = wait_for(&app, "logout", &request_id(&response)).await;
    assert_eq!(event["actor"], alice.as_str(), "{event}");
    assert_eq!(event["subject"], alice.as_str(), "{event}");
    assert_eq!(event["detail"]["via"], "api", "{event}");
    assert_eq!(event["detail"]["sessions"], "all", "{event}");
    assert_eq!(trail.of_type("logout").len(), 3, "{}", trail.stdout);
    assert_no_secrets(&trail, &[&id_token, &fp_id_token]);
}

/// Beyond the brief: an ID token presented again at /logout after its session ended
/// ends nothing (the store says so), so the trail should not gain a second logout.
#[tokio::test]
async fn a_logout_that_ends_nothing_is_not_recorded() {
    let app = spawn().await;
    let (status, _, signed_in) = password_grant(&app, USER, PASSWORD, Some(END_USER_IP)).await;
    assert_eq!(status, 200, "{signed_in}");
    let hint = field(&signed_in, "id_token").to_string();
    for _ in 0..2 {
        let response = app
            .new_browser()
            .get(app.url("/logout"))
            .query(&[("id_token_hint", hint.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let trail = barrier(&app).await;
    assert_eq!(trail.of_type("logout").len(), 1, "{}", trail.stdout);
}

// ---------------------------------------------------------------------------------
// 7. `audit tail`

#[tokio::test]
async fn audit_tail_filters_limits_and_prints_text() {
    let app = spawn().await;
    let alice = sub_of(&app, USER).await;
    // A mix: a failed and a successful sign-in, a refresh, a service token.
    let (status, _, _) = password_grant(&app, UNKNOWN, UNKNOWN_PASSWORD, None).await;
    assert_eq!(status, 400);
    let (status, _, tokens) = password_grant(&app, USER, PASSWORD, Some(END_USER_IP)).await;
    assert_eq!(status, 200);
    let response = app
        .token(
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", field(&tokens, "refresh_token")),
            ],
            Some((FP, CLIENT_SECRET)),
        )
        .await;
    assert_eq!(response.status(), 200);
    let all = barrier(&app).await;
    let kinds: Vec<&str> = all
        .events
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "login.failed",
            "login.succeeded",
            "token.issued",
            "token.issued",
            "token.issued"
        ],
        "oldest first:\n{}",
        all.stdout
    );
    let ids: Vec<i64> = all.events.iter().map(id_of).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

    // A prefix ending in '.': every token event and nothing else.
    let tokens_only = tail(&app, &["--type", "token."]).await;
    let want: Vec<&Value> = all
        .events
        .iter()
        .filter(|e| e["type"].as_str().unwrap().starts_with("token."))
        .collect();
    assert_eq!(tokens_only.events.len(), 3, "{}", tokens_only.stdout);
    assert_eq!(tokens_only.events.iter().collect::<Vec<_>>(), want);
    // An exact type.
    let failed = tail(&app, &["--type", "login.failed"]).await;
    assert_eq!(failed.events.len(), 1, "{}", failed.stdout);
    assert_eq!(failed.events[0], all.events[0]);
    // Without the dot a type is exact: there is no type "token".
    let none = tail(&app, &["--type", "token"]).await;
    assert!(none.events.is_empty(), "{}", none.stdout);
    // A prefix is not a pattern.
    let none = tail(&app, &["--type", "tok%."]).await;
    assert!(none.events.is_empty(), "{}", none.stdout);

    // One subject: alice's sign-in and her two tokens, not the service's or the
    // unknown user's events.
    let hers = tail(&app, &["--subject", &alice]).await;
    assert_eq!(hers.events.len(), 3, "{}", hers.stdout);
    assert!(
        hers.events.iter().all(|e| e["subject"] == alice.as_str()),
        "{}",
        hers.stdout
    );
    let want: Vec<&Value> = all
        .events
        .iter()
        .filter(|e| e["subject"] == alice.as_str())
        .collect();
    assert_eq!(hers.events.iter().collect::<Vec<_>>(), want);
    let nobody = tail(&app, &["--subject", "no-such-subject"]).await;
    assert!(nobody.events.is_empty(), "{}", nobody.stdout);
    // Both filters at once.
    let both = tail(&app, &["--subject", &alice, "--type", "login."]).await;
    assert_eq!(both.events.len(), 1, "{}", both.stdout);
    assert_eq!(both.events[0]["type"], "login.succeeded");

    // -n: the latest N, oldest first.
    let out = app.cli(&["audit", "tail", "--json", "-n", "1"]).await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
    let last: Value = serde_json::from_str(out.stdout.trim_end()).unwrap();
    assert_eq!(&last, all.events.last().unwrap());
    let out = app.cli(&["audit", "tail", "--json", "--limit", "2"]).await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let two: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(two, all.events[all.events.len() - 2..]);
    // Out of range.
    let out = app.cli(&["audit", "tail", "-n", "0"]).await;
    assert_ne!(out.code(), 0, "{}", out.stdout);

    // Text: one line per event, each starting with its RFC 3339 time, then type and
    // outcome.
    let out = app.cli(&["audit", "tail", "-n", "200"]).await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), all.events.len(), "{}", out.stdout);
    for (line, event) in lines.iter().zip(&all.events) {
        let time = line.split(' ').next().unwrap();
        assert!(parse_rfc3339_utc(time).is_some(), "{line}");
        assert_eq!(time, event["time"], "{line}");
        let start = format!(
            "{} {} {} ",
            event["time"].as_str().unwrap(),
            event["type"].as_str().unwrap(),
            event["outcome"].as_str().unwrap()
        );
        assert!(
            line.starts_with(&start),
            "{line:?} does not start with {start:?}"
        );
    }
    assert!(
        lines[1].contains(&format!("subject={alice}")) && lines[1].contains(END_USER_IP),
        "{}",
        lines[1]
    );
    // The text filters the same way.
    let out = app
        .cli(&["audit", "tail", "--type", "login.", "-n", "200"])
        .await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(out.stdout.lines().count(), 2, "{}", out.stdout);
    assert_no_secrets(
        &all,
        &[
            PASSWORD,
            UNKNOWN,
            UNKNOWN_PASSWORD,
            field(&tokens, "refresh_token"),
        ],
    );
}

// ---------------------------------------------------------------------------------
// 8. `[audit] retention_days`

/// A config keeping every file in `dir`, plus `extra`.
fn standalone_config(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let text = format!(
        "[database]\nurl = {:?}\n\n[keys]\ndir = {:?}\n\n[email]\noutbox_dir = {:?}\n\n{extra}\n",
        format!("sqlite://{}", dir.join("x.db").display()),
        dir.join("keys").display().to_string(),
        dir.join("outbox").display().to_string(),
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `oxidp --config <config> <command>`, killing it if it is still running after
/// 30 s (a server that started instead of refusing).
fn run_with_timeout(
    config: &std::path::Path,
    command: &str,
    env: &[(&str, &str)],
) -> (i32, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_oxidp"));
    for (k, _) in std::env::vars() {
        if k.starts_with("OXIDP_") {
            child.env_remove(k);
        }
    }
    let mut child = child
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .arg("--config")
        .arg(config)
        .arg(command)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
            return (status.code().unwrap_or(-1), stderr);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("oxidp {command} did not stop: the setting was accepted");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_bad_retention_stops_start_up() {
    for (case, value) in [("zero", "0"), ("too long", "3651"), ("negative", "-1")] {
        let dir = tempfile::tempdir().unwrap();
        let config = standalone_config(dir.path(), &format!("[audit]\nretention_days = {value}"));
        for command in ["serve", "migrate"] {
            let (code, stderr) = run_with_timeout(&config, command, &[]);
            assert_eq!(code, 2, "{case}, {command}: {stderr}");
            assert_eq!(stderr.lines().count(), 1, "{case}, {command}: {stderr:?}");
            assert!(
                stderr.starts_with("error: invalid setting audit.retention_days"),
                "{case}, {command}: {stderr:?}"
            );
        }
        // Nothing was created: no database, no keys.
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["config.toml"], "{case}");
    }
    // Zero says what is allowed.
    let dir = tempfile::tempdir().unwrap();
    let config = standalone_config(dir.path(), "[audit]\nretention_days = 0");
    let (_, stderr) = run_with_timeout(&config, "migrate", &[]);
    assert!(stderr.contains("1 to 3650"), "{stderr:?}");

    // The environment override is checked the same way, and named.
    let dir = tempfile::tempdir().unwrap();
    let config = standalone_config(dir.path(), "");
    let (code, stderr) =
        run_with_timeout(&config, "migrate", &[("OXIDP_AUDIT__RETENTION_DAYS", "0")]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.starts_with("error: invalid setting audit.retention_days")
            && stderr.contains("OXIDP_AUDIT__RETENTION_DAYS"),
        "{stderr:?}"
    );

    // The bounds themselves are fine, and so is leaving it out.
    for extra in [
        "[audit]\nretention_days = 1",
        "[audit]\nretention_days = 3650",
        "",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = standalone_config(dir.path(), extra);
        let out = run_binary(Some(&config), &["migrate".to_string()], None, &[]);
        assert_eq!(out.code(), 0, "{extra:?}: {}", out.stderr);
    }

    // In process, the same refusal as a ConfigError naming the key.
    let error = oxidp::config::Config::from_sources("[audit]\nretention_days = 0\n", Vec::new())
        .expect_err("retention_days = 0 is refused");
    assert_eq!(error.key, "audit.retention_days");
}

// ---------------------------------------------------------------------------------
// 9. The account API

#[tokio::test]
async fn account_api_changes_are_recorded() {
    let app = spawn().await;
    let api = |method: reqwest::Method, path: &str| {
        app.http
            .request(method, app.url(path))
            .header("user-agent", AGENT)
    };

    // Sign-up through the frontend, with the end user's IP asserted.
    let response = api(reqwest::Method::POST, "/api/v1/account/register")
        .basic_auth(FP, Some(CLIENT_SECRET))
        .header("x-end-user-ip", END_USER_IP)
        .json(&json!({"username": "bob", "email": "bob@example.com", "password": STRONG}))
        .send()
        .await
        .unwrap();
    let (status, register_id, body) = read(response).await;
    assert_eq!(status, 201, "{body}");
    let bob = field(&body, "sub").to_string();
    let (registered, _) = wait_for(&app, "user.registered", &register_id).await;
    assert_eq!(registered["outcome"], "success", "{registered}");
    assert_eq!(registered["actor"], bob.as_str(), "{registered}");
    assert_eq!(registered["subject"], bob.as_str(), "{registered}");
    assert_eq!(registered["detail"]["via"], "api", "{registered}");
    assert_eq!(registered["ip"], END_USER_IP, "{registered}");

    // The same address again: the same answer, a failure in the trail.
    let response = api(reqwest::Method::POST, "/api/v1/account/register")
        .basic_auth(FP, Some(CLIENT_SECRET))
        .json(&json!({"username": "bobby", "email": "bob@example.com", "password": STRONGER}))
        .send()
        .await
        .unwrap();
    let (status, taken_id, body) = read(response).await;
    assert_eq!(status, 201, "{body}");
    let (taken, _) = wait_for(&app, "user.registered", &taken_id).await;
    assert_eq!(taken["outcome"], "failure", "{taken}");
    assert_eq!(taken["detail"]["reason"], "email_in_use", "{taken}");
    assert_ne!(taken["subject"], bob.as_str(), "{taken}");

    // Verifying the address with the mailed token.
    let verify_token = mailed_token(&app, "bob@example.com", "verify-email").await;
    let response = api(reqwest::Method::POST, "/api/v1/account/verify-email")
        .json(&json!({"token": verify_token}))
        .send()
        .await
        .unwrap();
    let (status, verify_id, body) = read(response).await;
    assert_eq!(status, 204, "{body}");
    let (verified, _) = wait_for(&app, "email.verified", &verify_id).await;
    assert_eq!(verified["outcome"], "success", "{verified}");
    assert_eq!(verified["actor"], bob.as_str(), "{verified}");
    assert_eq!(verified["subject"], bob.as_str(), "{verified}");
    assert_eq!(verified["user_agent"], AGENT, "{verified}");

    // A profile edit names the fields that changed, not their values.
    let (status, _, signed_in) = password_grant(&app, "bob", STRONG, Some(END_USER_IP)).await;
    assert_eq!(status, 200, "{signed_in}");
    let access = field(&signed_in, "access_token").to_string();
    let response = api(reqwest::Method::PATCH, "/api/v1/account/me")
        .bearer_auth(&access)
        .json(&json!({"name": "Robert Tables", "given_name": "Robert"}))
        .send()
        .await
        .unwrap();
    let (status, patch_id, body) = read(response).await;
    assert_eq!(status, 200, "{body}");
    let (updated, _) = wait_for(&app, "profile.updated", &patch_id).await;
    assert_eq!(updated["outcome"], "success", "{updated}");
    assert_eq!(updated["subject"], bob.as_str(), "{updated}");
    let mut changed: Vec<&str> = updated["detail"]["changed"]
        .as_array()
        .unwrap_or_else(|| panic!("{updated}"))
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    changed.sort_unstable();
    assert_eq!(changed, ["given_name", "name"], "{updated}");
    assert!(!updated.to_string().contains("Robert"), "{updated}");

    // Changing the password.
    let response = api(reqwest::Method::POST, "/api/v1/account/me/password")
        .bearer_auth(&access)
        .json(&json!({"current_password": STRONG, "new_password": STRONGER}))
        .send()
        .await
        .unwrap();
    let (status, change_id, body) = read(response).await;
    assert_eq!(status, 204, "{body}");
    let (changed, _) = wait_for(&app, "password.changed", &change_id).await;
    assert_eq!(changed["outcome"], "success", "{changed}");
    assert_eq!(changed["actor"], bob.as_str(), "{changed}");
    assert_eq!(changed["subject"], bob.as_str(), "{changed}");
    assert_eq!(changed["ip"], "127.0.0.1", "{changed}");
    assert_eq!(changed["user_agent"], AGENT, "{changed}");

    // A reset with the mailed token.
    let response = api(reqwest::Method::POST, "/api/v1/account/password-reset")
        .json(&json!({"email": "bob@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let reset_token = mailed_token(&app, "bob@example.com", "reset-password").await;
    let response = api(
        reqwest::Method::POST,
        "/api/v1/account/password-reset/confirm",
    )
    .json(&json!({"token": reset_token, "password": AFTER_RESET}))
    .send()
    .await
    .unwrap();
    let (status, reset_id, body) = read(response).await;
    assert_eq!(status, 204, "{body}");
    let (reset, _) = wait_for(&app, "password.reset", &reset_id).await;
    assert_eq!(reset["outcome"], "success", "{reset}");
    assert_eq!(reset["actor"], bob.as_str(), "{reset}");
    assert_eq!(reset["subject"], bob.as_str(), "{reset}");
    assert_eq!(reset["user_agent"], AGENT, "{reset}");
    let (status, _, body) = password_grant(&app, "bob", AFTER_RESET, None).await;
    assert_eq!(status, 200, "the reset took effect: {body}");

    // Each change once, and no password or token anywhere.
    let trail = barrier(&app).await;
    for kind in [
        "email.verified",
        "profile.updated",
        "password.changed",
        "password.reset",
    ] {
        let events = trail.of_type(kind);
        assert_eq!(events.len(), 1, "{kind}:\n{}", trail.stdout);
    }
    assert_eq!(trail.of_type("user.registered").len(), 2);
    assert_no_secrets(
        &trail,
        &[
            STRONG,
            STRONGER,
            AFTER_RESET,
            &verify_token,
            &reset_token,
            &access,
            CLIENT_SECRET,
        ],
    );
}
