//! Client authentication and the limits that depend on it: who may assert the end
//! user's IP, which authentication method a client must use (RFC 7591 §2), and how
//! failed passwords are counted (per resolved account, IPv6 per /64).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    CLIENT, CLIENT_SECRET, Options, PASSWORD, PUBLIC_CLIENT, TestApp, USER, flow_options,
    hidden_input, run_binary, spawn_app_with,
};

/// A confidential first-party client with the password grant (the frontend's server).
const FP: &str = "frontend";
/// Service clients, one per secret method.
const SVC_BASIC: &str = "svc-basic";
const SVC_POST: &str = "svc-post";
const IP_HEADER: &str = "x-end-user-ip";
const WRONG: &str = "wrong password!";

fn options(ratelimit: &str) -> Options {
    let mut options = flow_options();
    options.extra_toml.push_str(&format!(
        r#"
[ratelimit]
client_ip_header = "{IP_HEADER}"
requests_per_minute_per_ip = 1000
{ratelimit}

[[users]]
username = "bob"
email = "bob@example.com"
password = "quiet meadow lantern 42"

[[clients]]
id = "{FP}"
secret = "{CLIENT_SECRET}"
first_party = true
grant_types = ["password", "refresh_token"]

[[clients]]
id = "{SVC_BASIC}"
secret = "{CLIENT_SECRET}"
token_endpoint_auth_method = "client_secret_basic"
grant_types = ["client_credentials"]

[[clients]]
id = "{SVC_POST}"
secret = "{CLIENT_SECRET}"
token_endpoint_auth_method = "client_secret_post"
grant_types = ["client_credentials"]
"#
    ));
    options
}

/// A password grant by the first-party client, asserting `ip` as the end user's.
async fn password_grant(app: &TestApp, user: &str, password: &str, ip: &str) -> StatusCode {
    app.http
        .post(app.url("/token"))
        .basic_auth(FP, Some(CLIENT_SECRET))
        .header(IP_HEADER, ip)
        .form(&[
            ("grant_type", "password"),
            ("username", user),
            ("password", password),
        ])
        .send()
        .await
        .unwrap()
        .status()
}

// ---------------------------------------------------------------------------------------
// A public client is never first-party with the password grant
// ---------------------------------------------------------------------------------------

const PUBLIC_PASSWORD_CLIENT: &str = r#"
[[clients]]
id = "public-frontend"
token_endpoint_auth_method = "none"
first_party = true
grant_types = ["password"]
"#;

#[tokio::test]
async fn config_refuses_a_public_first_party_password_client() {
    let app = spawn_app_with(options("")).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!("{}{PUBLIC_PASSWORD_CLIENT}", app.config_toml),
    )
    .unwrap();
    let out = run_binary(Some(&config), &["migrate".to_string()], None, &[]);
    assert_eq!(out.code(), 2, "stderr: {}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{:?}", out.stderr);
    assert!(
        out.stderr.contains("clients[") && out.stderr.contains("].grant_types"),
        "names the key: {:?}",
        out.stderr
    );
    assert!(
        out.stderr.contains("public client"),
        "states the rule: {:?}",
        out.stderr
    );
}

#[tokio::test]
async fn cli_refuses_a_public_first_party_password_client() {
    let app = spawn_app_with(options("")).await;
    let before = app.snapshot().await;
    let out = app
        .cli(&[
            "client",
            "add",
            "--id",
            "public-frontend",
            "--public",
            "--first-party",
            "--grant-type",
            "password",
        ])
        .await;
    assert_ne!(out.code(), 0, "stdout: {}", out.stdout);
    assert!(
        out.stderr.contains("public client") && out.stderr.contains("--grant-type"),
        "{:?}",
        out.stderr
    );
    assert_eq!(app.snapshot().await, before, "nothing stored");
}

/// An admin token from the first-party client (alice has role admin).
async fn admin_token(app: &TestApp) -> String {
    let response = app
        .http
        .post(app.url("/token"))
        .basic_auth(FP, Some(CLIENT_SECRET))
        .form(&[
            ("grant_type", "password"),
            ("username", USER),
            ("password", PASSWORD),
            ("scope", "openid oxidp:admin"),
        ])
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no admin token: {body}"))
        .to_string()
}

