#[runner::test(handle_sigterm = true)]
async fn quiet() {}

fn main() {}
