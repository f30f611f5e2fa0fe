//! A shutdown that shows its progress: when the main task is still running some time after
//! a signal cancelled it, or `close()` has waited that long for cancelled tasks (step 1), an
//! `at_close` finalizer (step 2) or blocking work (step 3), a
//! [`ReportKind::ShutdownWaiting`] report names how long it has waited, what it waits for,
//! and the way out; then again at most every threshold (`Builder::shutdown_report_after`).
//!
//! None of it is on a run's path. The main task's watch runs on the helper thread of the
//! shutdown (see `shutdown`), from the moment a signal's cancel reached the main task;
//! `close()` cuts its waits into slices that end at the next report, and starts no thread
//! for that (each slice's deadline is the one thread `close()` already starts when it has
//! something to wait for).
//!
//! Each report names the plain tokio tasks still alive (an axum connection that never
//! drains is one), and the way out as it is: the signal that began the shutdown, whose
//! second one (or any other) forces the exit. Under systemd (`NOTIFY_SOCKET`) its text is
//! also the service's `STATUS=`.

use std::panic::Location;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::debug::{Report, ReportKind, ShutdownFacts};
use crate::shared::Shared;
use crate::task_state::{StopSignal, TaskState};
use crate::util::lock_std;

/// Reports come at most this often, whatever the threshold.
const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// The interval between reports for `threshold`; `None`: reports are off.
pub(crate) fn interval(threshold: Duration) -> Option<Duration> {
    (threshold != Duration::MAX).then(|| threshold.max(MIN_INTERVAL))
}

/// Waits with `wait(until)` (which gives up with `None` once `until` has passed) until it
/// yields a value or `deadline` passes (then `None`). Each time the wait has gone on for
/// another interval of `threshold`, `due(waited)` reports it.
pub(crate) fn wait_reporting<T>(
    deadline: Option<Instant>,
    threshold: Duration,
    mut wait: impl FnMut(Option<Instant>) -> Option<T>,
    mut due: impl FnMut(Duration),
) -> Option<T> {
    let started = Instant::now();
    let every = interval(threshold);
    let mut next = every.and_then(|every| started.checked_add(every));
    loop {
        let until = match (deadline, next) {
            (Some(deadline), Some(next)) => Some(deadline.min(next)),
            (deadline, None) => deadline,
            (None, next) => next,
        };
        if let Some(out) = wait(until) {
            return Some(out);
        }
        let now = Instant::now();
        if deadline.is_some_and(|deadline| now >= deadline) {
            return None;
        }
        if next.is_some_and(|next| now >= next) {
            due(now.duration_since(started));
            next = every.and_then(|every| Instant::now().checked_add(every));
        }
    }
}

/// What a shutdown waits for, and where, for [`report_waiting`].
pub(crate) enum Stage<'a> {
    /// The main task, after `signal` cancelled it.
    #[cfg_attr(runner_loom, allow(dead_code))]
    MainTask(StopSignal, &'a TaskState),
    /// `close()` step 1: the tasks of its cancellation pass; the ones observing
    /// `cancelled()` when the pass cancelled them (by name), and how many are left in all.
    CloseTasks {
        observing: &'a [Arc<TaskState>],
        left: usize,
        timeout: Duration,
    },
    /// `close()` step 2: the `at_close` finalizer registered at `location`.
    CloseFinalizer {
        location: &'static Location<'static>,
        timeout: Duration,
    },
    /// `close()` step 3: blocking work.
    CloseBlocking { timeout: Duration },
}

/// Sends one `ShutdownWaiting` report: how long the shutdown has waited at `stage`, the tasks
/// still pending there and in the Runner, the plain tokio tasks, the blocking work, and the
/// signal that ends the process.
pub(crate) fn report_waiting(runner: &Shared, stage: Stage<'_>, waited: Duration) {
    if runner.shutdown.is_forcing()
        || runner
            .shutdown
            .grace_period_ends_within(crate::shutdown::FINAL_WORDS_LIMIT)
    {
        // The final words of a forced exit are out or on their way (or due, at the grace
        // period's end, which a report every third of it would otherwise meet): they are
        // the last line, and say all this one would.
        return;
    }
    let mut signal = runner.shutdown.signal();
    let mut pending: Vec<(&'static Location<'static>, String)> = Vec::new();
    let mut unnamed = 0;
    let mut at = None;
    let headline = match stage {
        Stage::MainTask(hit, main) => {
            signal = Some(hit);
            if !main.is_done() {
                pending.push((main.location, main.describe()));
            }
            format!(
                "after {} for the main task to finish (it holds runner::cancelled(), or has \
                 not reached an await point since)",
                hit.name()
            )
        }
        Stage::CloseTasks {
            observing,
            left,
            timeout,
        } => {
            let named = observing.iter().filter(|task| !task.is_done());
            pending.extend(named.map(|task| (task.location, task.describe())));
            unnamed = left.saturating_sub(pending.len());
            format!(
                "in Runner::close for {left} cancelled task(s) to finish (shutdown timeout \
                 {timeout:?})"
            )
        }
        Stage::CloseFinalizer { location, timeout } => {
            at = Some(location);
            format!(
                "in Runner::close for the at_close finalizer registered at {location} \
                 (shutdown timeout {timeout:?})"
            )
        }
        Stage::CloseBlocking { timeout } => {
            format!("in Runner::close for blocking work (shutdown timeout {timeout:?})")
        }
    };
    pending.extend(runner.pending_tasks());
    let mut facts = ShutdownFacts::new(waited);
    for (spawned_at, _) in &pending {
        facts = facts.with_pending_task(spawned_at);
    }
    let location = at.or_else(|| pending.first().map(|(location, _)| *location));
    let mut tasks: Vec<String> = pending.into_iter().map(|(_, name)| name).collect();
    if unnamed > 0 {
        tasks.push(format!(
            "{unnamed} more not observing runner::cancelled() (a poll that blocks its thread, \
             or a slow Drop)"
        ));
    }
    let tasks = if tasks.is_empty() {
        "none".to_owned()
    } else {
        tasks.join(", ")
    };
    let jobs = runner.blocking_jobs();
    let blocking = describe_blocking(&jobs);
    let plain = crate::shutdown::plain_tasks(runner, true).unwrap_or(0);
    facts = jobs
        .iter()
        .fold(facts.with_plain_tasks(plain), |facts, (at, n)| {
            facts.with_blocking_jobs(at, *n)
        });
    // Any signal forces the exit once one began the shutdown; before that (a `close()` that
    // no signal began), a Ctrl-C is the first, and ends the process as it would anyway.
    let way_out = match signal {
        Some(signal) => format!("a second {} forces the exit", signal.name()),
        None => "Ctrl-C forces the exit".to_owned(),
    };
    let message = format!(
        "Shutdown waiting {:.1} s {headline}; pending tasks: {tasks}; plain tokio tasks: \
         {plain}; blocking work: {blocking}; {way_out}",
        waited.as_secs_f64()
    );
    crate::notify::status(&message);
    runner.report(
        Report::make(ReportKind::ShutdownWaiting, message, location, None).with_shutdown(facts),
    );
}

