//! The Runner's loop: a tokio `Runtime`, or a tokio `LocalRuntime` (`flavor = "local"`, or a
//! loop factory that builds one).
//!
//! A `LocalRuntime` is `!Send`: its tasks may hold `!Send` values, so it may be driven, and
//! dropped, only on the thread that built it (its home). A `Runner` stays `Send` (programs
//! move Runners between threads), so the local runtime travels inside a [`Loop`] that checks
//! the thread at every use: [`Loop::here`] and [`Loop::into_here`] hand it out only on its
//! home thread, as a [`LoopRef`] or a [`HomeLoop`], which are `!Send` themselves, so nothing
//! reached through them can leave that thread.
//!
//! # A local loop ends with its thread
//! The runtime itself sits in a [`Slot`] that its home thread also lists (a thread-local,
//! [`LOOPS`]). A local loop can never run anywhere but its home thread, so that thread's exit
//! is the last moment it can be closed, and the list's destructor closes every local loop
//! still open then (steps 1–4, finalizers included), with the Runner's shared state. That
//! destructor runs before tokio's own thread-locals are destroyed (it is registered after
//! them: see [`Loop::local`]), which a Runner kept in a `thread_local!` cannot count on: its
//! `close()` at thread exit may find tokio's context gone, and a `LocalRuntime` cannot be
//! driven then, nor handed to another thread. The same list lets a `close()` on another thread
//! hand the close over to the home thread instead of leaking the runtime.

use std::cell::{RefCell, UnsafeCell};
use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::sync::{Arc, Mutex, Weak};
use std::thread::{self, ThreadId};
use std::time::Duration;

use tokio::runtime::{EnterGuard, Handle, LocalRuntime, Runtime};

use crate::error::RunError;
use crate::shared::Shared;
use crate::task::Task;
use crate::task_state::Origin;
use crate::util::lock_std;
use crate::vars::CtxState;

/// A Runner's event loop, as a loop factory's value becomes one (see
/// [`IntoRuntime`](crate::IntoRuntime)): a tokio `Runtime`, or a tokio `LocalRuntime` bound
/// to the thread that built it. Opaque; only the Runner uses it.
pub struct Loop(Kind);

enum Kind {
    Runtime(Runtime),
    Local(Bound),
}

/// A `LocalRuntime` and the one thread where it may be touched.
struct Bound {
    /// The runtime, and its home thread (`slot.home`).
    slot: Arc<Slot>,
    /// A clone of the runtime's handle (a `Handle` is `Send` and `Sync`), so that the handle
    /// can be read on any thread without reaching into the runtime.
    handle: Handle,
}

/// Where a `LocalRuntime` lives: shared by its Runner's [`Loop`] and its home thread's list
/// ([`LOOPS`]), touched only on the home thread.
struct Slot {
    /// `None` once closed (by the Runner, or by the home thread at its exit).
    rt: UnsafeCell<Option<LocalRuntime>>,
    home: ThreadId,
    /// What the home thread needs to close the loop itself at its exit.
    closer: Mutex<Closer>,
}

enum Closer {
    /// Not known yet (the Runner's state is made after its loop).
    Unknown,
    /// The Runner's state (weak: the list must not keep it alive) and its shutdown timeout.
    Runner(Weak<Shared>, Duration),
    /// Handed over by a `close()` on another thread: the Runner is gone, everything its close
    /// needs is here.
    HandedOver(Arc<Shared>, CtxState, Duration),
}

// SAFETY: `LocalRuntime` is `!Send` because its scheduler polls, and its shutdown drops,
// `!Send` futures on the calling thread. A `Slot` is shared with other threads (with its
// Runner), but `rt` is only read or written on `home`: through `Loop::here` and
// `Loop::into_here`, which check the thread first and hand out values that are `!Send`
// themselves, and through `LOOPS`, a thread-local of `home`. `Drop` drops the runtime only on
// `home`, leaking it anywhere else. Everything else is `Send + Sync` (`CtxState` moves with
// its Runner).
unsafe impl Send for Slot {}
// SAFETY: as above.
unsafe impl Sync for Slot {}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.get_mut().take() {
            if thread::current().id() == self.home {
                drop(rt);
            } else {
                // Elsewhere it is leaked, with its tasks: `!Send` futures must not be dropped
                // on a foreign thread. (Only reachable when the home thread never listed it.)
                std::mem::forget(rt);
            }
        }
    }
}

