//! Client credentials (RFC 6749 §4.4, RFC 9068, RFC 8707), introspection (RFC 7662),
//! revocation (RFC 7009), their discovery metadata, and `oxidp purge`.
//!
//! Not tested here: expiry of an access token at /introspect and /userinfo. The shortest
//! allowed lifetime is 60 s (`[tokens] access_token_seconds`), too long to wait for;
//! revocation exercises the same "inactive" path.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, PRAGMA, WWW_AUTHENTICATE};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::Connection;

use crate::helpers::{
    CLIENT, CLIENT_SECRET, Options, PASSWORD, PUBLIC_CLIENT, REDIRECT, TestApp, USER, flow_options,
    query_param, spawn_app_with,
};

const FORM: &str = "application/x-www-form-urlencoded";
const SVC: &str = "svc";
const SVC_POST: &str = "svc-post";
const SVC_SECRET: &str = "svc-secret-that-is-long-enough-0123456789";
const RS: &str = "rs";
const RS_SECRET: &str = "rs-secret-that-is-long-enough-01234567890";
const API: &str = "https://api.example/";

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// `flow_options()` plus a service client (`svc`, client credentials with two API
/// scopes; `svc-post`, the same with `client_secret_post`) and a resource server
/// (`rs`, may introspect every token), then `extra`.
fn grants_options(extra: &str) -> Options {
    let mut options = flow_options();
    options.extra_toml.push_str(&format!(
        r#"
[[clients]]
id = "{SVC}"
secret = "{SVC_SECRET}"
grant_types = ["client_credentials"]
scopes = ["api:read", "api:write"]

[[clients]]
id = "{SVC_POST}"
secret = "{SVC_SECRET}"
token_endpoint_auth_method = "client_secret_post"
grant_types = ["client_credentials"]
scopes = ["api:read", "api:write"]

[[clients]]
id = "{RS}"
secret = "{RS_SECRET}"
grant_types = ["client_credentials"]
introspect_any = true
{extra}
"#
    ));
    options
}

