//! The wrapper that drives every task the Runner runs, the main task included: it swaps the
//! task's scope in for each poll, delivers cancel requests (see `task_state` for how), catches
//! panics, and times polls in debug mode.

use std::any::Any;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskCx, Poll};
use std::time::{Duration, Instant};

use crate::debug::{Report, ReportKind};
use crate::error::{dispose, panic_message};
use crate::local::LocalTasks;
use crate::scope::{self, Scope};
use crate::shared::Shared;
use crate::signal;
use crate::task_state::{Decision, StopSignal, TaskState};
use crate::vars::CtxState;

/// What a wrapped future came to.
pub(crate) enum Outcome<T> {
    Done(T),
    Cancelled,
    Panicked(Box<dyn Any + Send>),
}

/// What one poll of the wrapped future came to.
enum Step<T> {
    Pending,
    Done(T),
    Cancelled,
    Panicked(Box<dyn Any + Send>),
}

/// Wraps every task the Runner drives (the main task included): swaps the task's scope in
/// for each poll, delivers cancel requests, catches panics, and times polls in debug mode.
///
/// `M` is what only the main task's wrapper carries ([`Main`]); a spawned task's wrapper is
/// its future and its scope, nothing more ([`Spawned`]): the wrapper lives inside tokio's
/// task allocation, whose size tokio rounds up to a multiple of 128 bytes, and every byte
/// there is paid by every pending task (issue 31: a task sleeping in `tokio::time::sleep`
/// fits 256 bytes with a 40-byte wrapper, and took 384 with the main task's fields).
pub(crate) struct Guarded<F, M: Role = Main> {
    inner: Option<F>,
    /// `scope.task` owns the task's record (the wrapper reaches the record through it).
    scope: Scope,
    main: M,
}

/// The main task's part of its wrapper.
pub(crate) struct Main {
    debug: bool,
    /// Polled once already (its signals armed).
    waker_set: bool,
    /// The main task arms signal handling at its first poll, right after storing its waker
    /// (so the listener thread never races that store), and disarms as it ends.
    signals: signal::Wanted,
    armed: Option<signal::Armed>,
    /// The main task drives its Runner's `spawn_local` tasks after each of its polls (null
    /// when it has none to drive). Valid for the run: the Runner holds its `Shared` meanwhile.
    local: *const LocalTasks,
}

/// A spawned task's part of its wrapper: nothing (its debug flag is its Runner's).
pub(crate) struct Spawned;

/// What the wrapper does differently for the main task.
pub(crate) trait Role {
    /// Whether debug mode times this task's polls.
    fn debug(&self, scope: &Scope) -> bool;
    /// Each poll, right after the task's waker is stored: the main task arms signal handling
    /// at its first.
    fn polled(&mut self, state: &TaskState);
    /// After a poll that left the task pending: the main task drives the local tasks.
    fn pending(&self, cx: &mut TaskCx<'_>);
    /// As the task ends: the main task disarms, and says which signal reached its run.
    fn disarm(&mut self) -> Option<StopSignal>;
    /// The wrapper goes away: a main task still armed (one that did not end) disarms.
    fn release(&mut self);
}

impl Role for Main {
    #[inline]
    fn debug(&self, _: &Scope) -> bool {
        self.debug
    }

    #[inline]
    fn polled(&mut self, state: &TaskState) {
        if !self.waker_set {
            self.waker_set = true;
            self.armed = signal::arm(state, self.signals);
        }
    }

    #[inline]
    fn pending(&self, cx: &mut TaskCx<'_>) {
        // SAFETY: non-null only while its Runner holds `Shared` (see `local`).
        if let Some(local) = unsafe { self.local.as_ref() } {
            local.drive(cx);
        }
    }

    #[inline]
    fn disarm(&mut self) -> Option<StopSignal> {
        self.armed.take().and_then(signal::Armed::disarm)
    }

