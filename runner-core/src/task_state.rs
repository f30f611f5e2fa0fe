//! The record of one task: its cancel requests, how it ended, where it was spawned. The
//! wrapper that acts on it for every poll is in `guarded`.
//!
//! Cancellation the asyncio way.
//!
//! asyncio delivers a cancel request by throwing `CancelledError` into the task at its await
//! point; the task may catch it, clean up asynchronously, and finish. Rust futures cannot be
//! thrown into, so a request is delivered in one of two ways: a task that holds a live
//! [`cancelled()`](crate::cancelled) future is woken and that future resolves (the
//! `except CancelledError:` path); any other task has its future dropped where it stands at
//! its next poll, so every destructor runs (the `finally:` path).
//!
//! # The invariant
//! Every cancel request ends exactly one way:
//! - a live `cancelled()` future that is polled resolves and *consumes* it, or
//! - the task's wrapper, at the task's next poll with no `cancelled()` alive, consumes it and
//!   drops the task's future.
//!
//! Nothing else consumes a request: a wrapper that sees one while a `cancelled()` is alive
//! leaves it for that future. If the last `cancelled()` goes away unpolled while a request is
//! pending, its `Drop` wakes the task, whose next poll drops it. So a request is never both
//! observed and dropped, and never neither.
//!
//! Requests that arrive before one is consumed merge into it. A `cancelled()` resolves also
//! when a request was consumed before (the task *was* asked to cancel): that consumes nothing.
//!
//! All of it is decided on one atomic word, [`TaskState::cancel`] (pending request, ever
//! requested, waker stored, the waker slot held, a wake owed, and the number of live
//! `cancelled()` futures), changed only by read-modify-writes. Every handshake (a request
//! against a poll's waker, against a `cancelled()`'s last drop, against the wrapper's
//! decision) is two RMWs on that word, so it needs no store-then-load pairing, which loom
//! cannot check (loom issue #180); the loom models at the end of this file check the
//! invariant.
//!
//! A request wakes the waker of the task's latest poll, as the `Future` contract asks: a
//! poll that brings a waker for another task replaces the stored one, under a lock bit that
//! nobody ever waits for (the protocol and its ordering argument are beside the loom
//! models). The common poll, with the same waker as before, pays a load and a compare.

use std::any::Any;
use std::mem::MaybeUninit;
use std::panic::Location;
use std::task::Waker;

use crate::error::panic_message;
use crate::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use crate::sync::{Mutex, UnsafeCell};
use crate::util::lock;

pub(crate) const DONE: u8 = 1;
const PANICKED: u8 = 2;
const DETACHED: u8 = 4;
const IN_CLOSE_PASS: u8 = 8;
/// A cancel request not made on behalf of a signal (`Task::cancel`, `TaskHandle::cancel`,
/// `close()`): for a main task, what makes its run return `Cancelled` rather than
/// `Interrupted` (asyncio's `uncancel() != 0`).
const CANCELLED_OTHERWISE: u8 = 16;
/// A `cancelled()` of this task was polled at some point: the task looks for cancellation,
/// so a cancel that finds it holding none (a `select!` loop that makes a fresh `cancelled()`
/// each iteration, caught in the middle of its work) is worth a report.
const POLLED_CANCELLED: u8 = 32;

pub(crate) const NO_SLOT: usize = usize::MAX;

// The bits of `TaskState::cancel`.
/// A request not consumed yet.
const PENDING: u64 = 1;
/// A request was made at some point (what a late `cancelled()` resolves on).
const REQUESTED: u64 = 2;
/// The task's waker is in its slot (stored at the first poll; replaced by a poll that brings
/// another one, see [`TaskState::set_waker`]).
const WAKER: u64 = 4;
/// The waker slot is held: by a poll replacing the waker, or by a wake reading it. Whoever
/// finds it held never waits (see "The waker protocol" beside the loom models).
const SLOT_BUSY: u64 = 1 << 6;
/// A wake came while the slot was held: its holder makes that wake, with the waker then in
/// the slot, before it lets go. Only ever set together with, or under, `SLOT_BUSY`.
const WAKE_OWED: u64 = 1 << 7;
/// The number of live `cancelled()` futures, from this bit up.
const OBSERVER: u64 = 1 << 8;

fn observers(word: u64) -> u64 {
    word / OBSERVER
}

