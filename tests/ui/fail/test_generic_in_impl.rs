struct Fixture;

impl Fixture {
    #[runner::test]
    async fn builds<T: Default>() -> Self {
        let _ = T::default();
        Fixture
    }
}

fn main() {}
