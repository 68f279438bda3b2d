//! Brute-force limits on the password grant and the login page (in-process backend).

use serde_json::Value;

use crate::helpers::{
    CLIENT_SECRET, DATABASE_BACKEND, Options, PASSWORD, USER, flow_options, hidden_input,
    spawn_app_with,
};

const FP: &str = "frontend";

fn options(ratelimit: &str) -> Options {
    let mut options = flow_options();
    options.extra_toml.push_str(&format!(
        r#"
[ratelimit]
client_ip_header = "x-end-user-ip"
{ratelimit}

[[clients]]
id = "{FP}"
secret = "{CLIENT_SECRET}"
first_party = true
grant_types = ["password"]
"#
    ));
    options
}

async fn attempt(
    app: &crate::helpers::TestApp,
    user: &str,
    password: &str,
    ip: Option<&str>,
) -> reqwest::Response {
    let mut request = app
        .http
        .post(app.url("/token"))
        .basic_auth(FP, Some(CLIENT_SECRET))
        .form(&[
            ("grant_type", "password"),
            ("username", user),
            ("password", password),
        ]);
    if let Some(ip) = ip {
        request = request.header("x-end-user-ip", ip);
    }
    request.send().await.unwrap()
}

async fn five_failures_per_user_then_429_even_with_the_right_password(backend: &str) {
    let app = spawn_app_with(options(backend)).await;
    for i in 0..5 {
        let r = attempt(
            &app,
            USER,
            "wrong password!",
            Some(&format!("198.51.100.{i}")),
        )
        .await;
        assert_eq!(r.status(), 400, "failure {i}");
    }
    let limited = attempt(&app, USER, PASSWORD, Some("198.51.100.99")).await;
    assert_eq!(limited.status(), 429);
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(limited.headers()["cache-control"], "no-store");
    let body: Value = limited.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
    assert!(body["error_description"].is_string());
    // Another user from the same addresses is not affected.
    assert_eq!(
        attempt(&app, "bob", "wrong password!", Some("198.51.100.1"))
            .await
            .status(),
        400
    );
}

async fn a_success_resets_the_username_count(backend: &str) {
    let app = spawn_app_with(options(backend)).await;
    for _ in 0..4 {
        assert_eq!(
            attempt(&app, USER, "wrong password!", None).await.status(),
            400
        );
    }
    assert_eq!(attempt(&app, USER, PASSWORD, None).await.status(), 200);
    for i in 0..4 {
        assert_eq!(
            attempt(&app, USER, "wrong password!", None).await.status(),
            400,
            "after reset {i}"
        );
    }
}

async fn failures_per_asserted_end_user_ip_from_the_first_party_client(backend: &str) {
    let app = spawn_app_with(options(&format!(
        "{backend}\npassword_failures_per_minute_per_ip = 3"
    )))
    .await;
    for user in ["u1", "u2", "u3"] {
        assert_eq!(
            attempt(&app, user, "wrong password!", Some("203.0.113.9"))
                .await
                .status(),
            400
        );
    }
    // The asserted IP is now limited, whatever the username…
    assert_eq!(
        attempt(&app, "u4", "wrong password!", Some("203.0.113.9"))
            .await
            .status(),
        429
    );
    assert_eq!(
        attempt(&app, USER, PASSWORD, Some("203.0.113.9"))
            .await
            .status(),
        429
    );
    // …but other end users behind the same frontend server are not.
    assert_eq!(
        attempt(&app, USER, PASSWORD, Some("203.0.113.10"))
            .await
            .status(),
        200
    );
    // A malformed header falls back to the peer address (not limited).
    assert_eq!(
        attempt(&app, "u5", "wrong password!", Some("not-an-ip"))
            .await
            .status(),
        400
    );
}