/// `true` if `a` and `b` wake the same task. `Waker::will_wake` compares the vtables' addresses,
/// and tokio's `block_on` hands out a waker whose clone has a vtable of equal functions at
/// another address: each run would then clone its waker anew (two atomic RMWs on the run's
/// path). The vtables' functions are compared instead.
#[inline]
fn same_waker(a: &Waker, b: &Waker) -> bool {
    a.data() == b.data() && (std::ptr::eq(a.vtable(), b.vtable()) || a.vtable() == b.vtable())
}

/// What the wrapper does at a poll (see [`TaskState::decide`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Decision {
    /// Poll the task's future.
    Poll,
    /// A request is delivered by dropping the future: nobody observes it.
    Drop,
}

/// What a task is, for reports.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    Main,
    Spawned,
    /// `spawn_local`: runs on the Runner's own thread only.
    Local,
    Blocking,
}

/// A signal that cancelled a main task (and so what its run returns).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum StopSignal {
    /// SIGINT: `RunError::Interrupted`.
    Interrupt = 1,
    /// SIGTERM: `RunError::Terminated`.
    Terminate = 2,
}

impl StopSignal {
    fn from_u8(raw: u8) -> Option<StopSignal> {
        match raw {
            1 => Some(StopSignal::Interrupt),
            2 => Some(StopSignal::Terminate),
            _ => None,
        }
    }

    /// How reports name the signal.
    pub(crate) fn name(self) -> &'static str {
        match self {
            StopSignal::Interrupt => "Ctrl-C",
            StopSignal::Terminate => "SIGTERM",
        }
    }

    /// The option that turns runner's handling of the signal off.
    pub(crate) fn option(self) -> &'static str {
        match self {
            StopSignal::Interrupt => "handle_sigint = false",
            StopSignal::Terminate => "handle_sigterm = false",
        }
    }
}

/// What few tasks need, boxed on first use so the common record stays small: `close()` frees
/// one record per pending task, and a record that fits a glibc fastbin chunk (at most 120
/// bytes) is freed without consolidation (close_pending at 10k tasks: 3.6–4.3 ms before,
/// 2.7 ms after).
#[derive(Default)]
struct Rare {
    /// The task's panic message.
    panic: Option<String>,
    /// The wakers of `cancelled()` futures, wherever they are polled (e.g. moved into another
    /// task): a cancel request wakes them too, not only the task.
    next_watch: u64,
    watchers: Vec<(u64, Waker)>,
}

/// The shared record of one task: its cancel requests, how it ended, where it was spawned.
pub(crate) struct TaskState {
    pub(crate) location: &'static Location<'static>,
    origin: Origin,
    /// `PENDING | REQUESTED | WAKER | SLOT_BUSY | WAKE_OWED | observers * OBSERVER`: see
    /// the module docs.
    cancel: AtomicU64,
    /// The `StopSignal` that cancelled (or reached the run of) a main task; 0: none.
    signal: AtomicU8,
    flags: AtomicU8,
    pub(crate) slot: AtomicUsize,
    /// The waker of the task's latest poll. Written only by the task's poller: at the first
    /// poll before `WAKER` is set, later only while it holds `SLOT_BUSY`; read by wakes while
    /// they hold `SLOT_BUSY`.
    waker: UnsafeCell<MaybeUninit<Waker>>,
    rare: Mutex<Option<Box<Rare>>>,
}

// SAFETY: the waker slot is written only by the task's poller, one poll at a time: before
// `WAKER` is published (no wake reads it before it sees `WAKER`) or while it holds
// `SLOT_BUSY`, which every wake takes (Acquire) before it reads the slot and lets go of
// (Release) after; the poller's own unlocked read (the compare in `set_waker`) can only meet
// other reads. `Waker` is `Send + Sync`. Everything else is atomics and a mutex.
unsafe impl Sync for TaskState {}

/// How a task left: what its Runner has to do about it (the record points to no Runner, so
/// ownership runs one way: the Runner's registry holds records, never the reverse).
pub(crate) enum Ended {
    /// An ordinary end: the task leaves the registry.
    Normal,
    /// A task of `close()`'s cancellation pass ended, maybe with a panic.
    ClosePass { panicked: bool },
}

impl TaskState {
    pub(crate) fn new(location: &'static Location<'static>, origin: Origin) -> TaskState {
        TaskState {
            location,
            origin,
            cancel: AtomicU64::new(0),
            signal: AtomicU8::new(0),
            flags: AtomicU8::new(0),
            slot: AtomicUsize::new(NO_SLOT),
            waker: UnsafeCell::new(MaybeUninit::uninit()),
            rare: Mutex::new(None),
        }
    }

