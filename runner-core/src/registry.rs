//! The pending `runner::spawn` tasks of one Runner, `close()`'s cancellation pass over them,
//! and how long the Runner's state lives for its tasks: the part of the Runner that races
//! with tasks starting and ending on other threads, kept apart from the rest of `Shared` so
//! that a loom model can run it without a runtime.
//!
//! # Sharded, like tokio's `OwnedTasks` (issue 31)
//!
//! The tasks are kept in shards, each a slab of record pointers behind its own lock, on its
//! own cache line (`Shard` is aligned to 128 bytes: two x86 lines, as tokio and crossbeam
//! pad against the adjacent-line prefetcher). A thread spawns into its *home* shard: one per
//! thread, given round-robin the first time the thread spawns into this registry and kept in
//! a thread-local. A task leaves the shard it was put in (its slot says which), usually from
//! the thread that spawned it (tokio runs a spawned task on the spawner's worker unless it is
//! stolen). So on a multi-thread loop, a spawn and an end take a lock that only the workers
//! spawning into and ending tasks of that shard take: one worker, mostly, where a single
//! registry lock made every worker's spawns and ends contend. tokio picks a task's shard by
//! its id instead (a process-wide counter), which spreads every worker's tasks over every
//! shard, so two workers meet on one by chance; a home shard per thread keeps a worker's
//! spawns to itself. A loop with W workers gets `2 × W` shards rounded up to a power of two
//! (the main thread and blocking threads spawn too); a current-thread or local loop gets one.
//!
//! Nothing of the spawn or the end counts in one place for all workers: `close()`'s pass and
//! the reports walk the shards (O(shards) locks), and the count of pending tasks is a sum
//! over the shards (`runtime_tasks`).
//!
//! # The close pass
//!
//! The pass walks the shards one by one and takes each one's whole slab at once: each record
//! then lives only as long as its task and is freed as the task ends (while in cache),
//! instead of being swept at the end; tasks spawned from then on fill fresh slabs (in shards
//! already walked, and they are not part of the pass; in shards not walked yet, they are:
//! both are tasks spawned during step 1, which DESIGN lets go either way). A task pending
//! when `close()` began is in some shard until it ends, so the walk finds it there. Each task
//! of the pass counts itself down as it ends (one atomic decrement, no lock per task), and
//! the last one wakes `close()`.
//!
//! A task can end at any moment around the pass. `TaskState::join_close_pass` and
//! `TaskState::finish` are two RMWs on the task's flags, so exactly one of them sees the
//! other: a task that joined before it finished counts down; one that finished first is
//! not counted and leaves its shard the ordinary way, which may now hold a fresh slab (its
//! slot index then means nothing there, and the slot is checked to hold this very record).
//!
//! # How long the Runner's state lives for its tasks
//!
//! A task's wrapper reaches the Runner's state (`Shared`) until it has left this registry:
//! to leave it, and before that for reports and for `runner::spawn` from the task. After a
//! `shutdown_background()` (a `close()` inside a foreign runtime's poll, or blocking work
//! abandoned at the timeout), tokio's threads may still poll and drop tasks after `close()`
//! returned, so the state must outlive every such wrapper; and after a normal close, where
//! the runtime has dropped every task, it must not outlive the Runner (it holds the runtime's
//! handle, and so the drivers' fds). Each wrapper held an `Arc<Shared>` for that: a count
//! every worker touched at each spawn and end. Now a wrapper holds an uncounted pointer, and
//! its reference is counted where it is registered (Linux's `percpu_ref`, with the shard locks
//! in place of RCU):
//! - While the Runner is alive (until the end of its `close()`), a task's reference is its
//!   slot in a shard: nothing more to count at spawn or end, and the Runner's own `Arc`
//!   keeps the state alive. Tasks that the close pass took out of their shards count in
//!   `outstanding` instead: the pass holds one reference for all the tasks it waits for
//!   (given back by the last of them, after it has woken `close()`), and one for each task
//!   taken that it does not wait for (given back as that task leaves).
//! - When the Runner lets go (`runner_gone`, the end of its `close()`), it takes one strong
//!   reference of the `Arc` for the tasks, marks every shard gone under its lock, and adds
//!   the tasks still in them to `outstanding`; from then on a task leaving a gone shard, or
//!   registering in one, counts there. `outstanding` carries `STAKE` while the Runner is
//!   alive, so it cannot reach zero before; whoever brings it to zero afterwards gives the
//!   strong reference back (it is the last one out), and a registration that finds zero
//!   (from code holding a strong reference of its own, such as a blocking job) takes it
//!   again.
//! - So after a normal close no task is left, `outstanding` is zero as the Runner lets go,
//!   and the state is freed with the Runner's `Arc`: nothing of the runtime outlives it.
//!
//! Every access a task makes to the registry comes before the step that gives its reference
//! back (the unlock of its shard, or a decrement of `outstanding`), and the step that frees
//! the state comes after it in happens-before order (the same lock, or the same atomic's
//! release sequence); the loom models below check that order (`touch`). A shard's lock is
//! given back with a plain store, after which the task touches nothing of it (a futex
//! `Mutex` would end a contended unlock with a wake on the lock's address, which the next
//! owner may have freed by then: see `Shard`).

