//! The Runner's `!Send` tasks (`runner::spawn_local`): a tokio `LocalSet` per Runner, made at
//! the first `spawn_local` and owned by the thread that runs the Runner's loop (its main
//! task's thread: asyncio's loop thread). Local tasks run exactly when the Runner's loop runs,
//! like every asyncio task:
//! - the main task's wrapper drives the set after each of its polls, and `close()` drives it
//!   while it cancels and finalizes;
//! - on a current-thread loop, where any task of the Runner may start a local task (they all
//!   run on that thread), a plain tokio task drives it as well: a local task started by
//!   another task must run even while the main task sleeps, and the set has no waker to
//!   call before something has driven it once.
//!
//! # The set belongs to its thread, not to the Runner
//! The set lives in a thread-local of its home thread ([`SETS`]); the Runner's shared state
//! keeps only atomics about it ([`Home`]: where it lives, how many local futures are alive,
//! whether `close()` is done with it). So `!Send` futures are only ever touched, and
//! dropped, on the thread that made them, and nothing of the Runner owns them:
//! - a Runner with pending local tasks is bound to their thread: `run` elsewhere returns
//!   `RunError::WrongThread` (checked in `Runner::run`, one atomic load when no set was
//!   made); with none pending, `run` elsewhere moves the home there;
//! - `close()` on another thread cannot reach them: it reports them and leaves them to their
//!   thread, which drops them when it next makes a set or exits. Only they wait: the
//!   runtime is shut down (their futures keep the Runner's shared state, and so its handle,
//!   until then, which is why that thread does not wait for its exit when it can help it);
//! - at thread exit the thread-local's destructor drops what is left, on that thread;
//! - once `close()` is done with local tasks (or could not be), a `spawn_local` (a
//!   destructor of a task dropped in close's last step, say) drops its future at once and
//!   returns a `Task` that awaits to `Cancelled`: a set made then would never be driven or
//!   dropped, and its task would keep the Runner's state, runtime handle and fds alive.
//!
//! A tokio `LocalRuntime` loop has no set (tokio does not drive a `LocalSet` inside one): there
//! `spawn_local` spawns on the runtime itself (see `event_loop`).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::{self, AssertUnwindSafe, Location};
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context as TaskCx, Poll};
use std::thread::{self, ThreadId};

use tokio::task::LocalSet;

use crate::debug::{Report, ReportKind};
use crate::error::{dispose, RunError};
use crate::scope;
use crate::shared::Shared;
use crate::task::Task;
use crate::task_state::Origin;
use crate::util::lock_std;

/// No set anywhere that `spawn_local` could use: the next one is made where it is called.
const NONE: u8 = 0;
/// The set lives on the thread tagged `Home::tag`.
const MADE: u8 = 1;
/// `close()` is done with local tasks (or could not reach them): no set is made any more.
const CLOSED: u8 = 2;

/// The Runner's side of its local tasks: only atomics, so that it can be shared with every
/// thread of the runtime while the set itself stays on its own.
pub(crate) struct LocalTasks {
    home: Arc<Home>,
    /// A set was made at some point: the one check (inline, no pointer to follow) that a
    /// run and each poll of a main task pay when the program never uses `spawn_local`.
    ever_made: AtomicBool,
}

struct Home {
    state: AtomicU8,
    /// The [`this_thread`] tag of the thread where the set lives or will be made; 0: none.
    tag: AtomicU64,
    /// The same thread, for errors and reports (written when the tag is, read cold).
    thread: Mutex<Option<ThreadId>>,
    /// Local futures alive in the set (spawned and not yet dropped).
    pending: AtomicUsize,
    /// On a current-thread loop, the plain task that drives the set is spawned once.
    driver: AtomicBool,
}

/// The Runner's local tasks live on another thread than this one (`close()` leaves them
/// there; `pending` of them are still alive).
pub(crate) struct ElsewhereHome {
    pub(crate) pending: usize,
}

