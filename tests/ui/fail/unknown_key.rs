#[runner::main(bogus = true)]
async fn main() {}

// A near miss gets a suggestion.
#[runner::test(flavor = "multi_thread", worker_thread = 2)]
async fn typo() {}
