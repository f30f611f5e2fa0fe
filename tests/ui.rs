//! Compile-time behaviour of `#[runner::main]` and `#[runner::test]`: what compiles, and the
//! exact errors (message and span) for what does not. One `TestCases` so that every case
//! shares one build of the dependencies.

mod common;

#[test]
fn ui() {
    // trybuild builds every case (minutes when cold) and runs the pass cases, which would
    // hang with a broken close(): a bound that a cold build stays far below.
    common::watchdog(std::time::Duration::from_secs(1800));
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