/// One Runner's set on this thread.
struct Entry {
    home: Arc<Home>,
    /// For the report of tasks dropped at thread exit (weak: the set must not keep the
    /// Runner alive; its tasks do, while they are there).
    owner: Weak<Shared>,
    /// `Rc`: a drive holds its own reference, so a set dropped meanwhile (a task that closes
    /// another Runner, a sweep) lives until the drive is over.
    set: Rc<LocalSet>,
}

/// This thread's sets; its destructor drops them at thread exit, on this thread.
struct Sets(RefCell<Vec<Entry>>);

thread_local! {
    /// A number for this thread that fits an atomic (a `ThreadId` does not, on stable).
    /// No destructor: readable at thread exit too.
    static TAG: Cell<u64> = const { Cell::new(0) };
    static SETS: Sets = const { Sets(RefCell::new(Vec::new())) };
}

static NEXT_TAG: AtomicU64 = AtomicU64::new(1);

fn this_thread() -> u64 {
    TAG.with(|tag| match tag.get() {
        0 => {
            let new = NEXT_TAG.fetch_add(1, Ordering::Relaxed);
            tag.set(new);
            new
        }
        known => known,
    })
}

impl LocalTasks {
    pub(crate) fn new() -> LocalTasks {
        LocalTasks {
            home: Arc::new(Home {
                state: AtomicU8::new(NONE),
                tag: AtomicU64::new(0),
                thread: Mutex::new(None),
                pending: AtomicUsize::new(0),
                driver: AtomicBool::new(false),
            }),
            ever_made: AtomicBool::new(false),
        }
    }

    /// Whether the plain tokio task that drives the sets of a current-thread loop was
    /// spawned (at the first `spawn_local`; it runs until the runtime shuts down).
    pub(crate) fn driver_spawned(&self) -> bool {
        self.home.driver.load(Ordering::Acquire)
    }

    /// `true` unless local tasks exist and live on another thread than this one (also once
    /// `close()` left them there).
    pub(crate) fn runs_here(&self) -> bool {
        let home = &self.home;
        home.state.load(Ordering::Acquire) == NONE
            || home.pending.load(Ordering::Acquire) == 0
            || home.tag.load(Ordering::Acquire) == this_thread()
    }

    /// DESIGN's "bound to the thread that made its local tasks", at the start of a run: `Ok`
    /// if this thread may run the Runner's loop. With local tasks pending on another thread,
    /// [`RunError::WrongThread`] (they could neither run here nor be awaited); with none, the
    /// next `spawn_local` makes a set here. One atomic load when no set was made.
    #[inline]
    pub(crate) fn check_thread(&self) -> Result<(), RunError> {
        if !self.ever_made.load(Ordering::Acquire) {
            return Ok(());
        }
        self.check_made()
    }

    #[cold]
    fn check_made(&self) -> Result<(), RunError> {
        if self.home.state.load(Ordering::Acquire) != MADE
            || self.home.tag.load(Ordering::Acquire) == this_thread()
        {
            return Ok(());
        }
        self.home.moved()
    }

    /// Makes this thread the home of the local tasks, unless some are pending on another
    /// thread (or a set lives here already): `close()` runs the loop here now, and a task it
    /// runs may start local tasks (a destructor of one it cancels, say).
    pub(crate) fn claim_home(&self) {
        if self.check_thread().is_ok() && self.home.state.load(Ordering::Acquire) == NONE {
            self.home.claim(this_thread());
        }
    }

    /// Runs the local tasks that are ready (a tick of the set), if this is their thread, and
    /// makes `cx` the waker of the set. Called from polls that run the Runner's loop.
    #[inline]
    pub(crate) fn drive(&self, cx: &mut TaskCx<'_>) {
        if self.ever_made.load(Ordering::Acquire) {
            self.drive_made(cx);
        }
    }

    fn drive_made(&self, cx: &mut TaskCx<'_>) {
        if self.home.state.load(Ordering::Acquire) != MADE
            || self.home.tag.load(Ordering::Acquire) != this_thread()
        {
            return;
        }
        let Some(set) = self.home.set_if_here() else {
            return;
        };
        // `run_until` borrows the set shared, so a task it runs may spawn on it; with a
        // future that never ends, one poll is one tick.
        let tick = pin!(set.run_until(std::future::pending::<()>()));
        let _ = tick.poll(cx);
    }

