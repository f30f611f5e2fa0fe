fn my_fn() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new()
}

#[runner::main(loop_factory = my_fn, flavor = "multi_thread")]
async fn main() {}
