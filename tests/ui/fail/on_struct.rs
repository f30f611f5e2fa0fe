#[runner::main]
struct Server;

fn main() {
    let _ = Server;
}
