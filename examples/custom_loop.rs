//! A multi-thread runtime from a loop factory: `cargo run --example custom_loop`.
//!
//! The factory is called once, at the first run. `#[runner::main(flavor = "multi_thread")]`
//! is the shortcut for the common case; `loop_factory` takes any function returning a tokio
//! `Runtime`, an `io::Result<Runtime>` or a tokio runtime `Builder`.

use std::collections::HashSet;

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("custom-worker")
        .enable_all()
        .build()
}

#[runner::main(loop_factory = runtime)]
async fn main() {
    let flavor = tokio::runtime::Handle::current().runtime_flavor();
    println!("runtime flavor: {flavor:?}");
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            runner::spawn(async {
                tokio::task::yield_now().await;
                std::thread::current().name().unwrap_or("?").to_owned()
            })
        })
        .collect();
    let mut names = HashSet::new();
    for task in tasks {
        names.insert(task.await.expect("task"));
    }
    println!("tasks ran on: {names:?}");
}
