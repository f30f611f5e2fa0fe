//! An idle `#[runner::main(handle_sigterm = true)]` program for `scripts/sigterm_latency.sh`:
//! prints `ready`, then awaits forever until SIGTERM (or Ctrl-C).

#[runner::main(handle_sigterm = true)]
async fn main() {
    println!("ready");
    std::future::pending::<()>().await;
}
