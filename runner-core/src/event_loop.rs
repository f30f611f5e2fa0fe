//! The Runner's loop: a tokio `Runtime`, or a tokio `LocalRuntime` (`flavor = "local"`, or a
//! loop factory that builds one).
//!
//! A `LocalRuntime` is `!Send`: its tasks may hold `!Send` values, so it may be driven, and
//! dropped, only on the thread that built it (its home). A `Runner` stays `Send` (programs
//! move Runners between threads), so the local runtime travels inside a [`Loop`] that checks
//! the thread at every use: [`Loop::here`] and [`Loop::into_here`] hand it out only on its
//! home thread, as a [`LoopRef`] or a [`HomeLoop`], which are `!Send` themselves, so nothing
//! reached through them can leave that thread. Dropped anywhere else, it is leaked rather
//! than dropped (`close()` reports that first).

use std::fmt;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::panic::Location;
use std::ptr;
use std::sync::Arc;
use std::thread::{self, ThreadId};
use std::time::Duration;

use tokio::runtime::{EnterGuard, Handle, LocalRuntime, Runtime};

use crate::error::RunError;
use crate::shared::Shared;
use crate::task::Task;
use crate::task_state::Origin;

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
    rt: ManuallyDrop<LocalRuntime>,
    home: ThreadId,
    /// A clone of the runtime's handle (a `Handle` is `Send` and `Sync`), so that the handle
    /// can be read on any thread without reaching into the runtime.
    handle: Handle,
}

// SAFETY: `LocalRuntime` is `!Send` because its scheduler polls, and its shutdown drops,
// `!Send` futures on the calling thread. A `Bound` moves between threads with its Runner,
// but the runtime inside is only reached through `Loop::here` and `Loop::into_here`, which
// hand it out only when the current thread is `home` (the thread that built it: a
// `LocalRuntime` cannot leave the thread it is built on), as values that are `!Send`
// themselves; and `Drop` drops it only on `home`, leaking it anywhere else. Its bytes may move
// meanwhile, as any owned value's may: that touches neither its tasks nor its scheduler.
unsafe impl Send for Bound {}

impl Drop for Bound {
    fn drop(&mut self) {
        if thread::current().id() == self.home {
            // SAFETY: dropped once, here, and on its home thread.
            unsafe { ManuallyDrop::drop(&mut self.rt) };
        }
        // Elsewhere it is leaked, with its tasks: `!Send` futures must not be dropped on a
        // foreign thread. (`close()` has reported it.)
    }
}

impl Loop {
    pub(crate) fn runtime(rt: Runtime) -> Loop {
        Loop(Kind::Runtime(rt))
    }

    /// Binds `rt` to this thread, which is the thread that built it (a `LocalRuntime` is
    /// `!Send`: it cannot have come from another one).
    pub(crate) fn local(rt: LocalRuntime) -> Loop {
        let handle = rt.handle().clone();
        Loop(Kind::Local(Bound {
            rt: ManuallyDrop::new(rt),
            home: thread::current().id(),
            handle,
        }))
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
            Kind::Local(bound) => Some(bound.home),
        }
    }

    /// The loop, to drive from this thread: always for a `Runtime`, only on its home thread
    /// for a `LocalRuntime` ([`RunError::WrongThread`] elsewhere).
    #[inline]
    pub(crate) fn here(&self) -> Result<LoopRef<'_>, RunError> {
        match &self.0 {
            Kind::Runtime(rt) => Ok(LoopRef::Runtime(rt)),
            Kind::Local(bound) => bound.here(),
        }
    }

    /// The loop, to shut down on this thread; for a `LocalRuntime` away from its home
    /// thread, `Err` with that thread, and the runtime is leaked.
    pub(crate) fn into_here(self) -> Result<HomeLoop, ThreadId> {
        match self.0 {
            Kind::Runtime(rt) => Ok(HomeLoop::Runtime(rt)),
            Kind::Local(bound) if thread::current().id() == bound.home => {
                let bound = ManuallyDrop::new(bound);
                // SAFETY: on its home thread. Each field that needs dropping is read out
                // once, and the shell is never dropped (`Bound::drop` does not run for it).
                let (rt, handle) = unsafe { (ptr::read(&bound.rt), ptr::read(&bound.handle)) };
                drop(handle);
                Ok(HomeLoop::Local(ManuallyDrop::into_inner(rt)))
            }
            // Dropping the `Bound` here leaks the runtime (see its `Drop`).
            Kind::Local(bound) => Err(bound.home),
        }
    }
}

impl Bound {
    #[cold]
    fn here(&self) -> Result<LoopRef<'_>, RunError> {
        let here = thread::current().id();
        if here == self.home {
            Ok(LoopRef::Local(&self.rt))
        } else {
            Err(RunError::WrongThread {
                home: self.home,
                here,
            })
        }
    }
}

impl fmt::Debug for Loop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::Runtime(rt) => f.debug_tuple("Loop::Runtime").field(rt).finish(),
            Kind::Local(bound) => f
                .debug_struct("Loop::Local")
                .field("home", &bound.home)
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
    fn a_local_loop_dropped_away_from_home_leaks_its_tasks_there() {
        struct OnDrop(std::sync::mpsc::Sender<ThreadId>);
        impl Drop for OnDrop {
            fn drop(&mut self) {
                let _ = self.0.send(thread::current().id());
            }
        }
        let (tx, rx) = std::sync::mpsc::channel();
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
        let away = thread::spawn(move || rt.into_here().err()).join().unwrap();
        assert_eq!(away, home);
        // Leaked, not dropped: the task's destructor never ran, on any thread.
        assert!(rx.try_recv().is_err());
    }
}
