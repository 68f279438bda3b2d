//! Sessions and the request parameters that steer them: prompt, max_age,
//! id_token_hint, login_hint, claims, response_mode=form_post.

use serde_json::Value;

use crate::helpers::jwt_claims;
use crate::helpers::{
    CLIENT, Options, PASSWORD, REDIRECT, TestApp, USER, flow_options, hidden_input, html_decode,
    query_param, spawn_app_with, spawn_flow_app,
};

fn auth_url(app: &TestApp, extra: &str) -> String {
    app.url(&format!(
        "/authorize?response_type=code&client_id={CLIENT}&redirect_uri={REDIRECT}&scope=openid%20profile&state=st{extra}"
    ))
}

async fn exchange(app: &TestApp, back: &url::Url) -> Value {
    app.exchange_code(CLIENT, back).await
}

fn location(response: &reqwest::Response) -> String {
    response.headers()["location"].to_str().unwrap().to_string()
}

#[tokio::test]
async fn prompt_login_and_max_age_force_a_new_authentication() {
    let app = spawn_flow_app().await;
    let first = exchange(&app, &app.authorize(&auth_url(&app, "")).await).await;
    let first_claims = jwt_claims(first["id_token"].as_str().unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;

    // max_age=0: the session is older than that, so the login page comes back.
    let response = app
        .http
        .get(auth_url(&app, "&max_age=0"))
        .send()
        .await
        .unwrap();
    assert!(
        location(&response).starts_with("/login?req="),
        "{}",
        location(&response)
    );
    // A generous max_age does not.
    let response = app
        .http
        .get(auth_url(&app, "&max_age=3600"))
        .send()
        .await
        .unwrap();
    assert!(location(&response).starts_with(REDIRECT));

    // prompt=login: re-authenticate; auth_time moves forward; the session id rotates.
    let old_cookie = session_cookie(&app);
    assert!(old_cookie.is_some());
    let again = exchange(&app, &app.authorize(&auth_url(&app, "&prompt=login")).await).await;
    let claims = jwt_claims(again["id_token"].as_str().unwrap());
    assert!(
        claims["auth_time"].as_i64() > first_claims["auth_time"].as_i64(),
        "{claims}"
    );
    assert_eq!(claims["sub"], first_claims["sub"]);
    assert_ne!(
        session_cookie(&app),
        old_cookie,
        "session id not rotated at re-authentication"
    );
    assert_ne!(claims["sid"], first_claims["sid"]);
}

fn session_cookie(app: &TestApp) -> Option<String> {
    app.cookie("oxidp_session")
}

#[tokio::test]
async fn prompt_none_and_id_token_hint() {
    let mut options = flow_options();
    options.extra_toml.push_str(
        r#"
[[users]]
username = "bob"
email = "bob@example.com"
password = "another long password"
"#,
    );
    let app = spawn_app_with(options).await;
    // No session: prompt=none → login_required, with state and iss.
    let response = app
        .http
        .get(auth_url(&app, "&prompt=none"))
        .send()
        .await
        .unwrap();
    let back = url::Url::parse(&location(&response)).unwrap();
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("login_required")
    );
    assert_eq!(query_param(&back, "state").as_deref(), Some("st"));
    assert_eq!(
        query_param(&back, "iss").as_deref(),
        Some(app.issuer.as_str())
    );

    let tokens = exchange(&app, &app.authorize(&auth_url(&app, "")).await).await;
    let id_token = tokens["id_token"].as_str().unwrap();
    // With a session and consent: prompt=none returns a code silently, and the hint
    // naming the same user is accepted.
    let response = app
        .http
        .get(auth_url(
            &app,
            &format!("&prompt=none&id_token_hint={id_token}"),
        ))
        .send()
        .await
        .unwrap();
    let back = url::Url::parse(&location(&response)).unwrap();
    assert!(query_param(&back, "code").is_some(), "{back}");

    // Bob's ID token as hint while Alice is signed in: login_required with prompt=none.
    let bob = spawn_bob_token(&app).await;
    let response = app
        .http
        .get(auth_url(&app, &format!("&prompt=none&id_token_hint={bob}")))
        .send()
        .await
        .unwrap();
    let back = url::Url::parse(&location(&response)).unwrap();
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("login_required"),
        "{back}"
    );

    // A hint that is not our ID token is invalid_request.
    let response = app
        .http
        .get(auth_url(&app, "&id_token_hint=eyJhbGciOiJub25lIn0.e30."))
        .send()
        .await
        .unwrap();
    let back = url::Url::parse(&location(&response)).unwrap();
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("invalid_request")
    );
}

