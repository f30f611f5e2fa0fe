fn my_handler(report: u32) {
    let _ = report;
}

#[runner::main(exception_handler = my_handler)]
async fn main() {}