/// The local loops built on this thread; its destructor closes those still open.
struct Loops(RefCell<Vec<Arc<Slot>>>);

thread_local! {
    static LOOPS: Loops = const { Loops(RefCell::new(Vec::new())) };
}

impl Drop for Loops {
    fn drop(&mut self) {
        for slot in std::mem::take(self.0.get_mut()) {
            // SAFETY: `LOOPS` is a thread-local of `slot.home`; no `LoopRef` is alive (no run
            // or close of a Runner is in progress while a thread's thread-locals go).
            let Some(rt) = (unsafe { (*slot.rt.get()).take() }) else {
                continue;
            };
            let closer = std::mem::replace(&mut *lock_std(&slot.closer), Closer::Unknown);
            let (shared, ctx, timeout) = match closer {
                Closer::HandedOver(shared, ctx, timeout) => (shared, ctx, timeout),
                Closer::Runner(shared, timeout) => match shared.upgrade() {
                    Some(shared) => (shared, CtxState::EMPTY, timeout),
                    None => continue,
                },
                Closer::Unknown => continue,
            };
            // As `Runner::close` does around its close.
            let closing = shared.clone();
            closing.shutdown.request();
            crate::close::shutdown_at_home(HomeLoop::Local(rt), shared, ctx, timeout);
            closing.shutdown.end();
        }
    }
}

/// Where `close()` found a loop that it cannot shut down on its thread.
pub(crate) enum NotHere {
    /// A `LocalRuntime` closed by its home thread, at its exit, already.
    Closed,
    /// A `LocalRuntime` bound to another thread: the close is for that thread to do.
    Elsewhere(HandOver),
}

/// A local loop whose close is for its home thread to do, at its exit.
pub(crate) struct HandOver {
    slot: Arc<Slot>,
}

impl HandOver {
    pub(crate) fn home(&self) -> ThreadId {
        self.slot.home
    }

    /// Gives the home thread what it needs to close the loop at its exit. `false` if that
    /// thread will not (it never listed the loop): the runtime is then leaked with its tasks.
    pub(crate) fn hand_over(self, shared: Arc<Shared>, ctx: CtxState, timeout: Duration) -> bool {
        *lock_std(&self.slot.closer) = Closer::HandedOver(shared, ctx, timeout);
        // Listed by its home thread: one reference there, one in the Runner's `Loop` (gone by
        // now: `into_here` took it), and this one.
        Arc::strong_count(&self.slot) > 1
    }
}

impl Loop {
    pub(crate) fn runtime(rt: Runtime) -> Loop {
        Loop(Kind::Runtime(rt))
    }

    /// Binds `rt` to this thread, which is the thread that built it (a `LocalRuntime` is
    /// `!Send`: it cannot have come from another one), and lists it there, to be closed at
    /// the thread's exit if its Runner has not closed it by then.
    pub(crate) fn local(rt: LocalRuntime) -> Loop {
        let handle = rt.handle().clone();
        let home = thread::current().id();
        let slot = Arc::new(Slot {
            rt: UnsafeCell::new(Some(rt)),
            home,
            closer: Mutex::new(Closer::Unknown),
        });
        // Thread-locals are destroyed in the reverse order of their first use: tokio's
        // context and runner's own record are used here first, so `LOOPS` goes before them,
        // and its destructor can still run the loop.
        let _ = Handle::try_current();
        let _ = crate::scope::in_run();
        let _ = LOOPS.try_with(|loops| {
            if let Ok(mut loops) = loops.0.try_borrow_mut() {
                // SAFETY: this thread is the home of every listed slot; a read only.
                loops.retain(|listed| unsafe { (*listed.rt.get()).is_some() });
                loops.push(slot.clone());
            }
        });
        Loop(Kind::Local(Bound { slot, handle }))
    }

    /// Tells a local loop's home thread how to close it, should the thread exit first.
    pub(crate) fn remember_closer(&self, shared: &Arc<Shared>, timeout: Duration) {
        if let Kind::Local(bound) = &self.0 {
            *lock_std(&bound.slot.closer) = Closer::Runner(Arc::downgrade(shared), timeout);
        }
    }

