//! A Runner's shutdown, the way an orchestrator (Kubernetes, docker, systemd) expects it:
//! `shutdown_requested()` for readiness endpoints, the drain delay, the grace period, and the
//! final words of a forced exit.
//!
//! The shutdown of a Runner begins at its first handled signal (or at `close()`, for
//! `shutdown_requested()` only) and ends when its `close()` returns. The signal listener
//! thread (`signal`) keeps its timers: the drain delay, after which it cancels the main
//! task, and the grace period, at whose end it forces the exit. It never calls user code
//! and never waits on a lock a stuck thread may hold, so a deadline is kept whatever the
//! program does. What does call user code (the exception handler) runs on a helper thread
//! of the shutdown, started by the listener at the first signal: the progress reports while
//! the main task drains, and the final words of a forced exit, which the listener waits for
//! at most [`FINAL_WORDS_LIMIT`] before it ends the process anyway.
//!
//! Final words are gathered with `try_lock` only: a lock held by a thread that the forced
//! exit interrupts (or that is stuck) leaves its part out ("busy") rather than hang.

use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::Thread;
use std::time::{Duration, Instant};

use crate::debug::{Report, ReportKind, ShutdownFacts};
use crate::progress::{self, Stage};
use crate::shared::Shared;
use crate::task_state::{StopSignal, TaskState};
use crate::util::{lock_std, try_lock_std};

/// How long a forced exit may wait for its final words: the exit is never later than this
/// after the second signal, or after the grace period's end.
pub(crate) const FINAL_WORDS_LIMIT: Duration = Duration::from_millis(100);

/// `true` once a signal or `close()` has asked the Runner running the current code to stop;
/// `false` outside a Runner.
///
/// It turns `true` at a Runner's first handled signal (Ctrl-C, or SIGTERM when handled: at
/// once, also while a [`drain_delay`](crate::Builder::drain_delay) holds the main task's
/// cancel back) and when its `close()` begins, and stays `true` for the rest of the
/// Runner's life. It answers from anywhere the Runner's code runs: the main task, tasks
/// started with [`spawn`](crate::spawn) or [`spawn_local`](crate::spawn_local), plain
/// `tokio::spawn` tasks of the Runner's runtime (an axum or hyper handler), and blocking
/// jobs. Made for readiness endpoints: a load balancer stops sending requests to an
/// instance whose readiness fails, and the drain delay gives it the time to notice.
///
/// ```
/// # use runner_core as runner;
/// assert!(!runner::shutdown_requested()); // outside any Runner
/// let mut runner = runner::Runner::new();
/// runner.run(async {
///     assert!(!runner::shutdown_requested());
///     // A readiness check, as an axum handler would run it (a plain tokio task):
///     let ready = tokio::spawn(async { !runner::shutdown_requested() });
///     assert!(ready.await.unwrap());
///     runner::at_close(|| async {
///         assert!(runner::shutdown_requested()); // close() has begun
///     });
/// })
/// .unwrap();
/// runner.close();
/// ```
pub fn shutdown_requested() -> bool {
    crate::scope::with_runner(|shared| shared.shutdown.requested())
        .unwrap_or_else(crate::scope::on_a_closed_runners_runtime)
}

/// When and why a Runner's shutdown began: its first handled signal.
#[derive(Clone, Copy)]
struct Began {
    signal: StopSignal,
    at: Instant,
}

