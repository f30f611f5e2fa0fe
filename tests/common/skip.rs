//! A test that cannot run here (no PID namespace, another rustc than the UI snapshots') skips
//! with its reason printed, so that `cargo test --workspace` passes for any contributor; under
//! `CI=true` the same test fails instead, so that CI never passes by running nothing.

use std::io::Write;

/// `true` under `CI=true` (GitHub Actions, GitLab and most CI services set it; `.ci/run` too).
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| v == "true")
}

/// Skips the calling test (the caller returns right after): prints `reason` straight to
/// stderr, past libtest's output capture, so that a plain `cargo test` shows it. Under
/// `CI=true`, panics with `reason` instead.
#[track_caller]
pub fn skip(reason: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_owned();
    if in_ci() {
        panic!("{test} cannot run here, and CI=true makes skipping a failure: {reason}");
    }
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test}: {reason}");
}