    /// The runtime's handle, on any thread (a handle only spawns `Send` futures).
    pub(crate) fn handle(&self) -> &Handle {
        match &self.0 {
            Kind::Runtime(rt) => rt.handle(),
            Kind::Local(bound) => &bound.handle,
        }
    }

    /// The thread a local loop is bound to; `None` for a `Runtime`, which runs anywhere.
    pub(crate) fn home(&self) -> Option<ThreadId> {
        match &self.0 {
            Kind::Runtime(_) => None,
            Kind::Local(bound) => Some(bound.slot.home),
        }
    }

    /// The loop, to drive from this thread: always for a `Runtime`, only on its home thread
    /// for a `LocalRuntime` ([`RunError::WrongThread`] elsewhere, [`RunError::Closed`] once
    /// its home thread closed it at its exit).
    #[inline]
    pub(crate) fn here(&self) -> Result<LoopRef<'_>, RunError> {
        match &self.0 {
            Kind::Runtime(rt) => Ok(LoopRef::Runtime(rt)),
            Kind::Local(bound) => bound.here(),
        }
    }

    /// The loop, to shut down on this thread; for a `LocalRuntime` away from its home
    /// thread, or closed there already, `Err`.
    pub(crate) fn into_here(self) -> Result<HomeLoop, NotHere> {
        match self.0 {
            Kind::Runtime(rt) => Ok(HomeLoop::Runtime(rt)),
            Kind::Local(bound) if thread::current().id() == bound.slot.home => {
                // SAFETY: on its home thread; no `LoopRef` is alive (`close()` takes the
                // Runner by `&mut`).
                match unsafe { (*bound.slot.rt.get()).take() } {
                    Some(rt) => Ok(HomeLoop::Local(rt)),
                    None => Err(NotHere::Closed),
                }
            }
            Kind::Local(bound) => Err(NotHere::Elsewhere(HandOver { slot: bound.slot })),
        }
    }
}

impl Bound {
    #[cold]
    fn here(&self) -> Result<LoopRef<'_>, RunError> {
        let here = thread::current().id();
        if here != self.slot.home {
            return Err(RunError::WrongThread {
                home: self.slot.home,
                here,
            });
        }
        // SAFETY: on its home thread, where alone the slot is written: by `into_here` (which
        // consumes the `Loop`, so no borrow of it is alive) and at the thread's exit (no run
        // is in progress then).
        match unsafe { (*self.slot.rt.get()).as_ref() } {
            Some(rt) => Ok(LoopRef::Local(rt)),
            None => Err(RunError::Closed),
        }
    }
}

impl fmt::Debug for Loop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::Runtime(rt) => f.debug_tuple("Loop::Runtime").field(rt).finish(),
            Kind::Local(bound) => f
                .debug_struct("Loop::Local")
                .field("home", &bound.slot.home)
                .finish_non_exhaustive(),
        }
    }
}

/// The loop on a thread where it may be driven. `!Send`, like the `LocalRuntime` it may hold.
#[derive(Clone, Copy)]
pub(crate) enum LoopRef<'a> {
    Runtime(&'a Runtime),
    Local(&'a LocalRuntime),
}

impl<'a> LoopRef<'a> {
    #[inline]
    pub(crate) fn block_on<F: Future>(self, fut: F) -> F::Output {
        match self {
            LoopRef::Runtime(rt) => rt.block_on(fut),
            LoopRef::Local(rt) => rt.block_on(fut),
        }
    }

    pub(crate) fn enter(self) -> EnterGuard<'a> {
        match self {
            LoopRef::Runtime(rt) => rt.enter(),
            LoopRef::Local(rt) => rt.enter(),
        }
    }

    pub(crate) fn handle(self) -> &'a Handle {
        match self {
            LoopRef::Runtime(rt) => rt.handle(),
            LoopRef::Local(rt) => rt.handle(),
        }
    }
}

/// The loop, owned on a thread where it may be shut down. `!Send`, like the `LocalRuntime` it
/// may hold: `close()` cannot hand a local loop to a helper thread by mistake.
pub(crate) enum HomeLoop {
    Runtime(Runtime),
    Local(LocalRuntime),
}

