//! The admin API (`/api/v1/admin/*`, DESIGN.md "Account and admin API shapes"), driven
//! the way an operator's console drives it: a first-party client signs an administrator
//! in with the password grant and scope `oxidp:admin`, then calls the JSON endpoints with
//! the access token. Covered: who may call (every endpoint, every kind of token), users,
//! sessions, clients, signing keys, the audit trail of every change, and the OpenAPI
//! document against the routes that really answer. Every refused request is also
//! checked to have changed nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::helpers::decode_quoted_printable;
use crate::helpers::jwt_claims;
use crate::helpers::{
    CLIENT, CLIENT_SECRET, Options, PASSWORD, REDIRECT, TestApp, USER, flow_options, query_param,
    spawn_app_with,
};

/// The operators' console: a first-party client with the password and refresh grants.
const CONSOLE: &str = "console";
const CONSOLE_SECRET: &str = "console-secret-that-is-long-enough-0123456789";
/// A user without the admin role.
const BOB: &str = "bob";
const BOB_PASSWORD: &str = "quiet meadow lantern 42";
/// A second administrator (alice, from `flow_options`, is the first).
const ERIN: &str = "erin";
const ERIN_PASSWORD: &str = "amber harbour violin 77";
/// A user the endpoint table acts on (and finally deletes).
const DAVE: &str = "dave";
const DAVE_PASSWORD: &str = "copper lighthouse sparrow 19";
/// A password that passes every rule, for users created through the API.
const STRONG: &str = "velvet canyon orchard 58";
const STRONGER: &str = "granite willow compass 31";

const USERS: &str = "/api/v1/admin/users";
const CLIENTS: &str = "/api/v1/admin/clients";
const KEYS: &str = "/api/v1/admin/keys";
const AUDIT: &str = "/api/v1/admin/audit";
const ADMIN_SCOPE: &str = "oxidp:admin";
/// How long the background audit writer may take before an event counts as missing.
const AUDIT_WAIT: Duration = Duration::from_secs(10);

fn options() -> Options {
    let mut options = flow_options();
    options.extra_toml.push_str(&format!(
        r#"
[[users]]
username = "{BOB}"
email = "bob@example.com"
password = "{BOB_PASSWORD}"
name = "Bob Builder"

[[users]]
username = "{ERIN}"
email = "erin@example.com"
password = "{ERIN_PASSWORD}"
roles = ["admin"]

[[users]]
username = "{DAVE}"
email = "dave@example.com"
password = "{DAVE_PASSWORD}"

[[clients]]
id = "{CONSOLE}"
secret = "{CONSOLE_SECRET}"
first_party = true
grant_types = ["password", "refresh_token"]

[ratelimit]
requests_per_minute_per_ip = 1000
"#
    ));
    options
}

async fn spawn() -> TestApp {
    spawn_app_with(options()).await
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

// ---------------------------------------------------------------------------------
// Requests

/// An answer: status, headers and body text (`json()` parses it).
struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Reply {
    async fn read(response: reqwest::Response) -> Self {
        Self {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            text: response.text().await.unwrap(),
        }
    }

    /// The JSON body; `Null` when the body is empty (204, 202).
    fn json(&self) -> Value {
        if self.text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&self.text)
                .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {}", self.status, self.text))
        }
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }
}

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Reply {
    let mut request = app.http.request(method, app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    Reply::read(request.send().await.unwrap()).await
}

/// Sends a raw body with the given content type.
async fn send_raw(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    content_type: &str,
    body: &str,
) -> Reply {
    Reply::read(
        app.http
            .request(method, app.url(path))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body.to_string())
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// An administrator's session with the API: the access token and its `sub`.
struct Api<'a> {
    app: &'a TestApp,
    token: String,
    sub: String,
}

impl Api<'_> {
    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> (u16, Value) {
        let reply = send(self.app, method, path, Some(&self.token), body).await;
        let body = reply.json();
        (reply.status, body)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    /// A POST without a body (actions such as `password-reset` or `rotate`).
    async fn action(&self, path: &str) -> (u16, Value) {
        self.call(Method::POST, path, None).await
    }

    async fn patch(&self, path: &str, body: &Value) -> (u16, Value) {
        self.call(Method::PATCH, path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(Method::DELETE, path, None).await
    }

    /// GET that must answer 200.
    async fn ok(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// The user with exactly this username, through the search.
    async fn user(&self, username: &str) -> Value {
        self.find_user(username)
            .await
            .unwrap_or_else(|| panic!("no user {username}"))
    }

    async fn find_user(&self, username: &str) -> Option<Value> {
        let page = self
            .ok(&format!("{USERS}?query={username}&limit=200"))
            .await;
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["username"] == username)
            .cloned()
    }

    async fn sub_of(&self, username: &str) -> String {
        self.user(username).await["sub"]
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn sessions(&self, sub: &str) -> Vec<String> {
        let list = self.ok(&format!("{USERS}/{sub}/sessions")).await;
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect()
    }
}

/// Signs alice (role `admin`) in at the console with scope `oxidp:admin`.
async fn admin(app: &TestApp) -> Api<'_> {
    admin_as(app, USER, PASSWORD).await
}

async fn admin_as<'a>(app: &'a TestApp, username: &str, password: &str) -> Api<'a> {
    let tokens = sign_in(app, username, password, &format!("openid {ADMIN_SCOPE}")).await;
    assert!(
        scopes(&tokens).contains(ADMIN_SCOPE),
        "the console was not granted {ADMIN_SCOPE}: {tokens}"
    );
    let token = tokens["access_token"].as_str().unwrap().to_string();
    Api {
        app,
        sub: jwt_claims(&token)["sub"].as_str().unwrap().to_string(),
        token,
    }
}

/// The password grant at the console.
async fn grant(app: &TestApp, username: &str, password: &str, scope: &str) -> (u16, Value) {
    let reply = Reply::read(
        app.token(
            &[
                ("grant_type", "password"),
                ("username", username),
                ("password", password),
                ("scope", scope),
            ],
            Some((CONSOLE, CONSOLE_SECRET)),
        )
        .await,
    )
    .await;
    (reply.status, reply.json())
}

async fn sign_in(app: &TestApp, username: &str, password: &str, scope: &str) -> Value {
    let (status, body) = grant(app, username, password, scope).await;
    assert_eq!(status, 200, "sign in as {username}: {body}");
    body
}

async fn refresh(app: &TestApp, refresh_token: &str) -> (u16, Value) {
    let reply = Reply::read(
        app.token(
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ],
            Some((CONSOLE, CONSOLE_SECRET)),
        )
        .await,
    )
    .await;
    (reply.status, reply.json())
}

async fn client_credentials(app: &TestApp, id: &str, secret: &str, scope: Option<&str>) -> Reply {
    let mut form = vec![("grant_type", "client_credentials")];
    if let Some(scope) = scope {
        form.push(("scope", scope));
    }
    Reply::read(app.token(&form, Some((id, secret))).await).await
}

