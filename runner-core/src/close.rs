//! `Runner::close`: asyncio's shutdown in four steps (cancel the pending tasks and wait,
//! run finalizers, bounded wait for blocking work, shut the runtime down).

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::runtime::{Handle, Runtime};

use crate::context::CtxState;
use crate::deadline::{block_until, CatchUnwind};
use crate::debug::{Report, ReportKind};
use crate::error::panic_message;
use crate::scope::{self, Scope};
use crate::shared::Shared;

/// `true` where `block_on` would make tokio panic: inside a run of ours on this thread, or
/// inside any tokio task.
fn cannot_block() -> bool {
    scope::in_run() || (Handle::try_current().is_ok() && tokio::task::try_id().is_some())
}

/// The four steps of `close()`. Never panics and never waits past its deadlines.
pub(crate) fn shutdown(rt: Runtime, shared: Arc<Shared>, ctx: CtxState, timeout: Duration) {
    if cannot_block() {
        shared.report(Report::new(
            ReportKind::Other,
            "Runner closed from inside a running runtime: its tasks were dropped without \
             waiting for their cleanup"
                .to_owned(),
            None,
            None,
        ));
        rt.shutdown_background();
        return;
    }
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
    }
    // Steps 3 and 4 share one deadline: the blocking pool is waited for (tokio's own Drop
    // would wait forever), then the runtime gets what is left of it.
    let started = Instant::now();
    let abandoned = shared.wait_blocking(timeout);
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
    } else {
        rt.shutdown_timeout(timeout.saturating_sub(started.elapsed()));
    }
}

/// Step 1: one pass of cancellation over the tasks pending now, then wait for them.
fn cancel_pending(rt: &Runtime, shared: &Shared, deadline: Option<Instant>, timeout: Duration) {
    let finished = block_until(rt, deadline, async {
        shared.begin_close_pass();
        std::future::poll_fn(|cx| shared.poll_close_pass(cx)).await
    });
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
        let outcome = match panic::catch_unwind(AssertUnwindSafe(finalizer)) {
            Ok(fut) => block_until(rt, deadline, CatchUnwind(fut)),
            Err(payload) => Some(Err(payload)),
        };
        let problem = match outcome {
            Some(Ok(())) => continue,
            Some(Err(payload)) => (
                ReportKind::FinalizerPanicked,
                format!("at_close finalizer registered at {location} panicked"),
                Some(panic_message(payload.as_ref())),
            ),
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
