struct App;

impl App {
    #[runner::main]
    async fn run<T: Default>(&self) -> T {
        tokio::task::yield_now().await;
        T::default()
    }
}

fn main() {
    let _: u8 = App.run();
}