use std::cell::Cell;
use std::panic::Location;
use std::sync::Arc;
use std::task::{Context as TaskCx, Poll, Waker};

#[cfg(not(runner_loom))]
use crate::sync::atomic::AtomicBool;
use crate::sync::atomic::{AtomicUsize, Ordering};
use crate::sync::Mutex;
use crate::task_state::{Ended, TaskState, NO_SLOT};
use crate::util::lock;

/// A task of the close pass that panicked: where it was spawned, its name, the panic.
pub(crate) type ShutdownPanic = (&'static Location<'static>, String, String);

/// Far above any task count: the countdown cannot reach zero while the pass is being taken,
/// and the real count is set with one subtraction at the end instead of an add per task.
const TAKING: usize = usize::MAX / 2;

/// The Runner's share of `outstanding` while it is alive: far above any task count, so the
/// count cannot reach zero before the Runner lets go.
const STAKE: usize = usize::MAX / 4;

/// A task's slot is `index << SHARD_BITS | shard`.
const SHARD_BITS: u32 = 16;
/// The most shards a registry has.
pub(crate) const MAX_SHARDS: usize = 1 << SHARD_BITS;

std::thread_local! {
    /// This thread's home shard in the registry it last spawned into: (that registry's
    /// address, the shard). `const` and without a destructor: read with no lazy-init check.
    static HOME: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

/// A slab of pending tasks' records: O(1) in and out.
///
/// It holds plain pointers, not `Arc`s: a spawn and its end would otherwise pay an atomic
/// increment and decrement each. A record is alive while it is here: the task's wrapper
/// holds an `Arc` to it, and takes it out of here (under the shard's lock, `deregister`)
/// before letting that go; the close pass takes `Arc`s of its own under the lock before it
/// lets tasks go on ending (`begin_pass`).
#[derive(Default)]
struct Slab {
    /// A record's address (even), or a free slot: `next << 1 | 1`, where `next` is the next
    /// free slot's index + 1 (0: none).
    slots: Vec<usize>,
    /// The first free slot's index + 1 (0: none).
    free: usize,
    /// Occupied slots.
    len: usize,
    /// Occupied slots of `spawn_local` tasks (see `runtime_tasks`).
    local: usize,
}

impl Slab {
    fn insert(&mut self, task: &TaskState) -> usize {
        self.len += 1;
        self.local += usize::from(task.is_local());
        let task = task as *const TaskState as usize;
        debug_assert!(task & 1 == 0);
        match self.free.checked_sub(1) {
            Some(index) => {
                self.free = self.slots[index] >> 1;
                self.slots[index] = task;
                index
            }
            None => {
                self.slots.push(task);
                self.slots.len() - 1
            }
        }
    }

    /// Frees slot `index` if it holds `task`; `false` if it does not (see the module docs).
    fn remove(&mut self, index: usize, task: &TaskState) -> bool {
        match self.slots.get_mut(index) {
            Some(slot) if *slot == task as *const TaskState as usize => {
                *slot = self.free << 1 | 1;
                self.free = index + 1;
                self.len -= 1;
                self.local -= usize::from(task.is_local());
                true
            }
            _ => false,
        }
    }

    fn records(&self) -> impl Iterator<Item = *const TaskState> + '_ {
        let occupied = self.slots.iter().filter(|slot| *slot & 1 == 0);
        occupied.map(|slot| *slot as *const TaskState)
    }
}

// SAFETY: the pointers are only followed under their shard's lock, while their records are
// alive (see `Slab`); `TaskState` is `Send + Sync`.
unsafe impl Send for Slab {}

#[derive(Default)]
struct ShardState {
    slab: Slab,
    /// The Runner has let go (`runner_gone` counted this shard's tasks in `outstanding`).
    gone: bool,
}

/// What the caller of `begin_pass` does with the tasks' strong reference to the Runner's
/// state (see "How long the Runner's state lives" in the module docs).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum StrongRef {
    Keep,
    /// Take it again: the last task out gave it back as the pass was taken.
    Take,
    /// Give it back: the pass's tasks all ended, and they were the last.
    GiveBack,
}

/// One shard, alone on its cache lines, behind a spin lock of its own.
///
/// A spin lock rather than a `Mutex`: it is held for a few dozen instructions (a slot in or
/// out), contended only when a task ends on another worker than its spawner's at the same
/// moment as one of them spawns, and its release is a plain store. std's futex `Mutex`
/// releases with a swap (one more atomic read-modify-write on each spawn and each end, and
/// its poison checks), and ends a contended release with a `futex` wake on the lock's
/// address, possibly after the next owner freed it (see "How long the Runner's state lives"
/// in the module docs): here, once a task's release store is done, it touches nothing of the
/// shard again. A waiter that finds it held spins briefly, then yields its thread to the
/// holder (which never blocks while holding it).
///
/// Under the loom models the shard is a loom `Mutex` instead: a spin-wait makes every turn
/// of its loop a branch of the model's paths, which then outgrow what loom can explore. The
/// models check what is done under the lock; the lock itself is the textbook one (an
/// Acquire compare-exchange to take it, a Release store to give it back).
#[repr(align(128))]
struct Shard {
    #[cfg(not(runner_loom))]
    locked: AtomicBool,
    #[cfg(not(runner_loom))]
    state: std::cell::UnsafeCell<ShardState>,
    #[cfg(runner_loom)]
    state: Mutex<ShardState>,
}

