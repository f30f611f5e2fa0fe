//! Tasks: `spawn`, `spawn_blocking`, `Task`, `cancelled()` and `at_close`. How a cancel
//! request reaches a task is described in `task_state`.

use std::fmt;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe, Location};
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context as TaskCx, Poll};

#[allow(unused_imports)] // rustdoc links
use crate::debug::ReportKind;
use crate::error::TaskError;
use crate::guarded::{Guarded, Outcome, Spawned};
use crate::scope::{self, Scope};
use crate::shared::Shared;
use crate::stop::RunnerStop;
use crate::task_state::{Origin, TaskState};
use crate::vars::CtxState;

/// A handle to a task started by [`spawn`], [`spawn_local`] or [`spawn_blocking`] (asyncio's `Task`).
///
/// Awaiting it gives the task's output, or why there is none. Dropping it detaches the task:
/// it keeps running, as in asyncio.
///
/// ```
/// # use runner_core as runner;
/// runner::run(async {
///     let task = runner::spawn(async { 6 * 7 });
///     assert_eq!(task.await.unwrap(), 42);
/// })
/// .unwrap();
/// ```
pub struct Task<T> {
    /// `None` for a task whose future was dropped as it was spawned (see
    /// [`Task::dropped`]).
    handle: Option<tokio::task::JoinHandle<Outcome<T>>>,
    state: Arc<TaskState>,
    retrieved: bool,
    /// In debug mode, where to report a panic nobody retrieved. Weak: a `Task` kept after
    /// its Runner closed must not keep the runtime's drivers alive.
    owner: Option<Weak<Shared>>,
}

impl<T> Task<T> {
    pub(crate) fn new(
        handle: tokio::task::JoinHandle<Outcome<T>>,
        state: Arc<TaskState>,
        shared: &Arc<Shared>,
    ) -> Task<T> {
        Task {
            handle: Some(handle),
            state,
            retrieved: false,
            owner: shared.debug.then(|| Arc::downgrade(shared)),
        }
    }

    /// The `Task` of a task whose future was dropped as it was spawned, because nothing would
    /// ever run it (a `spawn_local` once `close()` is done with local tasks): it awaits to
    /// `Cancelled`, as a tokio task spawned on a runtime that has shut down does. No tokio
    /// task is made: one for a `!Send` output needs a `LocalSet`, which tokio cannot make
    /// on a thread whose thread-locals are being torn down.
    /// `shared`: the Runner to report to in debug mode, if it is still there.
    pub(crate) fn dropped(state: Arc<TaskState>, shared: Option<&Arc<Shared>>) -> Task<T> {
        Task {
            handle: None,
            state,
            retrieved: false,
            owner: shared.filter(|s| s.debug).map(Arc::downgrade),
        }
    }

    /// Asks the task to cancel (see [`cancelled()`] for how). Returns `false` if the
    /// task has already finished, `true` if the request was made.
    ///
    /// ```
    /// # use runner_core as runner;
    /// runner::run(async {
    ///     let task = runner::spawn(std::future::pending::<()>());
    ///     assert!(task.cancel());
    ///     assert!(task.await.unwrap_err().is_cancelled());
    /// })
    /// .unwrap();
    /// ```
    pub fn cancel(&self) -> bool {
        let requested = self.state.request_cancel(None);
        if let (true, Some(handle)) = (requested && self.state.is_blocking(), &self.handle) {
            // A blocking job that has not started yet never starts; one that runs, runs on.
            handle.abort();
        }
        requested
    }

    /// `true` once the task has ended (with a value, a panic, or cancelled).
    ///
    /// ```
    /// # use runner_core as runner;
    /// runner::run(async {
    ///     let task = runner::spawn(async {});
    ///     tokio::task::yield_now().await;
    ///     assert!(task.is_finished());
    /// })
    /// .unwrap();
    /// ```
    pub fn is_finished(&self) -> bool {
        self.state.is_done() || self.handle.as_ref().is_none_or(|h| h.is_finished())
    }