async fn spawn() -> TestApp {
    spawn_app_with(grants_options("")).await
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// How a request authenticates its client (RFC 6749 §2.3.1).
#[derive(Clone, Copy, Debug)]
enum Auth<'a> {
    Basic(&'a str, &'a str),
    Post(&'a str, &'a str),
    /// A public client: `client_id` only.
    Public(&'a str),
    Nothing,
}

const RP: Auth<'static> = Auth::Basic(CLIENT, CLIENT_SECRET);
const POSTER: Auth<'static> = Auth::Post("poster", CLIENT_SECRET);
const SERVICE: Auth<'static> = Auth::Basic(SVC, SVC_SECRET);
const RESOURCE_SERVER: Auth<'static> = Auth::Basic(RS, RS_SECRET);
const SPA: Auth<'static> = Auth::Public(PUBLIC_CLIENT);

/// POSTs `pairs` as a form to `path`, authenticated as `auth`.
async fn post(
    app: &TestApp,
    path: &str,
    pairs: &[(&str, &str)],
    auth: Auth<'_>,
) -> reqwest::Response {
    let mut pairs = pairs.to_vec();
    let mut request = app.http.post(app.url(path));
    match auth {
        Auth::Basic(id, secret) => {
            let encoded = STANDARD.encode(format!("{}:{}", enc(id), enc(secret)));
            request = request.header(AUTHORIZATION, format!("Basic {encoded}"));
        }
        Auth::Post(id, secret) => {
            pairs.push(("client_id", id));
            pairs.push(("client_secret", secret));
        }
        Auth::Public(id) => pairs.push(("client_id", id)),
        Auth::Nothing => {}
    }
    request
        .header(CONTENT_TYPE, FORM)
        .body(form(&pairs))
        .send()
        .await
        .unwrap()
}

fn header(response: &reqwest::Response, name: reqwest::header::HeaderName) -> String {
    response
        .headers()
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default()
}

/// Status and JSON body (Null when the body is empty or not JSON).
async fn status_json(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn client_credentials(
    app: &TestApp,
    extra: &[(&str, &str)],
    auth: Auth<'_>,
) -> reqwest::Response {
    let mut pairs = vec![("grant_type", "client_credentials")];
    pairs.extend_from_slice(extra);
    post(app, "/token", &pairs, auth).await
}

/// A successful client credentials response body.
async fn cc_token(app: &TestApp, extra: &[(&str, &str)], auth: Auth<'_>) -> Value {
    let (status, body) = status_json(client_credentials(app, extra, auth).await).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The introspection answer; asserts 200 and `Cache-Control: no-store` (RFC 7662 §2.2).
async fn introspect(app: &TestApp, token: &str, auth: Auth<'_>) -> Value {
    introspect_with(app, &[("token", token)], auth).await
}

async fn introspect_with(app: &TestApp, pairs: &[(&str, &str)], auth: Auth<'_>) -> Value {
    let response = post(app, "/introspect", pairs, auth).await;
    assert_eq!(header(&response, CACHE_CONTROL), "no-store");
    let (status, body) = status_json(response).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Revokes and asserts 200, the answer whether or not the token was known (RFC 7009 §2.2).
async fn revoke(app: &TestApp, token: &str, auth: Auth<'_>) {
    let (status, body) = status_json(post(app, "/revoke", &[("token", token)], auth).await).await;
    assert_eq!(status, 200, "{body}");
}

/// GET /userinfo with a bearer token: status, `WWW-Authenticate`, body.
async fn userinfo(app: &TestApp, token: &str) -> (u16, String, Value) {
    let response = app
        .http
        .get(app.url("/userinfo"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let www = header(&response, WWW_AUTHENTICATE);
    let (status, body) = status_json(response).await;
    (status, www, body)
}

/// Asserts a bearer token is refused at /userinfo as RFC 6750 §3.1 `invalid_token`.
async fn assert_token_dead(app: &TestApp, token: &str, case: &str) {
    let (status, www, body) = userinfo(app, token).await;
    assert_eq!(status, 401, "{case}: {body}");
    assert!(www.contains("error=\"invalid_token\""), "{case}: {www}");
    assert_eq!(body["error"], "invalid_token", "{case}");
}

async fn assert_token_alive(app: &TestApp, token: &str, case: &str) {
    let (status, _, body) = userinfo(app, token).await;
    assert_eq!(status, 200, "{case}: {body}");
}

fn authorize_url(app: &TestApp, client: &str, scope: &str, extra: &str) -> String {
    app.url(&format!(
        "/authorize?response_type=code&client_id={client}&redirect_uri={}&scope={}&state=s{extra}",
        enc(REDIRECT),
        enc(scope)
    ))
}

/// A code flow for the confidential client `rp` in the app's browser: access, refresh
/// and ID tokens.
async fn rp_tokens(app: &TestApp, scope: &str) -> Value {
    let back = app.authorize(&authorize_url(app, CLIENT, scope, "")).await;
    let code = query_param(&back, "code").unwrap_or_else(|| panic!("no code in {back}"));
    let response = app
        .token(
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
            ],
            Some((CLIENT, CLIENT_SECRET)),
        )
        .await;
    let (status, body) = status_json(response).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["refresh_token"].is_string(), "{body}");
    body
}

/// A PKCE code flow for the public client `spa` (RFC 7636 §4.2: S256).
async fn spa_tokens(app: &TestApp) -> Value {
    let verifier = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let extra = format!("&code_challenge={challenge}&code_challenge_method=S256");
    let back = app
        .authorize(&authorize_url(app, PUBLIC_CLIENT, "openid", &extra))
        .await;
    let code = query_param(&back, "code").unwrap_or_else(|| panic!("no code in {back}"));
    let response = post(
        app,
        "/token",
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ],
        SPA,
    )
    .await;
    let (status, body) = status_json(response).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn refresh(app: &TestApp, token: &str, auth: Auth<'_>) -> (u16, Value) {
    status_json(
        post(
            app,
            "/token",
            &[("grant_type", "refresh_token"), ("refresh_token", token)],
            auth,
        )
        .await,
    )
    .await
}

fn s<'a>(body: &'a Value, key: &str) -> &'a str {
    body[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not a string in {body}"))
}

fn decode_part(token: &str, part: usize) -> Value {
    let segment = token.split('.').nth(part).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Verifies a JWT's signature with the key its `kid` names in /jwks.json; returns the
/// claims.
async fn verify_with_jwks(app: &TestApp, token: &str) -> Value {
    let header = decode_part(token, 0);
    let jwks = app.get_json("/jwks.json").await;
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .unwrap_or_else(|| panic!("kid {} not in {jwks}", header["kid"]));
    let jwk = josekit::jwk::Jwk::from_bytes(key.to_string().as_bytes()).unwrap();
    let verifier = josekit::jws::RS256.verifier_from_jwk(&jwk).unwrap();
    let (payload, _) = josekit::jwt::decode_with_verifier(token, &verifier).expect("signature");
    Value::Object(payload.claims_set().clone())
}

/// A direct connection to the test database, for row counts and for moving expiry
/// times into the past (test setup only).
enum Db {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl Db {
    async fn open(app: &TestApp) -> Self {
        if app.db.url.starts_with("sqlite") {
            Self::Sqlite(sqlx::SqliteConnection::connect(&app.db.url).await.unwrap())
        } else {
            Self::Postgres(sqlx::PgConnection::connect(&app.db.url).await.unwrap())
        }
    }

    async fn count(&mut self, sql: &'static str) -> i64 {
        match self {
            Self::Sqlite(c) => sqlx::query_scalar(sql).fetch_one(c).await.unwrap(),
            Self::Postgres(c) => sqlx::query_scalar(sql).fetch_one(c).await.unwrap(),
        }
    }

    /// Runs an UPDATE with optional text binds; returns the rows affected.
    async fn exec(&mut self, sql: &'static str, binds: &[&str]) -> u64 {
        match self {
            Self::Sqlite(c) => {
                let mut q = sqlx::query(sql);
                for b in binds {
                    q = q.bind(b.to_string());
                }
                q.execute(c).await.unwrap().rows_affected()
            }
            Self::Postgres(c) => {
                let mut q = sqlx::query(sql);
                for b in binds {
                    q = q.bind(b.to_string());
                }
                q.execute(c).await.unwrap().rows_affected()
            }
        }
    }

    async fn counts(&mut self) -> Vec<i64> {
        let mut out = Vec::new();
        for sql in TABLE_COUNTS {
            out.push(self.count(sql).await);
        }
        out
    }
}

/// The tables `purge` works on, in the order of its output.
const TABLE_COUNTS: [&str; 5] = [
    "SELECT COUNT(*) FROM authorization_codes",
    "SELECT COUNT(*) FROM authorization_requests",
    "SELECT COUNT(*) FROM browser_sessions",
    "SELECT COUNT(*) FROM refresh_tokens",
    "SELECT COUNT(*) FROM revocations",
];

/// Everything revocation can change, for "nothing changed" assertions.
const REVOCATION_STATE: [&str; 3] = [
    "SELECT COUNT(*) FROM revocations",
    "SELECT COUNT(*) FROM refresh_tokens WHERE revoked_at IS NULL",
    "SELECT COUNT(*) FROM refresh_tokens WHERE used_at IS NULL",
];

async fn revocation_state(db: &mut Db) -> Vec<i64> {
    let mut out = Vec::new();
    for sql in REVOCATION_STATE {
        out.push(db.count(sql).await);
    }
    out
}

// ---------------------------------------------------------------------------------------
// Client credentials (RFC 6749 §4.4, RFC 9068, RFC 8707)
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn client_credentials_issue_an_rfc9068_access_token_and_nothing_else() {
    let app = spawn().await;
    for (case, auth, id) in [
        ("client_secret_basic", SERVICE, SVC),
        (
            "client_secret_post",
            Auth::Post(SVC_POST, SVC_SECRET),
            SVC_POST,
        ),
    ] {
        let response = client_credentials(&app, &[], auth).await;
        assert_eq!(response.status(), 200, "{case}");
        // RFC 6749 §5.1: token responses are not cached.
        assert_eq!(header(&response, CACHE_CONTROL), "no-store", "{case}");
        assert_eq!(header(&response, PRAGMA), "no-cache", "{case}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["token_type"], "Bearer", "{case}");
        assert_eq!(body["expires_in"], 3600, "{case}");
        // Without `scope`, every scope the client is allowed, in configured order.
        assert_eq!(body["scope"], "api:read api:write", "{case}");
        // RFC 6749 §4.4.3: no refresh token; no user, so no ID token.
        assert!(body.get("refresh_token").is_none(), "{case}: {body}");
        assert!(body.get("id_token").is_none(), "{case}: {body}");

        let access = s(&body, "access_token");
        let header = decode_part(access, 0);
        assert_eq!(header["typ"], "at+jwt", "{case}");
        assert_eq!(header["alg"], "RS256", "{case}");
        let claims = verify_with_jwks(&app, access).await;
        // RFC 9068 §2.2: the client acting for itself is the subject.
        assert_eq!(claims["sub"], id, "{case}");
        assert_eq!(claims["client_id"], id, "{case}");
        assert_eq!(claims["aud"], app.issuer.as_str(), "{case}");
        assert_eq!(claims["iss"], app.issuer.as_str(), "{case}");
        assert_eq!(claims["scope"], "api:read api:write", "{case}");
        let (iat, exp) = (
            claims["iat"].as_i64().unwrap(),
            claims["exp"].as_i64().unwrap(),
        );
        assert!((iat - now()).abs() <= 5, "{case}: iat {iat}");
        assert_eq!(exp - iat, 3600, "{case}");
        assert!(!s(&claims, "jti").is_empty(), "{case}");
        for absent in ["auth_time", "sid", "gid", "nonce", "azp"] {
            assert!(claims.get(absent).is_none(), "{case}: {absent} in {claims}");
        }
    }

    // Every token has its own jti.
    let a = cc_token(&app, &[], SERVICE).await;
    let b = cc_token(&app, &[], SERVICE).await;
    assert_ne!(
        decode_part(s(&a, "access_token"), 1)["jti"],
        decode_part(s(&b, "access_token"), 1)["jti"]
    );

    // `scope` narrows (in the requested order, without repeats).
    for (requested, granted) in [
        ("api:read", "api:read"),
        ("api:write", "api:write"),
        ("api:write api:read", "api:write api:read"),
        ("api:read api:read", "api:read"),
    ] {
        let body = cc_token(&app, &[("scope", requested)], SERVICE).await;
        assert_eq!(body["scope"], granted, "{requested}");
        let claims = decode_part(s(&body, "access_token"), 1);
        assert_eq!(claims["scope"], granted, "{requested}");
    }

    // RFC 8707: `resource` becomes the audience.
    for resource in [API, "https://api.example/v1/orders?tenant=7"] {
        let body = cc_token(&app, &[("resource", resource)], SERVICE).await;
        let claims = decode_part(s(&body, "access_token"), 1);
        assert_eq!(claims["aud"], resource);
        assert_eq!(claims["scope"], "api:read api:write");
    }
}

/// (case, extra form fields, auth, status, error, `WWW-Authenticate: Basic` expected)
type RefusalCase<'a> = (
    &'a str,
    Vec<(&'a str, &'a str)>,
    Auth<'a>,
    u16,
    &'a str,
    bool,
);

#[tokio::test]
async fn client_credentials_refusals_are_standard_errors() {
    let app = spawn().await;
    let mut db = Db::open(&app).await;
    let before = db.counts().await;
    let wrong = "wrong-secret-that-is-long-enough-0123456789";
    let cases: Vec<RefusalCase> = vec![
        (
            "scope not allowed",
            vec![("scope", "api:admin")],
            SERVICE,
            400,
            "invalid_scope",
            false,
        ),
        (
            "one allowed scope, one not",
            vec![("scope", "api:read api:admin")],
            SERVICE,
            400,
            "invalid_scope",
            false,
        ),
        (
            "openid for a service",
            vec![("scope", "openid")],
            SERVICE,
            400,
            "invalid_scope",
            false,
        ),
        (
            "resource not a URI",
            vec![("resource", "not-a-uri")],
            SERVICE,
            400,
            "invalid_target",
            false,
        ),
        (
            "resource with a fragment",
            vec![("resource", "https://api.example/#frag")],
            SERVICE,
            400,
            "invalid_target",
            false,
        ),
        (
            "resource with an empty fragment",
            vec![("resource", "https://api.example/#")],
            SERVICE,
            400,
            "invalid_target",
            false,
        ),
        (
            "relative resource",
            vec![("resource", "/api")],
            SERVICE,
            400,
            "invalid_target",
            false,
        ),
        (
            "client without the grant (rp)",
            vec![],
            RP,
            400,
            "unauthorized_client",
            false,
        ),
        (
            "public client (spa)",
            vec![],
            SPA,
            400,
            "unauthorized_client",
            false,
        ),
        (
            "wrong secret, Basic",
            vec![],
            Auth::Basic(SVC, wrong),
            401,
            "invalid_client",
            true,
        ),
        (
            "wrong secret, post",
            vec![],
            Auth::Post(SVC, wrong),
            401,
            "invalid_client",
            false,
        ),
        (
            "unknown client, Basic",
            vec![],
            Auth::Basic("nobody", SVC_SECRET),
            401,
            "invalid_client",
            true,
        ),
        (
            "confidential client without its secret",
            vec![],
            Auth::Public(SVC),
            401,
            "invalid_client",
            false,
        ),
        // RFC 7591 §2: the right secret by a method the client is not registered for.
        (
            "a Basic client's secret sent in the body",
            vec![],
            Auth::Post(SVC, SVC_SECRET),
            401,
            "invalid_client",
            false,
        ),
        (
            "a client_secret_post client's secret sent as Basic",
            vec![],
            Auth::Basic(SVC_POST, SVC_SECRET),
            401,
            "invalid_client",
            true,
        ),
        (
            "no client authentication",
            vec![],
            Auth::Nothing,
            401,
            "invalid_client",
            false,
        ),
        (
            "the resource server's secret for svc",
            vec![],
            Auth::Basic(SVC, RS_SECRET),
            401,
            "invalid_client",
            true,
        ),
    ];
    for (case, extra, auth, status, error, www_basic) in cases {
        let response = client_credentials(&app, &extra, auth).await;
        assert_eq!(response.status(), status, "{case}");
        assert_eq!(header(&response, CACHE_CONTROL), "no-store", "{case}");
        let www = header(&response, WWW_AUTHENTICATE);
        if www_basic {
            assert!(www.starts_with("Basic "), "{case}: {www:?}");
        } else {
            assert!(www.is_empty(), "{case}: {www:?}");
        }
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], error, "{case}: {body}");
        assert!(body.get("access_token").is_none(), "{case}");
    }
    // svc may use no other grant.
    for grant in ["authorization_code", "refresh_token"] {
        let (status, body) = status_json(
            post(
                &app,
                "/token",
                &[("grant_type", grant), ("code", "x"), ("refresh_token", "x")],
                SERVICE,
            )
            .await,
        )
        .await;
        assert_eq!(
            (status, s(&body, "error")),
            (400, "unauthorized_client"),
            "{grant}"
        );
    }
    assert_eq!(
        db.counts().await,
        before,
        "a refused request stored something"
    );
}

#[tokio::test]
async fn a_client_credentials_token_is_no_userinfo_token() {
    let app = spawn().await;
    // Our audience but no `openid` scope: RFC 6750 §3.1 insufficient_scope.
    let token = cc_token(&app, &[], SERVICE).await;
    let (status, www, body) = userinfo(&app, s(&token, "access_token")).await;
    assert_eq!(status, 403, "{body}");
    assert!(www.contains("error=\"insufficient_scope\""), "{www}");
    assert_eq!(body["error"], "insufficient_scope");
    // Another audience (RFC 8707 resource): not a token for oxidp at all.
    let token = cc_token(&app, &[("resource", API)], SERVICE).await;
    assert_token_dead(&app, s(&token, "access_token"), "aud = resource").await;
}

// ---------------------------------------------------------------------------------------
// Introspection (RFC 7662)
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_client_introspects_its_own_access_and_refresh_tokens() {
    let app = spawn().await;
    let tokens = rp_tokens(&app, "openid profile").await;
    let access = s(&tokens, "access_token");
    let at = decode_part(access, 1);
    let sub = s(&decode_part(s(&tokens, "id_token"), 1), "sub").to_string();

    let body = introspect(&app, access, RP).await;
    assert_eq!(body["active"], true, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "openid profile");
    assert_eq!(body["client_id"], CLIENT);
    assert_eq!(body["sub"], sub.as_str());
    assert_eq!(body["username"], USER);
    assert_eq!(body["iss"], app.issuer.as_str());
    assert_eq!(body["aud"], app.issuer.as_str());
    for claim in ["exp", "iat", "jti"] {
        assert_eq!(body[claim], at[claim], "{claim}");
    }
    assert!(body["exp"].as_i64().unwrap() > now());

    let refresh_token = s(&tokens, "refresh_token");
    let body = introspect(&app, refresh_token, RP).await;
    assert_eq!(body["active"], true, "{body}");
    assert_eq!(body["token_type"], "refresh_token");
    assert_eq!(body["scope"], "openid profile");
    assert_eq!(body["client_id"], CLIENT);
    assert_eq!(body["sub"], sub.as_str());
    assert_eq!(body["username"], USER);
    assert_eq!(body["iss"], app.issuer.as_str());
    assert!(body["exp"].as_i64().unwrap() > now());
    assert!(body["iat"].as_i64().unwrap() <= now());

    // RFC 7591 §2: only the registered method (Basic for this client) is accepted.
    let response = post(
        &app,
        "/introspect",
        &[("token", access)],
        Auth::Post(CLIENT, CLIENT_SECRET),
    )
    .await;
    assert_eq!(response.status(), 401);

    // RFC 7662 §2.1: the hint is only a hint, right, wrong or unknown.
    for (token, kind) in [(access, "access"), (refresh_token, "refresh")] {
        for hint in ["access_token", "refresh_token", "id_token", "bogus"] {
            let body =
                introspect_with(&app, &[("token", token), ("token_type_hint", hint)], RP).await;
            assert_eq!(body["active"], true, "{kind} token with hint {hint}");
        }
    }
}

#[tokio::test]
async fn who_may_introspect_what() {
    let app = spawn().await;
    let tokens = rp_tokens(&app, "openid").await;
    let access = s(&tokens, "access_token");
    let refresh_token = s(&tokens, "refresh_token");
    let inactive = json!({"active": false});

    for token in [access, refresh_token] {
        // Another confidential client learns nothing, not even that the token exists.
        assert_eq!(introspect(&app, token, POSTER).await, inactive);
        assert_eq!(introspect(&app, token, SERVICE).await, inactive);
        // A resource server (`introspect_any`) sees every token.
        let body = introspect(&app, token, RESOURCE_SERVER).await;
        assert_eq!(body["active"], true, "{body}");
        assert_eq!(body["client_id"], CLIENT);
        assert_eq!(body["username"], USER);
    }

    // A client credentials token: its own client and the resource server see it; no
    // user, so no username.
    let cc = cc_token(&app, &[("resource", API), ("scope", "api:read")], SERVICE).await;
    let cc = s(&cc, "access_token");
    for auth in [SERVICE, RESOURCE_SERVER] {
        let body = introspect(&app, cc, auth).await;
        assert_eq!(body["active"], true, "{auth:?}: {body}");
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["client_id"], SVC);
        assert_eq!(body["sub"], SVC);
        assert_eq!(body["aud"], API);
        assert_eq!(body["scope"], "api:read");
        assert!(body.get("username").is_none(), "{body}");
    }
    assert_eq!(introspect(&app, cc, RP).await, inactive);

    // RFC 7662 §2.1: the caller must authenticate; a public client proves nothing.
    for (case, auth, basic) in [
        ("public client", SPA, false),
        ("no client authentication", Auth::Nothing, false),
        ("wrong secret, Basic", Auth::Basic(CLIENT, "nope"), true),
        ("wrong secret, post", Auth::Post(CLIENT, "nope"), false),
        ("unknown client", Auth::Basic("nobody", CLIENT_SECRET), true),
    ] {
        let response = post(&app, "/introspect", &[("token", access)], auth).await;
        assert_eq!(response.status(), 401, "{case}");
        assert_eq!(header(&response, CACHE_CONTROL), "no-store", "{case}");
        if basic {
            assert!(
                header(&response, WWW_AUTHENTICATE).starts_with("Basic "),
                "{case}"
            );
        }
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_client", "{case}: {body}");
        assert!(body.get("active").is_none(), "{case}");
    }
}

#[tokio::test]
async fn inactive_tokens_get_active_false_and_nothing_else() {
    let app = spawn().await;
    let tokens = rp_tokens(&app, "openid").await;
    let access = s(&tokens, "access_token").to_string();
    let mut tampered = access.clone();
    tampered.pop();
    tampered.push(if access.ends_with('A') { 'B' } else { 'A' });
    let id_token = s(&tokens, "id_token").to_string();
    let unknown_jwt = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"at+jwt","kid":"nope"}"#),
        URL_SAFE_NO_PAD.encode(r#"{"sub":"x"}"#),
        URL_SAFE_NO_PAD.encode("sig")
    );
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"at+jwt"}"#),
        access.split('.').nth(1).unwrap()
    );
    let inactive = json!({"active": false});
    for (case, token) in [
        ("garbage", "garbage"),
        (
            "unknown opaque token",
            "Xq3vO5fJ0o9cU8m2hT1kL4bN7aZ6wE0rY5tI3uP8sD2",
        ),
        ("dots only", ".."),
        ("JWT with an unknown kid", unknown_jwt.as_str()),
        ("JWT with alg none", unsigned.as_str()),
        ("tampered signature", tampered.as_str()),
        // An ID token is signed by us but is not an access token (RFC 9068 §4: typ).
        ("ID token", id_token.as_str()),
        ("65-character opaque token", &"r".repeat(65)),
    ] {
        for auth in [RP, RESOURCE_SERVER] {
            assert_eq!(
                introspect(&app, token, auth).await,
                inactive,
                "{case} ({auth:?})"
            );
        }
    }

    // RFC 6749 §3.1: an empty parameter is an omitted one; RFC 7662 §2.1: token is
    // REQUIRED.
    for (case, pairs) in [
        ("no token", vec![]),
        ("empty token", vec![("token", "")]),
        ("only a hint", vec![("token_type_hint", "access_token")]),
    ] {
        let response = post(&app, "/introspect", &pairs, RP).await;
        let (status, body) = status_json(response).await;
        assert_eq!(
            (status, s(&body, "error")),
            (400, "invalid_request"),
            "{case}"
        );
    }

    // A revoked access token is inactive (an expired one takes the same path; see the
    // module comment).
    assert_eq!(introspect(&app, &access, RP).await["active"], true);
    revoke(&app, &access, RP).await;
    assert_eq!(introspect(&app, &access, RP).await, inactive);
    assert_eq!(introspect(&app, &access, RESOURCE_SERVER).await, inactive);
}

