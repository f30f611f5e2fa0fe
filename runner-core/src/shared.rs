//! The part of a live Runner that its tasks reach (through an `Arc`): the registry of
//! pending tasks, `at_close` finalizers, the count of blocking jobs, and the report sink.

use std::future::Future;
use std::panic::{self, AssertUnwindSafe, Location};
use std::pin::Pin;
use std::sync::{Arc, Condvar};
use std::task::{Context as TaskCx, Poll};
use std::thread::ThreadId;
use std::time::Duration;

use tokio::runtime::Handle;

use crate::debug::{self, Handler, Report, ReportKind};
use crate::local::LocalTasks;
use crate::registry::{Registry, ShutdownPanic};
use crate::shutdown::Stop;
use crate::sync::Mutex;
use crate::task_state::{Ended, StopSignal, TaskState};
use crate::util::{lock, lock_std, try_lock_std};

/// An `at_close` finalizer: called once at close, it gives the future to run.
pub(crate) type Finalizer = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// The part of a live Runner that its tasks can reach (they hold an `Arc` to it).
pub(crate) struct Shared {
    pub(crate) handle: Handle,
    /// For a `LocalRuntime` loop, the thread that built it: `spawn_local` then spawns on the
    /// runtime itself (tokio's `LocalRuntime` does not drive a `LocalSet`).
    pub(crate) local_runtime: Option<ThreadId>,
    pub(crate) debug: bool,
    slow: Duration,
    /// `Builder::shutdown_report_after`: see `progress`.
    pub(crate) report_after: Duration,
    handler: Handler,
    /// The pending tasks, and `close()`'s cancellation pass over them.
    tasks: Registry,
    /// The `spawn_local` tasks, on the thread that runs the Runner's loop.
    pub(crate) local: LocalTasks,
    finalizers: Mutex<Vec<(&'static Location<'static>, Finalizer)>>,
    /// std's, for its `Condvar` (loom's has no timed wait; no model covers it).
    blocking: std::sync::Mutex<Blocking>,
    blocking_done: Condvar,
    /// The shutdown: `shutdown_requested()`, the grace period, the drain delay (`shutdown`).
    pub(crate) stop: Stop,
}

/// The `spawn_blocking` jobs in flight, counted by where they were spawned (for the reports
/// of a shutdown that waits for them). A place leaves the list when its count drops to 0.
#[derive(Default)]
struct Blocking {
    by_location: Vec<(&'static Location<'static>, usize)>,
}

impl Blocking {
    fn count(&self) -> usize {
        self.by_location.iter().map(|(_, n)| n).sum()
    }
}

impl Shared {
    pub(crate) fn new(
        handle: Handle,
        local_runtime: Option<ThreadId>,
        debug: bool,
        slow: Duration,
        report_after: Duration,
        handler: Handler,
    ) -> Shared {
        Shared {
            handle,
            local_runtime,
            debug,
            slow,
            report_after,
            handler,
            tasks: Registry::new(),
            local: LocalTasks::new(),
            finalizers: Mutex::new(Vec::new()),
            blocking: std::sync::Mutex::default(),
            blocking_done: Condvar::new(),
            stop: Stop::new(None, None, false),
        }
    }

