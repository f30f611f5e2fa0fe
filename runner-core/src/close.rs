//! `Runner::close`: asyncio's shutdown in four steps (cancel the pending tasks and wait,
//! run finalizers, bounded wait for blocking work, shut the runtime down).

use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::runtime::{Handle, Runtime};

use crate::deadline::{block_until, CatchUnwind};
use crate::debug::{Report, ReportKind};
use crate::error::{dispose, panic_message};
use crate::event_loop::{HomeLoop, Loop, LoopRef, NotHere};
use crate::local::ElsewhereHome;
use crate::progress::{self, Stage};
use crate::scope::{self, Scope};
use crate::shared::Shared;
use crate::util::lock;
use crate::vars::CtxState;

/// Where `close()` can wait for the runtime.
enum Waiting {
    /// On this thread: no tokio context here, so tokio allows blocking.
    Here,
    /// On a helper thread, joined from here: a tokio context that is not a poll (a blocking
    /// thread, `block_in_place`, `Handle::enter`), where blocking is allowed. The helper
    /// makes sure of it: a poll that hides in `tokio::task::unconstrained` would otherwise
    /// make tokio panic.
    Helper,
    /// On this thread, in a tokio context that is not a poll as far as runner can tell: a
    /// `LocalRuntime`, which cannot go to a helper thread (see `shutdown`).
    HereContained,
    /// Nowhere: this thread polls a task or a `block_on` future (ours or a foreign
    /// runtime's), and blocking it would stall that runtime, or make tokio panic.
    Nowhere,
    /// On a helper thread: this thread is exiting and its thread-locals are being destroyed
    /// (a Runner kept in a `thread_local!`), tokio's context or runner's record among them,
    /// so no runtime can be driven here (tokio's `block_on` would panic).
    ThreadExit,
}

fn waiting() -> Waiting {
    if thread_torn_down() {
        Waiting::ThreadExit
    } else if scope::in_run() {
        Waiting::Nowhere
    } else if Handle::try_current().is_err() {
        Waiting::Here
    } else if scope::in_tokio_poll() {
        Waiting::Nowhere
    } else {
        Waiting::Helper
    }
}

/// `true` once tokio's context or runner's record of this thread has been destroyed: the
/// thread is running its thread-local destructors. (A failed `try_current` meant "no
/// runtime here" before; at thread exit it means "tokio cannot run here any more".)
fn thread_torn_down() -> bool {
    let tokio_gone = matches!(Handle::try_current(), Err(e) if e.is_thread_local_destroyed());
    tokio_gone || scope::read(|_| ()).is_none()
}

/// The four steps of `close()`. Never panics and never waits past its deadlines (as long as
/// no poll, `Drop` or finalizer blocks its thread).
pub(crate) fn shutdown(rt: Loop, shared: Arc<Shared>, ctx: CtxState, timeout: Duration) {
    let rt = match rt.into_here() {
        Ok(rt) => rt,
        // Its home thread closed it at its exit (see `event_loop`).
        Err(NotHere::Closed) => return,
        Err(NotHere::Elsewhere(hand)) => {
            // A `LocalRuntime` away from its thread: nothing of it may be touched here. Its
            // home thread closes it at its exit, with what this close would have used; until
            // then it stays findable there (its plain tasks still look for their Runner).
            // This `close()` has asked the Runner to stop all the same.
            shared.stop.close();
            let home = hand.home();
            let what = if hand.hand_over(shared.clone(), ctx, timeout) {
                "the close is left to that thread, which does it when it exits (until then \
                 the runtime and its tasks stay as they are); close a Runner with a local loop \
                 on the thread that built it"
                    .to_owned()
            } else {
                scope::forget_runtime(&shared);
                "the runtime is leaked with them".to_owned()
            };
            shared.report(Report::make(
                ReportKind::ClosedAwayFromItsLoop,
                format!(
                    "Runner closed on thread {:?}, but its loop is a tokio LocalRuntime bound \
                     to thread {home:?}, the thread that built it: its tasks cannot be \
                     cancelled or dropped on another thread; {what}",
                    std::thread::current().id()
                ),
                None,
                None,
            ));
            return;
        }
    };
    shutdown_at_home(rt, shared, ctx, timeout);
}