    /// Where the task was spawned.
    pub fn location(&self) -> &'static Location<'static> {
        self.state.location
    }

    /// A handle that cancels this task without owning its output (tokio's `AbortHandle`).
    ///
    /// ```
    /// # use runner_core as runner;
    /// runner::run(async {
    ///     let task = runner::spawn(std::future::pending::<()>());
    ///     let handle = task.handle();
    ///     std::thread::spawn(move || handle.cancel()).join().unwrap();
    ///     assert!(task.await.unwrap_err().is_cancelled());
    /// })
    /// .unwrap();
    /// ```
    pub fn handle(&self) -> TaskHandle {
        TaskHandle {
            state: self.state.clone(),
            abort: (self.state.is_blocking())
                .then(|| self.handle.as_ref().map(|h| h.abort_handle()))
                .flatten(),
        }
    }
}

/// Cancels a task from anywhere, without its output: from [`Task::handle`], or
/// [`current_task`] for the running task (the main task included). `Clone`, `Send`, `Sync`.
#[derive(Clone)]
pub struct TaskHandle {
    state: Arc<TaskState>,
    /// For a blocking job: the job has not started yet never starts.
    abort: Option<tokio::task::AbortHandle>,
}

impl TaskHandle {
    /// Asks the task to cancel, as [`Task::cancel`] does; `false` if it has already finished.
    ///
    /// Cancelling the main task this way (asyncio's `current_task().cancel()`) makes its
    /// `run` return [`RunError::Cancelled`](crate::RunError::Cancelled), also when a Ctrl-C
    /// cancelled it as well.
    ///
    /// ```
    /// # use runner_core as runner;
    /// let mut runner = runner::Runner::new();
    /// let result = runner.run(async {
    ///     let main = runner::current_task().unwrap();
    ///     runner::spawn(async move { main.cancel() });
    ///     std::future::pending::<()>().await
    /// });
    /// assert!(matches!(result, Err(runner::RunError::Cancelled)));
    /// ```
    pub fn cancel(&self) -> bool {
        let requested = self.state.request_cancel(None);
        if let (true, Some(abort)) = (requested, &self.abort) {
            abort.abort();
        }
        requested
    }

    /// `true` once the task has ended.
    pub fn is_finished(&self) -> bool {
        self.state.is_done()
    }

    /// Where the task was spawned (for the main task: where `run` was called).
    pub fn location(&self) -> &'static Location<'static> {
        self.state.location
    }
}

impl fmt::Debug for TaskHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskHandle")
            .field("task", &format_args!("{}", self.state.describe()))
            .field("finished", &self.is_finished())
            .finish()
    }
}

/// The running task of a Runner (asyncio's `current_task()`): the main task, or a task
/// started with [`spawn`] or [`spawn_local`]; `None` elsewhere (outside a Runner, in a
/// `spawn_blocking` job, in a plain `tokio::spawn` task).
///
/// ```
/// # use runner_core as runner;
/// runner::run(async {
///     let main = runner::current_task().unwrap();
///     assert!(!main.is_finished());
/// })
/// .unwrap();
/// assert!(runner::current_task().is_none());
/// ```
pub fn current_task() -> Option<TaskHandle> {
    let state = scope::with(|s| s.task.clone()).flatten()?;
    Some(TaskHandle { state, abort: None })
}

impl<T> Future for Task<T> {
    type Output = Result<T, TaskError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<Self::Output> {
        let Some(handle) = self.handle.as_mut() else {
            self.retrieved = true;
            return Poll::Ready(Err(TaskError::cancelled(self.state.location)));
        };
        let result = std::task::ready!(Pin::new(handle).poll(cx));
        self.retrieved = true;
        let at = self.state.location;
        Poll::Ready(match result {
            Ok(Outcome::Done(value)) => Ok(value),
            Ok(Outcome::Cancelled) => Err(TaskError::cancelled(at)),
            Ok(Outcome::Panicked(payload)) => Err(TaskError::panicked(payload, at)),
            Err(err) => match err.try_into_panic() {
                Ok(payload) => Err(TaskError::panicked(payload, at)),
                // tokio dropped it unfinished: its runtime shut down, or an aborted
                // blocking job that had not started.
                Err(_) => Err(TaskError::cancelled(at)),
            },
        })
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        if !self.retrieved && self.state.detach() {
            if let Some(shared) = self.owner.as_ref().and_then(Weak::upgrade) {
                shared.report_unretrieved(&self.state);
            }
        }
    }
}

