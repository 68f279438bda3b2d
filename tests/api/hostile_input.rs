//! The hostile-input sweep (issue 12): every route of DESIGN.md's endpoint table with
//! every method, odd content types and bodies (empty, truncated, 1 MiB, invalid UTF-8,
//! duplicate parameters, NUL bytes), odd headers and odd paths, with and without valid
//! credentials, plus malformed HTTP on a raw socket. Whatever arrives: never a 5xx, the
//! connection keeps working, and nothing stored changes (row counts of every table, and
//! the full user, client and key records).
//!
//! bad_input.rs checks the exact error of each endpoint; this file only checks the
//! invariants, but over far more combinations.

use std::time::Duration;

use reqwest::Method;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde_json::Value;
use sqlx::Connection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{Options, PASSWORD, TestApp, USER, flow_options, spawn_app_with};

const CONSOLE: &str = "console";
const CONSOLE_SECRET: &str = "console-secret-that-is-long-enough-0123";

fn options() -> Options {
    let mut options = flow_options();
    options.extra_toml.push_str(&format!(
        r#"
[[clients]]
id = "{CONSOLE}"
secret = "{CONSOLE_SECRET}"
first_party = true
grant_types = ["password", "refresh_token"]
"#
    ));
    options
}

/// Every route, with placeholders filled by ids that do not exist: a hostile request
/// about an existing user would be a legitimate one.
const ROUTES: &[&str] = &[
    "/.well-known/openid-configuration",
    "/.well-known/oauth-authorization-server",
    "/jwks.json",
    "/authorize",
    "/token",
    "/userinfo",
    "/introspect",
    "/revoke",
    "/logout",
    "/login",
    "/consent",
    "/register",
    "/forgot-password",
    "/reset-password",
    "/verify-email",
    "/account",
    "/account/sessions",
    "/healthz",
    "/readyz",
    "/metrics",
    "/assets/oxidp.css",
    "/api/v1/openapi.json",
    "/api/v1/account/register",
    "/api/v1/account/me",
    "/api/v1/account/me/password",
    "/api/v1/account/me/verification",
    "/api/v1/account/password-reset",
    "/api/v1/account/password-reset/confirm",
    "/api/v1/account/verify-email",
    "/api/v1/account/sessions",
    "/api/v1/account/sessions/no-such-session",
    "/api/v1/admin/users",
    "/api/v1/admin/users/no-such-sub",
    "/api/v1/admin/users/no-such-sub/password-reset",
    "/api/v1/admin/users/no-such-sub/sessions",
    "/api/v1/admin/users/no-such-sub/sessions/no-such-sid",
    "/api/v1/admin/clients",
    "/api/v1/admin/clients/no-such-client",
    "/api/v1/admin/clients/no-such-client/secret",
    "/api/v1/admin/keys",
    "/api/v1/admin/keys/rotate",
    "/api/v1/admin/keys/no-such-kid/retire",
    "/api/v1/admin/audit",
];

/// Requests that are complete and valid whatever their body, so a real credential makes
/// them change something by design (they take no input to be hostile about).
fn is_bodyless_action(method: &Method, path: &str) -> bool {
    matches!(
        (method.as_str(), path),
        ("POST", "/api/v1/admin/keys/rotate")
            | ("DELETE", "/api/v1/account/sessions")
            | ("POST", "/api/v1/account/me/verification")
    )
}

fn methods() -> Vec<Method> {
    [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "PROPFIND", "get",
        "X-NOPE",
    ]
    .iter()
    .map(|m| Method::from_bytes(m.as_bytes()).unwrap())
    .collect()
}

/// Every parameter name any endpoint reads, each sent twice with different values.
fn duplicated_params() -> Vec<u8> {
    let names = [
        "client_id",
        "redirect_uri",
        "response_type",
        "scope",
        "state",
        "grant_type",
        "code",
        "code_verifier",
        "refresh_token",
        "token",
        "token_type_hint",
        "username",
        "password",
        "csrf_token",
        "req",
        "decision",
        "id_token_hint",
        "post_logout_redirect_uri",
        "email",
        "access_token",
        "client_secret",
    ];
    let mut out = String::new();
    for name in names {
        out.push_str(&format!("{name}=a&{name}=b&"));
    }
    out.into_bytes()
}