/// [`shutdown`] of a loop on a thread where it may be shut down; also the close that a local
/// loop's home thread does at its exit.
pub(crate) fn shutdown_at_home(
    rt: HomeLoop,
    shared: Arc<Shared>,
    ctx: CtxState,
    timeout: Duration,
) {
    // The runtime stays findable from its threads until it is gone: plain tokio tasks that
    // still run during the close (its step 1 lets them) may `runner::spawn`, `at_close`...
    let forget = ForgetRuntime(shared.clone());
    // Every `cancelled()` made in plain code resolves now (see `stop`), whether or not this
    // close can wait for what they clean up.
    shared.stop.close();
    let waiting = match (waiting(), &rt) {
        // A `LocalRuntime` cannot go to a helper thread: it waits on its own, which is
        // allowed in such a context (a blocking thread, `Handle::enter`). Only a poll hidden
        // in `tokio::task::unconstrained` would make tokio panic there, and that panic is
        // contained below.
        (Waiting::Helper, HomeLoop::Local(_)) => Waiting::HereContained,
        (waiting, _) => waiting,
    };
    let waits_elsewhere = matches!(
        waiting,
        Waiting::Helper | Waiting::Nowhere | Waiting::ThreadExit
    );
    if waits_elsewhere || !shared.local.runs_here() {
        // The loop's waits run elsewhere, or nowhere: the `spawn_local` tasks, which only
        // this thread may touch, cannot wait for their cleanup. At thread exit tokio's
        // context cannot be entered for their destructors either. Or they live on another
        // thread: reported and left there now, so that a `spawn_local` during this close
        // (a destructor of a task it cancels) drops its future instead of panicking.
        let enter = !matches!(waiting, Waiting::ThreadExit);
        drop_local_tasks(rt.as_ref(), &shared, enter);
    }
    match (waiting, rt) {
        (Waiting::Here, rt) => wait_and_shut_down(rt, shared, ctx, timeout),
        (Waiting::HereContained, rt) => {
            let result = panic::catch_unwind(AssertUnwindSafe(|| {
                wait_and_shut_down(rt, shared.clone(), ctx, timeout);
            }));
            if let Err(payload) = result {
                shared.report(Report::make(
                    ReportKind::ShutdownFailed,
                    "Runner shutdown failed inside a tokio runtime context; its runtime was \
                     dropped"
                        .to_owned(),
                    None,
                    Some(panic_message(payload.as_ref())),
                ));
                dispose(payload);
            }
        }
        (Waiting::Helper | Waiting::ThreadExit, HomeLoop::Runtime(rt)) => {
            on_a_helper_thread(rt, &shared, ctx, timeout);
        }
        (Waiting::ThreadExit, rt @ HomeLoop::Local(_)) => {
            // Only when its home thread could not list it (see `event_loop`): it can neither
            // run here any more nor leave this thread.
            shared.report(Report::make(
                ReportKind::ClosedAtThreadExit,
                "Runner closed at the exit of its thread, after tokio's thread-locals were \
                 destroyed: its LocalRuntime cannot run any more, so its tasks were dropped \
                 without their cleanup and its at_close finalizers did not run"
                    .to_owned(),
                None,
                None,
            ));
            rt.shutdown_background();
        }
        // Turned into `HereContained` above.
        (Waiting::Helper, rt @ HomeLoop::Local(_)) | (Waiting::Nowhere, rt) => {
            shut_down_unwaited(rt, &shared);
        }
    }
    drop(forget);
}

/// The whole close of a `Runtime` on a helper thread, joined from here.
fn on_a_helper_thread(rt: Runtime, shared: &Arc<Shared>, ctx: CtxState, timeout: Duration) {
    let parts = crate::sync::Mutex::new(Some((rt, shared.clone(), ctx)));
    // A thread-local destructor must not unwind: should starting a thread panic there,
    // that is contained too.
    let joined = panic::catch_unwind(AssertUnwindSafe(|| {
        std::thread::scope(|s| {
            let helper = std::thread::Builder::new()
                .name("runner-close".into())
                .spawn_scoped(s, || {
                    if let Some((rt, shared, ctx)) = lock(&parts).take() {
                        wait_and_shut_down(HomeLoop::Runtime(rt), shared, ctx, timeout);
                    }
                });
            helper.map(|h| h.join())
        })
    }));
    let ran = match joined {
        Ok(Ok(Ok(()))) => true,
        Ok(Ok(Err(payload))) => {
            dispose(payload);
            true
        }
        Ok(Err(_)) => false,
        Err(payload) => {
            dispose(payload);
            false
        }
    };
    if !ran {
        // No thread to wait on: do what can be done without waiting.
        if let Some((rt, shared, _ctx)) = lock(&parts).take() {
            shut_down_unwaited(HomeLoop::Runtime(rt), &shared);
        }
    }
}