    /// Readies a finished main-task record for the next run (keeping its waker). Plain
    /// stores: the record is not shared (`&mut`).
    pub(crate) fn reset(&mut self, location: &'static Location<'static>) {
        self.location = location;
        let waker = self.cancel.load(Ordering::Relaxed) & WAKER;
        self.cancel.store(waker, Ordering::Relaxed);
        self.signal.store(0, Ordering::Relaxed);
        self.flags.store(0, Ordering::Relaxed);
        let rare = self.rare.get_mut().unwrap_or_else(|e| e.into_inner());
        if rare.is_some() {
            *rare = None;
        }
    }

    /// Makes `waker`, this poll's, the one a cancel request wakes (the `Future` contract:
    /// the waker of the latest poll is the one to wake). The first poll stores it. A later
    /// poll whose waker wakes the same task (tokio's, every time; the next run's `block_on`
    /// waker for a reused main-task record) costs a load and a compare, no
    /// read-modify-write; one that brings another waker replaces it (`replace_waker`).
    ///
    /// # Safety
    /// Only the task's poller calls it, one call at a time (the wrapper's `poll`, which has
    /// the task `&mut`): it is then the slot's only writer, so its unlocked read here never
    /// meets a write.
    #[inline]
    pub(crate) unsafe fn set_waker(&self, waker: &Waker) {
        // Relaxed: only the poller sets `WAKER`, and it sees its own store.
        if self.cancel.load(Ordering::Relaxed) & WAKER != 0 {
            // SAFETY: initialized (WAKER is set); only we write it (see above).
            let same = self
                .waker
                .with(|slot| same_waker(unsafe { (*slot).assume_init_ref() }, waker));
            if !same {
                self.replace_waker(waker);
            }
            return;
        }
        // SAFETY: empty, and nobody reads it before `WAKER` is published below.
        self.waker
            .with_mut(|slot| unsafe { (*slot).write(waker.clone()) });
        // Release: a request that sees `WAKER` sees the waker. An RMW on the cancel word, so
        // a request before it is seen by this poll's decision, and one after it sees the
        // waker (no store-then-load pairing).
        self.cancel.fetch_or(WAKER, Ordering::AcqRel);
    }

    /// A poll brought a waker that does not wake the stored one's task: replace it, unless a
    /// wake holds the slot right now.
    #[cold]
    #[inline(never)]
    fn replace_waker(&self, waker: &Waker) {
        // Cloned before the slot is taken: no foreign code runs while we hold it.
        let new = waker.clone();
        // Acquire: after the last holder's reads of the slot.
        let before = self.cancel.fetch_or(SLOT_BUSY, Ordering::Acquire);
        if before & SLOT_BUSY != 0 {
            // A wake is reading the old waker. Never wait for it: wake this poll's waker
            // instead, so the task is polled again, and that poll replaces the waker.
            new.wake();
            return;
        }
        // SAFETY: `SLOT_BUSY` is ours: nobody reads or writes the slot until we let go; it
        // is initialized (`WAKER` was set before any poll came here).
        let old = self
            .waker
            .with_mut(|slot| std::mem::replace(unsafe { (*slot).assume_init_mut() }, new));
        let owed = self.release_slot();
        // Foreign code (the old waker's drop, a wake) only once the slot is free again.
        drop(old);
        if let Some(owed) = owed {
            owed.wake();
        }
    }

    /// Wakes the task if `word` (a value of the cancel word read with Acquire) says its
    /// waker is stored: with the waker in the slot when the wake is asked for, or a later
    /// one (a poll that replaces it meanwhile sees the request, see the ordering argument).
    fn wake_task(&self, word: u64) {
        if word & WAKER == 0 {
            return;
        }
        let before = self
            .cancel
            .fetch_or(SLOT_BUSY | WAKE_OWED, Ordering::Acquire);
        if before & SLOT_BUSY == 0 {
            if let Some(owed) = self.release_slot() {
                owed.wake();
            }
        }
        // Else the holder makes this wake once it lets go (`release_slot`).
    }

