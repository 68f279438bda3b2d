//! Account takeover and enumeration defences: an e-mail change needs the password and
//! the new mailbox (ASVS 2.2.3, 3.7.1), the old address hears of every change, reset
//! links never go to a pending address, a password change signs out other sessions, and
//! the sign-up page answers the same for a new and a taken address.

use serde_json::{Value, json};

use crate::account_api::{
    FP, STRONG, STRONGER, access_token, assert_validation_failed, change_password, mailed_token,
    mails_to, me, patch_me, post, read, register_verified, settle, sign_in, spawn, wait_for_mail,
};
use crate::account_pages::{
    NEW_PASSWORD, Page, account_post, get_page, location, options_with, register, sets_session,
    sign_up, signed_in,
};
use crate::helpers::{CLIENT, CLIENT_SECRET, PASSWORD, REDIRECT, TestApp, USER, spawn_app_with};

/// Whether some mail to `address` carries a link to `page` (`verify-email`,
/// `reset-password`).
fn has_link(app: &TestApp, address: &str, page: &str) -> bool {
    mails_to(app, address)
        .iter()
        .any(|m| m.token(&app.issuer, page).is_some())
}

/// Waits for a mail to `address` whose subject contains `subject`; returns its body.
async fn notice(app: &TestApp, address: &str, subject: &str) -> String {
    wait_for_mail(app, address, subject, |m| {
        m.subject().contains(subject).then(|| m.body.clone())
    })
    .await
}

async fn refresh(app: &TestApp, refresh_token: &str) -> (u16, Value) {
    read(
        app.token(
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ],
            Some((FP, CLIENT_SECRET)),
        )
        .await,
    )
    .await
}

// ---- e-mail change -------------------------------------------------------------------

#[tokio::test]
async fn an_e_mail_change_needs_the_current_password() {
    let app = spawn("").await;
    register_verified(&app, "bob", "bob@example.com").await;
    let token = access_token(&app, "bob", STRONG).await;
    let before = app.snapshot().await;
    for (case, body) in [
        ("no password", json!({"email": "new@example.org"})),
        (
            "wrong password",
            json!({"email": "new@example.org", "current_password": "not the password 1"}),
        ),
        (
            "empty password",
            json!({"email": "new@example.org", "current_password": ""}),
        ),
    ] {
        let (status, answer) = patch_me(&app, &token, &body).await;
        assert_validation_failed(case, status, &answer, &["current_password"]);
    }
    assert_eq!(app.snapshot().await, before, "nothing changed");
    settle().await;
    assert!(mails_to(&app, "new@example.org").is_empty());

    // A wrong one counts as a failed sign-in: the per-username limit applies.
    let mut limited = false;
    for _ in 0..6 {
        let (status, _) = patch_me(
            &app,
            &token,
            &json!({"email": "new@example.org", "current_password": "still not it 99"}),
        )
        .await;
        limited |= status == 429;
    }
    assert!(limited, "wrong passwords at an e-mail change are limited");
    let (status, _) = patch_me(
        &app,
        &token,
        &json!({"email": "new@example.org", "current_password": STRONG}),
    )
    .await;
    assert_eq!(status, 429, "the limit holds for the right password too");
}

#[tokio::test]
async fn a_new_address_applies_only_when_its_link_is_opened_and_the_old_one_is_told() {
    let app = spawn("").await;
    register_verified(&app, "bob", "bob@example.com").await;
    let token = access_token(&app, "bob", STRONG).await;
    let (status, profile) = patch_me(
        &app,
        &token,
        &json!({"email": "New@Example.org", "current_password": STRONG, "name": "Bob"}),
    )
    .await;
    assert_eq!(status, 200, "{profile}");
    assert_eq!(profile["email"], "bob@example.com");
    assert_eq!(profile["email_verified"], true);
    assert_eq!(profile["pending_email"], "new@example.org");
    assert_eq!(profile["name"], "Bob");
    // Sign-in still uses the current address only.
    sign_in(&app, "bob@example.com", STRONG).await;

    let body = notice(&app, "bob@example.com", "change of your e-mail address").await;
    assert!(body.contains("new@example.org"), "{body}");
    assert!(!body.contains("token="), "no link that acts: {body}");

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
    assert!(profile["pending_email"].is_null(), "{profile}");
    // Replayed: refused, nothing changes.
    let (status, body) = post(
        &app,
        "/api/v1/account/verify-email",
        &json!({"token": link}),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_token"))
    );
    sign_in(&app, "new@example.org", STRONG).await;
}

