//! The Runner's `!Send` tasks (`runner::spawn_local`): a tokio `LocalSet` made at the first
//! `spawn_local` and bound to the thread that runs the Runner's loop (its main task's thread:
//! asyncio's loop thread). Local tasks run exactly when the Runner's loop runs, like every
//! asyncio task:
//! - the main task's wrapper drives the set after each of its polls, and `close()` drives it
//!   while it cancels and finalizes;
//! - on a current-thread loop, where any task of the Runner may start a local task (they all
//!   run on that thread), a plain tokio task drives it as well: a local task started by
//!   another task must run even while the main task sleeps, and the set has no waker to
//!   call before something has driven it once.
//!
//! `Shared` is shared with every thread of the runtime, but the set is touched only on its
//! home thread (checked at each access), and `close()` takes it out and drops it there. A
//! Runner that is moved to another thread and closed there cannot reach its local tasks: it
//! leaks them, with a report, rather than drop `!Send` futures on a foreign thread.
//!
//! A tokio `LocalRuntime` loop has no set (tokio does not drive a `LocalSet` inside one): there
//! `spawn_local` spawns on the runtime itself (see `event_loop`).

use std::cell::UnsafeCell;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::task::Context as TaskCx;
use std::thread::{self, ThreadId};

use tokio::task::LocalSet;

pub(crate) struct LocalTasks {
    /// The thread of the first `spawn_local`; the set is only ever touched there.
    home: OnceLock<ThreadId>,
    /// Whether a set was made: the one check the main task's poll pays when none was.
    made: AtomicBool,
    set: UnsafeCell<Option<LocalSet>>,
}

// SAFETY: `set` is only read or written on the `home` thread (every access checks it), so the
// `!Send` set and its `!Send` futures never leave that thread; `home` and `made` are
// thread-safe themselves.
unsafe impl Sync for LocalTasks {}
// SAFETY: as above; dropping `LocalTasks` elsewhere leaks the set instead (see `Drop`).
unsafe impl Send for LocalTasks {}

/// Where `spawn_local` cannot put a task: the Runner's local tasks live on another thread.
pub(crate) struct ElsewhereHome;

impl LocalTasks {
    pub(crate) fn new() -> LocalTasks {
        LocalTasks {
            home: OnceLock::new(),
            made: AtomicBool::new(false),
            set: UnsafeCell::new(None),
        }
    }

    fn at_home(&self) -> bool {
        self.home.get() == Some(&thread::current().id())
    }

    /// The set, if one was made and this is its thread.
    fn here(&self) -> Option<&LocalSet> {
        if !self.made.load(Ordering::Acquire) || !self.at_home() {
            return None;
        }
        // SAFETY: on the home thread, where alone the set is written (in `get_or_make` and
        // `take`, neither of which runs while this shared borrow is used: `drive` and the
        // spawns it leads to only read).
        unsafe { (*self.set.get()).as_ref() }
    }

    /// Whether a set was made (a `spawn_local` happened).
    pub(crate) fn is_made(&self) -> bool {
        self.made.load(Ordering::Acquire)
    }

    /// `true` unless local tasks exist and live on another thread than this one.
    pub(crate) fn runs_here(&self) -> bool {
        !self.made.load(Ordering::Acquire) || self.at_home()
    }

    /// Makes this thread the home of the local tasks, unless one already is: the thread
    /// that runs the Runner's loop (its `run`, or its `close()`).
    pub(crate) fn claim_home(&self) {
        self.home.get_or_init(|| thread::current().id());
    }

    /// The set to spawn on, made on first use (then `true`); only on the home thread.
    pub(crate) fn get_or_make(&self) -> Result<(&LocalSet, bool), ElsewhereHome> {
        if !self.at_home() {
            return Err(ElsewhereHome);
        }
        let made_now = !self.made.load(Ordering::Acquire);
        if made_now {
            // SAFETY: on the home thread, and no borrow of the set is alive while it is
            // empty (`here` and `drive` see nothing to borrow).
            unsafe { *self.set.get() = Some(LocalSet::new()) };
            self.made.store(true, Ordering::Release);
        }
        // SAFETY: on the home thread; only shared borrows of a made set exist.
        let set = unsafe { (*self.set.get()).as_ref() }.ok_or(ElsewhereHome)?;
        Ok((set, made_now))
    }

    /// Runs the local tasks that are ready (a tick of the set), if this is their thread, and
    /// makes `cx` the waker of the set. Called from polls that run the Runner's loop.
    pub(crate) fn drive(&self, cx: &mut TaskCx<'_>) {
        if let Some(set) = self.here() {
            // `run_until` borrows the set shared, so a task it runs may spawn on it; with a
            // future that never ends, one poll is one tick.
            let tick = pin!(set.run_until(std::future::pending::<()>()));
            let _ = tick.poll(cx);
        }
    }

    /// Takes the set out for `close()` to drop: `Ok(None)` if none was made, `Err` if it
    /// lives on another thread than this one.
    pub(crate) fn take(&self) -> Result<Option<LocalSet>, ElsewhereHome> {
        if !self.made.load(Ordering::Acquire) {
            return Ok(None);
        }
        if !self.at_home() {
            return Err(ElsewhereHome);
        }
        self.made.store(false, Ordering::Release);
        // SAFETY: on the home thread, and no borrow of the set is alive (close() calls this
        // between its steps, outside any drive).
        Ok(unsafe { (*self.set.get()).take() })
    }
}

impl Drop for LocalTasks {
    fn drop(&mut self) {
        if let Some(set) = self.set.get_mut().take() {
            if !self.at_home() {
                // `!Send` futures must not be dropped on a foreign thread; `close()` has
                // reported this already.
                std::mem::forget(set);
            }
        }
    }
}