/// (name, content type, body).
fn bodies() -> Vec<(&'static str, Option<&'static str>, Vec<u8>)> {
    const FORM: &str = "application/x-www-form-urlencoded";
    const JSON: &str = "application/json";
    let mut nested = "[".repeat(10_000);
    nested.push_str(&"]".repeat(10_000));
    vec![
        ("empty form", Some(FORM), Vec::new()),
        ("empty, no content type", None, Vec::new()),
        ("1 MiB form", Some(FORM), vec![b'a'; 1024 * 1024]),
        ("1 MiB JSON string", Some(JSON), {
            let mut b = b"{\"username\":\"".to_vec();
            b.extend(vec![b'x'; 1024 * 1024]);
            b.extend(b"\"}");
            b
        }),
        ("60 KiB of empty pairs", Some(FORM), vec![b'&'; 60 * 1024]),
        (
            "invalid UTF-8 form",
            Some(FORM),
            b"\xff\xfe=\xfd&client_id=\xc3\x28&grant_type=\x80&username=\xff&token=\xff".to_vec(),
        ),
        (
            "invalid UTF-8 JSON",
            Some(JSON),
            b"{\"username\":\"\xff\xfe\",\"email\":\"\xc3\x28@example.com\"}".to_vec(),
        ),
        (
            "NUL bytes form",
            Some(FORM),
            b"client_id=r\0p&grant_type=\0&username=al\0ice&password=\0&token=%00&email=a%00@example.com"
                .to_vec(),
        ),
        (
            "NUL bytes JSON",
            Some(JSON),
            br#"{"username":"al\u0000ice","email":"a\u0000@example.com","password":"\u0000","name":"\u0000","token":"\u0000"}"#.to_vec(),
        ),
        ("duplicate parameters", Some(FORM), duplicated_params()),
        (
            "duplicate JSON keys",
            Some(JSON),
            br#"{"username":"a","username":"b","email":"x","email":"y","roles":"admin","roles":["admin"]}"#.to_vec(),
        ),
        (
            "truncated form",
            Some(FORM),
            b"grant_type=authorization_co%2&code=%".to_vec(),
        ),
        (
            "truncated JSON",
            Some(JSON),
            br#"{"username":"al"#.to_vec(),
        ),
        ("JSON nested 10000 deep", Some(JSON), nested.into_bytes()),
        (
            "JSON of wrong types",
            Some(JSON),
            br#"{"username":1e999,"email":[],"password":{},"roles":"admin","disabled":"yes","redirect_uris":7,"limit":-1}"#.to_vec(),
        ),
        ("JSON null", Some(JSON), b"null".to_vec()),
        (
            "form sent as JSON",
            Some(JSON),
            b"grant_type=client_credentials".to_vec(),
        ),
        (
            "JSON sent as form",
            Some(FORM),
            br#"{"grant_type":"client_credentials"}"#.to_vec(),
        ),
        (
            "multipart without boundary",
            Some("multipart/form-data"),
            b"--x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nb\r\n--x--\r\n".to_vec(),
        ),
        (
            "form, UTF-16 charset",
            Some("application/x-www-form-urlencoded; charset=utf-16"),
            b"\xff\xfeg\0r\0".to_vec(),
        ),
        (
            "two content types",
            Some("application/json, application/x-www-form-urlencoded"),
            b"{}".to_vec(),
        ),
        (
            "content type parameters only",
            Some(";;;=;charset"),
            b"a=b".to_vec(),
        ),
        ("binary", Some("application/octet-stream"), (0..=255u8).collect()),
    ]
}

/// Authorization values a client might send, good ones included: a hostile body with a
/// real credential must be refused as firmly as one without.
struct Credentials {
    user: String,
    admin: String,
}

