//! The authorization steps attacked from a browser: claims asked for by name without
//! consent, the consent page opened while the request still needs a sign-in, a sign-in
//! as another user than `id_token_hint` names, and an access token offered as hint.

use serde_json::Value;

use crate::helpers::jwt_claims;
use crate::helpers::{
    CLIENT, PASSWORD, REDIRECT, TestApp, USER, flow_options, hidden_input, query_param,
    spawn_app_with, spawn_flow_app,
};

fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn auth_url(app: &TestApp, client: &str, scope: &str, extra: &str) -> String {
    app.url(&format!(
        "/authorize?response_type=code&client_id={client}&redirect_uri={REDIRECT}&scope={}&state=st{extra}",
        encode(scope)
    ))
}

fn location(response: &reqwest::Response) -> String {
    response.headers()["location"].to_str().unwrap().to_string()
}

/// GETs an authorization URL that must answer the client at once; the redirect back.
async fn redirect_back(app: &TestApp, url: impl reqwest::IntoUrl) -> url::Url {
    let response = app.http.get(url).send().await.unwrap();
    url::Url::parse(&location(&response)).unwrap()
}

async fn exchange(app: &TestApp, back: &url::Url) -> Value {
    app.exchange_code(CLIENT, back).await
}

const PRIVATE_CLAIMS: &str = r#"{"id_token":{"email":null,"roles":null,"preferred_username":null},"userinfo":{"email":null,"roles":null}}"#;

#[tokio::test]
async fn claims_asked_for_by_name_are_released_only_after_consent_to_them() {
    let app = spawn_flow_app().await;
    // Consent to scope=openid alone.
    let tokens = exchange(
        &app,
        &app.authorize(&auth_url(&app, CLIENT, "openid", "")).await,
    )
    .await;
    let id = jwt_claims(tokens["id_token"].as_str().unwrap());
    assert!(id.get("email").is_none(), "{id}");

    // A silent request naming private claims: consent_required, no code.
    let claims = encode(PRIVATE_CLAIMS);
    let back = redirect_back(
        &app,
        auth_url(
            &app,
            CLIENT,
            "openid",
            &format!("&prompt=none&claims={claims}"),
        ),
    )
    .await;
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("consent_required"),
        "{back}"
    );
    assert!(query_param(&back, "code").is_none());
    assert_eq!(query_param(&back, "state").as_deref(), Some("st"));

    // Without prompt=none the consent page comes back and names each claim.
    let url = auth_url(&app, CLIENT, "openid", &format!("&claims={claims}"));
    let response = app.http.get(&url).send().await.unwrap();
    let page = location(&response);
    assert!(page.starts_with("/consent?req="), "{page}");
    let html = app.get(&page).await.text().await.unwrap();
    for claim in ["email", "roles", "preferred_username"] {
        assert!(
            html.contains(&format!("data-scope=\"claim:{claim}\"")),
            "{claim} not listed: {html}"
        );
    }
    // Denying releases nothing.
    let denied = app.authorize_as(&url, USER, PASSWORD, "deny").await;
    assert_eq!(
        query_param(&denied, "error").as_deref(),
        Some("access_denied")
    );

    // Allowing releases them, in the ID token and at UserInfo.
    let tokens = exchange(&app, &app.authorize(&url).await).await;
    let id = jwt_claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["email"], "alice@example.com", "{id}");
    assert_eq!(id["preferred_username"], USER);
    assert!(id["roles"].is_array(), "{id}");
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
    assert_eq!(info["email"], "alice@example.com", "{info}");

    // Remembered: the same silent request now gets a code.
    let back = redirect_back(
        &app,
        auth_url(
            &app,
            CLIENT,
            "openid",
            &format!("&prompt=none&claims={claims}"),
        ),
    )
    .await;
    assert!(query_param(&back, "code").is_some(), "{back}");
}

#[tokio::test]
async fn first_party_clients_still_skip_consent_for_claims() {
    let app = spawn_flow_app().await;
    let claims = encode(PRIVATE_CLAIMS);
    let url = auth_url(&app, "first", "openid", &format!("&claims={claims}"));
    let response = app.http.get(&url).send().await.unwrap();
    assert!(location(&response).starts_with("/login?req="));
    let back = app.authorize(&url).await;
    let tokens = app.exchange_code("first", &back).await;
    let id = jwt_claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["email"], "alice@example.com", "{id}");
}

#[tokio::test]
async fn a_third_party_token_reads_only_the_profile_its_scopes_allow() {
    let app = spawn_flow_app().await;
    let tokens = exchange(
        &app,
        &app.authorize(&auth_url(&app, CLIENT, "openid profile", ""))
            .await,
    )
    .await;
    let me = app
        .http
        .get(app.url("/api/v1/account/me"))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let me: Value = me.json().await.unwrap();
    assert_eq!(me["username"], USER, "{me}");
    assert_eq!(me["name"], "Alice Example");
    for private in ["email", "email_verified", "roles"] {
        assert!(me.get(private).is_none(), "{private} released: {me}");
    }

    // With the email scope consented, the address is there; roles still are not.
    let tokens = exchange(
        &app,
        &app.authorize(&auth_url(&app, CLIENT, "openid profile email", ""))
            .await,
    )
    .await;
    let me: Value = app
        .http
        .get(app.url("/api/v1/account/me"))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], "alice@example.com", "{me}");
    assert!(me.get("roles").is_none(), "{me}");
}

