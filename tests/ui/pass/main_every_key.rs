// Every key of #[runner::main] at once. (`#[runner::test]` with every key is in
// tests/macros.rs: in a bin, a `#[test]` fn is compiled out before type checking.)
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
    grace_period = "25s",
    drain_delay = "2.5s",
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
