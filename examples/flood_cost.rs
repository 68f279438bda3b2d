//! What flood control costs per request: the governor check alone (an exempt loopback
//! address, one busy address, a new address each time), the key extraction with it
//! (peer address, `X-Forwarded-For` behind a trusted proxy), and a request through an
//! axum router with and without the same middleware, via `tower::ServiceExt::oneshot`.
//! `cargo run --release --example flood_cost -- [iterations]`

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::response::IntoResponse;
use axum::routing::post;
use oxidp::config::RateLimitConfig;
use oxidp::ratelimit::client_ip::Block;
use oxidp::ratelimit::flood::{Flood, Verdict};
use tower::ServiceExt;

fn flood(exempt_loopback: bool, trusted: &[&str]) -> Arc<Flood> {
    let config = RateLimitConfig {
        // Never refuse: the cost measured is that of a passing request, the common case.
        flood_requests_per_second: 1_000_000.0,
        flood_burst: 1_000_000,
        flood_exempt_loopback: exempt_loopback,
        ..RateLimitConfig::default()
    };
    let trusted = trusted.iter().filter_map(|b| Block::parse(b)).collect();
    Arc::new(Flood::from_config(&config, Arc::new(trusted)).expect("flood control on"))
}

fn report(what: &str, n: u64, started: Instant) {
    let ns = started.elapsed().as_nanos() as f64 / n as f64;
    println!("{what:<58} {:>9.1} ns/request", ns);
}

fn request(peer: IpAddr, forwarded: Option<&str>) -> Request<Body> {
    let mut builder = Request::post("/token");
    if let Some(f) = forwarded {
        builder = builder.header("x-forwarded-for", f);
    }
    let mut request = builder.body(Body::empty()).expect("request");
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::new(peer, 40000)));
    request
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    println!("flood control cost, {n} iterations each");

    let limited = flood(false, &[]);
    let exempt = flood(true, &[]);
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let busy = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));

    let started = Instant::now();
    for _ in 0..n {
        black_box(exempt.check_key(black_box(loopback)));
    }
    report("check_key, loopback exempt", n, started);

    let started = Instant::now();
    for _ in 0..n {
        assert_eq!(limited.check_key(black_box(busy)), Verdict::Pass);
    }
    report("check_key, one busy address", n, started);

    let started = Instant::now();
    for i in 0..n {
        let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000u32 + i as u32));
        black_box(limited.check_key(ip));
    }
    report(
        &format!(
            "check_key, a new address each time ({} tracked)",
            limited.tracked()
        ),
        n,
        started,
    );
    limited.prune();

    let plain = request(busy, None);
    let started = Instant::now();
    for _ in 0..n {
        black_box(limited.check(black_box(&plain)));
    }
    report("check (key from the peer address)", n, started);

    let proxied = flood(false, &["10.0.0.0/8"]);
    let behind = request(
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
        Some("203.0.113.9, 10.0.0.5"),
    );
    let started = Instant::now();
    for _ in 0..n {
        black_box(proxied.check(black_box(&behind)));
    }
    report(
        "check (X-Forwarded-For behind two trusted proxies)",
        n,
        started,
    );

    // Through a router: the middleware's whole cost, boxing included.
    let without: Router = Router::new().route("/token", post(|| async { "ok" }));
    let guard = limited.clone();
    let with: Router = Router::new()
        .route("/token", post(|| async { "ok" }))
        .route_layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let guard = guard.clone();
                async move {
                    match guard.check(&request) {
                        Verdict::Pass => next.run(request).await,
                        Verdict::Refuse(_) => {
                            axum::http::StatusCode::TOO_MANY_REQUESTS.into_response()
                        }
                    }
                }
            },
        ));
    let rounds = n / 10;
    let mut per = [0f64; 2];
    for (i, router) in [without, with].into_iter().enumerate() {
        let started = Instant::now();
        for _ in 0..rounds {
            let response = router
                .clone()
                .oneshot(request(busy, None))
                .await
                .expect("infallible");
            black_box(response);
        }
        per[i] = started.elapsed().as_nanos() as f64 / rounds as f64;
    }
    println!(
        "{:<58} {:>9.1} ns/request",
        "router round trip without the layer", per[0]
    );
    println!(
        "{:<58} {:>9.1} ns/request",
        "router round trip with the layer", per[1]
    );
    println!(
        "{:<58} {:>9.1} ns/request",
        "the layer's cost (difference)",
        per[1] - per[0]
    );
}
