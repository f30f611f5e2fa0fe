//! The pending `runner::spawn` tasks of one Runner, and `close()`'s cancellation pass over
//! them: the part of the close that races with tasks ending on other threads, kept apart
//! from the rest of `Shared` so that a loom model can run it without a runtime.
//!
//! The pass takes the whole registry at once: each record then lives only as long as its
//! task and is freed as the task ends (while in cache), instead of being swept at the end;
//! tasks spawned from then on fill a fresh registry. Each task of the pass counts itself
//! down as it ends (one atomic decrement, no lock per task), and the last one wakes `close()`.
//!
//! A task can end at any moment around the pass. `TaskState::join_close_pass` and
//! `TaskState::finish` are two RMWs on the task's flags, so exactly one of them sees the
//! other: a task that joined before it finished counts down; one that finished first is
//! not counted and leaves the registry the ordinary way, which may now be the fresh
//! registry (its slot index then means nothing there).

use std::panic::Location;
use std::sync::Arc;
use std::task::{Context as TaskCx, Poll, Waker};

use crate::sync::atomic::{AtomicUsize, Ordering};
use crate::sync::Mutex;
use crate::task_state::{Ended, TaskState, NO_SLOT};
use crate::util::{lock, try_lock};

/// A task of the close pass that panicked: where it was spawned, its name, the panic.
pub(crate) type ShutdownPanic = (&'static Location<'static>, String, String);

/// Far above any task count: the countdown cannot reach zero while the pass is being taken,
/// and the real count is set with one subtraction at the end instead of an add per task.
const TAKING: usize = usize::MAX / 2;

/// A slab of the pending tasks' records: O(1) in and out.
///
/// It holds plain pointers, not `Arc`s: a spawn and its end would otherwise pay an atomic
/// increment and decrement each. A record is alive while it is here: the task's wrapper
/// holds an `Arc` to it, and takes it out of here (under the lock, `deregister`) before
/// letting that go; the close pass takes `Arc`s of its own under the lock before it lets
/// tasks go on ending (`begin_pass`).
#[derive(Default)]
struct Slab {
    slots: Vec<*const TaskState>,
    free: Vec<usize>,
}

// SAFETY: the pointers are only followed under the registry's lock, while their records are
// alive (see `Slab`); `TaskState` is `Send + Sync`.
unsafe impl Send for Slab {}

pub(crate) struct Registry {
    tasks: Mutex<Slab>,
    /// Tasks of the close pass not finished yet (plus `TAKING` while the pass is taken).
    pass_left: AtomicUsize,
    closer: Mutex<Option<Waker>>,
    panics: Mutex<Vec<ShutdownPanic>>,
}