#[tokio::test]
async fn admin_api_refuses_a_public_first_party_password_client() {
    let app = spawn_app_with(options("")).await;
    let token = admin_token(&app).await;
    let clients = app.url("/api/v1/admin/clients");
    let created = app
        .http
        .post(&clients)
        .bearer_auth(&token)
        .json(
            &json!({"id": "public-frontend", "token_endpoint_auth_method": "none",
                      "first_party": true, "grant_types": ["password"]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 400);
    let body: Value = created.json().await.unwrap();
    assert_eq!(body["error"], "validation_failed", "{body}");
    let why = body["fields"]["grant_types"].as_str().unwrap_or_default();
    assert!(why.contains("public client"), "{body}");

    // Making an existing public client first-party with the password grant.
    let spa = app
        .http
        .post(&clients)
        .bearer_auth(&token)
        .json(
            &json!({"id": "api-spa", "token_endpoint_auth_method": "none",
                      "redirect_uris": ["https://spa.example/cb"]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(spa.status(), 201);
    let before = app.store.list_clients().await.unwrap();
    for patch in [
        json!({"first_party": true, "grant_types": ["password"]}),
        json!({"first_party": true, "grant_types": ["authorization_code", "password"]}),
    ] {
        let patched = app
            .http
            .patch(format!("{clients}/api-spa"))
            .bearer_auth(&token)
            .json(&patch)
            .send()
            .await
            .unwrap();
        assert_eq!(patched.status(), 400, "{patch}");
        let body: Value = patched.json().await.unwrap();
        assert_eq!(body["error"], "validation_failed", "{body}");
        assert!(
            body["fields"]["grant_types"]
                .as_str()
                .unwrap_or_default()
                .contains("public client"),
            "{body}"
        );
    }
    let after = app.store.list_clients().await.unwrap();
    assert_eq!(after, before, "nothing stored changed");
    assert!(after.iter().all(|c| c.id != "public-frontend"));
}

/// A database written before the rule may still hold such a client: the password grant
/// refuses it whatever its flags, so the IP header it names is never believed and
/// nothing is counted for it.
#[tokio::test]
async fn a_stored_public_first_party_client_gets_no_password_grant() {
    let app = spawn_app_with(options("password_failures_per_minute_per_ip = 3")).await;
    let mut record = app.store.get_client(PUBLIC_CLIENT).await.unwrap().unwrap();
    record.id = "legacy-public".into();
    record.first_party = true;
    record.grant_types = vec!["authorization_code".into(), "password".into()];
    app.store.insert_client(&record).await.unwrap();

    for i in 0..40 {
        let response = app
            .http
            .post(app.url("/token"))
            .header(IP_HEADER, format!("198.51.100.{i}"))
            .form(&[
                ("grant_type", "password"),
                ("client_id", "legacy-public"),
                ("username", USER),
                ("password", WRONG),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "attempt {i}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "unauthorized_client", "attempt {i}: {body}");
    }
    // Nothing was counted against alice: the confidential client still signs her in.
    assert_eq!(
        password_grant(&app, USER, PASSWORD, "203.0.113.1").await,
        200
    );
}

// ---------------------------------------------------------------------------------------
// RFC 7591 §2 token_endpoint_auth_method is enforced
// ---------------------------------------------------------------------------------------

enum Auth {
    Basic(&'static str, &'static str),
    Post(&'static str, &'static str),
    None(&'static str),
}

async fn call(app: &TestApp, path: &str, form: &[(&str, &str)], auth: &Auth) -> reqwest::Response {
    let mut form: Vec<(&str, &str)> = form.to_vec();
    let mut request = app.http.post(app.url(path));
    match auth {
        Auth::Basic(id, secret) => request = request.basic_auth(id, Some(secret)),
        Auth::Post(id, secret) => {
            form.push(("client_id", id));
            form.push(("client_secret", secret));
        }
        Auth::None(id) => form.push(("client_id", id)),
    }
    request.form(&form).send().await.unwrap()
}

async fn assert_invalid_client(response: reqwest::Response, case: &str, challenge: bool) {
    assert_eq!(response.status(), 401, "{case}");
    assert_eq!(
        response.headers().contains_key("www-authenticate"),
        challenge,
        "{case}: WWW-Authenticate"
    );
    if challenge {
        let value = response.headers()["www-authenticate"].to_str().unwrap();
        assert!(value.starts_with("Basic"), "{case}: {value}");
    }
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client", "{case}: {body}");
    assert!(body["error_description"].is_string(), "{case}");
}

#[tokio::test]
async fn the_registered_authentication_method_is_the_only_one_accepted() {
    let app = spawn_app_with(options("")).await;
    let cc = [("grant_type", "client_credentials")];
    // The right method works…
    for auth in [
        Auth::Basic(SVC_BASIC, CLIENT_SECRET),
        Auth::Post(SVC_POST, CLIENT_SECRET),
    ] {
        assert_eq!(call(&app, "/token", &cc, &auth).await.status(), 200);
    }
    let token: Value = call(&app, "/token", &cc, &Auth::Basic(SVC_BASIC, CLIENT_SECRET))
        .await
        .json()
        .await
        .unwrap();
    let access = token["access_token"].as_str().unwrap().to_string();
    let probe = [("token", access.as_str())];

    // …the other one is invalid_client at every client-authenticated endpoint, with
    // the Basic challenge (RFC 6749 §5.2) when Basic was tried.
    for (path, form) in [
        ("/token", &cc[..]),
        ("/introspect", &probe[..]),
        ("/revoke", &probe[..]),
    ] {
        assert_invalid_client(
            call(&app, path, form, &Auth::Post(SVC_BASIC, CLIENT_SECRET)).await,
            &format!("{path}: basic client using post"),
            false,
        )
        .await;
        assert_invalid_client(
            call(&app, path, form, &Auth::Basic(SVC_POST, CLIENT_SECRET)).await,
            &format!("{path}: post client using basic"),
            true,
        )
        .await;
        // A confidential client presenting no secret; a public one presenting one.
        assert_invalid_client(
            call(&app, path, form, &Auth::None(SVC_BASIC)).await,
            &format!("{path}: confidential client without a secret"),
            false,
        )
        .await;
        assert_invalid_client(
            call(&app, path, form, &Auth::Post(PUBLIC_CLIENT, CLIENT_SECRET)).await,
            &format!("{path}: public client with a secret"),
            false,
        )
        .await;
    }
    // The refused attempts revoked nothing: the token is still active.
    let body: Value = call(
        &app,
        "/introspect",
        &probe,
        &Auth::Basic(SVC_BASIC, CLIENT_SECRET),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(body["active"], true, "{body}");
    // The flow clients still work with their own methods.
    let refresh = [("grant_type", "refresh_token"), ("refresh_token", "x")];
    for auth in [
        Auth::Basic(CLIENT, CLIENT_SECRET),
        Auth::Post("poster", CLIENT_SECRET),
    ] {
        let body: Value = call(&app, "/token", &refresh, &auth)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(body["error"], "invalid_grant", "{body}");
    }
}

// ---------------------------------------------------------------------------------------
// Failed passwords count per resolved account; IPv6 per /64
// ---------------------------------------------------------------------------------------

/// Five failures spread over the names of one account reach its limit; a success under
/// one name clears them all.
async fn failures_count_per_account_whatever_name_is_typed(backend: &str) {
    let app = spawn_app_with(options(backend)).await;
    let names = [
        "bob",
        "bob@example.com",
        "BOB",
        " Bob@Example.COM ",
        "bob@example.com",
    ];
    for (i, name) in names.iter().enumerate() {
        let status = password_grant(&app, name, WRONG, &format!("198.51.100.{i}")).await;
        assert_eq!(status, 400, "failure {i} as {name:?}");
    }
    for name in ["bob", "bob@example.com"] {
        assert_eq!(
            password_grant(&app, name, "quiet meadow lantern 42", "198.51.100.50").await,
            429,
            "{name} is limited"
        );
    }
    // Another account is not affected.
    assert_eq!(
        password_grant(&app, USER, PASSWORD, "198.51.100.51").await,
        200
    );
}

async fn a_success_under_one_name_clears_every_name(backend: &str) {
    let app = spawn_app_with(options(backend)).await;
    for i in 0..4 {
        let status = password_grant(&app, "alice@example.com", WRONG, "198.51.100.1").await;
        assert_eq!(status, 400, "failure {i}");
    }
    assert_eq!(
        password_grant(&app, "alice", PASSWORD, "198.51.100.1").await,
        200
    );
    for i in 0..4 {
        let status = password_grant(&app, "alice@example.com", WRONG, "198.51.100.1").await;
        assert_eq!(status, 400, "failure {i} after the success");
    }
    assert_eq!(
        password_grant(&app, "ALICE@example.com", PASSWORD, "198.51.100.1").await,
        200
    );
}

/// Names that match no account are counted by the typed name (normalised), and answered
/// exactly as a known name is.
async fn unknown_names_are_counted_by_the_normalised_name(backend: &str) {
    let app = spawn_app_with(options(backend)).await;
    for (i, name) in ["nobody", "NOBODY", " Nobody", "nobody", "nobody"]
        .iter()
        .enumerate()
    {
        let status = password_grant(&app, name, WRONG, &format!("198.51.100.{i}")).await;
        assert_eq!(status, 400, "failure {i}");
    }
    assert_eq!(
        password_grant(&app, "Nobody", WRONG, "198.51.100.9").await,
        429
    );
    assert_eq!(
        password_grant(&app, "somebody-else", WRONG, "198.51.100.9").await,
        400
    );
}

async fn login_page(app: &TestApp, user: &str, password: &str) -> StatusCode {
    let page = app
        .http
        .get(app.url("/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = hidden_input(&page, "csrf_token").unwrap();
    app.http
        .post(app.url("/login"))
        .form(&[
            ("username", user),
            ("password", password),
            ("csrf_token", csrf.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .status()
}

async fn change_password(app: &TestApp, token: &str, current: &str) -> StatusCode {
    app.http
        .post(app.url("/api/v1/account/me/password"))
        .bearer_auth(token)
        .json(&json!({"current_password": current,
                      "new_password": "brand new passphrase 77"}))
        .send()
        .await
        .unwrap()
        .status()
}

/// The login page, the password grant and the account API's current-password check
/// all count against the same account, whichever name each was given.
async fn every_password_check_shares_the_account_count(backend: &str) {
    let app = spawn_app_with(options(backend)).await;
    let bob = "quiet meadow lantern 42";
    let tokens: Value = app
        .http
        .post(app.url("/token"))
        .basic_auth(FP, Some(CLIENT_SECRET))
        .form(&[
            ("grant_type", "password"),
            ("username", "bob"),
            ("password", bob),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = tokens["access_token"].as_str().unwrap().to_string();
    assert_eq!(change_password(&app, &token, WRONG).await, 400);
    assert_eq!(login_page(&app, "BOB", WRONG).await, 200);
    assert_eq!(login_page(&app, "bob@example.com", WRONG).await, 200);
    assert_eq!(
        password_grant(&app, "Bob@Example.com", WRONG, "198.51.100.1").await,
        400
    );
    assert_eq!(
        password_grant(&app, "bob", WRONG, "198.51.100.2").await,
        400
    );
    // Five failures in all: every check refuses the account, the right password too.
    assert_eq!(password_grant(&app, "bob", bob, "198.51.100.3").await, 429);
    assert_eq!(login_page(&app, "bob@example.com", bob).await, 429);
    assert_eq!(change_password(&app, &token, bob).await, 429);
}

/// One IPv6 end user holds a whole /64; rotating addresses inside it does not escape
/// the per-IP limit, a neighbouring /64 is not affected.
async fn ipv6_addresses_count_per_64(backend: &str) {
    let app = spawn_app_with(options(&format!(
        "{backend}\npassword_failures_per_minute_per_ip = 3"
    )))
    .await;
    for (i, ip) in ["2001:db8::1", "2001:db8::2", "2001:db8:0:0:ffff::1"]
        .iter()
        .enumerate()
    {
        let status = password_grant(&app, &format!("user{i}"), WRONG, ip).await;
        assert_eq!(status, 400, "failure {i} from {ip}");
    }
    assert_eq!(
        password_grant(&app, "user9", WRONG, "2001:db8::abcd:1234:5678:9").await,
        429
    );
    assert_eq!(
        password_grant(&app, "user9", WRONG, "2001:db8:0:1::1").await,
        400
    );
}

crate::helpers::every_backend!(
    failures_count_per_account_whatever_name_is_typed,
    every_password_check_shares_the_account_count,
    a_success_under_one_name_clears_every_name,
    unknown_names_are_counted_by_the_normalised_name,
    ipv6_addresses_count_per_64,
);
