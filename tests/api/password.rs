//! The password grant (RFC 6749 §4.3) for the first-party frontend's server.

use serde_json::Value;

use crate::helpers::jwt_claims;
use crate::helpers::{
    CLIENT, CLIENT_SECRET, Options, PASSWORD, USER, flow_options, spawn_app_with,
};

const FP: &str = "frontend";

fn options(extra: &str) -> Options {
    let mut options = flow_options();
    options.extra_toml.push_str(&format!(
        r#"
[[clients]]
id = "{FP}"
secret = "{CLIENT_SECRET}"
first_party = true
grant_types = ["password", "refresh_token"]

[[clients]]
id = "fp-no-password"
secret = "{CLIENT_SECRET}"
first_party = true
grant_types = ["client_credentials"]
{extra}
"#
    ));
    options
}

async fn grant(
    app: &crate::helpers::TestApp,
    client: &str,
    username: &str,
    password: &str,
    scope: Option<&str>,
) -> (u16, Value) {
    let mut form = vec![
        ("grant_type", "password"),
        ("username", username),
        ("password", password),
    ];
    if let Some(scope) = scope {
        form.push(("scope", scope));
    }
    let response = app.token(&form, Some((client, CLIENT_SECRET))).await;
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn a_first_party_client_signs_a_user_in_with_the_password_grant() {
    let app = spawn_app_with(options("")).await;
    let before = oxidp::storage::unix_now();
    let (status, body) = grant(&app, FP, USER, PASSWORD, Some("openid profile email")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "openid profile email");
    assert!(
        body["refresh_token"]
            .as_str()
            .is_some_and(|t| t.len() == 43)
    );
    let id = jwt_claims(body["id_token"].as_str().unwrap());
    assert_eq!(id["aud"], FP);
    assert_eq!(id["amr"], serde_json::json!(["pwd"]));
    assert_eq!(id["preferred_username"], USER);
    assert!(id["auth_time"].as_i64().unwrap() >= before);
    assert!(id.get("nonce").is_none());
    // The access token works at UserInfo, and the refresh token refreshes.
    let info = app
        .http
        .get(app.url("/userinfo"))
        .bearer_auth(body["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(info.status(), 200);
    let refreshed = app
        .token(
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", body["refresh_token"].as_str().unwrap()),
            ],
            Some((FP, CLIENT_SECRET)),
        )
        .await;
    assert_eq!(refreshed.status(), 200);
    // The e-mail address works as the username; without scope, openid is granted.
    let (status, body) = grant(&app, FP, "Alice@Example.com", PASSWORD, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "openid");
}

#[tokio::test]
async fn every_failed_sign_in_is_the_same_invalid_grant() {
    let app = spawn_app_with(options("")).await;
    assert_eq!(
        app.cli_with_stdin(
            &[
                "user",
                "add",
                "--username",
                "dora",
                "--email",
                "dora@example.com",
                "--password-stdin"
            ],
            Some("another long password\n")
        )
        .await
        .code(),
        0
    );
    assert_eq!(app.cli(&["user", "disable", "dora"]).await.code(), 0);
    let mut descriptions = Vec::new();
    for (case, user, password) in [
        ("wrong password", USER, "wrong password here"),
        ("unknown user", "nobody", PASSWORD),
        ("disabled user", "dora", "another long password"),
        ("empty-looking password", USER, " "),
        ("over-long password", USER, &"x".repeat(200)),
    ] {
        let (status, body) = grant(&app, FP, user, password, None).await;
        assert_eq!(status, 400, "{case}: {body}");
        assert_eq!(body["error"], "invalid_grant", "{case}");
        descriptions.push(body["error_description"].clone());
    }
    assert!(
        descriptions.windows(2).all(|w| w[0] == w[1]),
        "{descriptions:?}"
    );
}

#[tokio::test]
async fn unverified_users_are_refused_when_verification_is_required() {
    let app = spawn_app_with(options("\n[accounts]\nrequire_verified_email = true\n")).await;
    assert_eq!(
        app.cli_with_stdin(
            &[
                "user",
                "add",
                "--username",
                "eve",
                "--email",
                "eve@example.com",
                "--password-stdin"
            ],
            Some("another long password\n")
        )
        .await
        .code(),
        0
    );
    let (status, body) = grant(&app, FP, "eve", "another long password", None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    // Seeded users count as verified.
    let (status, _) = grant(&app, FP, USER, PASSWORD, None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn only_first_party_clients_with_the_grant_may_use_it() {
    let app = spawn_app_with(options("")).await;
    for (case, client, form, want_status, want) in [
        (
            "third-party client",
            CLIENT,
            vec![("username", USER), ("password", PASSWORD)],
            400,
            "unauthorized_client",
        ),
        (
            "first party without the grant",
            "fp-no-password",
            vec![("username", USER), ("password", PASSWORD)],
            400,
            "unauthorized_client",
        ),
        (
            "missing password",
            FP,
            vec![("username", USER)],
            400,
            "invalid_request",
        ),
        (
            "missing username",
            FP,
            vec![("password", PASSWORD)],
            400,
            "invalid_request",
        ),
        (
            "unknown scope only",
            FP,
            vec![
                ("username", USER),
                ("password", PASSWORD),
                ("scope", "bogus"),
            ],
            400,
            "invalid_scope",
        ),
    ] {
        let mut full = vec![("grant_type", "password")];
        full.extend(form);
        let response = app.token(&full, Some((client, CLIENT_SECRET))).await;
        assert_eq!(response.status().as_u16(), want_status, "{case}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], want, "{case}");
    }
    // Wrong client secret: 401 invalid_client, before any password is checked.
    let response = app
        .token(
            &[
                ("grant_type", "password"),
                ("username", USER),
                ("password", PASSWORD),
            ],
            Some((FP, "wrong-secret")),
        )
        .await;
    assert_eq!(response.status(), 401);
}

/// A client that stops waiting does not cancel its request half-way (`http::detach`):
/// the sign-in it asked for is carried out whole, so the session it starts exists even
/// though nobody read the answer. The connection is closed while the handler is inside
/// argon2 (tens of milliseconds), where hyper would otherwise drop the handler.
#[tokio::test]
async fn an_abandoned_password_grant_still_completes() {
    use base64::Engine;
    use tokio::io::AsyncWriteExt;

    let app = spawn_app_with(options("")).await;
    let user = app.store.find_user_by_login(USER).await.unwrap().unwrap();
    let sessions = || async {
        app.store
            .list_sessions(&user.id, oxidp::storage::unix_now())
            .await
            .unwrap()
    };
    assert!(sessions().await.is_empty());

    let body = format!(
        "grant_type=password&username={USER}&password={}",
        PASSWORD.replace(' ', "+")
    );
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{FP}:{CLIENT_SECRET}"));
    let request = format!(
        "POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {basic}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    drop(stream);

    let mut found = Vec::new();
    for _ in 0..100 {
        found = sessions().await;
        if !found.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(found.len(), 1, "the abandoned sign-in did not complete");
}
