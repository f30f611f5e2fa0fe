#[runner::main]
const async fn main(port: u16) {
    let _ = port;
}
