//! What `#[runner::main]` and `#[runner::test]` expand to. Not a public API: it may change
//! in any release.

use std::future::{Future, IntoFuture};
use std::io::{self, Write};
use std::pin::Pin;
use std::time::{Duration, Instant};

use tokio::runtime::{LocalRuntime, Runtime};

use crate::runner::{Builder, Runner};
use crate::{die_by_sigint, die_by_sigterm, RunError};

/// A type-erased entry-point body. `block_main` and `block_test` box the body first, so
/// the machinery under them (`Runner::run`, the task wrapper, tokio's `block_on`) is
/// instantiated once per output type, not once per body: without it, a crate with 300
/// `#[runner::test]`s took 12x as long to build as with `#[tokio::test]`.
type Body<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// The body of a `#[runner::main]` fn: run `main`, close, and turn a run error into the
/// process's ending (Ctrl-C: die by SIGINT; SIGTERM: die by SIGTERM; anything else: a
/// message and exit status 1).
///
/// SIGTERM is handled unless the attribute says `handle_sigterm = false`: a program whose
/// entry point is the attribute asked for a graceful shutdown, and SIGTERM is how every
/// supervisor says "stop" (docker, systemd, Kubernetes, `kill`). A `Runner` built by hand
/// keeps asyncio's default (SIGINT only; SIGTERM too as PID 1): a library that calls
/// `Runner::run` must not take SIGTERM over.
#[track_caller]
pub fn block_main<F: IntoFuture>(builder: Builder, main: F) -> F::Output {
    main_body(builder, Box::pin(main.into_future()))
}

#[track_caller]
fn main_body<T>(builder: Builder, main: Body<'_, T>) -> T {
    let mut runner = builder.handle_sigterm_unless_set().build();
    let result = runner.run(main);
    runner.close();
    match result {
        Ok(output) => output,
        Err(RunError::Interrupted) => die_by_sigint(),
        Err(RunError::Terminated) => die_by_sigterm(),
        Err(err) => {
            // Not eprintln!: with stderr broken the status must still be 1, not a panic's.
            let _ = writeln!(std::io::stderr().lock(), "error: #[runner::main]: {err}");
            std::process::exit(1)
        }
    }
}

