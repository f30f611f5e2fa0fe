#[runner::test(grace_period = "25s")]
async fn graced() {}

#[runner::test(drain_delay = "5s")]
async fn delayed() {}

fn main() {}
