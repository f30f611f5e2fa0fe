//! An axum server that drains gracefully on Ctrl-C and on SIGTERM:
//! `cargo run --example axum_server [ADDR]`.
//!
//! - `ADDR` (argv[1], else the `ADDR` environment variable) defaults to `127.0.0.1:0`, a free
//!   loopback port; the program prints `listening on <addr>`.
//! - `GET /` answers `hello`; `GET /slow?ms=N` answers `done after N ms` after sleeping N ms
//!   (at most 60 000), so there is something in flight to drain.
//! - The first Ctrl-C or SIGTERM (`handle_sigterm = true`: `docker stop`, systemd, `kill`)
//!   resolves `runner::cancelled()`. axum then stops accepting (new connections are refused)
//!   and lets the requests in flight finish.
//! - The drain is bounded: after `DRAIN_TIMEOUT_MS` (default 10 000) the connections still
//!   open are dropped. A second Ctrl-C or SIGTERM during the drain ends the process at once.
//! - The process then dies by the signal it got (shell status 130 or 143).

use std::future::IntoFuture;
use std::time::Duration;

use axum::http::Uri;
use axum::routing::get;
use axum::Router;

/// The longest `/slow` sleep a client may ask for.
const MAX_SLOW_MS: u64 = 60_000;

#[runner::main(handle_sigterm = true, shutdown_timeout = "5s")]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("ADDR").ok())
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let drain_timeout = Duration::from_millis(env_ms("DRAIN_TIMEOUT_MS", 10_000));

    let app = Router::new()
        .route("/", get(|| async { "hello\n" }))
        .route("/slow", get(slow));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);

    // axum polls the shutdown future in a task of its own; `cancelled()` resolves there too.
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(runner::cancelled())
        .into_future();
    tokio::pin!(server);
    tokio::select! {
        served = &mut server => return served,
        _ = runner::cancelled() => {}
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
