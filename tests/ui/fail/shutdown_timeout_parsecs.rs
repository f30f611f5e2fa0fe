#[runner::main(shutdown_timeout = "10 parsecs")]
async fn main() {}
