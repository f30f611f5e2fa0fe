//! A closed Runner releases everything it made (DESIGN "Close never leaks, never panics").
//! Every count here is process-wide (/proc/self/fd, /proc/self/task, RSS), so each check runs
//! in a child process of its own, where no other test makes runtimes meanwhile.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{builder, fds, rss_kib, threads_settled_to, Flavor, FLAVORS};

/// Thousands of Runners per child: about 10 s on an idle 2-core machine, 25 s on a loaded
/// one. The bound on each child run, generous; the parent's watchdog comes after it.
const SOAK_LIMIT: Duration = Duration::from_secs(300);
const PARENT_LIMIT: Duration = Duration::from_secs(360);

/// How a Runner of the loops below ends.
#[derive(Clone, Copy, Debug)]
enum Ending {
    Close,
    Drop,
}

/// One Runner, closed (or dropped) with a task pending, or observing `cancelled()`.
fn pending_lifecycle(flavor: Flavor, observing: bool, ending: Ending) {
    let mut r = builder(flavor).build();
    r.run(async move {
        if observing {
            runner::spawn(async {
                let cancelled = runner::cancelled();
                tokio::select! {
                    _ = cancelled => {}
                    _ = std::future::pending::<()>() => {}
                }
            });
        } else {
            runner::spawn(std::future::pending::<()>());
        }
        tokio::task::yield_now().await;
    })
    .unwrap();
    match ending {
        Ending::Close => r.close(),
        Ending::Drop => drop(r),
    }
}

#[test]
fn two_hundred_runners_closed_with_pending_tasks_leave_the_fd_count_where_it_was() {
    common::watchdog(PARENT_LIMIT);
    common::run_child_within("child_fds_after_pending_runners", &[], SOAK_LIMIT);
}

#[test]
#[ignore = "child process of two_hundred_runners_closed_with_pending_tasks_leave_the_fd_count_where_it_was"]
fn child_fds_after_pending_runners() {
    common::watchdog(PARENT_LIMIT);
    assert_eq!(std::env::var("RUNNER_CHILD").as_deref(), Ok("1"));
    // A first lifecycle of each kind makes what is made once per process (signal pipe,
    // the std/tokio statics), so the baseline counts only what Runners should give back.
    for flavor in FLAVORS {
        pending_lifecycle(flavor, false, Ending::Close);
    }
    let before = fds();
    for flavor in FLAVORS {
        for observing in [false, true] {
            for ending in [Ending::Close, Ending::Drop] {
                for _ in 0..200 {
                    pending_lifecycle(flavor, observing, ending);
                }
                let now = fds();
                assert!(
                    now <= before + 5,
                    "{flavor:?}, observing: {observing}, {ending:?}: {before} fds before, {now} after 200 Runners"
                );
            }
        }
    }
}

#[test]
fn five_thousand_runners_closed_with_pending_tasks_keep_rss_flat() {
    common::watchdog(PARENT_LIMIT);
    common::run_child_within("child_rss_after_pending_runners", &[], SOAK_LIMIT);
}

#[test]
#[ignore = "child process of five_thousand_runners_closed_with_pending_tasks_keep_rss_flat"]
fn child_rss_after_pending_runners() {
    common::watchdog(PARENT_LIMIT);
    assert_eq!(std::env::var("RUNNER_CHILD").as_deref(), Ok("1"));
    // Warm-up: the allocator's arenas and the process-wide statics settle first.
    for i in 0..500 {
        pending_lifecycle(FLAVORS[i % 2], i % 3 == 0, Ending::Close);
    }
    let before = rss_kib();
    for i in 0..5_000 {
        // Mostly current-thread: a multi-thread runtime costs 170 µs and two threads.
        let flavor = if i % 10 == 0 {
            Flavor::MultiThread
        } else {
            Flavor::CurrentThread
        };
        pending_lifecycle(flavor, i % 2 == 0, Ending::Close);
    }
    let after = rss_kib();
    // ~2.3 KB leaked per Runner would be ~11 MB here.
    assert!(
        after <= before + 4 * 1024,
        "RSS {before} KiB before 5,000 Runners, {after} KiB after"
    );
    assert!(fds() < 64, "{} fds left", fds());
}