/// The shutdown state of one Runner (a field of its `Shared`).
pub(crate) struct Stop {
    requested: AtomicBool,
    /// `close()` has returned: the shutdown is over (no grace period any more).
    over: AtomicBool,
    began: OnceLock<Began>,
    /// The generation of the last run of this Runner that a signal hit (its mark in the
    /// signal state ends with the shutdown).
    generation: AtomicU64,
    /// `Builder::grace_period`.
    pub(crate) grace_period: Option<Duration>,
    /// `Builder::drain_delay`.
    pub(crate) drain_delay: Option<Duration>,
    /// The Runner reports to the default handler: final words then go straight to stderr
    /// (with a `write(2)`, not through std's `Stderr`, whose lock a stuck thread may hold).
    default_handler: bool,
    /// What `close()` waits for now, for the final words of a forced exit during it.
    stage: Mutex<Option<Waiting>>,
    /// Tasks of runner's own on the runtime (the watchdog), left out of the plain tasks.
    own_tasks: AtomicU8,
    /// The final words are being written: no progress report after them.
    forcing: AtomicBool,
}

/// What `close()` waits for (an owned snapshot of a [`Stage`]).
enum Waiting {
    Tasks(Vec<Arc<TaskState>>),
    Finalizer(&'static Location<'static>),
    Blocking,
}

impl Stop {
    pub(crate) fn new(
        grace_period: Option<Duration>,
        drain_delay: Option<Duration>,
        default_handler: bool,
    ) -> Stop {
        Stop {
            requested: AtomicBool::new(false),
            over: AtomicBool::new(false),
            began: OnceLock::new(),
            generation: AtomicU64::new(0),
            grace_period,
            drain_delay,
            default_handler,
            stage: Mutex::new(None),
            own_tasks: AtomicU8::new(0),
            forcing: AtomicBool::new(false),
        }
    }

    pub(crate) fn requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }

    /// `close()` has begun.
    pub(crate) fn request(&self) {
        self.requested.store(true, Ordering::Release);
    }

    /// A signal hit the run of `generation`: the shutdown begins (if it has not), and
    /// systemd hears `STOPPING=1` once.
    pub(crate) fn begin(&self, generation: u64, signal: StopSignal) {
        self.requested.store(true, Ordering::Release);
        self.generation.fetch_max(generation, Ordering::AcqRel);
        let began = Began {
            signal,
            at: Instant::now(),
        };
        if self.began.set(began).is_ok() {
            crate::notify::stopping();
        }
    }

    /// The signal that began the shutdown, if one did.
    pub(crate) fn signal(&self) -> Option<StopSignal> {
        self.began.get().map(|b| b.signal)
    }

    /// The grace period's end, if one is set and the shutdown has begun.
    pub(crate) fn grace_deadline(&self) -> Option<Instant> {
        let began = self.began.get()?;
        began.at.checked_add(self.grace_period?)
    }

    /// `true` if the grace period ends within `soon` from now (or has ended).
    pub(crate) fn grace_period_ends_within(&self, soon: Duration) -> bool {
        self.grace_deadline()
            .is_some_and(|at| at.saturating_duration_since(Instant::now()) <= soon)
    }

    pub(crate) fn is_over(&self) -> bool {
        self.over.load(Ordering::Acquire)
    }

    /// `close()` has returned: no deadline holds any more, and a signal from now on is no
    /// longer a forced exit.
    pub(crate) fn end(&self) {
        self.over.store(true, Ordering::Release);
        lock_std(&self.stage).take();
        if self.began.get().is_some() {
            crate::signal::shutdown_over(self.generation.load(Ordering::Acquire));
        }
    }

    /// A forced exit is under way: its final words are the last report.
    pub(crate) fn is_forcing(&self) -> bool {
        self.forcing.load(Ordering::Acquire)
    }

    pub(crate) fn own_task_started(&self) {
        self.own_tasks.fetch_add(1, Ordering::AcqRel);
    }

    /// `close()` waits at `stage` now, one of its own (`Stage::Close…`).
    pub(crate) fn waiting(&self, stage: &Stage<'_>) {
        let owned = match *stage {
            // Not a stage of `close()`, and no caller passes it (the shutdown's helper
            // reports the main task's drain): it would record nothing.
            Stage::MainTask(..) => None,
            Stage::CloseTasks { observing, .. } => Some(Waiting::Tasks(observing.to_vec())),
            Stage::CloseFinalizer { location, .. } => Some(Waiting::Finalizer(location)),
            Stage::CloseBlocking { .. } => Some(Waiting::Blocking),
        };
        let old = std::mem::replace(&mut *lock_std(&self.stage), owned);
        drop(old);
    }
}

