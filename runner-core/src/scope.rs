//! The per-thread "where am I" record, one thread-local for everything runner needs to know
//! about the running code: its context, its Runner, its task, whether a run is active here,
//! and whether this is the process's main thread.
//!
//! Every task wrapper swaps its own [`Scope`] in for the length of one poll, so the record
//! follows the task from thread to thread (tokio's `task_local!` does not follow spawned
//! tasks; asyncio's contextvars do). A run costs two accesses of the record (`begin_run`
//! and the guard's end) and a poll one (`poll_in`): each access of a thread-local that
//! needs a destructor checks its registration, so they are kept few.

use std::cell::{Cell, UnsafeCell};
use std::collections::VecDeque;
use std::mem;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context as TaskCx, Poll, Waker};

use tokio::runtime::{self, Handle};

use crate::shared::Shared;
use crate::task_state::TaskState;
use crate::util::lock_std;
use crate::vars::CtxState;

/// What the running code is: the task's context, Runner and record.
pub(crate) struct Scope {
    pub(crate) ctx: CtxState,
    pub(crate) runner: Option<Arc<Shared>>,
    pub(crate) task: Option<Arc<TaskState>>,
    /// True while a task of a Runner (or a `close()`) runs: a nested `run` there would make
    /// tokio panic, so `run` reports `NestedRun` instead.
    pub(crate) in_run: bool,
    /// The context belongs to the running code alone (a task of the Runner, a blocking job,
    /// `close()`, or a future given a scope of its own: `ContextVar::scope`). False for a
    /// thread's own scope, which every plain tokio task polled on the thread shares: a
    /// `ContextVar::set` there would be seen by all of them, so it is refused.
    pub(crate) isolated: bool,
}

impl Scope {
    const EMPTY: Scope = Scope {
        ctx: CtxState::EMPTY,
        runner: None,
        task: None,
        in_run: false,
        isolated: false,
    };
}

/// Whether this is the process's main thread: asked of the OS once per thread.
const MAIN_UNKNOWN: u8 = 0;
const MAIN_NO: u8 = 1;
const MAIN_YES: u8 = 2;

/// `Here::borrow` while something changes the current scope.
const WRITING: isize = -1;

struct Here {
    /// The thread's own scope: what plain code (outside any task) runs in.
    base: UnsafeCell<Scope>,
    /// The scope of the task being polled here (null: `base`). A pointer, swapped in and out
    /// around each poll (two stores), to a scope that the task wrapper owns and keeps in place
    /// for the length of the poll: the scope follows the task, not the thread.
    current: Cell<*mut Scope>,
    /// Readers of the current scope (`ContextVar::get` cloning a value), or `WRITING`: a
    /// `RefCell`'s flag, for whichever scope is current. A change while a value is being
    /// read could free what is read, so it panics instead.
    borrow: Cell<isize>,
    /// The Runner whose `run` is active on this thread (null: none). A plain pointer, not an
    /// `Arc`: the Runner holds its `Arc<Shared>` for the whole run, and `Runner::run` sits on
    /// a path measured in nanoseconds. The main task and plain tokio tasks polled on this
    /// thread find their Runner here.
    run: Cell<*const Shared>,
    main: Cell<u8>,
}

thread_local! {
    // `const`-initialized: no lazy-init check on the `ContextVar::get` fast path.
    static HERE: Here = const {
        Here {
            base: UnsafeCell::new(Scope::EMPTY),
            current: Cell::new(std::ptr::null_mut()),
            borrow: Cell::new(0),
            run: Cell::new(std::ptr::null()),
            main: Cell::new(MAIN_UNKNOWN),
        }
    };
}

impl Here {
    fn current(&self) -> *mut Scope {
        let current = self.current.get();
        if current.is_null() {
            self.base.get()
        } else {
            current
        }
    }
}

/// Gives back a borrow of the current scope.
struct Release<'a>(&'a Cell<isize>, isize);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.0.set(self.1);
    }
}

