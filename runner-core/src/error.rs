//! The errors of `runner`: one enum per place a caller can fail, one message per variant.

use std::any::Any;
use std::fmt;

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
    /// `run` was called on a thread that is already inside a `Runner::run`.
    NestedRun,
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
            RunError::NestedRun => {
                f.write_str("Runner::run() cannot be called from a running runner")
            }
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

/// Why awaiting a [`Task`](crate::Task) gave no value.
///
/// ```
/// # use runner_core as runner;
/// runner::run(async {
///     let task = runner::spawn(async { panic!("boom") });
///     match task.await {
///         Err(runner::TaskError::Panicked(payload)) => {
///             assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom"));
///         }
///         other => panic!("unexpected: {other:?}"),
///     }
/// })
/// .unwrap();
/// ```
pub enum TaskError {
    /// The task was cancelled before it produced a value.
    Cancelled,
    /// The task panicked; this is the payload given to `panic!`.
    Panicked(Box<dyn Any + Send>),
}

impl TaskError {
    /// `true` for [`TaskError::Cancelled`].
    pub fn is_cancelled(&self) -> bool {
        matches!(self, TaskError::Cancelled)
    }
}

impl fmt::Debug for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::Cancelled => f.write_str("Cancelled"),
            TaskError::Panicked(payload) => f
                .debug_tuple("Panicked")
                .field(&panic_message(payload.as_ref()))
                .finish(),
        }
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::Cancelled => f.write_str("task was cancelled"),
            TaskError::Panicked(payload) => {
                write!(f, "task panicked: {}", panic_message(payload.as_ref()))
            }
        }
    }
}

impl std::error::Error for TaskError {}

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