/// How many plain tokio tasks are alive on `shared`'s runtime: tokio's count of alive
/// tasks, less runner's (its registered tasks, the tasks of a close pass, and its own
/// helpers). `None` if a lock was busy and `wait` is false.
pub(crate) fn plain_tasks(shared: &Shared, wait: bool) -> Option<usize> {
    let alive = shared.handle.metrics().num_alive_tasks();
    let ours = shared.runner_tasks_on_runtime(wait)?;
    let own = usize::from(shared.shutdown.own_tasks.load(Ordering::Acquire))
        + usize::from(shared.local_driver_running());
    Some(alive.saturating_sub(ours + own))
}

/// Why the process is forced to end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Forced {
    /// A signal after the first (during the run's drain or `close()`).
    Signal(StopSignal),
    /// The grace period is over.
    Grace,
}

const RUN: u8 = 0;
const FINAL_SIGINT: u8 = 1;
const FINAL_SIGTERM: u8 = 2;
const FINAL_GRACE: u8 = 3;
const EXIT: u8 = 4;

/// The helper thread of a shutdown: progress reports of the main task's drain, and final
/// words. The listener only stores requests into it and unparks it (no lock it could be
/// kept waiting on while the helper runs user code).
pub(crate) struct Helper {
    state: Arc<HelperState>,
    thread: Thread,
}

struct HelperState {
    request: AtomicU8,
    /// The main task that the cancel has reached, to report on while it drains.
    watch: Mutex<Option<Watch>>,
}

#[derive(Clone)]
struct Watch {
    generation: u64,
    signal: StopSignal,
    record: Weak<TaskState>,
    since: Instant,
}

impl Helper {
    /// Starts the helper of `runner`'s shutdown (begun by `signal`, whose run's main task is
    /// `main`, if any); `done` is called once
    /// the final words are out. `None` if no thread could be started (the shutdown then has
    /// no progress reports and no final words; its deadlines still hold).
    pub(crate) fn start(
        runner: Weak<Shared>,
        signal: StopSignal,
        main: Weak<TaskState>,
        done: fn(),
    ) -> Option<Helper> {
        let state = Arc::new(HelperState {
            request: AtomicU8::new(RUN),
            watch: Mutex::new(None),
        });
        let mine = state.clone();
        let handle = std::thread::Builder::new()
            .name("runner-shutdown".into())
            .spawn(move || help(&mine, &runner, signal, main, done))
            .ok()?;
        Some(Helper {
            state,
            thread: handle.thread().clone(),
        })
    }

    /// The cancel has reached the main task `record` of the run of `generation` (hit by
    /// `signal`): report on its drain from now on.
    pub(crate) fn watch(&self, generation: u64, signal: StopSignal, record: Weak<TaskState>) {
        *lock_std(&self.state.watch) = Some(Watch {
            generation,
            signal,
            record,
            since: Instant::now(),
        });
        self.thread.unpark();
    }

    /// Write the final words of `forced` now.
    pub(crate) fn final_words(&self, forced: Forced) {
        let request = match forced {
            Forced::Signal(StopSignal::Interrupt) => FINAL_SIGINT,
            Forced::Signal(StopSignal::Terminate) => FINAL_SIGTERM,
            Forced::Grace => FINAL_GRACE,
        };
        self.state.request.store(request, Ordering::Release);
        self.thread.unpark();
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        // Final words, once asked for, are written even if the listener lets go.
        let _ = self
            .state
            .request
            .compare_exchange(RUN, EXIT, Ordering::AcqRel, Ordering::Acquire);
        self.thread.unpark();
    }
}

