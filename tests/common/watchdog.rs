//! A bound on every in-process test: a broken build that hangs (a `close()` that never
//! returns, a cancel that is lost and a `Task` awaited forever) fails the run within a known
//! time, naming the test, instead of hanging the CI job.
//!
//! libtest gives no way to fail one test from outside it, and a hung thread cannot be
//! stopped. So the watchdog ends the whole test binary: it writes which test hung (straight
//! to stderr, past libtest's output capture) and aborts. Children started by the tests die
//! with it (`child::die_with_parent`).
//!
//! It is armed for the whole test thread, not a scope: a `#[runner::test]` body arms it
//! inside the run, and it still covers the `close()` the attribute does after the body. It
//! is disarmed when libtest's thread for the test exits (thread-local destructor).

use std::cell::RefCell;
use std::io::Write;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::Duration;

/// The bound for a test that runs in well under a second when healthy: generous, for a
/// 2-core machine shared by several builds.
pub const TEST_LIMIT: Duration = Duration::from_secs(60);

thread_local! {
    static ARMED: RefCell<Option<Sender<()>>> = const { RefCell::new(None) };
}

/// Aborts the test binary, naming the current test, unless this thread ends within `limit`.
/// A second call on the same thread replaces the first bound.
pub fn watchdog(limit: Duration) {
    let test = std::thread::current()
        .name()
        .unwrap_or("<unnamed thread>")
        .to_owned();
    let (done, wait) = mpsc::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name(format!("watchdog of {test}"))
        .spawn(move || {
            if let Err(RecvTimeoutError::Timeout) = wait.recv_timeout(limit) {
                // `eprintln!` would go to the test's captured output, lost with the abort.
                let _ = writeln!(
                    std::io::stderr(),
                    "\nwatchdog: test `{test}` still running after {limit:?}; it hangs. \
                     Aborting the test binary."
                );
                std::process::abort();
            }
        });
    spawned.expect("spawn the watchdog thread");
    // Replacing (or, at thread exit, dropping) the sender disconnects the watchdog.
    ARMED.with(|armed| *armed.borrow_mut() = Some(done));
}
