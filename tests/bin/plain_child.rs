//! Child program for `tests/plain_tasks.rs`: `runner::cancelled()` where servers really
//! poll it, in plain tokio tasks, and the `select!` loop ported from `CancellationToken`,
//! each through real signals. One scenario per run: `plain_child SCENARIO FLAVOR`, with
//! FLAVOR `current_thread` or `multi_thread`.
//!
//! - `axum_fn`: axum's documented shape, `with_graceful_shutdown(shutdown_signal())` with
//!   `async fn shutdown_signal() { runner::cancelled().await }`: the `cancelled()` is made
//!   inside axum's own `tokio::spawn`ed task.
//! - `axum_block`: `with_graceful_shutdown(async { runner::cancelled().await; .. })`, the same
//!   made lazily in an async block.
//! - `ported_loop`: the main task's loop with one `cancelled()` held across its iterations,
//!   as the docs show it; each unit of work prints `unit N start` and `unit N done`.
//! - `naive_loop`: the same loop with a fresh `cancelled()` in each `select!`, which a signal
//!   during the work drops mid-unit (runner reports it on stderr).
//!
//! The servers print `listening on ADDR`; `GET /slow?ms=N` prints `slow request: sleeping N
//! ms`, sleeps, and answers `done after N ms`.

use std::future::IntoFuture;
use std::time::Duration;

use axum::http::Uri;
use axum::routing::get;
use axum::Router;

fn main() {
    let flavor = std::env::args().nth(2).unwrap_or_default();
    match flavor.as_str() {
        "current_thread" => current_thread(),
        "multi_thread" => multi_thread(),
        other => {
            eprintln!("plain_child: unknown flavor {other:?}");
            std::process::exit(2);
        }
    }
}

#[runner::main(handle_sigterm = true)]
async fn current_thread() {
    scenario().await
}

#[runner::main(flavor = "multi_thread", worker_threads = 2, handle_sigterm = true)]
async fn multi_thread() {
    scenario().await
}

async fn scenario() {
    let scenario = std::env::args().nth(1).unwrap_or_default();
    match scenario.as_str() {
        "axum_fn" => serve(Shape::Fn).await,
        "axum_block" => serve(Shape::Block).await,
        "ported_loop" => ported_loop().await,
        "naive_loop" => naive_loop().await,
        other => {
            eprintln!("plain_child: unknown scenario {other:?}");
            std::process::exit(2);
        }
    }
}

enum Shape {
    Fn,
    Block,
}

/// axum's own example, with runner's `cancelled()` in place of `tokio::signal::ctrl_c()`.
async fn shutdown_signal() {
    runner::cancelled().await;
    println!("shutdown signal received");
}

async fn serve(shape: Shape) {
    let app = Router::new()
        .route("/", get(|| async { "hello\n" }))
        .route("/slow", get(slow));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("listening on {}", listener.local_addr().unwrap());
    let served = match shape {
        Shape::Fn => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown_signal())
                .into_future()
                .await
        }
        Shape::Block => {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    runner::cancelled().await;
                    println!("shutdown signal received");
                })
                .into_future()
                .await
        }
    };
    served.unwrap();
    println!("drained");
}

async fn slow(uri: Uri) -> String {
    let ms = uri
        .query()
        .and_then(|q| q.strip_prefix("ms="))
        .and_then(|ms| ms.parse::<u64>().ok())
        .unwrap_or(1_000)
        .min(60_000);
    println!("slow request: sleeping {ms} ms");
    tokio::time::sleep(Duration::from_millis(ms)).await;
    println!("slow request: done");
    format!("done after {ms} ms\n")
}

/// One unit of work that must not be cut in the middle.
async fn work(unit: u32) {
    println!("unit {unit} start");
    tokio::time::sleep(Duration::from_millis(400)).await;
    println!("unit {unit} done");
}

/// The loop as runner's docs write it: one `cancelled()` held across the iterations, so a
/// signal that comes during `work()` is seen at the next `select!`.
async fn ported_loop() {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut stop = runner::cancelled();
    let mut unit = 0;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {
                unit += 1;
                work(unit).await;
            }
        }
    }
    println!("loop stopped after unit {unit}");
}

/// The line-for-line port of a `CancellationToken` loop: a fresh `cancelled()` per `select!`.
async fn naive_loop() {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut unit = 0;
    loop {
        tokio::select! {
            _ = runner::cancelled() => break,
            _ = tick.tick() => {
                unit += 1;
                work(unit).await;
            }
        }
    }
    println!("loop stopped after unit {unit}");
}
