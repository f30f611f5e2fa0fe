//! The record of one task: its cancel requests, how it ended, where it was spawned. The
//! wrapper that acts on it for every poll is in `guarded`.
//!
//! Cancellation the asyncio way.
//!
//! asyncio delivers a cancel request by throwing `CancelledError` into the task at its await
//! point; the task may catch it, clean up asynchronously, and finish. Rust futures cannot be
//! thrown into, so a request is delivered in one of two ways, decided when the task is next
//! polled: a task that holds a live [`cancelled()`] future is woken and that future resolves
//! (the `except CancelledError:` path); any other task has its future dropped where it
//! stands, so every destructor runs (the `finally:` path).

use std::any::Any;
use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::task::Waker;

use crate::error::panic_message;
use crate::util::lock;

pub(crate) const DONE: u8 = 1;
const PANICKED: u8 = 2;
const DETACHED: u8 = 4;
const IN_CLOSE_PASS: u8 = 8;

pub(crate) const NO_SLOT: usize = usize::MAX;

/// What a task is, for reports.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    Main,
    Spawned,
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

/// The task's waker, written once at its first poll: a task's waker is stable for its life
/// in tokio (and for one `block_on`), so `request_cancel` can read it without a lock.
/// (`OnceLock` would do, at the price of its `Once` machinery on every run's path.)
pub(crate) struct WakerSlot {
    ready: AtomicBool,
    waker: UnsafeCell<MaybeUninit<Waker>>,
}

// SAFETY: the waker is written once, before `ready` is released, and only read after
// `ready` is acquired; `Waker` is `Send + Sync`.
unsafe impl Sync for WakerSlot {}

impl WakerSlot {
    fn new() -> WakerSlot {
        WakerSlot {
            ready: AtomicBool::new(false),
            waker: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    /// Stores `waker`, keeping the one already there if it wakes the same task (the main
    /// task's record is reused by the next run of the same runtime, whose `block_on` waker
    /// is the same: no clone then).
    ///
    /// # Safety
    /// Nothing may read the slot meanwhile: either it is empty (readers see `ready` false),
    /// or its owner cannot be cancelled yet (the main task before it arms Ctrl-C handling).
    pub(crate) unsafe fn store(&self, waker: &Waker) {
        if self.ready.load(Ordering::Relaxed) {
            let current = (*self.waker.get()).assume_init_mut();
            if !current.will_wake(waker) {
                current.clone_from(waker);
            }
            return;
        }
        (*self.waker.get()).write(waker.clone());
        // SeqCst: pairs with `request_cancel` (see there).
        self.ready.store(true, Ordering::SeqCst);
    }

    fn get(&self) -> Option<&Waker> {
        // SAFETY: written before `ready` was released and never again.
        self.ready
            .load(Ordering::SeqCst)
            .then(|| unsafe { (*self.waker.get()).assume_init_ref() })
    }
}

impl Drop for WakerSlot {
    fn drop(&mut self) {
        if *self.ready.get_mut() {
            // SAFETY: initialized (ready), dropped once (we are in Drop).
            unsafe { self.waker.get_mut().assume_init_drop() }
        }
    }
}

/// The shared record of one task: its cancel requests, how it ended, where it was spawned.
pub(crate) struct TaskState {
    pub(crate) location: &'static Location<'static>,
    origin: Origin,
    pub(crate) requested: AtomicU32,
    pub(crate) delivered: AtomicU32,
    pub(crate) observers: AtomicU32,
    /// The `StopSignal` that cancelled (or reached the run of) a main task; 0: none.
    signal: AtomicU8,
    flags: AtomicU8,
    pub(crate) slot: AtomicUsize,
    pub(crate) waker: WakerSlot,
    rare: Mutex<Option<Box<Rare>>>,
}

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
            requested: AtomicU32::new(0),
            delivered: AtomicU32::new(0),
            observers: AtomicU32::new(0),
            signal: AtomicU8::new(0),
            flags: AtomicU8::new(0),
            slot: AtomicUsize::new(NO_SLOT),
            waker: WakerSlot::new(),
            rare: Mutex::new(None),
        }
    }

    /// Readies a finished main-task record for the next run (keeping its waker).
    pub(crate) fn reset(&mut self, location: &'static Location<'static>) {
        self.location = location;
        *self.requested.get_mut() = 0;
        *self.delivered.get_mut() = 0;
        *self.observers.get_mut() = 0;
        *self.signal.get_mut() = 0;
        *self.flags.get_mut() = 0;
        *self.rare.get_mut().unwrap_or_else(|e| e.into_inner()) = None;
    }

    pub(crate) fn is_blocking(&self) -> bool {
        self.origin == Origin::Blocking
    }

    /// A `spawn_blocking` job ended (it has no wrapper and no registry slot).
    pub(crate) fn mark_done(&self) {
        self.flags.fetch_or(DONE, Ordering::AcqRel);
    }

    /// A `cancelled()` future starts or stops observing this task's cancellation.
    pub(crate) fn observe(&self, start: bool) {
        if start {
            self.observers.fetch_add(1, Ordering::SeqCst);
        } else {
            self.observers.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// For a polled `cancelled()` future: `true` once a cancel was requested, and the
    /// request is then delivered (so the wrapper does not also drop the task for it; it may
    /// see the request only at a later poll, after the observing future is gone).
    pub(crate) fn take_request(&self) -> bool {
        let requested = self.requested.load(Ordering::SeqCst);
        if requested == 0 {
            return false;
        }
        self.delivered.fetch_max(requested, Ordering::AcqRel);
        true
    }

    /// `<task spawned at src/main.rs:12:5>`, the way reports name a task.
    pub(crate) fn describe(&self) -> String {
        match self.origin {
            Origin::Main => format!("<main task run at {}>", self.location),
            Origin::Spawned => format!("<task spawned at {}>", self.location),
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
                if !slot.will_wake(waker) {
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

    pub(crate) fn was_cancelled(&self) -> bool {
        self.requested.load(Ordering::Acquire) > 0
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
        if let Some(signal) = signal {
            self.record_signal(signal);
        }
        // SeqCst, as the waker's store and the poll's load of `requested`: either the poll
        // sees this request, or we see its waker (a request before the first poll is seen by
        // that poll).
        self.requested.fetch_add(1, Ordering::SeqCst);
        if let Some(waker) = self.waker.get() {
            waker.wake_by_ref();
        }
        // `cancelled()` futures polled elsewhere (e.g. axum's graceful-shutdown task). With
        // no observer there is no such future, and no lock to take (the close pass asks every
        // pending task). SeqCst with `observe`: a `cancelled()` made after this load sees the
        // request at its first poll.
        if self.observers.load(Ordering::SeqCst) > 0 {
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

#[cfg(test)]
mod size {
    #[test]
    fn a_record_fits_a_glibc_fastbin_chunk() {
        // See `Rare`: 120 bytes of payload, the `Arc` counts included.
        let size = std::mem::size_of::<super::TaskState>() + 2 * std::mem::size_of::<usize>();
        assert!(size <= 120, "ArcInner<TaskState> is {size} bytes");
    }
}
