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
use crate::registry::{Registry, ShutdownPanic, StrongRef};
use crate::shutdown::Stop;
use crate::stop::RunnerStop;
use crate::sync::atomic::{AtomicPtr, Ordering};
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
    /// The pending tasks, `close()`'s cancellation pass over them, and the tasks' references
    /// to this state (a task's wrapper holds an uncounted `Arc` to it: see `registry`).
    tasks: Registry,
    /// The `spawn_local` tasks, on the thread that runs the Runner's loop.
    pub(crate) local: LocalTasks,
    finalizers: Mutex<Vec<(&'static Location<'static>, Finalizer)>>,
    /// Refused `ContextVar::set`s already reported: (variable, call site).
    refused: Mutex<Vec<(usize, &'static Location<'static>)>>,
    /// What a `cancelled()` made in plain code observes of the Runner (see `stop`).
    pub(crate) stop: Arc<RunnerStop>,
    /// The main task's record of the Runner's latest run, for a `cancelled()` made in a plain
    /// tokio task polled on that run's thread (every plain task of a current-thread or local
    /// loop). Only ever read on the run's own thread, while the run is active there (found
    /// through the thread's run record, `scope::plain_observed`), where the run's wrapper
    /// keeps the record alive; written before the run starts, only when the Runner makes a
    /// new record (a reused one is at the same address): nothing per warm run.
    run_main: AtomicPtr<TaskState>,
    /// On a multi-thread loop, the main task's record while a run is active, for a
    /// `cancelled()` made in a plain task on a worker thread (which cannot see the run's
    /// thread-local record). Not kept on a current-thread or local loop, whose plain tasks
    /// run on the run's own thread: a run pays nothing for it there.
    active_main: Option<Mutex<Option<Arc<TaskState>>>>,
    /// std's, for its `Condvar` (loom's has no timed wait; no model covers it).
    blocking: std::sync::Mutex<Blocking>,
    blocking_done: Condvar,
    /// The shutdown: `shutdown_requested()`, the grace period, the drain delay (`shutdown`).
    pub(crate) shutdown: Stop,
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
        let multi_thread = handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread;
        let workers = multi_thread.then(|| handle.metrics().num_workers());
        Shared {
            handle,
            local_runtime,
            debug,
            slow,
            report_after,
            handler,
            tasks: Registry::new(Registry::shards_for(workers)),
            local: LocalTasks::new(),
            finalizers: Mutex::new(Vec::new()),
            refused: Mutex::new(Vec::new()),
            run_main: AtomicPtr::new(std::ptr::null_mut()),
            stop: Arc::new(RunnerStop::new()),
            active_main: multi_thread.then(|| Mutex::new(None)),
            blocking: std::sync::Mutex::default(),
            blocking_done: Condvar::new(),
            shutdown: Stop::new(None, None, false),
        }
    }

    /// The runs from now on have `main` as their main task's record (until the next call).
    pub(crate) fn set_run_main(&self, main: &Arc<TaskState>) {
        self.run_main
            .store(Arc::as_ptr(main).cast_mut(), Ordering::Relaxed);
    }

    /// The main task's record of the run active on this thread (see `run_main`); callers
    /// make sure a run of this Runner is active on the calling thread.
    pub(crate) fn run_main(&self) -> Option<*const TaskState> {
        let main = self.run_main.load(Ordering::Relaxed);
        (!main.is_null()).then_some(main.cast_const())
    }

    /// Whether runs publish their main task here (a multi-thread loop; see `active_main`).
    #[inline]
    pub(crate) fn publishes_main(&self) -> bool {
        self.active_main.is_some()
    }

    /// Publishes (`Some`) or withdraws (`None`) the active run's main task, where the loop
    /// keeps it (see `active_main`).
    #[cold]
    pub(crate) fn publish_main(&self, main: Option<&Arc<TaskState>>) {
        if let Some(slot) = &self.active_main {
            let old = std::mem::replace(&mut *lock(slot), main.cloned());
            drop(old);
        }
    }

    /// `true` the first time a `ContextVar::set` of `var` at `at` is refused in this Runner.
    pub(crate) fn first_refusal(&self, var: usize, at: &'static Location<'static>) -> bool {
        let mut seen = lock(&self.refused);
        if seen.contains(&(var, at)) {
            return false;
        }
        seen.push((var, at));
        true
    }

    /// The active run's main task, where the loop publishes it.
    pub(crate) fn active_main(&self) -> Option<Arc<TaskState>> {
        self.active_main
            .as_ref()
            .and_then(|slot| lock(slot).clone())
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
            self.report(Report::make(
                ReportKind::SlowPoll,
                debug::slow_poll_message(&task.describe(), took),
                Some(task.location),
                None,
            ));
        }
    }

    /// Registers a new task; from here until it ends (`task_ended`), the task's wrapper may
    /// reach this state through an uncounted `Arc` (see `registry`).
    pub(crate) fn register(self: &Arc<Shared>, task: &Arc<TaskState>) {
        if self.tasks.register(task) {
            // The tasks' strong reference, taken again by a spawn after the Runner let go.
            // SAFETY: the count is above zero: `register` says so only to a caller whose
            // reference is a counted one (an uncounted one of a task is itself counted in the
            // registry, which then was not at zero).
            unsafe { Arc::increment_strong_count(Arc::as_ptr(self)) };
        }
    }

    /// What the Runner does when one of its tasks ends (`TaskState::finish`): the task
    /// leaves the registry, and with that gives back its reference to this state.
    ///
    /// # Safety
    /// `this` is the state of the Runner that registered the task, reached through the
    /// task's own (uncounted) reference, which this gives back: it may be freed by the time
    /// this returns, and the caller must not use it again.
    pub(crate) unsafe fn task_ended(this: *const Shared, task: &TaskState, ended: Ended) {
        // SAFETY: alive until the registry has taken the task's reference back, which is the
        // last thing `ended` does with it.
        let last = unsafe { (*this).tasks.ended(task, ended) };
        if last {
            // The last task out after the Runner let go gives the tasks' strong reference back.
            // SAFETY: taken in `runner_gone` (or `register`) for exactly this.
            unsafe { Arc::decrement_strong_count(this) };
        }
    }

    /// Held by `Runner::close` while it closes: dropped at its end, when the Runner lets go
    /// of this state. From then on the tasks left (dropped later by tokio's threads after a
    /// `shutdown_background`, or leaked with a local set) keep it alive as long as any can
    /// reach it, through one strong reference taken here for all of them, and given back by
    /// the last one out (at once, after a normal close, which leaves none).
    pub(crate) fn stake(self: &Arc<Shared>) -> Stake {
        Stake(self.clone())
    }

    /// asyncio's "Task exception was never retrieved" (debug mode only, as the panic hook
    /// has already printed the panic itself).
    pub(crate) fn report_unretrieved(&self, task: &TaskState) {
        if self.debug {
            self.report(Report::make(
                ReportKind::PanicNeverRetrieved,
                format!("Task panic was never retrieved: {}", task.describe()),
                Some(task.location),
                task.panicked(),
            ));
        }
    }

    /// Debug mode: a signal dropped a main task that was not observing `cancelled()`.
    pub(crate) fn report_main_task_dropped(&self, task: &TaskState, signal: StopSignal) {
        self.report(Report::make(
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
                self.report(Report::make(
                    ReportKind::PendingAtClose,
                    format!("Task was still pending at close: {description}"),
                    Some(location),
                    None,
                ));
            }
        }
        let (observing, strong) = self.tasks.begin_pass(self.local.runs_here());
        let this: *const Shared = self;
        match strong {
            StrongRef::Keep => {}
            // SAFETY: `Shared` lives in an `Arc`, and the caller (a close) holds a strong
            // reference to it: the count is above zero, and giving one back frees nothing.
            StrongRef::Take => unsafe { Arc::increment_strong_count(this) },
            // SAFETY: as above; the tasks' reference, taken in `Stake::drop` or here.
            StrongRef::GiveBack => unsafe { Arc::decrement_strong_count(this) },
        }
        observing
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

/// See [`Shared::stake`].
pub(crate) struct Stake(Arc<Shared>);

impl Drop for Stake {
    fn drop(&mut self) {
        let shared = &self.0;
        // The tasks' strong reference, taken while the Runner still holds its own.
        // SAFETY: `shared` is a counted reference.
        unsafe { Arc::increment_strong_count(Arc::as_ptr(shared)) };
        if shared.tasks.runner_gone() {
            // No task is left (the normal case): give it back at once.
            // SAFETY: taken just above.
            unsafe { Arc::decrement_strong_count(Arc::as_ptr(shared)) };
        }
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
        self.local.driver_spawned()
    }
}