    pub(crate) fn report(&self, report: Report) {
        let handler = &self.handler;
        if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| handler(&report))) {
            // A user's handler is contained already (`runner::contained`), so this is the
            // default one, whose `tracing` subscriber panicked: the line goes to stderr.
            crate::error::dispose(payload);
            debug::print_report(&report);
        }
    }

    pub(crate) fn check_slow_poll(&self, task: &TaskState, took: Duration) {
        if took >= self.slow {
            self.report(Report::new(
                ReportKind::SlowPoll,
                debug::slow_poll_message(&task.describe(), took),
                Some(task.location),
                None,
            ));
        }
    }

    pub(crate) fn register(&self, task: &Arc<TaskState>) {
        self.tasks.register(task);
    }

    /// What the Runner does when one of its tasks ends (`TaskState::finish`).
    pub(crate) fn task_ended(&self, task: &TaskState, ended: Ended) {
        self.tasks.ended(task, ended);
    }

    /// asyncio's "Task exception was never retrieved" (debug mode only, as the panic hook
    /// has already printed the panic itself).
    pub(crate) fn report_unretrieved(&self, task: &TaskState) {
        if self.debug {
            self.report(Report::new(
                ReportKind::PanicNeverRetrieved,
                format!("Task panic was never retrieved: {}", task.describe()),
                Some(task.location),
                task.panicked(),
            ));
        }
    }

    /// Debug mode: a signal dropped a main task that was not observing `cancelled()`.
    pub(crate) fn report_main_task_dropped(&self, task: &TaskState, signal: StopSignal) {
        self.report(Report::new(
            ReportKind::MainTaskDropped,
            format!(
                "{}: the main task was not observing runner::cancelled() and was dropped; \
                 hold runner::cancelled() to clean up asynchronously, or build the Runner \
                 with {} if the program handles the signal itself (e.g. with tokio::signal)",
                signal.name(),
                signal.option()
            ),
            Some(task.location),
            None,
        ));
    }

    /// Step 1 of `close()`, run inside the runtime (so wake-ups go to the local queue): one
    /// pass over the tasks pending now, each asked to cancel. Tasks spawned later are not
    /// part of it. Returns the tasks that were observing `cancelled()` (the ones that get to
    /// clean up, so the ones a slow close waits for), for its reports.
    pub(crate) fn begin_close_pass(&self) -> Vec<Arc<TaskState>> {
        if self.debug {
            // asyncio's debug mode names the tasks still pending when the loop closes.
            for (location, description) in self.pending_tasks() {
                self.report(Report::new(
                    ReportKind::PendingAtClose,
                    format!("Task was still pending at close: {description}"),
                    Some(location),
                    None,
                ));
            }
        }
        self.tasks.begin_pass(self.local.runs_here())
    }

    /// How many tasks of the close pass have not finished.
    pub(crate) fn close_pass_left(&self) -> usize {
        self.tasks.pass_left()
    }

    /// The panics of close-pass tasks so far, each reported once.
    pub(crate) fn take_shutdown_panics(&self) -> Vec<ShutdownPanic> {
        self.tasks.take_panics()
    }

    /// The most recently registered `at_close` finalizer not yet run.
    pub(crate) fn pop_finalizer(&self) -> Option<(&'static Location<'static>, Finalizer)> {
        lock(&self.finalizers).pop()
    }

    pub(crate) fn poll_close_pass(&self, cx: &mut TaskCx<'_>) -> Poll<()> {
        self.tasks.poll_pass(cx)
    }

    /// Where each pending task was spawned, and how reports name it.
    pub(crate) fn pending_tasks(&self) -> Vec<(&'static Location<'static>, String)> {
        self.tasks.pending()
    }

    pub(crate) fn add_finalizer(&self, at: &'static Location<'static>, f: Finalizer) {
        lock(&self.finalizers).push((at, f));
    }

    pub(crate) fn blocking_started(&self, at: &'static Location<'static>) {
        let mut jobs = lock_std(&self.blocking);
        match jobs.by_location.iter_mut().find(|(place, _)| *place == at) {
            Some((_, n)) => *n += 1,
            None => jobs.by_location.push((at, 1)),
        }
    }

    pub(crate) fn blocking_finished(&self, at: &'static Location<'static>) {
        let mut jobs = lock_std(&self.blocking);
        if let Some(i) = jobs.by_location.iter().position(|(place, _)| *place == at) {
            jobs.by_location[i].1 -= 1;
            if jobs.by_location[i].1 == 0 {
                jobs.by_location.swap_remove(i);
            }
        }
        if jobs.by_location.is_empty() {
            self.blocking_done.notify_all();
        }
    }

    /// The `spawn_blocking` jobs in flight, by spawn location.
    pub(crate) fn blocking_jobs(&self) -> Vec<(&'static Location<'static>, usize)> {
        lock_std(&self.blocking).by_location.clone()
    }

    /// Waits until no `spawn_blocking` job runs, at most `timeout`; how many are left.
    pub(crate) fn wait_blocking(&self, timeout: Duration) -> usize {
        let jobs = lock_std(&self.blocking);
        let (jobs, _) = self
            .blocking_done
            .wait_timeout_while(jobs, timeout, |jobs| !jobs.by_location.is_empty())
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        jobs.count()
    }
}

impl Shared {
    pub(crate) fn describe_pending(&self) -> Vec<String> {
        self.pending_tasks().into_iter().map(|(_, d)| d).collect()
    }

    /// [`pending_tasks`](Self::pending_tasks), or `None` when a lock is held (see
    /// `shutdown`: the final words of a forced exit).
    pub(crate) fn try_pending_tasks(&self) -> Option<Vec<(&'static Location<'static>, String)>> {
        self.tasks.try_pending()
    }

    /// [`blocking_jobs`](Self::blocking_jobs), or `None` when the lock is held.
    pub(crate) fn try_blocking_jobs(&self) -> Option<Vec<(&'static Location<'static>, usize)>> {
        try_lock_std(&self.blocking).map(|jobs| jobs.by_location.clone())
    }

    /// How many of the Runner's tasks are tokio tasks of its runtime (to tell the plain ones
    /// apart); `None` if a lock is held and `wait` is false.
    pub(crate) fn runner_tasks_on_runtime(&self, wait: bool) -> Option<usize> {
        self.tasks.runtime_tasks(self.local_runtime.is_some(), wait)
    }

    /// Whether the plain tokio task that drives the `spawn_local` tasks of a current-thread
    /// loop runs (see `task::spawn_local`).
    pub(crate) fn local_driver_running(&self) -> bool {
        self.local_runtime.is_none()
            && self.local.is_made()
            && self.handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread
    }
}
