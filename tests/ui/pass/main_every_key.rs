// Every key of #[runner::main] at once, with #[runner::test] keys alongside (a test fn is
// removed from a bin after expansion, so only its expansion is checked here).
#![deny(warnings, unused_qualifications, clippy::all)]

use runner::Runner;
use tokio::runtime::{Handle, RuntimeFlavor};

fn log_report(report: &runner::Report) {
    eprintln!("{report}");
}

#[runner::main(
    debug = true,
    flavor = "multi_thread",
    worker_threads = 2,
    shutdown_timeout = "30s",
    shutdown_report_after = "2.5s",
    handle_sigint = false,
    handle_sigterm = true,
    slow_callback_duration = "50ms",
    exception_handler = log_report,
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
    shutdown_report_after = "250ms",
    timeout = "2.5m",
    slow_callback_duration = "0.5s",
    exception_handler = |report: &runner::Report| eprintln!("{report}"),
    crate = "runner"
)]
async fn every_test_key() {}

#[runner::test(flavor = "multi_thread")]
async fn multi_thread_without_worker_count() {}