/// Signs Bob in from a separate browser and returns his ID token.
async fn spawn_bob_token(app: &TestApp) -> String {
    let browser = app.new_browser();
    let back = app
        .authorize_in(
            &browser,
            &auth_url(app, ""),
            "bob",
            "another long password",
            "allow",
        )
        .await;
    let tokens = exchange(app, &back).await;
    tokens["id_token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn claims_parameter_and_scopes_decide_what_is_released() {
    let app = spawn_flow_app().await;
    let claims =
        r#"{"userinfo":{"email":{"essential":true}},"id_token":{"name":null,"nickname":null}}"#;
    let url = app.url(&format!(
        "/authorize?response_type=code&client_id={CLIENT}&redirect_uri={REDIRECT}&scope=openid&claims={}",
        urlencode(claims)
    ));
    let tokens = exchange(&app, &app.authorize(&url).await).await;
    let id = jwt_claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["name"], "Alice Example");
    assert!(id.get("email").is_none(), "{id}");
    assert!(id.get("preferred_username").is_none(), "{id}");
    let info: Value = app
        .http
        .get(app.url("/userinfo"))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["email"], "alice@example.com");
    assert!(info.get("name").is_none(), "{info}");
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn form_post_response_mode_posts_the_code_back() {
    let app = spawn_flow_app().await;
    // Sign in and consent first (query mode), then ask again with form_post.
    app.authorize(&auth_url(&app, "")).await;
    let response = app
        .http
        .get(auth_url(&app, "&response_mode=form_post"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("script-src 'nonce-"), "{csp}");
    assert!(csp.contains("form-action https://rp.example"), "{csp}");
    let html = response.text().await.unwrap();
    assert!(
        html_decode(&html).contains(&format!("action=\"{REDIRECT}\"")),
        "{html}"
    );
    assert!(hidden_input(&html, "code").is_some());
    assert_eq!(hidden_input(&html, "state").as_deref(), Some("st"));
    assert_eq!(
        hidden_input(&html, "iss").as_deref(),
        Some(app.issuer.as_str())
    );
}

#[tokio::test]
async fn login_page_is_hardened_and_prefills_the_hint() {
    let app = spawn_flow_app().await;
    let response = app
        .http
        .get(auth_url(&app, "&login_hint=alice%40example.com"))
        .send()
        .await
        .unwrap();
    let page = app
        .http
        .get(app.url(&location(&response)))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    let csrf_cookie = headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("oxidp_csrf="))
        .expect("CSRF cookie");
    assert!(
        csrf_cookie.contains("HttpOnly")
            && csrf_cookie.contains("SameSite=Lax")
            && csrf_cookie.contains("Path=/")
    );
    assert!(
        !csrf_cookie.contains("Secure"),
        "http issuer: no Secure flag"
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("name=\"username\""));
    assert!(html.contains("name=\"password\""));
    assert!(
        html.contains("alice@example.com"),
        "login_hint not pre-filled"
    );
    assert!(html.contains("Relying Party"), "client name not shown");
}

#[tokio::test]
async fn wrong_password_and_unknown_user_look_the_same_and_e_mail_works_as_username() {
    let app = spawn_flow_app().await;
    let url = auth_url(&app, "");
    let response = app.http.get(&url).send().await.unwrap();
    let login_url = app.url(&location(&response));
    let mut bodies = Vec::new();
    for (user, password) in [(USER, "wrong password!"), ("nobody", PASSWORD)] {
        let html = app
            .http
            .get(&login_url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let form = [
            ("username", user.to_string()),
            ("password", password.to_string()),
            ("csrf_token", hidden_input(&html, "csrf_token").unwrap()),
            ("req", hidden_input(&html, "req").unwrap()),
        ];
        let response = app
            .http
            .post(app.url("/login"))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            !response
                .headers()
                .get_all("set-cookie")
                .iter()
                .any(|c| c.to_str().unwrap().starts_with("oxidp_session=")),
            "a failed login set a session"
        );
        let body = response.text().await.unwrap();
        assert!(body.contains("Incorrect username or password."), "{body}");
        bodies.push(body.replace(user, "USER"));
    }
    // The e-mail address works as the username.
    let back = app
        .authorize_as(&url, "Alice@Example.com", PASSWORD, "allow")
        .await;
    assert!(query_param(&back, "code").is_some());
}

#[tokio::test]
async fn a_disabled_user_cannot_sign_in_and_loses_userinfo() {
    let app = spawn_flow_app().await;
    let tokens = exchange(&app, &app.authorize(&auth_url(&app, "")).await).await;
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(
        app.http
            .get(app.url("/userinfo"))
            .bearer_auth(access)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(app.cli(&["user", "disable", USER]).await.code(), 0);
    let info = app
        .http
        .get(app.url("/userinfo"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(info.status(), 401);
    // The existing session no longer counts: back to the login page, and login fails.
    let response = app.http.get(auth_url(&app, "")).send().await.unwrap();
    assert!(location(&response).starts_with("/login"));
    let _ = Options::default();
}
