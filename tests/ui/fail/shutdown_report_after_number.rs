#[runner::test(shutdown_report_after = 5)]
async fn reports() {}

fn main() {}
