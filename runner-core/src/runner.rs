//! `Runner` (asyncio.Runner) as an explicit state machine, and `run` (asyncio.run).
//!
//! As in CPython's runners.py: every entry point goes through one `lazy_init`, the Runner
//! moves Created -> Initialized -> Closed and never back, and `close()` is safe to repeat.

use std::fmt;
use std::future::IntoFuture;
use std::io;
use std::panic::{self, AssertUnwindSafe, Location};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::{Handle, LocalRuntime, Runtime};

use crate::close;
use crate::context::Context;
use crate::debug::{self, Handler, Report};
use crate::error::{dispose, panic_message, RunError};
use crate::event_loop::Loop;
use crate::guarded::{Guarded, Outcome};
use crate::scope::{self};
use crate::shared::Shared;
use crate::task_state::{Origin, StopSignal, TaskState};
use crate::vars::CtxState;

/// asyncio's `THREAD_JOIN_TIMEOUT`: how long `close()` waits for blocking work by default.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(300);
/// asyncio's `slow_callback_duration` default.
pub const DEFAULT_SLOW_CALLBACK_DURATION: Duration = Duration::from_millis(100);
/// How long a shutdown may wait before it reports what it waits for, by default (see
/// [`Builder::shutdown_report_after`]).
///
/// ```
/// # use runner_core as runner;
/// assert_eq!(runner::DEFAULT_SHUTDOWN_REPORT_AFTER, std::time::Duration::from_secs(5));
/// ```
pub const DEFAULT_SHUTDOWN_REPORT_AFTER: Duration = Duration::from_secs(5);

type LoopFactory = Box<dyn FnOnce() -> io::Result<Loop> + Send>;

/// What a loop factory may return: a ready runtime, the result of building one, or a tokio
/// builder to build; or a tokio `LocalRuntime` (or the result of building one), which
/// becomes the Runner's loop as it is. Exactly these:
///
/// | the factory returns | the Runner's loop |
/// |---|---|
/// | `tokio::runtime::Runtime` | that runtime |
/// | `std::io::Result<Runtime>` | that runtime; an `Err` is [`RunError::LoopFactory`] |
/// | `tokio::runtime::Builder` | what its `build()` makes; an error is `LoopFactory` |
/// | `tokio::runtime::LocalRuntime` | that runtime, bound to the factory's thread |
/// | `std::io::Result<LocalRuntime>` | the same; an `Err` is `LoopFactory` |
///
/// The trait is sealed: runner implements it for these types and no other crate can. What a
/// value becomes is runner's business (a `LocalRuntime` is a loop of another kind, bound to
/// a thread), and sealing keeps that free to change without breaking anyone. A setup of your
/// own converts in the factory: `.loop_factory(|| my_config.build())` where `build` returns
/// one of the types above.
///
/// A `LocalRuntime` (tokio's `Builder::build_local`, what `#[runner::main(flavor =
/// "local")]` builds) runs every task on the thread that built it, so
/// `tokio::task::spawn_local` works in the main task and in every task of the loop, with no
/// `LocalSet`. The loop factory runs at the Runner's lazy init, on the thread of its first
/// `run` (or `get_loop`): that thread is the loop's home. The Runner stays `Send`, but away
/// from that thread `run` and `get_loop` return [`RunError::WrongThread`], and `close()`
/// reports it and leaves the close to the home thread, which does it when it exits, rather
/// than drop its `!Send` tasks on a foreign thread. A local loop still open when its home
/// thread exits (a Runner kept in a `thread_local!`, say) is closed then, fully.
///
/// ```
/// # use runner_core as runner;
/// use std::rc::Rc;
/// let mut runner = runner::Runner::builder()
///     .loop_factory(|| {
///         tokio::runtime::Builder::new_current_thread()
///             .enable_all()
///             .build_local(Default::default())
///     })
///     .build();
/// let answer = runner
///     .run(async {
///         let shared = Rc::new(6); // not Send
///         let task = tokio::task::spawn_local({
///             let shared = shared.clone();
///             async move { *shared * 7 }
///         });
///         task.await.unwrap()
///     })
///     .unwrap();
/// assert_eq!(answer, 42);
/// runner.close();
/// ```
#[diagnostic::on_unimplemented(
    message = "a loop factory cannot return `{Self}`",
    label = "this loop factory returns `{Self}`",
    note = "return a tokio `Runtime`, `std::io::Result<Runtime>`, `tokio::runtime::Builder` or `LocalRuntime`"
)]
pub trait IntoRuntime: sealed::Sealed {}

mod sealed {
    use std::io;

    use crate::event_loop::Loop;

    /// The conversion behind [`IntoRuntime`](super::IntoRuntime). Its module is private, so
    /// no other crate can name it: that is what seals `IntoRuntime`.
    #[diagnostic::on_unimplemented(
        message = "`IntoRuntime` is sealed: only runner implements it",
        label = "`{Self}` cannot become a loop",
        note = "a loop factory returns a tokio `Runtime`, `std::io::Result<Runtime>`, `tokio::runtime::Builder`, `LocalRuntime` or `std::io::Result<LocalRuntime>`: build one of them from your own type inside the factory"
    )]
    pub trait Sealed {
        /// The Runner's loop, or the error that kept it from being built.
        fn into_loop(self) -> io::Result<Loop>;
    }
}

