//! A closed Runner releases everything it made (DESIGN "Close never leaks, never panics").
//! Every count here is process-wide (/proc/self/fd, /proc/self/task, RSS), so each check runs
//! in a child process of its own, where no other test makes runtimes meanwhile.

mod common;

use common::{builder, Flavor, FLAVORS};

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Resident set size in KiB.
fn rss_kib() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

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
    common::run_child("child_fds_after_pending_runners", &[]);
}

#[test]
#[ignore = "child process of two_hundred_runners_closed_with_pending_tasks_leave_the_fd_count_where_it_was"]
fn child_fds_after_pending_runners() {
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
    common::run_child("child_rss_after_pending_runners", &[]);
}

#[test]
#[ignore = "child process of five_thousand_runners_closed_with_pending_tasks_keep_rss_flat"]
fn child_rss_after_pending_runners() {
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
