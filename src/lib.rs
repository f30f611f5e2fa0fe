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
//! `#[runner::main]` handles SIGTERM by default, as it handles Ctrl-C: SIGTERM is how every
//! supervisor says "stop" (docker, systemd, Kubernetes, `kill`). `handle_sigterm = false`
//! turns that off. A [`Runner`] built by hand keeps asyncio's default, SIGINT only (a
//! library that calls `Runner::run` must not take SIGTERM over), except as PID 1 of a PID
//! namespace (a container without an init, where the kernel would drop an unhandled
//! SIGTERM); [`Builder::handle_sigterm`] turns it on. Handled, SIGTERM follows the same
//! rules as Ctrl-C: `run` returns [`RunError::Terminated`], a second SIGTERM or a SIGINT
//! kills, and `#[runner::main]` closes the Runner (its `at_close` finalizers run) and dies
//! by SIGTERM (status 143, [`die_by_sigterm`]; as PID 1, exit status 143).
//!
//! A shutdown that takes long says what it waits for: a
//! [`ReportKind::ShutdownWaiting`] report after [`Builder::shutdown_report_after`] (5 s).
//!
//! ```no_run
//! #[runner::main]
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
//! # In production
//!
//! For Kubernetes, docker and systemd (the README's "In production" has the details):
//! - [`Builder::grace_period`] (`grace_period = "25s"`) bounds the whole shutdown from the
//!   first signal; at its end one report names what still runs, and the process ends as on
//!   a second signal. Set it below the orchestrator's own limit.
//! - [`Builder::drain_delay`] (`drain_delay = "5s"`) holds a SIGTERM's cancel back while
//!   [`shutdown_requested()`] already says `true`, for a readiness endpoint to fail before
//!   the server stops accepting.
//! - [`notify_ready()`] tells systemd the service is ready; runner sends `STOPPING=1`,
//!   `STATUS=` and `WATCHDOG=1` (from the Runner's loop) itself.
//! - A forced exit (a second signal, the grace period's end) writes one line naming what
//!   it cut short.
//!
//! ```no_run
//! #[runner::main(drain_delay = "5s", grace_period = "25s")]
//! async fn main() {
//!     // serve; a readiness handler answers 503 once `runner::shutdown_requested()`
//!     let _ = runner::notify_ready();
//!     runner::cancelled().await; // after SIGTERM and the delay: drain
//! }
//! ```
//!
//! # Context variables
//!
//! [`ContextVar`] is `contextvars.ContextVar`. Every `run` of a Runner shares the Runner's
//! [`Context`]. Each task started with [`spawn`] or [`spawn_blocking`] gets a copy of its
//! spawner's. Copies share structure, so spawning never clones your values.
//!
//! # Servers: plain tokio tasks
//!
//! axum, hyper and tonic run your handlers, middleware and shutdown future in tasks they
//! start themselves with `tokio::spawn`. runner treats them as first-class:
//! - [`cancelled()`] made in such a task (axum's `async fn shutdown_signal() {
//!   runner::cancelled().await }`) resolves when the Runner shuts down (the first Ctrl-C or
//!   SIGTERM, `close()`), and keeps the main task observing meanwhile, so the requests in
//!   flight drain;
//! - a [`ContextVar::set`] there is refused with a report (every plain task on a thread
//!   shares one context, so the value would leak into other requests); give each request's
//!   future its own value with [`ContextVar::scope`] instead (or [`Context::scope`]):
//!
//! ```
//! use axum::extract::Request;
//! use axum::middleware::{self, Next};
//! use axum::response::Response;
//! use axum::routing::get;
//! use axum::Router;
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! static REQUEST_ID: runner::ContextVar<u64> = runner::ContextVar::new("request_id");
//!
//! /// Request-scoped: each request's future runs with its own id, wherever it is polled.
//! async fn request_id(req: Request, next: Next) -> Response {
//!     let id = req.headers()["x-request-id"].to_str().unwrap().parse().unwrap();
//!     REQUEST_ID.scope(id, next.run(req)).await
//! }
//!
//! async fn handler() -> String {
//!     tokio::task::yield_now().await;
//!     let spawned = runner::spawn(async { REQUEST_ID.get() }).await.unwrap();
//!     format!("request {:?}, its task {spawned:?}", REQUEST_ID.get())
//! }
//!
//! runner::run(async {
//!     let app = Router::new()
//!         .route("/", get(handler))
//!         .layer(middleware::from_fn(request_id));
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//!     let addr = listener.local_addr().unwrap();
//!     tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
//!     for id in [1, 2] {
//!         let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
//!         let request = format!(
//!             "GET / HTTP/1.1\r\nHost: x\r\nx-request-id: {id}\r\nConnection: close\r\n\r\n"
//!         );
//!         conn.write_all(request.as_bytes()).await.unwrap();
//!         let mut response = String::new();
//!         conn.read_to_string(&mut response).await.unwrap();
//!         assert!(response.ends_with(&format!("request Some({id}), its task Some({id})")));
//!     }
//! })
//! .unwrap();
//! ```
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
