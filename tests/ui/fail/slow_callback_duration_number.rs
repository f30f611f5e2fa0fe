#[runner::test(slow_callback_duration = 0.05)]
async fn reports_slow_polls() {}

fn main() {}
