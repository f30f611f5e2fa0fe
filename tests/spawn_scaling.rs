//! What issue 31 changed, checked from the outside: `runner::spawn` on a multi-thread loop no
//! longer takes one lock or touches one count for all workers (a sharded registry, an
//! uncounted reference to the Runner's state, context copies that count on the spawner's own
//! map), and every guarantee stays (DESIGN "Proven concurrency", "Close never leaks, never
//! panics", "Contexts", "Debug mode"):
//! - `close()` cancels every task pending in any shard, spawned from any worker, plain tokio
//!   task or blocking job, before the finalizers run, and debug mode names each by its spawn
//!   location;
//! - a task that tokio drops after `close()` returned (a close inside a foreign runtime's
//!   poll: `shutdown_background`) still reaches its Runner's state, which is freed after it,
//!   fds and all;
//! - context values follow spawns across workers and generations, and are dropped once, with
//!   the last context holding them.

mod common;

use std::panic::Location;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use common::{CountOnDrop, Reports};
use runner::{ContextVar, ReportKind, Runner};

fn multi_thread(workers: usize) -> runner::Builder {
    Runner::builder()
        .handle_sigint(false)
        .debug(Some(false))
        .loop_factory(move || {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .enable_all()
                .build()
        })
}

/// Spawns `n` tasks that stay pending (each holding `drops`), and `n` that end at once,
/// awaited: the shards fill and empty under each other's feet. Returns where the pending ones
/// were spawned.
async fn spawn_mix(n: usize, drops: &Arc<AtomicUsize>) -> &'static Location<'static> {
    let mut at = None;
    for _ in 0..n {
        let held = CountOnDrop(drops.clone());
        let task = runner::spawn(async move {
            let _held = held;
            std::future::pending::<()>().await
        });
        at = Some(task.location());
        drop(task);
        runner::spawn(async { tokio::task::yield_now().await })
            .await
            .unwrap();
    }
    at.expect("n > 0")
}

/// `close()` finds every pending task, whichever worker, plain task or blocking job spawned
/// it (and so whichever shard holds it), cancels it, and sees it ended before the finalizers
/// run; debug mode reports each by where it was spawned.
#[test]
fn close_cancels_every_task_spawned_from_every_worker_at_once() {
    common::watchdog(Duration::from_secs(60));
    for workers in [1, 2, 4] {
        const EACH: usize = 200;
        let reports = Reports::default();
        let mut r = reports
            .install(multi_thread(workers).debug(Some(true)))
            .build();
        let drops = Arc::new(AtomicUsize::new(0));
        let seen_by_finalizer = Arc::new(AtomicUsize::new(usize::MAX));
        let spawners = workers * 2;
        let locations = r
            .run({
                let (drops, seen) = (drops.clone(), seen_by_finalizer.clone());
                async move {
                    runner::at_close({
                        let (drops, seen) = (drops.clone(), seen.clone());
                        move || async move { seen.store(drops.load(Ordering::SeqCst), Ordering::SeqCst) }
                    });
                    let start = Arc::new(tokio::sync::Barrier::new(spawners + 2));
                    let mut spawned = Vec::new();
                    for _ in 0..spawners {
                        let (start, drops) = (start.clone(), drops.clone());
                        spawned.push(runner::spawn(async move {
                            start.wait().await;
                            spawn_mix(EACH, &drops).await
                        }));
                    }
                    // A plain tokio task and a blocking job spawn at the same time.
                    let plain = tokio::spawn({
                        let (start, drops) = (start.clone(), drops.clone());
                        async move {
                            start.wait().await;
                            spawn_mix(EACH, &drops).await
                        }
                    });
                    let blocking = runner::spawn_blocking({
                        let drops = drops.clone();
                        move || {
                            let mut at = None;
                            for _ in 0..EACH {
                                let held = CountOnDrop(drops.clone());
                                let task = runner::spawn(async move {
                                    let _held = held;
                                    std::future::pending::<()>().await
                                });
                                at = Some(task.location());
                            }
                            at.unwrap()
                        }
                    });
                    start.wait().await;
                    let mut locations = Vec::new();
                    for task in spawned {
                        locations.push(task.await.unwrap());
                    }
                    locations.push(plain.await.unwrap());
                    locations.push(blocking.await.unwrap());
                    assert_eq!(drops.load(Ordering::SeqCst), 0);
                    locations
                }
            })
            .unwrap();
        r.close();
        let pending = (spawners + 2) * EACH;
        assert_eq!(
            seen_by_finalizer.load(Ordering::SeqCst),
            pending,
            "{workers} workers: tasks not ended when the finalizers ran"
        );
        assert_eq!(drops.load(Ordering::SeqCst), pending);
        let named = reports
            .take()
            .into_iter()
            .filter(|r| r.kind() == ReportKind::PendingAtClose)
            .filter(|r| locations.iter().any(|at| r.location() == Some(*at)))
            .count();
        assert_eq!(
            named, pending,
            "{workers} workers: pending tasks named at close"
        );
    }
}

