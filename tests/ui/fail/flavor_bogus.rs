#[runner::main(flavor = "bogus")]
async fn main() {}