/// Runs `f` on this thread's current scope. `None` while the thread is being torn down.
/// `f` must not run code that reaches the scope again (user code: a `Drop` of a value, a
/// `Clone`): take such values out and drop them after.
pub(crate) fn with<R>(f: impl FnOnce(&mut Scope) -> R) -> Option<R> {
    HERE.try_with(|h| {
        let before = h.borrow.get();
        if before != 0 {
            // Only reachable from a `Clone` impl of a context value that sets a ContextVar
            // while `ContextVar::get` is cloning it.
            panic!("runner: a ContextVar was changed from inside Clone::clone of a context value");
        }
        h.borrow.set(WRITING);
        let _release = Release(&h.borrow, before);
        // SAFETY: the current scope lives at least as long as it is current (its owner keeps
        // it in place while it is), and the flag above excludes every other borrow of it.
        f(unsafe { &mut *h.current() })
    })
    .ok()
}

/// Reads this thread's current scope (a shared borrow: cheap, and `f` may read again).
#[inline]
pub(crate) fn read<R>(f: impl FnOnce(&Scope) -> R) -> Option<R> {
    HERE.try_with(|h| {
        let before = h.borrow.get();
        if before == WRITING {
            panic!("runner: a ContextVar was read while the context was being changed");
        }
        h.borrow.set(before + 1);
        let _release = Release(&h.borrow, before);
        // SAFETY: as in `with`; readers only share.
        f(unsafe { &*h.current() })
    })
    .ok()
}

/// Runs `f` with `ctx` as the running code's context, isolated (see `Scope::isolated`), in
/// whatever scope is current (a task's, a plain task's thread scope): the task, Runner and
/// run stay what they are. `ctx` holds what `f` made of it afterwards. Should `f` unwind,
/// the previous context is current again. For `Context::run` and scoped futures.
pub(crate) fn enter_ctx<R>(ctx: &mut CtxState, f: impl FnOnce() -> R) -> R {
    /// Swaps the context back (and the isolation flag) when dropped.
    struct Back<'a>(&'a mut CtxState, bool);
    impl Drop for Back<'_> {
        fn drop(&mut self) {
            let (ctx, isolated) = (&mut *self.0, self.1);
            with(|s| {
                std::mem::swap(&mut s.ctx, ctx);
                s.isolated = isolated;
            });
        }
    }
    let was_isolated = with(|s| {
        std::mem::swap(&mut s.ctx, ctx);
        std::mem::replace(&mut s.isolated, true)
    });
    match was_isolated {
        Some(was_isolated) => {
            let _back = Back(ctx, was_isolated);
            f()
        }
        // The thread is being torn down: run without a record.
        None => f(),
    }
}

/// `true` if a `ContextVar::set` here must be refused: the running code is a plain tokio
/// task (or a plain `tokio::task::spawn_blocking` job), whose context is its thread's, shared
/// with every other plain task polled on the thread. Code outside any tokio task (a thread's
/// own code, a `block_on` future such as a `#[tokio::main]` body) keeps its per-thread
/// context, as in asyncio outside any task.
pub(crate) fn set_would_leak(s: &Scope) -> bool {
    !s.isolated && tokio::task::try_id().is_some()
}

/// A copy of the running code's context (asyncio's `copy_context()`).
///
/// The copy counts on the running code's own map, made private to it on its first copy
/// (`CtxState::copy_for_child`): two workers spawning from copies of one context then touch
/// no count in common (issue 31). That changes the running scope's map (for the same
/// values), so it is done only when no borrow of the scope is alive; under one (a spawn from
/// inside a context value's `Clone`, say) the copy shares the map as it is.
pub(crate) fn copy_ctx() -> CtxState {
    HERE.try_with(|h| copy_current(h, h.current()))
        .unwrap_or(CtxState::EMPTY)
}

/// [`copy_ctx`] with the thread's record and its current scope in hand.
#[inline(always)]
fn copy_current(h: &Here, current: *mut Scope) -> CtxState {
    match h.borrow.get() {
        // SAFETY: no borrow of the current scope is alive (its flag is clear), nothing else
        // runs meanwhile, and the copy runs no user code (it drops no value).
        0 => unsafe { (*current).ctx.copy_for_child() },
        WRITING => panic!("runner: a ContextVar was read while the context was being changed"),
        // SAFETY: only shared borrows are alive; this one is shared too (as `read`).
        _ => unsafe { (*current).ctx.copy() },
    }
}

