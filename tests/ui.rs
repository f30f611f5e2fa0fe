//! Compile-time behaviour of `#[runner::main]` and `#[runner::test]`: what compiles, and the
//! exact errors (message and span) for what does not. One `TestCases` so that every case
//! shares one build of the dependencies.
//!
//! The `.stderr` snapshots are one rustc's wording, and rustc rewords its diagnostics from
//! release to release. `tests/ui/toolchain.txt` records the `rustc --version` they were
//! written with: on that toolchain they are checked; on any other the compile-fail cases are
//! skipped with a note (the pass cases still run), and under `CI=true` that is a failure.
//! To move the snapshots to a new toolchain: `TRYBUILD=overwrite cargo test --test ui` on
//! it, which also records it, then review the diff.

mod common;

use std::path::Path;
use std::process::Command;

const TOOLCHAIN_FILE: &str = "tests/ui/toolchain.txt";

#[test]
fn ui() {
    // trybuild builds every case (minutes when cold) and runs the pass cases, which would
    // hang with a broken close(): a bound that a cold build stays far below.
    common::watchdog(std::time::Duration::from_secs(1800));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let recorded = std::fs::read_to_string(root.join(TOOLCHAIN_FILE))
        .unwrap_or_else(|e| panic!("{TOOLCHAIN_FILE}: {e}"));
    let recorded = recorded.trim();
    let here = rustc_version();
    let overwrite = std::env::var_os("TRYBUILD").is_some_and(|v| v == "overwrite");
    let snapshots_apply = here == recorded || overwrite;

    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    if snapshots_apply {
        t.compile_fail("tests/ui/fail/*.rs");
    }
    drop(t); // runs the cases
    if !snapshots_apply {
        common::skip::skip(&format!(
            "the compile-fail snapshots of tests/ui/fail are {recorded}'s wording \
             ({TOOLCHAIN_FILE}), and this is {here}: skipped (the pass cases ran). Run them \
             with that toolchain, or re-record them on this one with `TRYBUILD=overwrite \
             cargo test --test ui` and review the diff"
        ));
    } else if overwrite && here != recorded {
        std::fs::write(root.join(TOOLCHAIN_FILE), format!("{here}\n"))
            .unwrap_or_else(|e| panic!("{TOOLCHAIN_FILE}: {e}"));
    }
}

/// `rustc --version` of the compiler trybuild builds the cases with: cargo's, which is the
/// `RUSTC` it was given or the `rustc` of the toolchain it runs under (rustup passes
/// `cargo +toolchain` on to the `rustc` it starts, through the environment).
fn rustc_version() -> String {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(&rustc)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("{rustc:?} --version: {e}"));
    assert!(out.status.success(), "{rustc:?} --version: {}", out.status);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
