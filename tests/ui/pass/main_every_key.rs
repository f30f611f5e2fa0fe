// Every key of #[runner::main] at once, with #[runner::test] keys alongside (a test fn is
// removed from a bin after expansion, so only its expansion is checked here).
#![deny(warnings, unused_qualifications, clippy::all)]

use runner::Runner;
use tokio::runtime::{Handle, RuntimeFlavor};

#[runner::main(
    debug = true,
    flavor = "multi_thread",
    worker_threads = 2,
    shutdown_timeout = "30s",
    handle_sigint = false,
    handle_sigterm = true,
    crate = "::runner"
)]
async fn main() {
    assert!(runner::debug_enabled());
    assert_eq!(
        Handle::current().runtime_flavor(),
        RuntimeFlavor::MultiThread
    );
    assert_eq!(Handle::current().metrics().num_workers(), 2);
    // `Runner` in scope must not make the expansion's `::runner::Runner` an unused
    // qualification.
    assert!(!Runner::new().is_closed());
}

#[runner::test(
    debug = false,
    flavor = "current_thread",
    shutdown_timeout = "500ms",
    timeout = "2m",
    crate = "runner"
)]
async fn every_test_key() {}

#[runner::test(flavor = "multi_thread")]
async fn multi_thread_without_worker_count() {}
