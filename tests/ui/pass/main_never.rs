// `-> !`: the body must not return, and the fn keeps its `!` type.
#![deny(warnings, unused_qualifications, clippy::all)]

#[runner::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> ! {
    let task = runner::spawn(async { "done" });
    let done = task.await.ok();
    assert_eq!(done, Some("done"));
    std::process::exit(0)
}

// The generated fn keeps the `!` return type.
const _: fn() -> ! = main;