/// The helper thread's loop.
fn help(
    state: &HelperState,
    runner: &Weak<Shared>,
    signal: StopSignal,
    main: Weak<TaskState>,
    done: fn(),
) {
    let mut watching: Option<Watch> = None;
    let mut due: Option<Instant> = None;
    let mut latest_main = main;
    loop {
        let forced = match state.request.load(Ordering::Acquire) {
            EXIT => return,
            FINAL_SIGINT => Some(Forced::Signal(StopSignal::Interrupt)),
            FINAL_SIGTERM => Some(Forced::Signal(StopSignal::Terminate)),
            FINAL_GRACE => Some(Forced::Grace),
            _ => None,
        };
        if let Some(forced) = forced {
            if let Some(shared) = runner.upgrade() {
                write_final_words(&shared, forced, signal, &latest_main);
            }
            done();
            return;
        }
        if let Some(watch) = lock_std(&state.watch).take() {
            let every = runner
                .upgrade()
                .and_then(|shared| progress::interval(shared.report_after));
            due = every.and_then(|every| watch.since.checked_add(every));
            latest_main = watch.record.clone();
            watching = Some(watch);
        }
        if let (Some(watch), Some(at)) = (&watching, due) {
            if Instant::now() >= at {
                due = report_drain(runner, watch);
                if due.is_none() {
                    watching = None;
                }
            }
        }
        match due {
            Some(at) => std::thread::park_timeout(at.saturating_duration_since(Instant::now())),
            None => std::thread::park(),
        }
    }
}

/// One progress report of the main task's drain, if it still drains; the next one's time.
fn report_drain(runner: &Weak<Shared>, watch: &Watch) -> Option<Instant> {
    if crate::signal::armed_generation() != watch.generation {
        return None;
    }
    let shared = runner.upgrade()?;
    let main = watch.record.upgrade()?;
    if main.is_done() {
        return None;
    }
    let every = progress::interval(shared.report_after)?;
    progress::report_waiting(
        &shared,
        Stage::MainTask(watch.signal, &main),
        watch.since.elapsed(),
    );
    Instant::now().checked_add(every)
}

/// The one line of a forced exit: why, and what it cuts short.
fn write_final_words(shared: &Shared, forced: Forced, first: StopSignal, main: &Weak<TaskState>) {
    shared.shutdown.forcing.store(true, Ordering::Release);
    let began = shared.shutdown.began.get();
    let first = began.map_or(first, |b| b.signal);
    let waited = began.map_or(Duration::ZERO, |b| b.at.elapsed());
    let since = waited.as_secs_f64();
    let (running, facts) = describe_running(shared, main, waited);
    let (kind, message) = match forced {
        Forced::Signal(signal) => (
            ReportKind::ForcedExit,
            format!(
                "Forced exit by a second signal ({}) {since:.1} s after {}; cut short: \
                 {running}",
                signal.name(),
                first.name()
            ),
        ),
        Forced::Grace => (
            ReportKind::GracePeriodExpired,
            format!(
                "Grace period of {} after {} is over: forcing the exit, as a second {} \
                 would; still running: {running}",
                seconds(shared.shutdown.grace_period.unwrap_or_default()),
                first.name(),
                first.name()
            ),
        ),
    };
    crate::notify::status(&message);
    let location = main.upgrade().filter(|m| !m.is_done()).map(|m| m.location);
    let report = Report::make(kind, message, location, None).with_shutdown(facts);
    if shared.shutdown.default_handler && !crate::debug::tracing_subscriber_set() {
        write_stderr(&crate::debug::report_line(&report));
    } else {
        shared.report(report);
    }
}

/// `2 s`, `0.5 s`: a duration as the reports write it.
fn seconds(d: Duration) -> String {
    let text = format!("{:.3}", d.as_secs_f64());
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text} s")
}

