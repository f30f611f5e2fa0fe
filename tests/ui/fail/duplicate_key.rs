#[runner::main(debug = true, shutdown_timeout = "1s", debug = false)]
async fn main() {}