/// One Runner whose task tokio drops after `close()` returned: a close inside a foreign
/// runtime's poll cannot wait, so it shuts the runtime down in the background and returns,
/// the task still in a poll on a worker. Its destructor then spawns (registered in a shard of
/// a Runner that let go, and dropped at once by the shut-down runtime) and reads the debug
/// flag, which must be its Runner's.
fn task_outliving_close() {
    let reports = Reports::default();
    let mut r = reports.install(multi_thread(2).debug(Some(true))).build();
    let (started, is_started) = mpsc::channel();
    let (release, released) = mpsc::channel::<()>();
    let (dropped, is_dropped) = mpsc::channel();
    r.run(async move {
        /// Runs in the task's own scope when tokio drops it, after `close()` returned.
        struct Destructor(mpsc::Sender<bool>);
        impl Drop for Destructor {
            fn drop(&mut self) {
                // A spawn on the shut-down runtime: registered, and dropped at once.
                drop(runner::spawn(async {}));
                let _ = self.0.send(runner::debug_enabled());
            }
        }
        drop(runner::spawn(async move {
            let _destructor = Destructor(dropped);
            std::future::poll_fn(move |_| {
                let _ = started.send(());
                // Blocks this worker until the test lets go, after `close()` returned.
                let _ = released.recv();
                std::task::Poll::<()>::Pending
            })
            .await
        }));
    })
    .unwrap();
    is_started.recv().unwrap();
    // A close inside a foreign runtime's poll cannot wait: it shuts the runtime down in
    // the background and returns, the task still in its poll on a worker.
    let foreign = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    foreign.block_on(async { r.close() });
    drop(foreign);
    assert!(r.is_closed());
    release.send(()).unwrap();
    let debug = is_dropped.recv_timeout(Duration::from_secs(10));
    assert_eq!(
        debug,
        Ok(true),
        "the task dropped after close() did not see its Runner"
    );
    assert!(reports
        .take()
        .iter()
        .any(|r| r.kind() == ReportKind::ClosedInsideRuntime));
}

/// A task that tokio drops after `close()` returned still reaches its Runner's state (its
/// destructor spawns and reads the debug flag; its wrapper leaves the registry). In process,
/// so that `scripts/memcheck.sh` sees every access (one to the freed state is an invalid read
/// there).
#[test]
fn a_task_dropped_after_close_returned_reaches_its_runner() {
    common::watchdog(Duration::from_secs(60));
    for _ in 0..5 {
        task_outliving_close();
    }
}

/// ... and the state, with the runtime's fds, is freed once that task is gone. In a child
/// process: fds are process-wide.
#[test]
fn a_runner_whose_task_outlived_close_is_freed_after_that_task() {
    common::watchdog(Duration::from_secs(120));
    common::run_child_within(
        "child_a_runner_whose_task_outlived_close_is_freed_after_that_task",
        &[],
        Duration::from_secs(100),
    );
}

#[test]
#[ignore = "child process of a_runner_whose_task_outlived_close_is_freed_after_that_task"]
fn child_a_runner_whose_task_outlived_close_is_freed_after_that_task() {
    common::watchdog(Duration::from_secs(100));
    assert_eq!(std::env::var("RUNNER_CHILD").as_deref(), Ok("1"));
    let fds = || std::fs::read_dir("/proc/self/fd").unwrap().count();
    let threads = || std::fs::read_dir("/proc/self/task").unwrap().count();
    let lifecycle = task_outliving_close;
    // What is made once per process first (the runtime table, tokio's statics).
    lifecycle();
    std::thread::sleep(Duration::from_millis(100)); // the workers' exit: nothing to wait on
    let (fds_before, threads_before) = (fds(), threads());
    for _ in 0..30 {
        lifecycle();
    }
    // The runtimes' threads exit on their own after the background shutdown.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while threads() > threads_before && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10)); // polled: no handle to the threads
    }
    let (fds_after, threads_after) = (fds(), threads());
    assert!(
        threads_after <= threads_before,
        "threads {threads_before} -> {threads_after}"
    );
    assert!(
        fds_after <= fds_before,
        "30 Runners whose last task ended after close(): fds {fds_before} -> {fds_after} (the \
         state, holding the runtime's drivers, was never freed)"
    );
}

/// A value whose drops are counted.
struct Counted(Arc<AtomicUsize>, u32);