#[tokio::test]
async fn a_disabled_users_tokens_are_revoked_for_good() {
    let app = spawn().await;
    let tokens = rp_tokens(&app, "openid").await;
    let access = s(&tokens, "access_token");
    let refresh_token = s(&tokens, "refresh_token");
    let inactive = json!({"active": false});

    let out = app.cli(&["user", "disable", USER]).await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    for (case, token) in [("access", access), ("refresh", refresh_token)] {
        for auth in [RP, RESOURCE_SERVER] {
            assert_eq!(
                introspect(&app, token, auth).await,
                inactive,
                "{case} ({auth:?})"
            );
        }
    }
    assert_token_dead(&app, access, "disabled user").await;

    // Disabling revoked them: enabling the user again does not bring them back, but
    // the user can sign in afresh.
    let out = app.cli(&["user", "enable", USER]).await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(introspect(&app, access, RP).await, inactive);
    assert_eq!(introspect(&app, refresh_token, RP).await, inactive);
    let fresh = rp_tokens(&app, "openid").await;
    assert_eq!(
        introspect(&app, s(&fresh, "access_token"), RP).await["active"],
        true
    );
}

// ---------------------------------------------------------------------------------------
// Revocation (RFC 7009)
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn revoking_an_access_token_leaves_its_refresh_family_alive() {
    let app = spawn().await;
    let tokens = rp_tokens(&app, "openid").await;
    let access = s(&tokens, "access_token");
    let refresh_token = s(&tokens, "refresh_token");
    assert_token_alive(&app, access, "before revocation").await;

    let response = post(&app, "/revoke", &[("token", access)], RP).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, CACHE_CONTROL), "no-store");
    assert_token_dead(&app, access, "revoked access token").await;
    assert_eq!(introspect(&app, access, RP).await, json!({"active": false}));
    // Revoking it again is still 200 (RFC 7009 §2.2).
    revoke(&app, access, RP).await;

    // The refresh token still works, and the new access token is good.
    assert_eq!(introspect(&app, refresh_token, RP).await["active"], true);
    let (status, body) = refresh(&app, refresh_token, RP).await;
    assert_eq!(status, 200, "{body}");
    assert_token_alive(&app, s(&body, "access_token"), "access token after refresh").await;
    assert_token_dead(&app, access, "the revoked one stays revoked").await;

    // A client credentials token is revoked the same way.
    let cc = cc_token(&app, &[], SERVICE).await;
    let cc = s(&cc, "access_token");
    assert_eq!(introspect(&app, cc, RESOURCE_SERVER).await["active"], true);
    revoke(&app, cc, SERVICE).await;
    assert_eq!(
        introspect(&app, cc, RESOURCE_SERVER).await,
        json!({"active": false})
    );
}

