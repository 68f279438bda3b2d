//! Metrics in Prometheus/OpenMetrics text: requests by route, method and status, a
//! latency histogram by route, tokens issued by grant, failed sign-ins by reason,
//! rate-limit refusals, and gauges read at scrape time (argon2 queue, database pool,
//! signing-key age, audit queue). One registry per application (no global recorder), so
//! tests can run many servers in one process.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrantLabels {
    grant_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

type HistogramFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily,
    tokens_issued: Family<GrantLabels, Counter>,
    login_failures: Family<ReasonLabels, Counter>,
    ratelimit_rejections: Family<RouteLabels, Counter>,
    /// Read at scrape time by `observe`.
    pub argon2_queue: Gauge,
    pub db_connections: Gauge,
    pub db_idle_connections: Gauge,
    pub signing_key_age: Gauge,
    pub audit_queue: Gauge,
    pub audit_dropped: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("oxidp");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        let tokens_issued = Family::<GrantLabels, Counter>::default();
        registry.register(
            "tokens_issued",
            "Token responses by grant type",
            tokens_issued.clone(),
        );
        let login_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "login_failures",
            "Failed sign-ins by reason",
            login_failures.clone(),
        );
        let ratelimit_rejections = Family::<RouteLabels, Counter>::default();
        registry.register(
            "ratelimit_rejections",
            "Requests refused by a rate limit (HTTP 429), by route",
            ratelimit_rejections.clone(),
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        let argon2_queue = gauge(
            &mut registry,
            "argon2_queue_depth",
            "Password checks waiting for an argon2 worker",
        );
        let db_connections = gauge(
            &mut registry,
            "db_pool_connections",
            "Database connections open",
        );
        let db_idle_connections = gauge(
            &mut registry,
            "db_pool_idle_connections",
            "Database connections open and idle",
        );
        let signing_key_age = gauge(
            &mut registry,
            "signing_key_age_seconds",
            "Seconds since the active signing key started signing",
        );
        let audit_queue = gauge(
            &mut registry,
            "audit_queue_depth",
            "Audit events waiting to be written",
        );
        let audit_dropped = gauge(
            &mut registry,
            "audit_events_dropped",
            "Audit events dropped because the queue was full, since start",
        );
        Arc::new(Self {
            registry,
            requests,
            latency,
            tokens_issued,
            login_failures,
            ratelimit_rejections,
            argon2_queue,
            db_connections,
            db_idle_connections,
            signing_key_age,
            audit_queue,
            audit_dropped,
        })
    }

    pub fn token_issued(&self, grant_type: &str) {
        self.tokens_issued
            .get_or_create(&GrantLabels {
                grant_type: grant_type.to_string(),
            })
            .inc();
    }

    pub fn login_failed(&self, reason: &str) {
        self.login_failures
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Records every request under its route template (`/api/v1/admin/users/{sub}`), never
/// the raw path, so the label set stays bounded whatever clients send.
pub async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = request.method().as_str().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    if response.status() == axum::http::StatusCode::TOO_MANY_REQUESTS {
        metrics
            .ratelimit_rejections
            .get_or_create(&RouteLabels {
                route: route.clone(),
            })
            .inc();
    }
    metrics
        .requests
        .get_or_create(&RequestLabels {
            route: route.clone(),
            method,
            status: response.status().as_u16(),
        })
        .inc();
    metrics
        .latency
        .get_or_create(&RouteLabels { route })
        .observe(started.elapsed().as_secs_f64());
    response
}
