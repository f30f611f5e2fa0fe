//! What `#[runner::main]` and `#[runner::test]` expand to. Not a public API: it may change
//! in any release.

use std::future::{Future, IntoFuture};
use std::io;
use std::pin::Pin;
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;

use crate::runner::{Builder, Runner};
use crate::{die_by_sigint, die_by_sigterm, RunError};

/// A type-erased entry-point body. `block_main` and `block_test` box the body first, so
/// the machinery under them (`Runner::run`, the task wrapper, tokio's `block_on`) is
/// instantiated once per output type, not once per body: without it, a crate with 300
/// `#[runner::test]`s took 12x as long to build as with `#[tokio::test]`.
type Body<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// The body of a `#[runner::main]` fn: run `main`, close, and turn a run error into the
/// process's ending (Ctrl-C: die by SIGINT; anything else: a message and exit status 1).
#[track_caller]
pub fn block_main<F: IntoFuture>(builder: Builder, main: F) -> F::Output {
    main_body(builder, Box::pin(main.into_future()))
}

#[track_caller]
fn main_body<T>(builder: Builder, main: Body<'_, T>) -> T {
    let mut runner = builder.build();
    let result = runner.run(main);
    runner.close();
    match result {
        Ok(output) => output,
        Err(RunError::Interrupted) => die_by_sigint(),
        Err(RunError::Terminated) => die_by_sigterm(),
        Err(err) => {
            eprintln!("error: #[runner::main]: {err}");
            std::process::exit(1)
        }
    }
}

/// The body of a `#[runner::test]` fn. Ctrl-C belongs to the test harness, so SIGINT is not
/// handled. With `timeout`, a test still running at the deadline is cancelled and fails with
/// a panic naming the timeout and the tasks still pending.
#[track_caller]
pub fn block_test<F: IntoFuture>(
    builder: Builder,
    timeout: Option<Duration>,
    main: F,
) -> F::Output {
    test_body(builder, timeout, Box::pin(main.into_future()))
}

#[track_caller]
fn test_body<T>(builder: Builder, timeout: Option<Duration>, main: Body<'_, T>) -> T {
    let mut runner: Runner = builder.handle_sigint(false).build();
    let result = match timeout {
        None => runner.run(main).map(Ok),
        Some(limit) => {
            let deadline = Instant::now().checked_add(limit);
            runner.run(async move {
                match crate::deadline::with_deadline(deadline, main).await {
                    Some(output) => Ok(output),
                    None => Err(crate::scope::current_runner()
                        .map(|shared| shared.describe_pending())
                        .unwrap_or_default()),
                }
            })
        }
    };
    runner.close();
    match result {
        Ok(Ok(output)) => output,
        Ok(Err(pending)) => {
            let limit = timeout.unwrap_or_default();
            let pending = if pending.is_empty() {
                "none besides the test body".to_owned()
            } else {
                pending.join(", ")
            };
            panic!("test timed out after {limit:?} (timeout = \"{limit:?}\"); pending tasks: {pending}")
        }
        Err(err) => panic!("#[runner::test]: {err}"),
    }
}

/// The loop factory behind `flavor = "multi_thread"` / `worker_threads = N`.
pub fn multi_thread(worker_threads: Option<usize>) -> io::Result<Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = worker_threads {
        builder.worker_threads(n);
    }
    builder.enable_all().build()
}

/// The loop factory behind `flavor = "current_thread"` (also the default).
pub fn current_thread() -> io::Result<Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}
