//! The per-thread "where am I" record: current context, Runner, task, and whether a run is
//! active. Every task wrapper swaps its own record in for the length of one poll, so the
//! record follows the task from thread to thread (tokio's `task_local!` does not follow
//! spawned tasks; asyncio's contextvars do).

use std::cell::RefCell;
use std::mem;
use std::sync::Arc;

use crate::context::CtxState;
use crate::runner::Shared;
use crate::task::TaskState;

pub(crate) struct Scope {
    pub(crate) ctx: CtxState,
    pub(crate) runner: Option<Arc<Shared>>,
    pub(crate) task: Option<Arc<TaskState>>,
    /// True on a thread that is inside `Runner::run` (or polling one of its tasks): a nested
    /// `run` there would make tokio panic, so `run` reports `NestedRun` instead.
    pub(crate) in_run: bool,
}

impl Scope {
    pub(crate) fn new(ctx: CtxState) -> Scope {
        Scope {
            ctx,
            runner: None,
            task: None,
            in_run: false,
        }
    }
}

thread_local! {
    static SCOPE: RefCell<Scope> = RefCell::new(Scope::new(CtxState::fresh()));
}

/// Runs `f` on this thread's record. `None` while the thread is being torn down.
pub(crate) fn with<R>(f: impl FnOnce(&mut Scope) -> R) -> Option<R> {
    SCOPE.try_with(|s| f(&mut s.borrow_mut())).ok()
}

/// Exchanges this thread's record with `other`.
pub(crate) fn swap(other: &mut Scope) {
    let _ = SCOPE.try_with(|s| mem::swap(&mut *s.borrow_mut(), other));
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

pub(crate) fn in_run() -> bool {
    with(|s| s.in_run).unwrap_or(false)
}

pub(crate) fn current_runner() -> Option<Arc<Shared>> {
    with(|s| s.runner.clone()).flatten()
}