impl<T> fmt::Debug for Task<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task")
            .field("spawned_at", &format_args!("{}", self.state.location))
            .field("finished", &self.is_finished())
            .finish()
    }
}

/// The Runner running the current code, for `what`; `None` on the runtime of a Runner that
/// has closed (see [`dropped_after_close`]). Panics elsewhere outside a Runner.
#[track_caller]
fn running_runner(what: &str) -> Option<Arc<Shared>> {
    match scope::current_runner() {
        Some(shared) => Some(shared),
        None if scope::on_a_closed_runners_runtime() => None,
        None => no_runner(what),
    }
}

#[cold]
#[track_caller]
fn no_runner(what: &str) -> ! {
    panic!(
        "{what} must be called inside Runner::run: from the main task, a task it spawned, \
         or a tokio task on the Runner's runtime; no runner is running here (to start one \
         from plain code, use runner::run or Runner::run)"
    )
}

/// Starts `fut` as a new task of the running Runner (asyncio's `create_task`).
///
/// The task gets a copy of the caller's [`Context`](crate::Context), is cancelled by
/// [`Runner::close`](crate::Runner::close) if still pending, and its spawn location is
/// recorded for reports.
///
/// Also works from a plain `tokio::spawn` task on the Runner's runtime (on either flavor):
/// the Runner is found from the runtime.
///
/// # Panics
/// When called outside [`Runner::run`](crate::Runner::run) and outside the Runner's runtime
/// (like `tokio::spawn` outside a runtime). Not on the runtime of a Runner that has closed
/// (code that a worker thread still runs after `close()` gave up waiting for it): there the
/// future is dropped at once and the `Task` awaits to `Cancelled`, as with `tokio::spawn` on
/// a runtime that has shut down.
///
/// ```
/// # use runner_core as runner;
/// runner::run(async {
///     let a = runner::spawn(async { 1 });
///     let b = runner::spawn(async { 2 });
///     assert_eq!(a.await.unwrap() + b.await.unwrap(), 3);
/// })
/// .unwrap();
/// ```
#[track_caller]
pub fn spawn<F>(fut: F) -> Task<F::Output>
where
    // rustc quotes the next line, comment and all, under its "future cannot be sent between
    // threads safely": the hint a user coming from asyncio needs. (An `on_unimplemented`
    // trait does not reach that error: rustc words it after `Send` for an async block.)
    F: Future + Send + 'static, // not `Send`? use `runner::spawn_local` (the Runner's thread)
    F::Output: Send + 'static,
{
    let location = Location::caller();
    // The Runner borrowed, not cloned: the task's wrapper holds an uncounted reference, which
    // its registration keeps alive (see `registry`). The context copy counts on the
    // spawner's own map (see `vars::VarMap`).
    let spawned = scope::with_runner_and_ctx(fut, |shared, ctx, fut| {
        let (state, guarded) = wrap_in(location, Origin::Spawned, shared, ctx, fut);
        let handle = shared.handle.spawn(guarded);
        Task::new(handle, state, shared)
    });
    match spawned {
        Ok(task) => task,
        Err(fut) if scope::on_a_closed_runners_runtime() => {
            dropped_after_close(location, Origin::Spawned, fut)
        }
        Err(_) => no_runner("runner::spawn"),
    }
}

