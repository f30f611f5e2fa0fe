//! The record of one task (its cancel requests, how it ended, where it was spawned) and the
//! wrapper that drives every task the Runner runs, the main task included.
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
use std::future::Future;
use std::mem::MaybeUninit;
use std::panic::{self, AssertUnwindSafe, Location};
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskCx, Poll, Waker};
use std::time::Instant;

use crate::context::CtxState;
use crate::debug::{Report, ReportKind};
use crate::error::panic_message;
use crate::runner::lock;
use crate::scope::{self, Scope};
use crate::shared::Shared;
use crate::signal;

pub(crate) const DONE: u8 = 1;
const PANICKED: u8 = 2;
const DETACHED: u8 = 4;
const IN_CLOSE_PASS: u8 = 8;

pub(crate) const NO_SLOT: usize = usize::MAX;

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

    fn name(self) -> &'static str {
        match self {
            StopSignal::Interrupt => "Ctrl-C",
            StopSignal::Terminate => "SIGTERM",
        }
    }

    fn option(self) -> &'static str {
        match self {
            StopSignal::Interrupt => "handle_sigint = false",
            StopSignal::Terminate => "handle_sigterm = false",
        }
    }
}

/// The wakers of `cancelled()` futures polled outside their task's own poll (e.g. moved into
/// another task): a cancel request wakes them too, not only the task.
#[derive(Default)]
struct Watchers {
    next_id: u64,
    wakers: Vec<(u64, Waker)>,
}

/// What a task is, for reports.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    Main,
    Spawned,
    Blocking,
}