    fn release(&mut self) {
        drop(self.armed.take());
    }
}

impl Role for Spawned {
    #[inline]
    fn debug(&self, scope: &Scope) -> bool {
        scope.runner.as_ref().is_some_and(|shared| shared.debug)
    }

    #[inline]
    fn polled(&mut self, _: &TaskState) {}

    #[inline]
    fn pending(&self, _: &mut TaskCx<'_>) {}

    #[inline]
    fn disarm(&mut self) -> Option<StopSignal> {
        None
    }

    #[inline]
    fn release(&mut self) {}
}

// SAFETY: `local` is null except in a main task, which is polled by `block_on` on its own
// thread and never sent; everything else of `Main` is `Send`.
unsafe impl Send for Main {}

impl<F: Future> Guarded<F> {
    /// A wrapper for a main task. It has no Runner in its scope: the run on its thread is
    /// its Runner (see `scope::with_runner`).
    pub(crate) fn new(
        inner: F,
        ctx: CtxState,
        task: Arc<TaskState>,
        debug: bool,
        signals: signal::Wanted,
    ) -> Guarded<F> {
        let main = Main {
            debug,
            waker_set: false,
            signals,
            armed: None,
            local: std::ptr::null(),
        };
        Guarded::with_role(inner, ctx, task, None, main)
    }

    /// Makes this (main) task drive `local` after each of its polls.
    pub(crate) fn driving(mut self, local: &LocalTasks) -> Guarded<F> {
        self.main.local = local;
        self
    }
}

impl<F: Future> Guarded<F, Spawned> {
    /// The wrapper of a task spawned on `runner` (which registered `task`).
    pub(crate) fn spawned(
        inner: F,
        ctx: CtxState,
        task: Arc<TaskState>,
        runner: &Arc<Shared>,
    ) -> Guarded<F, Spawned> {
        Guarded::with_role(inner, ctx, task, Some(runner), Spawned)
    }
}

impl<F: Future, M: Role> Guarded<F, M> {
    fn with_role(
        inner: F,
        ctx: CtxState,
        task: Arc<TaskState>,
        runner: Option<&Arc<Shared>>,
        main: M,
    ) -> Guarded<F, M> {
        // SAFETY: an `Arc` made from the pointer of a live one, not counted: forgotten in
        // `Drop`, never dropped (the task's registration keeps the state alive meanwhile).
        let runner = runner.map(|shared| unsafe { Arc::from_raw(Arc::as_ptr(shared)) });
        let scope = Scope {
            ctx,
            runner,
            task: Some(task),
            in_run: true,
            isolated: true,
        };
        Guarded {
            inner: Some(inner),
            scope,
            main,
        }
    }

    /// One poll of the wrapped future in the task's scope: delivers a pending cancel request
    /// by dropping the future, else polls it, catching its panic. `TIMED` (debug mode) also
    /// gives how long the poll took and which signal dropped the task; without it the
    /// compiler drops that bookkeeping from the common path.
    #[inline(always)]
    fn step<const TIMED: bool>(
        inner: &mut Option<F>,
        scope: &mut Scope,
        state: &TaskState,
        cx: &mut TaskCx<'_>,
    ) -> (Step<F::Output>, Option<Duration>, Option<StopSignal>) {
        // One access of the thread's record for the whole poll (see `scope`).
        scope::poll_in(scope, || {
            if state.decide() == Decision::Drop {
                // Not observing: the cancel request drops the future where it stands.
                let step = match Self::drop_inner(inner) {
                    Some(payload) => Step::Panicked(payload),
                    None => Step::Cancelled,
                };
                if state.polled_cancelled() {
                    report_dropped_mid_work(state);
                }
                return (step, None, TIMED.then(|| state.stop_signal()).flatten());
            }
            let Some(fut) = inner.as_mut() else {
                return (Step::Pending, None, None);
            };
            // SAFETY: `fut` stays where it is inside the pinned `Guarded`.
            let fut = unsafe { Pin::new_unchecked(fut) };
            let started = TIMED.then(Instant::now);
            let result = panic::catch_unwind(AssertUnwindSafe(|| fut.poll(cx)));
            let took = started.map(|s| s.elapsed());
            let step = match result {
                Ok(Poll::Pending) => Step::Pending,
                Ok(Poll::Ready(value)) => match Self::drop_inner(inner) {
                    None => Step::Done(value),
                    Some(payload) => Step::Panicked(payload),
                },
                Err(payload) => {
                    if let Some(again) = Self::drop_inner(inner) {
                        dispose(again);
                    }
                    Step::Panicked(payload)
                }
            };
            (step, took, None)
        })
    }
}

impl<F, M: Role> Guarded<F, M> {
    /// Drops the inner future with the task's scope entered, so destructors see the task's
    /// context; a panicking destructor is caught (and returned) rather than unwinding on.
    fn drop_inner(inner: &mut Option<F>) -> Option<Box<dyn Any + Send>> {
        panic::catch_unwind(AssertUnwindSafe(|| *inner = None)).err()
    }

