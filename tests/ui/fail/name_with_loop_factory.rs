fn my_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

#[runner::main(loop_factory = my_runtime, name = "my-runtime")]
async fn main() {}