async fn credentials(app: &TestApp) -> Credentials {
    let grant = |scope: &'static str| async move {
        let response = app
            .token(
                &[
                    ("grant_type", "password"),
                    ("username", USER),
                    ("password", PASSWORD),
                    ("scope", scope),
                ],
                Some((CONSOLE, CONSOLE_SECRET)),
            )
            .await;
        let body: Value = response.json().await.unwrap();
        body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("password grant: {body}"))
            .to_string()
    };
    Credentials {
        user: grant("openid profile email").await,
        admin: grant("openid oxidp:admin").await,
    }
}

/// Every stored row, by table, plus the full records the admin API can modify in place
/// (a PATCH changes no count). The audit trail is left out on purpose: refused requests
/// are audited (failed sign-ins, refused admin calls), which is the point of it.
struct Peek(PeekConn);

enum PeekConn {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl Peek {
    async fn open(app: &TestApp) -> Self {
        Self(if app.db.url.starts_with("sqlite") {
            PeekConn::Sqlite(sqlx::SqliteConnection::connect(&app.db.url).await.unwrap())
        } else {
            PeekConn::Postgres(sqlx::PgConnection::connect(&app.db.url).await.unwrap())
        })
    }

    async fn tables(&mut self) -> Vec<String> {
        let tables: Vec<String> = match &mut self.0 {
            PeekConn::Sqlite(c) => sqlx::query_scalar(
                "SELECT name FROM sqlite_master WHERE type = 'table' \
                 AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_sqlx%' ORDER BY name",
            )
            .fetch_all(c)
            .await
            .unwrap(),
            PeekConn::Postgres(c) => sqlx::query_scalar(
                "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() \
                 AND tablename NOT LIKE '_sqlx%' ORDER BY tablename",
            )
            .fetch_all(c)
            .await
            .unwrap(),
        };
        tables.into_iter().filter(|t| t != "audit_events").collect()
    }

    async fn snapshot(&mut self, app: &TestApp) -> String {
        let mut out = String::new();
        for table in self.tables().await {
            let q = sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}"));
            let n: i64 = match &mut self.0 {
                PeekConn::Sqlite(c) => sqlx::query_scalar(q).fetch_one(c).await.unwrap(),
                PeekConn::Postgres(c) => sqlx::query_scalar(q).fetch_one(c).await.unwrap(),
            };
            out.push_str(&format!("{table}: {n}\n"));
        }
        out.push_str(&app.snapshot().await);
        out
    }
}

