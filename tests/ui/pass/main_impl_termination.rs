// `-> impl Termination`, doc comments and lint attributes passing through.
#![deny(warnings, unused_qualifications, clippy::all, missing_docs)]
//! A documented program.

use std::process::{ExitCode, Termination};

/// The entry point; this doc comment stays on the generated fn.
#[runner::main(debug = false)]
#[allow(clippy::needless_return)]
async fn main() -> impl Termination {
    assert!(!runner::debug_enabled());
    return ExitCode::SUCCESS;
}
