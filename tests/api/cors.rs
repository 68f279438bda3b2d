//! CORS: exact configured origins with credentials on the APIs; `*` only on the public
//! documents.

use crate::helpers::{Options, flow_options, spawn_app_with};

const ORIGIN: &str = "http://localhost:3000";

fn options() -> Options {
    let mut options = flow_options();
    options.extra_toml.push_str(&format!(
        "\n[cors]\nallowed_origins = [\"{ORIGIN}\", \"https://app.example\"]\n"
    ));
    options
}

#[tokio::test]
async fn preflight_and_credentialed_requests_from_a_listed_origin() {
    let app = spawn_app_with(options()).await;
    for path in ["/token", "/userinfo", "/revoke", "/introspect"] {
        let preflight = app
            .http
            .request(reqwest::Method::OPTIONS, app.url(path))
            .header("Origin", ORIGIN)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "authorization, content-type",
            )
            .send()
            .await
            .unwrap();
        assert!(
            preflight.status().is_success(),
            "{path}: {}",
            preflight.status()
        );
        let h = preflight.headers();
        assert_eq!(h["access-control-allow-origin"], ORIGIN, "{path}");
        assert_eq!(h["access-control-allow-credentials"], "true", "{path}");
        let methods = h["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(methods.contains("POST"), "{path}: {methods}");
        let headers = h["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .to_lowercase();
        assert!(
            headers.contains("authorization") && headers.contains("content-type"),
            "{path}: {headers}"
        );
    }
    // The actual (credentialed) request carries the exact origin, never `*`.
    let response = app
        .http
        .get(app.url("/userinfo"))
        .header("Origin", ORIGIN)
        .header("Cookie", "oxidp_session=whatever")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["access-control-allow-origin"], ORIGIN);
    assert_eq!(
        response.headers()["access-control-allow-credentials"],
        "true"
    );
}

#[tokio::test]
async fn unlisted_origins_get_no_cors_headers() {
    let app = spawn_app_with(options()).await;
    for origin in ["http://localhost:3001", "https://evil.example", "null"] {
        let response = app
            .http
            .request(reqwest::Method::OPTIONS, app.url("/token"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .send()
            .await
            .unwrap();
        assert!(
            !response
                .headers()
                .contains_key("access-control-allow-origin"),
            "{origin}: {:?}",
            response.headers()
        );
    }
    // Without any configured origin, nothing is allowed.
    let bare = spawn_app_with(flow_options()).await;
    let response = bare
        .http
        .post(bare.url("/token"))
        .header("Origin", ORIGIN)
        .send()
        .await
        .unwrap();
    assert!(
        !response
            .headers()
            .contains_key("access-control-allow-origin")
    );
}

#[tokio::test]
async fn public_documents_are_open_to_any_origin_without_credentials() {
    let app = spawn_app_with(options()).await;
    let response = app
        .http
        .get(app.url("/jwks.json"))
        .header("Origin", "https://anyone.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    assert!(
        !response
            .headers()
            .contains_key("access-control-allow-credentials")
    );
}
