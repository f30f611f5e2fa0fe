//! The per-thread "where am I" record: current context, Runner, task, and whether a run is
//! active. Every task wrapper swaps its own record in for the length of one poll, so the
//! record follows the task from thread to thread (tokio's `task_local!` does not follow
//! spawned tasks; asyncio's contextvars do).

use std::cell::{Cell, RefCell};
use std::mem;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context as TaskCx, Poll, RawWaker, RawWakerVTable, Waker};

use tokio::runtime::{self, Handle};

use crate::context::CtxState;
use crate::shared::Shared;
use crate::task_state::TaskState;
use crate::util::lock_std;

pub(crate) struct Scope {
    pub(crate) ctx: CtxState,
    pub(crate) runner: Option<Arc<Shared>>,
    pub(crate) task: Option<Arc<TaskState>>,
    /// True on a thread that is inside `Runner::run` (or polling one of its tasks): a nested
    /// `run` there would make tokio panic, so `run` reports `NestedRun` instead.
    pub(crate) in_run: bool,
}

impl Scope {
    const EMPTY: Scope = Scope {
        ctx: CtxState::EMPTY,
        runner: None,
        task: None,
        in_run: false,
    };
}

thread_local! {
    // `const`-initialized: no lazy-init check on the `ContextVar::get` fast path.
    static SCOPE: RefCell<Scope> = const { RefCell::new(Scope::EMPTY) };
    /// The Runner whose `run` is active on this thread (null: none). A plain pointer, not an
    /// `Arc`: the Runner holds its `Arc<Shared>` for the whole run, and `Runner::run` sits on
    /// a path measured in nanoseconds. The main task and plain tokio tasks polled on this
    /// thread find their Runner here.
    static RUN: Cell<*const Shared> = const { Cell::new(std::ptr::null()) };
}

/// Marks this thread as running `shared`'s `run` until dropped.
pub(crate) struct RunGuard {
    previous: *const Shared,
    /// The record of the code that called `run`, when it belongs to another Runner (a
    /// `runner::spawn_blocking` job starting a Runner of its own), put back at the end.
    outer: Option<Scope>,
}

impl RunGuard {
    pub(crate) fn enter(shared: &Arc<Shared>) -> RunGuard {
        let previous = RUN.with(|run| run.replace(Arc::as_ptr(shared)));
        // Plain tokio tasks that this run polls on this thread see the thread's record. A
        // blocking job of another Runner left its Runner and context there: that Runner
        // must not be theirs (its close would not cancel what they spawn), nor that context
        // (they would write into the job's). They get a copy of it and no Runner, so they
        // find this run's.
        let outer = if read(|s| s.runner.is_some()).unwrap_or(false) {
            let mut neutral = Scope {
                ctx: CtxState::copy_current(),
                ..Scope::EMPTY
            };
            swap(&mut neutral);
            Some(neutral)
        } else {
            None
        };
        RunGuard { previous, outer }
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        if let Some(outer) = &mut self.outer {
            swap(outer);
        }
        let _ = RUN.try_with(|run| run.set(self.previous));
    }
}

/// Runs `f` on this thread's record. `None` while the thread is being torn down.
pub(crate) fn with<R>(f: impl FnOnce(&mut Scope) -> R) -> Option<R> {
    SCOPE.try_with(|s| f(&mut borrow_mut(s))).ok()
}

/// Reads this thread's record (a shared borrow: cheap, and `f` may read again).
#[inline]
pub(crate) fn read<R>(f: impl FnOnce(&Scope) -> R) -> Option<R> {
    SCOPE.try_with(|s| f(&s.borrow())).ok()
}

fn borrow_mut(s: &RefCell<Scope>) -> std::cell::RefMut<'_, Scope> {
    match s.try_borrow_mut() {
        Ok(scope) => scope,
        // Only reachable from a `Clone` impl of a context value that sets a ContextVar
        // while `ContextVar::get` is cloning it.
        Err(_) => {
            panic!("runner: a ContextVar was changed from inside Clone::clone of a context value")
        }
    }
}

/// Exchanges this thread's record with `other`.
pub(crate) fn swap(other: &mut Scope) {
    let _ = SCOPE.try_with(|s| mem::swap(&mut *borrow_mut(s), other));
}

/// While alive, `scope` is this thread's record; dropping it (also while unwinding) swaps
/// the previous record back and leaves `scope` holding what the guarded code made of it.
pub(crate) struct Entered<'a> {
    scope: &'a mut Scope,
}

