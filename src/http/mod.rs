//! The only module that knows axum. Each area exposes `router()`; `app` merges them and
//! adds the cross-cutting layers (request id, tracing, metrics, panic guard, headers).

mod access_token;
mod account_api;
mod account_pages;
mod admin;
mod audit;
mod authorize;
mod client_auth;
mod detach;
mod discovery;
pub mod error;
mod health;
mod introspect;
mod json;
mod login;
mod logout;
pub mod metrics;
pub mod pages;
mod token;
mod userinfo;

/// The parsers of raw request parts (headers), for the fuzz targets in fuzz/: they take
/// bytes straight from the network, so they are fuzzed apart from the handlers.
pub mod raw {
    pub use super::authorize::is_form;
    pub use super::client_auth::parse_basic;
    pub use super::userinfo::bearer_from_header;
}

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Request, header};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use axum::extract::DefaultBodyLimit;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::accounts::Accounts;
use crate::config::Config;
use crate::keys::KeyRing;
use crate::sessions::Sessions;
use crate::storage::Store;
use metrics::Metrics;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// A request that takes longer is cut off (408) rather than holding resources forever.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What every handler shares. Cloned for each request (axum's `State`), so it is one
/// `Arc`: a clone is one atomic increment, not one per field.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

#[derive(Debug)]
pub struct Shared {
    pub config: Arc<Config>,
    pub store: Store,
    pub keys: KeyRing,
    /// The discovery document, serialised once at start.
    pub discovery: bytes::Bytes,
    pub metrics: Arc<Metrics>,
    pub accounts: Accounts,
    /// Sign-in and re-typed passwords: limits, verification, audit.
    pub sign_in: crate::authn::SignIn,
    /// The token grants (`POST /token`).
    pub grants: crate::grants::Grants,
    /// Sign-up, verification, reset, password change and profile edits.
    pub selfservice: crate::accounts::SelfService,
    pub sessions: Sessions,
    pub templates: Arc<minijinja::Environment<'static>>,
    pub limits: Arc<crate::ratelimit::Limits>,
    /// Clients as read at every request, reused for `database.client_cache_seconds`.
    pub clients: Arc<crate::clients::ClientCache>,
    /// Wakes the back-channel logout sender; `Sessions` holds the same one and wakes it
    /// whenever sessions end.
    pub logout_wake: Arc<tokio::sync::Notify>,
    /// `server.trusted_proxies`, parsed once.
    pub trusted_proxies: Arc<Vec<crate::ratelimit::client_ip::Block>>,
    /// The audit trail's queue.
    pub audit: crate::audit::Audit,
    /// Cookie names, from the issuer.
    pub cookies: pages::CookieNames,
    /// Per-address request rate (`ratelimit.flood_*`); `None` when turned off.
    pub flood: Option<Arc<crate::ratelimit::flood::Flood>>,
}

impl AppState {
    /// The longest a refresh family can live (`tokens.refresh_absolute_days`): how long
    /// a revocation must be remembered.
    pub fn refresh_lifetime(&self) -> i64 {
        self.config.tokens.refresh_lifetime_seconds()
    }

    /// Queues an audit event with the request's context.
    pub fn audit(&self, context: &crate::audit::Context, event: crate::audit::Event) {
        self.audit.record(context, event);
    }

    /// The audit context of a request: end-user IP, user agent, request id.
    pub fn audit_context(
        &self,
        ip: std::net::IpAddr,
        headers: &axum::http::HeaderMap,
    ) -> crate::audit::Context {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        crate::audit::Context::new(Some(ip), header("user-agent"), header("x-request-id"))
    }

    /// The client's address: the peer, or behind trusted proxies the forwarded one.
    pub fn client_ip(
        &self,
        peer: std::net::IpAddr,
        headers: &axum::http::HeaderMap,
    ) -> std::net::IpAddr {
        let forwarded = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
        crate::ratelimit::client_ip::end_user(peer, forwarded, &self.trusted_proxies)
    }
}

/// Largest request body accepted anywhere: forms and JSON are small; a bound keeps a
/// hostile body cheap.
const BODY_LIMIT: usize = 64 * 1024;

/// CORS for the endpoints browser apps call directly: only the configured origins, each
/// echoed exactly, with credentials (DESIGN.md: CORS only for configured origins). A
/// listed origin never becomes `*`, which credentials would forbid anyway (Fetch
/// standard §3.2.5); preflights are answered by the layer.
fn api_cors(config: &Config) -> CorsLayer {
    let origins: Vec<HeaderValue> = config
        .cors
        .allowed_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_credentials(true)
        .allow_methods([
            axum::http::Method::GET,
            axum::http::Method::POST,
            axum::http::Method::PATCH,
            axum::http::Method::DELETE,
        ])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .max_age(Duration::from_secs(600))
}