/// Signs in and consents once, then waits so that a new sign-in has a later
/// `auth_time`.
async fn signed_in_and_consented(app: &TestApp) -> Value {
    let tokens = exchange(
        app,
        &app.authorize(&auth_url(app, CLIENT, "openid profile", ""))
            .await,
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    jwt_claims(tokens["id_token"].as_str().unwrap())
}

/// Opens the consent page and posts "allow" for a pending request that was sent to
/// the login page, with the CSRF token the login page handed out.
async fn skip_to_consent(app: &TestApp, login_page: &str) -> reqwest::Response {
    let req = login_page.trim_start_matches("/login?req=").to_string();
    let consent = app.get(&format!("/consent?req={req}")).await;
    assert_ne!(
        consent.status(),
        200,
        "the consent page was shown for a request that needs a sign-in"
    );
    let html = app.get(login_page).await.text().await.unwrap();
    let csrf = hidden_input(&html, "csrf_token").unwrap();
    app.http
        .post(app.url("/consent"))
        .form(&[("decision", "allow"), ("csrf_token", &csrf), ("req", &req)])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn consent_cannot_stand_in_for_the_sign_in_prompt_login_or_max_age_asks_for() {
    let app = spawn_flow_app().await;
    let first = signed_in_and_consented(&app).await;

    for extra in ["&prompt=login", "&max_age=0", "&prompt=login%20consent"] {
        let url = auth_url(&app, CLIENT, "openid profile", extra);
        let response = app.http.get(&url).send().await.unwrap();
        let login_page = location(&response);
        assert!(
            login_page.starts_with("/login?req="),
            "{extra}: {login_page}"
        );
        let response = skip_to_consent(&app, &login_page).await;
        let to = location(&response);
        assert!(
            to.starts_with("/login?req="),
            "{extra}: allowing consent skipped the sign-in: {to}"
        );
        assert!(!to.contains("code="), "{extra}: {to}");
    }

    // Signing in on the page meets the request; the ID token has the new auth_time.
    let url = auth_url(&app, CLIENT, "openid profile", "&prompt=login%20consent");
    let tokens = exchange(&app, &app.authorize(&url).await).await;
    let id = jwt_claims(tokens["id_token"].as_str().unwrap());
    assert!(
        id["auth_time"].as_i64() > first["auth_time"].as_i64(),
        "{id} vs {first}"
    );
}

#[tokio::test]
async fn the_consent_page_of_a_first_party_request_needing_a_sign_in_is_refused_too() {
    let app = spawn_flow_app().await;
    signed_in_and_consented(&app).await;
    let url = auth_url(&app, "first", "openid", "&prompt=login");
    let response = app.http.get(&url).send().await.unwrap();
    let login_page = location(&response);
    assert!(login_page.starts_with("/login?req="), "{login_page}");
    let response = skip_to_consent(&app, &login_page).await;
    let to = location(&response);
    assert!(to.starts_with("/login?req="), "{to}");
}

const BOB_PASSWORD: &str = "another long password";

async fn app_with_bob() -> TestApp {
    let mut options = flow_options();
    options.extra_toml.push_str(&format!(
        r#"
[[users]]
username = "bob"
email = "bob@example.com"
password = "{BOB_PASSWORD}"
"#
    ));
    spawn_app_with(options).await
}

#[tokio::test]
async fn signing_in_as_another_user_than_id_token_hint_names_is_an_error_not_a_code() {
    let app = app_with_bob().await;
    let alice = exchange(
        &app,
        &app.authorize(&auth_url(&app, CLIENT, "openid", "")).await,
    )
    .await;
    let hint = alice["id_token"].as_str().unwrap();
    // A new browser (no session): the login page comes; Bob signs in there.
    let browser = app.new_browser();
    let url = auth_url(&app, CLIENT, "openid", &format!("&id_token_hint={hint}"));
    let back = app
        .authorize_in(&browser, &url, "bob", BOB_PASSWORD, "allow")
        .await;
    assert!(
        query_param(&back, "code").is_none(),
        "a code for Bob: {back}"
    );
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("login_required"),
        "{back}"
    );
    assert_eq!(query_param(&back, "state").as_deref(), Some("st"));
    assert_eq!(
        query_param(&back, "iss").as_deref(),
        Some(app.issuer.as_str())
    );
    // Alice signing in for the same hint gets her code.
    let back = app
        .authorize_in(&app.new_browser(), &url, USER, PASSWORD, "allow")
        .await;
    let tokens = exchange(&app, &back).await;
    assert_eq!(
        jwt_claims(tokens["id_token"].as_str().unwrap())["sub"],
        jwt_claims(hint)["sub"]
    );
}

#[tokio::test]
async fn an_access_token_is_no_id_token_hint() {
    let app = spawn_flow_app().await;
    let tokens = exchange(
        &app,
        &app.authorize(&auth_url(&app, CLIENT, "openid", "")).await,
    )
    .await;
    let access = tokens["access_token"].as_str().unwrap();
    let back = redirect_back(
        &app,
        auth_url(
            &app,
            CLIENT,
            "openid",
            &format!("&prompt=none&id_token_hint={access}"),
        ),
    )
    .await;
    assert!(query_param(&back, "code").is_none(), "{back}");
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("invalid_request"),
        "{back}"
    );
    // The ID token of the same response is a good hint.
    let id = tokens["id_token"].as_str().unwrap();
    let back = redirect_back(
        &app,
        auth_url(
            &app,
            CLIENT,
            "openid",
            &format!("&prompt=none&id_token_hint={id}"),
        ),
    )
    .await;
    assert!(query_param(&back, "code").is_some(), "{back}");
}
