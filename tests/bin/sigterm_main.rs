//! Child program for `tests/sigterm.rs`: `#[runner::main(handle_sigterm = true)]` with an
//! observing main task and an `at_close` finalizer. On SIGTERM it cleans up, the finalizer
//! runs, and the process dies by SIGTERM.

use std::time::Duration;

#[runner::main(handle_sigterm = true)]
async fn main() {
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