/// The management listener's routes (`server.metrics_bind`): liveness, readiness and
/// metrics, nothing else.
pub fn management(state: AppState) -> Router {
    health::router()
        .fallback(error::not_found)
        .with_state(state)
        .layer(CatchPanicLayer::custom(error::panic_response))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
}

/// How a route answers when flood control refuses a request.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// `/token` and the JSON API: the OAuth error object (DESIGN.md "Password grant
    /// and rate limits").
    Json,
    /// Hosted pages and `/authorize`: an HTML error page, never a redirect.
    Page,
}

#[derive(Clone)]
struct FloodGuard {
    state: AppState,
    flood: Arc<crate::ratelimit::flood::Flood>,
    shape: Shape,
}

/// Puts `router`'s routes behind flood control, when it is on.
fn flood_controlled(router: Router<AppState>, state: &AppState, shape: Shape) -> Router<AppState> {
    match &state.flood {
        Some(flood) => router.route_layer(axum::middleware::from_fn_with_state(
            FloodGuard {
                state: state.clone(),
                flood: flood.clone(),
                shape,
            },
            flood_guard,
        )),
        None => router,
    }
}

async fn flood_guard(
    axum::extract::State(guard): axum::extract::State<FloodGuard>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let wait = match guard.flood.check(&request) {
        crate::ratelimit::flood::Verdict::Pass => return next.run(request).await,
        crate::ratelimit::flood::Verdict::Refuse(wait) => wait,
    };
    // RFC 6585 §4: 429 with Retry-After.
    let mut response = match guard.shape {
        Shape::Json => (
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            axum::Json(serde_json::json!({
                "error": "temporarily_unavailable",
                "error_description": "Too many requests from this address; try again later.",
            })),
        )
            .into_response(),
        Shape::Page => pages::error_page(
            &guard.state,
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "Too many requests",
            "Too many requests came from your address. Wait a moment and try again.",
        ),
    };
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(wait));
    response
}

pub fn app(state: AppState) -> Router {
    let metrics = state.metrics.clone();
    let cors = api_cors(&state.config);
    let https = state.config.server.issuer.starts_with("https://");
    // Everything but the read-only documents and probes may write: those handlers are
    // never cancelled half-way (`detach`).
    // Flood control covers the routes that check passwords, sign tokens or send mail.
    let writers = Router::new()
        .merge(flood_controlled(authorize::router(), &state, Shape::Page))
        .merge(flood_controlled(login::router(), &state, Shape::Page))
        .merge(logout::router())
        .merge(flood_controlled(
            account_pages::router(),
            &state,
            Shape::Page,
        ))
        .merge(pages::router())
        .merge(
            flood_controlled(token::router(), &state, Shape::Json)
                .merge(userinfo::router())
                .merge(introspect::router())
                .merge(flood_controlled(account_api::router(), &state, Shape::Json))
                .merge(admin::router())
                .layer(cors),
        )
        .layer(axum::middleware::from_fn(detach::run_to_completion));
    // With `server.metrics_bind` the probes and metrics live on their own listener
    // (`management`) and are not found here.
    let probes = if state.config.server.metrics_bind.is_some() {
        Router::new()
    } else {
        health::router()
    };
    let router = Router::new()
        .merge(discovery::router())
        .merge(probes)
        .merge(writers)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::map_response(error::standard_rejection))
        .fallback(error::not_found)
        .with_state(state)
        // The panic guard sits inside the metrics layer, so a panic is counted as 503.
        .layer(CatchPanicLayer::custom(error::panic_response))
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            metrics::track,
        ))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        // Outermost: every span and response carries the request id. Only the path is
        // logged: query strings can hold codes and tokens.
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http()
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO))
                .make_span_with(|request: &Request<_>| {
                    let id = request
                        .headers()
                        .get(&REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    tracing::info_span!(
                        "request",
                        method = %request.method(),
                        path = %request.uri().path(),
                        request_id = %id,
                    )
                }),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid));
    if https {
        // RFC 6797: browsers keep to https for a year. Not for http issuers, which are
        // loopback development setups.
        router.layer(SetResponseHeaderLayer::if_not_present(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        ))
    } else {
        router
    }
}