/// The task's waker, written once at its first poll: a task's waker is stable for its life
/// in tokio (and for one `block_on`), so `request_cancel` can read it without a lock.
/// (`OnceLock` would do, at the price of its `Once` machinery on every run's path.)
struct WakerSlot {
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
    unsafe fn store(&self, waker: &Waker) {
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
    requested: AtomicU32,
    delivered: AtomicU32,
    observers: AtomicU32,
    /// The `StopSignal` that cancelled (or reached the run of) a main task; 0: none.
    signal: AtomicU8,
    watchers: Mutex<Watchers>,
    flags: AtomicU8,
    pub(crate) slot: AtomicUsize,
    waker: WakerSlot,
    panic: Mutex<Option<String>>,
    shared: Option<Arc<Shared>>,
}

impl TaskState {
    pub(crate) fn new(
        location: &'static Location<'static>,
        origin: Origin,
        shared: Option<Arc<Shared>>,
    ) -> TaskState {
        TaskState {
            location,
            origin,
            requested: AtomicU32::new(0),
            delivered: AtomicU32::new(0),
            observers: AtomicU32::new(0),
            signal: AtomicU8::new(0),
            watchers: Mutex::new(Watchers {
                next_id: 0,
                wakers: Vec::new(),
            }),
            flags: AtomicU8::new(0),
            slot: AtomicUsize::new(NO_SLOT),
            waker: WakerSlot::new(),
            panic: Mutex::new(None),
            shared,
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
        *self.panic.get_mut().unwrap_or_else(|e| e.into_inner()) = None;
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
            self.observers.fetch_add(1, Ordering::AcqRel);
        } else {
            self.observers.fetch_sub(1, Ordering::AcqRel);
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
        lock(&self.panic).clone()
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
        let mut watchers = lock(&self.watchers);
        let watchers = &mut *watchers;
        if let Some(id) = *id {
            if let Some((_, slot)) = watchers.wakers.iter_mut().find(|(w, _)| *w == id) {
                if !slot.will_wake(waker) {
                    slot.clone_from(waker);
                }
                return;
            }
        }
        let new_id = watchers.next_id;
        watchers.next_id += 1;
        watchers.wakers.push((new_id, waker.clone()));
        *id = Some(new_id);
    }

    /// A `cancelled()` future went away: forget its waker.
    pub(crate) fn unwatch(&self, id: u64) {
        let mut watchers = lock(&self.watchers);
        if let Some(at) = watchers.wakers.iter().position(|(w, _)| *w == id) {
            watchers.wakers.swap_remove(at);
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
        // `cancelled()` futures polled elsewhere (e.g. axum's graceful-shutdown task).
        let watchers = lock(&self.watchers);
        for (_, waker) in &watchers.wakers {
            waker.wake_by_ref();
        }
        true
    }

    pub(crate) fn record_panic(&self, payload: &(dyn Any + Send)) {
        *lock(&self.panic) = Some(panic_message(payload));
        let before = self.flags.fetch_or(PANICKED, Ordering::AcqRel);
        if before & DETACHED != 0 {
            self.report_unretrieved();
        }
    }

    /// The `Task` handle went away unawaited: a panic nobody will see gets reported.
    pub(crate) fn detach(&self) {
        let before = self.flags.fetch_or(DETACHED, Ordering::AcqRel);
        if before & PANICKED != 0 {
            self.report_unretrieved();
        }
    }

    fn report_unretrieved(&self) {
        let Some(shared) = &self.shared else { return };
        // asyncio: "Task exception was never retrieved" (debug mode only, as the panic hook
        // has already printed the panic itself).
        if shared.debug && self.flags.load(Ordering::Acquire) & IN_CLOSE_PASS == 0 {
            shared.report(Report::new(
                ReportKind::PanicNeverRetrieved,
                format!("Task panic was never retrieved: {}", self.describe()),
                Some(self.location),
                self.panicked(),
            ));
        }
    }

    /// The task has ended: leave the Runner's registry (waking `close()` if it waits on us).
    fn finish(&self) {
        let before = self.flags.fetch_or(DONE, Ordering::AcqRel);
        if before & DONE != 0 {
            return;
        }
        if let Some(shared) = &self.shared {
            if before & IN_CLOSE_PASS != 0 {
                shared.close_pass_task_done(self, before & PANICKED != 0);
            } else {
                shared.deregister(self);
            }
        }
    }
}

/// What a wrapped future came to.
pub(crate) enum Outcome<T> {
    Done(T),
    Cancelled,
    Panicked(Box<dyn Any + Send>),
}

/// Wraps every task the Runner drives (the main task included): swaps the task's scope in
/// for each poll, delivers cancel requests, catches panics, and times polls in debug mode.
pub(crate) struct Guarded<F> {
    inner: Option<F>,
    /// `scope.task` owns the task's record; `state` points into it (one `Arc`, not two).
    scope: Scope,
    state: NonNull<TaskState>,
    debug: bool,
    waker_set: bool,
    /// The main task arms signal handling at its first poll, right after storing its waker
    /// (so the listener thread never races that store), and disarms as it ends.
    signals: signal::Wanted,
    armed: Option<signal::Armed>,
}

// SAFETY: `state` points into the `Arc<TaskState>` owned by `scope.task` (which is `Send`);
// everything else is `Send` when `F` is.
unsafe impl<F: Send> Send for Guarded<F> {}

impl<F: Future> Guarded<F> {
    pub(crate) fn new(
        inner: F,
        ctx: CtxState,
        task: Arc<TaskState>,
        runner: Option<Arc<Shared>>,
        debug: bool,
        signals: signal::Wanted,
    ) -> Guarded<F> {
        let state = NonNull::from(&*task);
        let scope = Scope {
            ctx,
            runner,
            task: Some(task),
            in_run: true,
        };
        Guarded {
            inner: Some(inner),
            scope,
            state,
            debug,
            waker_set: false,
            signals,
            armed: None,
        }
    }
}

impl<F> Guarded<F> {
    /// Drops the inner future with the task's scope entered, so destructors see the task's
    /// context; a panicking destructor is caught (and returned) rather than unwinding on.
    fn drop_inner(inner: &mut Option<F>) -> Option<Box<dyn Any + Send>> {
        panic::catch_unwind(AssertUnwindSafe(|| *inner = None)).err()
    }

    /// The context and the record as the ended task left them (the main task's go back to
    /// its Runner).
    pub(crate) fn take_ended(self: Pin<&mut Self>) -> (CtxState, Option<Arc<TaskState>>) {
        // SAFETY: `scope` is not structurally pinned; nothing is moved out of `inner`.
        let this = unsafe { self.get_unchecked_mut() };
        debug_assert!(this.inner.is_none());
        let ctx = std::mem::replace(&mut this.scope.ctx, CtxState::EMPTY);
        (ctx, this.scope.task.take())
    }
}

impl<F: Future> Future for Guarded<F> {
    type Output = Outcome<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<Self::Output> {
        // SAFETY: `inner` is never moved out of the pinned `Guarded`; it is only polled in
        // place or dropped in place. The other fields are not structurally pinned.
        let Guarded {
            inner,
            scope,
            state,
            debug,
            waker_set,
            signals,
            armed,
        } = unsafe { self.get_unchecked_mut() };
        // SAFETY: `scope.task` keeps the record alive while `inner` is `Some`.
        let state: &TaskState = unsafe { state.as_ref() };
        let Some(fut) = inner.as_mut() else {
            return Poll::Pending;
        };
        if !*waker_set {
            // SAFETY: a spawned task's slot is empty until now; the main task is not armed
            // yet, so nothing can be reading its slot.
            unsafe { state.waker.store(cx.waker()) };
            *waker_set = true;
            *armed = signal::arm(state, *signals);
        }
        let entered = scope::Entered::new(scope);

        let requested = state.requested.load(Ordering::SeqCst);
        let cancel = requested > state.delivered.load(Ordering::Acquire) && {
            state.delivered.fetch_max(requested, Ordering::AcqRel);
            state.observers.load(Ordering::Acquire) == 0
        };
        let mut took = None;
        let dropped_by = cancel.then(|| state.stop_signal()).flatten();
        let outcome = if cancel {
            // Not observing: the cancel request drops the future where it stands.
            match Self::drop_inner(inner) {
                Some(payload) => Err(payload),
                None => Ok(None),
            }
        } else {
            // SAFETY: `fut` stays where it is inside the pinned `Guarded`.
            let fut = unsafe { Pin::new_unchecked(fut) };
            let started = debug.then(Instant::now);
            let result = panic::catch_unwind(AssertUnwindSafe(|| fut.poll(cx)));
            took = started.map(|s| s.elapsed());
            match result {
                Ok(Poll::Pending) => Ok(Some(Poll::Pending)),
                Ok(Poll::Ready(value)) => match Self::drop_inner(inner) {
                    None => Ok(Some(Poll::Ready(value))),
                    Some(payload) => Err(payload),
                },
                Err(payload) => {
                    let _ = Self::drop_inner(inner);
                    Err(payload)
                }
            }
        };
        drop(entered);
        if let (true, Some(signal)) = (*debug, dropped_by) {
            if let Some(shared) = scope.runner.clone().or_else(scope::current_runner) {
                shared.report(Report::new(
                    ReportKind::MainTaskDropped,
                    format!(
                        "{}: the main task was not observing runner::cancelled() and was \
                         dropped; hold runner::cancelled() to clean up asynchronously, or build \
                         the Runner with {} if the program handles the signal itself (e.g. \
                         with tokio::signal)",
                        signal.name(),
                        signal.option()
                    ),
                    Some(state.location),
                    None,
                ));
            }
        }
        if let Some(took) = took {
            // The main task has no `runner` of its own: it finds it through the run.
            if let Some(shared) = scope.runner.clone().or_else(scope::current_runner) {
                shared.check_slow_poll(state, took);
            }
        }
        let outcome = match outcome {
            Ok(Some(Poll::Pending)) => return Poll::Pending,
            Ok(Some(Poll::Ready(value))) => Outcome::Done(value),
            Ok(None) => Outcome::Cancelled,
            Err(payload) => {
                state.record_panic(payload.as_ref());
                Outcome::Panicked(payload)
            }
        };
        if let Some(signal) = armed.take().and_then(signal::Armed::disarm) {
            state.record_signal(signal);
        }
        state.finish();
        Poll::Ready(outcome)
    }
}

impl<F> Drop for Guarded<F> {
    fn drop(&mut self) {
        if self.inner.is_some() {
            // The runtime dropped the task before it ended (shutdown): run its destructors in
            // its own scope, then leave the registry.
            let entered = scope::Entered::new(&mut self.scope);
            let _ = Guarded::<F>::drop_inner(&mut self.inner);
            drop(entered);
        }
        drop(self.armed.take());
        if self.scope.task.is_some() {
            // SAFETY: `scope.task` keeps the record alive.
            unsafe { self.state.as_ref() }.finish();
        }
    }
}
