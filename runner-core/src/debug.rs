//! Reports (what the exception handler receives) and debug mode's slow-poll detection.

use std::fmt;
use std::panic::Location;
use std::sync::Arc;
use std::time::Duration;

/// What a [`Report`] is about.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    /// Debug mode: one poll of a task took at least `slow_callback_duration`.
    SlowPoll,
    /// Debug mode: a task was still pending when `close()` began cancelling.
    PendingAtClose,
    /// A task panicked while `close()` was cancelling it.
    PanicDuringShutdown,
    /// Debug mode: a task panicked and its `Task` was dropped without being awaited.
    PanicNeverRetrieved,
    /// An `at_close` finalizer panicked.
    FinalizerPanicked,
    /// `close()` stopped waiting for cancelled tasks or finalizers at the shutdown timeout.
    ShutdownTimeout,
    /// `close()` stopped waiting for `spawn_blocking` jobs at the shutdown timeout.
    BlockingAbandoned,
    /// Debug mode: a signal (Ctrl-C, or SIGTERM when handled) dropped a main task that was
    /// not observing `runner::cancelled()`.
    MainTaskDropped,
    /// A shutdown has waited longer than `Builder::shutdown_report_after` (the main task
    /// after a signal cancelled it, or `close()` for its cancelled tasks, an `at_close`
    /// finalizer or blocking work):
    /// how long, for what (pending tasks by spawn location, the number of plain tokio tasks
    /// alive, blocking work), and the signal whose second coming forces the exit. Repeated
    /// at most once per that duration while the wait goes on (with a grace period, at least
    /// every third of it).
    ShutdownWaiting,
    /// A cancel dropped a task that had polled `runner::cancelled()` before but held none
    /// at that moment (a `select!` loop that makes a fresh `cancelled()` each iteration,
    /// caught in the middle of its work): the work in progress was cut. Reported also
    /// outside debug mode.
    DroppedMidWork,
    /// A `ContextVar::set` in a plain tokio task (one runner did not start: an axum handler
    /// or middleware, any `tokio::spawn`) was refused: every plain task polled on that thread
    /// shares one context, so the value would leak into the others. Use
    /// `ContextVar::scope` / `Context::scope`, or `runner::spawn`. Reported once per call site.
    ContextSetRefused,
    /// The grace period (`Builder::grace_period`) is over: the last report before the
    /// process ends as on a second signal. It names what still runs: the main task, what
    /// `close()` waits for, pending tasks, plain tokio tasks and blocking work.
    GracePeriodExpired,
    /// A second signal (during the main task's drain or `close()`) forces the exit: the
    /// final words, naming what it cuts short.
    ForcedExit,
    /// A systemd notification (`NOTIFY_SOCKET`) could not be sent; reported once, and the
    /// program goes on.
    NotifyFailed,
    /// `close()` panicked inside (a bug of runner's, or a panic payload whose `Drop`
    /// panicked): the runtime was dropped without the rest of the shutdown.
    ShutdownFailed,
    /// `close()` was called inside a poll of a tokio runtime (a `#[tokio::main]` body, a
    /// tokio task, another Runner's run), where it must not block: the Runner's tasks were
    /// dropped where they stood, without waiting for their cleanup.
    ClosedInsideRuntime,
    /// `close()` ran at the exit of a thread whose tokio thread-locals were already gone:
    /// what could not be driven any more was dropped without its cleanup.
    ClosedAtThreadExit,
    /// A Runner whose loop is a tokio `LocalRuntime` was closed on another thread than the
    /// one that built the loop: the close is left to that thread (at its exit).
    ClosedAwayFromItsLoop,
    /// `spawn_local` tasks could not be cleaned up: `close()` ran on another thread than
    /// theirs (they are left to their thread, which drops them), or their thread exited
    /// with them still pending (dropped there, without their async cleanup).
    LocalTasksLeft,
}