impl HomeLoop {
    pub(crate) fn as_ref(&self) -> LoopRef<'_> {
        match self {
            HomeLoop::Runtime(rt) => LoopRef::Runtime(rt),
            HomeLoop::Local(rt) => LoopRef::Local(rt),
        }
    }

    pub(crate) fn shutdown_timeout(self, timeout: Duration) {
        match self {
            HomeLoop::Runtime(rt) => rt.shutdown_timeout(timeout),
            HomeLoop::Local(rt) => rt.shutdown_timeout(timeout),
        }
    }

    pub(crate) fn shutdown_background(self) {
        match self {
            HomeLoop::Runtime(rt) => rt.shutdown_background(),
            HomeLoop::Local(rt) => rt.shutdown_background(),
        }
    }
}

/// `runner::spawn_local` on a `LocalRuntime` loop: the task goes to the runtime itself (tokio
/// does not support a `LocalSet` inside a `LocalRuntime`), wrapped like any task of the
/// Runner: registered, cancelled at close, a copy of the context, reported in debug mode.
#[track_caller]
pub(crate) fn spawn_on_local_runtime<F>(
    location: &'static Location<'static>,
    shared: &Arc<Shared>,
    home: ThreadId,
    fut: F,
) -> Task<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    // tokio spawns on the runtime of the current context, and only on its home thread: this
    // Runner's runtime must be that one (not another runtime entered inside a task), or
    // tokio would panic with a message that does not say where runner::spawn_local works.
    let ours = thread::current().id() == home
        && Handle::try_current().is_ok_and(|current| current.id() == shared.handle.id());
    if !ours {
        crate::task::not_on_the_loops_thread();
    }
    let (state, guarded) = crate::task::wrap(location, Origin::Local, shared, fut);
    let handle = tokio::task::spawn_local(guarded);
    Task::new(handle, state, shared)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> LocalRuntime {
        tokio::runtime::Builder::new_current_thread()
            .build_local(Default::default())
            .unwrap()
    }

    #[test]
    fn a_loop_is_send_whatever_it_holds() {
        fn assert_send<T: Send>() {}
        assert_send::<Loop>();
    }

    #[test]
    fn a_local_loop_is_reached_only_on_its_home_thread() {
        let rt = Loop::local(local());
        assert_eq!(rt.home(), Some(thread::current().id()));
        assert_eq!(rt.here().unwrap().block_on(async { 7 }), 7);
        let home = thread::current().id();
        let rt = thread::scope(|s| {
            s.spawn(move || {
                let err = rt.here().err();
                assert!(
                    matches!(err, Some(RunError::WrongThread { home: h, here }) if h == home && here != home),
                    "{err:?}"
                );
                rt
            })
            .join()
            .unwrap()
        });
        // Back home, it runs again.
        assert_eq!(rt.here().unwrap().block_on(async { 8 }), 8);
        assert!(rt.into_here().is_ok());
    }

    #[test]
    fn a_local_loop_dropped_away_from_home_is_dropped_by_its_home_thread_at_its_exit() {
        struct OnDrop(std::sync::mpsc::Sender<ThreadId>);
        impl Drop for OnDrop {
            fn drop(&mut self) {
                let _ = self.0.send(thread::current().id());
            }
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let (left, gone) = std::sync::mpsc::channel();
        let (go, exit) = std::sync::mpsc::channel::<()>();
        let home = thread::spawn(move || {
            let rt = Loop::local(local());
            let on_drop = OnDrop(tx);
            rt.here().unwrap().block_on(async move {
                drop(tokio::task::spawn_local(async move {
                    let _held = (on_drop, std::rc::Rc::new(()));
                    std::future::pending::<()>().await
                }));
                tokio::task::yield_now().await;
            });
            let home = rt.home();
            let away = thread::spawn(move || match rt.into_here() {
                Err(NotHere::Elsewhere(hand)) => Some(hand.home()),
                _ => None,
            })
            .join()
            .unwrap();
            assert_eq!(away, home);
            left.send(()).unwrap();
            exit.recv().unwrap();
            thread::current().id()
        });
        gone.recv().unwrap();
        // Not dropped away from home: the task's destructor has not run, on any thread.
        assert!(rx.try_recv().is_err());
        go.send(()).unwrap();
        let home = home.join().unwrap();
        // Its home thread's exit dropped it, there.
        assert_eq!(rx.try_recv(), Ok(home));
    }
}