    /// Lets go of the slot (held by the caller). Returns a clone of the waker in it if a
    /// wake is owed, for the caller to wake once the slot is free: a wake never runs the
    /// executor's code under the lock (it may panic, or poll the task on the spot).
    fn release_slot(&self) -> Option<Waker> {
        let mut owed = None;
        let mut word = self.cancel.load(Ordering::Relaxed);
        loop {
            if word & WAKE_OWED != 0 {
                word = self.cancel.fetch_and(!WAKE_OWED, Ordering::Relaxed) & !WAKE_OWED;
                if owed.is_none() {
                    // SAFETY: `SLOT_BUSY` is ours, and the slot is initialized (`WAKER`).
                    // It does not change while we hold it: one clone serves every wake owed.
                    owed = Some(
                        self.waker
                            .with(|slot| unsafe { (*slot).assume_init_ref() }.clone()),
                    );
                }
                continue;
            }
            // Release: the next holder (after its Acquire) sees our accesses of the slot as
            // done. A wake owed meanwhile makes this fail, and the loop takes it on.
            match self.cancel.compare_exchange_weak(
                word,
                word & !SLOT_BUSY,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return owed,
                Err(now) => word = now,
            }
        }
    }

    pub(crate) fn is_blocking(&self) -> bool {
        self.origin == Origin::Blocking
    }

    pub(crate) fn is_local(&self) -> bool {
        self.origin == Origin::Local
    }

    /// A `spawn_blocking` job ended (it has no wrapper and no registry slot).
    pub(crate) fn mark_done(&self) {
        self.flags.fetch_or(DONE, Ordering::AcqRel);
    }

    /// A `cancelled()` future of this task was made (it is made inside the task's poll).
    pub(crate) fn observe(&self) {
        self.cancel.fetch_add(OBSERVER, Ordering::AcqRel);
    }

    /// `true` while a `cancelled()` future of this task is alive (for reports).
    pub(crate) fn is_observed(&self) -> bool {
        observers(self.cancel.load(Ordering::Relaxed)) > 0
    }

    /// A `cancelled()` future went away. The last one leaving a request pending wakes the
    /// task: nobody can observe that request any more, so the task's next poll drops it.
    pub(crate) fn unobserve(&self) {
        let before = self.cancel.fetch_sub(OBSERVER, Ordering::AcqRel);
        if observers(before) == 1 && before & PENDING != 0 {
            self.wake_task(before);
        }
    }

    /// For a polled `cancelled()` future: `true` once the task was asked to cancel. A pending
    /// request is consumed here (the wrapper will not drop the task for it).
    pub(crate) fn take_request(&self) -> bool {
        // Most polls find nothing: a load, not an RMW, for them.
        if self.cancel.load(Ordering::Acquire) & (PENDING | REQUESTED) == 0 {
            return false;
        }
        let before = self.cancel.fetch_and(!PENDING, Ordering::AcqRel);
        before & (PENDING | REQUESTED) != 0
    }

    /// The wrapper's decision at each poll: drop the future for a pending request that no
    /// `cancelled()` can observe (consuming it), else poll it.
    ///
    /// Only the task itself makes `cancelled()` futures, inside its poll, so while this runs
    /// the observer count can only go down; a request or a consume elsewhere makes the
    /// exchange fail and the decision is taken again on the new word.
    pub(crate) fn decide(&self) -> Decision {
        let mut word = self.cancel.load(Ordering::Acquire);
        loop {
            if word & PENDING == 0 || observers(word) > 0 {
                return Decision::Poll;
            }
            match self.cancel.compare_exchange_weak(
                word,
                word & !PENDING,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Decision::Drop,
                Err(now) => word = now,
            }
        }
    }

