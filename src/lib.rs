//! `runner`: Python's `asyncio.run()` and `asyncio.Runner` for tokio.
//!
//! An async entry point that behaves well:
//! - the runtime is built lazily and reused across many `run` calls;
//! - Ctrl-C cancels the main task so its cleanup runs, and a second Ctrl-C always kills;
//! - leftover tasks are cancelled at shutdown and the wait for the blocking pool is bounded;
//! - context variables follow tasks;
//! - a debug mode names the task that blocked the loop.
//!
//! # Quick start
//!
//! ```no_run
//! #[runner::main]
//! async fn main() -> std::io::Result<()> {
//!     let worker = runner::spawn(async { 6 * 7 });
//!     println!("answer: {}", worker.await.unwrap());
//!     Ok(())
//! }
//! ```
//!
//! Without the macro, [`run`] is `asyncio.run()` and [`Runner`] is `asyncio.Runner`:
//!
//! ```
//! let mut runner = runner::Runner::new(); // creates nothing yet
//! let a = runner.run(async { 1 }).unwrap(); // builds the runtime, runs, keeps it
//! let b = runner.run(async { 2 }).unwrap(); // same runtime
//! runner.close(); // cancels leftovers, runs finalizers, bounded wait for blocking work
//! assert_eq!(a + b, 3);
//! assert_eq!(runner::run(async { "one shot" }).unwrap(), "one shot");
//! ```
//!
//! # Cancellation
//!
//! asyncio cancels a task by raising `CancelledError` at its `await`. A Rust future cannot
//! have an exception thrown into it, so a cancel request (Ctrl-C for the main task,
//! [`Task::cancel`], or [`Runner::close`]) is delivered in one of two ways:
//! - if the task holds a live [`cancelled()`] future (typically in a `tokio::select!`), that
//!   future resolves and the task keeps running, so it can clean up asynchronously and
//!   finish on its own (asyncio's `except CancelledError:`);
//! - otherwise its future is dropped where it stands: every destructor runs (asyncio's
//!   `finally:`), and awaiting its [`Task`] gives a [`TaskError`] whose
//!   [`is_cancelled()`](TaskError::is_cancelled) is `true`.
//!
//! ```
//! runner::run(async {
//!     let (observing, ready) = tokio::sync::oneshot::channel();
//!     let worker = runner::spawn(async move {
//!         let cancelled = runner::cancelled();
//!         observing.send(()).unwrap();
//!         tokio::select! {
//!             _ = cancelled => "cleaned up",
//!             _ = std::future::pending::<()>() => "never",
//!         }
//!     });
//!     ready.await.unwrap();
//!     worker.cancel();
//!     assert_eq!(worker.await.unwrap(), "cleaned up");
//! })
//! .unwrap();
//! ```
//!
//! # Ctrl-C
//!
//! While `run` is active on the main thread (and SIGINT still has its default disposition):
//! - the first Ctrl-C cancels the main task as above, and `run` returns
//!   [`RunError::Interrupted`];
//! - a second Ctrl-C, during the same run or during `close()`, kills the process by SIGINT at
//!   once, even if the main thread is stuck.
//!
//! Outside such a run (between runs, after `close()`, during a run of a Runner built with
//! `handle_sigint = false`) runner steps aside: SIGINT does what it would do without runner.
//! A handler of the program's own (`tokio::signal::ctrl_c`, `tokio::signal::unix::signal`,
//! `signal-hook`), registered before or after runner's first run, gets every SIGINT; a
//! program without one dies by it, as by default. A process started with SIGINT ignored, or
//! one that installed its own handler before runner's first run, keeps that for good.
//! `#[runner::main]` closes the Runner after an interrupt, then dies by SIGINT
//! ([`die_by_sigint`]), so the shell sees status 130, as with Python; as PID 1 of a PID
//! namespace, where the kernel drops that signal, it exits with status 130 instead.
//!
//! No Ctrl-C is lost: a SIGINT that reaches an active run makes that run return
//! `Interrupted`, even if the main task finished before the cancel reached it, and any later
//! SIGINT kills. With debug mode on, a Ctrl-C that drops a main task that was not observing
//! [`cancelled()`] is reported; a program that handles Ctrl-C itself (with
//! `tokio::signal::ctrl_c`) should turn runner's handling off with `handle_sigint = false`.
//!
//! # SIGTERM
//!
//! Opt in with [`Builder::handle_sigterm`] or `#[runner::main(handle_sigterm = true)]` (off by
//! default, as in asyncio, except as PID 1 of a PID namespace: a container without an init,
//! where the kernel would drop an unhandled SIGTERM) for containers, systemd and `kill`:
//! SIGTERM then follows the same rules, `run` returns [`RunError::Terminated`], a second
//! SIGTERM or a SIGINT kills, and `#[runner::main]` closes the Runner (its `at_close`
//! finalizers run) and dies by SIGTERM (status 143, [`die_by_sigterm`]; as PID 1, exit
//! status 143).
//!
//! A shutdown that takes long says what it waits for: a
//! [`ReportKind::ShutdownWaiting`] report after [`Builder::shutdown_report_after`] (5 s).
//!
//! ```no_run
//! #[runner::main(handle_sigterm = true)]
//! async fn main() {
//!     runner::at_close(|| async { println!("flushed") });
//!     // Ctrl-C or SIGTERM: this future resolves, wherever it is polled (here: in a task
//!     // of its own, as axum's `with_graceful_shutdown(runner::cancelled())` does).
//!     let drained = tokio::spawn(runner::cancelled());
//!     drained.await.unwrap();
//!     println!("draining");
//! }
//! ```
//!
//! # Context variables
//!
//! [`ContextVar`] is `contextvars.ContextVar`. Every `run` of a Runner shares the Runner's
//! [`Context`]. Each task started with [`spawn`] or [`spawn_blocking`] gets a copy of its
//! spawner's. Copies share structure, so spawning never clones your values.
//!
//! # Debug mode
//!
//! `Builder::debug(Some(true))`, `#[runner::main(debug = true)]` or `RUNNER_DEBUG=1`
//! turns it on. Then:
//! - every poll of a task that takes at least 100 ms is reported with the location of the
//!   `spawn` that started it (`Executing <task spawned at src/main.rs:12:5> took 0.250
//!   seconds`);
//! - `close()` lists the tasks still pending;
//! - a panic in a task nobody awaited is reported.
//!
//! Reports go to stderr (with feature `tracing` and a subscriber set: to `tracing`
//! instead), or to your [`Builder::exception_handler`].
//!
//! # Coming from `#[tokio::main]`
//!
//! The default runtime is current-thread (asyncio's loop is one thread). Use
//! `flavor = "multi_thread"` (with tokio's `rt-multi-thread`, which tokio's `full` has, as
//! for `#[tokio::main]`) or `loop_factory = ...` for more. `#[runner::test(start_paused =
//! true)]` pauses tokio's clock as `#[tokio::test(start_paused = true)]` does (tokio's
//! `test-util`). Ctrl-C and shutdown behave as described above. tokio's own behaviour: Ctrl-C kills without cleanup,
//! dropping the runtime drops tasks in no particular order, and it waits forever for
//! blocking work.
#![deny(missing_docs)]

pub use runner_core::*;
pub use runner_macros::{main, test};