impl sealed::Sealed for Runtime {
    fn into_loop(self) -> io::Result<Loop> {
        Ok(Loop::runtime(self))
    }
}

impl IntoRuntime for Runtime {}

impl sealed::Sealed for io::Result<Runtime> {
    fn into_loop(self) -> io::Result<Loop> {
        self.map(Loop::runtime)
    }
}

impl IntoRuntime for io::Result<Runtime> {}

impl sealed::Sealed for tokio::runtime::Builder {
    fn into_loop(mut self) -> io::Result<Loop> {
        self.build().map(Loop::runtime)
    }
}

impl IntoRuntime for tokio::runtime::Builder {}

impl sealed::Sealed for LocalRuntime {
    fn into_loop(self) -> io::Result<Loop> {
        Ok(Loop::local(self))
    }
}

impl IntoRuntime for LocalRuntime {}

impl sealed::Sealed for io::Result<LocalRuntime> {
    fn into_loop(self) -> io::Result<Loop> {
        self.map(Loop::local)
    }
}

impl IntoRuntime for io::Result<LocalRuntime> {}

fn default_loop() -> io::Result<Runtime> {
    // asyncio's loop is one thread, and left-over tasks pause between runs: current-thread.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Options for a [`Runner`]; [`Runner::builder`] makes one.
///
/// ```
/// # use runner_core as runner;
/// use std::time::Duration;
/// let mut runner = runner::Runner::builder()
///     .debug(Some(false))
///     .shutdown_timeout(Duration::from_secs(5))
///     .handle_sigint(false)
///     .loop_factory(|| tokio::runtime::Builder::new_multi_thread().enable_all().build())
///     .build();
/// assert_eq!(runner.run(async { 1 + 1 }).unwrap(), 2);
/// ```
pub struct Builder {
    debug: Option<bool>,
    shutdown_timeout: Duration,
    handle_sigint: bool,
    /// `None`: the default, on only when the process is PID 1.
    handle_sigterm: Option<bool>,
    shutdown_report_after: Duration,
    slow_callback_duration: Duration,
    loop_factory: Option<LoopFactory>,
    handler: Option<Handler>,
    grace_period: Option<Duration>,
    drain_delay: Option<Duration>,
}

impl Builder {
    /// `Some(b)` forces debug mode on or off; `None` (the default) reads `RUNNER_DEBUG` at
    /// lazy init (set, non-empty and not `0` means on), like `PYTHONASYNCIODEBUG`.
    pub fn debug(mut self, debug: Option<bool>) -> Builder {
        self.debug = debug;
        self
    }

    /// How long `close()` waits for cancelled tasks and finalizers, and then for
    /// `spawn_blocking` jobs (default 300 s, asyncio's `THREAD_JOIN_TIMEOUT`).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Builder {
        self.shutdown_timeout = timeout;
        self
    }

    /// Whether `run` handles Ctrl-C (default `true`; only ever on the main thread, and only
    /// while SIGINT still has its default disposition).
    ///
    /// Runner's handling is armed only while a run of a Runner with it on is going on. At
    /// any other moment (between runs, after `close()`, during a run of a
    /// `handle_sigint(false)` Runner), runner steps aside: SIGINT does what it would do if
    /// runner were not there. A handler of the program's own gets every SIGINT, whether it
    /// was registered before or after runner's first run: `tokio::signal::ctrl_c`,
    /// `tokio::signal::unix::signal`, `signal-hook`, or any handler that calls the one it
    /// replaced. A program with no handler of its own dies by SIGINT, as by default (runner
    /// never leaves SIGINT ignored). So a program that handles Ctrl-C itself builds its
    /// Runner with `handle_sigint(false)`, and Ctrl-C reaches its handler, also after runs
    /// of default Runners (such as `runner::run`) in the same process. (The trap this
    /// removes: runner's handler used to run first and, outside a run, kill the process, so
    /// a handler registered after runner's first run never saw a single Ctrl-C.)
    ///
    /// During a run with handling on, the first Ctrl-C cancels the main task (and also
    /// reaches a handler of the program's own registered after runner's first run); a
    /// second one ends the process. A handler installed before runner's first run keeps
    /// SIGINT to itself for good (runner then never handles it).
    ///
    /// ```no_run
    /// # use runner_core as runner;
    /// runner::run(async { /* setup, with runner's Ctrl-C handling */ }).unwrap();
    /// let mut server = runner::Runner::builder().handle_sigint(false).build();
    /// server.run(async {
    ///     // Every Ctrl-C comes here; runner steps aside.
    ///     tokio::signal::ctrl_c().await.unwrap();
    ///     println!("got Ctrl-C");
    /// })
    /// .unwrap();
    /// ```
    pub fn handle_sigint(mut self, on: bool) -> Builder {
        self.handle_sigint = on;
        self
    }

    /// Whether `run` handles SIGTERM like Ctrl-C: the first SIGTERM cancels the main task
    /// and `run` returns [`RunError::Terminated`]; a second SIGTERM or SIGINT ends the
    /// process. Only on the main thread, and only while SIGTERM still has its default
    /// disposition. For containers, systemd and `kill`.
    ///
    /// The default here is off (as asyncio: a library that calls `Runner::run` must not take
    /// SIGTERM over), except when the process is PID 1 of its PID namespace (a container
    /// without an init: `docker run` of a scratch or distroless image, most Kubernetes
    /// pods). There the kernel drops a SIGTERM nobody handles, so `docker stop` would wait
    /// and then SIGKILL: handling it is the only way to a clean shutdown.
    /// `handle_sigterm(false)` turns it off there too. `#[runner::main]` turns it on
    /// everywhere unless it says `handle_sigterm = false`: a program whose entry point is
    /// the attribute asked for a graceful shutdown.
    ///
    /// As with [`handle_sigint`](Builder::handle_sigint), runner steps aside for SIGTERM
    /// outside a run that handles it: a handler of the program's own gets it, and without
    /// one SIGTERM has its default action.
    ///
    /// ```no_run
    /// # use runner_core as runner;
    /// let mut runner = runner::Runner::builder().handle_sigterm(true).build();
    /// match runner.run(async {
    ///     runner::cancelled().await; // `docker stop`: clean up here
    /// }) {
    ///     Err(runner::RunError::Terminated) => {
    ///         runner.close();
    ///         runner::die_by_sigterm(); // status 143
    ///     }
    ///     other => println!("{other:?}"),
    /// }
    /// ```
    pub fn handle_sigterm(mut self, on: bool) -> Builder {
        self.handle_sigterm = Some(on);
        self
    }

    /// How long a shutdown may wait before it reports what it waits for (default 5 s,
    /// [`DEFAULT_SHUTDOWN_REPORT_AFTER`]; `Duration::MAX` turns the reports off).
    ///
    /// The report ([`ReportKind::ShutdownWaiting`](crate::ReportKind::ShutdownWaiting), to
    /// the exception handler) comes when the main task is still running this long after a
    /// signal cancelled it, and when `close()` has waited this long for its cancelled tasks
    /// (step 1), for an `at_close` finalizer (step 2, named by where it was registered) or
    /// for blocking work (step 3). It names how long the shutdown has waited,
    /// the tasks still pending (by spawn location, the main task included), how many plain
    /// tokio tasks (ones runner did not start, such as a server's connections) are alive,
    /// the `spawn_blocking` jobs still running, and the signal that forces the exit (a
    /// second SIGTERM after a SIGTERM, a second Ctrl-C after a Ctrl-C). While the wait goes
    /// on it comes again at most once per this duration (never more often than every
    /// 10 ms), and with a [`grace_period`](Builder::grace_period) at least every third of
    /// it. Under systemd (`NOTIFY_SOCKET`) its text is also the unit's `STATUS=`. A
    /// shutdown that ends sooner reports nothing, and a run that no signal reached pays
    /// nothing for it.
    ///
    /// ```
    /// # use runner_core as runner;
    /// use std::time::Duration;
    /// let mut runner = runner::Runner::builder()
    ///     .shutdown_report_after(Duration::from_secs(2))
    ///     .build();
    /// runner.run(async {}).unwrap();
    /// runner.close(); // nothing to wait for: no report
    /// ```
    pub fn shutdown_report_after(mut self, threshold: Duration) -> Builder {
        self.shutdown_report_after = threshold;
        self
    }

    /// A deadline for the whole shutdown (default: none): from the first signal (Ctrl-C, or
    /// SIGTERM when handled) the main task's drain and then `close()` together may take this
    /// long. When it passes, one last report
    /// ([`ReportKind::GracePeriodExpired`](crate::ReportKind::GracePeriodExpired)) names
    /// what still runs (the main task, what `close()` waits for, pending tasks, plain tokio
    /// tasks, blocking work), and the process ends as a second signal would end it: by that
    /// signal (status 130 or 143), or with exit status 130 / 143 as PID 1.
    ///
    /// Set it a little below the orchestrator's own limit, after which it kills without a
    /// word: Kubernetes' `terminationGracePeriodSeconds` (30 s by default), docker's stop
    /// timeout (`docker stop -t`, 10 s by default), systemd's `TimeoutStopSec` (90 s). The
    /// drain delay counts in it. It ends when the Runner's `close()` returns; a Runner kept
    /// running after a signal (another `run`) is still within it. While it runs, the
    /// progress reports of the shutdown
    /// ([`shutdown_report_after`](Builder::shutdown_report_after)) come at least every third
    /// of it.
    ///
    /// The deadline is kept by runner's signal thread, which never waits on the program: a
    /// main task stuck in a loop that never yields, or a finalizer that never returns, ends
    /// on time all the same.
    ///
    /// ```
    /// # use runner_core as runner;
    /// use std::time::Duration;
    /// let mut runner = runner::Runner::builder()
    ///     .handle_sigterm(true)
    ///     .grace_period(Duration::from_secs(25)) // terminationGracePeriodSeconds: 30
    ///     .build();
    /// runner.run(async { /* serve until the first signal, then drain */ }).unwrap();
    /// runner.close();
    /// ```
    pub fn grace_period(mut self, grace: Duration) -> Builder {
        self.grace_period = Some(grace);
        self
    }

    /// How long the main task's cancel waits after a SIGTERM (default: none). The first
    /// SIGTERM turns [`shutdown_requested()`](crate::shutdown_requested) true at once, and
    /// cancels the main task only when the delay is over: meanwhile the program serves as
    /// usual, and its readiness endpoint (which asks `shutdown_requested()`) fails, so a
    /// load balancer stops sending new requests before the server stops taking them.
    /// Kubernetes removes a pod from its Service's endpoints at the moment it sends SIGTERM,
    /// and for a few seconds new connections still arrive: this replaces the `preStop: sleep`
    /// of a pod spec. systemd hears `STOPPING=1` at the signal (with `NOTIFY_SOCKET`).
    ///
    /// SIGTERM only (with [`handle_sigterm`](Builder::handle_sigterm) on): a Ctrl-C at a
    /// terminal is never delayed. A second signal (SIGTERM or Ctrl-C) during the delay cuts
    /// it short: the main task is cancelled at once, and the drain begins; a further signal
    /// then forces the exit as usual. The [`grace_period`](Builder::grace_period) counts the
    /// delay. `Duration::ZERO` is no delay.
    ///
    /// ```
    /// # use runner_core as runner;
    /// use std::time::Duration;
    /// let mut runner = runner::Runner::builder()
    ///     .handle_sigterm(true)
    ///     .drain_delay(Duration::from_secs(5))
    ///     .grace_period(Duration::from_secs(25))
    ///     .build();
    /// runner
    ///     .run(async {
    ///         // readiness: 503 once the SIGTERM came, while the server still serves
    ///         let ready = !runner::shutdown_requested();
    ///         assert!(ready);
    ///     })
    ///     .unwrap();
    /// ```
    pub fn drain_delay(mut self, delay: Duration) -> Builder {
        self.drain_delay = Some(delay);
        self
    }

    /// `#[runner::main]`'s default: SIGTERM handled unless the attribute said otherwise.
    pub(crate) fn handle_sigterm_unless_set(mut self) -> Builder {
        self.handle_sigterm.get_or_insert(true);
        self
    }

    /// In debug mode, polls at least this long are reported (default 100 ms).
    pub fn slow_callback_duration(mut self, threshold: Duration) -> Builder {
        self.slow_callback_duration = threshold;
        self
    }

    /// Builds the runtime with `factory` instead of the default current-thread runtime. It is
    /// called once, with no arguments, at lazy init; an error (or a panic) in it becomes
    /// [`RunError::LoopFactory`]. It may return a tokio `Runtime`, `io::Result<Runtime>` or
    /// `runtime::Builder`, or a tokio `LocalRuntime` (see [`IntoRuntime`]):
    ///
    /// ```
    /// # use runner_core as runner;
    /// let mut runner = runner::Runner::builder()
    ///     .loop_factory(|| {
    ///         tokio::runtime::Builder::new_current_thread()
    ///             .enable_all()
    ///             .name("my-loop")
    ///             .build_local(Default::default())
    ///     })
    ///     .build();
    /// let name = runner.run(async {
    ///     let rc = std::rc::Rc::new(()); // not Send, and no LocalSet needed
    ///     tokio::task::spawn_local(async move { drop(rc) }).await.unwrap();
    ///     tokio::runtime::Handle::current().name().map(str::to_owned)
    /// });
    /// assert_eq!(name.unwrap().as_deref(), Some("my-loop"));
    /// ```
    pub fn loop_factory<F, R>(mut self, factory: F) -> Builder
    where
        F: FnOnce() -> R + Send + 'static,
        R: IntoRuntime,
    {
        self.loop_factory = Some(Box::new(move || sealed::Sealed::into_loop(factory())));
        self
    }

    /// Sends every [`Report`] to `handler` (asyncio's `loop.set_exception_handler`) instead of
    /// the default sink: stderr, or `tracing` when the `tracing` feature is on and a
    /// subscriber is set. Call [`default_exception_handler`](crate::default_exception_handler)
    /// from `handler` to keep the default output as well. A panic in `handler` is caught, and
    /// the report then goes to the default sink.
    ///
    /// ```
    /// # use runner_core as runner;
    /// let mut runner = runner::Runner::builder()
    ///     .exception_handler(|report: &runner::Report| eprintln!("my app: {report}"))
    ///     .build();
    /// runner.run(async {}).unwrap();
    /// ```
    pub fn exception_handler<H>(mut self, handler: H) -> Builder
    where
        H: Fn(&Report) + Send + Sync + 'static,
    {
        self.handler = Some(Arc::new(handler));
        self
    }

    /// The Runner; it creates nothing until first used.
    pub fn build(self) -> Runner {
        let Builder {
            debug,
            shutdown_timeout,
            handle_sigint,
            handle_sigterm,
            shutdown_report_after,
            slow_callback_duration,
            loop_factory,
            handler,
            grace_period,
            drain_delay,
        } = self;
        let handle_sigterm = handle_sigterm.unwrap_or_else(crate::signal::is_pid1);
        let drain_delay = drain_delay.filter(|d| !d.is_zero());
        Runner {
            state: State::Created(loop_factory),
            config: Config {
                debug,
                shutdown_timeout,
                signals: crate::signal::Wanted::new(
                    handle_sigint,
                    handle_sigterm,
                    drain_delay.is_some(),
                ),
                shutdown_report_after,
                slow_callback_duration,
                default_handler: handler.is_none(),
                handler: match handler {
                    Some(user) => contained(user),
                    None => Arc::new(debug::default_handler),
                },
                grace_period,
                drain_delay,
            },
        }
    }
}

