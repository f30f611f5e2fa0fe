// A key of `#[tokio::main]` that runner does not take: the error says why and what to do.
#[runner::main(flavor = "current_thread", unhandled_panic = "shutdown_runtime")]
async fn main() {}
