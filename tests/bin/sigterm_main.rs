//! Child program for `tests/sigterm.rs`: `#[runner::main]`, which handles SIGTERM by
//! default, with an observing main task and an `at_close` finalizer (argv[1] `default`, or
//! nothing); or the same with `handle_sigterm = false` (argv[1] `off`). Handled, SIGTERM
//! lets it clean up, the finalizer runs, and the process dies by SIGTERM; unhandled, it
//! dies at once.

use std::time::Duration;

fn main() {
    match std::env::args().nth(1).as_deref() {
        None | Some("default") => default(),
        Some("off") => off(),
        Some(other) => {
            eprintln!("sigterm_main: unknown scenario {other:?}");
            std::process::exit(2);
        }
    }
}

/// No key: SIGTERM is handled (a program whose entry point is the attribute asked for a
/// graceful shutdown).
#[runner::main]
async fn default() {
    body().await
}

#[runner::main(handle_sigterm = false)]
async fn off() {
    body().await
}

async fn body() {
    runner::at_close(|| async {
        println!("finalizer ran");
    });
    println!("ready");
    tokio::select! {
        _ = runner::cancelled() => {
            println!("cancelled observed");
            // sleep: the async cleanup itself, which the run waits for.
            tokio::time::sleep(Duration::from_millis(100)).await;
            println!("cleanup done");
        }
        // sleep: work that outlasts the test, which ends it with SIGTERM.
        _ = tokio::time::sleep(Duration::from_secs(60)) => println!("slept"),
    }
}