/// The user's exception handler, made safe to call from `close()`: if it panics, the report
/// goes to the default handler instead, and the panic's payload is dropped here, where a
/// payload whose own `Drop` panics cannot escape either.
fn contained(user: Handler) -> Handler {
    Arc::new(move |report: &Report| {
        if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| user(report))) {
            dispose(payload);
            debug::default_handler(report);
        }
    })
}

impl Default for Builder {
    fn default() -> Builder {
        Builder {
            debug: None,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            handle_sigint: true,
            handle_sigterm: None,
            shutdown_report_after: DEFAULT_SHUTDOWN_REPORT_AFTER,
            slow_callback_duration: DEFAULT_SLOW_CALLBACK_DURATION,
            loop_factory: None,
            handler: None,
            grace_period: None,
            drain_delay: None,
        }
    }
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("debug", &self.debug)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("handle_sigint", &self.handle_sigint)
            .field("handle_sigterm", &self.handle_sigterm)
            .field("shutdown_report_after", &self.shutdown_report_after)
            .field("slow_callback_duration", &self.slow_callback_duration)
            .field("loop_factory", &self.loop_factory.is_some())
            .field("exception_handler", &self.handler.is_some())
            .field("grace_period", &self.grace_period)
            .field("drain_delay", &self.drain_delay)
            .finish()
    }
}

