#[runner::test(handle_sigint = false)]
async fn quiet() {}

fn main() {}
