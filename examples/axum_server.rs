//! An axum server that shuts down the way an orchestrator expects (Kubernetes, docker,
//! systemd): `cargo run --example axum_server [ADDR]`.
//!
//! - `ADDR` (argv[1], else the `ADDR` environment variable) defaults to `127.0.0.1:0`, a free
//!   loopback port; the program prints `listening on <addr>`.
//! - `GET /` answers `hello`; `GET /slow?ms=N` answers `done after N ms` after sleeping N ms
//!   (at most 60 000), so there is something in flight to drain.
//! - `GET /ready` is the readiness endpoint: `200 ready` while serving, `503 shutting down`
//!   once a signal asked the program to stop (`runner::shutdown_requested()`). Point a
//!   Kubernetes `readinessProbe` at it.
//! - A SIGTERM (`docker stop`, a pod deleted, `systemctl stop`, `kill`; `#[runner::main]`
//!   handles it) makes `/ready` fail at once, and the server keeps serving for the drain
//!   delay (`drain_delay`, 1 s here; a few seconds in a real deployment), long enough for a
//!   load balancer to stop sending new requests. A Ctrl-C is not delayed.
//! - Then `runner::cancelled()` resolves: axum stops accepting (new connections are
//!   refused) and lets the requests in flight finish, for at most `DRAIN_TIMEOUT_MS`
//!   (default 10 000); the connections still open then are dropped.
//! - The whole shutdown is bounded by the grace period (`grace_period`, 25 s: below
//!   Kubernetes' default `terminationGracePeriodSeconds` of 30 s). A second signal ends the
//!   process at once; either way the last line on stderr names what was cut short.
//! - The process then dies by the signal it got (shell status 130 or 143; as PID 1 of a
//!   container, exit status 130 or 143).
//! - Under systemd (`Type=notify`) it says `READY=1` once it listens.

use std::future::IntoFuture;
use std::time::Duration;

use axum::http::{StatusCode, Uri};
use axum::routing::get;
use axum::Router;

/// The longest `/slow` sleep a client may ask for.
const MAX_SLOW_MS: u64 = 60_000;

#[runner::main(grace_period = "25s", drain_delay = "1s", shutdown_timeout = "5s")]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("ADDR").ok())
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let drain_timeout = Duration::from_millis(env_ms("DRAIN_TIMEOUT_MS", 10_000));

    let app = Router::new()
        .route("/", get(|| async { "hello\n" }))
        .route("/ready", get(ready))
        .route("/slow", get(slow));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);
    // No-op without NOTIFY_SOCKET; a broken one is reported once and does not stop us.
    let _ = runner::notify_ready();

    // axum polls the shutdown future in a task of its own; `cancelled()` resolves there too.
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(runner::cancelled())
        .into_future();
    tokio::pin!(server);
    tokio::select! {
        // The cancel first: axum's own shutdown task may finish the server before this
        // task looks (no connection to drain), and the drain is still the path taken.
        biased;
        _ = runner::cancelled() => {}
        served = &mut server => return served,
    }
    println!("draining (at most {} ms)", drain_timeout.as_millis());
    match tokio::time::timeout(drain_timeout, server).await {
        Ok(served) => {
            println!("drained");
            served
        }
        Err(_) => {
            println!("drain timed out; dropping the connections still open");
            Ok(())
        }
    }
}

/// Readiness: fails from the first signal on, while the drain delay keeps the server up.
async fn ready() -> (StatusCode, &'static str) {
    if runner::shutdown_requested() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}

async fn slow(uri: Uri) -> String {
    let ms = uri
        .query()
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("ms=")?.parse::<u64>().ok())
        .unwrap_or(1_000)
        .min(MAX_SLOW_MS);
    println!("slow request: sleeping {ms} ms");
    tokio::time::sleep(Duration::from_millis(ms)).await;
    println!("slow request: done");
    format!("done after {ms} ms\n")
}

fn env_ms(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
