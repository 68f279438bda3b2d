//! Hosted pages: templates compiled into the binary, security headers, cookies and
//! CSRF tokens.

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use minijinja::Environment;
use serde::Serialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::AppState;

/// The names of oxidp's cookies, chosen once at start from the issuer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieNames {
    pub session: &'static str,
    pub csrf: &'static str,
}

impl CookieNames {
    /// With an https issuer at the root of its host, the `__Host-` prefix: RFC 6265bis
    /// §4.1.3.2 makes a browser accept such a cookie only with Secure, Path=/ and no
    /// Domain, so a sibling subdomain (or a plain-http page on the host) cannot plant a
    /// session or CSRF cookie for oxidp. An http issuer (loopback development, where
    /// cookies are not Secure) or one under a path keeps the plain names.
    pub fn for_issuer(issuer: &str) -> Self {
        let root_https =
            url::Url::parse(issuer).is_ok_and(|u| u.scheme() == "https" && u.path() == "/");
        if root_https {
            Self {
                session: "__Host-oxidp_session",
                csrf: "__Host-oxidp_csrf",
            }
        } else {
            Self {
                session: "oxidp_session",
                csrf: "oxidp_csrf",
            }
        }
    }
}

const STYLESHEET: &str = include_str!("../../assets/oxidp.css");
/// Pages load nothing but our stylesheet and are never framed.
const PAGE_CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
                        frame-ancestors 'none'; base-uri 'none'";

pub fn router() -> Router<AppState> {
    Router::new().route("/assets/oxidp.css", get(stylesheet))
}

async fn stylesheet() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/css; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        STYLESHEET,
    )
        .into_response()
}

/// Every template, compiled in; `.html` names turn on auto-escaping.
pub fn templates() -> Result<Environment<'static>, minijinja::Error> {
    let mut env = Environment::new();
    for (name, source) in [
        ("base.html", include_str!("../../templates/base.html")),
        ("login.html", include_str!("../../templates/login.html")),
        ("consent.html", include_str!("../../templates/consent.html")),
        ("error.html", include_str!("../../templates/error.html")),
        ("message.html", include_str!("../../templates/message.html")),
        ("macros.html", include_str!("../../templates/macros.html")),
        (
            "register.html",
            include_str!("../../templates/register.html"),
        ),
        (
            "forgot_password.html",
            include_str!("../../templates/forgot_password.html"),
        ),
        (
            "reset_password.html",
            include_str!("../../templates/reset_password.html"),
        ),
        ("account.html", include_str!("../../templates/account.html")),
        ("logout.html", include_str!("../../templates/logout.html")),
        (
            "account_sessions.html",
            include_str!("../../templates/account_sessions.html"),
        ),
        (
            "form_post.html",
            include_str!("../../templates/form_post.html"),
        ),
    ] {
        env.add_template(name, source)?;
    }
    Ok(env)
}

fn page_headers(headers: &mut HeaderMap, csp: &str) {
    if let Ok(csp) = HeaderValue::from_str(csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// Renders a page with the hosted-page security headers.
pub fn render(
    state: &AppState,
    status: StatusCode,
    name: &str,
    context: impl Serialize,
) -> Response {
    render_with_csp(state, status, name, context, PAGE_CSP)
}

pub fn render_with_csp(
    state: &AppState,
    status: StatusCode,
    name: &str,
    context: impl Serialize,
    csp: &str,
) -> Response {
    let html = state
        .templates
        .get_template(name)
        .and_then(|t| t.render(minijinja::Value::from(minijinja::value::Serde(&context))));
    match html {
        Ok(html) => {
            let mut response = (
                status,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                )],
                html,
            )
                .into_response();
            page_headers(response.headers_mut(), csp);
            response
        }
        Err(e) => super::error::Unavailable::log(&e).into_response(),
    }
}