/// The body of a `#[runner::test]` fn. Ctrl-C belongs to the test harness, so SIGINT (and
/// SIGTERM) are not handled. With `timeout` (the limit, and the string the attribute gave
/// it, which the failure quotes as written), a test still running at the deadline is
/// cancelled and fails with a panic naming the timeout and the tasks still pending.
#[track_caller]
pub fn block_test<F: IntoFuture>(
    builder: Builder,
    timeout: Option<(Duration, &'static str)>,
    main: F,
) -> F::Output {
    test_body(builder, timeout, Box::pin(main.into_future()))
}

#[track_caller]
fn test_body<T>(
    builder: Builder,
    timeout: Option<(Duration, &'static str)>,
    main: Body<'_, T>,
) -> T {
    let (timeout, written) = match timeout {
        Some((limit, written)) => (Some(limit), written),
        None => (None, ""),
    };
    // Signals belong to the test harness, also in a container where the test binary is
    // PID 1 (where `handle_sigterm` would default to on).
    let mut runner: Runner = builder.handle_sigint(false).handle_sigterm(false).build();
    let result = match timeout {
        None => runner.run(main).map(Ok),
        Some(limit) => {
            let start = Instant::now();
            let deadline = start.checked_add(limit);
            runner.run(async move {
                let pending = || {
                    crate::scope::current_runner()
                        .map(|shared| shared.describe_pending())
                        .unwrap_or_default()
                };
                match crate::deadline::with_deadline(deadline, main).await {
                    // A body that blocks the thread cannot be cancelled at the deadline; it
                    // still fails once it gives the thread back.
                    Some(_) if start.elapsed() > limit => {
                        Err(Overrun::Late(start.elapsed(), pending()))
                    }
                    Some(output) => Ok(output),
                    None => Err(Overrun::Pending(pending())),
                }
            })
        }
    };
    runner.close();
    let limit = written;
    let list = |pending: Vec<String>| {
        if pending.is_empty() {
            "none besides the test body".to_owned()
        } else {
            pending.join(", ")
        }
    };
    match result {
        Ok(Ok(output)) => output,
        Ok(Err(Overrun::Pending(pending))) => panic!(
            "test timed out after {limit} (timeout = \"{limit}\"); pending tasks: {}",
            list(pending)
        ),
        Ok(Err(Overrun::Late(took, pending))) => panic!(
            "test took {:.3}s, over its timeout of {limit} (timeout = \"{limit}\"): a body that \
             blocks the thread cannot be cancelled at the deadline, so it fails when it \
             returns; pending tasks: {}",
            took.as_secs_f64(),
            list(pending)
        ),
        Err(err) => panic!("#[runner::test]: {err}"),
    }
}

/// How a test with a `timeout` overran it.
enum Overrun {
    /// Still pending at the deadline: cancelled there. The tasks still pending then.
    Pending(Vec<String>),
    /// Finished, but only after the deadline (a poll blocked the thread), taking this long;
    /// the tasks still pending then.
    Late(Duration, Vec<String>),
}

/// tokio's runtime builder, for the expansion to name. Cargo builds one tokio per build,
/// with the union of the features every crate asks for, so this is the user's tokio too: a
/// method called through this path in the user's crate exists exactly when the build's tokio
/// has its feature, whichever crate turned it on. That is how `flavor = "multi_thread"`
/// needs no runner feature. (An alias, not a `pub use` of the type or of the tokio crate:
/// a re-export would become the path rustc names tokio's types by in a user's error
/// messages, `runner::__private::...`.)
pub type RuntimeBuilder = tokio::runtime::Builder;

/// Stand-ins for the methods of tokio's runtime `Builder` that exist only with one of
/// tokio's features. The expansion brings this trait into scope and calls the methods by
/// their tokio names: an inherent method is chosen over a trait's, so with the feature on
/// tokio's own method runs and this trait is not used. With the feature off, the stand-in's
/// bound fails, and the error names the feature at the attribute key that needs it instead
/// of rustc's "no function or associated item named `new_multi_thread`" deep in generated
/// code. (runner-core cannot ask `cfg(feature)` of tokio's features; this asks the
/// compiler, in the user's crate.)
pub trait BuilderFeatures: Sized {
    /// Stands in for `Builder::new_multi_thread` (tokio feature `rt-multi-thread`).
    fn new_multi_thread() -> Self
    where
        Self: TokioRtMultiThread,
    {
        <Self as TokioRtMultiThread>::new_multi_thread()
    }

    /// Stands in for `Builder::start_paused` (tokio feature `test-util`).
    fn start_paused(&mut self, paused: bool) -> &mut Self
    where
        Self: TokioTestUtil,
    {
        <Self as TokioTestUtil>::start_paused(self, paused)
    }
}

impl BuilderFeatures for RuntimeBuilder {}

/// Never implemented: the unmet bound of [`BuilderFeatures::new_multi_thread`], whose
/// message is the compile error of `flavor = "multi_thread"` without tokio's
/// `rt-multi-thread`.
#[diagnostic::on_unimplemented(
    message = "`flavor = \"multi_thread\"` needs tokio's `rt-multi-thread` feature, which this build's tokio does not have",
    label = "the multi-thread runtime is not compiled in",
    note = "turn it on where you depend on tokio: `tokio = {{ version = \"1\", features = [\"rt-multi-thread\"] }}` (`features = [\"full\"]` has it too)",
    note = "or with runner's shortcut for it: `tokio-runner = {{ version = \"0.2\", features = [\"rt-multi-thread\"] }}`",
    note = "or keep the default current-thread runtime: remove `flavor` and `worker_threads`"
)]
pub trait TokioRtMultiThread {
    /// Never called: there is no implementation.
    fn new_multi_thread() -> Self;
}

/// Never implemented: the unmet bound of [`BuilderFeatures::start_paused`], whose message
/// is the compile error of `start_paused = true` without tokio's `test-util`.
#[diagnostic::on_unimplemented(
    message = "`start_paused = true` needs tokio's `test-util` feature, which this build's tokio does not have",
    label = "tokio's clock cannot be paused in this build",
    note = "turn it on where you depend on tokio (for tests: under `[dev-dependencies]`), as tokio's own `start_paused` needs: `tokio = {{ version = \"1\", features = [\"test-util\"] }}`"
)]
pub trait TokioTestUtil {
    /// Never called: there is no implementation.
    fn start_paused(&mut self, paused: bool) -> &mut Self;
}

/// Builds the runtime of `flavor = "multi_thread"` (with `worker_threads`, if given), of
/// `start_paused = true` or of `name` from the builder the expansion made in the user's crate.
pub fn build(builder: &mut RuntimeBuilder, worker_threads: Option<usize>) -> io::Result<Runtime> {
    if let Some(n) = worker_threads {
        builder.worker_threads(n);
    }
    builder.enable_all().build()
}

/// The loop factory behind `flavor = "current_thread"` (also the default).
pub fn current_thread() -> io::Result<Runtime> {
    RuntimeBuilder::new_current_thread().enable_all().build()
}

/// Builds the `LocalRuntime` of `flavor = "local"` with `start_paused` or `name` from the
/// builder the expansion made in the user's crate.
pub fn build_local(builder: &mut RuntimeBuilder) -> io::Result<LocalRuntime> {
    builder.enable_all().build_local(Default::default())
}

/// The loop factory behind `flavor = "local"`: tokio's `LocalRuntime`.
pub fn local() -> io::Result<LocalRuntime> {
    build_local(&mut RuntimeBuilder::new_current_thread())
}