// SAFETY: `state` is only reached under `locked` (see `with`); its pointers are `Send`.
#[cfg(not(runner_loom))]
unsafe impl Sync for Shard {}

impl Shard {
    fn new() -> Shard {
        Shard {
            #[cfg(not(runner_loom))]
            locked: AtomicBool::new(false),
            state: Default::default(),
        }
    }

    /// Runs `f` on the shard's state, under its lock. `f` must not lock a shard (it does slab
    /// bookkeeping, and atomics on records that are alive).
    #[cfg(runner_loom)]
    fn with<R>(&self, f: impl FnOnce(&mut ShardState) -> R) -> R {
        f(&mut lock(&self.state))
    }

    /// Runs `f` on the shard's state, under its lock. `f` must not lock a shard (it does slab
    /// bookkeeping, and atomics on records that are alive).
    #[cfg(not(runner_loom))]
    #[inline]
    fn with<R>(&self, f: impl FnOnce(&mut ShardState) -> R) -> R {
        if !self.try_lock() {
            self.lock_contended();
        }
        // SAFETY: locked just above.
        unsafe { self.locked_run(f) }
    }

    /// `with`, unless the lock is held: then `None` at once.
    #[cfg(runner_loom)]
    fn try_with<R>(&self, f: impl FnOnce(&mut ShardState) -> R) -> Option<R> {
        match self.state.try_lock() {
            Ok(mut state) => Some(f(&mut state)),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(f(&mut poisoned.into_inner())),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// `with`, unless the lock is held: then `None` at once.
    #[cfg(not(runner_loom))]
    fn try_with<R>(&self, f: impl FnOnce(&mut ShardState) -> R) -> Option<R> {
        // SAFETY: locked when `try_lock` says so.
        self.try_lock().then(|| unsafe { self.locked_run(f) })
    }

    /// `with` if `wait`, else `try_with`.
    fn with_or_try<R>(&self, wait: bool, f: impl FnOnce(&mut ShardState) -> R) -> Option<R> {
        if wait {
            Some(self.with(f))
        } else {
            self.try_with(f)
        }
    }

    #[cfg(not(runner_loom))]
    #[inline]
    fn try_lock(&self) -> bool {
        self.locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Runs `f` on the state, then releases the lock (also should `f` unwind: it does not,
    /// but a stuck shard would hang every spawn).
    ///
    /// # Safety
    /// The caller holds the lock.
    #[cfg(not(runner_loom))]
    #[inline]
    unsafe fn locked_run<R>(&self, f: impl FnOnce(&mut ShardState) -> R) -> R {
        struct Unlock<'a>(&'a AtomicBool);
        impl Drop for Unlock<'_> {
            #[inline]
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        let _unlock = Unlock(&self.locked);
        // SAFETY: under the lock, which excludes every other access to the state.
        f(unsafe { &mut *self.state.get() })
    }

    #[cfg(not(runner_loom))]
    #[cold]
    fn lock_contended(&self) {
        let mut spins = 0u32;
        loop {
            while self.locked.load(Ordering::Relaxed) {
                if spins < 64 {
                    spins += 1;
                    std::hint::spin_loop();
                } else {
                    // The holder may have been preempted: let it run.
                    std::thread::yield_now();
                }
            }
            if self.try_lock() {
                return;
            }
        }
    }
}

pub(crate) struct Registry {
    shards: Box<[Shard]>,
    /// The home shard the next thread gets.
    next_home: AtomicUsize,
    /// Tasks of the close pass not finished yet (plus `TAKING` while the pass is taken).
    pass_left: AtomicUsize,
    /// The tasks' references to the Runner's state not held as a slot of a live shard, plus
    /// `STAKE` until the Runner lets go (see the module docs).
    outstanding: AtomicUsize,
    closer: Mutex<Option<Waker>>,
    panics: Mutex<Vec<ShutdownPanic>>,
    /// For the loom models: `false` once the state is freed (see `touch`).
    #[cfg(runner_loom)]
    alive: crate::sync::UnsafeCell<bool>,
}

// SAFETY: `alive` is the models' probe: loom itself checks every access to it.
#[cfg(runner_loom)]
unsafe impl Sync for Registry {}

impl Registry {
    /// A registry of `shards` shards (a power of two, at most `MAX_SHARDS`).
    pub(crate) fn new(shards: usize) -> Registry {
        assert!(shards.is_power_of_two() && shards <= MAX_SHARDS);
        Registry {
            shards: (0..shards).map(|_| Shard::new()).collect(),
            next_home: AtomicUsize::new(0),
            pass_left: AtomicUsize::new(0),
            outstanding: AtomicUsize::new(STAKE),
            closer: Mutex::new(None),
            panics: Mutex::new(Vec::new()),
            #[cfg(runner_loom)]
            alive: crate::sync::UnsafeCell::new(true),
        }
    }

    /// How many shards a Runner whose loop has `workers` worker threads gets: one per thread
    /// that may spawn, with room for the main thread and blocking threads (see the module
    /// docs); one for a loop of one thread.
    pub(crate) fn shards_for(workers: Option<usize>) -> usize {
        match workers {
            None => 1,
            Some(workers) => (workers.max(1) * 2).next_power_of_two().min(MAX_SHARDS),
        }
    }

    /// This thread's home shard here.
    #[inline]
    fn home(&self) -> usize {
        if self.shards.len() == 1 {
            return 0;
        }
        let me = self as *const Registry as usize;
        HOME.with(|home| match home.get() {
            (registry, shard) if registry == me => shard,
            _ => {
                // Once per thread and Runner (per switch, for a thread that spawns into two
                // Runners in turn): a count on a line the spawns themselves never touch.
                let shard =
                    self.next_home.fetch_add(1, Ordering::Relaxed) & (self.shards.len() - 1);
                home.set((me, shard));
                shard
            }
        })
    }

    /// Registers a new task in this thread's home shard. `true`: the caller must take the
    /// tasks' strong reference to the Runner's state again (see `runner_gone`); only ever
    /// after the Runner let go, and then the caller holds a strong reference of its own.
    #[must_use]
    pub(crate) fn register(&self, task: &Arc<TaskState>) -> bool {
        self.register_in(self.home(), task)
    }

    /// `register` in shard `shard`.
    #[must_use]
    pub(crate) fn register_in(&self, shard: usize, task: &Arc<TaskState>) -> bool {
        self.shards[shard].with(|state| {
            self.touch();
            let index = state.slab.insert(task);
            // Read only by the task's own wrapper, which the spawn hands over after this.
            task.slot
                .store(index << SHARD_BITS | shard, Ordering::Relaxed);
            // A gone shard's tasks count in `outstanding` (see the module docs).
            state.gone && self.outstanding.fetch_add(1, Ordering::AcqRel) == 0
        })
    }

    /// What happens when a task of this registry ends (`TaskState::finish`). After this
    /// returns, the task holds no reference to the Runner's state: it must not touch it (or
    /// this registry) again. `true`: the caller gives back the tasks' strong reference to the
    /// Runner's state (the task was the last one out after the Runner let go).
    #[must_use]
    pub(crate) fn ended(&self, task: &TaskState, ended: Ended) -> bool {
        match ended {
            Ended::Normal => self.deregister(task),
            Ended::ClosePass { panicked } => self.pass_task_done(task, panicked),
        }
    }

    fn deregister(&self, task: &TaskState) -> bool {
        let slot = task.slot.load(Ordering::Relaxed);
        if slot == NO_SLOT {
            return false;
        }
        let (index, shard) = (slot >> SHARD_BITS, slot & (MAX_SHARDS - 1));
        let counted_by_shard = self.shards[shard].with(|state| {
            self.touch();
            // The slot is only the task's own if the record there is this one: the pass may
            // have taken the slab the task was in, and another task may hold that index in
            // the fresh one (or the fresh one may be shorter).
            let removed = state.slab.remove(index, task);
            removed && !state.gone
        });
        // Otherwise the reference counts in `outstanding`: the pass took the task without
        // waiting for it, or the Runner has let go.
        !counted_by_shard && self.release()
    }

    /// Gives back one reference counted in `outstanding`; `true` if it was the last.
    fn release(&self) -> bool {
        self.touch();
        self.outstanding.fetch_sub(1, Ordering::AcqRel) == 1
    }

    fn pass_task_done(&self, task: &TaskState, panicked: bool) -> bool {
        if let Some(message) = panicked.then(|| task.panicked()).flatten() {
            lock(&self.panics).push((task.location, task.describe(), message));
        }
        self.touch();
        if self.pass_left.fetch_sub(1, Ordering::AcqRel) != 1 {
            return false;
        }
        self.touch();
        if let Some(waker) = lock(&self.closer).take() {
            waker.wake();
        }
        // The pass's own reference, now that none of its tasks is left.
        self.release()
    }

    /// Takes every task pending now into the close pass and asks each to cancel. Tasks
    /// spawned later are not part of it, and neither are `spawn_local` tasks when
    /// `with_local` is false (nothing can run them: they live on another thread). Returns
    /// the tasks that were observing `cancelled()` (the ones that get to clean up, so the
    /// ones a slow close waits for), for its reports, and what the caller does with the
    /// tasks' strong reference to the Runner's state (see `StrongRef`). Called once per
    /// close, by a caller holding a strong reference: `close()`, while the Runner is alive,
    /// or the home thread of a local loop that a `close()` elsewhere handed its close to,
    /// after the Runner let go.
    pub(crate) fn begin_pass(&self, with_local: bool) -> (Vec<Arc<TaskState>>, StrongRef) {
        self.pass_left.store(TAKING, Ordering::Release);
        // Tasks the pass waits for, and of those the ones taken from a gone shard (their
        // references count in `outstanding` already); tasks taken from a live shard that the
        // pass does not wait for.
        let (mut joined, mut joined_gone, mut loose_live) = (0, 0, 0);
        let mut observing = Vec::new();
        for shard in self.shards.iter() {
            // Under the lock no task of the slab can leave it (its `deregister` waits), so
            // each record is alive here: take an `Arc` of it, which keeps it alive while the
            // pass asks it to cancel and the task, no longer held back, may end at once.
            let (slab, gone) = shard.with(|state| {
                let slab = std::mem::take(&mut state.slab);
                for task in slab.records() {
                    // SAFETY: alive (above); one more strong reference, given back by the
                    // `Arc` made from it below.
                    unsafe { Arc::increment_strong_count(task) };
                }
                (slab, state.gone)
            });
            // SAFETY: the strong references taken above.
            let taken = slab.records().map(|task| unsafe { Arc::from_raw(task) });
            for task in taken {
                if (!with_local && task.is_local()) || !task.join_close_pass() {
                    // Not waited for: it leaves the ordinary way, from no shard.
                    loose_live += usize::from(!gone);
                    continue;
                }
                joined += 1;
                joined_gone += usize::from(gone);
                // Looked at before the request: once asked, a task polled on another thread
                // may resolve its `cancelled()` and drop it at once.
                let observed = task.is_observed();
                task.request_cancel(None);
                if observed {
                    observing.push(task);
                }
            }
        }
        // The references of the tasks taken: one for those the pass waits for (given back
        // by the last to end), one each for those it does not wait for (given back as each
        // leaves). Counted before the countdown can reach zero. While the Runner is alive,
        // `STAKE` keeps the count above zero meanwhile (a loose task leaving earlier took its
        // one from it). After it let go, the tasks of gone shards counted already, and the
        // last of them may have left (and given the strong reference back) as the pass was
        // taken: the pass then takes it again, as a spawn does, since its caller holds one.
        let mut strong = StrongRef::Keep;
        if self.outstanding.fetch_add(1 + loose_live, Ordering::AcqRel) == 0 {
            strong = StrongRef::Take;
        }
        // Now covered by the pass's own (which stays until the last of them has ended).
        if joined_gone > 0 {
            self.outstanding.fetch_sub(joined_gone, Ordering::AcqRel);
        }
        if self.pass_left.fetch_sub(TAKING - joined, Ordering::AcqRel) == TAKING - joined {
            // Every task of the pass has ended already: the pass's reference goes back.
            self.touch();
            if self.outstanding.fetch_sub(1, Ordering::AcqRel) == 1 {
                strong = match strong {
                    StrongRef::Take => StrongRef::Keep,
                    _ => StrongRef::GiveBack,
                };
            }
        }
        (observing, strong)
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
        self.pending_within(true).unwrap_or_default()
    }

    /// [`pending`](Self::pending), or `None` when a shard's lock is held (a forced exit's
    /// final words must not wait on a thread that may be stuck).
    pub(crate) fn try_pending(&self) -> Option<Vec<(&'static Location<'static>, String)>> {
        self.pending_within(false)
    }

    /// [`pending`](Self::pending), from the records of the registered tasks taken as `Arc`s
    /// under each shard's lock (and looked at outside it: `describe` allocates). With `wait`
    /// false, `None` if a shard's lock is held.
    fn pending_within(&self, wait: bool) -> Option<Vec<(&'static Location<'static>, String)>> {
        let mut records = Vec::new();
        for shard in self.shards.iter() {
            shard.with_or_try(wait, |state| {
                records.extend(state.slab.records().map(|task| {
                    // SAFETY: under the lock, the records of the slab are alive (see
                    // `Slab`); one more strong reference, given back by the `Arc`.
                    unsafe {
                        Arc::increment_strong_count(task);
                        Arc::from_raw(task)
                    }
                }));
            })?;
        }
        let running = records.iter().filter(|t| !t.is_done());
        Some(running.map(|t| (t.location, t.describe())).collect())
    }

    /// The Runner lets go of its state (the end of its `close()`): from now on the tasks'
    /// references count in `outstanding` (see the module docs). The caller has taken one
    /// strong reference for the tasks; `true`: no task holds a reference, give it back now.
    /// Called once.
    #[must_use]
    pub(crate) fn runner_gone(&self) -> bool {
        let mut left = 0;
        for shard in self.shards.iter() {
            left += shard.with(|state| {
                state.gone = true;
                state.slab.len
            });
        }
        // A task leaving a gone shard before this took its one from `STAKE`.
        self.outstanding.fetch_add(left, Ordering::AcqRel);
        self.outstanding.fetch_sub(STAKE, Ordering::AcqRel) == STAKE
    }

    /// A task's access to the registry (and so to the Runner's state). A no-op, except in
    /// the loom models, where it reads a cell that freeing the state writes: loom reports a
    /// race if an access is not ordered before the free.
    #[inline(always)]
    fn touch(&self) {
        #[cfg(runner_loom)]
        self.alive.with(|alive| {
            // SAFETY: loom checks the accesses to this cell.
            assert!(
                unsafe { *alive },
                "a task touched the Runner's state after it was freed"
            )
        });
    }

    /// For the loom models: the state is freed now (see `touch`).
    #[cfg(all(test, runner_loom))]
    fn free(&self) {
        self.alive.with_mut(|alive| {
            // SAFETY: loom checks the accesses to this cell.
            unsafe {
                assert!(*alive, "the Runner's state was freed twice");
                *alive = false;
            }
        });
    }

    /// How many of the Runner's tasks are tokio tasks of its runtime now: the registered ones
    /// (`spawn_local` ones only if `local_too`: a `LocalSet`'s tasks are not the runtime's)
    /// and those of a close pass under way. One lock per shard, no walk over the tasks (a
    /// task that has just ended and is leaving its shard still counts: it is still a tokio
    /// task). `None` if a shard's lock is held and `wait` is false.
    pub(crate) fn runtime_tasks(&self, local_too: bool, wait: bool) -> Option<usize> {
        let mut registered = 0;
        for shard in self.shards.iter() {
            let count = |state: &mut ShardState| {
                state.slab.len - if local_too { 0 } else { state.slab.local }
            };
            registered += shard.with_or_try(wait, count)?;
        }
        let pass = self.pass_left.load(Ordering::Acquire);
        Some(registered + if pass >= TAKING / 2 { 0 } else { pass })
    }
}

#[cfg(all(test, not(runner_loom)))]
mod tests {
    use std::panic::Location;
    use std::sync::Arc;

    use super::{Registry, Slab, StrongRef};
    use crate::task_state::{Ended, Origin, TaskState};

    fn task() -> Arc<TaskState> {
        Arc::new(TaskState::new(Location::caller(), Origin::Spawned))
    }

    #[test]
    fn a_slab_reuses_freed_slots_and_refuses_a_slot_not_holding_the_record() {
        let (a, b, c) = (task(), task(), task());
        let mut slab = Slab::default();
        let (ia, ib) = (slab.insert(&a), slab.insert(&b));
        assert_eq!((ia, ib, slab.len), (0, 1, 2));
        assert!(!slab.remove(ia, &b), "slot 0 holds a, not b");
        assert!(!slab.remove(7, &a), "no slot 7");
        assert!(slab.remove(ia, &a));
        assert!(!slab.remove(ia, &a), "freed already");
        assert_eq!(slab.insert(&c), ia, "the freed slot is reused");
        let records: Vec<_> = slab.records().collect();
        assert_eq!(records, [Arc::as_ptr(&c), Arc::as_ptr(&b)]);
        assert_eq!(slab.len, 2);
    }

    #[test]
    fn a_loop_of_one_thread_gets_one_shard_and_workers_two_each() {
        assert_eq!(Registry::shards_for(None), 1);
        assert_eq!(Registry::shards_for(Some(1)), 2);
        assert_eq!(Registry::shards_for(Some(2)), 4);
        assert_eq!(Registry::shards_for(Some(3)), 8);
        assert_eq!(Registry::shards_for(Some(64)), 128);
    }

    /// Each thread spawning into a registry gets a home shard of its own (as long as there
    /// are shards for all of them), and keeps it.
    #[test]
    fn threads_get_home_shards_of_their_own() {
        let registry = Registry::new(4);
        let homes: Vec<usize> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (registry.home(), registry.home())))
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().unwrap())
                .map(|(a, b)| {
                    assert_eq!(a, b, "a thread keeps its home");
                    a
                })
                .collect()
        });
        let mut sorted = homes.clone();
        sorted.sort();
        assert_eq!(sorted, [0, 1, 2, 3], "homes {homes:?}");
    }

    /// Tasks of every shard are counted (`runtime_tasks`, O(shards)), found for reports, and
    /// taken by the pass.
    #[test]
    fn every_shard_is_counted_reported_and_walked() {
        let registry = Registry::new(4);
        let tasks: Vec<_> = (0..8).map(|_| task()).collect();
        for (i, task) in tasks.iter().enumerate() {
            assert!(!registry.register_in(i % 4, task));
        }
        assert_eq!(registry.runtime_tasks(true, false).unwrap(), 8);
        assert_eq!(registry.pending().len(), 8);
        // A `spawn_local` task is no task of the runtime's when the set drives it.
        let local = Arc::new(TaskState::new(Location::caller(), Origin::Local));
        assert!(!registry.register_in(2, &local));
        assert_eq!(registry.runtime_tasks(true, true), Some(9));
        assert_eq!(registry.runtime_tasks(false, true), Some(8));
        let ended = local.finish().unwrap();
        assert!(!registry.ended(&local, ended));
        assert_eq!(registry.runtime_tasks(false, true), Some(8));
        // One ends the ordinary way.
        let ended = tasks[5].finish().unwrap();
        assert!(!registry.ended(&tasks[5], ended));
        assert_eq!(registry.runtime_tasks(true, false).unwrap(), 7);
        assert_eq!(registry.begin_pass(true).1, StrongRef::Keep);
        // Out of the shards, into the pass: still tokio tasks, until they end.
        assert_eq!(registry.pass_left(), 7);
        assert_eq!(registry.runtime_tasks(true, false).unwrap(), 7);
        assert!(registry.pending().is_empty());
        for task in tasks.iter().filter(|t| !t.is_done()) {
            assert!(task.was_cancelled());
            match task.finish() {
                Some(ended @ Ended::ClosePass { .. }) => assert!(!registry.ended(task, ended)),
                _ => panic!("a task of the pass did not end as one"),
            }
        }
        assert_eq!(registry.pass_left(), 0);
        assert_eq!(registry.runtime_tasks(true, false).unwrap(), 0);
        assert!(registry.runner_gone(), "no task is left to hold the state");
    }
}