/// The `Task` of a task started where a Runner that has closed still runs code (a worker
/// thread that a `close()` gave up waiting for; see `scope::on_a_closed_runners_runtime`):
/// nothing will run it, so `what` (its future or closure) is dropped here and now, and the
/// `Task` awaits to `Cancelled`, as a tokio task spawned on a runtime that has shut down does.
#[cold]
fn dropped_after_close<T>(
    location: &'static Location<'static>,
    origin: Origin,
    what: impl Sized,
) -> Task<T> {
    let state = Arc::new(TaskState::new(location, origin));
    drop(what);
    state.mark_done();
    Task::dropped(state, None)
}

/// Starts the `!Send` future `fut` as a new task of the running Runner, on the Runner's own
/// thread (asyncio's tasks are all on the loop's thread). It is a task like any other: it gets
/// a copy of the caller's [`Context`](crate::Context), [`Task::cancel`] and [`cancelled()`]
/// work in it, [`Runner::close`](crate::Runner::close) cancels it if still pending, and debug
/// mode names it in its reports. No `LocalSet` to set up.
///
/// It runs when the Runner's loop runs on its thread: during `run` (between the polls of the
/// main task) and during `close()`, on every loop flavor. On a tokio `LocalRuntime` loop
/// (`flavor = "local"`) it is a task of that runtime, next to those of
/// `tokio::task::spawn_local`.
///
/// While local tasks are pending, the Runner is bound to their thread: `run` on another
/// thread returns [`RunError::WrongThread`](crate::RunError::WrongThread), and `close()` on
/// another thread closes the rest and leaves them to their thread, which drops them when it
/// next starts local tasks or exits. Once `close()` is done with local tasks (a destructor
/// run by its last step, say), `spawn_local` drops `fut` at once, and its `Task` awaits to
/// `Cancelled`.
///
/// # Panics
/// Outside a Runner, and on a thread that does not run the Runner's loop: call it from the
/// main task, from a task started with `spawn_local`, or (on the default current-thread
/// loop and on a local loop, where every task runs on that thread) from any task of the
/// Runner. A task of a multi-thread loop's worker threads cannot start one.
///
/// ```
/// # use runner_core as runner;
/// use std::rc::Rc;
/// runner::run(async {
///     let shared = Rc::new(5); // not Send
///     let task = runner::spawn_local({
///         let shared = shared.clone();
///         async move {
///             tokio::task::yield_now().await;
///             *shared + 1
///         }
///     });
///     assert_eq!(task.await.unwrap(), 6);
/// })
/// .unwrap();
/// ```
#[track_caller]
pub fn spawn_local<F>(fut: F) -> Task<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let location = Location::caller();
    let Some(shared) = running_runner("runner::spawn_local") else {
        return dropped_after_close(location, Origin::Local, fut);
    };
    if let Some(home) = shared.local_runtime {
        return crate::event_loop::spawn_on_local_runtime(location, &shared, home, fut);
    }
    crate::local::spawn(location, &shared, fut)
}

/// `spawn_local`'s panic on a thread that does not run the Runner's loop.
#[track_caller]
pub(crate) fn not_on_the_loops_thread() -> ! {
    panic!(
        "runner::spawn_local must be called on the thread that runs the Runner's loop: \
         from the main task, from a task started with spawn_local, or (on a \
         current-thread or local loop) from any task of the Runner; this thread does not run \
         it (a worker thread of a multi-thread loop, or another thread)"
    )
}

/// A new task's record, registered with its Runner, and its future wrapped, in a copy of the
/// caller's context.
pub(crate) fn wrap<F: Future>(
    location: &'static Location<'static>,
    origin: Origin,
    shared: &Arc<Shared>,
    fut: F,
) -> (Arc<TaskState>, Guarded<F, Spawned>) {
    wrap_in(location, origin, shared, scope::copy_ctx(), fut)
}