struct Config {
    debug: Option<bool>,
    shutdown_timeout: Duration,
    /// The signals a run on the main thread arms, resolved at `build()` (the PID 1 default
    /// of SIGTERM, the drain delay), so a run copies them as they are.
    signals: crate::signal::Wanted,
    shutdown_report_after: Duration,
    slow_callback_duration: Duration,
    handler: Handler,
    /// No `exception_handler` was set (final words may bypass std's `Stderr`).
    default_handler: bool,
    grace_period: Option<Duration>,
    /// `None` also for a zero delay.
    drain_delay: Option<Duration>,
}

impl Config {
    /// How often a slow shutdown reports: `shutdown_report_after`, and with a grace period
    /// at least every third of it (unless reports are off).
    fn report_after(&self) -> Duration {
        match self.grace_period {
            Some(grace) if self.shutdown_report_after != Duration::MAX => {
                self.shutdown_report_after.min(grace / 3)
            }
            _ => self.shutdown_report_after,
        }
    }
}

enum State {
    Created(Option<LoopFactory>),
    Initialized(Inner),
    Closed,
}

struct Inner {
    rt: Loop,
    shared: Arc<Shared>,
    /// The Runner's context, moved into each run's main task and back out after.
    ctx: CtxState,
    /// The main task's record, reused by the next run when nothing else holds it.
    main: Option<Arc<TaskState>>,
}

