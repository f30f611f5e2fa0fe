#[runner::main(slow_callback_duration = "50")]
async fn main() {}
