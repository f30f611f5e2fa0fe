//! Python's `asyncio.run()` and `asyncio.Runner` for tokio: an async entry point that
//! behaves well at its start, its end, and when it is told to stop.
//!
//! The package is `tokio-runner`; in code the crate is `runner`. The
//! [README](https://crates.io/crates/tokio-runner) compares it with asyncio and with
//! `#[tokio::main]` and shows it under Kubernetes, docker and systemd; this page is the
//! reference: what each part does, with the items that do it.
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
//! [`#[runner::main]`](macro@main) and [`#[runner::test]`](macro@test) build a [`Runner`]
//! from their keys (every key is in [the key table](macro@main#keys)), run the body as its
//! main task and close it. Without them, [`run`] is `asyncio.run()` and [`Runner`] is
//! `asyncio.Runner`:
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
//! # The Runner
//!
//! A [`Runner`] builds its tokio runtime at its first [`run`](Runner::run) or
//! [`get_loop`](Runner::get_loop) (lazily, as asyncio does) and keeps it: tasks left pending by one run resume in the next, and
//! context values carry over. The main future runs on the calling thread, so it need not be
//! `Send` or `'static`. [`Runner::close`] (also on `Drop`) cancels the pending tasks and
//! waits for them, runs the [`at_close`] finalizers, waits for blocking work at most the
//! shutdown timeout, and shuts the runtime down. It never panics, and never waits past its
//! bound as long as no poll, `Drop` or finalizer blocks its thread.
//!
//! [`Builder`] sets the options: debug mode, the signals handled, timeouts, the exception
//! handler, and the loop factory, which returns one of the types of the sealed
//! [`IntoRuntime`] (a tokio `Runtime`, `runtime::Builder` or `LocalRuntime`, or an
//! `io::Result` of a runtime). The default loop is a current-thread runtime, as asyncio's
//! loop is one thread.
//!
//! A run that cannot happen is a [`RunError`], never tokio's panic: inside another run on
//! this thread [`NestedRun`](RunError::NestedRun), inside a poll of another tokio runtime
//! (a `#[tokio::main]` body) [`InsideTokioRuntime`](RunError::InsideTokioRuntime), after
//! `close()` [`Closed`](RunError::Closed), away from the thread its local loop or local
//! tasks are bound to [`WrongThread`](RunError::WrongThread).
//!
//! # Tasks and cancellation
//!
//! [`spawn`] starts a task ([`Task`]) in a copy of the spawner's [`Context`];
//! [`spawn_local`] does the same for a `!Send` future, on the Runner's own thread, on every
//! loop flavor (call it from the main task or a local task; on a current-thread or local
//! loop, from any task); [`spawn_blocking`] is asyncio's `to_thread`. [`current_task`] and
//! [`Task::handle`] give a [`TaskHandle`] that can cancel a task from anywhere.
//!
//! asyncio cancels a task by raising `CancelledError` at its `await`. A Rust future cannot
//! have an exception thrown into it, so a cancel request (a signal for the main task,
//! [`Task::cancel`], [`Runner::close`]) is delivered in one of two ways:
//! - if the task holds a live [`cancelled()`] future (typically in a `tokio::select!`), that
//!   future resolves and the task keeps running, so it can clean up asynchronously and
//!   finish on its own (asyncio's `except CancelledError:`);
//! - otherwise its future is dropped where it stands: every destructor runs (asyncio's
//!   `finally:`).
//!
//! A `select!` loop that makes a fresh `cancelled()` each iteration holds none while it
//! works, so a cancel then drops it mid-work; runner reports that
//! ([`ReportKind::DroppedMidWork`]). Make one before the loop and select on `&mut` it.
//!
//! Awaiting a [`Task`] that gave no value yields a [`TaskError`]: opaque, `Send + Sync`, so
//! `task.await?` goes into `anyhow::Error`, and asked with
//! [`is_cancelled()`](TaskError::is_cancelled), [`is_panic()`](TaskError::is_panic) and
//! [`into_panic()`](TaskError::into_panic), as tokio's `JoinError`.
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
//!
//!     let dropped = runner::spawn(std::future::pending::<()>());
//!     dropped.cancel();
//!     assert!(dropped.await.unwrap_err().is_cancelled());
//! })
//! .unwrap();
//! ```
//!
//! # Ctrl-C and SIGTERM
//!
//! While `run` is active on the main thread, with `handle_sigint` on (the default) and
//! SIGINT still at its default disposition:
//! - the first Ctrl-C cancels the main task as above, and `run` returns
//!   [`RunError::Interrupted`]; no Ctrl-C is lost, even one that lands as the main task
//!   finishes;
//! - a second Ctrl-C, during the same run or during `close()`, kills the process by SIGINT at
//!   once, even if the main thread is stuck.
//!
//! `#[runner::main]` then closes the Runner and dies by SIGINT ([`die_by_sigint`]), so the
//! shell sees status 130, as with Python.
//!
//! SIGTERM follows the same rules ([`RunError::Terminated`], [`die_by_sigterm`], status 143)
//! where it is handled: by default under `#[runner::main]` (SIGTERM is how docker, systemd
//! and Kubernetes say "stop"; `handle_sigterm = false` turns it off), but not by a
//! [`Runner`] built by hand, which keeps asyncio's default so that a library calling
//! `Runner::run` does not take SIGTERM over ([`Builder::handle_sigterm`] turns it on),
//! except as PID 1 of a PID namespace. There, in a container without an init, the kernel
//! drops a signal nobody handles, so runner exits with status 128 + n instead of dying by
//! the signal, and never aborts: the
//! [container page](https://docs.rs/crate/tokio-runner/latest/source/docs/containers.md)
//! has the exit status of each case.
//!
//! Outside such a run (between runs, after `close()`, during a run of a Runner that does
//! not handle the signal) runner steps aside: the signal does what it would do without
//! runner. A handler of the program's own (`tokio::signal::ctrl_c`,
//! `tokio::signal::unix::signal`, `signal-hook`), registered before or after runner's first
//! run, gets every such signal; a program without one dies by it. During a run that handles
//! it, the first Ctrl-C cancels the main task and reaches that handler too; the second
//! kills. (A handler that does not call the one it replaced, such as the `ctrlc` crate's,
//! has the signal to itself from then on, runs included.) A process started with SIGINT
//! ignored, or one that installed its own handler before runner's first run, keeps that for
//! good. With debug mode on, a Ctrl-C that drops
//! a main task that was not observing [`cancelled()`] is reported; a program that handles
//! Ctrl-C itself should turn runner's handling off with `handle_sigint = false`.
//!
//! # Shutdown in production
//!
//! - [`Builder::grace_period`] (`grace_period = "25s"`) bounds the whole shutdown from the
//!   first signal; at its end one report names what still runs, and the process ends as on
//!   a second signal. Set it below the orchestrator's own limit.
//! - [`Builder::drain_delay`] (`drain_delay = "5s"`) holds a SIGTERM's cancel back while
//!   [`shutdown_requested()`] already says `true`, for a readiness endpoint to fail before
//!   the server stops accepting. [`shutdown_requested()`] answers from the main task, tasks,
//!   plain tokio tasks and blocking jobs.
//! - A shutdown that waits long says what for: a [`ReportKind::ShutdownWaiting`] report
//!   after [`Builder::shutdown_report_after`] (5 s), then again as long after. A forced exit
//!   writes one line naming what it cut short.
//! - [`notify_ready()`] tells systemd the service is ready; runner sends `STOPPING=1`,
//!   `STATUS=` and `WATCHDOG=1` (from the Runner's loop) itself, only with `NOTIFY_SOCKET`.
//!
//! ```no_run
//! #[runner::main(drain_delay = "5s", grace_period = "25s")]
//! async fn main() {
//!     runner::at_close(|| async { println!("flushed") });
//!     // serve; a readiness handler answers 503 once `runner::shutdown_requested()`
//!     let _ = runner::notify_ready();
//!     // SIGTERM, then the delay: this resolves, wherever it is polled (here in a task of
//!     // its own, as axum's `with_graceful_shutdown(runner::cancelled())` polls it).
//!     tokio::spawn(runner::cancelled()).await.unwrap();
//!     println!("draining");
//! }
//! ```
//!
//! # Context variables
//!
//! [`ContextVar`] is `contextvars.ContextVar` and [`Context`] its context. Every run of a
//! Runner shares the Runner's context; each task started with [`spawn`], [`spawn_local`] or
//! [`spawn_blocking`] gets a copy of its spawner's. Copies share structure, so spawning
//! never clones your values. Outside any runner, a thread has a context of its own.
//! [`ContextVar::scope`] and [`Context::scope`] give a future a context of its own wherever
//! it is polled (asyncio's `create_task(coro, context=ctx)`).
//!
//! # Servers: plain tokio tasks
//!
//! axum, hyper and tonic run your handlers, middleware and shutdown future in tasks they
//! start themselves with `tokio::spawn`. runner treats them as first-class:
//! - [`cancelled()`] made in such a task (axum's `async fn shutdown_signal() {
//!   runner::cancelled().await }`) resolves when the Runner shuts down (the first Ctrl-C or
//!   SIGTERM, `close()`), and keeps the main task observing meanwhile, so the requests in
//!   flight drain;
//! - a [`ContextVar::set`] there is refused with a report ([`ReportKind::ContextSetRefused`]:
//!   every plain task on a thread shares one context, so the value would leak into other
//!   requests); give each request's future its own value with [`ContextVar::scope`]:
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
//! # Debug mode and reports
//!
//! `Builder::debug(Some(true))`, `#[runner::main(debug = true)]` or `RUNNER_DEBUG=1`
//! (asyncio's `PYTHONASYNCIODEBUG`) turns it on ([`debug_enabled`] tells). Then every poll
//! that takes at least [`Builder::slow_callback_duration`] (100 ms) is reported with the
//! location of the `spawn` that started its task (`Executing <task spawned at
//! src/main.rs:12:5> took 0.250 seconds`), `close()` lists the tasks still pending, and a
//! panic nobody retrieved is reported.
//!
//! Each [`Report`] (its [`ReportKind`], message and spawn location; for a shutdown, its
//! facts as data: [`ShutdownFacts`]) goes to the exception handler:
//! [`default_exception_handler`] writes one line to stderr (with feature `tracing` and a
//! subscriber set: a `tracing` event instead, target `runner`);
//! [`Builder::exception_handler`] replaces it. [`Report::new`] builds one, to test a
//! handler of your own.
//!
//! # Threads and processes
//!
//! A [`Runner`] is `Send`. A Runner kept in a `thread_local!` closes fully when its thread
//! exits (its finalizers run), although tokio's own thread-locals may be gone by then. In a
//! `fork()`ed child (a pre-fork server, a daemon), signal handling starts afresh: a Runner
//! made there handles the child's first Ctrl-C as the first. Signals are handled on Unix
//! only; elsewhere everything else builds and runs.
//!
//! # Features
//!
//! - `rt-multi-thread`: turns on tokio's `rt-multi-thread`, which
//!   `flavor = "multi_thread"` needs (your own tokio with `full` does the same).
//! - `tracing`: reports go to `tracing` when a subscriber is set.
#![deny(missing_docs)]

pub use runner_core::*;
pub use runner_macros::{main, test};