/// `2 spawn_blocking job(s) (spawned at src/a.rs:3:5, src/b.rs:9:1 ×2)`, or `none`.
pub(crate) fn describe_blocking(jobs: &[(&'static Location<'static>, usize)]) -> String {
    let total: usize = jobs.iter().map(|(_, n)| n).sum();
    if total == 0 {
        return "none".to_owned();
    }
    let places: Vec<String> = jobs
        .iter()
        .map(|(at, n)| {
            if *n == 1 {
                at.to_string()
            } else {
                format!("{at} ×{n}")
            }
        })
        .collect();
    format!(
        "{total} spawn_blocking job(s) (spawned at {})",
        places.join(", ")
    )
}

/// The Runner of each main task's record. The listener thread knows only the record of the
/// run a signal hit; its report needs that Runner (its tasks, its exception handler, its
/// threshold). A Runner enters its record here when it makes one (its first run, or a run
/// after one whose record is still referenced), never on a warm run's path.
static MAIN_RECORDS: Mutex<Vec<(usize, Weak<Shared>)>> = Mutex::new(Vec::new());

/// `record` is the main task's record of `runner` from now on.
pub(crate) fn remember_main_task(record: &Arc<TaskState>, runner: &Arc<Shared>) {
    let key = Arc::as_ptr(record) as usize;
    let mut table = lock_std(&MAIN_RECORDS);
    // A record's address is reused once it is freed, and a Runner's older record is done
    // with: keep one live entry per record and per Runner.
    table.retain(|(known, owner)| {
        *known != key && owner.strong_count() > 0 && !std::ptr::eq(owner.as_ptr(), &**runner)
    });
    table.push((key, Arc::downgrade(runner)));
}

/// The Runner whose main task `record` is, if it is still alive. With `wait` false, `None`
/// also when the table's lock is busy (a forced exit must not wait on it).
#[cfg_attr(runner_loom, allow(dead_code))]
pub(crate) fn runner_of(record: &Weak<TaskState>, wait: bool) -> Option<Arc<Shared>> {
    let key = record.as_ptr() as usize;
    let table = if wait {
        lock_std(&MAIN_RECORDS)
    } else {
        crate::util::try_lock_std(&MAIN_RECORDS)?
    };
    let (_, owner) = table.iter().find(|(known, _)| *known == key)?;
    owner.upgrade()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_that_ends_in_time_reports_nothing() {
        let mut reports = 0;
        let out = wait_reporting(None, Duration::from_secs(5), |_| Some(7), |_| reports += 1);
        assert_eq!((out, reports), (Some(7), 0));
    }

    #[test]
    fn a_long_wait_reports_at_each_interval_until_its_deadline() {
        let started = Instant::now();
        let deadline = started + Duration::from_millis(400);
        let mut at = Vec::new();
        let out: Option<()> = wait_reporting(
            Some(deadline),
            Duration::from_millis(60),
            |until| {
                std::thread::sleep(until.unwrap().saturating_duration_since(Instant::now()));
                None
            },
            |waited| at.push(waited),
        );
        assert_eq!(out, None);
        assert!(Instant::now() >= deadline);
        // 60, 120, ..., 360 ms: at most one per interval, and none before the first.
        assert!((1..=6).contains(&at.len()), "{at:?}");
        assert!(at[0] >= Duration::from_millis(60), "{at:?}");
        for pair in at.windows(2) {
            assert!(pair[1] - pair[0] >= Duration::from_millis(60), "{at:?}");
        }
    }

    #[test]
    fn reports_off_means_one_wait_to_the_deadline() {
        let mut waits = 0;
        let mut reports = 0;
        let deadline = Instant::now() + Duration::from_millis(30);
        let out: Option<()> = wait_reporting(
            Some(deadline),
            Duration::MAX,
            |until| {
                waits += 1;
                assert_eq!(until, Some(deadline));
                std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                None
            },
            |_| reports += 1,
        );
        assert_eq!((out, waits, reports), (None, 1, 0));
    }

    #[test]
    fn blocking_work_is_named_by_spawn_location() {
        let here = Location::caller();
        assert_eq!(describe_blocking(&[]), "none");
        assert_eq!(
            describe_blocking(&[(here, 2)]),
            format!("2 spawn_blocking job(s) (spawned at {here} ×2)")
        );
    }
}
