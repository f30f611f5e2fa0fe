#[runner::test]
async fn adds(x: u8) {
    tokio::task::yield_now().await;
    assert_eq!(x + 1, 2);
}

fn main() {}