    /// `<task spawned at src/main.rs:12:5>`, the way reports name a task.
    pub(crate) fn describe(&self) -> String {
        match self.origin {
            Origin::Main => format!("<main task run at {}>", self.location),
            Origin::Spawned | Origin::Local => format!("<task spawned at {}>", self.location),
            Origin::Blocking => format!("<blocking job spawned at {}>", self.location),
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        self.flags.load(Ordering::Acquire) & DONE != 0
    }

    pub(crate) fn panicked(&self) -> Option<String> {
        lock(&self.rare)
            .as_ref()
            .and_then(|rare| rare.panic.clone())
    }

    /// The signal that reached this main task's run, if one did.
    pub(crate) fn stop_signal(&self) -> Option<StopSignal> {
        StopSignal::from_u8(self.signal.load(Ordering::Acquire))
    }

    /// `true` if a cancel request other than a signal's was made (see `CANCELLED_OTHERWISE`).
    pub(crate) fn cancelled_otherwise(&self) -> bool {
        self.flags.load(Ordering::Acquire) & CANCELLED_OTHERWISE != 0
    }

    /// Records the signal that reached this main task's run (the first one counts).
    pub(crate) fn record_signal(&self, signal: StopSignal) {
        let _ = self
            .signal
            .compare_exchange(0, signal as u8, Ordering::AcqRel, Ordering::Acquire);
    }

    /// A `cancelled()` future's poll: remembers `waker` under `id` (a fresh id when `None`)
    /// so that a cancel request wakes whoever polls it, in any task.
    pub(crate) fn watch(&self, id: &mut Option<u64>, waker: &Waker) {
        let mut rare = lock(&self.rare);
        let rare = rare.get_or_insert_with(Box::default);
        if let Some(id) = *id {
            if let Some((_, slot)) = rare.watchers.iter_mut().find(|(w, _)| *w == id) {
                if !same_waker(slot, waker) {
                    slot.clone_from(waker);
                }
                return;
            }
        }
        let new_id = rare.next_watch;
        rare.next_watch += 1;
        rare.watchers.push((new_id, waker.clone()));
        *id = Some(new_id);
    }

    /// A `cancelled()` future went away: forget its waker.
    pub(crate) fn unwatch(&self, id: u64) {
        let mut rare = lock(&self.rare);
        let Some(rare) = rare.as_mut() else { return };
        if let Some(at) = rare.watchers.iter().position(|(w, _)| *w == id) {
            rare.watchers.swap_remove(at);
        }
    }

    /// A `cancelled()` of this task is being polled (see `POLLED_CANCELLED`): a load, and an
    /// RMW only the first time.
    pub(crate) fn mark_polled_cancelled(&self) {
        if self.flags.load(Ordering::Relaxed) & POLLED_CANCELLED == 0 {
            self.flags.fetch_or(POLLED_CANCELLED, Ordering::Relaxed);
        }
    }

    /// `true` if a `cancelled()` of this task was ever polled.
    pub(crate) fn polled_cancelled(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & POLLED_CANCELLED != 0
    }

    pub(crate) fn was_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Acquire) & REQUESTED != 0
    }

    /// Makes the task part of `close()`'s cancellation pass; `false` if it had already
    /// finished (it then leaves the registry the usual way, and nobody waits for it).
    pub(crate) fn join_close_pass(&self) -> bool {
        self.flags.fetch_or(IN_CLOSE_PASS, Ordering::AcqRel) & DONE == 0
    }

    /// Asks the task to cancel (`signal`: on behalf of a signal that reached the main
    /// task's run); `false` if it has already finished.
    pub(crate) fn request_cancel(&self, signal: Option<StopSignal>) -> bool {
        if self.is_done() {
            return false;
        }
        match signal {
            Some(signal) => self.record_signal(signal),
            None => {
                self.flags.fetch_or(CANCELLED_OTHERWISE, Ordering::AcqRel);
            }
        }
        // One RMW: what it returns says whether the waker is there to wake (else the first
        // poll, still to come, sees the request) and whether `cancelled()` futures are alive.
        let before = self.cancel.fetch_or(PENDING | REQUESTED, Ordering::AcqRel);
        self.wake_task(before);
        // `cancelled()` futures polled elsewhere (e.g. axum's graceful-shutdown task). A
        // future that registers after this lock sees the request when it checks again.
        if observers(before) > 0 {
            if let Some(rare) = lock(&self.rare).as_ref() {
                for (_, waker) in &rare.watchers {
                    waker.wake_by_ref();
                }
            }
        }
        true
    }

    /// Records the task's panic; `true` if nobody will see it (its `Task` was dropped
    /// unawaited, and `close()` does not report it either), so the Runner should.
    #[must_use]
    pub(crate) fn record_panic(&self, payload: &(dyn Any + Send)) -> bool {
        lock(&self.rare).get_or_insert_with(Box::default).panic = Some(panic_message(payload));
        let before = self.flags.fetch_or(PANICKED, Ordering::AcqRel);
        before & DETACHED != 0 && before & IN_CLOSE_PASS == 0
    }

    /// The `Task` handle went away unawaited; `true` if the task had already panicked, so
    /// the panic will never be retrieved and the Runner should report it.
    #[must_use]
    pub(crate) fn detach(&self) -> bool {
        let before = self.flags.fetch_or(DETACHED, Ordering::AcqRel);
        before & PANICKED != 0 && before & IN_CLOSE_PASS == 0
    }

    /// The task has ended; `None` if it had already (each end is acted on once).
    pub(crate) fn finish(&self) -> Option<Ended> {
        let before = self.flags.fetch_or(DONE, Ordering::AcqRel);
        if before & DONE != 0 {
            return None;
        }
        Some(if before & IN_CLOSE_PASS != 0 {
            Ended::ClosePass {
                panicked: before & PANICKED != 0,
            }
        } else {
            Ended::Normal
        })
    }
}

