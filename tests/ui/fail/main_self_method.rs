struct Server;

impl Server {
    #[runner::main]
    async fn serve(&self) {
        let _ = self;
    }
}

fn main() {}