#[tokio::test]
async fn revoking_a_refresh_token_ends_its_family() {
    let app = spawn().await;
    let first = rp_tokens(&app, "openid").await;
    let (status, second) = refresh(&app, s(&first, "refresh_token"), RP).await;
    assert_eq!(status, 200, "{second}");
    let live_refresh = s(&second, "refresh_token");
    // A second, unrelated grant of the same user and client must survive.
    let other = rp_tokens(&app, "openid").await;

    // The hint may even be wrong (RFC 7009 §2.1: the server extends its search).
    let response = post(
        &app,
        "/revoke",
        &[("token", live_refresh), ("token_type_hint", "access_token")],
        RP,
    )
    .await;
    assert_eq!(response.status(), 200);

    let (status, body) = refresh(&app, live_refresh, RP).await;
    assert_eq!((status, s(&body, "error")), (400, "invalid_grant"));
    // RFC 7009 §2.1: the access tokens of the grant go with it, old and new.
    assert_token_dead(&app, s(&first, "access_token"), "first access token").await;
    assert_token_dead(&app, s(&second, "access_token"), "refreshed access token").await;
    assert_eq!(
        introspect(&app, live_refresh, RP).await,
        json!({"active": false})
    );
    assert_eq!(
        introspect(&app, s(&second, "access_token"), RESOURCE_SERVER).await,
        json!({"active": false})
    );
    // The rotated-out predecessor is no way back in, even within the grace window.
    let (status, body) = refresh(&app, s(&first, "refresh_token"), RP).await;
    assert_eq!(
        (status, s(&body, "error")),
        (400, "invalid_grant"),
        "predecessor after family revocation"
    );

    // The other grant is untouched.
    assert_token_alive(&app, s(&other, "access_token"), "other grant").await;
    let (status, body) = refresh(&app, s(&other, "refresh_token"), RP).await;
    assert_eq!(status, 200, "other grant: {body}");
}

