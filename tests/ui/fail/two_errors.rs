#[runner::main(bogus = 1, debug = "yes")]
async fn main() {}