/// Runs futures on one lazily built tokio runtime, reused across calls (asyncio's `Runner`).
///
/// `new()` creates nothing; the runtime and the Runner's [`Context`] are made by the first
/// `run`, `run_in_context` or `get_loop`. Every `run` uses that runtime and that context, so
/// tasks left pending by one `run` resume in the next, and context values carry over.
/// [`close`](Runner::close) (also called by `Drop`) cancels what is left and shuts down.
///
/// ```
/// # use runner_core as runner;
/// static COUNT: runner::ContextVar<u32> = runner::ContextVar::new("count");
///
/// let mut runner = runner::Runner::new();
/// runner.run(async { COUNT.set(1) }).unwrap();
/// let seen = runner.run(async { COUNT.get() }).unwrap();
/// assert_eq!(seen, Some(1));
/// runner.close();
/// assert!(runner.run(async {}).is_err());
/// ```
pub struct Runner {
    state: State,
    config: Config,
}

impl Runner {
    /// A Runner with default options: current-thread runtime, Ctrl-C handled, debug mode
    /// from `RUNNER_DEBUG`. Creates nothing yet.
    pub fn new() -> Runner {
        Builder::default().build()
    }

    /// Options for a Runner.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Runs `main` to completion as the main task and returns its output (asyncio's
    /// `Runner.run`).
    ///
    /// The future runs on the calling thread (so it need not be `Send` or `'static`), inside
    /// the Runner's context, with Ctrl-C handling armed (see the `runner` crate docs). A panic in it
    /// propagates from here with its payload, and the Runner stays usable.
    ///
    /// # Errors
    /// [`RunError::NestedRun`] inside another run on this thread,
    /// [`RunError::InsideTokioRuntime`] inside a poll of another tokio runtime (such as
    /// the body of `#[tokio::main]`), [`RunError::Closed`] after
    /// `close()`, [`RunError::LoopFactory`] if the runtime could not be built,
    /// [`RunError::Interrupted`] / [`RunError::Terminated`] / [`RunError::Cancelled`] if the
    /// main task was cancelled (by Ctrl-C, by SIGTERM, by other means),
    /// [`RunError::WrongThread`] if the loop is a `LocalRuntime` (see [`IntoRuntime`]) or
    /// [`spawn_local`](crate::spawn_local) tasks are pending, and this is not their thread.
    ///
    /// ```
    /// # use runner_core as runner;
    /// let mut runner = runner::Runner::new();
    /// let text = String::from("borrowed, not 'static");
    /// let len = runner.run(async { text.len() }).unwrap();
    /// assert_eq!(len, 21);
    /// ```
    #[track_caller]
    pub fn run<F: IntoFuture>(&mut self, main: F) -> Result<F::Output, RunError> {
        self.run_in(main, None)
    }