/// Takes the Runner out of the runtime lookup table when dropped: after the runtime is gone,
/// also if something above panicked.
struct ForgetRuntime(Arc<Shared>);

impl Drop for ForgetRuntime {
    fn drop(&mut self) {
        scope::forget_runtime(&self.0);
    }
}

/// Takes the `spawn_local` tasks out and drops them where they stand, on their thread,
/// inside the runtime's context when `enter` (their destructors may need it). Each task
/// that was still pending leaves the registry (or counts down the close pass) as it is
/// dropped. From here on a `spawn_local` drops its future at once (see `local`).
fn drop_local_tasks(rt: LoopRef<'_>, shared: &Shared, enter: bool) {
    match shared.local.take() {
        Ok(None) | Err(ElsewhereHome { pending: 0 }) => {}
        Ok(Some(set)) => {
            let _entered = enter.then(|| rt.enter());
            if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| drop(set))) {
                dispose(payload);
            }
        }
        Err(ElsewhereHome { pending }) => shared.report(Report::make(
            ReportKind::LocalTasksLeft,
            format!(
                "Runner closed on another thread than the one running its spawn_local tasks: \
                 {pending} local task(s) cannot be cancelled or dropped here, and are left to \
                 that thread, which drops them (without their async cleanup) when it next \
                 starts local tasks or exits; the rest of the Runner is closed"
            ),
            None,
            None,
        )),
    }
}

fn shut_down_unwaited(rt: HomeLoop, shared: &Shared) {
    shared.report(Report::make(
        ReportKind::ClosedInsideRuntime,
        "Runner closed from inside a running runtime: its tasks were dropped without \
         waiting for their cleanup"
            .to_owned(),
        None,
        None,
    ));
    rt.shutdown_background();
}

fn wait_and_shut_down(rt: HomeLoop, shared: Arc<Shared>, ctx: CtxState, timeout: Duration) {
    // All four steps run in the Runner's own scope: what is called while it closes (by a
    // destructor of a plain tokio task that step 4 drops, say) finds this Runner, not the
    // one of the code that called `close()` (a blocking job of another Runner, for one).
    let mut scope = Scope {
        ctx,
        runner: Some(shared.clone()),
        task: None,
        in_run: true,
        // Not isolated for plain tokio tasks that the close polls on this thread: they
        // would all share this scope, so a `ContextVar::set` in one of them is refused, as
        // during a run. The finalizers (polled by the close itself, not tokio tasks) may set.
        isolated: false,
    };
    scope::poll_in(&mut scope, || steps(rt, &shared, timeout));
}