#[tokio::test]
async fn a_reset_never_goes_to_a_pending_address() {
    let app = spawn("").await;
    register_verified(&app, "bob", "bob@example.com").await;
    let token = access_token(&app, "bob", STRONG).await;
    let (status, body) = patch_me(
        &app,
        &token,
        &json!({"email": "attacker@evil.example", "current_password": STRONG}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = post(
        &app,
        "/api/v1/account/password-reset",
        &json!({"email": "attacker@evil.example"}),
    )
    .await;
    assert_eq!(status, 202);
    settle().await;
    assert!(
        !has_link(&app, "attacker@evil.example", "reset-password"),
        "a reset link went to the pending address"
    );
    // The page answers as for any address, and mails nothing either.
    let browser = app.new_browser();
    let page = get_page(&browser, &app.url("/forgot-password")).await;
    let csrf = page.csrf();
    let answer = Page::of(
        browser
            .post(app.url("/forgot-password"))
            .form(&[("email", "attacker@evil.example"), ("csrf_token", &csrf)])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.html);
    settle().await;
    assert!(!has_link(&app, "attacker@evil.example", "reset-password"));
    // The current address still gets one.
    let (status, _) = post(
        &app,
        "/api/v1/account/password-reset",
        &json!({"email": "bob@example.com"}),
    )
    .await;
    assert_eq!(status, 202);
    mailed_token(&app, "bob@example.com", "reset-password", &[]).await;
}

#[tokio::test]
async fn a_second_change_replaces_the_first_and_links_are_bound_to_their_user() {
    let app = spawn("").await;
    register_verified(&app, "bob", "bob@example.com").await;
    let token = access_token(&app, "bob", STRONG).await;
    let alice = access_token(&app, USER, PASSWORD).await;
    let change = |email: &'static str| json!({"email": email, "current_password": STRONG});
    assert_eq!(
        patch_me(&app, &token, &change("first@example.org")).await.0,
        200
    );
    let first = mailed_token(&app, "first@example.org", "verify-email", &[]).await;
    assert_eq!(
        patch_me(&app, &token, &change("second@example.org"))
            .await
            .0,
        200
    );
    let second = mailed_token(&app, "second@example.org", "verify-email", &[]).await;
    assert_eq!(
        me(&app, &token).await["pending_email"],
        "second@example.org"
    );

    // The first link stopped working, even opened in a browser signed in as someone else.
    let alice_browser = signed_in(&app, USER, PASSWORD).await;
    let page = get_page(
        &alice_browser,
        &app.url(&format!("/verify-email?token={first}")),
    )
    .await;
    assert_eq!(page.status, 400, "{}", page.html);
    assert_eq!(me(&app, &token).await["email"], "bob@example.com");

    // Bob's link opened while signed in as alice changes bob, never alice.
    let page = get_page(
        &alice_browser,
        &app.url(&format!("/verify-email?token={second}")),
    )
    .await;
    assert_eq!(page.status, 200, "{}", page.html);
    assert_eq!(me(&app, &token).await["email"], "second@example.org");
    let alice_profile = me(&app, &alice).await;
    assert_eq!(alice_profile["email"], "alice@example.com");
    assert!(alice_profile["pending_email"].is_null());
    // Changing back to the first address needs a new link: the old one stays dead.
    assert_eq!(
        patch_me(&app, &token, &change("first@example.org")).await.0,
        200
    );
    let (status, _) = post(
        &app,
        "/api/v1/account/verify-email",
        &json!({"token": first}),
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn an_address_of_another_account_is_never_taken_over_nor_revealed() {
    let app = spawn("").await;
    register_verified(&app, "bob", "bob@example.com").await;
    let token = access_token(&app, "bob", STRONG).await;
    // Asking for alice's address answers as for a free one (no enumeration oracle),
    // and alice's mailbox gets no link that acts.
    let (status, profile) = patch_me(
        &app,
        &token,
        &json!({"email": "Alice@Example.com", "current_password": STRONG}),
    )
    .await;
    assert_eq!(status, 200, "{profile}");
    assert_eq!(profile["email"], "bob@example.com");
    settle().await;
    assert!(!has_link(&app, "alice@example.com", "verify-email"));

    // A free address that someone else takes before the link is opened: a clear error,
    // bob keeps his address.
    let (status, _) = patch_me(
        &app,
        &token,
        &json!({"email": "race@example.org", "current_password": STRONG}),
    )
    .await;
    assert_eq!(status, 200);
    let link = mailed_token(&app, "race@example.org", "verify-email", &[]).await;
    let (status, answer) = crate::account_api::register(
        &app,
        &json!({"username": "carol", "email": "race@example.org", "password": STRONGER}),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    mailed_token(&app, "race@example.org", "verify-email", &[&link]).await;
    let before = app.snapshot().await;
    let (status, body) = post(
        &app,
        "/api/v1/account/verify-email",
        &json!({"token": link}),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "email_taken");
    assert_eq!(app.snapshot().await, before, "nothing changed");
    assert_eq!(me(&app, &token).await["email"], "bob@example.com");
}

// ---- password change -----------------------------------------------------------------

#[tokio::test]
async fn a_password_change_signs_out_other_sessions_and_tells_the_address() {
    let app = spawn("").await;
    register_verified(&app, "bob", "bob@example.com").await;
    let here = sign_in(&app, "bob", STRONG).await;
    let elsewhere = sign_in(&app, "bob", STRONG).await;
    // A family that outlives its session (offline_access) is "another session" too.
    let (status, offline) =
        crate::account_api::grant(&app, "bob", STRONG, "openid offline_access").await;
    assert_eq!(status, 200, "{offline}");
    let response = change_password(
        &app,
        here["access_token"].as_str().unwrap(),
        STRONG,
        STRONGER,
    )
    .await;
    assert_eq!(response.status(), 204);
    let (status, body) = refresh(&app, elsewhere["refresh_token"].as_str().unwrap()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, body) = refresh(&app, offline["refresh_token"].as_str().unwrap()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, body) = refresh(&app, here["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 200, "the current session stays: {body}");
    let body = notice(&app, "bob@example.com", "password").await;
    assert!(!body.contains("token="), "{body}");

    // Opting out keeps the other sessions.
    let other = sign_in(&app, "bob", STRONGER).await;
    let current = sign_in(&app, "bob", STRONGER).await;
    let response = crate::account_api::post_bearer(
        &app,
        "/api/v1/account/me/password",
        current["access_token"].as_str().unwrap(),
        &json!({"current_password": STRONGER, "new_password": STRONG, "sign_out_other_sessions": false}),
    )
    .await;
    assert_eq!(response.status(), 204);
    let (status, body) = refresh(&app, other["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_password_reset_tells_the_address() {
    let app = spawn("").await;
    register_verified(&app, "bob", "bob@example.com").await;
    post(
        &app,
        "/api/v1/account/password-reset",
        &json!({"email": "bob@example.com"}),
    )
    .await;
    let link = mailed_token(&app, "bob@example.com", "reset-password", &[]).await;
    let (status, body) = post(
        &app,
        "/api/v1/account/password-reset/confirm",
        &json!({"token": link, "password": STRONGER}),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let body = notice(&app, "bob@example.com", "password was").await;
    assert!(!body.contains("token="), "{body}");
}

#[tokio::test]
async fn the_account_page_asks_for_the_password_and_signs_out_other_browsers() {
    let app = spawn("").await;
    register_verified(&app, "bob", "bob@example.com").await;
    let browser = signed_in(&app, "bob", STRONG).await;
    let other = signed_in(&app, "bob", STRONG).await;
    let page = get_page(&browser, &app.url("/account")).await;
    assert!(page.has_input("email_password"), "{}", page.html);
    assert!(
        page.html.contains("name=\"sign_out_other_sessions\"") && page.html.contains("checked"),
        "{}",
        page.html
    );

    let profile = |email: &'static str, password: &'static str| {
        vec![
            ("email", email),
            ("name", ""),
            ("given_name", ""),
            ("family_name", ""),
            ("picture", ""),
            ("locale", ""),
            ("email_password", password),
        ]
    };
    let answer = account_post(&app, &browser, "profile", &profile("new@example.org", "")).await;
    assert_eq!(answer.status, 400, "{}", answer.html);
    assert!(
        answer.field_error("email_password").is_some(),
        "{}",
        answer.html
    );
    let answer = account_post(
        &app,
        &browser,
        "profile",
        &profile("new@example.org", STRONG),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.html);
    assert!(answer.text().contains("new@example.org"), "{}", answer.html);
    let page = get_page(&browser, &app.url("/account")).await;
    assert!(
        page.text().contains("new@example.org"),
        "pending shown: {}",
        page.html
    );
    mailed_token(&app, "new@example.org", "verify-email", &[]).await;

    let answer = account_post(
        &app,
        &browser,
        "password",
        &[
            ("current_password", STRONG),
            ("new_password", STRONGER),
            ("sign_out_other_sessions", "1"),
        ],
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.html);
    assert_eq!(get_page(&browser, &app.url("/account")).await.status, 200);
    let response = other.get(app.url("/account")).send().await.unwrap();
    assert_eq!(
        location(&response),
        "/login",
        "the other browser is signed out"
    );
}

// ---- sign-up -------------------------------------------------------------------------

/// Cookie names (and attributes) a response sets, values left out.
fn cookie_shapes(page: &Page) -> Vec<String> {
    let mut shapes: Vec<String> = page
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|c| {
            let c = c.to_str().unwrap();
            let (name, rest) = c.split_once('=').unwrap();
            let attributes = rest.split_once(';').map(|(_, a)| a).unwrap_or("");
            format!("{name};{attributes}")
        })
        .collect();
    shapes.sort();
    shapes
}

#[tokio::test]
async fn the_sign_up_page_answers_the_same_for_a_new_and_a_taken_address() {
    let app = spawn("").await;
    let fresh = app.new_browser();
    let new = Page::of(sign_up(&app, &fresh, "bob", "bob@example.com", NEW_PASSWORD).await).await;
    let taken_browser = app.new_browser();
    let taken = Page::of(
        sign_up(
            &app,
            &taken_browser,
            "bobby",
            "alice@example.com",
            NEW_PASSWORD,
        )
        .await,
    )
    .await;
    assert_eq!(new.status, taken.status);
    assert_eq!(new.status, 200, "{}", new.html);
    assert_eq!(cookie_shapes(&new), cookie_shapes(&taken));
    assert!(!sets_session(&new.headers));
    assert_eq!(
        new.html.replace("bob@example.com", "X"),
        taken.html.replace("alice@example.com", "X")
    );
    // A known username with a taken address says "username taken", as with a free
    // address: the address is never the one that decides.
    for email in ["alice@example.com", "nobody@example.com"] {
        let b = app.new_browser();
        let page = Page::of(sign_up(&app, &b, USER, email, NEW_PASSWORD).await).await;
        assert_eq!(page.status, 400, "{email}: {}", page.html);
        assert!(page.field_error("username").is_some(), "{email}");
    }
}

#[tokio::test]
async fn the_verification_link_signs_in_and_resumes_the_authorization_in_the_same_browser() {
    let app = spawn("").await;
    let browser = app.new_browser();
    let url = app.url(&format!(
        "/authorize?response_type=code&client_id={CLIENT}&redirect_uri={REDIRECT}\
         &scope=openid&state=st&prompt=create"
    ));
    let response = browser.get(&url).send().await.unwrap();
    let to_register = location(&response);
    let req = to_register
        .split("req=")
        .nth(1)
        .expect("prompt=create goes to /register?req=")
        .to_string();
    let response = register(
        &app,
        &browser,
        Some(&req),
        &[
            ("username", "dave"),
            ("email", "dave@example.com"),
            ("name", ""),
            ("password", NEW_PASSWORD),
        ],
    )
    .await;
    assert!(!sets_session(response.headers()));
    let page = Page::of(response).await;
    assert!(page.text().contains("Check your e-mail"), "{}", page.html);

    let link = mailed_token(&app, "dave@example.com", "verify-email", &[]).await;
    // Opened elsewhere first would verify without signing in; here the same browser
    // opens it: signed in, and the authorization goes on (consent for a third party).
    let response = browser
        .get(app.url(&format!("/verify-email?token={link}")))
        .send()
        .await
        .unwrap();
    assert!(sets_session(response.headers()), "{}", response.status());
    assert!(response.status().is_redirection(), "{}", response.status());
    let next = location(&response);
    assert!(
        next.starts_with("/consent") || next.starts_with(REDIRECT),
        "{next}"
    );
}

#[tokio::test]
async fn a_verification_link_opened_in_another_browser_does_not_sign_in() {
    let app = spawn("").await;
    let browser = app.new_browser();
    sign_up(&app, &browser, "erin", "erin@example.com", NEW_PASSWORD).await;
    let link = mailed_token(&app, "erin@example.com", "verify-email", &[]).await;
    let other = app.new_browser();
    let response = other
        .get(app.url(&format!("/verify-email?token={link}")))
        .send()
        .await
        .unwrap();
    assert!(!sets_session(response.headers()));
    assert_eq!(response.status(), 200);
    let response = other.get(app.url("/account")).send().await.unwrap();
    assert_eq!(location(&response), "/login");
}

#[tokio::test]
async fn sign_in_after_registration_keeps_the_old_behaviour_when_chosen() {
    let app = spawn_app_with(options_with(
        "\n[accounts]\nsign_in_after_registration = true\n",
    ))
    .await;
    let browser = app.new_browser();
    let response = sign_up(&app, &browser, "fred", "fred@example.com", NEW_PASSWORD).await;
    assert_eq!(location(&response), "/account");
    assert!(sets_session(response.headers()));
}
