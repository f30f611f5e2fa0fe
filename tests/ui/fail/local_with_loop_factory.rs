fn my_runtime() -> std::io::Result<tokio::runtime::LocalRuntime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build_local(Default::default())
}

#[runner::test(flavor = "local", loop_factory = my_runtime)]
async fn local() {}

fn main() {}