    /// `close()` is done with local tasks from here on; takes the set out for it to drop:
    /// `Ok(None)` if there is none, `Err` if it lives on another thread than this one (it
    /// stays there, for that thread to drop).
    pub(crate) fn take(&self) -> Result<Option<Rc<LocalSet>>, ElsewhereHome> {
        let home = &self.home;
        if home.state.swap(CLOSED, Ordering::AcqRel) != MADE {
            return Ok(None);
        }
        if home.tag.load(Ordering::Acquire) != this_thread() {
            return Err(ElsewhereHome {
                pending: home.pending.load(Ordering::Acquire),
            });
        }
        let taken = SETS.try_with(|sets| {
            let mut sets = sets.0.try_borrow_mut().ok()?;
            let at = sets.iter().position(|e| Arc::ptr_eq(&e.home, home))?;
            Some(sets.swap_remove(at).set)
        });
        // The thread is being torn down: its sets are being dropped, or are gone.
        Ok(taken.ok().flatten())
    }
}

impl Home {
    fn claim(&self, tag: u64) {
        *lock_std(&self.thread) = Some(thread::current().id());
        self.tag.store(tag, Ordering::Release);
    }

    #[cold]
    fn moved(&self) -> Result<(), RunError> {
        if self.pending.load(Ordering::Acquire) > 0 {
            let home = *lock_std(&self.thread);
            let here = thread::current().id();
            return Err(RunError::WrongThread {
                home: home.unwrap_or(here),
                here,
            });
        }
        // Nothing left on the old thread (its empty set is swept there): the next
        // `spawn_local` makes one here.
        if self
            .state
            .compare_exchange(MADE, NONE, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.tag.store(0, Ordering::Release);
        }
        Ok(())
    }

    /// This Runner's set on this thread, if there is one.
    fn set_if_here(self: &Arc<Home>) -> Option<Rc<LocalSet>> {
        SETS.try_with(|sets| {
            let sets = sets.0.try_borrow().ok()?;
            let entry = sets.iter().find(|e| Arc::ptr_eq(&e.home, self))?;
            Some(entry.set.clone())
        })
        .ok()
        .flatten()
    }

    /// This Runner's set on this thread, made if there is none; `None` while the thread is
    /// being torn down (no set can be made or reached then).
    /// The set of this thread, made if there is none: `true` with it when made now.
    fn set_or_make(self: &Arc<Home>, owner: &Arc<Shared>) -> Option<(Rc<LocalSet>, bool)> {
        if let Some(set) = self.set_if_here() {
            self.state.store(MADE, Ordering::Release);
            return Some((set, false));
        }
        // tokio asks its own thread-local for the set's owner: gone at thread exit.
        let set = Rc::new(panic::catch_unwind(LocalSet::new).ok()?);
        let me = this_thread();
        let swept = SETS
            .try_with(|sets| {
                let mut sets = sets.0.try_borrow_mut().ok()?;
                let swept = sweep(&mut sets, me);
                sets.push(Entry {
                    home: self.clone(),
                    owner: Arc::downgrade(owner),
                    set: set.clone(),
                });
                Some(swept)
            })
            .ok()
            .flatten()?;
        self.state.store(MADE, Ordering::Release);
        // Dropped outside the borrow: their tasks' destructors may spawn.
        drop(swept);
        Some((set, true))
    }
}

/// Takes out the sets of this thread that nobody will drive again: their Runner closed (on
/// another thread: this is where its tasks get dropped), moved its home away (their set is
/// empty), or is gone.
fn sweep(sets: &mut Vec<Entry>, me: u64) -> Vec<Entry> {
    let mut swept = Vec::new();
    let mut i = 0;
    while i < sets.len() {
        let home = &sets[i].home;
        let done = home.state.load(Ordering::Acquire) == CLOSED
            || home.tag.load(Ordering::Acquire) != me
            || sets[i].owner.strong_count() == 0;
        if done {
            swept.push(sets.swap_remove(i));
        } else {
            i += 1;
        }
    }
    swept
}