    /// The task's record, kept alive by `scope.task` (which no poll or drop of the wrapper
    /// changes): a reference that does not borrow `scope`, which the poll swaps in. Callers
    /// use it only while the wrapper lives.
    #[inline]
    fn record<'a>(scope: &Scope) -> Option<&'a TaskState> {
        // SAFETY: see above.
        scope
            .task
            .as_ref()
            .map(|task| unsafe { &*Arc::as_ptr(task) })
    }
}

impl<F> Guarded<F> {
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

impl<F: Future, M: Role> Future for Guarded<F, M> {
    type Output = Outcome<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<Self::Output> {
        // SAFETY: `inner` is never moved out of the pinned `Guarded`; it is only polled in
        // place or dropped in place. The other fields are not structurally pinned.
        let Guarded { inner, scope, main } = unsafe { self.get_unchecked_mut() };
        if inner.is_none() {
            return Poll::Pending;
        }
        let Some(state) = Self::record(scope) else {
            return Poll::Pending;
        };
        // Every poll: a cancel request must wake the latest poll's waker (the `Future`
        // contract), and an executor may change wakers between polls. The same waker again
        // costs a compare.
        // SAFETY: we are the task's poller (`&mut self`), one poll at a time.
        unsafe { state.set_waker(cx.waker()) };
        main.polled(state);
        let step = if main.debug(scope) {
            let (step, took, dropped_by) = Self::step::<true>(inner, scope, state, cx);
            // The main task has no `runner` of its own: it finds it through the run. A main
            // task that had looked for cancellation before got `report_dropped_mid_work`.
            let dropped_by = dropped_by.filter(|_| !state.polled_cancelled());
            if took.is_some() || dropped_by.is_some() {
                if let Some(shared) = scope.runner.clone().or_else(scope::current_runner) {
                    if let Some(signal) = dropped_by {
                        shared.report_main_task_dropped(state, signal);
                    }
                    if let Some(took) = took {
                        shared.check_slow_poll(state, took);
                    }
                }
            }
            step
        } else {
            Self::step::<false>(inner, scope, state, cx).0
        };
        let outcome = match step {
            Step::Pending => {
                main.pending(cx);
                return Poll::Pending;
            }
            Step::Done(value) => Outcome::Done(value),
            Step::Cancelled => Outcome::Cancelled,
            Step::Panicked(payload) => {
                if state.record_panic(payload.as_ref()) {
                    if let Some(shared) = &scope.runner {
                        shared.report_unretrieved(state);
                    }
                }
                Outcome::Panicked(payload)
            }
        };
        if let Some(signal) = main.disarm() {
            state.record_signal(signal);
        }
        finish(state, scope);
        Poll::Ready(outcome)
    }
}

impl<F, M: Role> Drop for Guarded<F, M> {
    fn drop(&mut self) {
        if self.inner.is_some() {
            // The runtime dropped the task before it ended (shutdown, step 4 of `close()`):
            // run its destructors in its own scope, then leave the registry. A panic there
            // has nobody left to see it but the Runner's report.
            let inner = &mut self.inner;
            let panicked = scope::poll_in(&mut self.scope, || Self::drop_inner(inner));
            if let Some(payload) = panicked {
                if let (Some(shared), Some(state)) = (&self.scope.runner, Self::record(&self.scope))
                {
                    shared.report(Report::make(
                        ReportKind::PanicDuringShutdown,
                        format!(
                            "unhandled panic during Runner shutdown in {}, dropped by the \
                             runtime",
                            state.describe()
                        ),
                        Some(state.location),
                        Some(panic_message(payload.as_ref())),
                    ));
                }
                dispose(payload);
            }
        }
        self.main.release();
        if let Some(state) = Self::record(&self.scope) {
            // Ended at its last poll already (the common case): a load, not another RMW.
            // Only this wrapper marks its task done, so the load sees its own mark.
            if !state.is_done() {
                finish(state, &self.scope);
            }
        }
        // Uncounted, and maybe freed by now (see `finish`): never dropped as an `Arc`.
        std::mem::forget(self.scope.runner.take());
    }
}

/// A cancel dropped a task that had polled a `cancelled()` before but held none when the
/// cancel came: the unit of work it was in is lost. Reported in every mode: the task looked
/// for cancellation, so this is a surprise to its author (the `select!` loop that makes a
/// fresh `cancelled()` each iteration, ported from `CancellationToken`).
/// Called inside the task's scope (where its Runner is found, the main task's too).
#[cold]
fn report_dropped_mid_work(state: &TaskState) {
    if let Some(shared) = scope::current_runner() {
        shared.report(Report::make(
            ReportKind::DroppedMidWork,
            format!(
                "{} was dropped by a cancel while it held no runner::cancelled(), although it \
                 had polled one before: the work it was doing was cut. A select! loop that \
                 makes a fresh runner::cancelled() each iteration is not observing while it \
                 works; make one before the loop (`let mut stop = runner::cancelled();`) and \
                 select on `&mut stop`, so that a cancel during the work is seen at the next \
                 iteration",
                state.describe()
            ),
            Some(state.location),
            None,
        ));
    }
}

/// The task has ended: it leaves its Runner's registry (waking `close()` if it waits on it),
/// and with that gives back its reference to the Runner's state.
///
/// The wrapper, not the record, holds that reference: the runtime drops the wrapper at
/// shutdown at the latest, so the Runner's state never owns itself through its tasks. It is
/// an uncounted `Arc` (a count every worker would touch at each spawn and end): the task's
/// registration is the reference (see `registry`), so nothing of the wrapper may touch the
/// Runner's state after this, and the `Arc` is forgotten, never dropped (`Drop`).
fn finish(state: &TaskState, scope: &Scope) {
    if let Some(ended) = state.finish() {
        if let Some(shared) = &scope.runner {
            // SAFETY: the Runner that registered this task, alive until the registry has
            // taken the task's reference back; nothing touches it after (see above).
            unsafe { Shared::task_ended(Arc::as_ptr(shared), state, ended) };
        }
    }
}

/// The waker contract with a hand-written executor (no tokio): each poll gets a waker of its
/// own, and between polls the executor listens to the latest one only, as the `Future`
/// contract allows. A cancel request from another thread, at a random moment, must still
/// reach the task. (tokio passes one waker per task, which is why the old store-once code
/// passed every other test; `task_state`'s loom models check the protocol itself.)
#[cfg(all(test, not(runner_loom)))]
mod tests {
    use std::future::Future;
    use std::panic::Location;
    use std::pin::pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Condvar, Mutex};
    use std::task::{Context as TaskCx, Poll, Wake, Waker};
    use std::time::Duration;