/// One Runner lifecycle of the soak's kind `i`.
fn mixed_lifecycle(i: usize, reports: &common::Reports) {
    let flavor = if i % 16 == 0 {
        Flavor::MultiThread
    } else {
        Flavor::CurrentThread
    };
    let kind = i % 6;
    // Kinds 4 and 5 outlive the shutdown timeout on purpose; keep it short for them.
    let timeout = if kind >= 4 {
        Duration::from_millis(2)
    } else {
        Duration::from_secs(30)
    };
    let mut r = reports
        .install(builder(flavor))
        .shutdown_timeout(timeout)
        .build();
    r.run(async move {
        match kind {
            // pending, dropped by close()
            0 => drop(runner::spawn(std::future::pending::<()>())),
            // observing: async cleanup after the cancel
            1 => drop(runner::spawn(async {
                runner::cancelled().await;
                tokio::task::yield_now().await;
            })),
            // panicking while close() cancels it
            2 => {
                let (started, is_started) = tokio::sync::oneshot::channel();
                drop(runner::spawn(async move {
                    let _bomb = common::PanicOnDrop("soak: cleanup failed");
                    let _ = started.send(());
                    std::future::pending::<()>().await
                }));
                is_started.await.unwrap();
            }
            // blocking work of both kinds that ends within the timeout
            3 => {
                drop(runner::spawn_blocking(|| {
                    // sleep: blocking work that ends within the timeout.
                    std::thread::sleep(Duration::from_micros(200))
                }));
                drop(tokio::task::spawn_blocking(|| {}));
            }
            // cancel-ignoring with a panicking Drop: dropped by the runtime at step 4
            4 => {
                let (started, is_started) = tokio::sync::oneshot::channel();
                drop(runner::spawn(async move {
                    let _observing = runner::cancelled();
                    let _bomb = common::PanicOnDrop("soak: step 4");
                    let _ = started.send(());
                    std::future::pending::<()>().await
                }));
                is_started.await.unwrap();
            }
            // blocking work abandoned at the timeout
            _ => drop(tokio::task::spawn_blocking(|| {
                // sleep: blocking work that outlasts the 2 ms timeout.
                std::thread::sleep(Duration::from_millis(20))
            })),
        }
        tokio::task::yield_now().await;
    })
    .unwrap();
    r.close();
}

