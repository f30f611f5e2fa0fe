#[runner::main(flavor = local)]
async fn main() {}