/// [`wrap`] in `ctx`.
fn wrap_in<F: Future>(
    location: &'static Location<'static>,
    origin: Origin,
    shared: &Arc<Shared>,
    ctx: CtxState,
    fut: F,
) -> (Arc<TaskState>, Guarded<F, Spawned>) {
    let state = Arc::new(TaskState::new(location, origin));
    shared.register(&state);
    let guarded = Guarded::spawned(fut, ctx, state.clone(), shared);
    (state, guarded)
}

/// Runs the blocking closure `f` on the Runner's blocking pool (asyncio's `to_thread`), in a
/// copy of the caller's [`Context`](crate::Context).
///
/// [`Runner::close`](crate::Runner::close) waits for such jobs at most the shutdown timeout.
///
/// # Panics
/// When called outside [`Runner::run`](crate::Runner::run); on the runtime of a Runner that
/// has closed, the closure is dropped unrun instead (as [`spawn`] does).
///
/// ```
/// # use runner_core as runner;
/// static USER: runner::ContextVar<&'static str> = runner::ContextVar::new("user");
/// runner::run(async {
///     USER.set("ada");
///     let seen = runner::spawn_blocking(|| USER.get()).await.unwrap();
///     assert_eq!(seen, Some("ada"));
/// })
/// .unwrap();
/// ```
#[track_caller]
pub fn spawn_blocking<F, R>(f: F) -> Task<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let location = Location::caller();
    let Some(shared) = running_runner("runner::spawn_blocking") else {
        return dropped_after_close(location, Origin::Blocking, f);
    };
    let state = Arc::new(TaskState::new(location, Origin::Blocking));
    let job = BlockingJob::start(shared.clone(), state.clone(), location);
    let mut scope = Scope {
        ctx: scope::copy_ctx(),
        runner: Some(shared.clone()),
        task: None,
        // asyncio lets executor threads start a loop of their own: so do we.
        in_run: false,
        isolated: true,
    };
    let handle = shared.handle.spawn_blocking(move || {
        let job = job; // the whole job, dropped with the closure (see `BlockingJob`)
        let result = scope::poll_in(&mut scope, || panic::catch_unwind(AssertUnwindSafe(f)));
        match result {
            Ok(value) => Outcome::Done(value),
            Err(payload) => {
                if job.state.record_panic(payload.as_ref()) {
                    job.shared.report_unretrieved(&job.state);
                }
                Outcome::Panicked(payload)
            }
        }
    });
    Task::new(handle, state, &shared)
}

/// A `spawn_blocking` job in flight, from spawn until its closure goes away: after it ran
/// (the closure's captures are dropped as its call returns, before tokio hands the output to
/// the `Task`), or unrun (cancelled before it started, or the pool shut down). Going away, it
/// marks the job done (its handles then say it has finished, run or not) and counts it out
/// of the bounded wait in `close()`.
struct BlockingJob {
    shared: Arc<Shared>,
    state: Arc<TaskState>,
    at: &'static Location<'static>,
}

impl BlockingJob {
    fn start(
        shared: Arc<Shared>,
        state: Arc<TaskState>,
        at: &'static Location<'static>,
    ) -> BlockingJob {
        shared.blocking_started(at);
        BlockingJob { shared, state, at }
    }
}

impl Drop for BlockingJob {
    fn drop(&mut self) {
        self.state.mark_done();
        self.shared.blocking_finished(self.at);
    }
}

/// Registers an async finalizer that [`Runner::close`](crate::Runner::close) runs inside the
/// runtime after cancelling the leftover tasks, last registered first (our analog of
/// asyncio finalizing async generators). A panicking finalizer is reported and the others
/// still run.
///
/// # Panics
/// When called outside [`Runner::run`](crate::Runner::run); on the runtime of a Runner that
/// has closed (see [`spawn`]), the finalizer is dropped: that Runner has run its finalizers.
///
/// ```
/// # use runner_core as runner;
/// use std::sync::atomic::{AtomicBool, Ordering};
/// static FLUSHED: AtomicBool = AtomicBool::new(false);
///
/// runner::run(async {
///     runner::at_close(|| async {
///         tokio::task::yield_now().await; // async work is fine here
///         FLUSHED.store(true, Ordering::SeqCst);
///     });
/// })
/// .unwrap();
/// assert!(FLUSHED.load(Ordering::SeqCst));
/// ```
#[track_caller]
pub fn at_close<C, F>(finalizer: C)
where
    C: FnOnce() -> F + Send + 'static,
    F: Future<Output = ()> + 'static,
{
    let Some(shared) = running_runner("runner::at_close") else {
        // Its Runner has run its finalizers and closed: nothing will run this one.
        return drop(finalizer);
    };
    let location = Location::caller();
    shared.add_finalizer(location, Box::new(move || Box::pin(finalizer())));
}