#[tokio::test]
async fn revoking_a_rotated_out_refresh_token_still_revokes() {
    let app = spawn().await;
    let first = rp_tokens(&app, "openid").await;
    let old = s(&first, "refresh_token");
    let (status, second) = refresh(&app, old, RP).await;
    assert_eq!(status, 200, "{second}");

    // The client revokes the refresh token it holds, not knowing a concurrent request
    // already rotated it (the case the grace window exists for). RFC 7009 §2: after a
    // 200 the token is no longer usable, and §2.1 the grant's other tokens SHOULD go
    // too (issue 5: "revoking a refresh token revokes its family").
    revoke(&app, old, RP).await;
    // Regression: revoking a rotated-out token must not be a silent no-op; within the
    // grace window the "revoked" token would otherwise still refresh (and return the
    // live successor), and the family would live on.
    let (status, body) = refresh(&app, old, RP).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "the revoked token still refreshes (got refresh_token: {})",
        body.get("refresh_token").is_some()
    );
    let (status, body) = refresh(&app, s(&second, "refresh_token"), RP).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "the family outlived the revocation (got refresh_token: {})",
        body.get("refresh_token").is_some()
    );
    assert_token_dead(&app, s(&second, "access_token"), "family access token").await;
}

#[tokio::test]
async fn revocation_answers_200_but_only_touches_the_callers_tokens() {
    let app = spawn().await;
    let mut db = Db::open(&app).await;
    let tokens = rp_tokens(&app, "openid").await;
    let access = s(&tokens, "access_token");
    let refresh_token = s(&tokens, "refresh_token");
    let before = revocation_state(&mut db).await;

    // Unknown tokens: 200 (RFC 7009 §2.2), nothing stored.
    for token in [
        "unknown",
        "a.b.c",
        "Xq3vO5fJ0o9cU8m2hT1kL4bN7aZ6wE0rY5tI3uP8sD2",
    ] {
        revoke(&app, token, RP).await;
    }
    // Someone else's tokens: 200 too, but they keep working (§2.1: the server "first
    // validates the client credentials ... and verifies whether the token was issued
    // to the client making the revocation request").
    for auth in [POSTER, SERVICE, RESOURCE_SERVER, SPA] {
        revoke(&app, access, auth).await;
        revoke(&app, refresh_token, auth).await;
    }
    assert_eq!(revocation_state(&mut db).await, before);
    assert_token_alive(&app, access, "after others tried to revoke it").await;
    assert_eq!(introspect(&app, refresh_token, RP).await["active"], true);

    // Missing token: invalid_request; no or failed client authentication: 401.
    for (case, pairs, auth, status, error) in [
        ("no token", vec![], RP, 400, "invalid_request"),
        (
            "empty token",
            vec![("token", "")],
            RP,
            400,
            "invalid_request",
        ),
        (
            "no client authentication",
            vec![("token", access)],
            Auth::Nothing,
            401,
            "invalid_client",
        ),
        (
            "wrong secret",
            vec![("token", access)],
            Auth::Basic(CLIENT, "nope"),
            401,
            "invalid_client",
        ),
        (
            "rp without its secret",
            vec![("token", access)],
            Auth::Public(CLIENT),
            401,
            "invalid_client",
        ),
    ] {
        let response = post(&app, "/revoke", &pairs, auth).await;
        assert_eq!(header(&response, CACHE_CONTROL), "no-store", "{case}");
        let (got, body) = status_json(response).await;
        assert_eq!((got, s(&body, "error")), (status, error), "{case}");
    }
    assert_eq!(revocation_state(&mut db).await, before);
    assert_token_alive(&app, access, "after refused revocations").await;

    // Any hint, even an unknown one, is accepted.
    for hint in ["refresh_token", "bogus"] {
        let response = post(
            &app,
            "/revoke",
            &[("token", "unknown"), ("token_type_hint", hint)],
            RP,
        )
        .await;
        assert_eq!(response.status(), 200, "{hint}");
    }
}

