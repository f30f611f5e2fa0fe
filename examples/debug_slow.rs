//! Debug mode names the task that blocked the loop: `cargo run --example debug_slow`.
//!
//! `debug = true` (or `RUNNER_DEBUG=1` in the environment) reports every poll that takes
//! at least 100 ms, with the location of the `runner::spawn` that started the task:
//!
//! ```text
//! runner: Executing <task spawned at examples/debug_slow.rs:18:19> took 0.250 seconds
//! ```

use std::time::Duration;

#[runner::main(debug = true)]
async fn main() {
    let fine = runner::spawn(async {
        tokio::time::sleep(Duration::from_millis(250)).await; // awaits: never blocks the loop
    });
    // A blocking call inside async code: the classic mistake debug mode exists to find.
    let culprit = runner::spawn(async { std::thread::sleep(Duration::from_millis(250)) });
    let _ = fine.await;
    let _ = culprit.await;
    println!("done; the report above names the culprit");
}
