//! `Runner::close`: asyncio's shutdown in four steps (cancel the pending tasks and wait,
//! run finalizers, bounded wait for blocking work, shut the runtime down).

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::runtime::{Handle, Runtime};

use crate::context::CtxState;
use crate::deadline::{block_until, CatchUnwind};
use crate::debug::{Report, ReportKind};
use crate::error::{dispose, panic_message};
use crate::progress::{self, Stage};
use crate::scope::{self, Scope};
use crate::shared::Shared;
use crate::util::lock;

/// Where `close()` can wait for the runtime.
enum Waiting {
    /// On this thread: no tokio context here, so tokio allows blocking.
    Here,
    /// On a helper thread, joined from here: a tokio context that is not a poll (a blocking
    /// thread, `block_in_place`, `Handle::enter`), where blocking is allowed. The helper
    /// makes sure of it: a poll that hides in `tokio::task::unconstrained` would otherwise
    /// make tokio panic.
    Helper,
    /// Nowhere: this thread polls a task or a `block_on` future (ours or a foreign
    /// runtime's), and blocking it would stall that runtime, or make tokio panic.
    Nowhere,
}

fn waiting() -> Waiting {
    if scope::in_run() {
        Waiting::Nowhere
    } else if Handle::try_current().is_err() {
        Waiting::Here
    } else if scope::in_tokio_poll() {
        Waiting::Nowhere
    } else {
        Waiting::Helper
    }
}

/// The four steps of `close()`. Never panics and never waits past its deadlines (as long as
/// no poll, `Drop` or finalizer blocks its thread).
pub(crate) fn shutdown(rt: Runtime, shared: Arc<Shared>, ctx: CtxState, timeout: Duration) {
    // Runtime ids are reused once a runtime is gone: leave the lookup table first.
    scope::forget_runtime(&shared);
    match waiting() {
        Waiting::Here => wait_and_shut_down(rt, shared, ctx, timeout),
        Waiting::Helper => {
            let parts = std::sync::Mutex::new(Some((rt, shared.clone(), ctx)));
            let joined = std::thread::scope(|s| {
                let helper = std::thread::Builder::new()
                    .name("runner-close".into())
                    .spawn_scoped(s, || {
                        if let Some((rt, shared, ctx)) = lock(&parts).take() {
                            wait_and_shut_down(rt, shared, ctx, timeout);
                        }
                    });
                helper.map(|h| h.join())
            });
            match joined {
                Ok(Ok(())) => {}
                Ok(Err(payload)) => dispose(payload),
                // No thread to wait on: do what can be done without waiting.
                Err(_) => {
                    if let Some((rt, shared, _ctx)) = lock(&parts).take() {
                        shut_down_unwaited(rt, &shared);
                    }
                }
            }
        }
        Waiting::Nowhere => shut_down_unwaited(rt, &shared),
    }
}

fn shut_down_unwaited(rt: Runtime, shared: &Shared) {
    shared.report(Report::new(
        ReportKind::Other,
        "Runner closed from inside a running runtime: its tasks were dropped without \
         waiting for their cleanup"
            .to_owned(),
        None,
        None,
    ));
    rt.shutdown_background();
}