/// On the login page the header is never trusted: a browser cannot choose its IP.
async fn login_page_counts_the_peer_address_and_answers_inline(backend: &str) {
    let app = spawn_app_with(options(&format!(
        "{backend}\npassword_failures_per_minute_per_ip = 3"
    )))
    .await;
    let login = |user: &'static str, spoof: &'static str| {
        let app = &app;
        async move {
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
                .header("x-end-user-ip", spoof)
                .form(&[
                    ("username", user),
                    ("password", "wrong password!"),
                    ("csrf_token", csrf.as_str()),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    for (user, spoof) in [
        ("u1", "192.0.2.1"),
        ("u2", "192.0.2.2"),
        ("u3", "192.0.2.3"),
    ] {
        assert_eq!(login(user, spoof).await.status(), 200);
    }
    let limited = login("u4", "192.0.2.4").await;
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key("retry-after"));
    let html = limited.text().await.unwrap();
    assert!(html.contains("Too many failed attempts"), "{html}");
}

async fn login_from(app: &crate::helpers::TestApp, user: &str, forwarded_for: &str) -> u16 {
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
        .header("x-forwarded-for", forwarded_for)
        .form(&[
            ("username", user),
            ("password", "wrong password!"),
            ("csrf_token", csrf.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Behind a trusted reverse proxy each end user is counted by the forwarded address;
/// without one, X-Forwarded-For is a header anyone can forge and is ignored.
async fn x_forwarded_for_counts_only_behind_a_trusted_proxy(backend: &str) {
    let mut options = options(&format!(
        "{backend}\npassword_failures_per_minute_per_ip = 3"
    ));
    options.server_extra = "trusted_proxies = [\"127.0.0.1\"]".into();
    let behind_proxy = spawn_app_with(options).await;
    for (user, xff) in [
        ("u1", "192.0.2.1"),
        ("u2", "192.0.2.2"),
        ("u3", "192.0.2.3"),
        ("u4", "192.0.2.4"),
    ] {
        assert_eq!(login_from(&behind_proxy, user, xff).await, 200, "{xff}");
    }
    for user in ["v1", "v2", "v3"] {
        assert_eq!(login_from(&behind_proxy, user, "203.0.113.50").await, 200);
    }
    assert_eq!(login_from(&behind_proxy, "v4", "203.0.113.50").await, 429);

    let direct = spawn_app_with(self::options(&format!(
        "{backend}\npassword_failures_per_minute_per_ip = 3"
    )))
    .await;
    for (user, xff) in [
        ("u1", "192.0.2.1"),
        ("u2", "192.0.2.2"),
        ("u3", "192.0.2.3"),
    ] {
        assert_eq!(login_from(&direct, user, xff).await, 200);
    }
    assert_eq!(
        login_from(&direct, "u4", "192.0.2.4").await,
        429,
        "forged X-Forwarded-For must not help"
    );
}

/// Sign-up, reset and verification requests are limited per IP on every backend; a
/// first-party client's asserted end-user IP has its own budget, a bare header does not.
async fn requests_per_ip_on_account_endpoints(backend: &str) {
    let app = spawn_app_with(options(&format!(
        "{backend}\nrequests_per_minute_per_ip = 2"
    )))
    .await;
    let reset = |ip: Option<&'static str>, client: bool| {
        let mut request = app
            .http
            .post(app.url("/api/v1/account/password-reset"))
            .json(&serde_json::json!({"email": "nobody@example.com"}));
        if client {
            request = request.basic_auth(FP, Some(CLIENT_SECRET));
        }
        if let Some(ip) = ip {
            request = request.header("x-end-user-ip", ip);
        }
        request.send()
    };
    // Without client authentication the header is ignored: the peer's budget is used.
    assert_eq!(
        reset(Some("203.0.113.1"), false).await.unwrap().status(),
        202
    );
    assert_eq!(
        reset(Some("203.0.113.2"), false).await.unwrap().status(),
        202
    );
    let limited = reset(Some("203.0.113.3"), false).await.unwrap();
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key("retry-after"));
    let body: Value = limited.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
    // Verification shares the peer's budget.
    let verify = app
        .http
        .post(app.url("/api/v1/account/verify-email"))
        .json(&serde_json::json!({"token": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(verify.status(), 429);
    // The first-party client asserts end users' addresses: each has its own budget.
    for _ in 0..2 {
        assert_eq!(
            reset(Some("198.51.100.7"), true).await.unwrap().status(),
            202
        );
    }
    assert_eq!(
        reset(Some("198.51.100.7"), true).await.unwrap().status(),
        429
    );
    assert_eq!(
        reset(Some("198.51.100.8"), true).await.unwrap().status(),
        202
    );
}

crate::helpers::every_backend!(
    five_failures_per_user_then_429_even_with_the_right_password,
    a_success_resets_the_username_count,
    failures_per_asserted_end_user_ip_from_the_first_party_client,
    login_page_counts_the_peer_address_and_answers_inline,
    x_forwarded_for_counts_only_behind_a_trusted_proxy,
    requests_per_ip_on_account_endpoints,
);

/// With the database backend, instances share the counters: failures on one server
/// block the username on another.
#[tokio::test]
async fn database_limits_are_shared_by_two_processes() {
    let app = spawn_app_with(options(DATABASE_BACKEND)).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = app.config_toml.replace(
        &format!("bind = \"127.0.0.1:{}\"", app.port),
        &format!("bind = \"127.0.0.1:{port}\""),
    );
    let path = app.dir.path().join("second.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_oxidp"))
        .arg("--config")
        .arg(&path)
        .arg("serve")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(&mut child);
    let second = format!("http://127.0.0.1:{port}");
    let mut up = false;
    for _ in 0..200 {
        if reqwest::get(format!("{second}/healthz"))
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            up = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(up, "second server did not start");
    let fail_at = |base: String| {
        let http = app.http.clone();
        async move {
            http.post(format!("{base}/token"))
                .basic_auth(FP, Some(CLIENT_SECRET))
                .form(&[
                    ("grant_type", "password"),
                    ("username", USER),
                    ("password", "wrong password!"),
                ])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    for base in [
        app.address.clone(),
        second.clone(),
        app.address.clone(),
        second.clone(),
        app.address.clone(),
    ] {
        assert_eq!(fail_at(base).await, 400);
    }
    assert_eq!(
        fail_at(second.clone()).await,
        429,
        "the second server sees the first's failures"
    );
    assert_eq!(fail_at(app.address.clone()).await, 429);
}