/// Runs `f` with `scope` as this thread's current scope (one access of the thread-local, and
/// two pointer stores, for the whole poll). `scope` stays in place meanwhile, and holds what
/// `f` made of it afterwards. Should `f` unwind, the previous scope is current again.
#[inline]
pub(crate) fn poll_in<R>(scope: &mut Scope, f: impl FnOnce() -> R) -> R {
    /// The previous scope and its borrow flag (the flag belongs to the scope: a scope
    /// swapped in, e.g. by a task dropped inside `runner::spawn`, starts unborrowed).
    struct Back<'a>(&'a Here, *mut Scope, isize);
    impl Drop for Back<'_> {
        fn drop(&mut self) {
            self.0.current.set(self.1);
            self.0.borrow.set(self.2);
        }
    }
    let here = HERE.try_with(|h| {
        // SAFETY: the thread-local outlives this call on this thread; the reference does not
        // leave it.
        unsafe { &*(h as *const Here) }
    });
    match here {
        Ok(here) => {
            let _back = Back(here, here.current.replace(scope), here.borrow.replace(0));
            f()
        }
        // The thread is being torn down: run without a record.
        Err(_) => f(),
    }
}

/// Marks this thread as running a Runner's `run` until dropped; made by [`begin_run`].
pub(crate) struct RunGuard {
    here: &'static Here,
    previous: *const Shared,
    /// The current scope of the code that called `run`, when it belongs to another Runner
    /// (a `spawn_blocking` job of one Runner running a Runner of its own), and the scope
    /// put in its place for the length of the run (boxed: the guard moves).
    set_aside: Option<(*mut Scope, Box<Scope>)>,
    /// This is the process's main thread (where signals may be armed).
    pub(crate) main_thread: bool,
}

/// Starts a run on this thread; `None` if this thread is already inside a run or a task of a
/// Runner (`Runner::run` must then return `NestedRun`). One access of the record for the
/// check, the main-thread answer, and the guard; [`RunGuard::enter`] names the Runner once it
/// is initialized.
pub(crate) fn begin_run() -> Option<RunGuard> {
    HERE.try_with(|h| {
        // SAFETY: a shared look at the current scope (see `with`); nothing runs meanwhile.
        if !h.run.get().is_null() || unsafe { (*h.current()).in_run } {
            return None;
        }
        // SAFETY: the thread-local outlives the guard, which lives on this thread's stack.
        let here: &'static Here = unsafe { &*(h as *const Here) };
        Some(RunGuard {
            here,
            previous: std::ptr::null(),
            set_aside: None,
            main_thread: is_main(h),
        })
    })
    .ok()
    .flatten()
}

impl RunGuard {
    /// Makes `shared` the Runner of this thread's run.
    pub(crate) fn enter(&mut self, shared: &Arc<Shared>) {
        self.previous = self.here.run.replace(Arc::as_ptr(shared));
        // Plain tokio tasks that this run polls on this thread see the thread's record. A
        // blocking job of another Runner left its Runner and context there: that Runner
        // must not be theirs (its close would not cancel what they spawn), nor that context
        // (they would write into the job's). They get a copy of it and no Runner, so they
        // find this run's.
        // SAFETY: a shared look at the current scope (see `with`); nothing runs meanwhile.
        if unsafe { (*self.here.current()).runner.is_some() } {
            self.set_aside_outer();
        }
    }

    #[cold]
    fn set_aside_outer(&mut self) {
        // SAFETY: as above.
        let ctx = unsafe { (*self.here.current()).ctx.copy() };
        let mut neutral = Box::new(Scope {
            ctx,
            ..Scope::EMPTY
        });
        let outer = self.here.current.replace(&mut *neutral);
        self.set_aside = Some((outer, neutral));
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        if let Some((outer, _neutral)) = self.set_aside.take() {
            self.here.current.set(outer);
        }
        self.here.run.set(self.previous);
    }
}

