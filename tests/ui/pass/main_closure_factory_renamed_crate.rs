// A closure loop factory, the crate reached through a re-export, inner attributes in the
// body, and a `()` body that never returns (a server loop). `#[runner::test]` cases live in
// tests/macros.rs and tests/attribute_fixtures.rs: in a bin, a `#[test]` fn is compiled out
// before type checking, so here it would prove nothing.
#![deny(warnings, unused_qualifications, clippy::all)]

mod m {
    pub use ::runner as r;
}

#[m::r::main(
    crate = "m::r",
    loop_factory = || {
        let mut builder = tokio::runtime::Builder::new_current_thread();
        builder.enable_all();
        builder
    },
)]
async fn main() {
    #![allow(unused_variables)]
    #![allow(clippy::never_loop)]
    let unused = "inner attributes apply to the whole fn";
    let task = m::r::spawn(async { 6 * 7 });
    assert_eq!(task.await.ok(), Some(42));
    loop {
        std::process::exit(0);
    }
}