/// Resolves when the current task is asked to cancel; holding it is how a task says "I
/// handle cancellation myself" (asyncio's `except CancelledError:`).
///
/// While a task holds a `cancelled()` future, a cancel request (Ctrl-C for the main task,
/// [`Task::cancel`], `close()`) does not drop the task: it wakes it, this future resolves,
/// and the task can do async cleanup and finish on its own.
///
/// ```
/// # use runner_core as runner;
/// runner::run(async {
///     let worker = runner::spawn(async {
///         tokio::select! {
///             _ = runner::cancelled() => "cleaned up",
///             _ = std::future::pending::<()>() => unreachable!(),
///         }
///     });
///     tokio::task::yield_now().await;
///     worker.cancel();
///     assert_eq!(worker.await.unwrap(), "cleaned up");
/// })
/// .unwrap();
/// ```
///
/// # In a loop: make one, before the loop
///
/// A task observes cancellation only while a `cancelled()` is alive. A `select!` loop that
/// makes a fresh one each iteration (the line-for-line port of a `CancellationToken` loop)
/// holds none while it does its work, so a cancel that comes then drops the task in the
/// middle of that work (and runner reports it: [`ReportKind::DroppedMidWork`]). Make one
/// before the loop and select on `&mut` it (it is `Unpin`: no `pin!` needed); a cancel during
/// the work is then seen at the next iteration, and no unit of work is cut:
///
/// ```
/// # use runner_core as runner;
/// # async fn work(done: &mut u32) { tokio::task::yield_now().await; *done += 1; }
/// runner::run(async {
///     let worker = runner::spawn(async {
///         let mut stop = runner::cancelled();
///         let mut done = 0;
///         loop {
///             tokio::select! {
///                 _ = &mut stop => break,
///                 // The unit of work runs in the arm, after the select: never cut.
///                 _ = tokio::task::yield_now() => work(&mut done).await,
///             }
///         }
///         done // every unit it started, it finished
///     });
///     tokio::task::yield_now().await;
///     worker.cancel();
///     assert!(worker.await.is_ok());
/// })
/// .unwrap();
/// ```
///
/// # Where it resolves
///
/// A `cancelled()` made in a task of the Runner (the main task, a [`spawn`]ed or
/// [`spawn_local`]ed task) belongs to that task: the task counts as observing while the
/// future lives, and the task's cancel resolves it, wherever it is polled. It can be handed
/// to another task, as in `axum::serve(listener, app).with_graceful_shutdown(runner::cancelled())`,
/// where axum polls it in a task of its own:
///
/// ```
/// # use runner_core as runner;
/// runner::run(async {
///     let worker = runner::spawn(async {
///         let shutdown = tokio::spawn(runner::cancelled()); // polled in another task
///         shutdown.await.unwrap();
///         "drained"
///     });
///     tokio::task::yield_now().await;
///     worker.cancel();
///     assert_eq!(worker.await.unwrap(), "drained");
/// })
/// .unwrap();
/// ```
///
/// A `cancelled()` made in plain code of a Runner's runtime (a plain `tokio::spawn` task,
/// such as the one where axum's `with_graceful_shutdown(shutdown_signal())` first polls
/// `async fn shutdown_signal() { runner::cancelled().await }`) belongs to the Runner:
/// - it observes the main task of the run active when it was made: the main task's cancel
///   (the first Ctrl-C or SIGTERM, [`current_task()`]`.cancel()`) resolves it, and while it
///   lives the main task counts as observing, exactly as with the eager form above;
/// - `close()` resolves it, and waits (bounded by the shutdown timeout) while it is held: a
///   plain task that keeps it alive until its cleanup is done (`(&mut stop).await`, or the
///   loop above) gets that cleanup run before the runtime shuts down.
///
/// ```
/// # use runner_core as runner;
/// let drained = runner::Runner::new().run(async {
///     // axum's shape: the future is made inside the server's own task.
///     let server = tokio::spawn(async { runner::cancelled().await; "drained" });
///     tokio::task::yield_now().await;
///     runner::current_task().unwrap().cancel(); // as the first Ctrl-C would
///     server.await.unwrap() // the main task was observing: not dropped
/// });
/// assert_eq!(drained.unwrap(), "drained");
/// ```
///
/// Made in a `spawn_blocking` job of a current-thread loop (no run's thread, no published
/// main task), it observes the Runner's close only. Made outside any Runner, it never
/// resolves.
pub fn cancelled() -> Cancelled {
    // A task of the Runner observes its own record.
    if let Some(task) = scope::with(|s| s.task.clone()).flatten() {
        task.observe();
        return Cancelled {
            task: Some(task),
            watch: None,
            runner: None,
        };
    }
    // Plain code on a Runner's runtime: the Runner's active main task, and its close.
    let Some((main, stop)) = scope::plain_observed() else {
        return Cancelled {
            task: None,
            watch: None,
            runner: None,
        };
    };
    if let Some(main) = &main {
        main.observe();
    }
    stop.observe();
    Cancelled {
        task: main,
        watch: None,
        runner: Some(RunnerWatch { stop, watch: None }),
    }
}