/// `true` if this thread is inside a run or a task of a Runner.
pub(crate) fn in_run() -> bool {
    // SAFETY: a shared look at the current scope (see `with`); nothing runs meanwhile.
    HERE.try_with(|h| !h.run.get().is_null() || unsafe { (*h.current()).in_run })
        .unwrap_or(false)
}

/// `true` if `shared`'s `run` is active on this thread (its loop runs here).
pub(crate) fn runs_here(shared: &Shared) -> bool {
    HERE.try_with(|h| std::ptr::eq(h.run.get(), shared))
        .unwrap_or(false)
}

/// The Runner running the current code: the task's own, else the run on this thread, else
/// (a plain `tokio::spawn` task on a worker thread of a multi-thread Runner) the one that
/// owns the current runtime.
pub(crate) fn current_runner() -> Option<Arc<Shared>> {
    with_runner(Arc::clone)
}

/// Runs `f` with the Runner running the current code (as [`current_runner`] finds it),
/// borrowed where that costs no reference count: `runner::spawn` clones it once, for the
/// task. `f` must not change the current scope (it runs under a read of it).
#[inline]
pub(crate) fn with_runner<R>(f: impl FnOnce(&Arc<Shared>) -> R) -> Option<R> {
    let mut f = Some(f);
    let mut call = |shared: &Arc<Shared>| f.take().map(|f| f(shared));
    if let Some(done) = read(|s| s.runner.as_ref().and_then(&mut call)).flatten() {
        return Some(done);
    }
    let run = HERE.try_with(|h| h.run.get()).unwrap_or(std::ptr::null());
    if !run.is_null() {
        // SAFETY: non-null only while a `RunGuard` lives, and the Runner keeps its
        // `Arc<Shared>` (which `run` points into) alive at least that long; borrowed, never
        // dropped here.
        let shared = std::mem::ManuallyDrop::new(unsafe { Arc::from_raw(run) });
        return call(&shared);
    }
    call(&runner_of_current_runtime()?)
}

/// For `runner::spawn`, in one access of the thread's record: a copy of the running code's
/// context for the new task (as [`copy_ctx`] makes it), and the Runner running the code (as
/// [`with_runner`] finds it), borrowed for `f`, which gets `value` too. `Err(value)` when
/// no Runner runs the current code.
///
/// `f` runs with no borrow of the scope held: it gets the Runner as a pointer copied out of
/// the scope (alive meanwhile: the running task's scope, or the Runner of the run on this
/// thread, holds it for at least as long as this call), so it may do anything a spawn does,
/// e.g. drop a task inline when the runtime is shut down.
#[inline]
pub(crate) fn with_runner_and_ctx<T, R>(
    value: T,
    f: impl FnOnce(&Arc<Shared>, CtxState, T) -> R,
) -> Result<R, T> {
    let found = HERE.try_with(|h| {
        let current = h.current();
        let ctx = copy_current(h, current);
        // SAFETY: a shared look at the current scope (see `with`); nothing runs meanwhile.
        let runner = match unsafe { (*current).runner.as_ref() } {
            Some(shared) => Arc::as_ptr(shared),
            None => h.run.get(),
        };
        (ctx, runner)
    });
    let (ctx, runner) = found.unwrap_or((CtxState::EMPTY, std::ptr::null()));
    if !runner.is_null() {
        // SAFETY: alive for this call (see above); borrowed, never dropped here.
        let shared = std::mem::ManuallyDrop::new(unsafe { Arc::from_raw(runner) });
        return Ok(f(&shared, ctx, value));
    }
    match runner_of_current_runtime() {
        Some(shared) => Ok(f(&shared, ctx, value)),
        None => Err(value),
    }
}