/// An HTML error page (never a redirect): unknown client, unregistered redirect URI,
/// expired form.
pub fn error_page(state: &AppState, status: StatusCode, title: &str, message: &str) -> Response {
    render(
        state,
        status,
        "error.html",
        minijinja::context! { title => title, message => message },
    )
}

/// A cookie for oxidp's own pages: HttpOnly, SameSite=Lax, Path=/, Secure with an https
/// issuer.
pub fn cookie(
    state: &AppState,
    name: &'static str,
    value: String,
    max_age_seconds: i64,
) -> Cookie<'static> {
    Cookie::build((name, value))
        .http_only(true)
        .same_site(SameSite::Lax)
        .path("/")
        .secure(state.config.server.issuer.starts_with("https://"))
        .max_age(time_duration(max_age_seconds))
        .build()
}

/// Ends this browser's session cookie. The removal carries the cookie's own attributes:
/// a browser ignores a `__Host-` cookie, even an expired one, without Secure and Path=/.
pub fn remove_session_cookie(state: &AppState, jar: CookieJar) -> CookieJar {
    jar.remove(
        Cookie::build(state.cookies.session)
            .path("/")
            .secure(state.config.server.issuer.starts_with("https://")),
    )
}

/// Starts a browser session for a user who has just proven a password (replacing the
/// browser's previous one: a new id at every sign-in) and sets its cookie.
pub async fn sign_in(
    state: &AppState,
    jar: CookieJar,
    user_id: &str,
    origin: &crate::storage::SessionOrigin,
) -> Result<(CookieJar, crate::storage::SessionRecord), Response> {
    let now = crate::storage::unix_now();
    let old = jar
        .get(state.cookies.session)
        .map(|c| c.value().to_string());
    let (cookie, session) = state
        .sessions
        .start(user_id, &["pwd"], origin, old.as_deref(), now)
        .await
        .map_err(|e| super::error::Unavailable::log(&e).into_response())?;
    let jar = jar.add(self::cookie(
        state,
        state.cookies.session,
        cookie,
        session.expires_at - now,
    ));
    Ok((jar, session))
}

/// What the user's session list shows about where a sign-in came from: the browser's
/// `User-Agent` (at most 256 characters) and address.
pub fn session_origin(headers: &HeaderMap, ip: std::net::IpAddr) -> crate::storage::SessionOrigin {
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| ua.chars().take(256).collect::<String>())
        .filter(|ua| !ua.is_empty() && !ua.contains('\0'));
    crate::storage::SessionOrigin {
        user_agent,
        ip: Some(ip.to_string()),
    }
}

fn time_duration(seconds: i64) -> time::Duration {
    time::Duration::seconds(seconds)
}

/// The browser's CSRF secret, created on first use (double-submit: a cross-site form
/// can neither read nor set it).
pub fn csrf_secret(state: &AppState, jar: CookieJar) -> (CookieJar, String) {
    match jar.get(state.cookies.csrf).map(|c| c.value().to_string()) {
        Some(v) if v.len() == 43 => (jar, v),
        _ => {
            let secret = crate::sessions::new_opaque();
            let jar = jar.add(cookie(state, state.cookies.csrf, secret.clone(), 86_400));
            (jar, secret)
        }
    }
}

/// SHA-256 of a value only this browser can compute again: an HMAC of a fixed label
/// under its CSRF secret (HttpOnly, never in a page). A sign-up stores it with its
/// verification link, so the link signs in only the browser that signed up; and since
/// the CSRF cookie already exists when the form is posted, a sign-up sets no cookie of
/// its own, whatever the address (no enumeration by cookies).
pub fn signup_binding(state: &AppState, jar: &CookieJar) -> Option<Vec<u8>> {
    let secret = jar.get(state.cookies.csrf)?.value().to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(b"oxidp-signup-browser");
    let value = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    Some(crate::sessions::hash_opaque(&value))
}