#[test]
fn a_soak_of_mixed_lifecycles_leaves_fds_threads_and_rss_where_they_were() {
    common::watchdog(PARENT_LIMIT);
    let (_, stderr) = common::run_child_within("child_soak", &[], SOAK_LIMIT);
    eprintln!(
        "{}",
        stderr
            .lines()
            .filter(|l| l.starts_with("soak:"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
#[ignore = "child process of a_soak_of_mixed_lifecycles_leaves_fds_threads_and_rss_where_they_were"]
fn child_soak() {
    common::watchdog(PARENT_LIMIT);
    assert_eq!(std::env::var("RUNNER_CHILD").as_deref(), Ok("1"));
    // Thousands of expected panics: keep the child's stderr for the figures and failures.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let expected = info
            .payload()
            .downcast_ref::<String>()
            .is_some_and(|m| m.starts_with("soak: "));
        if !expected {
            default_hook(info);
        }
    }));
    let reports = common::Reports::default();
    for i in 0..600 {
        mixed_lifecycle(i, &reports);
    }
    let fds_before = fds();
    let threads_before = threads_settled_to(1);
    let rss_before = rss_kib();
    reports.take();
    let started = std::time::Instant::now();
    const LIFECYCLES: usize = 4_800;
    for i in 0..LIFECYCLES {
        mixed_lifecycle(i, &reports);
    }
    let took = started.elapsed();
    let reports = reports.take();
    // Every kind that goes wrong was reported each time it went wrong.
    let count = |kind| reports.iter().filter(|r| r.kind() == kind).count();
    assert_eq!(
        count(runner::ReportKind::PanicDuringShutdown),
        2 * LIFECYCLES / 6
    );
    // Kind 5 is reported every time. On a multi-thread loop, kind 4's panicking Drop runs
    // on a worker thread during step 4's wait, and may itself outlast a 1 ms timeout (and be
    // reported so); no other kind may ever be.
    let multi_thread_kind_4 = (0..LIFECYCLES)
        .filter(|i| i % 16 == 0 && i % 6 == 4)
        .count();
    let abandoned = count(runner::ReportKind::BlockingAbandoned);
    assert!(
        (LIFECYCLES / 6..=LIFECYCLES / 6 + multi_thread_kind_4).contains(&abandoned),
        "{abandoned} BlockingAbandoned reports"
    );
    let threads_after = threads_settled_to(threads_before);
    let (fds_after, rss_after) = (fds(), rss_kib());
    eprintln!(
        "soak: {LIFECYCLES} lifecycles in {took:?}; RSS {rss_before} KiB -> {rss_after} KiB; \
         fds {fds_before} -> {fds_after}; threads {threads_before} -> {threads_after}"
    );
    assert!(
        fds_after <= fds_before + 5,
        "fds {fds_before} -> {fds_after}"
    );
    assert!(
        threads_after <= threads_before,
        "threads {threads_before} -> {threads_after}"
    );
    assert!(
        rss_after <= rss_before + 8 * 1024,
        "RSS {rss_before} KiB -> {rss_after} KiB"
    );
}

/// Issue 29, defect 1's Runner: a local task and a runner task that ignore their cancel past
/// a short shutdown timeout, each owning a value whose destructor calls
/// `runner::spawn_local`: the local one is dropped after close took the local tasks, the
/// runner one by the runtime's shutdown. Counts the spawned futures' drops in `dropped`.
fn spawn_local_at_close_lifecycle(flavor: Flavor, dropped: &std::sync::Arc<AtomicUsize>) {
    struct SpawnsLocal(std::sync::Arc<AtomicUsize>);
    impl Drop for SpawnsLocal {
        fn drop(&mut self) {
            let guard = common::CountOnDrop(self.0.clone());
            drop(runner::spawn_local(async move {
                let _guard = (guard, std::rc::Rc::new(()));
                std::future::pending::<()>().await
            }));
        }
    }
    let mut r = builder(flavor)
        .shutdown_timeout(Duration::from_millis(5))
        .build();
    let (a, b) = (SpawnsLocal(dropped.clone()), SpawnsLocal(dropped.clone()));
    r.run(async move {
        let (ready, started) = tokio::sync::oneshot::channel();
        runner::spawn_local(async move {
            let _a = a;
            let _ignored = runner::cancelled();
            let _ = ready.send(());
            std::future::pending::<()>().await
        });
        started.await.unwrap();
        let (ready, started) = tokio::sync::oneshot::channel();
        runner::spawn(async move {
            let _b = b;
            let _ignored = runner::cancelled();
            let _ = ready.send(());
            std::future::pending::<()>().await
        });
        started.await.unwrap();
    })
    .unwrap();
    r.close();
}

#[test]
fn runners_whose_close_drops_tasks_that_spawn_local_leave_fds_and_rss_flat() {
    common::watchdog(PARENT_LIMIT);
    common::run_child_within("child_spawn_local_at_close", &[], SOAK_LIMIT);
}

#[test]
#[ignore = "child process of runners_whose_close_drops_tasks_that_spawn_local_leave_fds_and_rss_flat"]
fn child_spawn_local_at_close() {
    common::watchdog(PARENT_LIMIT);
    assert_eq!(std::env::var("RUNNER_CHILD").as_deref(), Ok("1"));
    let dropped = std::sync::Arc::new(AtomicUsize::new(0));
    for flavor in FLAVORS {
        spawn_local_at_close_lifecycle(flavor, &dropped);
    }
    let (fds_before, rss_before) = (fds(), rss_kib());
    const RUNNERS: usize = 300;
    for flavor in FLAVORS {
        dropped.store(0, Ordering::SeqCst);
        for _ in 0..RUNNERS {
            spawn_local_at_close_lifecycle(flavor, &dropped);
        }
        // Each Runner's two late futures were dropped, once.
        assert_eq!(dropped.load(Ordering::SeqCst), 2 * RUNNERS, "{flavor:?}");
        let now = fds();
        assert!(
            now <= fds_before + 5,
            "{flavor:?}: {fds_before} fds before, {now} after {RUNNERS} Runners"
        );
    }
    let rss_after = rss_kib();
    assert!(
        rss_after <= rss_before + 4 * 1024,
        "RSS {rss_before} KiB before, {rss_after} KiB after"
    );
}

/// DESIGN "A Runner and its thread": `close()` on another thread than the one running the
/// Runner's pending `spawn_local` tasks leaks only those tasks, never the runtime or its fds;
/// and only until their thread gets to them (its next `spawn_local`, or its exit).
#[test]
fn runners_closed_away_from_their_pending_local_tasks_leave_fds_flat() {
    common::watchdog(PARENT_LIMIT);
    common::run_child_within("child_closed_away_from_local_tasks", &[], SOAK_LIMIT);
}

#[test]
#[ignore = "child process of runners_closed_away_from_their_pending_local_tasks_leave_fds_flat"]
fn child_closed_away_from_local_tasks() {
    use std::sync::mpsc;
    common::watchdog(PARENT_LIMIT);
    assert_eq!(std::env::var("RUNNER_CHILD").as_deref(), Ok("1"));
    const RUNNERS: usize = 300;
    let dropped = std::sync::Arc::new(AtomicUsize::new(0));
    // One closer thread for all: it gets each Runner, closes it, and says so.
    let (to_close, closing) = mpsc::channel::<runner::Runner>();
    let (closed, is_closed) = mpsc::channel::<()>();
    let closer = std::thread::spawn(move || {
        for mut r in closing {
            r.close();
            closed.send(()).unwrap();
        }
    });
    for flavor in FLAVORS {
        let d = dropped.clone();
        let (to_close, is_closed) = (to_close.clone(), &is_closed);
        let home = move |runners: usize| {
            for _ in 0..runners {
                let mut r = builder(flavor).build();
                let guard = common::CountOnDrop(d.clone());
                r.run(async move {
                    runner::spawn_local(async move {
                        let _guard = (guard, std::rc::Rc::new(()));
                        std::future::pending::<()>().await
                    });
                    runner::spawn(std::future::pending::<()>());
                    tokio::task::yield_now().await;
                })
                .unwrap();
                to_close.send(r).unwrap();
                is_closed.recv().unwrap();
            }
        };
        // Warm-up, then the count, on this (long-lived) thread.
        home(2);
        let before = fds();
        home(RUNNERS);
        let now = fds();
        assert!(
            now <= before + 5,
            "{flavor:?}: {before} fds before, {now} after {RUNNERS} Runners closed away from \
             their local tasks"
        );
        // This thread dropped the orphans of each Runner as it made the next set.
        let so_far = dropped.load(Ordering::SeqCst);
        assert!(
            so_far >= RUNNERS,
            "{flavor:?}: {so_far} local tasks dropped"
        );
    }
    drop(to_close);
    closer.join().unwrap();
}