/// What a `cancelled()` made in plain code observes (plain code: not a task of a Runner, but
/// on a Runner's runtime: a plain tokio task such as axum's shutdown task, a blocking job).
/// Its Runner's close, and the main task of the Runner's active run where that can be
/// reached: on the run's own thread (every plain task of a current-thread or local loop), or
/// through the Runner where it publishes its main task (a multi-thread loop). `None`
/// outside any Runner.
pub(crate) fn plain_observed() -> Option<(Option<Arc<TaskState>>, Arc<crate::stop::RunnerStop>)> {
    // The scope's own Runner (a blocking job, `close()`) comes first, as in `with_runner`.
    if let Some(found) = read(|s| {
        s.runner
            .as_ref()
            .map(|shared| (shared.active_main(), shared.stop.clone()))
    })
    .flatten()
    {
        return Some(found);
    }
    let on_run_thread = HERE
        .try_with(|h| {
            let run = h.run.get();
            if run.is_null() {
                return None;
            }
            // SAFETY: as in `with_runner`: borrowed, never dropped here.
            let shared = std::mem::ManuallyDrop::new(unsafe { Arc::from_raw(run) });
            // SAFETY: the record of the run active on this very thread (see
            // `Shared::run_main`), alive while the run is; one more strong reference, given
            // back by the `Arc` made from it.
            let main = shared.run_main().map(|main| unsafe {
                Arc::increment_strong_count(main);
                Arc::from_raw(main)
            });
            Some((main, shared.stop.clone()))
        })
        .ok()
        .flatten();
    if on_run_thread.is_some() {
        return on_run_thread;
    }
    match runner_of_current_runtime() {
        Some(shared) => Some((shared.active_main(), shared.stop.clone())),
        // The Runner has closed: its close resolves the future at once.
        None if on_a_closed_runners_runtime() => {
            Some((None, Arc::new(crate::stop::RunnerStop::closed())))
        }
        None => None,
    }
}

fn is_main(h: &Here) -> bool {
    match h.main.get() {
        MAIN_YES => true,
        MAIN_NO => false,
        _ => {
            let main = ask_is_main_thread();
            h.main.set(if main { MAIN_YES } else { MAIN_NO });
            main
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn ask_is_main_thread() -> bool {
    // SAFETY: plain syscalls without arguments.
    unsafe { libc::syscall(libc::SYS_gettid) as libc::pid_t == libc::getpid() }
}

#[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
fn ask_is_main_thread() -> bool {
    // SAFETY: no arguments, no preconditions.
    unsafe { libc::pthread_main_np() == 1 }
}

#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd"
)))]
fn ask_is_main_thread() -> bool {
    false
}

/// The live Runners by runtime, for code that runs on a Runner's runtime but outside its
/// tasks (plain `tokio::spawn` tasks on worker threads). Weak: the table keeps nothing alive.
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
    let mut closed = lock_std(&CLOSED_RUNTIMES);
    if closed.len() == CLOSED_KEPT {
        closed.pop_front();
    }
    closed.push_back(id);
}

/// The runtimes of the Runners closed last, newest at the back. A `close()` that gave up
/// waiting (blocking work past the shutdown timeout) returns while the runtime's threads may
/// still run code: a worker stuck in a plain task's poll, which then goes on, or drops its
/// tasks. There `runner::spawn` and the like find no Runner, and must not panic (a panic in a
/// destructor during unwinding aborts): they act as on a Runner that has closed. Runtime ids
/// are never reused; a few dozen cover every close still unwinding.
static CLOSED_RUNTIMES: Mutex<VecDeque<runtime::Id>> = Mutex::new(VecDeque::new());
const CLOSED_KEPT: usize = 64;

/// `true` on a thread of the runtime of a Runner that has closed (see [`CLOSED_RUNTIMES`]):
/// for the paths that find no Runner, before they report "no runner".
#[cold]
pub(crate) fn on_a_closed_runners_runtime() -> bool {
    let Ok(handle) = Handle::try_current() else {
        return false;
    };
    let id = handle.id();
    lock_std(&CLOSED_RUNTIMES).contains(&id)
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
#[inline]
pub(crate) fn in_tokio_poll() -> bool {
    Handle::try_current().is_ok() && budget_says_polling()
}

#[cold]
fn budget_says_polling() -> bool {
    let mut cx = TaskCx::from_waker(Waker::noop());
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
