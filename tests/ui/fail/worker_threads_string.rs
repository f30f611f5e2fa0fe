#[runner::main(flavor = "multi_thread", worker_threads = "four")]
async fn main() {}