/// Whether this browser is the one `signup_binding` was computed in.
pub fn same_browser(state: &AppState, jar: &CookieJar, stored: &[u8]) -> bool {
    signup_binding(state, jar).is_some_and(|mine| bool::from(mine.as_slice().ct_eq(stored)))
}

/// The token a form carries: HMAC of the pending request id under the browser's secret,
/// so a token is good only for this browser and this request.
pub fn csrf_token(secret: &str, request_id: &str) -> String {
    match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(b"oxidp-form:");
            mac.update(request_id.as_bytes());
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

pub fn csrf_ok(state: &AppState, jar: &CookieJar, request_id: &str, token: Option<&str>) -> bool {
    let (Some(secret), Some(token)) = (jar.get(state.cookies.csrf), token) else {
        return false;
    };
    let expected = csrf_token(secret.value(), request_id);
    !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(token.as_bytes()))
}

/// OAuth 2.0 Form Post Response Mode: an auto-submitting form to the client. The
/// script runs under a per-response nonce; the form may post only to the client.
pub fn form_post(state: &AppState, action: &str, params: &[(&'static str, String)]) -> Response {
    let nonce = crate::sessions::new_opaque();
    let target = form_action_source(action);
    let csp = format!(
        "default-src 'none'; style-src 'self'; script-src 'nonce-{nonce}'; form-action {target}; \
         frame-ancestors 'none'; base-uri 'none'"
    );
    let pairs: Vec<[&str; 2]> = params.iter().map(|(k, v)| [*k, v.as_str()]).collect();
    render_with_csp(
        state,
        StatusCode::OK,
        "form_post.html",
        serde_json::json!({ "action": action, "params": pairs, "nonce": nonce }),
        &csp,
    )
}

/// The CSP3 source expression (§2.3.1) that lets the form reach `action`: its origin
/// for http(s) (a `host-source`; not the path, since a browser also checks the
/// client's own redirects after the post against form-action), the bare scheme for a
/// native app's private-use scheme such as `com.example.app:/cb` (a `scheme-source`,
/// RFC 8252 §7.1), whose origin is opaque and would serialise as `null`. Anything else,
/// or a value that could end the directive (`;`, `,`, space), gives `'none'`.
fn form_action_source(action: &str) -> String {
    let Ok(url) = url::Url::parse(action) else {
        return "'none'".into();
    };
    let source = match url.scheme() {
        "http" | "https" => url.origin().ascii_serialization(),
        scheme => format!("{scheme}:"),
    };
    // RFC 3986 §3.1 schemes and serialised origins use only these characters.
    let safe = source != "null"
        && source
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.:/[]".contains(&b));
    if safe { source } else { "'none'".into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_action_sources() {
        for (action, want) in [
            ("https://rp.example/cb?x=1", "https://rp.example"),
            ("http://127.0.0.1:8123/native", "http://127.0.0.1:8123"),
            ("https://[::1]:9/cb", "https://[::1]:9"),
            ("com.example.app:/cb", "com.example.app:"),
            ("com.example.app:/cb;%20script-src%20*", "com.example.app:"),
            ("not a url", "'none'"),
            ("", "'none'"),
        ] {
            assert_eq!(form_action_source(action), want, "{action}");
        }
    }

    #[test]
    fn every_template_compiles() {
        let env = templates().unwrap();
        for name in [
            "login.html",
            "consent.html",
            "error.html",
            "message.html",
            "form_post.html",
            "register.html",
            "forgot_password.html",
            "reset_password.html",
            "account.html",
            "logout.html",
            "account_sessions.html",
        ] {
            assert!(env.get_template(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn csrf_tokens_bind_browser_and_request() {
        let a = csrf_token("secret-a", "req-1");
        assert_eq!(a, csrf_token("secret-a", "req-1"));
        assert_ne!(a, csrf_token("secret-b", "req-1"));
        assert_ne!(a, csrf_token("secret-a", "req-2"));
    }
}
