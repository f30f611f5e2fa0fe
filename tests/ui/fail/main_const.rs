#[runner::main]
const fn main() {}
