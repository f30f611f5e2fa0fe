// Outer lint attributes reach the fn the attribute makes, and `#![...]` at the top of the
// body reaches the body, as without the attribute: each lint fires at the user's code and
// names the user's attribute as where its level was set. (`#[runner::test]` takes the same
// path; its test fn is compiled only under `--test`, so tests/macros.rs checks it.)
#[runner::main]
#[deny(unused_variables)]
async fn main() {
    #![deny(unused_mut)]
    let unused = 1;
    let mut never_mutated = 2;
    println!("{never_mutated}");
}
