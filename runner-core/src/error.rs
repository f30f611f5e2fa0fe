//! The errors of `runner`: one enum per place a caller can fail, one message per variant.

use std::any::Any;
use std::fmt;
use std::panic::Location;

/// Why [`Runner::run`](crate::Runner::run) (or [`run`](crate::run)) did not return the main
/// future's output.
///
/// ```
/// # use runner_core as runner;
/// let mut runner = runner::Runner::new();
/// runner.close();
/// let err = runner.run(async { 1 }).unwrap_err();
/// assert!(matches!(err, runner::RunError::Closed));
/// assert_eq!(err.to_string(), "Runner is closed");
/// ```
#[non_exhaustive]
#[derive(Debug)]
pub enum RunError {
    /// The Runner was closed (explicitly, by `Drop`, or because its loop factory failed).
    Closed,
    /// `run` was called inside another run of a Runner on this thread: from its main task,
    /// from one of its tasks, or during its `close()` (asyncio: "cannot be called from a
    /// running event loop"). Await the future there instead.
    ///
    /// A thread that polls a tokio runtime of another kind (the body of `#[tokio::main]`, a
    /// `tokio::spawn`ed task) gets [`RunError::InsideTokioRuntime`] instead.
    ///
    /// ```
    /// # use runner_core as runner;
    /// let err = runner::run(async { runner::run(async {}).unwrap_err() }).unwrap();
    /// assert!(matches!(err, runner::RunError::NestedRun));
    /// ```
    NestedRun,
    /// `run` was called inside a poll of a tokio runtime that is not a Runner's run on this
    /// thread: the body of `#[tokio::main]` or of a `Runtime::block_on`, a `tokio::spawn`ed
    /// task. Blocking there would stall that runtime (tokio itself panics with "Cannot
    /// start a runtime from within a runtime"); runner returns this error instead. Await the
    /// future there, or call `run` from `tokio::task::spawn_blocking`, where blocking is
    /// allowed.
    ///
    /// ```
    /// # use runner_core as runner;
    /// let tokio_rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// let err = tokio_rt.block_on(async { runner::run(async {}).unwrap_err() });
    /// assert!(matches!(err, runner::RunError::InsideTokioRuntime));
    /// // Where blocking is allowed, it runs.
    /// let ok = tokio_rt.block_on(async {
    ///     tokio::task::spawn_blocking(|| runner::run(async { 1 })).await.unwrap()
    /// });
    /// assert_eq!(ok.unwrap(), 1);
    /// ```
    InsideTokioRuntime,
    /// The main task was cancelled by Ctrl-C (asyncio raises `KeyboardInterrupt`).
    Interrupted,
    /// The main task was cancelled by SIGTERM (when handled: by default under
    /// `#[runner::main]`, with `Builder::handle_sigterm(true)`, or as PID 1).
    Terminated,
    /// The main task was cancelled by something other than a signal, through its
    /// [`TaskHandle`](crate::TaskHandle) ([`current_task`](crate::current_task)), also when
    /// a signal cancelled it as well (asyncio's `CancelledError`).
    Cancelled,
    /// The loop factory could not build a runtime.
    LoopFactory(std::io::Error),
    /// The Runner is bound to thread `home` and this call came from another thread, `here`:
    /// its loop is a tokio `LocalRuntime` (`flavor = "local"`, or a loop factory that builds
    /// one), which runs only on the thread that built it (`run`, `run_in_context` and
    /// `get_loop` are refused elsewhere), or `runner::spawn_local` tasks of it are pending
    /// on `home`, where alone they can run (`run` is refused elsewhere until they are done).
    /// Call it on `home`; the Runner is left as it was.
    ///
    /// ```
    /// # use runner_core as runner;
    /// let mut runner = runner::Runner::builder()
    ///     .loop_factory(|| {
    ///         tokio::runtime::Builder::new_current_thread()
    ///             .enable_all()
    ///             .build_local(Default::default())
    ///     })
    ///     .build();
    /// runner.run(async {}).unwrap(); // builds the loop on this thread
    /// let home = std::thread::current().id();
    /// let mut runner = std::thread::spawn(move || {
    ///     let err = runner.run(async {}).unwrap_err();
    ///     assert!(matches!(err, runner::RunError::WrongThread { home: h, .. } if h == home));
    ///     runner // a Runner is Send: take it back home
    /// })
    /// .join()
    /// .unwrap();
    /// runner.run(async {}).unwrap();
    /// ```
    WrongThread {
        /// The thread the Runner is bound to: the one that built its local loop, or the one
        /// running its pending `spawn_local` tasks.
        home: std::thread::ThreadId,
        /// The thread of the refused call.
        here: std::thread::ThreadId,
    },
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Closed => f.write_str("Runner is closed"),
            RunError::NestedRun => f.write_str(
                "Runner::run() cannot be called from a running runner: this thread is inside \
                 another Runner's run (its main task, one of its tasks, or its close); await \
                 the future instead",
            ),
            RunError::InsideTokioRuntime => f.write_str(
                "Runner::run() cannot be called inside a tokio runtime: this thread is \
                 polling a task or block_on future of one (such as the body of \
                 #[tokio::main]), which blocking would stall; await the future instead, or \
                 call run from tokio::task::spawn_blocking",
            ),
            RunError::Interrupted => f.write_str("the main task was interrupted by Ctrl-C"),
            RunError::Terminated => f.write_str("the main task was terminated by SIGTERM"),
            RunError::Cancelled => f.write_str("the main task was cancelled"),
            RunError::LoopFactory(err) => {
                write!(f, "the loop factory failed to build a runtime: {err}")
            }
            RunError::WrongThread { home, here } => write!(
                f,
                "this Runner is bound to thread {home:?} (its loop is a tokio LocalRuntime \
                 built there, or spawn_local tasks of it are pending there); it cannot run on \
                 thread {here:?}: run it on that thread"
            ),
        }
    }
}