/// One thing worth telling the user (asyncio's exception-handler `context` dict).
///
/// Both `Display` and `Debug` show the message and, where there is one, the spawn location.
///
/// ```
/// # use runner_core as runner;
/// use std::sync::{Arc, Mutex};
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let sink = seen.clone();
/// let mut runner = runner::Runner::builder()
///     .debug(Some(false)) // whatever RUNNER_DEBUG says: no pending-task report first
///     .exception_handler(move |r: &runner::Report| sink.lock().unwrap().push(r.to_string()))
///     .build();
/// runner.run(async {
///     let guard = PanicOnDrop; // dropped when close() cancels the task
///     runner::spawn(async move {
///         let _guard = guard;
///         std::future::pending::<()>().await
///     });
/// }).unwrap();
/// runner.close();
/// let seen = seen.lock().unwrap();
/// assert!(seen[0].contains("unhandled panic during Runner shutdown"), "{seen:?}");
///
/// struct PanicOnDrop;
/// impl Drop for PanicOnDrop {
///     fn drop(&mut self) { panic!("cleanup failed") }
/// }
/// ```
#[derive(Clone)]
pub struct Report {
    kind: ReportKind,
    message: String,
    location: Option<&'static Location<'static>>,
    panic: Option<String>,
    shutdown: Option<ShutdownFacts>,
}

impl Report {
    /// A report of `kind` saying `message`, as a Runner makes one: for unit tests of an
    /// exception handler (a Runner makes its own).
    ///
    /// ```
    /// # use runner_core as runner;
    /// use std::time::Duration;
    /// use runner::{Report, ReportKind, ShutdownFacts};
    ///
    /// fn page_someone(report: &Report) -> bool {
    ///     report.kind() == ReportKind::ShutdownWaiting
    ///         && report.shutdown().is_some_and(|s| s.waited() > Duration::from_secs(10))
    /// }
    ///
    /// let slow = Report::new(ReportKind::ShutdownWaiting, "Shutdown waiting 12.0 s ...")
    ///     .with_shutdown(ShutdownFacts::new(Duration::from_secs(12)).with_plain_tasks(3));
    /// assert!(page_someone(&slow));
    /// assert!(!page_someone(&Report::new(ReportKind::SlowPoll, "Executing ...")));
    /// ```
    pub fn new(kind: ReportKind, message: impl Into<String>) -> Report {
        Report {
            kind,
            message: message.into(),
            location: None,
            panic: None,
            shutdown: None,
        }
    }

    /// The report, with the location of the task concerned (where it was spawned).
    pub fn with_location(mut self, location: &'static Location<'static>) -> Report {
        self.location = Some(location);
        self
    }

    /// The report, about a panic with this message.
    pub fn with_panic(mut self, panic: impl Into<String>) -> Report {
        self.panic = Some(panic.into());
        self
    }

    /// The report, with the facts of a shutdown (see [`Report::shutdown`]).
    pub fn with_shutdown(mut self, facts: ShutdownFacts) -> Report {
        self.shutdown = Some(facts);
        self
    }

    /// How the crate makes its reports.
    pub(crate) fn make(
        kind: ReportKind,
        message: String,
        location: Option<&'static Location<'static>>,
        panic: Option<String>,
    ) -> Report {
        Report {
            kind,
            message,
            location,
            panic,
            shutdown: None,
        }
    }

    /// What the report is about.
    pub fn kind(&self) -> ReportKind {
        self.kind
    }

    /// The one-line message, naming the task (with its spawn location) where there is one.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Where the task concerned was spawned (or the main task run), if a task is concerned.
    pub fn location(&self) -> Option<&'static Location<'static>> {
        self.location
    }

    /// The panic message, if the report is about a panic.
    pub fn panic(&self) -> Option<&str> {
        self.panic.as_deref()
    }