impl Registry {
    pub(crate) fn new() -> Registry {
        Registry {
            tasks: Mutex::new(Slab::default()),
            pass_left: AtomicUsize::new(0),
            closer: Mutex::new(None),
            panics: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn register(&self, task: &Arc<TaskState>) {
        let mut reg = lock(&self.tasks);
        let slot = match reg.free.pop() {
            Some(slot) => slot,
            None => {
                reg.slots.push(std::ptr::null());
                reg.slots.len() - 1
            }
        };
        reg.slots[slot] = Arc::as_ptr(task);
        task.slot.store(slot, Ordering::Release);
    }

    /// What happens when a task of this registry ends (`TaskState::finish`).
    pub(crate) fn ended(&self, task: &TaskState, ended: Ended) {
        match ended {
            Ended::Normal => self.deregister(task),
            Ended::ClosePass { panicked } => self.pass_task_done(task, panicked),
        }
    }

    fn deregister(&self, task: &TaskState) {
        let slot = task.slot.load(Ordering::Acquire);
        let mut reg = lock(&self.tasks);
        // The slot is only the task's own if the record there is this one: the pass may
        // have taken the registry the task was in, and another task may hold that index
        // in the fresh one (or the fresh one may be shorter).
        let ours = reg.slots.get(slot).is_some_and(|t| std::ptr::eq(*t, task));
        if slot != NO_SLOT && ours {
            reg.slots[slot] = std::ptr::null();
            reg.free.push(slot);
        }
    }

    fn pass_task_done(&self, task: &TaskState, panicked: bool) {
        if let Some(message) = panicked.then(|| task.panicked()).flatten() {
            lock(&self.panics).push((task.location, task.describe(), message));
        }
        if self.pass_left.fetch_sub(1, Ordering::AcqRel) == 1 {
            if let Some(waker) = lock(&self.closer).take() {
                waker.wake();
            }
        }
    }

    /// Takes every task pending now into the close pass and asks each to cancel. Tasks
    /// spawned later are not part of it, and neither are `spawn_local` tasks when
    /// `with_local` is false (nothing can run them: they live on another thread). Returns
    /// the tasks that were observing `cancelled()` (the ones that get to clean up, so the
    /// ones a slow close waits for), for its reports.
    pub(crate) fn begin_pass(&self, with_local: bool) -> Vec<Arc<TaskState>> {
        self.pass_left.store(TAKING, Ordering::Release);
        // Under the lock no task of the slab can leave it (its `deregister` waits), so each
        // record is alive here: take an `Arc` of it, which keeps it alive while the pass asks
        // it to cancel and the task, no longer held back, may end at once.
        let pass: Vec<Arc<TaskState>> = {
            let mut reg = lock(&self.tasks);
            let slab = std::mem::take(&mut *reg);
            slab.slots
                .into_iter()
                .filter(|task| !task.is_null())
                .map(|task| {
                    // SAFETY: alive (above); one more strong reference, given back by the
                    // `Arc` made from it.
                    unsafe {
                        Arc::increment_strong_count(task);
                        Arc::from_raw(task)
                    }
                })
                .collect()
        };
        let mut joined = 0;
        let mut observing = Vec::new();
        for task in pass {
            if !with_local && task.is_local() {
                continue;
            }
            if task.join_close_pass() {
                joined += 1;
                // Looked at before the request: once asked, a task polled on another thread
                // may resolve its `cancelled()` and drop it at once.
                let observed = task.is_observed();
                task.request_cancel(None);
                if observed {
                    observing.push(task);
                }
            }
        }
        self.pass_left.fetch_sub(TAKING - joined, Ordering::AcqRel);
        observing
    }

    /// Ready once every task of the pass has ended.
    pub(crate) fn poll_pass(&self, cx: &mut TaskCx<'_>) -> Poll<()> {
        if self.pass_left.load(Ordering::Acquire) == 0 {
            return Poll::Ready(());
        }
        *lock(&self.closer) = Some(cx.waker().clone());
        // The last task's decrement either precedes the lock above (seen here) or follows
        // it (and that task takes the waker under the same lock).
        if self.pass_left.load(Ordering::Acquire) == 0 {
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// How many tasks of the close pass have not finished.
    pub(crate) fn pass_left(&self) -> usize {
        self.pass_left.load(Ordering::Acquire)
    }

    /// The panics of close-pass tasks so far, each handed out once.
    pub(crate) fn take_panics(&self) -> Vec<ShutdownPanic> {
        std::mem::take(&mut *lock(&self.panics))
    }

    /// Where each pending registered task was spawned, and how reports name it.
    pub(crate) fn pending(&self) -> Vec<(&'static Location<'static>, String)> {
        let reg = lock(&self.tasks);
        // SAFETY: under the lock, the records of the slab are alive (see `Slab`).
        let records = reg.slots.iter().filter_map(|t| unsafe { t.as_ref() });
        let pending = records.filter(|t| !t.is_done());
        pending.map(|t| (t.location, t.describe())).collect()
    }

    /// [`pending`](Self::pending), or `None` when the lock is held (a forced exit's final
    /// words must not wait on a thread that may be stuck).
    pub(crate) fn try_pending(&self) -> Option<Vec<(&'static Location<'static>, String)>> {
        let reg = try_lock(&self.tasks)?;
        // SAFETY: under the lock, the records of the slab are alive (see `Slab`).
        let records = reg.slots.iter().filter_map(|t| unsafe { t.as_ref() });
        let pending = records.filter(|t| !t.is_done());
        Some(pending.map(|t| (t.location, t.describe())).collect())
    }

    /// How many of the Runner's tasks are tokio tasks of its runtime now: the pending
    /// registered ones (`spawn_local` ones only if `local_too`: a `LocalSet`'s tasks are not
    /// the runtime's) and those of a close pass under way. `None` if the lock is held and
    /// `wait` is false.
    pub(crate) fn runtime_tasks(&self, local_too: bool, wait: bool) -> Option<usize> {
        let reg = if wait {
            lock(&self.tasks)
        } else {
            try_lock(&self.tasks)?
        };
        // SAFETY: under the lock, the records of the slab are alive (see `Slab`).
        let records = reg.slots.iter().filter_map(|t| unsafe { t.as_ref() });
        let registered = records
            .filter(|t| !t.is_done() && (local_too || !t.is_local()))
            .count();
        drop(reg);
        let pass = self.pass_left.load(Ordering::Acquire);
        Some(registered + if pass >= TAKING / 2 { 0 } else { pass })
    }
}

/// Model checks of the close pass against tasks ending on other threads. Run with
/// `RUSTFLAGS="--cfg runner_loom" cargo test -p tokio-runner-core --release --lib loom`.
#[cfg(all(test, runner_loom))]
mod loom_models {
    use std::panic::Location;
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};

    use loom::sync::atomic::AtomicUsize;
    use loom::thread;

    use super::Registry;
    use crate::sync::atomic::Ordering::SeqCst;
    use crate::task_state::{Origin, TaskState};

    #[derive(Default)]
    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, SeqCst);
        }
    }