fn steps(rt: HomeLoop, shared: &Arc<Shared>, timeout: Duration) {
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        // The thread that runs the loop now runs the `spawn_local` tasks too.
        shared.local.claim_home();
        let deadline = Instant::now().checked_add(timeout);
        cancel_pending(rt.as_ref(), shared, deadline, timeout);
        run_finalizers(rt.as_ref(), shared, deadline, timeout);
        // What is left of them (a task ignoring its cancel past the timeout) is dropped
        // with the set, as step 4 drops the runtime's.
        drop_local_tasks(rt.as_ref(), shared, true);
        // A task of the pass that outlived step 1's wait may have panicked meanwhile.
        report_shutdown_panics(shared);
    }));
    if let Err(payload) = result {
        shared.report(Report::make(
            ReportKind::ShutdownFailed,
            "Runner shutdown failed; dropping the runtime".to_owned(),
            None,
            Some(panic_message(payload.as_ref())),
        ));
        dispose(payload);
    }
    // Steps 3 and 4 share one deadline: the blocking pool is waited for (tokio's own Drop
    // would wait forever), then the runtime gets what is left of it.
    shared.shutdown.waiting(&Stage::CloseBlocking { timeout });
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
        |waited| progress::report_waiting(shared, Stage::CloseBlocking { timeout }, waited),
    );
    let abandoned = match drained {
        Some(()) => 0,
        None => shared.wait_blocking(Duration::ZERO),
    };
    if abandoned > 0 {
        shared.report(Report::make(
            ReportKind::BlockingAbandoned,
            format!(
                "Runner shutdown: {abandoned} spawn_blocking job(s) still running after the \
                 shutdown timeout of {timeout:?}; abandoning them"
            ),
            None,
            None,
        ));
        rt.shutdown_background();
        report_shutdown_panics(shared);
        return;
    }
    // Plain `tokio::task::spawn_blocking` work (and so `tokio::fs`) is counted nowhere but
    // in tokio's pool, whose shutdown waits for every thread of the runtime: if it takes
    // all the time it was given, something was still running when it gave up.
    let left = timeout.saturating_sub(started.elapsed());
    let pool = Instant::now();
    rt.shutdown_timeout(left);
    if !left.is_zero() && pool.elapsed() >= left {
        shared.report(Report::make(
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
    report_shutdown_panics(shared);
}

/// Step 1: one pass of cancellation over the tasks pending now, then wait for them.
fn cancel_pending(rt: LoopRef<'_>, shared: &Shared, deadline: Option<Instant>, timeout: Duration) {
    // Cut into slices at each report of a slow close (see `progress`).
    let observing = std::cell::RefCell::new(Vec::new());
    let mut pass = std::pin::pin!(async {
        let pass = shared.begin_close_pass();
        shared.shutdown.waiting(&Stage::CloseTasks {
            observing: &pass,
            left: 0,
            timeout,
        });
        *observing.borrow_mut() = pass;
        std::future::poll_fn(|cx| {
            shared.local.drive(cx);
            // The tasks of the pass, then the plain tasks that hold a `cancelled()` (woken by
            // the close, cleaning up as the pass's tasks do).
            match shared.poll_close_pass(cx) {
                Poll::Ready(()) => shared.stop.poll_idle(cx),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
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
        let plain = shared.stop.observers();
        let plain = if plain > 0 {
            format!(", and {plain} runner::cancelled() future(s) still held in plain tokio tasks")
        } else {
            String::new()
        };
        shared.report(Report::make(
            ReportKind::ShutdownTimeout,
            format!(
                "Runner shutdown: {left} cancelled task(s) still running{plain} after the \
                 shutdown timeout of {timeout:?}; dropping them"
            ),
            None,
            None,
        ));
    }
    report_shutdown_panics(shared);
}

/// Reports the panics of close-pass tasks not reported yet (each once). Called after each
/// step: a task that outlives step 1's wait still runs, and may panic, until the runtime is
/// shut down.
fn report_shutdown_panics(shared: &Shared) {
    for (location, description, message) in shared.take_shutdown_panics() {
        shared.report(Report::make(
            ReportKind::PanicDuringShutdown,
            format!("unhandled panic during Runner shutdown in {description}"),
            Some(location),
            Some(message),
        ));
    }
}

/// Step 2: `at_close` finalizers, last registered first, each panic reported.
fn run_finalizers(rt: LoopRef<'_>, shared: &Shared, deadline: Option<Instant>, timeout: Duration) {
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
            Ok(fut) => {
                shared
                    .shutdown
                    .waiting(&Stage::CloseFinalizer { location, timeout });
                let mut fut = std::pin::pin!(CatchUnwind(fut));
                // Polled first: a finalizer may start local tasks, which the drive then runs.
                let mut driving = std::pin::pin!(std::future::poll_fn(|cx| {
                    let polled = fut.as_mut().poll(cx);
                    if polled.is_pending() {
                        shared.local.drive(cx);
                    }
                    polled
                }));
                // Cut into slices at each report of a slow close, as step 1.
                progress::wait_reporting(
                    deadline,
                    shared.report_after,
                    |until| block_until(rt, until, driving.as_mut()),
                    |waited| {
                        let stage = Stage::CloseFinalizer { location, timeout };
                        progress::report_waiting(shared, stage, waited);
                    },
                )
            }
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
        shared.report(Report::make(
            problem.0,
            problem.1,
            Some(location),
            problem.2,
        ));
    }
}