    /// What a shutdown waits for, or cut short, as data: on the reports of kind
    /// [`ShutdownWaiting`](ReportKind::ShutdownWaiting),
    /// [`GracePeriodExpired`](ReportKind::GracePeriodExpired) and
    /// [`ForcedExit`](ReportKind::ForcedExit) (the message says the same in words).
    pub fn shutdown(&self) -> Option<&ShutdownFacts> {
        self.shutdown.as_ref()
    }
}

/// The facts of a shutdown report ([`Report::shutdown`]): how long the shutdown has gone
/// on, the Runner's tasks still pending (by spawn location, the main task by where it was
/// run), the plain tokio tasks still alive, and the blocking work still running.
///
/// ```
/// # use runner_core as runner;
/// use std::time::Duration;
/// let facts = runner::ShutdownFacts::new(Duration::from_secs(5))
///     .with_pending_task(std::panic::Location::caller())
///     .with_blocking_jobs(std::panic::Location::caller(), 2);
/// assert_eq!(facts.pending_tasks().len(), 1);
/// assert_eq!(facts.blocking_jobs(), 2);
/// assert_eq!(facts.plain_tasks(), None); // not counted
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShutdownFacts {
    waited: Duration,
    pending: Vec<&'static Location<'static>>,
    plain_tasks: Option<usize>,
    blocking: Vec<(&'static Location<'static>, usize)>,
}

impl ShutdownFacts {
    /// A shutdown that has gone on for `waited`, with nothing pending yet.
    pub fn new(waited: Duration) -> ShutdownFacts {
        ShutdownFacts {
            waited,
            ..ShutdownFacts::default()
        }
    }

    /// Adds a pending task, by where it was spawned.
    pub fn with_pending_task(mut self, spawned_at: &'static Location<'static>) -> ShutdownFacts {
        self.pending.push(spawned_at);
        self
    }

    /// Sets how many plain tokio tasks are alive.
    pub fn with_plain_tasks(mut self, alive: usize) -> ShutdownFacts {
        self.plain_tasks = Some(alive);
        self
    }

    /// Adds `count` blocking jobs spawned at `spawned_at`.
    pub fn with_blocking_jobs(
        mut self,
        spawned_at: &'static Location<'static>,
        count: usize,
    ) -> ShutdownFacts {
        self.blocking.push((spawned_at, count));
        self
    }

    /// How long the shutdown has gone on: since the signal, or since `close()` began the
    /// step it waits in.
    pub fn waited(&self) -> Duration {
        self.waited
    }

    /// The Runner's tasks still pending, by spawn location (the main task by where its run
    /// was called), as far as the report could gather them.
    pub fn pending_tasks(&self) -> &[&'static Location<'static>] {
        &self.pending
    }

    /// How many plain tokio tasks (not started by runner: a server's connections) are
    /// alive; `None` where they could not be counted (a lock busy at a forced exit).
    pub fn plain_tasks(&self) -> Option<usize> {
        self.plain_tasks
    }

    /// How many `spawn_blocking` jobs are still running.
    pub fn blocking_jobs(&self) -> usize {
        self.blocking.iter().map(|(_, n)| n).sum()
    }

