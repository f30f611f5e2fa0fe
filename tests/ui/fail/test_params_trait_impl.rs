trait Check {
    fn check(x: u8) -> bool;
}

struct Checker;

impl Check for Checker {
    #[runner::test]
    async fn check(x: u8) -> bool {
        tokio::task::yield_now().await;
        x > 1
    }
}

fn main() {
    let _ = Checker::check(2);
}