    /// Like [`run`](Runner::run), but inside `ctx` itself: what the main task sets there is
    /// in `ctx` afterwards (and not in the Runner's own context).
    ///
    /// ```
    /// # use runner_core as runner;
    /// static V: runner::ContextVar<u8> = runner::ContextVar::new("v");
    /// let ctx = runner::Context::new();
    /// let mut runner = runner::Runner::new();
    /// runner.run_in_context(async { V.set(3); }, &ctx).unwrap();
    /// assert_eq!(ctx.get(&V), Some(3));
    /// assert_eq!(runner.run(async { V.get() }).unwrap(), None);
    /// ```
    #[track_caller]
    pub fn run_in_context<F: IntoFuture>(
        &mut self,
        main: F,
        ctx: &Context,
    ) -> Result<F::Output, RunError> {
        self.run_in(main, Some(ctx))
    }

    /// asyncio's `Runner.run` steps: nested-run check, lazy init, then the main task in
    /// `ctx` (the Runner's own context when `None`).
    #[track_caller]
    fn run_in<F: IntoFuture>(
        &mut self,
        main: F,
        ctx: Option<&Context>,
    ) -> Result<F::Output, RunError> {
        let location = Location::caller();
        let Some(run) = scope::begin_run() else {
            return Err(RunError::NestedRun);
        };
        if scope::in_tokio_poll() {
            // Not a Runner's run (that is `begin_run`'s check), but a poll of some tokio
            // runtime: say which, since "from a running runner" would be untrue there.
            return Err(RunError::InsideTokioRuntime);
        }
        // Signals are armed only on the process's main thread (asyncio: only there).
        let signals = self.config.signals.on_thread(run.main_thread);
        let inner = self.lazy_init()?;
        drive(inner, ctx, main, location, signals, run)
    }

    /// The runtime's handle, building the runtime first if needed (asyncio's `get_loop`).
    ///
    /// ```
    /// # use runner_core as runner;
    /// let mut runner = runner::Runner::new();
    /// let handle = runner.get_loop().unwrap();
    /// assert_eq!(handle.runtime_flavor(), tokio::runtime::RuntimeFlavor::CurrentThread);
    /// ```
    ///
    /// # Errors
    /// [`RunError::Closed`] after `close()`, [`RunError::LoopFactory`] if building failed,
    /// [`RunError::WrongThread`] for a `LocalRuntime` loop away from the thread that built it.
    pub fn get_loop(&mut self) -> Result<Handle, RunError> {
        Ok(self.lazy_init()?.rt.here()?.handle().clone())
    }

    /// The debug flag: the builder's `Some(b)`, else `RUNNER_DEBUG` (asyncio's
    /// `loop.get_debug()`). Fixed at lazy init; before that, what lazy init would resolve.
    ///
    /// ```
    /// # use runner_core as runner;
    /// let runner = runner::Runner::builder().debug(Some(true)).build();
    /// assert!(runner.debug());
    /// ```
    pub fn debug(&self) -> bool {
        match &self.state {
            State::Initialized(inner) => inner.shared.debug,
            _ => self.config.debug.unwrap_or_else(debug::env_debug),
        }
    }

