//! A request id that flows into spawned tasks: `cargo run --example context_vars`.
//!
//! Each task spawned with `runner::spawn` starts with a copy of its spawner's context
//! variables (tokio's `task_local!` does not follow spawned tasks), and what a task sets
//! stays its own.

use runner::ContextVar;

static REQUEST_ID: ContextVar<u64> = ContextVar::new("request_id");

fn log(message: &str) {
    match REQUEST_ID.get() {
        Some(id) => println!("[request {id}] {message}"),
        None => println!("[no request] {message}"),
    }
}

async fn handle(id: u64) {
    REQUEST_ID.set(id);
    log("handling");
    // Work fanned out to other tasks keeps the request id without passing it around.
    let audit = runner::spawn(async { log("audit written") });
    let lookup = runner::spawn_blocking(|| log("blocking lookup done"));
    let _ = audit.await;
    let _ = lookup.await;
}

#[runner::main]
async fn main() {
    log("starting");
    let requests: Vec<_> = (1..=3).map(|id| runner::spawn(handle(id))).collect();
    for request in requests {
        let _ = request.await;
    }
    log("done (the main task's context never saw a request id)");
}
