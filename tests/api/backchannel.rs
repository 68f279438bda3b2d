//! OpenID Connect Back-Channel Logout 1.0: when a session ends, every client that took
//! part in it and registered a `backchannel_logout_uri` receives a signed logout token,
//! from the outbox, with retries, also across a restart. A small receiver on a random
//! loopback port plays the relying party.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value};

use crate::helpers::{
    CLIENT, CLIENT_SECRET, Options, PASSWORD, REDIRECT, TestApp, USER, query_param, spawn_app_with,
};

/// A relying party's back-channel endpoint: records every POST body and answers with
/// the configured status.
#[derive(Clone)]
struct Receiver {
    port: u16,
    bodies: Arc<Mutex<Vec<(String, String)>>>,
    status: Arc<AtomicU16>,
}

impl Receiver {
    async fn start() -> Self {
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(AtomicU16::new(200));
        let (b, s) = (bodies.clone(), status.clone());
        let app = axum::Router::new().route(
            "/bc/{client}",
            axum::routing::post(
                move |axum::extract::Path(client): axum::extract::Path<String>,
                      headers: axum::http::HeaderMap,
                      body: String| {
                    let (b, s) = (b.clone(), s.clone());
                    async move {
                        let form = headers
                            .get("content-type")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .starts_with("application/x-www-form-urlencoded");
                        assert!(form, "logout tokens come as a form");
                        b.lock().unwrap().push((client, body));
                        axum::http::StatusCode::from_u16(s.load(Ordering::SeqCst)).unwrap()
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            port,
            bodies,
            status,
        }
    }

    fn uri(&self, client: &str) -> String {
        format!("http://127.0.0.1:{}/bc/{client}", self.port)
    }

    /// Waits until `n` requests have arrived (or fails after 15 s).
    async fn wait_for(&self, n: usize) -> Vec<(String, String)> {
        for _ in 0..150 {
            let got = self.bodies.lock().unwrap().clone();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "expected {n} deliveries, got {:?}",
            self.bodies.lock().unwrap()
        );
    }

    fn count(&self) -> usize {
        self.bodies.lock().unwrap().len()
    }
}

const FRONTEND: &str = "frontend";
const BYSTANDER: &str = "bystander";

fn options(receiver: &Receiver) -> Options {
    Options {
        extra_toml: format!(
            r#"
[[users]]
username = "{USER}"
email = "alice@example.com"
password = "{PASSWORD}"

[[clients]]
id = "{CLIENT}"
secret = "{CLIENT_SECRET}"
redirect_uris = ["{REDIRECT}"]
post_logout_redirect_uris = ["https://rp.example/bye"]
backchannel_logout_uri = "{rp}"

[[clients]]
id = "{BYSTANDER}"
secret = "{CLIENT_SECRET}"
redirect_uris = ["{REDIRECT}"]
backchannel_logout_uri = "{bystander}"

[[clients]]
id = "{FRONTEND}"
secret = "{CLIENT_SECRET}"
first_party = true
grant_types = ["password", "refresh_token"]
backchannel_logout_uri = "{frontend}"
"#,
            rp = receiver.uri(CLIENT),
            bystander = receiver.uri(BYSTANDER),
            frontend = receiver.uri(FRONTEND),
        ),
        ..Options::default()
    }
}

/// Alice signs in to "rp" in a browser; returns the browser and the ID token.
async fn sign_in(app: &TestApp) -> (reqwest::Client, String) {
    let browser = app.new_browser();
    let url = format!(
        "{}?response_type=code&client_id={CLIENT}&redirect_uri={REDIRECT}&scope=openid&state=s",
        app.url("/authorize")
    );
    let back = app
        .authorize_in(&browser, &url, USER, PASSWORD, "allow")
        .await;
    let code = query_param(&back, "code").unwrap();
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
    let body: Value = response.json().await.unwrap();
    (browser, body["id_token"].as_str().unwrap().to_string())
}

fn part(token: &str, i: usize) -> Map<String, Value> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.split('.').nth(i).unwrap())
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// The logout token in a form body, its signature checked against the published JWKS.
async fn verified_logout_token(
    app: &TestApp,
    body: &str,
) -> (Map<String, Value>, Map<String, Value>) {
    let token = form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == "logout_token")
        .map(|(_, v)| v.into_owned())
        .expect("a logout_token parameter");
    let header = part(&token, 0);
    let jwks = app.get_json("/jwks.json").await;
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .expect("signed with a published key");
    let jwk = josekit::jwk::Jwk::from_bytes(key.to_string().as_bytes()).unwrap();
    let verifier = josekit::jws::RS256.verifier_from_jwk(&jwk).unwrap();
    let (payload, _) =
        josekit::jwt::decode_with_verifier(&token, &verifier).expect("valid signature");
    (header, payload.claims_set().clone())
}

#[tokio::test]
async fn discovery_offers_back_channel_logout_with_sid() {
    let receiver = Receiver::start().await;
    let app = spawn_app_with(options(&receiver)).await;
    let d = app.get_json("/.well-known/openid-configuration").await;
    assert_eq!(d["backchannel_logout_supported"], true);
    assert_eq!(d["backchannel_logout_session_supported"], true);
    assert_eq!(d["frontchannel_logout_supported"], false);
}

#[tokio::test]
async fn logout_sends_a_signed_logout_token_to_each_client_of_the_session() {
    let receiver = Receiver::start().await;
    let app = spawn_app_with(options(&receiver)).await;
    let (_browser, id_token) = sign_in(&app).await;
    let id_claims = part(&id_token, 1);

    let response = app
        .http
        .get(app.url("/logout"))
        .query(&[("id_token_hint", id_token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let got = receiver.wait_for(1).await;
    assert_eq!(got[0].0, CLIENT, "only the client that took part: {got:?}");
    let (header, claims) = verified_logout_token(&app, &got[0].1).await;
    assert_eq!(header["typ"], "logout+jwt");
    assert_eq!(claims["iss"], app.issuer.as_str());
    assert_eq!(claims["aud"], CLIENT);
    assert_eq!(claims["sub"], id_claims["sub"]);
    assert_eq!(claims["sid"], id_claims["sid"]);
    assert!(claims["events"]["http://schemas.openid.net/event/backchannel-logout"].is_object());
    assert!(!claims.contains_key("nonce"), "{claims:?}");
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert!(exp > iat && exp - iat <= 300, "{claims:?}");
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));

    // Delivered once: a later poll sends nothing more, and the bystander never hears.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(receiver.count(), 1, "{:?}", receiver.bodies.lock().unwrap());
}

#[tokio::test]
async fn a_failed_delivery_is_retried_until_the_client_accepts_it() {
    let receiver = Receiver::start().await;
    receiver.status.store(503, Ordering::SeqCst);
    let app = spawn_app_with(options(&receiver)).await;
    let (_browser, id_token) = sign_in(&app).await;
    app.http
        .get(app.url("/logout"))
        .query(&[("id_token_hint", id_token.as_str())])
        .send()
        .await
        .unwrap();
    receiver.wait_for(1).await;
    receiver.status.store(200, Ordering::SeqCst);
    let got = receiver.wait_for(2).await;
    // A retry carries a freshly signed token.
    let first = verified_logout_token(&app, &got[0].1).await.1;
    let second = verified_logout_token(&app, &got[1].1).await.1;
    assert_eq!(first["sid"], second["sid"]);
    assert_ne!(first["jti"], second["jti"]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(receiver.count(), 2, "no more after it was accepted");
}

#[tokio::test]
async fn queued_logouts_survive_a_restart() {
    let receiver = Receiver::start().await;
    receiver.status.store(500, Ordering::SeqCst);
    let app = spawn_app_with(options(&receiver)).await;
    let (_browser, id_token) = sign_in(&app).await;
    app.http
        .get(app.url("/logout"))
        .query(&[("id_token_hint", id_token.as_str())])
        .send()
        .await
        .unwrap();
    receiver.wait_for(1).await;
    let app = app.restart().await;
    receiver.status.store(200, Ordering::SeqCst);
    let got = receiver.wait_for(2).await;
    let claims = verified_logout_token(&app, &got[1].1).await.1;
    assert_eq!(claims["aud"], CLIENT);
}

#[tokio::test]
async fn signing_out_everywhere_tells_the_first_party_frontend() {
    let receiver = Receiver::start().await;
    let app = spawn_app_with(options(&receiver)).await;
    let response = app
        .token(
            &[
                ("grant_type", "password"),
                ("username", USER),
                ("password", PASSWORD),
                ("scope", "openid"),
            ],
            Some((FRONTEND, CLIENT_SECRET)),
        )
        .await;
    let body: Value = response.json().await.unwrap();
    let access = body["access_token"].as_str().unwrap();
    let sid = part(body["id_token"].as_str().unwrap(), 1)["sid"].clone();
    let (_browser, _) = sign_in(&app).await;

    let ended = app
        .http
        .delete(app.url("/api/v1/account/sessions"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), 204);
    let mut got = receiver.wait_for(2).await;
    got.sort();
    let clients: Vec<&str> = got.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(clients, [FRONTEND, CLIENT]);
    let frontend = verified_logout_token(&app, &got[0].1).await.1;
    assert_eq!(frontend["sid"], sid);
}

#[tokio::test]
async fn a_client_without_the_uri_or_outside_the_session_hears_nothing() {
    let receiver = Receiver::start().await;
    let app = spawn_app_with(options(&receiver)).await;
    // A session in which no client took part (signed in at /login only).
    let browser = app.new_browser();
    let page = browser
        .get(app.url("/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = crate::helpers::hidden_input(&page, "csrf_token").unwrap();
    let signed_in = browser
        .post(app.url("/login"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("username", USER),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303);
    let page = browser
        .get(app.url("/logout"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = crate::helpers::hidden_input(&page, "csrf_token").unwrap();
    let out = browser
        .post(app.url("/logout"))
        .form(&[("csrf_token", csrf.as_str()), ("decision", "logout")])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 200);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(receiver.count(), 0, "{:?}", receiver.bodies.lock().unwrap());
}