/// Sends one request; a 5xx or a dropped connection fails the test. A server may refuse
/// an oversized body before reading it and close the connection: allowed for those only.
async fn send(request: reqwest::RequestBuilder, body_len: usize, case: &str) {
    match request.timeout(Duration::from_secs(20)).send().await {
        Ok(response) => {
            let status = response.status();
            // The body must arrive whole too (no connection reset mid-response).
            let text = response
                .bytes()
                .await
                .unwrap_or_else(|e| panic!("{case}: body cut off: {e}"));
            assert!(
                status.as_u16() < 500,
                "{case}: {status} {}",
                String::from_utf8_lossy(&text[..text.len().min(300)])
            );
        }
        Err(e) if body_len > 64 * 1024 && !e.is_timeout() => {}
        Err(e) => panic!("{case}: no response: {e}"),
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn every_route_and_method_with_hostile_bodies_is_never_a_server_error() {
    let app = spawn_app_with(options()).await;
    let creds = credentials(&app).await;
    let mut peek = Peek::open(&app).await;
    let http = client();
    let bodies = bodies();
    let before = peek.snapshot(&app).await;
    for path in ROUTES {
        // Every method, no body, with each kind of credential.
        for method in methods() {
            for (auth_name, auth) in [
                ("none", None),
                ("admin bearer", Some(format!("Bearer {}", creds.admin))),
            ] {
                if auth.is_some() && is_bodyless_action(&method, path) {
                    continue;
                }
                let mut request = http.request(method.clone(), app.url(path));
                if let Some(a) = &auth {
                    request = request.header(AUTHORIZATION, a);
                }
                send(request, 0, &format!("{method} {path} auth={auth_name}")).await;
            }
        }
        // Hostile bodies with the methods that carry one, without credentials and with
        // the credential the route expects. PUT is routed nowhere (405 above).
        let expected = if path.starts_with("/api/v1/admin") {
            ("admin bearer", format!("Bearer {}", creds.admin))
        } else if path.starts_with("/api/v1/account") || *path == "/userinfo" {
            ("user bearer", format!("Bearer {}", creds.user))
        } else {
            ("client basic", basic(CONSOLE, CONSOLE_SECRET))
        };
        for method in [Method::POST, Method::PATCH, Method::DELETE] {
            for (auth_name, auth) in [("none", None), (expected.0, Some(&expected.1))] {
                if auth.is_some() && is_bodyless_action(&method, path) {
                    continue;
                }
                for (name, content_type, body) in &bodies {
                    // Oversized bodies cost the same refusal whatever the method.
                    if body.len() > 64 * 1024 && method != Method::POST {
                        continue;
                    }
                    let mut request = http
                        .request(method.clone(), app.url(path))
                        .body(body.clone());
                    if let Some(ct) = content_type {
                        request = request.header(CONTENT_TYPE, *ct);
                    }
                    if let Some(a) = auth {
                        request = request.header(AUTHORIZATION, a);
                    }
                    let case = format!("{method} {path} auth={auth_name} body={name}");
                    send(request, body.len(), &case).await;
                }
            }
        }
        assert_eq!(
            peek.snapshot(&app).await,
            before,
            "{path}: something stored changed"
        );
    }
    assert_eq!(app.get("/healthz").await.status(), 200);
}

fn basic(id: &str, secret: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

#[tokio::test]
async fn odd_headers_queries_and_paths_are_never_a_server_error() {
    let app = spawn_app_with(options()).await;
    let mut peek = Peek::open(&app).await;
    let http = client();
    let long = "a".repeat(6 * 1024);
    let headers: Vec<(&str, &str, String)> = vec![
        ("empty bearer", "authorization", "Bearer ".into()),
        ("bearer of spaces", "authorization", "Bearer      ".into()),
        ("bearer not a JWT", "authorization", "Bearer abc".into()),
        (
            "bearer alg none",
            "authorization",
            "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.".into(),
        ),
        (
            "bearer with a bad kid",
            "authorization",
            "Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6Ii4uLy4uL2V0Yy9wYXNzd2QifQ.e30.c2ln".into(),
        ),
        ("bearer 6 KiB", "authorization", format!("Bearer {long}")),
        ("basic no colon", "authorization", basic_raw("nocolon")),
        ("basic empty id", "authorization", basic_raw(":secret")),
        ("basic NUL", "authorization", basic_raw("r\0p:\0")),
        ("basic invalid UTF-8", "authorization", {
            use base64::Engine;
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(b"\xff\xfe:\xfd")
            )
        }),
        ("basic bad base64", "authorization", "Basic !!!!".into()),
        ("unknown scheme", "authorization", "Digest x".into()),
        ("scheme only", "authorization", "Basic".into()),
        (
            "cookie garbage",
            "cookie",
            "oxidp_session=%FF%00; oxidp_csrf=\"".into(),
        ),
        (
            "cookie repeated",
            "cookie",
            "oxidp_session=a; oxidp_session=b; oxidp_csrf=c; oxidp_csrf=d".into(),
        ),
        ("cookie 6 KiB", "cookie", format!("oxidp_session={long}")),
        (
            "forwarded garbage",
            "x-forwarded-for",
            "not an ip, 999.1.1.1, ::".into(),
        ),
        (
            "forwarded long",
            "x-forwarded-for",
            vec!["1.2.3.4"; 800].join(","),
        ),
        ("origin odd", "origin", "null".into()),
        ("origin long", "origin", format!("https://{long}.example")),
        ("host odd", "host", "[::1".into()),
        ("host empty", "host", String::new()),
        ("accept odd", "accept", ";;q=x, */*;q=2".into()),
        ("request id long", "x-request-id", long.clone()),
        ("expect 100", "expect", "100-continue".into()),
        ("range", "range", "bytes=9999999-".into()),
        ("if-none-match", "if-none-match", "\"x\", W/".into()),
    ];
    let queries = [
        "?%FF=%FE&client_id=%00&req=%00&token=%FF",
        "?client_id=rp&client_id=rp&scope=a&scope=b&req=a&req=b&limit=1&limit=2",
        "?limit=-1&cursor=%00&since=yesterday&query=%25%5F",
        "?limit=99999999999999999999&cursor=eyJ9&since=-9999999999999",
        "?&&&==&=&a",
        "?token=%ZZ&state=%",
    ];
    let mut long_query = String::from("?");
    long_query.push_str(&"a=b&".repeat(1500));
    let before = peek.snapshot(&app).await;
    for path in ROUTES {
        for method in [Method::GET, Method::POST] {
            for (name, header, value) in &headers {
                let request = http
                    .request(method.clone(), app.url(path))
                    .header(*header, value);
                send(request, 0, &format!("{method} {path} {name}")).await;
            }
            for query in queries.iter().copied().chain([long_query.as_str()]) {
                let request = http
                    .request(method.clone(), app.url(&format!("{path}{query}")))
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(query.trim_start_matches('?').to_string());
                let shown = &query[..query.len().min(60)];
                send(request, 0, &format!("{method} {path}{shown}")).await;
            }
        }
        assert_eq!(
            peek.snapshot(&app).await,
            before,
            "{path}: something stored changed"
        );
    }
    let mut paths: Vec<String> = [
        "/authorize/",
        "//authorize",
        "/AUTHORIZE",
        "/authorize%00",
        "/authorize%2F",
        "/token/../token",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/.well-known/",
        "/.well-known/openid-configuration/../../jwks.json",
        "/api/v1/admin/users/%FF%FE",
        "/api/v1/admin/users/%00",
        "/api/v1/admin/users/..%2F..%2Fclients",
        "/api/v1/admin/clients/%2e%2e",
        "/api/v1/admin/keys/%00/retire",
        "/api/v1/account/sessions/%FF",
        "/api/v1/account/sessions/",
        "/api/v1/admin/users//sessions",
        "/assets/../Cargo.toml",
        "/assets/%2e%2e%2fCargo.toml",
        "/;jsessionid=1",
        "/*",
        "/jwks.json?",
        "/jwks.json#frag",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    paths.push(format!("/api/v1/admin/users/{}", "x".repeat(7 * 1024)));
    paths.push(format!("/{}", "a/".repeat(2000)));
    for path in &paths {
        for method in methods() {
            let request = http.request(method.clone(), app.url(path));
            let shown = &path[..path.len().min(60)];
            send(request, 0, &format!("{method} {shown}")).await;
        }
    }
    assert_eq!(
        peek.snapshot(&app).await,
        before,
        "odd paths changed something"
    );
    assert_eq!(app.get("/healthz").await.status(), 200);
}

fn basic_raw(raw: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// One HTTP/1.1 response from a raw socket: status and whether the server will keep the
/// connection.
async fn read_response(stream: &mut TcpStream, head_request: bool) -> Option<(u16, bool)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_ascii_lowercase();
    let status: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
    let keep = !head.contains("connection: close");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let chunked = head.contains("transfer-encoding: chunked");
    if !head_request {
        let mut body = buf[header_end..].to_vec();
        loop {
            let done = if chunked {
                body.windows(5).any(|w| w == b"0\r\n\r\n")
            } else {
                body.len() >= length
            };
            if done {
                break;
            }
            let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
                .await
                .ok()?
                .ok()?;
            if n == 0 {
                return None;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }
    Some((status, keep))
}

/// A request with a body and a correct `Content-Length`.
fn with_body(request_line: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "{request_line} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// Malformed HTTP that no client library would send. Requests that are still HTTP get a
/// 4xx and the same connection then serves a normal request (it was not dropped);
/// requests that are not HTTP at all may be answered 400 and closed, never 5xx.
#[tokio::test]
async fn malformed_http_on_a_raw_socket_is_never_a_server_error() {
    let app = spawn_app_with(options()).await;
    let mut peek = Peek::open(&app).await;
    let address = format!("127.0.0.1:{}", app.port);
    let before = peek.snapshot(&app).await;
    let ok = |status: u16| (400..500).contains(&status) || (200..400).contains(&status);
    // (case, request bytes, keeps the connection): well-formed HTTP with hostile content.
    let mut keep_alive: Vec<(&str, Vec<u8>)> = vec![
        (
            "duplicate params in query and body",
            with_body(
                "POST /token?grant_type=password&client_id=rp",
                "application/x-www-form-urlencoded",
                b"grant_type=client_credentials&client_id=rp",
            ),
        ),
        (
            "raw invalid UTF-8 body",
            with_body(
                "POST /authorize",
                "application/x-www-form-urlencoded",
                b"\xff\xfe=\xc3\x28&",
            ),
        ),
        (
            "raw NUL body",
            with_body(
                "POST /login",
                "application/x-www-form-urlencoded",
                b"username=\0\0\0&password=\0",
            ),
        ),
        (
            "chunked body",
            b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n5\r\ngrant\r\n5\r\n_type\r\n0\r\n\r\n".to_vec(),
        ),
        (
            "header value with obs-text",
            b"GET /userinfo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n\r\n".to_vec(),
        ),
        (
            "HEAD on a page",
            b"HEAD /login HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "absolute-form target",
            b"GET http://evil.example/jwks.json HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "no Host header",
            b"GET /readyz HTTP/1.1\r\n\r\n".to_vec(),
        ),
        (
            "OPTIONS *",
            b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
    ];
    let many_headers: String = (0..90).map(|i| format!("X-H{i}: {i}\r\n")).collect();
    let many = format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n");
    keep_alive.push(("90 headers", many.into_bytes()));
    for (case, bytes) in &keep_alive {
        let mut stream = TcpStream::connect(&address).await.unwrap();
        stream.write_all(bytes).await.unwrap();
        let head = bytes.starts_with(b"HEAD");
        let (status, keep) = read_response(&mut stream, head)
            .await
            .unwrap_or_else(|| panic!("{case}: connection dropped without an answer"));
        assert!(ok(status), "{case}: {status}");
        if keep {
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            let (status, _) = read_response(&mut stream, false)
                .await
                .unwrap_or_else(|| panic!("{case}: connection unusable afterwards"));
            assert_eq!(status, 200, "{case}: the next request on the connection");
        }
    }
    // Not HTTP, or HTTP the server must refuse: 400 (or a close), never 5xx.
    let mut huge_header = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    huge_header.extend(vec![b'a'; 512 * 1024]);
    huge_header.extend(b"\r\n\r\n");
    let broken: Vec<(&str, Vec<u8>, bool)> = vec![
        ("garbage", b"\x00\x01\x02\x03hello\r\n\r\n".to_vec(), false),
        ("bad request line", b"GET\r\n\r\n".to_vec(), false),
        ("bad version", b"GET / HTTP/9.9\r\n\r\n".to_vec(), false),
        ("space in path", b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), false),
        ("raw byte in path", b"GET /\xff HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), false),
        (
            "two content lengths",
            b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd".to_vec(),
            false,
        ),
        (
            "bad chunk size",
            b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n".to_vec(),
            false,
        ),
        (
            "header without colon",
            b"GET /healthz HTTP/1.1\r\nHost x\r\n\r\n".to_vec(),
            false,
        ),
        ("512 KiB header", huge_header, false),
        (
            "truncated body, then the client stops sending",
            b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant_type=pass".to_vec(),
            true,
        ),
        (
            "truncated JSON body, then the client stops sending",
            b"POST /api/v1/account/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"username\":\"a".to_vec(),
            true,
        ),
    ];
    for (case, bytes, half_close) in broken {
        let mut stream = TcpStream::connect(&address).await.unwrap();
        // The server may close while a large request is still being written.
        let _ = stream.write_all(&bytes).await;
        if half_close {
            let _ = stream.shutdown().await;
        }
        if let Some((status, _)) = read_response(&mut stream, false).await {
            assert!((400..500).contains(&status), "{case}: {status}");
        }
    }
    assert_eq!(
        peek.snapshot(&app).await,
        before,
        "malformed HTTP changed something"
    );
    assert_eq!(app.get("/healthz").await.status(), 200);
}
