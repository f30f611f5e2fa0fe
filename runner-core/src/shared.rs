//! The part of a live Runner that its tasks reach (through an `Arc`): the registry of
//! pending tasks, `at_close` finalizers, the count of blocking jobs, and the report sink.

use std::future::Future;
use std::panic::{self, AssertUnwindSafe, Location};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context as TaskCx, Poll, Waker};
use std::time::Duration;

use tokio::runtime::Handle;

use crate::debug::{self, Handler, Report, ReportKind};
use crate::task_state::{Ended, StopSignal, TaskState, NO_SLOT};
use crate::util::lock;

/// An `at_close` finalizer: called once at close, it gives the future to run.
pub(crate) type Finalizer = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// The part of a live Runner that its tasks can reach (they hold an `Arc` to it).
pub(crate) struct Shared {
    pub(crate) handle: Handle,
    pub(crate) debug: bool,
    slow: Duration,
    /// `Builder::shutdown_report_after`: see `progress`.
    pub(crate) report_after: Duration,
    handler: Handler,
    tasks: Mutex<Registry>,
    /// Tasks of `close()`'s cancellation pass not finished yet (plus a large guard value
    /// while the pass is being taken), who waits for them, and the panics they ended with.
    close_pass: AtomicUsize,
    closer: Mutex<Option<Waker>>,
    shutdown_panics: Mutex<Vec<ShutdownPanic>>,
    finalizers: Mutex<Vec<(&'static Location<'static>, Finalizer)>>,
    blocking: Mutex<Blocking>,
    blocking_done: Condvar,
}

/// The `spawn_blocking` jobs in flight: how many, and where they were spawned (for the
/// reports of a shutdown that waits for them).
#[derive(Default)]
struct Blocking {
    count: usize,
    by_location: Vec<(&'static Location<'static>, usize)>,
}

/// A task of the close pass that panicked: where it was spawned, its name, the panic.
pub(crate) type ShutdownPanic = (&'static Location<'static>, String, String);

/// The pending `runner::spawn` tasks, so `close()` can cancel them (a slab: O(1) in and out).
#[derive(Default)]
struct Registry {
    slots: Vec<Option<Arc<TaskState>>>,
    free: Vec<usize>,
}

impl Shared {
    pub(crate) fn new(
        handle: Handle,
        debug: bool,
        slow: Duration,
        report_after: Duration,
        handler: Handler,
    ) -> Shared {
        Shared {
            handle,
            debug,
            slow,
            report_after,
            handler,
            tasks: Mutex::default(),
            close_pass: AtomicUsize::new(0),
            closer: Mutex::default(),
            shutdown_panics: Mutex::default(),
            finalizers: Mutex::default(),
            blocking: Mutex::default(),
            blocking_done: Condvar::new(),
        }
    }