/// The future returned by [`cancelled()`].
#[must_use = "a cancelled() future observes cancellation only while it is held"]
pub struct Cancelled {
    /// The record observed: the task's own, or (made in plain code) the main task's.
    task: Option<Arc<TaskState>>,
    /// Its entry among that record's watchers, once polled.
    watch: Option<u64>,
    /// Made in plain code: the Runner, whose close resolves it too.
    runner: Option<RunnerWatch>,
}

struct RunnerWatch {
    stop: Arc<RunnerStop>,
    watch: Option<u64>,
}

impl Cancelled {
    /// `true` once a request for it has come (consuming a pending one of its task).
    fn requested(&self) -> bool {
        self.task.as_ref().is_some_and(|task| task.take_request())
            || self.runner.as_ref().is_some_and(|r| r.stop.is_closing())
    }
}

impl Future for Cancelled {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<()> {
        let this = &mut *self;
        if this.task.is_none() && this.runner.is_none() {
            return Poll::Pending;
        }
        if let Some(task) = &this.task {
            task.mark_polled_cancelled();
        }
        if this.requested() {
            return Poll::Ready(());
        }
        // Whoever polls us is woken by the request, in whatever task this future now lives.
        if let Some(task) = &this.task {
            task.watch(&mut this.watch, cx.waker());
        }
        if let Some(runner) = &mut this.runner {
            runner.stop.watch(&mut runner.watch, cx.waker());
        }
        // A request made between the check and the registration has already run its wakes.
        if this.requested() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for Cancelled {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            if let Some(id) = self.watch {
                task.unwatch(id);
            }
            task.unobserve();
        }
        if let Some(runner) = &self.runner {
            runner.stop.unobserve(runner.watch);
        }
    }
}

impl fmt::Debug for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cancelled")
            .field(
                "requested",
                &(self.task.as_ref().is_some_and(|t| t.was_cancelled())
                    || self.runner.as_ref().is_some_and(|r| r.stop.is_closing())),
            )
            .field("plain", &self.runner.is_some())
            .finish()
    }
}