impl<'a> Entered<'a> {
    pub(crate) fn new(scope: &'a mut Scope) -> Entered<'a> {
        swap(scope);
        Entered { scope }
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        swap(self.scope);
    }
}

/// `true` if `shared`'s `run` is active on this thread (its loop runs here).
pub(crate) fn runs_here(shared: &Shared) -> bool {
    RUN.try_with(|run| std::ptr::eq(run.get(), shared))
        .unwrap_or(false)
}

pub(crate) fn in_run() -> bool {
    RUN.try_with(|run| !run.get().is_null()).unwrap_or(false) || read(|s| s.in_run).unwrap_or(false)
}

/// The Runner running the current code: the task's own, else the run on this thread, else
/// (a plain `tokio::spawn` task on a worker thread of a multi-thread Runner) the one that
/// owns the current runtime.
pub(crate) fn current_runner() -> Option<Arc<Shared>> {
    if let Some(shared) = read(|s| s.runner.clone()).flatten() {
        return Some(shared);
    }
    let run = RUN.try_with(Cell::get).ok()?;
    if run.is_null() {
        return runner_of_current_runtime();
    }
    // SAFETY: non-null only while a `RunGuard` lives, and the Runner keeps its `Arc<Shared>`
    // (which `run` points into) alive at least that long; this takes one more reference.
    unsafe {
        Arc::increment_strong_count(run);
        Some(Arc::from_raw(run))
    }
}

/// The live Runners by runtime, for code that runs on a Runner's runtime but outside its
/// tasks (plain `tokio::spawn` tasks on worker threads). Weak, and left at close: the table
/// keeps nothing alive.
static RUNTIMES: Mutex<Vec<(runtime::Id, Weak<Shared>)>> = Mutex::new(Vec::new());

/// Makes `shared` findable from its runtime's threads (at lazy init).
pub(crate) fn remember_runtime(shared: &Arc<Shared>) {
    let mut table = lock_std(&RUNTIMES);
    // A Runner leaked with `mem::forget` never leaves the table: do not let its entry grow it.
    table.retain(|(_, known)| known.strong_count() > 0);
    table.push((shared.handle.id(), Arc::downgrade(shared)));
}

/// The other half of [`remember_runtime`], at close, once the runtime is gone (until then
/// its threads may still run tasks that look for their Runner).
pub(crate) fn forget_runtime(shared: &Shared) {
    let id = shared.handle.id();
    lock_std(&RUNTIMES).retain(|(known, _)| *known != id);
}

#[cold]
fn runner_of_current_runtime() -> Option<Arc<Shared>> {
    let id = Handle::try_current().ok()?.id();
    let table = lock_std(&RUNTIMES);
    let (_, shared) = table.iter().find(|(known, _)| *known == id)?;
    shared.upgrade()
}

/// `true` while this thread polls a tokio task or a `block_on` future, of any runtime: there
/// tokio forbids blocking (`Runtime::block_on` and dropping a runtime panic).
///
/// tokio has no public "may I block here?". Its cooperative budget tells: tokio gives one to
/// exactly those polls, while blocking-pool threads, `block_in_place` and plain code run
/// unconstrained. Reading it costs at most 256 budget checks (the budget is a `u8`), and
/// only inside a tokio context; the budget is left as it was. A poll wrapped in
/// `tokio::task::unconstrained` looks unconstrained too (callers that block make sure of it
/// some other way).
pub(crate) fn in_tokio_poll() -> bool {
    if Handle::try_current().is_err() {
        return false;
    }
    let waker = noop_waker();
    let mut cx = TaskCx::from_waker(&waker);
    // The first guard remembers the budget as it was; dropping it puts that back.
    let mut first = None;
    for _ in 0..=u8::MAX as usize {
        if !tokio::task::coop::has_budget_remaining() {
            return true;
        }
        match tokio::task::coop::poll_proceed(&mut cx) {
            Poll::Ready(guard) if first.is_none() => first = Some(guard),
            // Plain data (a budget); only the first one restores anything.
            Poll::Ready(guard) => mem::forget(guard),
            Poll::Pending => return true,
        }
    }
    false
}

/// A waker that does nothing (`Waker::noop` is newer than this crate's MSRV). The budget
/// probe above never leaves it anywhere: it stops before the budget runs out.
fn noop_waker() -> Waker {
    const VTABLE: RawWakerVTable = RawWakerVTable::new(|_| RAW, |_| {}, |_| {}, |_| {});
    const RAW: RawWaker = RawWaker::new(std::ptr::null(), &VTABLE);
    // SAFETY: every vtable function ignores the (null) data pointer.
    unsafe { Waker::from_raw(RAW) }
}
