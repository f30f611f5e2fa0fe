//! An idle `#[runner::main]` program for `scripts/sigint_latency.sh`: prints `ready`, then
//! awaits forever until Ctrl-C.

#[runner::main]
async fn main() {
    println!("ready");
    std::future::pending::<()>().await;
}