    pub(crate) fn report(&self, report: Report) {
        let handler = &self.handler;
        if panic::catch_unwind(AssertUnwindSafe(|| handler(&report))).is_err() {
            debug::default_handler(&report);
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
        let mut reg = lock(&self.tasks);
        let slot = match reg.free.pop() {
            Some(slot) => slot,
            None => {
                reg.slots.push(None);
                reg.slots.len() - 1
            }
        };
        reg.slots[slot] = Some(task.clone());
        task.slot.store(slot, Ordering::Release);
    }

    /// What the Runner does when one of its tasks ends (`TaskState::finish`).
    pub(crate) fn task_ended(&self, task: &TaskState, ended: Ended) {
        match ended {
            Ended::Normal => self.deregister(task),
            Ended::ClosePass { panicked } => self.close_pass_task_done(task, panicked),
        }
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

    fn deregister(&self, task: &TaskState) {
        let slot = task.slot.load(Ordering::Acquire);
        let mut reg = lock(&self.tasks);
        if slot != NO_SLOT
            && reg.slots[slot]
                .as_deref()
                .is_some_and(|t| std::ptr::eq(t, task))
        {
            reg.slots[slot] = None;
            reg.free.push(slot);
        }
    }

    /// A task of the close pass ended. The pass took it out of the registry already, so this
    /// is one atomic decrement, not a lock per task.
    fn close_pass_task_done(&self, task: &TaskState, panicked: bool) {
        if let Some(message) = panicked.then(|| task.panicked()).flatten() {
            lock(&self.shutdown_panics).push((task.location, task.describe(), message));
        }
        if self.close_pass.fetch_sub(1, Ordering::SeqCst) == 1 {
            if let Some(waker) = lock(&self.closer).take() {
                waker.wake();
            }
        }
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
        // Counted down by each task of the pass as it ends. It starts far above any task
        // count, so it cannot reach zero before the pass is taken, and is set right at the
        // end with one subtraction instead of an atomic add per task.
        const TAKING: usize = usize::MAX / 2;
        self.close_pass.store(TAKING, Ordering::SeqCst);
        let mut joined = 0;
        let mut observing = Vec::new();
        // The pass takes the whole registry: each record then lives only as long as its
        // task, and is freed as the task ends (while in cache), not swept at the end. Tasks
        // spawned from now on fill a fresh registry.
        let pass = std::mem::take(&mut *lock(&self.tasks));
        for task in pass.slots.into_iter().flatten() {
            if task.join_close_pass() {
                joined += 1;
                task.request_cancel(None);
                // Moved, not cloned: no reference count touched for the common case.
                if task.observers.load(Ordering::Relaxed) > 0 {
                    observing.push(task);
                }
            }
        }
        self.close_pass.fetch_sub(TAKING - joined, Ordering::SeqCst);
        observing
    }

    /// How many tasks of the close pass have not finished.
    pub(crate) fn close_pass_left(&self) -> usize {
        self.close_pass.load(Ordering::SeqCst)
    }

    /// The panics of close-pass tasks so far, each reported once.
    pub(crate) fn take_shutdown_panics(&self) -> Vec<ShutdownPanic> {
        std::mem::take(&mut *lock(&self.shutdown_panics))
    }

    /// The most recently registered `at_close` finalizer not yet run.
    pub(crate) fn pop_finalizer(&self) -> Option<(&'static Location<'static>, Finalizer)> {
        lock(&self.finalizers).pop()
    }

    pub(crate) fn poll_close_pass(&self, cx: &mut TaskCx<'_>) -> Poll<()> {
        if self.close_pass.load(Ordering::SeqCst) == 0 {
            return Poll::Ready(());
        }
        *lock(&self.closer) = Some(cx.waker().clone());
        if self.close_pass.load(Ordering::SeqCst) == 0 {
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// Where each pending task was spawned, and how reports name it.
    pub(crate) fn pending_tasks(&self) -> Vec<(&'static Location<'static>, String)> {
        let reg = lock(&self.tasks);
        let pending = reg.slots.iter().flatten().filter(|t| !t.is_done());
        pending.map(|t| (t.location, t.describe())).collect()
    }

    pub(crate) fn add_finalizer(&self, at: &'static Location<'static>, f: Finalizer) {
        lock(&self.finalizers).push((at, f));
    }

    pub(crate) fn blocking_started(&self, at: &'static Location<'static>) {
        let mut jobs = lock(&self.blocking);
        jobs.count += 1;
        match jobs.by_location.iter_mut().find(|(place, _)| *place == at) {
            Some((_, n)) => *n += 1,
            None => jobs.by_location.push((at, 1)),
        }
    }

    pub(crate) fn blocking_finished(&self, at: &'static Location<'static>) {
        let mut jobs = lock(&self.blocking);
        jobs.count -= 1;
        if let Some(i) = jobs.by_location.iter().position(|(place, _)| *place == at) {
            jobs.by_location[i].1 -= 1;
            if jobs.by_location[i].1 == 0 {
                jobs.by_location.swap_remove(i);
            }
        }
        if jobs.count == 0 {
            self.blocking_done.notify_all();
        }
    }

    /// The `spawn_blocking` jobs in flight, by spawn location.
    pub(crate) fn blocking_jobs(&self) -> Vec<(&'static Location<'static>, usize)> {
        lock(&self.blocking).by_location.clone()
    }

    /// Waits until no `spawn_blocking` job runs, at most `timeout`; how many are left.
    pub(crate) fn wait_blocking(&self, timeout: Duration) -> usize {
        let jobs = lock(&self.blocking);
        let (jobs, _) = self
            .blocking_done
            .wait_timeout_while(jobs, timeout, |jobs| jobs.count > 0)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        jobs.count
    }
}

impl Shared {
    pub(crate) fn describe_pending(&self) -> Vec<String> {
        self.pending_tasks().into_iter().map(|(_, d)| d).collect()
    }
}
