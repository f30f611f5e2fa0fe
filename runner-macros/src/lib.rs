//! The `#[runner::main]` and `#[runner::test]` attribute macros. Use them through the
//! [`tokio-runner`](https://docs.rs/tokio-runner) crate (in code: `runner`), which re-exports them next to the runtime
//! they call.
//!
//! Each expansion goes through three small steps: `attr` collects the attribute's
//! `key = value` pairs into a configuration that remembers every span, `valid` applies the
//! rules between keys and on the function's signature, and `expand` writes the plain fn.
//! The parser reads the keys from one table (`keys.rs`); the docs' table, `keys.md`,
//! included in both attributes' docs below, is checked against it by a unit test. Every
//! error found is reported, each at the token it is about, and the function is still
//! emitted so IDEs keep working.
#![deny(missing_docs)]

use proc_macro::TokenStream;

mod attr;
mod error;
mod expand;
mod item;
mod keys;
mod valid;
mod value;

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod keys_doc;

use keys::Macro;

/// Runs an `async fn main` on a [`Runner`](https://docs.rs/tokio-runner/latest/runner/struct.Runner.html),
/// like Python's `asyncio.run(main())`.
///
/// ```
/// #[runner::main]
/// async fn main() {
///     println!("hello from a runner");
/// }
/// ```
///
/// The `async fn` becomes a plain `fn` that builds a `Runner` from the keys below, runs the
/// body on it, and closes it. `return` and `?` work as in any fn, and the return type passes
/// through: `()`, `Result<(), E>`, `impl Termination`, or `!` (the body is then checked
/// never to return). With `-> impl Trait` the body's type is inferred from the body alone,
/// so `?` may need the error type spelled out, e.g. `Ok::<(), MyError>(())`.
///
/// Inner attributes at the top of the body (`#![allow(..)]`) apply to the generated fn.
/// Attributes on the fn (doc comments, lints, `#[cfg]`) pass through unchanged.
///
/// - On the first Ctrl-C the body is cancelled, the Runner is closed (tasks cancelled,
///   cleanup run), and the process dies by SIGINT, as Python does: exit status 130 in a shell.
///   SIGTERM likewise (143): the attribute handles it by default, since SIGTERM is how every
///   supervisor says "stop" (docker, systemd, Kubernetes, `kill`); `handle_sigterm = false`
///   turns that off. As PID 1 of a PID namespace (a container without an init), where the
///   kernel drops such a signal, the process exits with status 130 or 143 instead.
/// - With `grace_period`, the whole shutdown (the body's drain and the close) is bounded:
///   at its end one last report names what still runs, and the process ends as on a second
///   signal. With `drain_delay`, a SIGTERM turns `runner::shutdown_requested()` true at once
///   and cancels the body only after the delay (time for a load balancer to stop sending).
/// - If the runtime cannot be built (a `loop_factory` error), it prints
///   `error: #[runner::main]: ...` and exits with status 1, instead of panicking.
///
/// # Keys
///
#[doc = include_str!("keys.md")]
///
/// `worker_threads` alone is an error rather than a silent switch to a multi-thread
/// runtime: write `flavor = "multi_thread", worker_threads = 4`.
///
/// `flavor = "multi_thread"` needs tokio's `rt-multi-thread` feature, as `#[tokio::main]`
/// does: the runtime is built in your crate, so your own tokio dependency with
/// `features = ["full"]` (or `["rt-multi-thread"]`) is enough. runner's `rt-multi-thread`
/// feature turns it on too. runner does not turn it on by default, as tokio does not: the
/// multi-thread scheduler adds about 1.4 s of CPU time to a cold build. Without it, the
/// flavor is a compile error at `flavor` that names the feature.
///
/// `flavor = "local"` runs the body on tokio's `LocalRuntime`, as `#[tokio::main(flavor =
/// "local")]` does: one thread, like the default, where `tokio::task::spawn_local` works in
/// the body and in every task (a plain `tokio::spawn` task included), with no `LocalSet`.
/// It needs no tokio feature beyond `rt`. (`runner::spawn_local` works on every flavor.)
///
/// ```
/// use std::rc::Rc;
///
/// #[runner::main(flavor = "local", name = "my-app")]
/// async fn main() {
///     assert_eq!(tokio::runtime::Handle::current().name(), Some("my-app"));
///     let counter = Rc::new(std::cell::Cell::new(0)); // not Send
///     let task = tokio::task::spawn_local({
///         let counter = counter.clone();
///         async move { counter.set(counter.get() + 1) }
///     });
///     task.await.unwrap();
///     assert_eq!(counter.get(), 1);
/// }
/// ```
///
/// tokio's `unhandled_panic` (which tokio has only under `--cfg tokio_unstable`) is not
/// taken: it is a compile error that says so. A panicking task never stops the runtime, as
/// with tokio's default `"ignore"`: its `Task` awaits to a `runner::TaskError` whose
/// `is_panic()` is true.
///
/// ```
/// #[runner::main(flavor = "multi_thread", worker_threads = 4, shutdown_timeout = "30s")]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let text = tokio::fs::read_to_string("Cargo.toml").await?;
///     println!("{} bytes", text.len());
///     Ok(())
/// }
/// ```
///
/// ```
/// fn log_report(report: &runner::Report) {
///     eprintln!("[my app] {report}");
/// }
///
/// #[runner::main(debug = true, slow_callback_duration = "50ms", exception_handler = log_report)]
/// async fn main() {
///     std::thread::sleep(std::time::Duration::from_millis(60)); // reported: blocks the loop
/// }
/// ```
///
/// ```
/// fn my_runtime() -> std::io::Result<tokio::runtime::Runtime> {
///     tokio::runtime::Builder::new_current_thread().enable_all().build()
/// }
///
/// #[runner::main(loop_factory = my_runtime, debug = true, handle_sigint = false)]
/// async fn main() {
///     assert!(runner::debug_enabled());
/// }
/// ```
///
/// Through a re-export, name the path: `#[my::runner::main(crate = "my::runner")]`.
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand(Macro::Main, args.into(), item.into()).into()
}

