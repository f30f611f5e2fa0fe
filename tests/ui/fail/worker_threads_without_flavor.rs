// The default flavor is current_thread, and `worker_threads` does not silently change it.
#[runner::main(worker_threads = 4)]
async fn main() {}