    use super::{Guarded, Outcome};
    use crate::signal::Wanted;
    use crate::task_state::{Origin, TaskState};
    use crate::vars::CtxState;

    /// One poll's waker: set when woken, and the executor waits on it.
    #[derive(Default)]
    struct Flag {
        woken: Mutex<bool>,
        changed: Condvar,
    }

    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            *self.woken.lock().unwrap() = true;
            self.changed.notify_all();
        }
    }

    impl Flag {
        /// `false` if not woken within `limit`.
        fn wait(&self, limit: Duration) -> bool {
            let woken = self.woken.lock().unwrap();
            let (woken, _) = self
                .changed
                .wait_timeout_while(woken, limit, |woken| !*woken)
                .unwrap();
            *woken
        }
    }

    /// Pending forever, after waking itself `left` times (so that it is polled that many
    /// times more, each time through a new waker); counts its drops.
    struct Busy {
        left: usize,
        dropped: Arc<AtomicUsize>,
    }

    impl Future for Busy {
        type Output = ();
        fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<()> {
            if self.left > 0 {
                self.left -= 1;
                cx.waker().wake_by_ref();
            }
            Poll::Pending
        }
    }

    impl Drop for Busy {
        fn drop(&mut self) {
            self.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A small xorshift, seeded from the clock: where the cancel lands.
    fn rng() -> impl FnMut() -> u64 {
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let mut x = (clock.as_nanos() as u64 ^ u64::from(std::process::id())) | 1;
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    #[test]
    fn a_cancel_reaches_a_task_whose_executor_changes_wakers_between_polls() {
        let mut next = rng();
        for round in 0..200 {
            let state = Arc::new(TaskState::new(Location::caller(), Origin::Spawned));
            let dropped = Arc::new(AtomicUsize::new(0));
            let busy = Busy {
                left: (next() % 8) as usize,
                dropped: dropped.clone(),
            };
            let guarded = Guarded::new(
                busy,
                CtxState::EMPTY,
                state.clone(),
                false,
                Wanted::default(),
            );
            let mut guarded = pin!(guarded);
            // The request, from another thread, at a random moment of the polls.
            let spin = next() % 20_000;
            let canceller = {
                let state = state.clone();
                std::thread::spawn(move || {
                    for _ in 0..spin {
                        std::hint::spin_loop();
                    }
                    assert!(state.request_cancel(None));
                })
            };
            let mut polls = 0;
            let outcome = loop {
                let flag = Arc::new(Flag::default());
                let waker = Waker::from(flag.clone());
                polls += 1;
                if let Poll::Ready(outcome) = guarded.as_mut().poll(&mut TaskCx::from_waker(&waker))
                {
                    break outcome;
                }
                assert!(
                    flag.wait(Duration::from_secs(10)),
                    "round {round}: cancel lost after {polls} polls: the latest poll's waker \
                     was never woken (only an earlier poll's)"
                );
            };
            canceller.join().unwrap();
            assert!(matches!(outcome, Outcome::Cancelled), "round {round}");
            assert_eq!(dropped.load(Ordering::SeqCst), 1, "round {round}");
        }
    }
}

/// The size of a spawned task's wrapper: what it adds to tokio's task allocation (tokio rounds
/// that up to 128 bytes: see `Guarded`). A task sleeping in `tokio::time::sleep` (112 bytes)
/// must stay within tokio's 256-byte cell.
#[cfg(all(test, not(runner_loom)))]
mod size {
    #[test]
    fn a_spawned_tasks_wrapper_is_its_future_and_its_scope() {
        use std::mem::size_of;
        type Spawned<F> = super::Guarded<F, super::Spawned>;
        let sleep = size_of::<tokio::time::Sleep>();
        assert_eq!(size_of::<crate::scope::Scope>(), 40);
        assert_eq!(size_of::<Spawned<tokio::time::Sleep>>(), sleep + 40);
        assert_eq!(size_of::<Spawned<std::future::Pending<()>>>(), 48);
    }
}
