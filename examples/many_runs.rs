//! One Runner, several runs: `cargo run --example many_runs`.
//!
//! The runtime is built once, on the first run, and reused; a context value set in one run
//! is seen by the next (they all run in the Runner's context), and a task left pending by
//! one run keeps going in the next, as with `asyncio.Runner`.

use runner::{ContextVar, Runner};

static VISITS: ContextVar<u32> = ContextVar::with_default("visits", || 0);

fn main() {
    let mut runner = Runner::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for round in 1..=3 {
        let tx = tx.clone();
        let seen = runner
            .run(async move {
                let before = VISITS.get().unwrap_or_default();
                VISITS.set(before + 1);
                // Left pending: it finishes during a later run.
                runner::spawn(async move {
                    tokio::task::yield_now().await;
                    let _ = tx.send(round);
                });
                before
            })
            .expect("run");
        println!("run {round}: the context carried {seen} earlier visit(s)");
    }
    let finished = runner
        .run(async move {
            drop(tx);
            let mut done = Vec::new();
            while let Some(round) = rx.recv().await {
                done.push(round);
            }
            done.sort(); // they finished in whatever order the scheduler ran them
            done
        })
        .expect("run");
    println!("tasks spawned in runs {finished:?} finished");
    runner.close();
}