impl std::error::Error for RunError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RunError::LoopFactory(err) => Some(err),
            _ => None,
        }
    }
}

/// Why awaiting a [`Task`](crate::Task) gave no value: the task was cancelled, or it
/// panicked (tokio's `JoinError`).
///
/// It is `Send + Sync + 'static` and a [`std::error::Error`], so `?` takes it into
/// `anyhow::Error` or `Box<dyn Error + Send + Sync>`, and its message names the task by
/// where it was spawned. It is opaque, so it can grow: ask it with
/// [`is_cancelled`](TaskError::is_cancelled) and [`is_panic`](TaskError::is_panic), and take
/// a panic's payload with [`into_panic`](TaskError::into_panic) (to resume it with
/// [`std::panic::resume_unwind`]) or [`try_into_panic`](TaskError::try_into_panic).
///
/// ```
/// # use runner_core as runner;
/// runner::run(async {
///     let task = runner::spawn(async { panic!("boom") });
///     let err = task.await.unwrap_err();
///     assert!(err.is_panic());
///     assert!(err.to_string().ends_with("panicked: boom"), "{err}");
///     let payload = err.into_panic();
///     assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom"));
/// })
/// .unwrap();
/// ```
///
/// With `?`:
///
/// ```
/// # use runner_core as runner;
/// async fn total() -> Result<u32, Box<dyn std::error::Error + Send + Sync>> {
///     let task = runner::spawn(async { 40 });
///     Ok(task.await? + 2)
/// }
/// assert_eq!(runner::run(total()).unwrap().unwrap(), 42);
/// ```
pub struct TaskError {
    repr: Repr,
    spawned_at: &'static Location<'static>,
}

enum Repr {
    Cancelled,
    Panicked(Payload),
}

impl TaskError {
    pub(crate) fn cancelled(spawned_at: &'static Location<'static>) -> TaskError {
        TaskError {
            repr: Repr::Cancelled,
            spawned_at,
        }
    }

    pub(crate) fn panicked(
        payload: Box<dyn Any + Send>,
        spawned_at: &'static Location<'static>,
    ) -> TaskError {
        TaskError {
            repr: Repr::Panicked(Payload(payload)),
            spawned_at,
        }
    }

    /// `true` if the task was cancelled before it produced a value (by [`Task::cancel`],
    /// a [`TaskHandle`], `close()`, or its runtime shutting down).
    ///
    /// [`Task::cancel`]: crate::Task::cancel
    /// [`TaskHandle`]: crate::TaskHandle
    ///
    /// ```
    /// # use runner_core as runner;
    /// runner::run(async {
    ///     let task = runner::spawn(std::future::pending::<()>());
    ///     task.cancel();
    ///     let err = task.await.unwrap_err();
    ///     assert!(err.is_cancelled() && !err.is_panic());
    /// })
    /// .unwrap();
    /// ```
    pub fn is_cancelled(&self) -> bool {
        matches!(self.repr, Repr::Cancelled)
    }

    /// `true` if the task panicked (its future, or its future's `Drop` when a cancel
    /// dropped it).
    ///
    /// ```
    /// # use runner_core as runner;
    /// runner::run(async {
    ///     let err = runner::spawn(async { panic!("boom") }).await.unwrap_err();
    ///     assert!(err.is_panic() && !err.is_cancelled());
    /// })
    /// .unwrap();
    /// ```
    pub fn is_panic(&self) -> bool {
        matches!(self.repr, Repr::Panicked(_))
    }