/// Runs an `async fn` test on its own [`Runner`](https://docs.rs/tokio-runner/latest/runner/struct.Runner.html).
///
/// ```no_run
/// #[runner::test]
/// async fn adds() {
///     assert_eq!(runner::spawn(async { 1 + 1 }).await.unwrap(), 2);
/// }
/// ```
///
/// Adds `#[::core::prelude::v1::test]`, so do not write `#[test]` (or `#[tokio::test]`)
/// as well: any attribute below it whose path ends in `test` is an error. (One written
/// *above* it runs first: for `#[test]` that is rustc's own "async functions cannot be used
/// for tests" error.) Other attributes pass through:
/// `#[should_panic]`, `#[ignore]`, doc comments, lints. A test may return
/// `Result<(), E>`.
///
/// Signals belong to the test harness, so a test never handles SIGINT or SIGTERM.
///
/// # Keys
///
#[doc = include_str!("keys.md")]
///
/// With `timeout`, a test still running at the deadline is cancelled and fails with a panic
/// naming the timeout (as the attribute writes it: `(timeout = "1.5s")`) and the spawn
/// locations of the tasks still pending. A body that blocks the thread cannot be cancelled
/// at the deadline; if it finishes late, the test still fails, naming how long it took.
///
/// With `start_paused = true`, tokio's clock starts paused and jumps ahead whenever the
/// runtime has nothing else to do, so a test of timeouts and retries runs at once. tokio's
/// `test-util` feature comes from your own tokio, as for `#[tokio::test]`:
/// `[dev-dependencies] tokio = { version = "1", features = ["test-util"] }`; without it,
/// the key is a compile error that names the feature. `timeout` still counts real time:
/// time the paused clock skips is not counted against it.
///
/// ```no_run
/// #[runner::test(timeout = "0.2s")]
/// #[should_panic(expected = "timed out after 200ms (timeout = \"200ms\")")]
/// async fn hangs() {
///     std::future::pending::<()>().await;
/// }
///
/// #[runner::test(flavor = "multi_thread", worker_threads = 2, debug = true)]
/// async fn on_two_workers() -> Result<(), std::num::ParseIntError> {
///     assert!(runner::debug_enabled());
///     let n: u8 = "2".parse()?;
///     assert_eq!(n, 2);
///     Ok(())
/// }
///
/// #[runner::test(flavor = "local")]
/// async fn local_tasks_without_a_local_set() {
///     let rc = std::rc::Rc::new(41); // not Send
///     let task = tokio::task::spawn_local(async move { *rc + 1 });
///     assert_eq!(task.await.unwrap(), 42);
/// }
///
/// #[runner::test(start_paused = true, timeout = "5s")]
/// async fn an_hour_on_the_paused_clock_takes_no_time() {
///     let real = std::time::Instant::now();
///     tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
///     assert!(real.elapsed() < std::time::Duration::from_secs(1));
/// }
/// ```
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand(Macro::Test, args.into(), item.into()).into()
}
