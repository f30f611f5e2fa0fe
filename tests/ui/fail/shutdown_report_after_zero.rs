#[runner::main(shutdown_report_after = "0s")]
async fn main() {}