    /// The payload the task panicked with, as `catch_unwind` gives it: resume the panic
    /// with [`std::panic::resume_unwind`], or downcast it.
    ///
    /// # Panics
    /// If the task did not panic ([`is_panic`](TaskError::is_panic) is `false`), as tokio's
    /// `JoinError::into_panic` does; [`try_into_panic`](TaskError::try_into_panic) never
    /// panics.
    ///
    /// ```
    /// # use runner_core as runner;
    /// runner::run(async {
    ///     let err = runner::spawn(async { panic!("{}", 42) }).await.unwrap_err();
    ///     let payload = err.into_panic();
    ///     assert_eq!(payload.downcast_ref::<String>().map(String::as_str), Some("42"));
    /// })
    /// .unwrap();
    /// ```
    #[track_caller]
    pub fn into_panic(self) -> Box<dyn Any + Send + 'static> {
        match self.try_into_panic() {
            Ok(payload) => payload,
            Err(err) => panic!("TaskError::into_panic on an error that is not a panic: {err}"),
        }
    }

    /// The payload the task panicked with, or the error itself if the task did not panic.
    ///
    /// ```
    /// # use runner_core as runner;
    /// runner::run(async {
    ///     let task = runner::spawn(std::future::pending::<()>());
    ///     task.cancel();
    ///     let err = task.await.unwrap_err().try_into_panic().unwrap_err();
    ///     assert!(err.is_cancelled());
    /// })
    /// .unwrap();
    /// ```
    pub fn try_into_panic(self) -> Result<Box<dyn Any + Send + 'static>, TaskError> {
        match self.repr {
            Repr::Panicked(payload) => Ok(payload.0),
            Repr::Cancelled => Err(self),
        }
    }

    /// Where the task was spawned.
    ///
    /// ```
    /// # use runner_core as runner;
    /// runner::run(async {
    ///     let task = runner::spawn(async { panic!("boom") });
    ///     let spawned_at = task.location();
    ///     assert_eq!(task.await.unwrap_err().location(), spawned_at);
    /// })
    /// .unwrap();
    /// ```
    pub fn location(&self) -> &'static Location<'static> {
        self.spawned_at
    }

    /// The panic message, for `&str` and `String` payloads (what `panic!` makes).
    fn message(&self) -> Option<String> {
        match &self.repr {
            Repr::Cancelled => None,
            Repr::Panicked(payload) => Some(panic_message(payload.0.as_ref())),
        }
    }
}

impl fmt::Debug for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let spawned_at = format_args!("{}", self.spawned_at);
        match self.message() {
            None => f
                .debug_struct("TaskError::Cancelled")
                .field("spawned_at", &spawned_at)
                .finish(),
            Some(message) => f
                .debug_struct("TaskError::Panicked")
                .field("message", &message)
                .field("spawned_at", &spawned_at)
                .finish(),
        }
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.message() {
            None => write!(f, "task spawned at {} was cancelled", self.spawned_at),
            Some(message) => write!(f, "task spawned at {} panicked: {message}", self.spawned_at),
        }
    }
}

impl std::error::Error for TaskError {}

/// A panic payload that a shared `&TaskError` may carry across threads.
///
/// `Box<dyn Any + Send>` is not `Sync`: a `&dyn Any` of a `!Sync` value (a `Cell`, an `Rc`)
/// must not reach two threads at once. tokio's `JoinError` keeps its payload in a wrapper
/// that is `Sync` because it never hands such a reference out; this is the same idea. The
/// payload leaves only by value, and through `&Payload` the only access is a downcast to
/// `&str` or `String`, which are `Sync`.
struct Payload(Box<dyn Any + Send>);

// SAFETY: a `&Payload` reaches the boxed value only in `TaskError::message`, which hands it
// to `panic_message`: its `downcast_ref` first asks the value's `Any::type_id`, which reads
// none of its data (it is the blanket `impl<T: 'static + ?Sized> Any for T`, which no type
// can override), and it reads through the reference it gets only a `&'static str` or a
// `String`, both `Sync`. So no `&` of a `!Sync` value is ever shared. Moving the payload out
// needs the `Payload` by value.
unsafe impl Sync for Payload {}

/// Why [`ContextVar::reset`](crate::ContextVar::reset) refused a token.
///
/// ```
/// # use runner_core as runner;
/// static V: runner::ContextVar<u32> = runner::ContextVar::new("v");
/// let token = V.set(1);
/// V.reset(&token).unwrap();
/// let err = V.reset(&token).unwrap_err();
/// assert_eq!(err, runner::ContextError::TokenUsed);
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextError {
    /// The token was already used by an earlier `reset`.
    TokenUsed,
    /// The token was created in a different [`Context`](crate::Context).
    WrongContext,
    /// The token was created by a different [`ContextVar`](crate::ContextVar).
    WrongVar,
}

impl fmt::Display for ContextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ContextError::TokenUsed => "Token has already been used once",
            ContextError::WrongContext => "Token was created in a different Context",
            ContextError::WrongVar => "Token was created by a different ContextVar",
        })
    }
}

impl std::error::Error for ContextError {}

/// The text of a panic payload, for reports (`&str` and `String` payloads; others are opaque).
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_owned()
    }
}

/// Drops a panic payload without letting its own destructor unwind into the caller: a
/// payload whose `Drop` panics would turn a caught panic into an uncaught one.
pub(crate) fn dispose(payload: Box<dyn Any + Send>) {
    if let Err(again) =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(payload)))
    {
        // That panic's payload may be one of the same kind: leak it rather than risk it.
        std::mem::forget(again);
    }
}
