//! The smallest program: `cargo run --example hello`.
//!
//! `#[runner::main]` builds a Runner (a current-thread tokio runtime, created lazily), runs
//! the body as the main task with Ctrl-C handled, and closes the Runner afterwards:
//! leftover tasks are cancelled, the blocking pool is waited for at most 300 s.

#[runner::main]
async fn main() {
    let greeter = runner::spawn(async {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        "hello from a task"
    });
    println!("{}", greeter.await.expect("the task finished"));
    println!("hello from runner");
}
