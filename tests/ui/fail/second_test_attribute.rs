#[runner::test]
#[test]
async fn adds() {
    assert_eq!(1 + 1, 2);
}

#[runner::test]
#[tokio::test]
async fn subtracts() {
    assert_eq!(2 - 1, 1);
}

fn main() {}
