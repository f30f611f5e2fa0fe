#![deny(dead_code)]

#[runner::main]
async fn never_called() {}

fn main() {}