impl Drop for Sets {
    fn drop(&mut self) {
        // Thread exit: the local tasks of Runners still open die with their thread (no async
        // cleanup: tokio cannot run on a thread whose thread-locals are going away). The
        // Runner may go on elsewhere: it is no longer bound to this thread.
        let me = this_thread();
        for entry in std::mem::take(self.0.get_mut()) {
            let home = &entry.home;
            let pending = home.pending.load(Ordering::Acquire);
            let open = home.state.load(Ordering::Acquire) == MADE
                && home.tag.load(Ordering::Acquire) == me;
            let owner = entry.owner.clone();
            drop(entry);
            if open && pending > 0 {
                if let Some(shared) = owner.upgrade() {
                    shared.report(Report::make(
                        ReportKind::LocalTasksLeft,
                        format!(
                            "the thread running {pending} spawn_local task(s) of a Runner \
                             exited before the Runner closed: they were dropped with it, \
                             without their async cleanup"
                        ),
                        None,
                        None,
                    ));
                }
            }
        }
    }
}

/// Counts a local future as alive until it is dropped (by its set, as it ends or is dropped).
struct Counted<F> {
    fut: F,
    _alive: Alive,
}

struct Alive(Arc<Home>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<F: Future> Future for Counted<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<F::Output> {
        // SAFETY: `fut` is structurally pinned: never moved out of the pinned `Counted`.
        unsafe { self.map_unchecked_mut(|c| &mut c.fut) }.poll(cx)
    }
}

/// `runner::spawn_local` on a loop that is not a tokio `LocalRuntime`.
pub(crate) fn spawn<F>(
    location: &'static Location<'static>,
    shared: &Arc<Shared>,
    fut: F,
) -> Task<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let home = &shared.local.home;
    if home.state.load(Ordering::Acquire) == CLOSED {
        return dropped_at_once(location, shared, fut);
    }
    let me = this_thread();
    if home.state.load(Ordering::Acquire) == NONE && scope::runs_here(shared) {
        // The thread of the Runner's run is where its loop, and so its set, runs.
        home.claim(me);
    }
    if home.tag.load(Ordering::Acquire) != me {
        crate::task::not_on_the_loops_thread();
    }
    let Some((set, made_now)) = home.set_or_make(shared) else {
        return dropped_at_once(location, shared, fut);
    };
    if made_now {
        shared.local.ever_made.store(true, Ordering::Release);
        let current_thread =
            shared.handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread;
        if current_thread && !home.driver.swap(true, Ordering::AcqRel) {
            // See the module docs: on a current-thread loop, a task of the runtime drives the
            // set too (on whichever thread is the set's home then), once per Runner.
            let driver = shared.clone();
            drop(shared.handle.spawn(std::future::poll_fn(move |cx| {
                driver.local.drive(cx);
                Poll::<()>::Pending
            })));
        }
    }
    let (state, guarded) = crate::task::wrap(location, Origin::Local, shared, fut);
    home.pending.fetch_add(1, Ordering::AcqRel);
    let counted = Counted {
        fut: guarded,
        _alive: Alive(home.clone()),
    };
    // tokio schedules through a thread-local of its own, gone late in a thread's exit: the
    // task then stays in the set, which drops it with the rest.
    match panic::catch_unwind(AssertUnwindSafe(|| set.spawn_local(counted))) {
        Ok(handle) => Task::new(handle, state, shared),
        Err(payload) => {
            dispose(payload);
            Task::dropped(state, Some(shared))
        }
    }
}

/// A task that nothing would ever run: its future is dropped here and now (its destructors
/// run in the task's scope, on this thread, where it was made), and its `Task` awaits to
/// `Cancelled`, as a tokio task spawned on a runtime that has shut down does.
fn dropped_at_once<F>(
    location: &'static Location<'static>,
    shared: &Arc<Shared>,
    fut: F,
) -> Task<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let (state, guarded) = crate::task::wrap(location, Origin::Local, shared, fut);
    drop(guarded);
    Task::dropped(state, Some(shared))
}
