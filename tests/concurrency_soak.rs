//! The concurrency soak of issue 17 (DESIGN "Proven concurrency", "Close never leaks, never
//! panics"): Runner lifecycles one after another on all four loop flavors, each a random mix
//! of the things that race with cancellation and close:
//! - `cancelled()` observers moved into plain `tokio::spawn` tasks and onto OS threads (polled
//!   there by a small executor), some of them dropped unpolled;
//! - cancels from plain tokio tasks and from OS threads;
//! - tasks left for `close()`, and tasks ending on their own just as it begins;
//! - `runner::spawn`, `at_close` and `spawn_blocking` from a plain tokio task during `close()`;
//! - a Runner run (and closed) inside `runner::spawn_blocking`.
//!
//! Checked for every lifecycle: each task's future (runner tasks, plain tokio tasks, the
//! observers' threads) dropped exactly once, each `at_close` finalizer run exactly once, each
//! cancelled task ended as its kind allows, no panic on any thread, no hang (every await is
//! bounded, and a watchdog bounds the whole); and at the end fds, threads and RSS where they
//! were after the warm-up. The soak runs in a child process (see `common/stress.rs`): its
//! counts are process-wide.

mod common;
#[path = "common/stress.rs"]
mod stress;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::{fds, rss_kib, threads, threads_settled_to, Rng};
use runner::{Task, TaskError};
use stress::{Flavor, FLAVORS};
use tokio::sync::{mpsc, oneshot};

/// Longer than anything here takes when it works: an await still pending after it is a hang.
const HANG: Duration = Duration::from_secs(5);
/// Lifecycles before the baseline counts are taken (allocator arenas, statics, thread pools
/// of the process settle first).
const WARM_UP: Duration = Duration::from_secs(5);
/// Lifecycles after the baseline. With the warm-up and the settling of threads, the soak
/// stays under 60 s of wall time.
const SOAK: Duration = Duration::from_secs(40);

