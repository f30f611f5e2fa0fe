#[runner::main(exception_handler = |code: i32| println!("{code}"))]
async fn main() {}