#[tokio::test]
async fn a_public_client_revokes_its_own_tokens() {
    let app = spawn().await;
    let rp = rp_tokens(&app, "openid").await;
    let tokens = spa_tokens(&app).await;
    let access = s(&tokens, "access_token");
    assert_token_alive(&app, access, "spa token").await;
    assert_eq!(
        introspect(&app, access, RESOURCE_SERVER).await["active"],
        true
    );

    // RFC 7009 §5: public clients may revoke their own tokens, with their client_id.
    revoke(&app, access, SPA).await;
    assert_token_dead(&app, access, "revoked spa access token").await;
    assert_eq!(
        introspect(&app, access, RESOURCE_SERVER).await,
        json!({"active": false})
    );

    let refresh_token = s(&tokens, "refresh_token");
    revoke(&app, refresh_token, SPA).await;
    let (status, body) = refresh(&app, refresh_token, SPA).await;
    assert_eq!((status, s(&body, "error")), (400, "invalid_grant"));

    // It cannot touch another client's tokens.
    revoke(&app, s(&rp, "access_token"), SPA).await;
    assert_token_alive(&app, s(&rp, "access_token"), "rp token").await;
}

// ---------------------------------------------------------------------------------------
// Discovery
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn discovery_advertises_introspection_revocation_and_the_grants() {
    let app = spawn().await;
    let doc = app.get_json("/.well-known/openid-configuration").await;
    assert_eq!(doc["introspection_endpoint"], app.url("/introspect"));
    assert_eq!(doc["revocation_endpoint"], app.url("/revoke"));
    let list = |key: &str| -> Vec<String> {
        doc[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key} missing"))
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    let introspection = list("introspection_endpoint_auth_methods_supported");
    let revocation = list("revocation_endpoint_auth_methods_supported");
    for method in ["client_secret_basic", "client_secret_post"] {
        assert!(
            introspection.iter().any(|m| m == method),
            "{introspection:?}"
        );
        assert!(revocation.iter().any(|m| m == method), "{revocation:?}");
    }
    // Matches behaviour: public clients may revoke but not introspect.
    assert!(
        !introspection.iter().any(|m| m == "none"),
        "{introspection:?}"
    );
    assert!(revocation.iter().any(|m| m == "none"), "{revocation:?}");
    let grants = list("grant_types_supported");
    for grant in ["authorization_code", "refresh_token", "client_credentials"] {
        assert!(grants.iter().any(|g| g == grant), "{grants:?}");
    }
    // RFC 8414: the same document under the OAuth name.
    assert_eq!(
        app.get_json("/.well-known/oauth-authorization-server")
            .await,
        doc
    );
}

// ---------------------------------------------------------------------------------------
// Housekeeping: `oxidp purge`
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn purge_deletes_expired_rows_and_only_those() {
    let app = spawn_app_with(grants_options(
        "[tokens]\nauthorization_code_seconds = 10\n",
    ))
    .await;
    let mut db = Db::open(&app).await;

    // A fresh database: nothing to purge.
    let out = app.cli(&["purge"]).await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(
        out.stdout.contains(
            "purged 0 codes, 0 pending requests, 0 sessions, 0 refresh tokens, 0 revocations, 0 audit events"
        ),
        "{}",
        out.stdout
    );

    // A second browser signs in and leaves a code unredeemed; its session then expires.
    let other = app.new_browser();
    let back = app
        .authorize_in(
            &other,
            &authorize_url(&app, CLIENT, "openid", ""),
            USER,
            PASSWORD,
            "allow",
        )
        .await;
    assert!(query_param(&back, "code").is_some());
    assert_eq!(
        db.exec("UPDATE browser_sessions SET expires_at = 0", &[])
            .await,
        1
    );
    assert_eq!(
        db.exec(
            "UPDATE authorization_codes SET expires_at = 0 WHERE used_at IS NULL",
            &[]
        )
        .await,
        1
    );

    // The main browser: a redeemed code, a rotated refresh token, a revoked access token.
    let tokens = rp_tokens(&app, "openid").await;
    let (status, rotated) = refresh(&app, s(&tokens, "refresh_token"), RP).await;
    assert_eq!(status, 200, "{rotated}");
    let revoked = s(&rotated, "access_token");
    revoke(&app, revoked, RP).await;
    assert_eq!(
        db.exec(
            "UPDATE refresh_tokens SET expires_at = 0 WHERE used_at IS NOT NULL",
            &[]
        )
        .await,
        1
    );

    // A revocation that outlived its token.
    let cc = cc_token(&app, &[], SERVICE).await;
    let cc_jti = decode_part(s(&cc, "access_token"), 1)["jti"]
        .as_str()
        .unwrap()
        .to_string();
    revoke(&app, s(&cc, "access_token"), SERVICE).await;
    assert_eq!(
        db.exec(
            "UPDATE revocations SET expires_at = 0 WHERE id = $1",
            &[&cc_jti]
        )
        .await,
        1
    );

    // A third browser starts an authorization and never signs in.
    let abandoned = app.new_browser();
    let response = abandoned
        .get(authorize_url(&app, CLIENT, "openid", ""))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_redirection());
    assert_eq!(
        db.exec(
            "UPDATE authorization_requests SET expires_at = 0 WHERE completed_at IS NULL",
            &[]
        )
        .await,
        1
    );

    let before = db.counts().await;
    let out = app.cli(&["purge"]).await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(
        out.stdout.contains(
            "purged 1 codes, 1 pending requests, 1 sessions, 1 refresh tokens, 1 revocations, 0 audit events"
        ),
        "{}",
        out.stdout
    );
    let after = db.counts().await;
    let expected: Vec<i64> = before.iter().map(|n| n - 1).collect();
    assert_eq!(after, expected, "{TABLE_COUNTS:?}");
    assert!(after.iter().all(|n| *n >= 1), "live rows remain: {after:?}");

    // Idempotent.
    let out = app.cli(&["purge"]).await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(
        out.stdout.contains(
            "purged 0 codes, 0 pending requests, 0 sessions, 0 refresh tokens, 0 revocations, 0 audit events"
        ),
        "{}",
        out.stdout
    );
    assert_eq!(db.counts().await, after);

    // What is live still works: the revocation still holds, the refresh family and the
    // browser session go on.
    assert_token_dead(&app, revoked, "revocation kept by purge").await;
    let (status, body) = refresh(&app, s(&rotated, "refresh_token"), RP).await;
    assert_eq!(status, 200, "{body}");
    let again = app
        .http
        .get(authorize_url(&app, CLIENT, "openid", ""))
        .send()
        .await
        .unwrap();
    let location = header(&again, reqwest::header::LOCATION);
    assert!(location.starts_with(REDIRECT), "session kept: {location}");
}