/// What still runs, for final words: the main task, what `close()` waits for, the pending
/// tasks, the plain tokio tasks, the blocking work; in words, and as facts (of a shutdown
/// that has gone on for `waited`). Gathered with `try_lock` only.
fn describe_running(
    shared: &Shared,
    main: &Weak<TaskState>,
    waited: Duration,
) -> (String, ShutdownFacts) {
    const BUSY: &str = "(busy: not gathered)";
    let mut parts: Vec<String> = Vec::new();
    let mut facts = ShutdownFacts::new(waited);
    if let Some(main) = main.upgrade().filter(|m| !m.is_done()) {
        parts.push(main.describe());
        facts = facts.with_pending_task(main.location);
    }
    match try_lock_std(&shared.shutdown.stage).as_deref() {
        None => parts.push(format!("Runner::close {BUSY}")),
        Some(None) => {}
        Some(Some(Waiting::Tasks(observing))) => match shared.close_pass_left() {
            0 => {}
            left => {
                let mut named: Vec<String> = Vec::new();
                for task in observing.iter().filter(|t| !t.is_done()) {
                    named.push(task.describe());
                    facts = facts.with_pending_task(task.location);
                }
                let more = left.saturating_sub(named.len());
                let mut text = format!("Runner::close waiting for {left} cancelled task(s)");
                if !named.is_empty() {
                    text.push_str(&format!(": {}", named.join(", ")));
                }
                if more > 0 && !named.is_empty() {
                    text.push_str(&format!(" and {more} more"));
                }
                parts.push(text);
            }
        },
        Some(Some(Waiting::Finalizer(location))) => parts.push(format!(
            "Runner::close running the at_close finalizer registered at {location}"
        )),
        Some(Some(Waiting::Blocking)) => {
            parts.push("Runner::close waiting for blocking work".to_owned())
        }
    }
    match shared.try_pending_tasks() {
        Some(pending) => {
            for (at, name) in pending {
                facts = facts.with_pending_task(at);
                parts.push(name);
            }
        }
        None => parts.push(format!("pending tasks {BUSY}")),
    }
    let tasks = if parts.is_empty() {
        "no task".to_owned()
    } else {
        parts.join(", ")
    };
    let plain = plain_tasks(shared, false);
    if let Some(plain) = plain {
        facts = facts.with_plain_tasks(plain);
    }
    let plain = plain.map_or_else(|| BUSY.to_owned(), |n| n.to_string());
    let jobs = shared.try_blocking_jobs();
    for (at, n) in jobs.iter().flatten() {
        facts = facts.with_blocking_jobs(at, *n);
    }
    let blocking = jobs.map_or_else(
        || BUSY.to_owned(),
        |jobs| progress::describe_blocking(&jobs),
    );
    let text = format!("{tasks}; plain tokio tasks: {plain}; blocking work: {blocking}");
    (text, facts)
}

/// Writes `text` to fd 2 with `write(2)`: no lock (std's `Stderr` has one, which the thread
/// a forced exit interrupts may hold), and a broken stderr loses the line, nothing else.
fn write_stderr(text: &str) {
    #[cfg(unix)]
    {
        let mut bytes = text.as_bytes();
        while !bytes.is_empty() {
            // SAFETY: writing our own buffer of the stated length to fd 2.
            let n = unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
            if n <= 0 {
                if n < 0
                    && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
                {
                    continue;
                }
                return;
            }
            bytes = &bytes[n.unsigned_abs()..];
        }
    }
    #[cfg(not(unix))]
    {
        use std::io::Write;
        let _ = std::io::stderr().write_all(text.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_written_as_the_reports_write_them() {
        assert_eq!(seconds(Duration::from_secs(25)), "25 s");
        assert_eq!(seconds(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(seconds(Duration::from_millis(250)), "0.25 s");
    }

    #[test]
    fn outside_a_runner_no_shutdown_is_requested() {
        assert!(!shutdown_requested());
    }
}