static VALUE: ContextVar<Arc<Counted>> = ContextVar::new("value");

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Context values follow spawns across workers and generations (a spawner's children see
/// what it saw when it was spawned, not what its own spawner set later), and a value is
/// dropped exactly once, when the last context holding it (through any copy) goes.
#[test]
fn context_values_follow_spawns_across_workers_and_drop_once() {
    common::watchdog(Duration::from_secs(60));
    let mut r = multi_thread(2).build();
    let drops = Arc::new(AtomicUsize::new(0));
    r.run({
        let drops = drops.clone();
        async move {
            VALUE.set(Arc::new(Counted(drops.clone(), 1)));
            let (go, wait) = tokio::sync::watch::channel(false);
            let spawners: Vec<_> = (0..4)
                .map(|_| {
                    let mut wait = wait.clone();
                    runner::spawn(async move {
                        let mut seen = Vec::new();
                        for _ in 0..50 {
                            let child = runner::spawn(async {
                                let grandchild = runner::spawn(async { VALUE.get().unwrap().1 });
                                (VALUE.get().unwrap().1, grandchild.await.unwrap())
                            });
                            seen.push(child.await.unwrap());
                        }
                        // Still the value of when this task was spawned, after the main task
                        // moved on.
                        wait.wait_for(|go| *go).await.unwrap();
                        seen.push(
                            runner::spawn(async { (VALUE.get().unwrap().1, 0) })
                                .await
                                .unwrap(),
                        );
                        seen
                    })
                })
                .collect();
            tokio::task::yield_now().await;
            VALUE.set(Arc::new(Counted(drops.clone(), 2)));
            assert_eq!(
                drops.load(Ordering::SeqCst),
                0,
                "value 1 is still held by the tasks"
            );
            go.send(true).unwrap();
            for spawner in spawners {
                let seen = spawner.await.unwrap();
                assert!(seen[..50].iter().all(|pair| *pair == (1, 1)), "{seen:?}");
                assert_eq!(seen[50], (1, 0));
            }
            // Every task that held value 1 has ended (the spawners' contexts go with them).
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            assert_eq!(drops.load(Ordering::SeqCst), 1, "value 1 dropped once");
            assert_eq!(VALUE.get().unwrap().1, 2);
        }
    })
    .unwrap();
    assert_eq!(
        drops.load(Ordering::SeqCst),
        1,
        "value 2 lives on in the Runner's context"
    );
    r.close();
    assert_eq!(
        drops.load(Ordering::SeqCst),
        2,
        "value 2 dropped once, with the Runner's context, at close"
    );
}

/// A `close()` on another thread than a local loop's hands the close to the loop's home
/// thread, which does it at its exit, after the Runner let go of its state: that late close's
/// pass takes tasks whose references count already, and the state (with the loop's fds) is
/// still freed once they are gone. In a child process: fds are process-wide.
#[test]
fn a_close_handed_to_a_local_loops_home_thread_frees_the_runner_after_it() {
    common::watchdog(Duration::from_secs(120));
    common::run_child_within(
        "child_a_close_handed_to_a_local_loops_home_thread_frees_the_runner_after_it",
        &[],
        Duration::from_secs(100),
    );
}

#[test]
#[ignore = "child process of a_close_handed_to_a_local_loops_home_thread_frees_the_runner_after_it"]
fn child_a_close_handed_to_a_local_loops_home_thread_frees_the_runner_after_it() {
    common::watchdog(Duration::from_secs(100));
    assert_eq!(std::env::var("RUNNER_CHILD").as_deref(), Ok("1"));
    let fds = || std::fs::read_dir("/proc/self/fd").unwrap().count();
    let lifecycle = || {
        let drops = Arc::new(AtomicUsize::new(0));
        let seen = drops.clone();
        std::thread::spawn(move || {
            let mut r = Runner::builder()
                .handle_sigint(false)
                .debug(Some(false))
                .loop_factory(|| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build_local(Default::default())
                })
                .build();
            r.run(async move {
                for _ in 0..3 {
                    let held = CountOnDrop(drops.clone());
                    drop(runner::spawn_local(async move {
                        let _held = held;
                        std::future::pending::<()>().await
                    }));
                    let held = CountOnDrop(drops.clone());
                    drop(runner::spawn(async move {
                        let _held = held;
                        std::future::pending::<()>().await
                    }));
                }
                tokio::task::yield_now().await;
            })
            .unwrap();
            // Closed elsewhere: the close of the loop is left to this thread's exit.
            std::thread::spawn(move || r.close()).join().unwrap();
        })
        .join()
        .unwrap();
        assert_eq!(
            seen.load(Ordering::SeqCst),
            6,
            "the home thread's close dropped them"
        );
    };
    lifecycle();
    let before = fds();
    for _ in 0..30 {
        lifecycle();
    }
    let after = fds();
    assert!(
        after <= before,
        "30 local loops closed by their home threads after their Runners let go: fds \
         {before} -> {after} (the Runners' states, holding the loops' drivers, were never freed)"
    );
}