    /// `true` once `close()` has run.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Shuts down (asyncio's `Runner.close`), in four steps:
    /// 1. cancels every pending [`spawn`](crate::spawn)ed task (one pass) and waits for them,
    ///    reporting each that panicked;
    /// 2. runs the [`at_close`](crate::at_close) finalizers, last registered first;
    /// 3. waits for [`spawn_blocking`](crate::spawn_blocking) jobs, reporting how many it
    ///    abandons;
    /// 4. shuts the runtime down (reporting a panic in the `Drop` of a task it drops, and
    ///    blocking work of any kind, `tokio::task::spawn_blocking` and `tokio::fs` included,
    ///    still running at the timeout) and releases the Runner's context.
    ///
    /// # How long it takes
    /// Steps 1–2 together wait at most the shutdown timeout, and so do steps 3–4, so `close`
    /// returns within about twice the timeout **as long as no poll, `Drop` or finalizer
    /// blocks its thread**. A task that blocks its thread (a blocking call in a poll after the
    /// cancel, a destructor that sleeps) cannot be interrupted: `close` returns only after
    /// that call does. Debug mode's slow-poll report names the task that does it.
    ///
    /// Inside a poll of a tokio runtime (a `#[tokio::main]` body, a tokio task, another
    /// Runner's `run`), blocking would stall that runtime: there `close` does not wait at
    /// all. It drops the tasks where they stand (their destructors run) and reports that
    /// it did. On a blocking thread (`spawn_blocking`) it closes normally.
    ///
    /// Never panics; a second call does nothing; `Drop` calls it. Everything is released,
    /// also when tasks were left pending.
    ///
    /// ```
    /// # use runner_core as runner;
    /// let mut runner = runner::Runner::new();
    /// runner.run(async {
    ///     runner::spawn(std::future::pending::<()>()); // left pending
    /// }).unwrap();
    /// runner.close(); // cancels it
    /// runner.close(); // no-op
    /// assert!(runner.is_closed());
    /// ```
    pub fn close(&mut self) {
        if let State::Initialized(inner) = std::mem::replace(&mut self.state, State::Closed) {
            let Inner {
                rt, shared, ctx, ..
            } = inner;
            // `shutdown_requested()` answers true from the start of the close, and the
            // shutdown that a signal began (its grace period) ends with it.
            let closing = shared.clone();
            closing.shutdown.request();
            // Dropped after the close: the Runner lets go of its state (see `Shared::stake`).
            let _stake = shared.stake();
            close::shutdown(rt, shared, ctx, self.config.shutdown_timeout);
            closing.shutdown.end();
        }
    }

    #[inline]
    fn lazy_init(&mut self) -> Result<&mut Inner, RunError> {
        if let State::Initialized(_) = self.state {
        } else {
            self.init()?;
        }
        match &mut self.state {
            State::Initialized(inner) => Ok(inner),
            _ => Err(RunError::Closed),
        }
    }

    /// The one place a Runner leaves `Created` (asyncio's `_lazy_init`).
    #[cold]
    fn init(&mut self) -> Result<(), RunError> {
        if let State::Created(factory) = &mut self.state {
            let factory = factory.take();
            let built = match factory {
                None => default_loop().map(Loop::runtime),
                Some(factory) => {
                    panic::catch_unwind(AssertUnwindSafe(factory)).unwrap_or_else(|payload| {
                        Err(io::Error::other(format!(
                            "loop factory panicked: {}",
                            panic_message(payload.as_ref())
                        )))
                    })
                }
            };
            let rt = match built {
                Ok(rt) => rt,
                Err(err) => {
                    // The factory is spent; there is nothing left to initialize with.
                    self.state = State::Closed;
                    return Err(RunError::LoopFactory(err));
                }
            };
            let config = &self.config;
            let mut shared = Shared::new(
                rt.handle().clone(),
                rt.home(),
                config.debug.unwrap_or_else(debug::env_debug),
                config.slow_callback_duration,
                config.report_after(),
                config.handler.clone(),
            );
            shared.shutdown = crate::shutdown::Stop::new(
                config.grace_period,
                config.drain_delay,
                config.default_handler,
            );
            let shared = Arc::new(shared);
            scope::remember_runtime(&shared);
            rt.remember_closer(&shared, config.shutdown_timeout);
            if crate::notify::start_watchdog(&shared) {
                shared.shutdown.own_task_started();
            }
            self.state = State::Initialized(Inner {
                rt,
                shared,
                ctx: scope::copy_ctx(),
                main: None,
            });
        }
        Ok(())
    }
}

impl Default for Runner {
    fn default() -> Runner {
        Runner::new()
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.close();
    }
}

impl fmt::Debug for Runner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Created(_) => "created",
            State::Initialized(_) => "initialized",
            State::Closed => "closed",
        };
        f.debug_struct("Runner")
            .field("state", &state)
            .field("debug", &self.debug())
            .field("shutdown_timeout", &self.config.shutdown_timeout)
            .field("handle_sigint", &self.config.signals.sigint())
            .field("handle_sigterm", &self.config.signals.sigterm())
            .field("grace_period", &self.config.grace_period)
            .field("drain_delay", &self.config.drain_delay)
            .finish()
    }
}