impl Drop for TaskState {
    fn drop(&mut self) {
        if self.cancel.load(Ordering::Relaxed) & WAKER != 0 {
            // SAFETY: initialized (WAKER), dropped once (we are in Drop).
            self.waker
                .with_mut(|slot| unsafe { (*slot).assume_init_drop() });
        }
    }
}

#[cfg(test)]
mod size {
    #[test]
    fn a_record_fits_a_glibc_fastbin_chunk() {
        // See `Rare`: 120 bytes of payload, the `Arc` counts included.
        let size = std::mem::size_of::<super::TaskState>() + 2 * std::mem::size_of::<usize>();
        assert!(size <= 120, "ArcInner<TaskState> is {size} bytes");
    }
}

/// Model checks of the invariant in the module docs: every cancel request ends exactly one
/// way. Run with `RUSTFLAGS="--cfg runner_loom" cargo test -p tokio-runner-core --release
/// --lib loom`. Each model is the smallest setup that reaches the race it is named after;
/// "the task" is a thread doing what `Guarded::poll` does with the record, "an observer" one
/// doing what a `cancelled()` future's poll and drop do.
#[cfg(all(test, runner_loom))]
mod loom_models {
    use std::panic::Location;
    use std::sync::Arc;
    use std::task::{Wake, Waker};

    use loom::sync::atomic::{AtomicBool, AtomicUsize};
    use loom::thread;

    use super::{Decision, Origin, TaskState};
    use crate::sync::atomic::Ordering::SeqCst;

    /// A waker that counts its wakes.
    #[derive(Default)]
    struct Counter(AtomicUsize);