#[test]
fn concurrent_lifecycles_drop_each_future_once_run_each_finalizer_once_and_leak_nothing() {
    stress::run_child(
        "child_concurrent_lifecycles_drop_each_future_once_run_each_finalizer_once_and_leak_nothing",
        Duration::from_secs(150),
    );
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What one lifecycle made and what became of it.
#[derive(Default)]
struct Books {
    /// One mark per tracked future: dropped yet?
    marks: Mutex<Vec<bool>>,
    dropped_twice: AtomicUsize,
    /// Runs of each finalizer registered, by id.
    finalizers: Mutex<HashMap<usize, u32>>,
    next_finalizer: AtomicUsize,
    blocking_jobs: AtomicUsize,
    blocking_runs: AtomicUsize,
    problems: Mutex<Vec<String>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// Held by a future (or a thread's closure): its drop is counted.
struct Tracked {
    books: Arc<Books>,
    id: usize,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let mut marks = lock(&self.books.marks);
        if std::mem::replace(&mut marks[self.id], true) {
            self.books.dropped_twice.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Books {
    fn track(self: &Arc<Self>) -> Tracked {
        let mut marks = lock(&self.marks);
        marks.push(false);
        Tracked {
            books: self.clone(),
            id: marks.len() - 1,
        }
    }

    fn problem(&self, what: String) {
        lock(&self.problems).push(what);
    }

    /// `runner::at_close` with a finalizer whose runs are counted (it must run once).
    fn at_close(self: &Arc<Self>) {
        let id = self.next_finalizer.fetch_add(1, Ordering::SeqCst);
        let books = self.clone();
        runner::at_close(move || async move {
            *lock(&books.finalizers).entry(id).or_insert(0) += 1;
        });
        lock(&self.finalizers).entry(id).or_insert(0);
    }

    /// `runner::spawn_blocking` of a job whose runs are counted (close waits for it).
    fn spawn_blocking(self: &Arc<Self>) {
        let books = self.clone();
        drop(runner::spawn_blocking(move || {
            books.blocking_runs.fetch_add(1, Ordering::SeqCst);
        }));
        self.blocking_jobs.fetch_add(1, Ordering::SeqCst);
    }

    /// An OS thread, joined after close.
    fn thread(&self, f: impl FnOnce() + Send + 'static) {
        lock(&self.threads).push(thread::spawn(f));
    }

    /// After close and the threads joined: what went wrong, besides the problems recorded.
    fn settle(&self) -> Vec<String> {
        for t in std::mem::take(&mut *lock(&self.threads)) {
            if t.join().is_err() {
                self.problem("an OS thread of the soak panicked".to_owned());
            }
        }
        let mut problems = std::mem::take(&mut *lock(&self.problems));
        let marks = lock(&self.marks);
        let alive = marks.iter().filter(|dropped| !**dropped).count();
        if alive > 0 {
            problems.push(format!("{alive} of {} futures never dropped", marks.len()));
        }
        let twice = self.dropped_twice.load(Ordering::SeqCst);
        if twice > 0 {
            problems.push(format!("{twice} futures dropped twice"));
        }
        for (id, runs) in lock(&self.finalizers).iter() {
            if *runs != 1 {
                problems.push(format!("finalizer {id} ran {runs} times"));
            }
        }
        let (jobs, runs) = (
            self.blocking_jobs.load(Ordering::SeqCst),
            self.blocking_runs.load(Ordering::SeqCst),
        );
        if jobs != runs {
            problems.push(format!("{jobs} spawn_blocking jobs, {runs} ran"));
        }
        problems
    }
}

/// Where a task's `cancelled()` future is polled.
#[derive(Clone, Copy, Debug)]
enum Held {
    PlainTask,
    OsThread,
}

/// What a task of the soak does, and so how it may end once cancelled.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// Its `cancelled()` is awaited elsewhere; when it resolves, the task returns "drained".
    Drain(Held),
    /// Several `cancelled()`, each held elsewhere for a random moment, then dropped unpolled
    /// unless it resolved first: "drained" if one resolved, else cancelled (never a hang).
    Churn,
    /// Observes nothing: dropped by the cancel.
    Pending,
}

/// Who cancels it.
#[derive(Clone, Copy, Debug)]
enum Fate {
    PlainTask,
    OsThread,
    Close,
}

fn check_end(kind: Kind, ended: Option<Result<&'static str, TaskError>>) -> Result<(), String> {
    match (kind, ended) {
        (_, None) => Err(format!(
            "{kind:?} task: no end within {HANG:?} of its cancel"
        )),
        (Kind::Drain(_), Some(Ok("drained"))) | (Kind::Churn, Some(Ok("drained"))) => Ok(()),
        (Kind::Churn | Kind::Pending, Some(Err(e))) if e.is_cancelled() => Ok(()),
        (kind, Some(other)) => Err(format!("{kind:?} task ended with {other:?}")),
    }
}

/// A `cancelled()` of the current task, polled on its own OS thread until it resolves (or
/// `hold` passes, when given: then it is dropped unpolled from then on). Sends whether it
/// resolved.
fn hold_on_thread(books: &Arc<Books>, hold: Option<Duration>, resolved: oneshot::Sender<bool>) {
    let c = runner::cancelled();
    let tracked = books.track();
    books.thread(move || {
        let _tracked = tracked;
        let done = stress::block_on_thread(c, hold.unwrap_or(HANG)).is_some();
        let _ = resolved.send(done);
    });
}

/// The same in a plain tokio task.
fn hold_in_plain_task(books: &Arc<Books>, hold: Option<Duration>, resolved: oneshot::Sender<bool>) {
    let c = runner::cancelled();
    let tracked = books.track();
    tokio::spawn(async move {
        let _tracked = tracked;
        let done = match hold {
            None => tokio::time::timeout(HANG, c).await.is_ok(),
            Some(hold) => tokio::select! {
                _ = c => true,
                _ = tokio::time::sleep(hold) => false,
            },
        };
        let _ = resolved.send(done);
    });
}

/// One task of a lifecycle, decided before its run.
struct Plan {
    kind: Kind,
    fate: Fate,
    /// How long its canceller waits before cancelling.
    delay: Duration,
    /// For `Kind::Churn`: where each of its `cancelled()` is held, and how long.
    holds: Vec<(Held, Duration)>,
    registers_finalizer: bool,
}

impl Plan {
    fn random(rng: &mut Rng) -> Plan {
        let held = |rng: &mut Rng| {
            if rng.next() % 2 == 0 {
                Held::PlainTask
            } else {
                Held::OsThread
            }
        };
        let kind = match rng.next() % 4 {
            0 | 1 => Kind::Drain(held(rng)),
            2 => Kind::Churn,
            _ => Kind::Pending,
        };
        let fate = match rng.next() % 3 {
            0 => Fate::PlainTask,
            1 => Fate::OsThread,
            _ => Fate::Close,
        };
        Plan {
            kind,
            fate,
            delay: Duration::from_micros(rng.next() % 3_000),
            holds: (0..1 + rng.next() % 3)
                .map(|_| (held(rng), Duration::from_micros(rng.next() % 2_000)))
                .collect(),
            registers_finalizer: rng.next() % 4 == 0,
        }
    }
}

/// Spawns the task `plan` describes; the receiver hears when it observes what its kind
/// observes (a cancel before that would drop it: a `Drain` task would not drain).
fn spawn_planned(books: &Arc<Books>, plan: &Plan) -> (Task<&'static str>, oneshot::Receiver<()>) {
    let books = books.clone();
    let (kind, holds) = (plan.kind, plan.holds.clone());
    let registers_finalizer = plan.registers_finalizer;
    let (ready, is_ready) = oneshot::channel();
    let task = runner::spawn(async move {
        let _tracked = books.track();
        if registers_finalizer {
            books.at_close();
        }
        match kind {
            Kind::Drain(held) => {
                let (tx, rx) = oneshot::channel();
                match held {
                    Held::PlainTask => hold_in_plain_task(&books, None, tx),
                    Held::OsThread => hold_on_thread(&books, None, tx),
                }
                let _ = ready.send(());
                match rx.await {
                    Ok(true) => "drained",
                    _ => "its observer gave up",
                }
            }
            Kind::Churn => {
                let mut answers = Vec::new();
                for (held, hold) in holds {
                    let (tx, rx) = oneshot::channel();
                    match held {
                        Held::PlainTask => hold_in_plain_task(&books, Some(hold), tx),
                        Held::OsThread => hold_on_thread(&books, Some(hold), tx),
                    }
                    answers.push(rx);
                }
                let _ = ready.send(());
                let mut resolved = false;
                for rx in answers {
                    resolved |= rx.await.unwrap_or(false);
                }
                if resolved {
                    return "drained";
                }
                std::future::pending().await
            }
            Kind::Pending => {
                let _ = ready.send(());
                std::future::pending().await
            }
        }
    });
    (task, is_ready)
}

/// Once `task` is ready, cancels it after a moment, from a plain tokio task or an OS thread,
/// and checks how it ends. `done` is dropped when it has.
fn cancel_later(
    books: &Arc<Books>,
    (task, ready): (Task<&'static str>, oneshot::Receiver<()>),
    kind: Kind,
    fate: Fate,
    delay: Duration,
    done: mpsc::UnboundedSender<()>,
) {
    let b = books.clone();
    let tracked = books.track();
    let check = move |was_ready: bool, requested: bool, ended| {
        let _done = done;
        let _tracked = tracked;
        if !was_ready {
            b.problem(format!("{kind:?} task: not started within {HANG:?}"));
        }
        if !requested {
            b.problem(format!("{kind:?} task: cancel() false before it could end"));
        }
        if let Err(e) = check_end(kind, ended) {
            b.problem(e);
        }
    };
    match fate {
        Fate::PlainTask => {
            tokio::spawn(async move {
                let was_ready = matches!(tokio::time::timeout(HANG, ready).await, Ok(Ok(())));
                tokio::time::sleep(delay).await;
                let requested = task.cancel();
                let ended = tokio::time::timeout(HANG, task).await.ok();
                check(was_ready, requested, ended);
            });
        }
        Fate::OsThread => books.thread(move || {
            let was_ready = matches!(stress::block_on_thread(ready, HANG), Some(Ok(())));
            thread::sleep(delay);
            let requested = task.cancel();
            let ended = stress::block_on_thread(task, HANG);
            check(was_ready, requested, ended);
        }),
        Fate::Close => unreachable!(),
    }
}

/// Bug 4's scene: a task observing close's cancel asks a plain tokio task to call
/// `runner::spawn`, `at_close` and `spawn_blocking`, and waits for its answer. The receiver
/// hears when the task observes.
fn calls_from_a_plain_task_during_close(books: &Arc<Books>) -> oneshot::Receiver<()> {
    let (ask, mut asked) = mpsc::unbounded_channel::<oneshot::Sender<Result<(), String>>>();
    let b = books.clone();
    let tracked = books.track();
    tokio::spawn(async move {
        let _tracked = tracked;
        while let Some(answer) = asked.recv().await {
            let found = panic::catch_unwind(AssertUnwindSafe(|| {
                let tracked = b.track();
                drop(runner::spawn(async move {
                    let _tracked = tracked;
                }));
                b.at_close();
                b.spawn_blocking();
            }));
            let _ = answer.send(found.map_err(|_| "it panicked (message above)".to_owned()));
        }
    });
    let b = books.clone();
    let (ready, is_ready) = oneshot::channel();
    drop(runner::spawn(async move {
        let _tracked = b.track();
        let cancelled = runner::cancelled();
        let _ = ready.send(());
        cancelled.await;
        let (answer, answered) = oneshot::channel();
        let _ = ask.send(answer);
        match tokio::time::timeout(HANG, answered).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => b.problem(format!(
                "runner::spawn / at_close / spawn_blocking from a plain tokio task during \
                 close(): {e}"
            )),
            Ok(Err(_)) => b.problem("the plain task of close went away".to_owned()),
            Err(_) => b.problem(format!("the plain task of close: no answer in {HANG:?}")),
        }
    }));
    is_ready
}

/// Bug 5's scene: a Runner run and closed inside `runner::spawn_blocking`; its plain tokio
/// task's `runner::spawn`s are its own, and its close cancels what they left pending.
fn nested_runner(books: &Arc<Books>, flavor: Flavor) {
    let books = books.clone();
    books.blocking_jobs.fetch_add(1, Ordering::SeqCst);
    drop(runner::spawn_blocking(move || {
        books.blocking_runs.fetch_add(1, Ordering::SeqCst);
        let mut r2 = stress::builder(flavor)
            .shutdown_timeout(Duration::from_secs(10))
            .build();
        let id = r2.get_loop().unwrap().id();
        let pending_dropped = Arc::new(AtomicUsize::new(0));
        let d = common::CountOnDrop(pending_dropped.clone());
        let b = books.clone();
        let seen = r2.run(async move {
            let plain = tokio::spawn(async move {
                let _tracked = b.track();
                let tracked = b.track();
                drop(runner::spawn(async move {
                    let _d = d;
                    let _tracked = tracked;
                    std::future::pending::<()>().await
                }));
                runner::spawn(async { tokio::runtime::Handle::current().id() }).await
            });
            tokio::time::timeout(HANG, plain).await
        });
        r2.close();
        match seen {
            Ok(Ok(Ok(Ok(seen)))) if seen == id => {}
            other => books.problem(format!(
                "nested {flavor} Runner: runner::spawn from its plain task gave {other:?}, \
                 not a task on its own runtime {id}"
            )),
        }
        if pending_dropped.load(Ordering::SeqCst) != 1 {
            books.problem(format!(
                "nested {flavor} Runner: its close() did not drop the task its plain task left \
                 pending"
            ));
        }
    }));
}

/// One Runner lifecycle: a random mix of the scenes above. Returns what went wrong.
fn lifecycle(
    flavor: Flavor,
    rng: &mut Rng,
    tally: &mut HashMap<&'static str, usize>,
) -> Vec<String> {
    let books = Arc::new(Books::default());
    let mut r = stress::builder(flavor)
        .shutdown_timeout(Duration::from_secs(10))
        .build();
    let panics_before = stress::panics();
    // Decided out here, so the run's future need not carry the generator.
    let plans: Vec<Plan> = (0..1 + rng.next() % 6).map(|_| Plan::random(rng)).collect();
    let ending: Vec<u64> = (0..rng.next() % 9).map(|_| rng.next() % 32).collect();
    let finalizers = rng.next() % 3;
    let plain_during_close = rng.next() % 2 == 0;
    let nested = (rng.next() % 4 == 0).then(|| FLAVORS[(rng.next() % 4) as usize]);
    for plan in &plans {
        *tally.entry(kind_name(plan.kind)).or_default() += 1;
        *tally.entry(fate_name(plan.fate)).or_default() += 1;
    }
    if plain_during_close {
        *tally.entry("plain task during close").or_default() += 1;
    }
    if nested.is_some() {
        *tally.entry("nested runner").or_default() += 1;
    }

    let b = books.clone();
    let left_for_close = r
        .run(async move {
            for _ in 0..finalizers {
                b.at_close();
            }
            let (done, mut all_done) = mpsc::unbounded_channel::<()>();
            let mut left = Vec::new();
            for plan in plans {
                let task = spawn_planned(&b, &plan);
                match plan.fate {
                    Fate::Close => left.push((plan.kind, task)),
                    fate => cancel_later(&b, task, plan.kind, fate, plan.delay, done.clone()),
                }
            }
            drop(done);
            if plain_during_close {
                let ready = calls_from_a_plain_task_during_close(&b);
                if !matches!(tokio::time::timeout(HANG, ready).await, Ok(Ok(()))) {
                    b.problem(format!(
                        "the task of close's plain task: not started in {HANG:?}"
                    ));
                }
            }
            if let Some(flavor) = nested {
                nested_runner(&b, flavor);
            }
            // Every explicit cancel has been made and its task has ended.
            if tokio::time::timeout(2 * HANG, all_done.recv())
                .await
                .is_err()
            {
                b.problem(format!(
                    "the cancellers did not finish within {:?}",
                    2 * HANG
                ));
            }
            let mut left_for_close = Vec::new();
            for (kind, (task, ready)) in left {
                if !matches!(tokio::time::timeout(HANG, ready).await, Ok(Ok(()))) {
                    b.problem(format!("{kind:?} task: not started within {HANG:?}"));
                }
                left_for_close.push((kind, task));
            }
            // Tasks that end on their own just as close begins.
            for n in ending {
                let tracked = b.track();
                drop(runner::spawn(async move {
                    let _tracked = tracked;
                    for _ in 0..n {
                        tokio::task::yield_now().await;
                    }
                }));
            }
            tokio::task::yield_now().await;
            left_for_close
        })
        .unwrap();
    r.close();
    for (kind, task) in left_for_close {
        let ended = stress::block_on_thread(task, HANG);
        if let Err(e) = check_end(kind, ended) {
            books.problem(format!("left for close: {e}"));
        }
    }
    let mut problems = books.settle();
    let panics = stress::panics() - panics_before;
    if panics > 0 {
        problems.push(format!("{panics} panic(s) (messages above)"));
    }
    problems
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Drain(Held::PlainTask) => "observer in a plain task",
        Kind::Drain(Held::OsThread) => "observer on an OS thread",
        Kind::Churn => "observers dropped unpolled",
        Kind::Pending => "not observing",
    }
}

fn fate_name(fate: Fate) -> &'static str {
    match fate {
        Fate::PlainTask => "cancelled from a plain task",
        Fate::OsThread => "cancelled from an OS thread",
        Fate::Close => "left for close",
    }
}

#[test]
#[ignore = "child process of concurrent_lifecycles_drop_each_future_once_run_each_finalizer_once_and_leak_nothing"]
fn child_concurrent_lifecycles_drop_each_future_once_run_each_finalizer_once_and_leak_nothing() {
    stress::child(Duration::from_secs(100), |progress| {
        let threads_at_start = threads();
        let mut rng = Rng::from_env_or_clock("soak");
        let mut tally = HashMap::new();
        let mut run = |phase: &str, time: Duration, tally: &mut HashMap<_, _>| {
            let bounds = stress::Bounds {
                min: FLAVORS.len(),
                max: usize::MAX,
                time,
            };
            let mut count = 0;
            for i in progress.iterations(format!("soak {phase}"), bounds) {
                let flavor = FLAVORS[i % FLAVORS.len()];
                let problems = lifecycle(flavor, &mut rng, tally);
                assert!(
                    problems.is_empty(),
                    "soak {phase}, lifecycle {i} ({flavor}): {}",
                    problems.join("; ")
                );
                count += 1;
            }
            count
        };
        run("warm-up", WARM_UP, &mut tally);
        let threads_before = threads_settled_to(threads_at_start);
        let (fds_before, rss_before) = (fds(), rss_kib());
        let started = Instant::now();
        let lifecycles = run("measured", SOAK, &mut tally);
        let took = started.elapsed();
        progress.at("settling");
        let threads_after = threads_settled_to(threads_before);
        let (fds_after, rss_after) = (fds(), rss_kib());
        let mut scenes = String::new();
        let mut tally: Vec<_> = tally.into_iter().collect();
        tally.sort();
        for (scene, n) in tally {
            let _ = write!(scenes, "{scene}: {n}; ");
        }
        eprintln!(
            "soak: {lifecycles} lifecycles in {took:.1?} after the warm-up; RSS {rss_before} \
             KiB -> {rss_after} KiB; fds {fds_before} -> {fds_after}; threads {threads_before} \
             -> {threads_after} (at start {threads_at_start})\nsoak: scenes (warm-up \
             included): {scenes}"
        );
        assert!(
            threads_before <= threads_at_start,
            "threads {threads_at_start} at start, {threads_before} after the warm-up"
        );
        assert!(
            threads_after <= threads_before,
            "threads {threads_before} -> {threads_after}"
        );
        assert!(
            fds_after <= fds_before + 5,
            "fds {fds_before} -> {fds_after}"
        );
        assert!(
            rss_after <= rss_before + 8 * 1024,
            "RSS {rss_before} KiB -> {rss_after} KiB"
        );
    });
}