fn wait_and_shut_down(rt: Runtime, shared: Arc<Shared>, ctx: CtxState, timeout: Duration) {
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        let mut scope = Scope {
            ctx,
            runner: Some(shared.clone()),
            task: None,
            in_run: true,
        };
        let entered = scope::Entered::new(&mut scope);
        let deadline = Instant::now().checked_add(timeout);
        cancel_pending(&rt, &shared, deadline, timeout);
        run_finalizers(&rt, &shared, deadline, timeout);
        drop(entered);
    }));
    if let Err(payload) = result {
        shared.report(Report::new(
            ReportKind::Other,
            "Runner shutdown failed; dropping the runtime".to_owned(),
            None,
            Some(panic_message(payload.as_ref())),
        ));
        dispose(payload);
    }
    // Steps 3 and 4 share one deadline: the blocking pool is waited for (tokio's own Drop
    // would wait forever), then the runtime gets what is left of it.
    let started = Instant::now();
    let drained = progress::wait_reporting(
        started.checked_add(timeout),
        shared.report_after,
        |until| {
            let wait = until.map_or(timeout, |until| {
                until.saturating_duration_since(Instant::now())
            });
            (shared.wait_blocking(wait) == 0).then_some(())
        },
        |waited| progress::report_waiting(&shared, Stage::CloseBlocking { timeout }, waited),
    );
    let abandoned = match drained {
        Some(()) => 0,
        None => shared.wait_blocking(Duration::ZERO),
    };
    if abandoned > 0 {
        shared.report(Report::new(
            ReportKind::BlockingAbandoned,
            format!(
                "Runner shutdown: {abandoned} spawn_blocking job(s) still running after the \
                 shutdown timeout of {timeout:?}; abandoning them"
            ),
            None,
            None,
        ));
        rt.shutdown_background();
        return;
    }
    // Plain `tokio::task::spawn_blocking` work (and so `tokio::fs`) is counted nowhere but
    // in tokio's pool, whose shutdown waits for every thread of the runtime: if it takes
    // all the time it was given, something was still running when it gave up.
    let left = timeout.saturating_sub(started.elapsed());
    let pool = Instant::now();
    rt.shutdown_timeout(left);
    if !left.is_zero() && pool.elapsed() >= left {
        shared.report(Report::new(
            ReportKind::BlockingAbandoned,
            format!(
                "Runner shutdown: the runtime's threads were still busy after the shutdown \
                 timeout of {timeout:?} (blocking work from tokio::task::spawn_blocking or \
                 tokio::fs, or a task or Drop blocking its thread); abandoning them"
            ),
            None,
            None,
        ));
    }
}

/// Step 1: one pass of cancellation over the tasks pending now, then wait for them.
fn cancel_pending(rt: &Runtime, shared: &Shared, deadline: Option<Instant>, timeout: Duration) {
    // Cut into slices at each report of a slow close (see `progress`).
    let observing = std::cell::RefCell::new(Vec::new());
    let mut pass = std::pin::pin!(async {
        *observing.borrow_mut() = shared.begin_close_pass();
        std::future::poll_fn(|cx| shared.poll_close_pass(cx)).await
    });
    let finished = progress::wait_reporting(
        deadline,
        shared.report_after,
        |until| block_until(rt, until, pass.as_mut()),
        |waited| {
            let stage = Stage::CloseTasks {
                observing: &observing.borrow(),
                left: shared.close_pass_left(),
                timeout,
            };
            progress::report_waiting(shared, stage, waited);
        },
    );
    if finished.is_none() {
        let left = shared.close_pass_left();
        shared.report(Report::new(
            ReportKind::ShutdownTimeout,
            format!(
                "Runner shutdown: {left} cancelled task(s) still running after the shutdown \
                 timeout of {timeout:?}; dropping them"
            ),
            None,
            None,
        ));
    }
    for (location, description, message) in shared.take_shutdown_panics() {
        shared.report(Report::new(
            ReportKind::PanicDuringShutdown,
            format!("unhandled panic during Runner shutdown in {description}"),
            Some(location),
            Some(message),
        ));
    }
}

/// Step 2: `at_close` finalizers, last registered first, each panic reported.
fn run_finalizers(rt: &Runtime, shared: &Shared, deadline: Option<Instant>, timeout: Duration) {
    loop {
        let Some((location, finalizer)) = shared.pop_finalizer() else {
            return;
        };
        // Called inside the runtime's context, as a future made in a task would be: a
        // finalizer may hand back a tokio future built on the spot (`|| sleep(d)`).
        let made = {
            let _entered = rt.enter();
            panic::catch_unwind(AssertUnwindSafe(finalizer))
        };
        let outcome = match made {
            Ok(fut) => block_until(rt, deadline, CatchUnwind(fut)),
            Err(payload) => Some(Err(payload)),
        };
        let problem = match outcome {
            Some(Ok(())) => continue,
            Some(Err(payload)) => {
                let message = panic_message(payload.as_ref());
                dispose(payload);
                (
                    ReportKind::FinalizerPanicked,
                    format!("at_close finalizer registered at {location} panicked"),
                    Some(message),
                )
            }
            None => (
                ReportKind::ShutdownTimeout,
                format!(
                    "at_close finalizer registered at {location} did not finish within the \
                     shutdown timeout of {timeout:?}"
                ),
                None,
            ),
        };
        shared.report(Report::new(problem.0, problem.1, Some(location), problem.2));
    }
}
