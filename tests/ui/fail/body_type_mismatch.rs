#[runner::main]
async fn main() {
    println!("working");
    Ok(())
}