    /// The `spawn_blocking` jobs still running, by where they were spawned.
    pub fn blocking_jobs_by_location(&self) -> &[(&'static Location<'static>, usize)] {
        &self.blocking
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(panic) = &self.panic {
            write!(f, ": panicked with {panic:?}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Report")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("location", &self.location.map(|l| l.to_string()))
            .field("panic", &self.panic)
            .field("shutdown", &self.shutdown)
            .finish()
    }
}

/// Receives every [`Report`]; set with `Builder::exception_handler`.
pub(crate) type Handler = Arc<dyn Fn(&Report) + Send + Sync>;

/// What a Runner does with a [`Report`] when no `Builder::exception_handler` was set
/// (asyncio's `loop.default_exception_handler`): one line on stderr, or, with the `tracing`
/// feature and a `tracing` subscriber set (global or scoped) on the reporting thread, one
/// `tracing` event instead (target `runner`; panics at error level, the rest at warn).
/// Never both. Whether the event is then shown is up to the subscriber's filters. It does
/// not panic: when stderr is broken (a pipe nobody reads any more), the line is lost.
///
/// A custom handler replaces all of this: it receives every report, and nothing goes to
/// stderr or to `tracing` unless it calls this function itself.
///
/// ```
/// # use runner_core as runner;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// static SEEN: AtomicUsize = AtomicUsize::new(0);
/// let mut runner = runner::Runner::builder()
///     .debug(Some(true))
///     .slow_callback_duration(std::time::Duration::ZERO)
///     .exception_handler(|report: &runner::Report| {
///         SEEN.fetch_add(1, Ordering::SeqCst);
///         runner::default_exception_handler(report); // and print it as usual
///     })
///     .build();
/// runner.run(async {}).unwrap();
/// runner.close();
/// assert!(SEEN.load(Ordering::SeqCst) >= 1);
/// ```
pub fn default_exception_handler(report: &Report) {
    #[cfg(feature = "tracing")]
    if tracing_subscriber_set() {
        emit_tracing_event(report);
        return;
    }
    print_report(report);
}

/// One line on stderr. Not `eprintln!`, which panics when stderr is broken (a pipe nobody
/// reads any more): the line is lost then, and nothing else is.
pub(crate) fn print_report(report: &Report) {
    use std::io::Write;
    // Formatted first and written whole: `writeln!` on an unbuffered stderr writes its
    // pieces one by one, and a line written meanwhile by another thread without the lock
    // (a forced exit's final words) would land in the middle of this one.
    let line = report_line(report);
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// A report as the default handler writes it on stderr: one line, its newline included.
pub(crate) fn report_line(report: &Report) -> String {
    format!("runner: {report}\n")
}

/// The default handler as the Runner stores it.
pub(crate) fn default_handler(report: &Report) {
    default_exception_handler(report);
}

/// Whether this thread's current `tracing` dispatcher (scoped, else global) is a real one:
/// the default handler then sends a report to `tracing`. Always `false` without the
/// `tracing` feature.
pub(crate) fn tracing_subscriber_set() -> bool {
    #[cfg(feature = "tracing")]
    {
        tracing::dispatcher::get_default(|dispatch| {
            !dispatch.is::<tracing::subscriber::NoSubscriber>()
        })
    }
    #[cfg(not(feature = "tracing"))]
    {
        false
    }
}

/// The `tracing` side of a report: target `runner`, panics at error level, the rest at warn.
#[cfg(feature = "tracing")]
fn emit_tracing_event(report: &Report) {
    let location = report.location.map(|l| l.to_string());
    let location = location.as_deref().unwrap_or("");
    let kind = format!("{:?}", report.kind);
    match report.kind {
        ReportKind::PanicDuringShutdown
        | ReportKind::PanicNeverRetrieved
        | ReportKind::FinalizerPanicked => tracing::error!(
            target: "runner",
            kind = kind.as_str(),
            location,
            panic = report.panic.as_deref().unwrap_or(""),
            "{}",
            report.message
        ),
        _ => tracing::warn!(target: "runner", kind = kind.as_str(), location, "{}", report.message),
    }
}

/// `0.250` — asyncio prints slow callbacks with three decimals.
pub(crate) fn slow_poll_message(task: &str, took: Duration) -> String {
    format!("Executing {task} took {:.3} seconds", took.as_secs_f64())
}

/// `true` if `RUNNER_DEBUG` asks for debug mode: set, non-empty, and not `0`
/// (as `PYTHONASYNCIODEBUG`).
pub(crate) fn env_debug() -> bool {
    std::env::var_os("RUNNER_DEBUG").is_some_and(|v| !v.is_empty() && v != "0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_poll_message_has_three_decimals() {
        let m = slow_poll_message(
            "<task spawned at src/main.rs:12:5>",
            Duration::from_millis(250),
        );
        assert_eq!(
            m,
            "Executing <task spawned at src/main.rs:12:5> took 0.250 seconds"
        );
    }
}
