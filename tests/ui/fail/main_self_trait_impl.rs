trait Serve {
    fn serve(&self) -> u16;
}

struct Server;

impl Serve for Server {
    #[runner::main]
    async fn serve(&self) -> u16 {
        tokio::task::yield_now().await;
        let _ = self;
        8080
    }
}

fn main() {
    let _ = Server.serve();
}