    impl Counter {
        fn count(&self) -> usize {
            self.0.load(SeqCst)
        }
    }

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, SeqCst);
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, SeqCst);
        }
    }

    /// A record whose task has been polled once (its waker is stored), and that task's wakes.
    fn polled_task() -> (Arc<TaskState>, Arc<Counter>) {
        let state = Arc::new(TaskState::new(Location::caller(), Origin::Spawned));
        let wakes = Arc::new(Counter::default());
        // SAFETY: nothing reads the slot yet.
        unsafe { state.set_waker(&Waker::from(wakes.clone())) };
        (state, wakes)
    }

    /// What a `cancelled()` future's poll does (`Cancelled::poll`); `true`: it resolved.
    fn poll_cancelled(state: &TaskState, watch: &mut Option<u64>, waker: &Waker) -> bool {
        state.take_request() || {
            state.watch(watch, waker);
            state.take_request()
        }
    }

    /// Bug 2 of issue 17: the `cancelled()` is moved into another task, which polls it to
    /// Ready and drops it while the cancelled task's wrapper decides. The old wrapper read
    /// the request, marked it delivered, and only then read the observer count, which the
    /// other task could bring to zero in between: the task was dropped although its
    /// `cancelled()` had resolved.
    #[test]
    fn loom_cancel_observed_in_another_task_is_not_also_dropped() {
        loom::model(|| {
            let (state, _task_wakes) = polled_task();
            state.observe(); // the task made a `cancelled()` and moved it out
            let resolved = Arc::new(AtomicBool::new(false));

            let requester = {
                let state = state.clone();
                thread::spawn(move || assert!(state.request_cancel(None)))
            };
            let observer = {
                let (state, resolved) = (state.clone(), resolved.clone());
                thread::spawn(move || {
                    let wakes = Arc::new(Counter::default());
                    let waker = Waker::from(wakes.clone());
                    let mut watch = None;
                    // Polled until Ready, each poll after a wake (the request wakes it).
                    loop {
                        let seen = wakes.count();
                        if poll_cancelled(&state, &mut watch, &waker) {
                            break;
                        }
                        while wakes.count() == seen {
                            thread::yield_now();
                        }
                    }
                    resolved.store(true, SeqCst);
                    if let Some(id) = watch {
                        state.unwatch(id);
                    }
                    state.unobserve();
                })
            };
            // The cancelled task's wrapper, polling it meanwhile.
            let dropped = state.decide() == Decision::Drop;

            requester.join().unwrap();
            observer.join().unwrap();
            assert!(resolved.load(SeqCst), "the observer always resolves here");
            assert!(
                !dropped,
                "the request was observed and also dropped the task"
            );
            assert_eq!(
                state.decide(),
                Decision::Poll,
                "the request was consumed twice"
            );
        });
    }

    /// Bug 1 of issue 17: the task holds a `cancelled()` that nobody polls and drops it
    /// later. The old wrapper marked the request delivered at the poll where it saw the
    /// observer, and nothing delivered it again: the task never ended.
    #[test]
    fn loom_cancel_is_not_lost_when_an_unpolled_cancelled_is_dropped() {
        loom::model(|| {
            let (state, task_wakes) = polled_task();
            state.observe(); // `let c = runner::cancelled();`

            let requester = {
                let state = state.clone();
                thread::spawn(move || assert!(state.request_cancel(None)))
            };
            // One poll of the task: the wrapper decides, then the task drops `c` unpolled.
            let seen = task_wakes.count();
            let first = state.decide();
            if first == Decision::Poll {
                state.unobserve();
            }
            requester.join().unwrap();

            // Observed by nobody: the request must drop the task, at this poll or at the next
            // one, which a wake after this poll began must bring about.
            if first == Decision::Poll {
                assert!(
                    task_wakes.count() > seen,
                    "cancel lost: the task is never woken"
                );
                assert_eq!(
                    state.decide(),
                    Decision::Drop,
                    "cancel lost at the next poll"
                );
            }
        });
    }

    /// A request racing the task's first poll: either that poll sees it, or the request sees
    /// the waker stored and wakes the task (the store-then-load pairing the old code needed
    /// SeqCst for, here two read-modify-writes on one word).
    #[test]
    fn loom_request_before_the_first_poll_is_seen_or_wakes() {
        loom::model(|| {
            let state = Arc::new(TaskState::new(Location::caller(), Origin::Spawned));
            let wakes = Arc::new(Counter::default());

            let requester = {
                let state = state.clone();
                thread::spawn(move || assert!(state.request_cancel(None)))
            };
            // SAFETY: only this thread writes the slot; readers wait for `WAKER`.
            unsafe { state.set_waker(&Waker::from(wakes.clone())) };
            let first = state.decide();
            requester.join().unwrap();
            if first == Decision::Poll {
                assert_eq!(wakes.count(), 1, "the request neither seen nor woken");
                assert_eq!(state.decide(), Decision::Drop);
            }
        });
    }

    /// Two requests (e.g. `Task::cancel` and `close()`) against an observer that polls once
    /// and goes away, while the task polls: whatever the order, a request the observer did
    /// not consume is left for the task, which is woken after its poll began, so its next
    /// poll drops it (never stranded).
    #[test]
    fn loom_two_requests_and_a_passing_observer_strand_nothing() {
        loom::model(|| {
            let (state, task_wakes) = polled_task();
            state.observe();

            let requesters: Vec<_> = (0..2)
                .map(|_| {
                    let state = state.clone();
                    thread::spawn(move || {
                        state.request_cancel(None);
                    })
                })
                .collect();
            let observer = {
                let state = state.clone();
                thread::spawn(move || {
                    let waker = Waker::from(Arc::new(Counter::default()));
                    let mut watch = None;
                    poll_cancelled(&state, &mut watch, &waker);
                    if let Some(id) = watch {
                        state.unwatch(id);
                    }
                    state.unobserve();
                })
            };
            let seen = task_wakes.count();
            let dropped = state.decide() == Decision::Drop;
            for requester in requesters {
                requester.join().unwrap();
            }
            observer.join().unwrap();

            if !dropped && state.decide() == Decision::Drop {
                assert!(
                    task_wakes.count() > seen,
                    "a request stranded: no wake after the poll"
                );
            }
        });
    }

    // # The waker protocol: the ordering argument
    //
    // The rule (the `Future` contract): a request (or the last observer's drop while one is
    // pending) is either seen by the decision of a poll that comes after it, or wakes the
    // waker of the latest poll that came before it. tokio passes one waker for a task's
    // whole life, but an executor may change it between polls (tokio's own current-thread
    // `block_on` does, while another thread holds the scheduler's core), so storing it once
    // would wake a stale waker and lose the cancel.
    //
    // Who touches the slot: the poller (one poll at a time) writes it at the first poll,
    // before it sets `WAKER` (no wake reads the slot before it sees `WAKER`), and later only
    // while it holds `SLOT_BUSY`; its unlocked compare at each poll can only meet reads,
    // since it is the only writer. A wake reads the slot only while it holds `SLOT_BUSY`.
    // Taking `SLOT_BUSY` is an Acquire RMW, letting go a Release RMW, and every other change
    // of the word is an RMW too, so each holder's accesses happen before the next holder's
    // (release sequence). Nobody ever waits for `SLOT_BUSY`: a wake that finds it held sets
    // `WAKE_OWED` in the same RMW and leaves; the holder cannot let go while `WAKE_OWED` is
    // set (its releasing compare-exchange fails), so it clears it and takes a clone of the
    // waker then in the slot, which it wakes right after letting go (no foreign code but
    // `Waker::clone` runs while the slot is held). A poll that finds it held (a wake is
    // reading the old waker) does not replace: it wakes its own new waker, so the task is
    // polled again and that poll retries.
    //
    // Why no cancel is lost: all are RMWs on one word, so they have one order. Take a
    // request R (its `fetch_or(PENDING)`) and a poll P that brings a new waker W.
    // - P's `SLOT_BUSY` RMW after R: P's decision (a later load on the same word) sees R's
    //   `PENDING`; P drops the future or leaves R to a live observer.
    // - P's `SLOT_BUSY` RMW before R: R's wake comes after it. If P still holds the slot, R
    //   sets `WAKE_OWED` and P wakes W once it lets go; if P has let go, R takes the slot
    //   and wakes W (or a later poll's waker, and that poll is then the latest). A wake made
    //   just after letting go may reach a waker that a poll P' replaces meanwhile: P' took
    //   the slot after R's RMW, so P' sees R's `PENDING` (first case).
    // - P found the slot held: P woke W itself, so a poll after P comes, and that poll is
    //   after R or it replaces the waker in turn: by induction (each failure needs a wake in
    //   flight, and there are finitely many) some poll stores its waker or sees `PENDING`.
    // A poll whose waker wakes the same task as the stored one changes nothing: waking the
    // stored waker wakes it.

    /// A request against a poll that brings a new waker. The old wrapper stored the waker
    /// only at the first poll, so a request after the second poll woke the first poll's
    /// waker, which the executor no longer listens to: the task was never polled again
    /// (this model fails on that code).
    #[test]
    fn loom_a_cancel_wakes_the_waker_of_the_latest_poll() {
        loom::model(|| {
            let (state, _first_poll_wakes) = polled_task();
            let requester = {
                let state = state.clone();
                thread::spawn(move || assert!(state.request_cancel(None)))
            };
            // The second poll, through another waker.
            let second = Arc::new(Counter::default());
            // SAFETY: this thread is the task's only poller.
            unsafe { state.set_waker(&Waker::from(second.clone())) };
            let first = state.decide();
            requester.join().unwrap();
            if first == Decision::Poll {
                assert!(
                    second.count() > 0,
                    "cancel lost: only a stale waker was woken, not the latest poll's"
                );
                assert_eq!(state.decide(), Decision::Drop);
            }
        });
    }

    /// Two wakes at once (a request, and the last `cancelled()` going away unpolled while it
    /// is pending) against a poll that replaces the waker: whichever holds the slot, the
    /// others neither wait nor get lost, and the latest poll's waker is woken after the
    /// request unless that poll saw it.
    #[test]
    fn loom_wakes_and_a_waker_replacement_meeting_at_the_slot_lose_nothing() {
        loom::model(|| {
            let (state, _first_poll_wakes) = polled_task();
            state.observe(); // a `cancelled()` that will go away unpolled
            let requester = {
                let state = state.clone();
                thread::spawn(move || assert!(state.request_cancel(None)))
            };
            let observer = {
                let state = state.clone();
                thread::spawn(move || state.unobserve())
            };
            let second = Arc::new(Counter::default());
            // SAFETY: this thread is the task's only poller.
            unsafe { state.set_waker(&Waker::from(second.clone())) };
            let first = state.decide();
            requester.join().unwrap();
            observer.join().unwrap();
            if first == Decision::Poll {
                // Nobody observes the request any more: only dropping can end it, at a poll
                // that only a wake of the latest poll's waker brings about.
                assert!(
                    second.count() > 0,
                    "cancel lost: the latest poll's waker was not woken"
                );
                assert_eq!(state.decide(), Decision::Drop);
            }
        });
    }
}
