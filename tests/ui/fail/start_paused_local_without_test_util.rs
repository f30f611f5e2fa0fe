// The tokio of this build has `full`, which does not include `test-util`.
#[runner::main(flavor = "local", start_paused = true)]
async fn main() {
    tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
}