fn drive<F: IntoFuture>(
    inner: &mut Inner,
    ctx: Option<&Context>,
    main: F,
    location: &'static Location<'static>,
    signals: crate::signal::Wanted,
    mut run: scope::RunGuard,
) -> Result<F::Output, RunError> {
    let rt = inner.rt.here()?;
    // Bound to the thread of its pending `spawn_local` tasks (one load when there are none).
    inner.shared.local.check_thread()?;
    let record = match inner.main.take() {
        Some(record) if Arc::strong_count(&record) == 1 && Arc::weak_count(&record) == 0 => {
            std::sync::atomic::fence(Ordering::Acquire);
            // SAFETY: the only reference (no other strong or weak one; the Ctrl-C listener's
            // pointer is only used while armed, and the last run has disarmed). Unlike
            // `Arc::get_mut` this costs no atomic read-modify-write on the run's hot path.
            unsafe { &mut *Arc::as_ptr(&record).cast_mut() }.reset(location);
            record
        }
        // A `cancelled()` future of an earlier run outlived it: leave that record alone.
        _ => {
            let record = Arc::new(TaskState::new(location, Origin::Main));
            crate::progress::remember_main_task(&record, &inner.shared);
            // Plain tasks polled on this thread find the main task there (a reused record
            // is at the same address: nothing to do per run).
            inner.shared.set_run_main(&record);
            record
        }
    };
    let entry_ctx = match ctx {
        Some(ctx) => ctx.state(),
        None => std::mem::replace(&mut inner.ctx, CtxState::EMPTY),
    };
    // The main task runs on this thread, where the run guard lets it (and plain tokio tasks
    // of a current-thread loop) find the Runner: no `Arc<Shared>` of its own.
    let debug = inner.shared.debug;
    // On a multi-thread loop, plain tasks on worker threads find the main task published
    // in `Shared` for the length of the run. (Withdrawn below, not by a guard: `block_on`
    // does not unwind, the wrapper catches the main future's panic; and the next run's
    // publication would replace a stale one.)
    let published = inner.shared.publishes_main();
    if published {
        inner.shared.publish_main(Some(&record));
    }
    let guarded = Guarded::new(main.into_future(), entry_ctx, record, debug, signals)
        .driving(&inner.shared.local);
    let mut guarded = std::pin::pin!(guarded);
    run.enter(&inner.shared);
    let outcome = rt.block_on(guarded.as_mut());
    drop(run);
    if published {
        inner.shared.publish_main(None);
    }
    let (exit_ctx, record) = guarded.as_mut().take_ended();
    match ctx {
        Some(ctx) => ctx.store(exit_ctx),
        None => inner.ctx = exit_ctx,
    }
    // A signal that reached the run decides what it returns, even when the main task ended
    // before the cancel reached it (asyncio raises KeyboardInterrupt from the handler then).
    let signal = record.as_ref().and_then(|m| m.stop_signal());
    let otherwise = record.as_ref().is_some_and(|m| m.cancelled_otherwise());
    inner.main = record;
    match outcome {
        // Cancelled by something else too (a `TaskHandle`): asyncio lets that
        // `CancelledError` through rather than turn it into `KeyboardInterrupt`.
        Outcome::Cancelled if otherwise => Err(RunError::Cancelled),
        Outcome::Done(_) | Outcome::Cancelled if signal == Some(StopSignal::Interrupt) => {
            Err(RunError::Interrupted)
        }
        Outcome::Done(_) | Outcome::Cancelled if signal == Some(StopSignal::Terminate) => {
            Err(RunError::Terminated)
        }
        Outcome::Done(value) => Ok(value),
        Outcome::Cancelled => Err(RunError::Cancelled),
        Outcome::Panicked(payload) => panic::resume_unwind(payload),
    }
}

/// Runs `main` on a fresh Runner and closes it (asyncio's `run()`).
///
/// ```
/// # use runner_core as runner;
/// let answer = runner::run(async { 40 + 2 }).unwrap();
/// assert_eq!(answer, 42);
/// ```
///
/// # Errors
/// As [`Runner::run`]; `NestedRun` and `InsideTokioRuntime` are detected before anything is
/// created.
#[track_caller]
pub fn run<F: IntoFuture>(main: F) -> Result<F::Output, RunError> {
    if scope::in_run() {
        return Err(RunError::NestedRun);
    }
    if scope::in_tokio_poll() {
        return Err(RunError::InsideTokioRuntime);
    }
    let mut runner = Runner::new();
    let result = runner.run(main);
    runner.close();
    result
}

/// The debug flag of the Runner running the current code (asyncio's
/// `get_running_loop().get_debug()`); `false` outside any Runner.
///
/// ```
/// # use runner_core as runner;
/// let mut runner = runner::Runner::builder().debug(Some(true)).build();
/// assert!(runner.run(async { runner::debug_enabled() }).unwrap());
/// assert!(!runner::debug_enabled());
/// ```
pub fn debug_enabled() -> bool {
    scope::with_runner(|s| s.debug).unwrap_or(false)
}