// ---------------------------------------------------------------------------------------
// Bad input at /introspect and /revoke
// ---------------------------------------------------------------------------------------

/// What a bad request must get.
#[derive(Clone, Copy, Debug)]
enum Want {
    /// A standard error with this status and code (RFC 6749 §5.2 shape).
    Error(u16, &'static str),
    /// Treated as an unknown token: `{"active": false}` / 200 with nothing done.
    Ignored,
}

/// (case, content type, body, `Authorization` header, expectation)
type BadCase<'a> = (&'a str, Option<&'a str>, Vec<u8>, Option<String>, Want);

#[tokio::test]
async fn bad_input_at_introspect_and_revoke() {
    let app = spawn().await;
    let mut db = Db::open(&app).await;
    let tokens = rp_tokens(&app, "openid").await;
    let access = s(&tokens, "access_token").to_string();
    let refresh_token = s(&tokens, "refresh_token").to_string();
    let basic = format!(
        "Basic {}",
        STANDARD.encode(format!("{CLIENT}:{CLIENT_SECRET}"))
    );
    let secret = enc(CLIENT_SECRET);
    let long = "t".repeat(10 * 1024);
    let long_jwt = format!(
        "{}.{}.{}",
        "a".repeat(1300),
        "b".repeat(1300),
        "c".repeat(1300)
    );
    let nul_jwt = format!("{}%00", enc(&access));
    let before = revocation_state(&mut db).await;

    let a = enc(&access);
    let r = enc(&refresh_token);
    let cases: Vec<BadCase> = vec![
        (
            "JSON body",
            Some("application/json"),
            json!({"token": access}).to_string().into_bytes(),
            Some(basic.clone()),
            Want::Error(400, "invalid_request"),
        ),
        (
            "no content type",
            None,
            format!("token={a}").into_bytes(),
            Some(basic.clone()),
            Want::Error(400, "invalid_request"),
        ),
        (
            "text/plain",
            Some("text/plain"),
            format!("token={a}").into_bytes(),
            Some(basic.clone()),
            Want::Error(400, "invalid_request"),
        ),
        (
            "multipart",
            Some("multipart/form-data; boundary=x"),
            format!(
                "--x\r\nContent-Disposition: form-data; name=\"token\"\r\n\r\n{access}\r\n--x--\r\n"
            )
            .into_bytes(),
            Some(basic.clone()),
            Want::Error(400, "invalid_request"),
        ),
        (
            "repeated token",
            Some(FORM),
            format!("token={a}&token={a}").into_bytes(),
            Some(basic.clone()),
            Want::Error(400, "invalid_request"),
        ),
        (
            "repeated token, two values",
            Some(FORM),
            format!("token={a}&token={r}").into_bytes(),
            Some(basic.clone()),
            Want::Error(400, "invalid_request"),
        ),
        (
            "repeated token_type_hint",
            Some(FORM),
            format!("token={r}&token_type_hint=refresh_token&token_type_hint=access_token")
                .into_bytes(),
            Some(basic.clone()),
            Want::Error(400, "invalid_request"),
        ),
        (
            "token of 10 KB",
            Some(FORM),
            format!("token={long}").into_bytes(),
            Some(basic.clone()),
            Want::Error(400, "invalid_request"),
        ),
        (
            "JWT-shaped token of 4 KB",
            Some(FORM),
            format!("token={long_jwt}").into_bytes(),
            Some(basic.clone()),
            Want::Ignored,
        ),
        (
            "token with invalid UTF-8 (percent-encoded)",
            Some(FORM),
            b"token=%FF%FE%C0".to_vec(),
            Some(basic.clone()),
            Want::Ignored,
        ),
        (
            "token with invalid UTF-8 (raw bytes)",
            Some(FORM),
            b"token=\xff\xfe\xc0abc".to_vec(),
            Some(basic.clone()),
            Want::Ignored,
        ),
        (
            "NUL in an opaque token",
            Some(FORM),
            b"token=ab%00cd".to_vec(),
            Some(basic.clone()),
            Want::Ignored,
        ),
        (
            "access token with a trailing NUL",
            Some(FORM),
            format!("token={nul_jwt}").into_bytes(),
            Some(basic.clone()),
            Want::Ignored,
        ),
        (
            "refresh token with a trailing NUL",
            Some(FORM),
            format!("token={r}%00").into_bytes(),
            Some(basic.clone()),
            Want::Ignored,
        ),
        (
            "refresh token in other case",
            Some(FORM),
            format!("token={}", enc(&refresh_token.to_uppercase())).into_bytes(),
            Some(basic.clone()),
            Want::Ignored,
        ),
        (
            "token of spaces",
            Some(FORM),
            b"token=%20%20".to_vec(),
            Some(basic.clone()),
            Want::Ignored,
        ),
        (
            "empty body",
            Some(FORM),
            Vec::new(),
            Some(basic.clone()),
            Want::Error(400, "invalid_request"),
        ),
        (
            "malformed Basic",
            Some(FORM),
            format!("token={a}").into_bytes(),
            Some("Basic !!!".into()),
            Want::Error(401, "invalid_client"),
        ),
        (
            "Bearer instead of Basic",
            Some(FORM),
            format!("token={a}").into_bytes(),
            Some(format!("Bearer {access}")),
            Want::Error(401, "invalid_client"),
        ),
        (
            "Basic and client_secret",
            Some(FORM),
            format!("token={a}&client_secret={secret}").into_bytes(),
            Some(basic.clone()),
            Want::Error(400, "invalid_request"),
        ),
        (
            "Basic and another client_id",
            Some(FORM),
            format!("token={a}&client_id=poster").into_bytes(),
            Some(basic.clone()),
            Want::Error(400, "invalid_request"),
        ),
        (
            "NUL in client_id",
            Some(FORM),
            format!("token={a}&client_id=rp%00&client_secret={secret}").into_bytes(),
            None,
            Want::Error(401, "invalid_client"),
        ),
        (
            "invalid UTF-8 in client_id",
            Some(FORM),
            format!("token={a}&client_id=r%FFp&client_secret={secret}").into_bytes(),
            None,
            Want::Error(401, "invalid_client"),
        ),
        (
            "client_id of 10 KB",
            Some(FORM),
            format!("token={a}&client_id={long}&client_secret={secret}").into_bytes(),
            None,
            Want::Error(400, "invalid_request"),
        ),
        (
            "client_id of 200 characters",
            Some(FORM),
            format!(
                "token={a}&client_id={}&client_secret={secret}",
                "c".repeat(200)
            )
            .into_bytes(),
            None,
            Want::Error(401, "invalid_client"),
        ),
        (
            "repeated client_secret",
            Some(FORM),
            format!("token={a}&client_id={CLIENT}&client_secret={secret}&client_secret={secret}")
                .into_bytes(),
            None,
            Want::Error(400, "invalid_request"),
        ),
    ];

    for path in ["/introspect", "/revoke"] {
        for (case, content_type, body, authorization, want) in &cases {
            let mut request = app.http.post(app.url(path)).body(body.clone());
            if let Some(ct) = content_type {
                request = request.header(CONTENT_TYPE, *ct);
            }
            if let Some(a) = authorization {
                request = request.header(AUTHORIZATION, a.as_str());
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            assert!(status < 500, "{path} {case}: {status}");
            let cache = header(&response, CACHE_CONTROL);
            let basic_used = authorization
                .as_deref()
                .is_some_and(|a| a.starts_with("Basic"));
            let www = header(&response, WWW_AUTHENTICATE);
            let (_, got) = status_json(response).await;
            match want {
                Want::Error(want_status, error) => {
                    assert_eq!(status, *want_status, "{path} {case}: {got}");
                    assert_eq!(got["error"], *error, "{path} {case}: {got}");
                    assert_eq!(cache, "no-store", "{path} {case}");
                    if status == 401 && basic_used {
                        assert!(www.starts_with("Basic "), "{path} {case}: {www:?}");
                    }
                }
                Want::Ignored if path == "/introspect" => {
                    assert_eq!(status, 200, "{path} {case}: {got}");
                    assert_eq!(got, json!({"active": false}), "{path} {case}");
                }
                Want::Ignored => assert_eq!(status, 200, "{path} {case}: {got}"),
            }
        }
    }

    // GET is not how these endpoints are called.
    for path in ["/introspect", "/revoke"] {
        let response = app
            .http
            .get(app.url(&format!("{path}?token={}", enc(&access))))
            .basic_auth(CLIENT, Some(CLIENT_SECRET))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "GET {path}");
    }

    // Nothing was revoked by any of it.
    assert_eq!(revocation_state(&mut db).await, before);
    assert_token_alive(&app, &access, "after the bad requests").await;
    assert_eq!(introspect(&app, &refresh_token, RP).await["active"], true);
}
