//! Compile-time behaviour of `#[runner::main]` and `#[runner::test]`: what compiles, and the
//! exact errors (message and span) for what does not. One `TestCases` so that every case
//! shares one build of the dependencies.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