/// Model checks of the sharded registry: the close pass against tasks ending on other
/// threads, and how long the Runner's state lives for its tasks. Run with
/// `RUSTFLAGS="--cfg runner_loom" cargo test -p tokio-runner-core --release --lib loom`.
///
/// The Runner's state is modelled by its strong count (`Model::strong`, the `Arc`'s, with the
/// tasks' uncounted references counted by the registry) and by `Registry::free`, which the
/// last strong reference calls; every access of a task to the registry (`touch`) reads what
/// `free` writes, so loom reports any access not ordered before the free.
#[cfg(all(test, runner_loom))]
mod loom_models {
    use std::panic::Location;
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};

    use loom::sync::atomic::AtomicUsize;
    use loom::thread;

    use super::{Registry, StrongRef};
    use crate::sync::atomic::Ordering::SeqCst;
    use crate::task_state::{Origin, TaskState};

    #[derive(Default)]
    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, SeqCst);
        }
    }

    /// A Runner's state: its registry (two shards) and its strong count.
    struct Model {
        registry: Registry,
        /// The `Arc<Shared>`'s strong count: the Runner's own reference to start with.
        strong: AtomicUsize,
    }

    impl Model {
        fn new() -> Arc<Model> {
            Arc::new(Model {
                registry: Registry::new(2),
                strong: AtomicUsize::new(1),
            })
        }

        /// `Arc::drop` of a strong reference: the last one frees the state.
        fn drop_strong(&self) {
            if self.strong.fetch_sub(1, SeqCst) == 1 {
                self.registry.free();
            }
        }

        /// `Shared::register`, called by code holding a strong reference of its own.
        fn register(&self, shard: usize, task: &Arc<TaskState>) {
            if self.registry.register_in(shard, task) {
                self.strong.fetch_add(1, SeqCst);
            }
        }

        /// What the task's wrapper does when the task ends (`guarded::finish`).
        fn end(&self, task: &TaskState) {
            if let Some(ended) = task.finish() {
                if self.registry.ended(task, ended) {
                    self.drop_strong();
                }
            }
        }

        /// `Shared::begin_close_pass`.
        fn begin_pass(&self) {
            match self.registry.begin_pass(true).1 {
                StrongRef::Keep => {}
                StrongRef::Take => {
                    self.strong.fetch_add(1, SeqCst);
                }
                StrongRef::GiveBack => self.drop_strong(),
            }
        }

        /// The end of `Runner::close`: the stake's drop, then the Runner's own `Arc`.
        fn runner_lets_go(&self) {
            self.strong.fetch_add(1, SeqCst);
            if self.registry.runner_gone() {
                self.drop_strong();
            }
            self.drop_strong();
        }

        /// What `close()`'s step 1 does (its caller holding a strong reference): take the
        /// pass, then wait until its tasks have ended.
        fn close_pass(&self) {
            self.begin_pass();
            let wakes = Arc::new(Counter::default());
            let waker = Waker::from(wakes.clone());
            let mut cx = Context::from_waker(&waker);
            loop {
                let seen = wakes.0.load(SeqCst);
                if self.registry.poll_pass(&mut cx) == Poll::Ready(()) {
                    return;
                }
                while wakes.0.load(SeqCst) == seen {
                    thread::yield_now();
                }
            }
        }
    }

    fn task() -> Arc<TaskState> {
        Arc::new(TaskState::new(Location::caller(), Origin::Spawned))
    }

    /// `loom::model`, with room for the waits: the shard locks, the pass's wait and the
    /// tasks' wait for their cancel spin (yielding), and each turn is a branch of the path.
    fn model(f: impl Fn() + Sync + Send + 'static) {
        let mut builder = loom::model::Builder::new();
        builder.max_branches = 100_000;
        builder.check(f);
    }

    /// Ends `task` on a thread of its own once it is asked to cancel (or at once, when
    /// `on_its_own`: a task that ends at any moment).
    fn ender(
        model: &Arc<Model>,
        task: &Arc<TaskState>,
        on_its_own: bool,
    ) -> thread::JoinHandle<()> {
        let (model, task) = (model.clone(), task.clone());
        thread::spawn(move || {
            while !on_its_own && !task.was_cancelled() && !task.is_done() {
                thread::yield_now();
            }
            model.end(&task);
        })
    }

    /// Bug 3 of issue 17, in a sharded registry: a task ends the ordinary way just after the
    /// pass took its shard's slab. The old code indexed the fresh, empty registry with the
    /// task's old slot ("index out of bounds", a panic on a tokio worker inside `close()`);
    /// the sharded one must look in the task's own shard, and find the slot not its own.
    #[test]
    fn loom_task_ending_as_the_pass_is_taken_leaves_the_right_registry() {
        model(|| {
            let model = Model::new();
            let tasks = [task(), task()];
            for task in &tasks {
                model.register(1, task);
            }
            // The second task ends on its own at any moment; the first once cancelled.
            let threads = [
                ender(&model, &tasks[1], true),
                ender(&model, &tasks[0], false),
            ];
            model.close_pass();
            for thread in threads {
                thread.join().unwrap();
            }
            assert_eq!(model.registry.pass_left(), 0);
            assert!(model.registry.pending().is_empty());
            assert!(tasks.iter().all(|t| t.is_done()));
            model.runner_lets_go();
        });
    }

    /// The countdown against the waiter: the last task of the pass to end wakes `close()`,
    /// whether it ends before, during or after the waiter registers (never a lost wake-up,
    /// never a wait that returns early).
    #[test]
    fn loom_last_task_of_the_pass_wakes_the_closer() {
        model(|| {
            let model = Model::new();
            let task = task();
            model.register(0, &task);
            let thread = ender(&model, &task, false);
            model.close_pass();
            assert!(
                task.is_done(),
                "close() stopped waiting before its task ended"
            );
            thread.join().unwrap();
            assert_eq!(model.registry.pass_left(), 0);
            model.runner_lets_go();
        });
    }

    /// The pass walks every shard, whatever happens in the others meanwhile: a task pending
    /// when `close()` began is cancelled, also when a shard walked before it is empty, or
    /// busy with a plain task spawning there during `close()` (that new task may or may not
    /// be part of the pass; either way it ends once, and the state is freed once after it).
    #[test]
    fn loom_the_pass_walks_every_shard() {
        model(|| {
            let model = Model::new();
            let pending = task();
            model.register(1, &pending);
            // The plain task's own strong reference (it found the Runner by its runtime).
            model.strong.fetch_add(1, SeqCst);
            let spawner = {
                let model = model.clone();
                thread::spawn(move || {
                    let new = task();
                    model.register(0, &new);
                    model.end(&new);
                    model.drop_strong();
                })
            };
            let threads = [spawner, ender(&model, &pending, false)];
            model.close_pass();
            assert!(
                pending.was_cancelled(),
                "a task pending when close() began was not cancelled"
            );
            for thread in threads {
                thread.join().unwrap();
            }
            model.runner_lets_go();
            assert_eq!(model.strong.load(SeqCst), 0, "the state was never freed");
        });
    }

    /// The Runner lets go of its state while its tasks end on other threads (after a
    /// `shutdown_background`, tokio's threads drop tasks after `close()` returned): the
    /// state is freed exactly once, after the last access of every task, whichever ends
    /// last, in a live shard or in a gone one.
    #[test]
    fn loom_the_state_outlives_every_task_that_can_reach_it() {
        model(|| {
            let model = Model::new();
            let tasks = [task(), task()];
            model.register(0, &tasks[0]);
            model.register(1, &tasks[1]);
            let threads = [
                ender(&model, &tasks[0], true),
                ender(&model, &tasks[1], true),
            ];
            model.runner_lets_go();
            for thread in threads {
                thread.join().unwrap();
            }
            assert_eq!(model.strong.load(SeqCst), 0, "the state was never freed");
        });
    }

    /// A close that gave up waiting (its timeout): the Runner lets go while a task of the
    /// pass still runs, and another task of the same shard finished just before the pass
    /// (taken, not waited for). The last of them out frees the state, after waking a
    /// `close()` that no longer waits, and never before.
    #[test]
    fn loom_tasks_of_a_pass_cut_short_keep_the_state_alive() {
        model(|| {
            let model = Model::new();
            let (cancelled, finishing) = (task(), task());
            model.register(1, &cancelled);
            model.register(1, &finishing);
            let threads = [
                ender(&model, &finishing, true),
                ender(&model, &cancelled, false),
            ];
            model.begin_pass();
            model.runner_lets_go();
            for thread in threads {
                thread.join().unwrap();
            }
            assert_eq!(model.strong.load(SeqCst), 0, "the state was never freed");
        });
    }

    /// A close done after the Runner let go: a `close()` on another thread hands a local
    /// loop's close to its home thread, which does it at its exit, holding a strong reference
    /// of its own. Its pass takes tasks whose references count in `outstanding` already, and
    /// they may be leaving as the pass is taken, the last of them giving the tasks' strong
    /// reference back: the state is freed once, after every task and the closer are done
    /// with it.
    #[test]
    fn loom_a_pass_after_the_runner_let_go_keeps_the_count_right() {
        model(|| {
            let model = Model::new();
            let tasks = [task(), task()];
            model.register(0, &tasks[0]);
            model.register(1, &tasks[1]);
            // The close handed over: its own strong reference, then the Runner lets go.
            model.strong.fetch_add(1, SeqCst);
            model.runner_lets_go();
            // Each ends at any moment: before the pass takes it (the last of them giving the
            // tasks' reference back), or joined to it.
            let threads = [
                ender(&model, &tasks[0], true),
                ender(&model, &tasks[1], true),
            ];
            model.close_pass();
            for thread in threads {
                thread.join().unwrap();
            }
            model.drop_strong();
            assert_eq!(model.strong.load(SeqCst), 0, "the state was never freed");
        });
    }

    /// Code holding a strong reference of its own (a blocking job) spawns as the Runner lets
    /// go and its last task leaves: the new task takes the tasks' reference again if it was
    /// given back, and the state is freed once, after everyone.
    #[test]
    fn loom_a_spawn_after_the_runner_let_go_keeps_the_state_alive() {
        model(|| {
            let model = Model::new();
            let old = task();
            model.register(0, &old);
            // The blocking job's own strong reference.
            model.strong.fetch_add(1, SeqCst);
            let spawner = {
                let model = model.clone();
                thread::spawn(move || {
                    let new = task();
                    model.register(1, &new);
                    model.drop_strong();
                    model.end(&new);
                })
            };
            let threads = [ender(&model, &old, true), spawner];
            model.runner_lets_go();
            for thread in threads {
                thread.join().unwrap();
            }
            assert_eq!(model.strong.load(SeqCst), 0, "the state was never freed");
        });
    }
}
