//! The Runner-level half of `cancelled()` for plain code: a `cancelled()` made in a plain
//! tokio task (axum's shutdown task, hyper's connection tasks, any `tokio::spawn`) belongs to
//! no task of the Runner, so nothing of the Runner would ever ask it to resolve. It observes
//! the Runner instead: the main task of the run active when it was made (see
//! `scope::plain_observed`), and the Runner's close, which is kept here.
//!
//! Kept apart from `Shared` (in an `Arc` of its own) so that a `cancelled()` that outlives
//! its Runner keeps only this small record alive, never the runtime's drivers.
//!
//! Not on any hot path: a plain `cancelled()` takes the lock when it is made, polled and
//! dropped. `close()` marks the Runner closing (waking every plain `cancelled()` waiting),
//! then waits, bounded by its step 1 deadline, until no plain `cancelled()` is left: a plain
//! task that holds one says "I clean up on shutdown", as a task of the Runner that holds one
//! does, and `close()` gives both the same time.

use std::task::{Context as TaskCx, Poll, Waker};

use crate::sync::atomic::{AtomicBool, Ordering};
use crate::sync::Mutex;
use crate::util::lock;

pub(crate) struct RunnerStop {
    closing: AtomicBool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Live plain `cancelled()` futures.
    observers: usize,
    next_watch: u64,
    /// The wakers of those that were polled.
    watchers: Vec<(u64, Waker)>,
    /// `close()`, waiting for `observers` to reach zero.
    closer: Option<Waker>,
}

impl RunnerStop {
    pub(crate) fn new() -> RunnerStop {
        RunnerStop {
            closing: AtomicBool::new(false),
            state: Mutex::new(State::default()),
        }
    }

    /// A close already done: for code still running on the runtime of a Runner that has
    /// closed (see `scope::on_a_closed_runners_runtime`).
    pub(crate) fn closed() -> RunnerStop {
        let stop = RunnerStop::new();
        stop.close();
        stop
    }

    /// A plain `cancelled()` was made.
    pub(crate) fn observe(&self) {
        lock(&self.state).observers += 1;
    }

    /// A plain `cancelled()` went away (`watch`: its entry among the watchers, if polled).
    /// The last one to go while the Runner closes wakes `close()`.
    pub(crate) fn unobserve(&self, watch: Option<u64>) {
        let closer = {
            let mut state = lock(&self.state);
            if let Some(id) = watch {
                if let Some(at) = state.watchers.iter().position(|(w, _)| *w == id) {
                    state.watchers.swap_remove(at);
                }
            }
            state.observers -= 1;
            (state.observers == 0)
                .then(|| state.closer.take())
                .flatten()
        };
        if let Some(closer) = closer {
            closer.wake();
        }
    }

    /// `true` once `close()` has begun.
    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Remembers `waker` under `id` (a fresh id when `None`), so that the close wakes it.
    pub(crate) fn watch(&self, id: &mut Option<u64>, waker: &Waker) {
        let mut state = lock(&self.state);
        if let Some(id) = *id {
            if let Some((_, slot)) = state.watchers.iter_mut().find(|(w, _)| *w == id) {
                if !slot.will_wake(waker) {
                    slot.clone_from(waker);
                }
                return;
            }
        }
        let new_id = state.next_watch;
        state.next_watch += 1;
        state.watchers.push((new_id, waker.clone()));
        *id = Some(new_id);
    }

    /// `close()` has begun: every plain `cancelled()` resolves, now and from now on.
    ///
    /// A poll that registered before the lock below is woken here; one that registers
    /// after it checks `closing` after taking the same lock, and sees it set.
    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::Release);
        let watchers = std::mem::take(&mut lock(&self.state).watchers);
        for (_, waker) in watchers {
            waker.wake();
        }
    }

    /// How many plain `cancelled()` futures are alive (for reports).
    pub(crate) fn observers(&self) -> usize {
        lock(&self.state).observers
    }

    /// For `close()`: ready once no plain `cancelled()` is left.
    pub(crate) fn poll_idle(&self, cx: &mut TaskCx<'_>) -> Poll<()> {
        let mut state = lock(&self.state);
        if state.observers == 0 {
            return Poll::Ready(());
        }
        match &mut state.closer {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}
