const NAME: &str = "my-runtime";

#[runner::main(name = NAME)]
async fn main() {}
