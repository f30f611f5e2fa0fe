// tokio's `Builder::name` panics on an empty name at run time: here it is a compile error.
#[runner::main(name = "")]
async fn main() {}

// Only whitespace is refused too.
#[runner::test(flavor = "multi_thread", name = " \t ")]
async fn blank() {}