    /// What the task's wrapper does when the task ends (`guarded::finish`).
    fn end(registry: &Registry, task: &TaskState) {
        if let Some(ended) = task.finish() {
            registry.ended(task, ended);
        }
    }

    /// What `close()`'s step 1 does: take the pass, then wait until its tasks have ended.
    fn close_pass(registry: &Registry) {
        drop(registry.begin_pass(true));
        let wakes = Arc::new(Counter::default());
        let waker = Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        loop {
            let seen = wakes.0.load(SeqCst);
            if registry.poll_pass(&mut cx) == Poll::Ready(()) {
                return;
            }
            while wakes.0.load(SeqCst) == seen {
                thread::yield_now();
            }
        }
    }

    /// Bug 3 of issue 17: a task ends the ordinary way just after the pass took the
    /// registry. The old code indexed the fresh, empty registry with the task's old slot
    /// ("index out of bounds", a panic on a tokio worker inside `close()`).
    #[test]
    fn loom_task_ending_as_the_pass_is_taken_leaves_the_right_registry() {
        loom::model(|| {
            let registry = Arc::new(Registry::new());
            let tasks: Vec<_> = (0..2)
                .map(|_| Arc::new(TaskState::new(Location::caller(), Origin::Spawned)))
                .collect();
            for task in &tasks {
                registry.register(task);
            }
            // The second task ends on its own, on another thread, at any moment.
            let ender = {
                let (registry, task) = (registry.clone(), tasks[1].clone());
                thread::spawn(move || end(&registry, &task))
            };
            // The first ends once its cancel arrives (here: right away, on a third thread).
            let cancelled = {
                let (registry, task) = (registry.clone(), tasks[0].clone());
                thread::spawn(move || {
                    while !task.was_cancelled() && !task.is_done() {
                        thread::yield_now();
                    }
                    end(&registry, &task);
                })
            };
            close_pass(&registry);
            ender.join().unwrap();
            cancelled.join().unwrap();

            assert_eq!(registry.pass_left(), 0);
            assert!(registry.pending().is_empty());
            assert!(tasks.iter().all(|t| t.is_done()));
        });
    }

    /// The countdown against the waiter: the last task of the pass to end wakes `close()`,
    /// whether it ends before, during or after the waiter registers (never a lost wake-up,
    /// never a wait that returns early).
    #[test]
    fn loom_last_task_of_the_pass_wakes_the_closer() {
        loom::model(|| {
            let registry = Arc::new(Registry::new());
            let task = Arc::new(TaskState::new(Location::caller(), Origin::Spawned));
            registry.register(&task);
            let ender = {
                let (registry, task) = (registry.clone(), task.clone());
                thread::spawn(move || {
                    while !task.was_cancelled() {
                        thread::yield_now();
                    }
                    end(&registry, &task);
                })
            };
            close_pass(&registry);
            assert!(
                task.is_done(),
                "close() stopped waiting before its task ended"
            );
            ender.join().unwrap();
            assert_eq!(registry.pass_left(), 0);
        });
    }
}