async fn userinfo(app: &TestApp, token: &str) -> Reply {
    Reply::read(
        app.http
            .get(app.url("/userinfo"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// RFC 7009 revocation of a token by the console.
async fn revoke(app: &TestApp, token: &str) {
    let response = app
        .http
        .post(app.url("/revoke"))
        .basic_auth(CONSOLE, Some(CONSOLE_SECRET))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// Tokens of the third-party client "rp" for alice, through the code flow.
async fn third_party_tokens(app: &TestApp, scope: &str) -> Value {
    let url = app.url(&format!(
        "/authorize?response_type=code&client_id={CLIENT}&redirect_uri={REDIRECT}\
         &scope={}&state=st",
        scope.replace(' ', "%20")
    ));
    let back = app.authorize(&url).await;
    let code = query_param(&back, "code").unwrap_or_else(|| panic!("no code in {back}"));
    let reply = Reply::read(
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
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json()
}

/// The granted scopes of a token response.
fn scopes(tokens: &Value) -> BTreeSet<String> {
    tokens["scope"]
        .as_str()
        .unwrap_or_default()
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn jwt_part(jwt: &str, index: usize) -> Value {
    let part = jwt.split('.').nth(index).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn jwt_header(jwt: &str) -> Value {
    jwt_part(jwt, 0)
}

/// `real`'s header and claims (changed by `edit`), signed again with the test's own
/// signing key (`keys/test.pem`): a token only the claims tell apart from a real one.
fn resigned(app: &TestApp, real: &str, edit: impl FnOnce(&mut Map<String, Value>)) -> String {
    use josekit::jws::{JwsHeader, RS256};
    use josekit::jwt::{self, JwtPayload};
    let pem = std::fs::read(app.keys_dir().join("test.pem")).unwrap();
    let signer = RS256.signer_from_pem(&pem).unwrap();
    let mut header = JwsHeader::new();
    header.set_token_type("at+jwt");
    header.set_key_id(jwt_header(real)["kid"].as_str().unwrap());
    let mut map = jwt_claims(real).as_object().unwrap().clone();
    edit(&mut map);
    jwt::encode_with_signer(&JwtPayload::from_map(map).unwrap(), &header, &signer).unwrap()
}

/// The sorted names in a validation failure's `fields`.
fn field_names(body: &Value) -> Vec<String> {
    body["fields"]
        .as_object()
        .unwrap_or_else(|| panic!("no fields in {body}"))
        .keys()
        .cloned()
        .collect::<BTreeSet<String>>()
        .into_iter()
        .collect()
}

fn assert_validation_failed(case: &str, status: u16, body: &Value, fields: &[&str]) {
    assert_eq!(status, 400, "{case}: {body}");
    assert_eq!(body["error"], "validation_failed", "{case}: {body}");
    assert!(body["error_description"].is_string(), "{case}: {body}");
    let mut want: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
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

fn role_set(value: &Value) -> BTreeSet<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("roles are not an array: {value}"))
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect()
}

fn set<S: AsRef<str>>(items: &[S]) -> BTreeSet<String> {
    items.iter().map(|s| s.as_ref().to_string()).collect()
}

// ---------------------------------------------------------------------------------
// The outbox

/// The bodies (quoted-printable decoded) of every mail to `address` now.
fn mails_to(app: &TestApp, address: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(app.dir.path().join("outbox")) else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter_map(|raw| {
            let raw = raw.replace("\r\n", "\n");
            let (headers, body) = raw.split_once("\n\n")?;
            let to = headers.lines().any(|l| {
                l.to_ascii_lowercase().starts_with("to:")
                    && l.to_lowercase().contains(&address.to_lowercase())
            });
            let qp = headers
                .to_ascii_lowercase()
                .contains("content-transfer-encoding: quoted-printable");
            to.then(|| {
                if qp {
                    decode_quoted_printable(body)
                } else {
                    body.to_string()
                }
            })
        })
        .collect()
}

/// The token of a mailed `<issuer>/reset-password?token=…` link to `address`; waits up
/// to 5 s (mail is sent in the background).
async fn mailed_reset_token(app: &TestApp, address: &str) -> String {
    let marker = format!("{}/reset-password?token=", app.issuer);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found = mails_to(app, address).iter().find_map(|body| {
            let start = body.find(&marker)? + marker.len();
            let rest = &body[start..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                .unwrap_or(rest.len());
            Some(rest[..end].to_string())
        });
        if let Some(token) = found {
            return token;
        }
        assert!(
            Instant::now() < deadline,
            "no reset mail to {address} within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------
// The audit trail

/// Every event matching `query` (a query string without `limit`/`cursor`), newest
/// first, following `next_cursor`.
async fn audit_all(api: &Api<'_>, query: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("{AUDIT}?limit=200&{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = api.ok(&path).await;
        events.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return events,
        }
    }
}

/// Polls the trail until `done` accepts the events matching `query`.
async fn wait_for_audit(
    api: &Api<'_>,
    query: &str,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + AUDIT_WAIT;
    loop {
        let events = audit_all(api, query).await;
        if done(&events) {
            return events;
        }
        if Instant::now() > deadline {
            panic!(
                "{what}: not in the audit trail within {AUDIT_WAIT:?}; {query} gives {events:#?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for one event of type `kind` about `subject`.
async fn audit_event(api: &Api<'_>, kind: &str, subject: &str) -> Value {
    let query = format!("type={kind}&subject={subject}");
    wait_for_audit(api, &query, kind, |events| !events.is_empty()).await[0].clone()
}

fn event_time(event: &Value) -> i64 {
    let text = event["time"].as_str().unwrap();
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("time {text} is not RFC 3339: {e}"))
        .unix_timestamp()
}

fn event_ids(events: &[Value]) -> Vec<i64> {
    events
        .iter()
        .map(|e| e["id"].as_str().unwrap().parse::<i64>().unwrap())
        .collect()
}

/// Every object key anywhere in `value`.
fn keys_in(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                out.push(k.clone());
                keys_in(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| keys_in(v, out)),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------
// The endpoint table

/// The values the table's paths use.
#[derive(Clone)]
struct Ids {
    sub: String,
    sid: String,
    client: String,
    kid: String,
}

impl Ids {
    /// Ids that name nothing.
    fn absent() -> Self {
        Self {
            sub: "6f1c2a9e-0000-4000-8000-00000000dead".into(),
            sid: "no-such-session-0000000000000000000000000".into(),
            client: "no-such-client".into(),
            kid: "no-such-kid-00000000000000000000000000000".into(),
        }
    }
}

/// One operation of the admin API.
struct Endpoint {
    method: Method,
    /// The path as the OpenAPI document writes it.
    template: &'static str,
    /// `template` with the real values.
    path: String,
    body: Option<Value>,
    /// What the administrator gets when the table runs in order.
    ok: u16,
}

/// Every admin operation, in an order in which each one succeeds for an administrator:
/// the user `ids.sub` (with session `ids.sid`) is changed, then deleted; the client
/// `ids.client` is created, changed, then deleted; the key `ids.kid` is retired last
/// (after a rotation), since tokens signed with it stop working then.
fn endpoints(ids: &Ids) -> Vec<Endpoint> {
    let rows: Vec<(Method, &'static str, Option<Value>, u16)> = vec![
        (Method::GET, "/api/v1/admin/users", None, 200),
        (
            Method::POST,
            "/api/v1/admin/users",
            Some(json!({"username": "table-made", "email": "table-made@example.com"})),
            201,
        ),
        (Method::GET, "/api/v1/admin/users/{sub}", None, 200),
        (
            Method::PATCH,
            "/api/v1/admin/users/{sub}",
            Some(json!({"name": "Dave Table"})),
            200,
        ),
        (
            Method::POST,
            "/api/v1/admin/users/{sub}/password-reset",
            None,
            202,
        ),
        (Method::GET, "/api/v1/admin/users/{sub}/sessions", None, 200),
        (
            Method::DELETE,
            "/api/v1/admin/users/{sub}/sessions/{sid}",
            None,
            204,
        ),
        (Method::DELETE, "/api/v1/admin/users/{sub}", None, 204),
        (Method::GET, "/api/v1/admin/clients", None, 200),
        (
            Method::POST,
            "/api/v1/admin/clients",
            Some(json!({"id": ids.client, "redirect_uris": ["https://table.example/cb"]})),
            201,
        ),
        (Method::GET, "/api/v1/admin/clients/{id}", None, 200),
        (
            Method::PATCH,
            "/api/v1/admin/clients/{id}",
            Some(json!({"name": "Table Client"})),
            200,
        ),
        (Method::POST, "/api/v1/admin/clients/{id}/secret", None, 200),
        (Method::DELETE, "/api/v1/admin/clients/{id}", None, 204),
        (Method::GET, "/api/v1/admin/audit", None, 200),
        (Method::GET, "/api/v1/admin/keys", None, 200),
        (Method::POST, "/api/v1/admin/keys/rotate", None, 201),
        (Method::POST, "/api/v1/admin/keys/{kid}/retire", None, 204),
    ];
    rows.into_iter()
        .map(|(method, template, body, ok)| Endpoint {
            path: template
                .replace("{sub}", &ids.sub)
                .replace("{sid}", &ids.sid)
                .replace("{id}", &ids.client)
                .replace("{kid}", &ids.kid),
            method,
            template,
            body,
            ok,
        })
        .collect()
}

/// Real values for the table: dave (signed in once, so he has a session), a client id
/// not yet taken, the active key.
async fn table_ids(app: &TestApp, api: &Api<'_>) -> Ids {
    let tokens = sign_in(app, DAVE, DAVE_PASSWORD, "openid").await;
    let sid = jwt_claims(tokens["id_token"].as_str().unwrap())["sid"]
        .as_str()
        .expect("sid in the ID token")
        .to_string();
    let sub = api.sub_of(DAVE).await;
    assert_eq!(api.sessions(&sub).await, vec![sid.clone()]);
    let keys = api.ok(KEYS).await;
    Ids {
        sub,
        sid,
        client: "table-client".into(),
        kid: keys["items"][0]["kid"].as_str().unwrap().to_string(),
    }
}

/// Runs the table as the administrator; every operation answers its success status.
async fn run_as_admin(app: &TestApp, token: &str, table: &[Endpoint]) -> Vec<Reply> {
    let mut replies = Vec::new();
    for e in table {
        let reply = send(app, e.method.clone(), &e.path, Some(token), e.body.as_ref()).await;
        assert_eq!(
            reply.status, e.ok,
            "admin: {} {}: {}",
            e.method, e.path, reply.text
        );
        replies.push(reply);
    }
    replies
}

// ---------------------------------------------------------------------------------
// 1. Who may call

#[tokio::test]
async fn every_endpoint_needs_an_admins_token_with_the_admin_scope() {
    let app = spawn().await;
    let api = admin(&app).await;
    let ids = table_ids(&app, &api).await;

    // Valid tokens that are not an administrator's admin token: 403.
    let bob = sign_in(&app, BOB, BOB_PASSWORD, &format!("openid {ADMIN_SCOPE}")).await;
    assert!(
        scopes(&bob).contains(ADMIN_SCOPE),
        "a first-party client gets the scope for anyone; the role decides: {bob}"
    );
    let unscoped = sign_in(&app, USER, PASSWORD, "openid profile email").await;
    assert!(!scopes(&unscoped).contains(ADMIN_SCOPE), "{unscoped}");
    let third = third_party_tokens(&app, &format!("openid {ADMIN_SCOPE}")).await;
    assert!(
        !scopes(&third).contains(ADMIN_SCOPE),
        "a third-party client was granted {ADMIN_SCOPE}: {third}"
    );
    assert!(
        !jwt_claims(third["access_token"].as_str().unwrap())["scope"]
            .as_str()
            .unwrap_or_default()
            .split(' ')
            .any(|s| s == ADMIN_SCOPE)
    );
    let forbidden = [
        ("a non-admin's token with the scope", access(&bob)),
        ("an admin's token without the scope", access(&unscoped)),
        ("a third-party client's token", access(&third)),
    ];

    // Tokens that are not usable at all: 401 invalid_token.
    let revoked = access(&sign_in(&app, USER, PASSWORD, &format!("openid {ADMIN_SCOPE}")).await);
    assert_eq!(
        send(&app, Method::GET, USERS, Some(&revoked), None)
            .await
            .status,
        200
    );
    revoke(&app, &revoked).await;
    let expired = resigned(&app, &api.token, |c| {
        c.insert("iat".into(), json!(now() - 7200));
        c.insert("exp".into(), json!(now() - 3600));
    });
    // The same re-signing with a live `exp` is accepted: the expired copy is refused
    // for its `exp` alone.
    let live_copy = resigned(&app, &api.token, |c| {
        c.insert("jti".into(), json!(uuid::Uuid::new_v4().to_string()));
    });
    assert_eq!(
        send(&app, Method::GET, USERS, Some(&live_copy), None)
            .await
            .status,
        200
    );
    let mut forged_claims = jwt_claims(&api.token);
    forged_claims["sub"] = json!(ids.sub);
    let parts: Vec<&str> = api.token.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(forged_claims.to_string()),
        parts[2]
    );
    let id_token =
        sign_in(&app, USER, PASSWORD, &format!("openid {ADMIN_SCOPE}")).await["id_token"]
            .as_str()
            .unwrap()
            .to_string();
    let invalid = [
        ("garbage", "garbage".to_string()),
        ("an expired token", expired),
        ("a revoked token", revoked),
        ("a forged token", forged),
        ("an ID token", id_token),
    ];

    let before = app.snapshot().await;
    let absent = Ids::absent();
    for (real, other) in endpoints(&ids).iter().zip(endpoints(&absent).iter()) {
        let what = format!("{} {}", real.method, real.template);
        // No token.
        let mut bodies = Vec::new();
        for e in [real, other] {
            let reply = send(&app, e.method.clone(), &e.path, None, e.body.as_ref()).await;
            assert_eq!(reply.status, 401, "{what} without a token: {}", reply.text);
            let challenge = reply
                .header("www-authenticate")
                .unwrap_or_else(|| panic!("{what}: 401 without WWW-Authenticate"));
            assert!(challenge.starts_with("Bearer "), "{what}: {challenge}");
            assert!(
                !challenge.contains("error="),
                "{what}: RFC 6750 §3.1: no error code without credentials: {challenge}"
            );
            bodies.push(reply.text);
        }
        assert_eq!(
            bodies[0], bodies[1],
            "{what}: the 401 tells resources apart"
        );
        for (kind, token) in &invalid {
            let mut bodies = Vec::new();
            for e in [real, other] {
                let reply = send(
                    &app,
                    e.method.clone(),
                    &e.path,
                    Some(token.as_str()),
                    e.body.as_ref(),
                )
                .await;
                assert_eq!(reply.status, 401, "{what} with {kind}: {}", reply.text);
                let challenge = reply
                    .header("www-authenticate")
                    .unwrap_or_else(|| panic!("{what} with {kind}: no WWW-Authenticate"));
                assert!(challenge.starts_with("Bearer "), "{what}: {challenge}");
                assert!(
                    challenge.contains("error=\"invalid_token\""),
                    "{what} with {kind}: {challenge}"
                );
                assert_eq!(reply.json()["error"], "invalid_token", "{what} with {kind}");
                bodies.push(reply.text);
            }
            assert_eq!(bodies[0], bodies[1], "{what} with {kind}: tells apart");
        }
        for (kind, token) in &forbidden {
            let mut bodies = Vec::new();
            for e in [real, other] {
                let reply = send(
                    &app,
                    e.method.clone(),
                    &e.path,
                    Some(token.as_str()),
                    e.body.as_ref(),
                )
                .await;
                assert_eq!(reply.status, 403, "{what} with {kind}: {}", reply.text);
                let body = reply.json();
                assert_eq!(body["error"], "insufficient_scope", "{what} with {kind}");
                for id in [&ids.sub, &ids.sid, &ids.client, &ids.kid] {
                    assert!(!reply.text.contains(id.as_str()), "{what}: {}", reply.text);
                }
                bodies.push(reply.text);
            }
            assert_eq!(bodies[0], bodies[1], "{what} with {kind}: tells apart");
        }
    }
    assert_eq!(
        app.snapshot().await,
        before,
        "a refused request changed something"
    );
    assert_eq!(api.sessions(&ids.sub).await, vec![ids.sid.clone()]);

    // The administrator's token reaches every operation.
    run_as_admin(&app, &api.token, &endpoints(&ids)).await;
}

fn access(tokens: &Value) -> String {
    tokens["access_token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn the_role_is_checked_on_every_request() {
    let app = spawn().await;
    let alice = admin(&app).await;
    let erin = admin_as(&app, ERIN, ERIN_PASSWORD).await;
    let bob = sign_in(&app, BOB, BOB_PASSWORD, &format!("openid {ADMIN_SCOPE}")).await;
    let bob_token = access(&bob);
    let bob_sub = jwt_claims(&bob_token)["sub"].as_str().unwrap().to_string();
    let status = |token: String| {
        let app = &app;
        async move {
            send(app, Method::GET, USERS, Some(&token), None)
                .await
                .status
        }
    };
    assert_eq!(status(bob_token.clone()).await, 403);

    // Granting the role lets bob's existing token in at once; taking it away shuts it out.
    let (code, body) = alice
        .patch(&format!("{USERS}/{bob_sub}"), &json!({"roles": ["admin"]}))
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(status(bob_token.clone()).await, 200);
    let (code, body) = alice
        .patch(&format!("{USERS}/{bob_sub}"), &json!({"roles": []}))
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(role_set(&body["roles"]), set(&["user"]));
    assert_eq!(status(bob_token).await, 403);

    // An administrator may take the role from another administrator.
    assert_eq!(status(erin.token.clone()).await, 200);
    let (code, body) = alice
        .patch(
            &format!("{USERS}/{}", erin.sub),
            &json!({"roles": ["user"]}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(status(erin.token.clone()).await, 403);

    // A refreshed admin token keeps the scope and still works.
    let tokens = sign_in(&app, USER, PASSWORD, &format!("openid {ADMIN_SCOPE}")).await;
    let (code, refreshed) = refresh(&app, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(code, 200, "{refreshed}");
    assert!(scopes(&refreshed).contains(ADMIN_SCOPE), "{refreshed}");
    assert_eq!(status(access(&refreshed)).await, 200);
}

#[tokio::test]
async fn client_credentials_tokens_never_carry_the_admin_scope() {
    let app = spawn().await;
    let api = admin(&app).await;
    // A service client that lists oxidp:admin among its scopes is refused outright
    // (src/oidc/registration.rs): listed, the scope would reach client-credentials tokens.
    let before = app.snapshot().await;
    let (status, body) = api
        .post(
            CLIENTS,
            &json!({"id": "svc", "grant_types": ["client_credentials"],
                    "scopes": [ADMIN_SCOPE, "api:read"]}),
        )
        .await;
    assert_validation_failed("oxidp:admin listed", status, &body, &["scopes"]);
    assert_eq!(app.snapshot().await, before, "a refused client was stored");

    // A service client without it cannot ask for it either: the scope goes only to
    // first-party clients' users (src/oidc/claims.rs).
    let (status, body) = api
        .post(
            CLIENTS,
            &json!({"id": "svc", "grant_types": ["client_credentials"],
                    "scopes": ["api:read"]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let secret = body["client_secret"].as_str().unwrap().to_string();
    for scope in [None, Some(ADMIN_SCOPE), Some("api:read oxidp:admin")] {
        let reply = client_credentials(&app, "svc", &secret, scope).await;
        if reply.status == 200 {
            let tokens = reply.json();
            assert!(
                !scopes(&tokens).contains(ADMIN_SCOPE),
                "scope {scope:?}: a service client was granted {ADMIN_SCOPE}: {tokens}"
            );
            let got = send(&app, Method::GET, USERS, Some(&access(&tokens)), None).await;
            assert_eq!(got.status, 403, "{}", got.text);
        } else {
            assert_eq!(reply.status, 400, "{}", reply.text);
            assert_eq!(reply.json()["error"], "invalid_scope");
        }
    }
}

#[tokio::test]
async fn a_client_whose_id_is_an_admins_sub_is_not_that_admin() {
    let app = spawn().await;
    let api = admin(&app).await;
    // Client ids and subs share an alphabet: a client named like alice's sub must not
    // act as alice (a client's token is not a user's). Listing oxidp:admin is refused.
    let before = app.snapshot().await;
    let (status, body) = api
        .post(
            CLIENTS,
            &json!({"id": api.sub, "grant_types": ["client_credentials"],
                    "scopes": [ADMIN_SCOPE]}),
        )
        .await;
    assert_validation_failed("oxidp:admin listed", status, &body, &["scopes"]);
    assert_eq!(app.snapshot().await, before, "a refused client was stored");

    // The same client without the scope: its tokens, asked for the admin scope or not,
    // do not reach the admin API.
    let (status, body) = api
        .post(
            CLIENTS,
            &json!({"id": api.sub, "grant_types": ["client_credentials"],
                    "scopes": ["api:read"]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let secret = body["client_secret"].as_str().unwrap().to_string();
    let mut tokens_seen = 0;
    for scope in [None, Some(ADMIN_SCOPE)] {
        let reply = client_credentials(&app, &api.sub, &secret, scope).await;
        if reply.status != 200 {
            assert_eq!(reply.status, 400, "scope {scope:?}: {}", reply.text);
            assert_eq!(reply.json()["error"], "invalid_scope", "scope {scope:?}");
            continue;
        }
        tokens_seen += 1;
        let token = access(&reply.json());
        let got = send(&app, Method::GET, USERS, Some(&token), None).await;
        assert_eq!(
            got.status, 403,
            "a client_credentials token (sub = client id = alice's sub) used the admin API: {}",
            got.text
        );
    }
    assert!(tokens_seen > 0, "the client got no token at all");
}

// ---------------------------------------------------------------------------------
// 2. Users

#[tokio::test]
async fn creating_users() {
    let app = spawn().await;
    let api = admin(&app).await;

    let (status, carol) = api
        .post(
            USERS,
            &json!({"username": "carol", "email": "Carol.Smith@Example.COM",
                    "password": STRONG, "name": "Carol Smith", "roles": ["support"]}),
        )
        .await;
    assert_eq!(status, 201, "{carol}");
    let sub = carol["sub"].as_str().unwrap();
    assert!(!sub.is_empty() && !sub.contains("carol"), "{carol}");
    assert_eq!(carol["username"], "carol");
    assert_eq!(carol["email"], "carol.smith@example.com");
    assert_eq!(carol["email_verified"], false);
    assert_eq!(carol["name"], "Carol Smith");
    assert_eq!(role_set(&carol["roles"]), set(&["user", "support"]));
    assert_eq!(carol["disabled"], false);
    assert_eq!(carol["has_password"], true);
    assert!(
        carol["created_at"].as_i64().unwrap() >= now() - 60,
        "{carol}"
    );
    assert!(!carol.to_string().contains(STRONG));
    assert_eq!(api.ok(&format!("{USERS}/{sub}")).await, carol);
    // The password works at once.
    let tokens = sign_in(&app, "carol", STRONG, "openid").await;
    assert_eq!(jwt_claims(tokens["id_token"].as_str().unwrap())["sub"], sub);

    // A new administrator can use the API at once.
    let (status, root) = api
        .post(
            USERS,
            &json!({"username": "root2", "email": "root2@example.com", "password": STRONGER,
                    "roles": ["admin"]}),
        )
        .await;
    assert_eq!(status, 201, "{root}");
    let root = admin_as(&app, "root2", STRONGER).await;
    assert_eq!(
        root.sub,
        root.ok(&format!("{USERS}/{}", root.sub)).await["sub"]
    );

    // Without a password: the user exists but cannot sign in until a reset.
    let (status, nopass) = api
        .post(
            USERS,
            &json!({"username": "nopass", "email": "nopass@example.com", "email_verified": true}),
        )
        .await;
    assert_eq!(status, 201, "{nopass}");
    assert_eq!(nopass["has_password"], false);
    assert_eq!(nopass["email_verified"], true);
    assert_eq!(nopass["name"], Value::Null);
    assert_eq!(role_set(&nopass["roles"]), set(&["user"]));
    let (status, body) = grant(&app, "nopass", STRONG, "openid").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // Refused, and nothing stored.
    let before = app.snapshot().await;
    let cases: Vec<(&str, Value, u16, &str, &[&str])> = vec![
        (
            "a taken username in other case",
            json!({"username": "CAROL", "email": "other@example.com", "password": STRONGER}),
            409,
            "username_taken",
            &[],
        ),
        (
            "a taken e-mail address in other case",
            json!({"username": "carol2", "email": "CAROL.smith@example.com"}),
            409,
            "email_taken",
            &[],
        ),
        (
            "a seeded user's address",
            json!({"username": "alice2", "email": "alice@example.com"}),
            409,
            "email_taken",
            &[],
        ),
        (
            "a common password",
            json!({"username": "weak", "email": "weak@example.com", "password": "password"}),
            400,
            "validation_failed",
            &["password"],
        ),
        (
            "a short password",
            json!({"username": "weak", "email": "weak@example.com", "password": "x7#q"}),
            400,
            "validation_failed",
            &["password"],
        ),
        (
            "the username as password",
            json!({"username": "weakling-77", "email": "weak@example.com",
                   "password": "weakling-77"}),
            400,
            "validation_failed",
            &["password"],
        ),
        (
            "a username with a space",
            json!({"username": "has space", "email": "space@example.com"}),
            400,
            "validation_failed",
            &["username"],
        ),
        (
            "a two-letter username",
            json!({"username": "ab", "email": "ab@example.com"}),
            400,
            "validation_failed",
            &["username"],
        ),
        (
            "a bad e-mail address",
            json!({"username": "mailless", "email": "not-an-address"}),
            400,
            "validation_failed",
            &["email"],
        ),
        (
            "an e-mail address with two @",
            json!({"username": "mailless", "email": "a@b@example.com"}),
            400,
            "validation_failed",
            &["email"],
        ),
        (
            "an unknown field",
            json!({"username": "extra", "email": "extra@example.com", "password_hash": "x"}),
            400,
            "invalid_request",
            &[],
        ),
        (
            "disabled is not a create field",
            json!({"username": "extra", "email": "extra@example.com", "disabled": true}),
            400,
            "invalid_request",
            &[],
        ),
        (
            "no e-mail address",
            json!({"username": "extra"}),
            400,
            "invalid_request",
            &[],
        ),
        (
            "roles not a list",
            json!({"username": "extra", "email": "extra@example.com", "roles": "admin"}),
            400,
            "invalid_request",
            &[],
        ),
        (
            "not an object",
            json!(["carol"]),
            400,
            "invalid_request",
            &[],
        ),
    ];
    for (case, body, status, error, fields) in cases {
        let (got, answer) = api.post(USERS, &body).await;
        if error == "validation_failed" {
            assert_validation_failed(case, got, &answer, fields);
        } else {
            assert_eq!(got, status, "{case}: {answer}");
            assert_eq!(answer["error"], error, "{case}: {answer}");
        }
        assert_eq!(app.snapshot().await, before, "{case}: something was stored");
    }
    for (case, content_type, body) in [
        (
            "text/plain",
            "text/plain",
            r#"{"username":"typed","email":"typed@example.com"}"#,
        ),
        (
            "a form",
            "application/x-www-form-urlencoded",
            "username=typed&email=typed%40example.com",
        ),
        ("broken JSON", "application/json", r#"{"username":"typed","#),
        ("an empty body", "application/json", ""),
    ] {
        let reply = send_raw(&app, Method::POST, USERS, &api.token, content_type, body).await;
        assert_eq!(reply.status, 400, "{case}: {}", reply.text);
        assert_eq!(reply.json()["error"], "invalid_request", "{case}");
        assert_eq!(app.snapshot().await, before, "{case}: something was stored");
    }
}

#[tokio::test]
async fn a_bad_role_is_reported_under_the_roles_field() {
    let app = spawn().await;
    let api = admin(&app).await;
    let before = app.snapshot().await;
    let (status, body) = api
        .post(
            USERS,
            &json!({"username": "rolled", "email": "rolled@example.com", "roles": ["Not A Role"]}),
        )
        .await;
    assert_validation_failed("a bad role", status, &body, &["roles"]);
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn listing_and_searching_users_page_by_page() {
    let app = spawn().await;
    let api = admin(&app).await;
    for name in [
        "list-echo",
        "List-Delta",
        "list-alpha",
        "list-charlie",
        "list-bravo",
    ] {
        let (status, body) = api
            .post(
                USERS,
                &json!({"username": name, "email": format!("{}@roster.example", name.to_lowercase())}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let listed = [
        "list-alpha",
        "list-bravo",
        "list-charlie",
        "List-Delta",
        "list-echo",
    ];

    // Two at a time through `list-`, following next_cursor until it is null.
    let pages = |query: &'static str| {
        let api = &api;
        async move {
            let mut names: Vec<Vec<String>> = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let mut path = format!("{USERS}?{query}&limit=2");
                if let Some(c) = &cursor {
                    path.push_str(&format!("&cursor={c}"));
                }
                let page = api.ok(&path).await;
                let items = page["items"].as_array().unwrap();
                assert!(items.len() <= 2, "{page}");
                names.push(
                    items
                        .iter()
                        .map(|u| u["username"].as_str().unwrap().to_string())
                        .collect(),
                );
                match &page["next_cursor"] {
                    Value::String(c) => cursor = Some(c.clone()),
                    Value::Null => return names,
                    other => panic!("next_cursor {other}"),
                }
                assert!(names.len() < 20, "no end to the pages");
            }
        }
    };
    let by_page = pages("query=list-").await;
    assert_eq!(
        by_page,
        vec![
            vec!["list-alpha", "list-bravo"],
            vec!["list-charlie", "List-Delta"],
            vec!["list-echo"],
        ]
    );
    // The query matches a part of the username or the e-mail address, in any case.
    for query in ["query=LIST-", "query=roster.example", "query=%20list-%20"] {
        let all: Vec<String> = pages(query).await.concat();
        assert_eq!(all, listed, "{query}");
    }
    assert_eq!(pages("query=delta").await.concat(), vec!["List-Delta"]);
    // LIKE wildcards are plain characters.
    for query in ["query=%25", "query=_", "query=list%25echo"] {
        assert_eq!(pages(query).await.concat(), Vec::<String>::new(), "{query}");
    }

    // Everyone, each exactly once, by username.
    let everyone: Vec<String> = pages("").await.concat();
    let mut expected: Vec<String> = [USER, BOB, ERIN, DAVE]
        .iter()
        .map(|s| s.to_string())
        .chain(listed.iter().map(|s| s.to_string()))
        .collect();
    expected.sort_by_key(|s| s.to_lowercase());
    assert_eq!(everyone, expected);
    let whole = api.ok(&format!("{USERS}?limit=200")).await;
    assert_eq!(whole["next_cursor"], Value::Null);
    assert_eq!(whole["items"].as_array().unwrap().len(), expected.len());
    let bob = api.user(BOB).await;
    assert_eq!(bob["email"], "bob@example.com");
    assert_eq!(bob["name"], "Bob Builder");
    assert_eq!(
        bob["email_verified"], true,
        "seeded users count as verified"
    );
    assert_eq!(bob["disabled"], false);
    assert_eq!(bob["has_password"], true);
    assert!(bob.get("password").is_none() && bob.get("password_hash").is_none());

    for bad in [
        "limit=0",
        "limit=201",
        "limit=two",
        "limit=-1",
        "cursor=%21%21%21",
    ] {
        let (status, body) = api.get(&format!("{USERS}?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"], "invalid_request", "{bad}");
    }
    let (status, _) = api.get(&format!("{USERS}?query={}", "x".repeat(300))).await;
    assert_eq!(status, 400, "an overlong query");
}

#[tokio::test]
async fn showing_a_user() {
    let app = spawn().await;
    let api = admin(&app).await;
    let bob = api.user(BOB).await;
    let sub = bob["sub"].as_str().unwrap();
    assert_eq!(api.ok(&format!("{USERS}/{sub}")).await, bob);
    for unknown in [
        Ids::absent().sub,
        BOB.to_string(),
        "bob@example.com".to_string(),
        "x".repeat(300),
        sub.to_uppercase(),
    ] {
        let (status, body) = api.get(&format!("{USERS}/{unknown}")).await;
        assert_eq!(status, 404, "{unknown}: {body}");
        assert_eq!(body["error"], "not_found", "{unknown}");
    }
}

#[tokio::test]
async fn patching_a_users_profile_roles_and_address() {
    let app = spawn().await;
    let api = admin(&app).await;
    let bob = api.user(BOB).await;
    let sub = bob["sub"].as_str().unwrap().to_string();
    let path = format!("{USERS}/{sub}");

    let (status, body) = api
        .patch(
            &path,
            &json!({"name": "Robert Builder", "given_name": "Robert", "family_name": "Builder",
                    "locale": "en-GB", "picture": "https://img.example/bob.png"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["name"], "Robert Builder");
    assert_eq!(body["given_name"], "Robert");
    assert_eq!(body["family_name"], "Builder");
    assert_eq!(body["locale"], "en-GB");
    assert_eq!(body["picture"], "https://img.example/bob.png");
    assert_eq!(body["email"], bob["email"], "untouched fields stay");
    assert_eq!(body["roles"], bob["roles"]);
    assert_eq!(api.ok(&path).await, body);
    // "" clears a field.
    let (status, body) = api.patch(&path, &json!({"given_name": ""})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["given_name"], Value::Null);
    assert_eq!(body["family_name"], "Builder");
    let tokens = sign_in(&app, BOB, BOB_PASSWORD, "openid profile").await;
    let info = userinfo(&app, &access(&tokens)).await.json();
    assert_eq!(info["name"], "Robert Builder");
    assert_eq!(info["family_name"], "Builder");
    assert!(info.get("given_name").is_none_or(Value::is_null), "{info}");

    // Roles: the whole set; `user` is always kept. Tokens and UserInfo show them.
    let (status, body) = api
        .patch(&path, &json!({"roles": ["editor", "reviewer"]}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        role_set(&body["roles"]),
        set(&["user", "editor", "reviewer"])
    );
    let tokens = sign_in(&app, BOB, BOB_PASSWORD, "openid roles").await;
    assert_eq!(
        role_set(&jwt_claims(tokens["id_token"].as_str().unwrap())["roles"]),
        set(&["user", "editor", "reviewer"])
    );
    let info = userinfo(&app, &access(&tokens)).await.json();
    assert_eq!(
        role_set(&info["roles"]),
        set(&["user", "editor", "reviewer"])
    );
    let (status, body) = api.patch(&path, &json!({"roles": ["editor"]})).await;
    assert_eq!(status, 200, "{body}");
    let tokens = sign_in(&app, BOB, BOB_PASSWORD, "openid roles").await;
    assert_eq!(
        role_set(&jwt_claims(tokens["id_token"].as_str().unwrap())["roles"]),
        set(&["user", "editor"])
    );

    // The same address in other case is no change: it stays verified.
    let (status, body) = api.patch(&path, &json!({"email": "BOB@Example.com"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["email"], "bob@example.com");
    assert_eq!(body["email_verified"], true, "{body}");
    // A new address is not verified until the admin says so.
    let (status, body) = api
        .patch(&path, &json!({"email": "Bob.Builder@Example.org"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["email"], "bob.builder@example.org");
    assert_eq!(body["email_verified"], false);
    let (status, body) = api.patch(&path, &json!({"email_verified": true})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["email_verified"], true);
    // The new address signs in; the old one no longer names bob.
    sign_in(&app, "bob.builder@example.org", BOB_PASSWORD, "openid").await;
    let (status, _) = grant(&app, "bob@example.com", BOB_PASSWORD, "openid").await;
    assert_eq!(status, 400);

    // Refused, and nothing changed.
    let before = app.snapshot().await;
    let shown = api.ok(&path).await;
    let cases: Vec<(&str, Value, u16, &str, &[&str])> = vec![
        (
            "another user's address",
            json!({"email": "ALICE@example.com"}),
            409,
            "email_taken",
            &[],
        ),
        (
            "a bad address",
            json!({"email": "nope"}),
            400,
            "validation_failed",
            &["email"],
        ),
        (
            "a bad locale",
            json!({"locale": "not a locale!"}),
            400,
            "validation_failed",
            &["locale"],
        ),
        (
            "a picture that is not an http(s) URL",
            json!({"picture": "ftp://img.example/x.png"}),
            400,
            "validation_failed",
            &["picture"],
        ),
        (
            "a bad role",
            json!({"roles": ["Bad Role"]}),
            400,
            "validation_failed",
            &["roles"],
        ),
        (
            "every bad field at once, with a good one",
            json!({"name": "Fine", "locale": "!!", "picture": "nope", "email": "x"}),
            400,
            "validation_failed",
            &["email", "locale", "picture"],
        ),
        (
            "the username cannot change",
            json!({"username": "robert"}),
            400,
            "invalid_request",
            &[],
        ),
        (
            "a password is not a field",
            json!({"password": STRONG}),
            400,
            "invalid_request",
            &[],
        ),
        (
            "disabled is a boolean",
            json!({"disabled": "yes"}),
            400,
            "invalid_request",
            &[],
        ),
        (
            "a name with a control character",
            json!({"name": "Bob\u{0007}"}),
            400,
            "validation_failed",
            &["name"],
        ),
    ];
    for (case, body, status, error, fields) in cases {
        let (got, answer) = api.patch(&path, &body).await;
        if error == "validation_failed" {
            assert_validation_failed(case, got, &answer, fields);
        } else {
            assert_eq!(got, status, "{case}: {answer}");
            assert_eq!(answer["error"], error, "{case}: {answer}");
        }
        assert_eq!(app.snapshot().await, before, "{case}: something changed");
    }
    let reply = send_raw(
        &app,
        Method::PATCH,
        &path,
        &api.token,
        "text/plain",
        r#"{"name":"Typed"}"#,
    )
    .await;
    assert_eq!(reply.status, 400, "text/plain: {}", reply.text);
    let (status, body) = api
        .patch(
            &format!("{USERS}/{}", Ids::absent().sub),
            &json!({"name": "Nobody"}),
        )
        .await;
    assert_eq!(
        (status, &body["error"]),
        (404, &json!("not_found")),
        "{body}"
    );
    assert_eq!(app.snapshot().await, before);
    assert_eq!(api.ok(&path).await, shown);
}

#[tokio::test]
async fn disabling_a_user_ends_their_sign_ins() {
    let app = spawn().await;
    let api = admin(&app).await;
    let sub = api.sub_of(BOB).await;
    let path = format!("{USERS}/{sub}");
    let tokens = sign_in(&app, BOB, BOB_PASSWORD, "openid profile").await;
    let refresh_token = tokens["refresh_token"].as_str().expect("a refresh token");
    assert_eq!(userinfo(&app, &access(&tokens)).await.status, 200);
    assert_eq!(api.sessions(&sub).await.len(), 1);

    let (status, body) = api.patch(&path, &json!({"disabled": true})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["disabled"], true);
    assert_eq!(api.ok(&path).await["disabled"], true);
    let (status, body) = refresh(&app, refresh_token).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let (status, body) = grant(&app, BOB, BOB_PASSWORD, "openid").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    assert_eq!(userinfo(&app, &access(&tokens)).await.status, 401);
    assert_eq!(api.sessions(&sub).await, Vec::<String>::new());

    // Enabled again: a new sign-in works; what was revoked stays revoked.
    let (status, body) = api.patch(&path, &json!({"disabled": false})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["disabled"], false);
    sign_in(&app, BOB, BOB_PASSWORD, "openid").await;
    let (status, _) = refresh(&app, refresh_token).await;
    assert_eq!(status, 400);
    assert_eq!(userinfo(&app, &access(&tokens)).await.status, 401);
}

#[tokio::test]
async fn administrators_cannot_lock_themselves_out() {
    let app = spawn().await;
    let api = admin(&app).await;
    let own = format!("{USERS}/{}", api.sub);
    let before = app.snapshot().await;

    let (status, body) = api.patch(&own, &json!({"disabled": true})).await;
    assert_validation_failed("disable myself", status, &body, &["disabled"]);
    let (status, body) = api.patch(&own, &json!({"roles": ["user"]})).await;
    assert_validation_failed("drop my admin role", status, &body, &["roles"]);
    let (status, body) = api.patch(&own, &json!({"roles": []})).await;
    assert_validation_failed("drop all my roles", status, &body, &["roles"]);
    let (status, body) = api.delete(&own).await;
    assert_eq!(status, 409, "delete myself: {body}");
    assert!(body["error"].is_string(), "{body}");
    assert_eq!(app.snapshot().await, before, "something changed");
    assert_eq!(api.ok(&own).await["disabled"], false);

    // Everything else about oneself may change.
    let (status, body) = api
        .patch(
            &own,
            &json!({"name": "Alice Admin", "roles": ["admin", "ops"], "disabled": false}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(role_set(&body["roles"]), set(&["user", "admin", "ops"]));
    assert_eq!(api.ok(USERS).await["items"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn deleting_a_user() {
    let app = spawn().await;
    let api = admin(&app).await;
    let sub = api.sub_of(BOB).await;
    let path = format!("{USERS}/{sub}");
    let tokens = sign_in(&app, BOB, BOB_PASSWORD, "openid profile").await;
    let refresh_token = tokens["refresh_token"].as_str().unwrap();

    let reply = send(&app, Method::DELETE, &path, Some(&api.token), None).await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    assert!(reply.text.is_empty(), "{}", reply.text);
    let (status, _) = api.get(&path).await;
    assert_eq!(status, 404);
    assert_eq!(api.find_user(BOB).await, None);
    let (status, _) = api.get(&format!("{path}/sessions")).await;
    assert_eq!(status, 404);
    let (status, body) = refresh(&app, refresh_token).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let (status, body) = grant(&app, BOB, BOB_PASSWORD, "openid").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    assert_eq!(userinfo(&app, &access(&tokens)).await.status, 401);
    let (status, body) = api.delete(&path).await;
    assert_eq!(
        (status, &body["error"]),
        (404, &json!("not_found")),
        "{body}"
    );

    // The username and address are free again; the new account is someone else.
    let (status, body) = api
        .post(
            USERS,
            &json!({"username": BOB, "email": "bob@example.com", "password": STRONG}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_ne!(body["sub"], json!(sub));
    let (status, _) = refresh(&app, refresh_token).await;
    assert_eq!(
        status, 400,
        "the old refresh token woke up with the new account"
    );
}

#[tokio::test]
async fn an_admin_sends_a_password_reset_mail() {
    let app = spawn().await;
    let api = admin(&app).await;
    let sub = api.sub_of(BOB).await;

    let reply = send(
        &app,
        Method::POST,
        &format!("{USERS}/{sub}/password-reset"),
        Some(&api.token),
        None,
    )
    .await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    let token = mailed_reset_token(&app, "bob@example.com").await;
    assert!(token.len() >= 32, "{token}");
    // The mailed link sets a new password.
    let confirm = app
        .http
        .post(app.url("/api/v1/account/password-reset/confirm"))
        .json(&json!({"token": token, "password": STRONGER}))
        .send()
        .await
        .unwrap();
    assert_eq!(confirm.status(), 204, "{}", confirm.text().await.unwrap());
    sign_in(&app, BOB, STRONGER, "openid").await;
    let (status, _) = grant(&app, BOB, BOB_PASSWORD, "openid").await;
    assert_eq!(status, 400);

    let (status, body) = api
        .action(&format!("{USERS}/{}/password-reset", Ids::absent().sub))
        .await;
    assert_eq!(
        (status, &body["error"]),
        (404, &json!("not_found")),
        "{body}"
    );
    assert_eq!(mails_to(&app, "alice@example.com").len(), 0);
}

#[tokio::test]
async fn listing_and_ending_a_users_sessions() {
    let app = spawn().await;
    let api = admin(&app).await;
    let sub = api.sub_of(BOB).await;
    let first = sign_in(&app, BOB, BOB_PASSWORD, "openid").await;
    let second = sign_in(&app, BOB, BOB_PASSWORD, "openid").await;
    let sid = |tokens: &Value| {
        jwt_claims(tokens["id_token"].as_str().unwrap())["sid"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (sid1, sid2) = (sid(&first), sid(&second));
    assert_ne!(sid1, sid2);

    let list = api.ok(&format!("{USERS}/{sub}/sessions")).await;
    let items = list["items"].as_array().unwrap();
    let ids: BTreeSet<String> = items
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        ids,
        [sid1.clone(), sid2.clone()]
            .into_iter()
            .collect::<BTreeSet<String>>()
    );
    for s in items {
        assert!(s["created_at"].as_i64().unwrap() >= now() - 60, "{s}");
        assert!(s["auth_time"].as_i64().unwrap() >= now() - 60, "{s}");
    }
    // Alice's own session is not bob's to end.
    let alice_sid = sid(&sign_in(&app, USER, PASSWORD, "openid").await);

    let before = app.snapshot().await;
    for (case, path) in [
        (
            "an unknown sid",
            format!("{USERS}/{sub}/sessions/no-such-session"),
        ),
        (
            "another user's sid",
            format!("{USERS}/{sub}/sessions/{alice_sid}"),
        ),
        (
            "an unknown user",
            format!("{USERS}/{}/sessions/{sid1}", Ids::absent().sub),
        ),
    ] {
        let (status, body) = api.delete(&path).await;
        assert_eq!(
            (status, &body["error"]),
            (404, &json!("not_found")),
            "{case}: {body}"
        );
    }
    assert_eq!(app.snapshot().await, before);
    assert_eq!(api.sessions(&api.sub).await.len(), 2, "alice's sessions");
    assert_eq!(api.sessions(&sub).await.len(), 2);

    let reply = send(
        &app,
        Method::DELETE,
        &format!("{USERS}/{sub}/sessions/{sid1}"),
        Some(&api.token),
        None,
    )
    .await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    assert_eq!(api.sessions(&sub).await, vec![sid2.clone()]);
    let (status, body) = refresh(&app, first["refresh_token"].as_str().unwrap()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    assert_eq!(
        userinfo(&app, &access(&first)).await.status,
        401,
        "its access token"
    );
    assert_eq!(userinfo(&app, &access(&second)).await.status, 200);
    let (status, body) = refresh(&app, second["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 200, "the other session's refresh token: {body}");
    let (status, _) = api.delete(&format!("{USERS}/{sub}/sessions/{sid1}")).await;
    assert_eq!(status, 404, "ending it again");
    let (status, _) = api
        .get(&format!("{USERS}/{}/sessions", Ids::absent().sub))
        .await;
    assert_eq!(status, 404);
}

// ---------------------------------------------------------------------------------
// 3. Clients

#[tokio::test]
async fn creating_clients() {
    let app = spawn().await;
    let api = admin(&app).await;

    // Confidential: the secret is in the answer once.
    let (status, created) = api
        .post(
            CLIENTS,
            &json!({"id": "reports", "name": "Reports", "grant_types": ["client_credentials"],
                    "scopes": ["reports:read"]}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["client_secret"].as_str().unwrap().to_string();
    assert!(secret.len() >= 32, "{secret}");
    assert_eq!(created["id"], "reports");
    assert_eq!(created["name"], "Reports");
    assert_eq!(created["token_endpoint_auth_method"], "client_secret_basic");
    assert_eq!(created["grant_types"], json!(["client_credentials"]));
    assert_eq!(created["scopes"], json!(["reports:read"]));
    assert_eq!(created["first_party"], false);
    assert_eq!(created["source"], "api");
    let shown = api.ok(&format!("{CLIENTS}/reports")).await;
    let mut without_secret = created.clone();
    without_secret
        .as_object_mut()
        .unwrap()
        .remove("client_secret");
    assert_eq!(shown, without_secret);
    let list = api.ok(CLIENTS).await;
    let listed: Vec<&Value> = list["items"].as_array().unwrap().iter().collect();
    assert!(listed.iter().any(|c| **c == without_secret), "{list}");
    assert!(!list.to_string().contains(&secret));
    assert!(!list.to_string().contains(CLIENT_SECRET));
    let mut keys = Vec::new();
    keys_in(&list, &mut keys);
    assert!(!keys.iter().any(|k| k.contains("secret")), "{keys:?}");

    let reply = client_credentials(&app, "reports", &secret, None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let tokens = reply.json();
    assert_eq!(tokens["scope"], "reports:read");
    assert_eq!(jwt_claims(&access(&tokens))["client_id"], "reports");
    let reply =
        client_credentials(&app, "reports", "wrong-secret-0123456789-0123456789", None).await;
    assert_eq!(reply.status, 401, "{}", reply.text);
    assert_eq!(reply.json()["error"], "invalid_client");

    // client_secret_post.
    let (status, poster) = api
        .post(
            CLIENTS,
            &json!({"id": "poster2", "grant_types": ["client_credentials"],
                    "token_endpoint_auth_method": "client_secret_post"}),
        )
        .await;
    assert_eq!(status, 201, "{poster}");
    assert_eq!(poster["token_endpoint_auth_method"], "client_secret_post");
    let reply = Reply::read(
        app.token(
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "poster2"),
                ("client_secret", poster["client_secret"].as_str().unwrap()),
            ],
            None,
        )
        .await,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);

    // Public: no secret, the code flow by default.
    let (status, public) = api
        .post(
            CLIENTS,
            &json!({"id": "mobile", "token_endpoint_auth_method": "none",
                    "redirect_uris": ["com.example.app:/cb", "https://mobile.example/cb"]}),
        )
        .await;
    assert_eq!(status, 201, "{public}");
    assert!(
        public.get("client_secret").is_none_or(Value::is_null),
        "{public}"
    );
    assert_eq!(public["token_endpoint_auth_method"], "none");
    assert_eq!(
        public["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
    assert_eq!(
        public["redirect_uris"],
        json!(["com.example.app:/cb", "https://mobile.example/cb"])
    );

    // Refused, and nothing stored.
    let before = app.snapshot().await;
    let cases: Vec<(&str, Value, u16, &str, &[&str])> = vec![
        (
            "a redirect URI that is not a URI",
            json!({"id": "bad1", "redirect_uris": ["not a uri"]}),
            400,
            "validation_failed",
            &["redirect_uris"],
        ),
        (
            "a plain-http redirect URI off loopback",
            json!({"id": "bad2", "redirect_uris": ["http://evil.example/cb"]}),
            400,
            "validation_failed",
            &["redirect_uris"],
        ),
        (
            "a redirect URI with a fragment",
            json!({"id": "bad3", "redirect_uris": ["https://a.example/cb#x"]}),
            400,
            "validation_failed",
            &["redirect_uris"],
        ),
        (
            "a wildcard redirect URI",
            json!({"id": "bad3", "redirect_uris": ["https://*.example/cb"]}),
            400,
            "validation_failed",
            &["redirect_uris"],
        ),
        (
            "an unknown grant type",
            json!({"id": "bad4", "grant_types": ["implicit"],
                   "redirect_uris": ["https://a.example/cb"]}),
            400,
            "validation_failed",
            &["grant_types"],
        ),
        (
            "the password grant for a third-party client",
            json!({"id": "bad5", "grant_types": ["password"]}),
            400,
            "validation_failed",
            &["grant_types"],
        ),
        (
            "client credentials for a public client",
            json!({"id": "bad6", "grant_types": ["client_credentials"],
                   "token_endpoint_auth_method": "none"}),
            400,
            "validation_failed",
            &["grant_types"],
        ),
        (
            "the code flow without a redirect URI",
            json!({"id": "bad7", "grant_types": ["authorization_code"]}),
            400,
            "validation_failed",
            &["redirect_uris"],
        ),
        (
            "an unknown authentication method",
            json!({"id": "bad8", "token_endpoint_auth_method": "private_key_jwt"}),
            400,
            "validation_failed",
            &["token_endpoint_auth_method"],
        ),
        (
            "a bad client id",
            json!({"id": "bad id!", "grant_types": ["client_credentials"]}),
            400,
            "validation_failed",
            &["id"],
        ),
        (
            "a supplied secret",
            json!({"id": "bad9", "secret": "supplied-secret-0123456789-0123456789"}),
            400,
            "invalid_request",
            &[],
        ),
        (
            "an unknown field",
            json!({"id": "bad9", "colour": "blue"}),
            400,
            "invalid_request",
            &[],
        ),
        (
            "no id",
            json!({"grant_types": ["client_credentials"]}),
            400,
            "invalid_request",
            &[],
        ),
        (
            "a taken id",
            json!({"id": "reports", "grant_types": ["client_credentials"]}),
            409,
            "client_exists",
            &[],
        ),
        (
            "a config client's id",
            json!({"id": CLIENT, "redirect_uris": ["https://a.example/cb"]}),
            409,
            "client_exists",
            &[],
        ),
    ];
    for (case, body, status, error, fields) in cases {
        let (got, answer) = api.post(CLIENTS, &body).await;
        if error == "validation_failed" {
            assert_validation_failed(case, got, &answer, fields);
        } else {
            assert_eq!(got, status, "{case}: {answer}");
            assert_eq!(answer["error"], error, "{case}: {answer}");
        }
        assert_eq!(app.snapshot().await, before, "{case}: something was stored");
    }
    let reply = send_raw(
        &app,
        Method::POST,
        CLIENTS,
        &api.token,
        "text/plain",
        r#"{"id":"typed","grant_types":["client_credentials"]}"#,
    )
    .await;
    assert_eq!(reply.status, 400, "text/plain: {}", reply.text);
    assert_eq!(app.snapshot().await, before);
    // The taken id kept its secret.
    assert_eq!(
        client_credentials(&app, "reports", &secret, None)
            .await
            .status,
        200
    );
}

/// The authorization URL of the code flow for `client` and `redirect_uri`.
fn authorize_url(app: &TestApp, client: &str, redirect_uri: &str) -> String {
    app.url(&format!(
        "/authorize?response_type=code&client_id={client}&redirect_uri={redirect_uri}\
         &scope=openid&state=st-1"
    ))
}

#[tokio::test]
async fn changing_a_clients_redirect_uris() {
    let app = spawn().await;
    let api = admin(&app).await;
    let old = "https://webapp.example/old";
    let new = "https://webapp.example/new";
    let (status, created) = api
        .post(
            CLIENTS,
            &json!({"id": "webapp", "name": "Web App", "redirect_uris": [old]}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["client_secret"].as_str().unwrap().to_string();
    // The old URI works before the change (and primes any client cache).
    let back = app
        .authorize_in(
            &app.new_browser(),
            &authorize_url(&app, "webapp", old),
            USER,
            PASSWORD,
            "allow",
        )
        .await;
    assert!(back.as_str().starts_with(old), "{back}");

    let (status, body) = api
        .patch(
            &format!("{CLIENTS}/webapp"),
            &json!({"redirect_uris": [new]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["redirect_uris"], json!([new]));
    assert_eq!(body["name"], "Web App", "untouched fields stay");
    assert_eq!(body["grant_types"], created["grant_types"]);
    assert_eq!(body["token_endpoint_auth_method"], "client_secret_basic");
    assert_eq!(api.ok(&format!("{CLIENTS}/webapp")).await, body);

    let back = app
        .authorize_in(
            &app.new_browser(),
            &authorize_url(&app, "webapp", new),
            USER,
            PASSWORD,
            "allow",
        )
        .await;
    assert!(back.as_str().starts_with(&format!("{new}?")), "{back}");
    let code = query_param(&back, "code").expect("a code");
    let reply = Reply::read(
        app.token(
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", new),
            ],
            Some(("webapp", &secret)),
        )
        .await,
    )
    .await;
    assert_eq!(
        reply.status, 200,
        "the secret survives a PATCH: {}",
        reply.text
    );
    let refused = app
        .new_browser()
        .get(authorize_url(&app, "webapp", old))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400, "the old redirect URI");
    assert!(refused.headers().get("location").is_none());

    // Refused, and nothing changed.
    let before = app.snapshot().await;
    let cases: Vec<(&str, Value, &str, &[&str])> = vec![
        (
            "a plain-http redirect URI",
            json!({"redirect_uris": ["http://evil.example/cb"]}),
            "validation_failed",
            &["redirect_uris"],
        ),
        (
            "no redirect URI for the code flow",
            json!({"redirect_uris": []}),
            "validation_failed",
            &["redirect_uris"],
        ),
        (
            "an unknown grant type",
            json!({"grant_types": ["implicit"]}),
            "validation_failed",
            &["grant_types"],
        ),
        (
            "the password grant for a third-party client",
            json!({"grant_types": ["authorization_code", "password"]}),
            "validation_failed",
            &["grant_types"],
        ),
        (
            "a bad post-logout URI",
            json!({"post_logout_redirect_uris": ["javascript:alert(1)"]}),
            "validation_failed",
            &["post_logout_redirect_uris"],
        ),
        (
            "the id cannot change",
            json!({"id": "other"}),
            "invalid_request",
            &[],
        ),
        (
            "the method cannot change",
            json!({"token_endpoint_auth_method": "none"}),
            "invalid_request",
            &[],
        ),
        (
            "redirect_uris is a list",
            json!({"redirect_uris": new}),
            "invalid_request",
            &[],
        ),
    ];
    for (case, body, error, fields) in cases {
        let (got, answer) = api.patch(&format!("{CLIENTS}/webapp"), &body).await;
        if error == "validation_failed" {
            assert_validation_failed(case, got, &answer, fields);
        } else {
            assert_eq!(got, 400, "{case}: {answer}");
            assert_eq!(answer["error"], error, "{case}: {answer}");
        }
        assert_eq!(app.snapshot().await, before, "{case}: something changed");
    }
    let (status, body) = api
        .patch(&format!("{CLIENTS}/no-such-client"), &json!({"name": "x"}))
        .await;
    assert_eq!(
        (status, &body["error"]),
        (404, &json!("not_found")),
        "{body}"
    );
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn rotating_a_client_secret() {
    let app = spawn().await;
    let api = admin(&app).await;
    let (status, created) = api
        .post(
            CLIENTS,
            &json!({"id": "batch", "grant_types": ["client_credentials"]}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let old = created["client_secret"].as_str().unwrap().to_string();
    assert_eq!(
        client_credentials(&app, "batch", &old, None).await.status,
        200
    );

    let (status, body) = api.action(&format!("{CLIENTS}/batch/secret")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["client_id"], "batch");
    let new = body["client_secret"].as_str().unwrap().to_string();
    assert!(new.len() >= 32 && new != old, "{body}");
    let reply = client_credentials(&app, "batch", &old, None).await;
    assert_eq!(reply.status, 401, "the old secret: {}", reply.text);
    assert_eq!(reply.json()["error"], "invalid_client");
    assert_eq!(
        client_credentials(&app, "batch", &new, None).await.status,
        200
    );
    assert!(
        !api.ok(&format!("{CLIENTS}/batch"))
            .await
            .to_string()
            .contains(&new)
    );

    let before = app.snapshot().await;
    let (status, body) = api
        .action(&format!("{CLIENTS}/no-such-client/secret"))
        .await;
    assert_eq!(
        (status, &body["error"]),
        (404, &json!("not_found")),
        "{body}"
    );
    assert_eq!(app.snapshot().await, before);
    let (status, body) = api
        .post(
            CLIENTS,
            &json!({"id": "pkce-app", "token_endpoint_auth_method": "none",
                    "redirect_uris": ["https://pkce.example/cb"]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let before_public = app.snapshot().await;
    let (status, body) = api.action(&format!("{CLIENTS}/pkce-app/secret")).await;
    assert_eq!(status, 409, "a public client has no secret: {body}");
    assert_eq!(app.snapshot().await, before_public);
    assert_eq!(
        client_credentials(&app, "batch", &new, None).await.status,
        200
    );
}

#[tokio::test]
async fn config_declared_clients_are_changed_in_the_config_only() {
    let app = spawn().await;
    let api = admin(&app).await;
    let shown = api.ok(&format!("{CLIENTS}/{CLIENT}")).await;
    assert_eq!(shown["source"], "config");
    assert_eq!(shown["redirect_uris"][0], REDIRECT);
    let before = app.snapshot().await;
    let path = format!("{CLIENTS}/{CLIENT}");
    for (case, method, path, body) in [
        (
            "PATCH",
            Method::PATCH,
            path.clone(),
            Some(json!({"name": "Renamed"})),
        ),
        ("DELETE", Method::DELETE, path.clone(), None),
        ("rotate", Method::POST, format!("{path}/secret"), None),
        (
            "PATCH the console",
            Method::PATCH,
            format!("{CLIENTS}/{CONSOLE}"),
            Some(json!({"grant_types": ["password"]})),
        ),
    ] {
        let (status, answer) = api.call(method, &path, body.as_ref()).await;
        assert_eq!(status, 409, "{case}: {answer}");
        assert_eq!(answer["error"], "managed_by_config", "{case}");
        assert_eq!(app.snapshot().await, before, "{case}: something changed");
    }
    assert_eq!(api.ok(&format!("{CLIENTS}/{CLIENT}")).await, shown);
    // The console's secret still works.
    sign_in(&app, BOB, BOB_PASSWORD, "openid").await;
}

#[tokio::test]
async fn deleting_a_client() {
    let app = spawn().await;
    let api = admin(&app).await;
    let (status, created) = api
        .post(
            CLIENTS,
            &json!({"id": "doomed", "grant_types": ["client_credentials"]}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["client_secret"].as_str().unwrap().to_string();
    assert_eq!(
        client_credentials(&app, "doomed", &secret, None)
            .await
            .status,
        200
    );

    let reply = send(
        &app,
        Method::DELETE,
        &format!("{CLIENTS}/doomed"),
        Some(&api.token),
        None,
    )
    .await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    assert!(reply.text.is_empty());
    let (status, body) = api.get(&format!("{CLIENTS}/doomed")).await;
    assert_eq!(
        (status, &body["error"]),
        (404, &json!("not_found")),
        "{body}"
    );
    let list = api.ok(CLIENTS).await;
    assert!(
        !list["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == "doomed"),
        "{list}"
    );
    let reply = client_credentials(&app, "doomed", &secret, None).await;
    assert_eq!(reply.status, 401, "{}", reply.text);
    assert_eq!(reply.json()["error"], "invalid_client");
    let (status, _) = api.delete(&format!("{CLIENTS}/doomed")).await;
    assert_eq!(status, 404, "deleting it again");
    // The id is free again, with a new secret.
    let (status, again) = api
        .post(
            CLIENTS,
            &json!({"id": "doomed", "grant_types": ["client_credentials"]}),
        )
        .await;
    assert_eq!(status, 201, "{again}");
    assert_ne!(again["client_secret"], created["client_secret"]);
    assert_eq!(
        client_credentials(&app, "doomed", &secret, None)
            .await
            .status,
        401
    );
}

// ---------------------------------------------------------------------------------
// 4. Keys

async fn jwks_kids(app: &TestApp) -> BTreeSet<String> {
    app.get_json("/jwks.json").await["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

fn key_status(list: &Value) -> BTreeMap<String, String> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["kid"].as_str().unwrap().to_string(),
                k["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn rotating_and_retiring_signing_keys() {
    let app = spawn().await;
    let api = admin(&app).await;
    let list = api.ok(KEYS).await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{list}");
    let old = items[0]["kid"].as_str().unwrap().to_string();
    assert_eq!(items[0]["status"], "active");
    assert_eq!(items[0]["alg"], "RS256");
    assert_eq!(items[0]["retired_at"], Value::Null);
    assert_eq!(jwks_kids(&app).await, set(&[&old]));
    assert_eq!(jwt_header(&api.token)["kid"], old);

    let (status, body) = api.action(&format!("{KEYS}/rotate")).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "active");
    let new = body["kid"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    assert_eq!(
        key_status(&api.ok(KEYS).await),
        [
            (new.clone(), "active".to_string()),
            (old.clone(), "published".to_string())
        ]
        .into_iter()
        .collect::<BTreeMap<String, String>>()
    );
    assert_eq!(jwks_kids(&app).await, set(&[&old, &new]));

    // New tokens are signed with the new key, and the JWKS verifies them.
    let fresh = admin(&app).await;
    let tokens = sign_in(&app, BOB, BOB_PASSWORD, "openid").await;
    for token in [fresh.token.as_str(), tokens["id_token"].as_str().unwrap()] {
        assert_eq!(jwt_header(token)["kid"], new);
    }
    let jwks = app.get_json("/jwks.json").await;
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == new)
        .unwrap();
    let jwk = josekit::jwk::Jwk::from_bytes(key.to_string().as_bytes()).unwrap();
    let verifier = josekit::jws::RS256.verifier_from_jwk(&jwk).unwrap();
    josekit::jwt::decode_with_verifier(tokens["id_token"].as_str().unwrap(), &verifier)
        .expect("signed by the new key");
    // Tokens of the old key stay good while it is published.
    assert_eq!(api.ok(KEYS).await["items"].as_array().unwrap().len(), 2);

    // Refused, and nothing changed.
    let before = app.snapshot().await;
    let (status, body) = fresh.action(&format!("{KEYS}/{new}/retire")).await;
    assert_eq!(status, 409, "retiring the active key: {body}");
    assert!(body["error"].is_string(), "{body}");
    let (status, body) = fresh.action(&format!("{KEYS}/no-such-kid/retire")).await;
    assert_eq!(
        (status, &body["error"]),
        (404, &json!("not_found")),
        "{body}"
    );
    assert_eq!(app.snapshot().await, before);
    assert_eq!(jwks_kids(&app).await, set(&[&old, &new]));

    let (status, body) = fresh.action(&format!("{KEYS}/{old}/retire")).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(jwks_kids(&app).await, set(&[&new]));
    let list = fresh.ok(KEYS).await;
    assert_eq!(
        key_status(&list).get(&new).map(String::as_str),
        Some("active")
    );
    let retired = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == old);
    if let Some(retired) = retired {
        assert_eq!(retired["status"], "retired", "{list}");
        assert!(retired["retired_at"].as_i64().is_some(), "{list}");
    }
    // Tokens signed with the retired key are refused now.
    let reply = send(&app, Method::GET, KEYS, Some(&api.token), None).await;
    assert_eq!(reply.status, 401, "{}", reply.text);
    assert!(
        reply
            .header("www-authenticate")
            .unwrap()
            .contains("invalid_token")
    );
    // Retiring it again changes nothing.
    let before = app.snapshot().await;
    let (status, _) = fresh.action(&format!("{KEYS}/{old}/retire")).await;
    assert!(matches!(status, 404 | 409), "{status}");
    assert_eq!(app.snapshot().await, before);
}

// ---------------------------------------------------------------------------------
// 5. The audit trail of admin changes

#[tokio::test]
async fn every_admin_change_is_audited_without_secrets() {
    let app = spawn().await;
    let api = admin(&app).await;
    let bob_sub = api.sub_of(BOB).await;
    let bob_tokens = sign_in(&app, BOB, BOB_PASSWORD, "openid").await;
    let bob_sid = jwt_claims(bob_tokens["id_token"].as_str().unwrap())["sid"]
        .as_str()
        .unwrap()
        .to_string();

    // A refused change is not an admin change.
    let (status, _) = api
        .post(USERS, &json!({"username": "ab", "email": "ab@example.com"}))
        .await;
    assert_eq!(status, 400);

    // First half.
    let (status, frank) = api
        .post(
            USERS,
            &json!({"username": "frank", "email": "frank@example.com", "password": STRONG,
                    "roles": ["support"]}),
        )
        .await;
    assert_eq!(status, 201, "{frank}");
    let frank_sub = frank["sub"].as_str().unwrap().to_string();
    let (status, body) = api
        .patch(
            &format!("{USERS}/{frank_sub}"),
            &json!({"name": "Frank Changed", "roles": ["support", "editor"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = api
        .action(&format!("{USERS}/{frank_sub}/password-reset"))
        .await;
    assert_eq!(status, 202);
    let (status, client) = api
        .post(
            CLIENTS,
            &json!({"id": "audited", "grant_types": ["client_credentials"]}),
        )
        .await;
    assert_eq!(status, 201, "{client}");
    let first_secret = client["client_secret"].as_str().unwrap().to_string();
    // The second half starts on a later second than any first-half event.
    wait_for_audit(&api, "type=admin.", "the first half", |e| e.len() >= 4).await;
    let middle = now() + 1;
    while now() < middle {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Second half.
    let (status, body) = api.action(&format!("{CLIENTS}/audited/secret")).await;
    assert_eq!(status, 200, "{body}");
    let second_secret = body["client_secret"].as_str().unwrap().to_string();
    let (status, _) = api.delete(&format!("{CLIENTS}/audited")).await;
    assert_eq!(status, 204);
    let (status, key) = api.action(&format!("{KEYS}/rotate")).await;
    assert_eq!(status, 201, "{key}");
    let kid = key["kid"].as_str().unwrap().to_string();
    let (status, _) = api
        .delete(&format!("{USERS}/{bob_sub}/sessions/{bob_sid}"))
        .await;
    assert_eq!(status, 204);
    let (status, _) = api.delete(&format!("{USERS}/{frank_sub}")).await;
    assert_eq!(status, 204);

    let expected: Vec<(&str, String)> = vec![
        ("admin.user.created", frank_sub.clone()),
        ("admin.user.updated", frank_sub.clone()),
        ("admin.user.password_reset_sent", frank_sub.clone()),
        ("admin.client.created", "client:audited".into()),
        ("admin.client.secret_rotated", "client:audited".into()),
        ("admin.client.deleted", "client:audited".into()),
        ("admin.key.rotated", format!("key:{kid}")),
        ("admin.session.revoked", bob_sub.clone()),
        ("admin.user.deleted", frank_sub.clone()),
    ];
    let events = wait_for_audit(&api, "type=admin.", "every admin change", |e| {
        e.len() >= expected.len()
    })
    .await;
    // Newest first, exactly these, by the administrator, from the test's address.
    let got: Vec<(String, String)> = events
        .iter()
        .rev()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_string(),
                e["subject"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = expected
        .iter()
        .map(|(t, s)| (t.to_string(), s.clone()))
        .collect();
    assert_eq!(got, want, "{events:#?}");
    let ids = event_ids(&events);
    assert!(
        ids.windows(2).all(|w| w[0] > w[1]),
        "not newest first: {ids:?}"
    );
    for e in &events {
        assert_eq!(e["actor"], json!(api.sub), "{e}");
        assert_eq!(e["outcome"], "success", "{e}");
        assert_eq!(e["ip"], "127.0.0.1", "{e}");
        assert!(event_time(e) >= now() - 120, "{e}");
    }
    let by_type = |kind: &str| {
        events
            .iter()
            .find(|e| e["type"] == kind)
            .unwrap_or_else(|| panic!("no {kind}"))
            .clone()
    };
    let created = by_type("admin.user.created");
    assert_eq!(created["detail"]["after"]["username"], "frank");
    assert_eq!(
        role_set(&created["detail"]["after"]["roles"]),
        set(&["user", "support"])
    );
    let updated = by_type("admin.user.updated");
    let (before, after) = (&updated["detail"]["before"], &updated["detail"]["after"]);
    assert_eq!(before["name"], Value::Null, "{updated}");
    assert_eq!(after["name"], "Frank Changed", "{updated}");
    assert_eq!(role_set(&before["roles"]), set(&["user", "support"]));
    assert_eq!(
        role_set(&after["roles"]),
        set(&["user", "support", "editor"])
    );
    assert_eq!(before["email"], "frank@example.com");
    assert_eq!(after["email"], "frank@example.com");
    assert_eq!(by_type("admin.session.revoked")["detail"]["sid"], bob_sid);
    for kind in [
        "admin.client.created",
        "admin.client.secret_rotated",
        "admin.client.deleted",
    ] {
        assert_eq!(by_type(kind)["client_id"], "audited", "{kind}");
    }
    assert_eq!(
        by_type("admin.user.deleted")["detail"]["before"]["username"],
        "frank"
    );
    // No password, secret or hash anywhere.
    let text = serde_json::to_string(&events).unwrap();
    for secret in [
        STRONG,
        &first_secret,
        &second_secret,
        CONSOLE_SECRET,
        PASSWORD,
    ] {
        assert!(!text.contains(secret), "a secret in the trail: {text}");
    }
    let mut keys = Vec::new();
    keys_in(&json!(events), &mut keys);
    assert!(
        !keys
            .iter()
            .any(|k| k.contains("password") || k.contains("secret") || k.contains("hash")),
        "{keys:?}"
    );

    // Filters, each compared with the whole trail filtered here.
    let everything = audit_all(&api, "").await;
    assert!(
        everything.len() > events.len(),
        "sign-ins are in the trail too"
    );
    let filtered = |pred: &dyn Fn(&Value) -> bool| -> Vec<Value> {
        everything.iter().filter(|e| pred(e)).cloned().collect()
    };
    let checks: Vec<(String, Vec<Value>)> = vec![
        (
            "type=admin.".into(),
            filtered(&|e| e["type"].as_str().unwrap().starts_with("admin.")),
        ),
        (
            "type=admin.user.".into(),
            filtered(&|e| e["type"].as_str().unwrap().starts_with("admin.user.")),
        ),
        (
            "type=admin.user.created".into(),
            filtered(&|e| e["type"] == "admin.user.created"),
        ),
        ("type=admin".into(), Vec::new()),
        ("type=admin.user".into(), Vec::new()),
        (
            format!("subject={frank_sub}"),
            filtered(&|e| e["subject"] == json!(frank_sub)),
        ),
        (
            format!("actor={}", api.sub),
            filtered(&|e| e["actor"] == json!(api.sub)),
        ),
        (
            "client_id=audited".into(),
            filtered(&|e| e["client_id"] == "audited"),
        ),
        (
            format!("type=admin.&subject={bob_sub}"),
            filtered(&|e| {
                e["type"].as_str().unwrap().starts_with("admin.") && e["subject"] == json!(bob_sub)
            }),
        ),
        (
            format!("since={middle}"),
            filtered(&|e| event_time(e) >= middle),
        ),
        (
            format!("until={middle}"),
            filtered(&|e| event_time(e) < middle),
        ),
        (
            format!("type=admin.&since={}", rfc3339(middle)),
            filtered(&|e| {
                e["type"].as_str().unwrap().starts_with("admin.") && event_time(e) >= middle
            }),
        ),
        (
            format!("type=admin.&until={}", rfc3339(middle)),
            filtered(&|e| {
                e["type"].as_str().unwrap().starts_with("admin.") && event_time(e) < middle
            }),
        ),
        (format!("since={}", rfc3339(now() + 3600)), Vec::new()),
        (format!("until={}", now() - 3600), Vec::new()),
    ];
    for (query, want) in checks {
        let got = audit_all(&api, &query).await;
        assert_eq!(event_ids(&got), event_ids(&want), "{query}");
    }
    let since = audit_all(&api, &format!("type=admin.&since={middle}")).await;
    assert_eq!(since.len(), 5, "the second half: {since:#?}");
    let until = audit_all(&api, &format!("type=admin.&until={middle}")).await;
    assert_eq!(until.len(), 4, "the first half: {until:#?}");

    // One at a time, following the cursor: the same events, once each.
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("{AUDIT}?type=admin.&limit=1");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = api.ok(&path).await;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 1, "{page}");
        paged.extend(items.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
        assert!(paged.len() <= events.len(), "the pages do not end");
    }
    assert_eq!(event_ids(&paged), event_ids(&events));

    let before = app.snapshot().await;
    for bad in [
        "since=yesterday",
        "since=2026-02-30T00:00:00Z",
        "since=2026-01-31",
        "until=soon",
        "limit=0",
        "limit=201",
        "limit=ten",
        "cursor=not-a-cursor",
    ] {
        let (status, body) = api.get(&format!("{AUDIT}?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"], "invalid_request", "{bad}: {body}");
        assert!(body["error_description"].is_string(), "{bad}");
    }
    assert_eq!(app.snapshot().await, before);
}

fn rfc3339(seconds: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

#[tokio::test]
async fn a_user_update_event_shows_before_and_after_of_every_changed_field() {
    let app = spawn().await;
    let api = admin(&app).await;
    let sub = api.sub_of(DAVE).await;
    let (status, body) = api
        .patch(
            &format!("{USERS}/{sub}"),
            &json!({"email": "dave.new@example.com", "locale": "de", "disabled": true,
                    "email_verified": false}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let event = audit_event(&api, "admin.user.updated", &sub).await;
    let (before, after) = (&event["detail"]["before"], &event["detail"]["after"]);
    assert_eq!(before["email"], "dave@example.com");
    assert_eq!(after["email"], "dave.new@example.com");
    assert_eq!(before["locale"], Value::Null);
    assert_eq!(after["locale"], "de");
    assert_eq!(before["disabled"], false);
    assert_eq!(after["disabled"], true);
    assert_eq!(before["email_verified"], true);
    assert_eq!(after["email_verified"], false);
    assert_eq!(before["username"], DAVE);
    assert_eq!(event["actor"], json!(api.sub));
    assert!(!event.to_string().contains(DAVE_PASSWORD));
}

// ---------------------------------------------------------------------------------
// 6. The OpenAPI document

/// `schema` with a local `$ref` followed.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("not a local $ref: {reference}"));
            let target = doc
                .pointer(pointer)
                .unwrap_or_else(|| panic!("$ref {reference} points nowhere"));
            resolve(doc, target)
        }
        None => schema,
    }
}

fn type_matches(kind: &str, value: &Value) -> bool {
    match kind {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        other => panic!("unknown JSON Schema type {other}"),
    }
}

/// The JSON Schema (2020-12) keywords the document uses: `$ref`, `allOf`, `type`,
/// `enum`, `required`, `properties`, `additionalProperties`, `items`, `format:
/// date-time`. Mismatches go to `errors`.
fn check_schema(doc: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for part in all {
            check_schema(doc, part, value, at, errors);
        }
    }
    if let Some(kind) = schema.get("type") {
        let kinds: Vec<&str> = match kind {
            Value::String(k) => vec![k.as_str()],
            Value::Array(ks) => ks.iter().map(|k| k.as_str().unwrap()).collect(),
            other => panic!("{at}: type {other}"),
        };
        if !kinds.iter().any(|k| type_matches(k, value)) {
            errors.push(format!("{at}: {value} is not {kinds:?}"));
            return;
        }
    }
    const KEYWORDS: [&str; 11] = [
        "$ref",
        "allOf",
        "type",
        "enum",
        "const",
        "required",
        "properties",
        "additionalProperties",
        "items",
        "format",
        "description",
    ];
    for keyword in schema.as_object().into_iter().flat_map(|o| o.keys()) {
        if !KEYWORDS.contains(&keyword.as_str()) {
            errors.push(format!(
                "{at}: schema keyword {keyword} is not checked here"
            ));
        }
    }
    if let Some(constant) = schema.get("const")
        && constant != value
    {
        errors.push(format!("{at}: {value} is not {constant}"));
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        errors.push(format!("{at}: {value} is not one of {allowed:?}"));
    }
    if schema.get("format").and_then(Value::as_str) == Some("date-time")
        && let Some(text) = value.as_str()
        && time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .is_err()
    {
        errors.push(format!("{at}: {text} is not a date-time"));
    }
    if let Some(object) = value.as_object() {
        for name in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !object.contains_key(name.as_str().unwrap()) {
                errors.push(format!("{at}: {name} is missing"));
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        for (name, member) in object {
            let here = format!("{at}.{name}");
            match (
                properties.and_then(|p| p.get(name)),
                schema.get("additionalProperties"),
            ) {
                (Some(sub), _) => check_schema(doc, sub, member, &here, errors),
                (None, Some(Value::Bool(false))) => {
                    errors.push(format!("{here} is not in the schema"))
                }
                (None, Some(extra @ Value::Object(_))) => {
                    check_schema(doc, extra, member, &here, errors)
                }
                _ => {}
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (i, item) in array.iter().enumerate() {
            check_schema(doc, items, item, &format!("{at}[{i}]"), errors);
        }
    }
}

/// Every `$ref` in `value` resolves inside `doc`.
fn check_refs(doc: &Value, value: &Value) {
    match value {
        Value::Object(map) => {
            if map.contains_key("$ref") {
                resolve(doc, value);
            }
            map.values().for_each(|v| check_refs(doc, v));
        }
        Value::Array(items) => items.iter().for_each(|v| check_refs(doc, v)),
        _ => {}
    }
}

#[tokio::test]
async fn the_openapi_document_describes_exactly_the_routes_that_answer() {
    let app = spawn().await;
    let api = admin(&app).await;

    let response = app.get("/api/v1/openapi.json").await;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let doc: Value = response.json().await.expect("the document is JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    check_refs(&doc, &doc);
    let paths = doc["paths"].as_object().expect("paths");

    // The document's operations, and the table's, are the same set.
    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    let mut documented: BTreeSet<(String, String)> = BTreeSet::new();
    let mut operation_ids = BTreeSet::new();
    for (path, item) in paths {
        let item = item.as_object().unwrap();
        for (method, operation) in item {
            if !METHODS.contains(&method.as_str()) {
                continue;
            }
            documented.insert((method.to_uppercase(), path.clone()));
            if let Some(id) = operation["operationId"].as_str() {
                assert!(
                    operation_ids.insert(id.to_string()),
                    "operationId {id} twice"
                );
            }
            // Every `{name}` in the path is a required path parameter.
            let parameters: Vec<&Value> = item
                .get("parameters")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .chain(operation["parameters"].as_array().into_iter().flatten())
                .map(|p| resolve(&doc, p))
                .collect();
            for name in path
                .split('{')
                .skip(1)
                .map(|s| s.split('}').next().unwrap())
            {
                assert!(
                    parameters
                        .iter()
                        .any(|p| p["name"] == name && p["in"] == "path" && p["required"] == true),
                    "{method} {path}: path parameter {name} is not declared"
                );
            }
            let responses = operation["responses"].as_object().unwrap();
            for status in ["401", "403"] {
                assert!(
                    responses.contains_key(status),
                    "{method} {path}: no {status}"
                );
            }
            assert!(
                !operation["security"]
                    .as_array()
                    .unwrap_or(&Vec::new())
                    .is_empty()
                    || doc["security"].is_array(),
                "{method} {path}: no security requirement"
            );
        }
    }
    let ids = table_ids(&app, &api).await;
    let table = endpoints(&ids);
    let tabled: BTreeSet<(String, String)> = table
        .iter()
        .map(|e| (e.method.to_string(), e.template.to_string()))
        .collect();
    assert_eq!(
        documented.difference(&tabled).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "documented operations that are not admin routes"
    );
    assert_eq!(
        tabled.difference(&documented).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "admin routes missing from the document"
    );

    // Each request body fits the documented requestBody schema, and each answer the
    // documented response of its status.
    let mut errors = Vec::new();
    let operation = |e: &Endpoint| &doc["paths"][e.template][e.method.as_str().to_lowercase()];
    for e in &table {
        if let Some(body) = &e.body {
            let schema = &operation(e)["requestBody"]["content"]["application/json"]["schema"];
            assert!(
                !schema.is_null(),
                "{} {}: no requestBody",
                e.method,
                e.template
            );
            check_schema(
                &doc,
                schema,
                body,
                &format!("request {} {}", e.method, e.template),
                &mut errors,
            );
        }
    }
    // Without a token, and with a non-admin's token: the documented 401 and 403.
    let bob = access(&sign_in(&app, BOB, BOB_PASSWORD, &format!("openid {ADMIN_SCOPE}")).await);
    for e in &table {
        for (token, status) in [(None, 401u16), (Some(bob.as_str()), 403)] {
            let reply = send(&app, e.method.clone(), &e.path, token, e.body.as_ref()).await;
            assert_eq!(reply.status, status, "{} {}", e.method, e.path);
            let documented = resolve(&doc, &operation(e)["responses"][status.to_string()]);
            let schema = &documented["content"]["application/json"]["schema"];
            check_schema(
                &doc,
                schema,
                &reply.json(),
                &format!("{status} {} {}", e.method, e.template),
                &mut errors,
            );
        }
    }
    let replies = run_as_admin(&app, &api.token, &table).await;
    for (e, reply) in table.iter().zip(&replies) {
        let at = format!("{} {} {}", reply.status, e.method, e.template);
        let documented = &operation(e)["responses"][reply.status.to_string()];
        assert!(!documented.is_null(), "{at}: status not documented");
        let documented = resolve(&doc, documented);
        match documented["content"]["application/json"]["schema"] {
            Value::Null => assert!(
                reply.text.is_empty(),
                "{at}: undocumented body {}",
                reply.text
            ),
            ref schema => check_schema(&doc, schema, &reply.json(), &at, &mut errors),
        }
    }
    assert!(
        errors.is_empty(),
        "the answers do not fit the document:\n{}",
        errors.join("\n")
    );

    // A route that is not in the document is not an admin route.
    let fresh = admin(&app).await;
    for (method, path) in [
        (Method::GET, "/api/v1/admin/sessions"),
        (Method::PUT, "/api/v1/admin/users"),
        (Method::GET, "/api/v1/admin/keys/rotate"),
    ] {
        let reply = send(&app, method.clone(), path, Some(&fresh.token), None).await;
        assert!(
            matches!(reply.status, 404 | 405),
            "{method} {path}: {} {}",
            reply.status,
            reply.text
        );
    }
}
