//! A Runner whose loop is a tokio `LocalRuntime` (`flavor = "local"`, or a loop factory that
//! builds one): `tokio::task::spawn_local` works in every task, the Runner stays `Send`, and
//! the runtime is only ever touched on the thread that built it.

mod common;

use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use common::{CountOnDrop, Reports};
use runner::{Builder, ReportKind, RunError, Runner};

// `Runner` is `Send` whatever its loop: checked when this file compiles.
const _: fn() = || {
    fn assert_send<T: Send>() {}
    assert_send::<Runner>();
    assert_send::<RunError>();
};

fn local_runtime() -> std::io::Result<tokio::runtime::LocalRuntime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build_local(Default::default())
}

fn local_builder() -> Builder {
    Runner::builder()
        .handle_sigint(false)
        .debug(Some(false))
        .loop_factory(local_runtime)
}

/// Records the thread it is dropped on.
#[derive(Clone, Default)]
struct DroppedOn(Arc<Mutex<Vec<ThreadId>>>);

struct Guard(DroppedOn);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0 .0.lock().unwrap().push(thread::current().id());
    }
}

impl DroppedOn {
    fn guard(&self) -> Guard {
        Guard(self.clone())
    }

    fn threads(&self) -> Vec<ThreadId> {
        self.0.lock().unwrap().clone()
    }
}

/// `#[runner::main(flavor = "local")]` on a fn the test calls: the body, its plain tokio
/// task and its runner tasks all use `tokio::task::spawn_local`, with an `Rc`.
#[runner::main(flavor = "local")]
async fn local_main() -> (u32, usize) {
    let shared = Rc::new(std::cell::Cell::new(0));
    let own = tokio::task::spawn_local({
        let shared = shared.clone();
        async move {
            tokio::task::yield_now().await;
            shared.set(shared.get() + 1);
            shared.get()
        }
    });
    let from_plain = tokio::spawn(async {
        tokio::task::spawn_local(async { *Rc::new(10) })
            .await
            .unwrap()
    });
    let from_runner = runner::spawn(async {
        tokio::task::spawn_local(async { *Rc::new(20) })
            .await
            .unwrap()
    });
    let from_runner_local = runner::spawn_local({
        let rc = Rc::new(3);
        async move {
            tokio::task::spawn_local(async move { 100 + *rc })
                .await
                .unwrap()
        }
    });
    let sum = own.await.unwrap()
        + from_plain.await.unwrap()
        + from_runner.await.unwrap()
        + from_runner_local.await.unwrap();
    (sum, Rc::strong_count(&shared))
}

#[test]
fn runner_main_flavor_local_runs_tokio_spawn_local_in_every_task() {
    common::watchdog(common::TEST_LIMIT);
    let (sum, holders) = local_main();
    assert_eq!(sum, 1 + 10 + 20 + 103);
    assert_eq!(
        holders, 1,
        "the finished task's clone of the Rc was dropped"
    );
}

#[test]
fn a_local_loop_reports_the_current_thread_flavor_and_takes_tokio_spawn_local() {
    common::watchdog(common::TEST_LIMIT);
    let mut runner = local_builder().build();
    let handle = runner.get_loop().unwrap();
    // tokio's `LocalRuntime` is a current-thread runtime with local tasks.
    assert_eq!(
        handle.runtime_flavor(),
        tokio::runtime::RuntimeFlavor::CurrentThread
    );
    let value = runner
        .run(async {
            tokio::task::spawn_local(async { *Rc::new(5) })
                .await
                .unwrap()
        })
        .unwrap();
    assert_eq!(value, 5);
}

#[test]
fn close_cancels_local_tasks_and_drops_them_and_the_runtime_on_the_home_thread() {
    common::watchdog(common::TEST_LIMIT);
    let reports = Reports::default();
    let mut runner = reports.install(local_builder()).debug(Some(true)).build();
    let dropped = DroppedOn::default();
    let cleaned = Arc::new(AtomicUsize::new(0));
    let (runner_guard, tokio_guard, done) = (dropped.guard(), dropped.guard(), cleaned.clone());
    let line = line!() + 4;
    runner
        .run(async move {
            // A runner task that does not observe its cancel: dropped where it stands.
            runner::spawn_local(async move {
                let _guard = runner_guard;
                let _not_send = Rc::new(());
                std::future::pending::<()>().await
            });
            // One that does: it cleans up asynchronously.
            runner::spawn_local(async move {
                let _not_send = Rc::new(());
                runner::cancelled().await;
                tokio::task::yield_now().await;
                done.fetch_add(1, Ordering::SeqCst);
            });
            // A plain tokio local task: dropped with the runtime.
            tokio::task::spawn_local(async move {
                let _guard = tokio_guard;
                let _not_send = Rc::new(());
                std::future::pending::<()>().await
            });
            tokio::task::yield_now().await;
        })
        .unwrap();
    assert!(dropped.threads().is_empty(), "dropped before close");
    runner.close();
    let here = thread::current().id();
    assert_eq!(
        dropped.threads(),
        [here, here],
        "dropped elsewhere, or not at all"
    );
    assert_eq!(cleaned.load(Ordering::SeqCst), 1, "no async cleanup");
    let reports = reports.take();
    let pending: Vec<_> = reports
        .iter()
        .filter(|r| r.kind() == ReportKind::PendingAtClose)
        .collect();
    assert_eq!(pending.len(), 2, "{reports:?}");
    assert!(
        pending
            .iter()
            .any(|r| r.location().is_some_and(|l| l.line() == line)),
        "{reports:?}"
    );
}

#[test]
fn close_drops_a_local_task_that_ignores_its_cancel_at_the_shutdown_timeout() {
    common::watchdog(common::TEST_LIMIT);
    let reports = Reports::default();
    let mut runner = reports
        .install(local_builder())
        .shutdown_timeout(Duration::from_millis(200))
        .build();
    let dropped = DroppedOn::default();
    let guard = dropped.guard();
    runner
        .run(async move {
            runner::spawn_local(async move {
                let _guard = guard;
                runner::cancelled().await;
                std::future::pending::<()>().await // ignores it
            });
            tokio::task::yield_now().await;
        })
        .unwrap();
    let started = Instant::now();
    runner.close();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(dropped.threads(), [thread::current().id()]);
    let reports = reports.take();
    assert!(
        reports
            .iter()
            .any(|r| r.kind() == ReportKind::ShutdownTimeout),
        "{reports:?}"
    );
}

#[test]
fn on_another_thread_run_and_get_loop_refuse_and_the_runner_works_again_at_home() {
    common::watchdog(common::TEST_LIMIT);
    let mut runner = local_builder().build();
    assert_eq!(runner.run(async { 1 }).unwrap(), 1);
    let home = thread::current().id();
    let mut runner = thread::spawn(move || {
        let here = thread::current().id();
        let err = runner.run(async { 2 }).unwrap_err();
        assert!(
            matches!(err, RunError::WrongThread { home: h, here: t } if h == home && t == here),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "this Runner is bound to thread {home:?} (its loop is a tokio LocalRuntime \
                 built there, or spawn_local tasks of it are pending there); it cannot run on \
                 thread {here:?}: run it on that thread"
            )
        );
        let err = runner.get_loop().unwrap_err();
        assert!(matches!(err, RunError::WrongThread { .. }), "{err:?}");
        assert!(!runner.is_closed());
        runner
    })
    .join()
    .unwrap();
    assert_eq!(runner.run(async { 3 }).unwrap(), 3);
    runner.close();
}

/// What became of a Runner with a local loop that `f` got on another thread (see
/// [`leave_home`]).
struct LeftHome {
    /// The Runner's home thread.
    home: ThreadId,
    /// The reports and the threads its tasks were dropped on, once `f` was done...
    reports: Vec<runner::Report>,
    dropped: Vec<ThreadId>,
    /// ... and once its home thread had exited.
    reports_at_exit: Vec<runner::Report>,
    dropped_at_exit: Vec<ThreadId>,
    finalized: usize,
}

/// On a home thread of its own: a Runner whose local loop has a pending runner task and a
/// pending tokio task, both holding a guard, and an `at_close` finalizer; `f` gets it on
/// another thread, then the home thread exits.
fn leave_home(f: impl FnOnce(Runner) + Send + 'static) -> LeftHome {
    let reports = Reports::default();
    let dropped = DroppedOn::default();
    let finalized = Arc::new(AtomicUsize::new(0));
    let (left, gone) = std::sync::mpsc::channel();
    let (go, exit) = std::sync::mpsc::channel::<()>();
    let (sink, d, fin) = (reports.clone(), dropped.clone(), finalized.clone());
    let home = thread::spawn(move || {
        let mut runner = sink.install(local_builder()).build();
        let (a, b) = (d.guard(), d.guard());
        runner
            .run(async move {
                runner::at_close(move || async move {
                    fin.fetch_add(1, Ordering::SeqCst);
                });
                runner::spawn_local(async move {
                    let _guard = (a, Rc::new(()));
                    std::future::pending::<()>().await
                });
                tokio::task::spawn_local(async move {
                    let _guard = (b, Rc::new(()));
                    std::future::pending::<()>().await
                });
                tokio::task::yield_now().await;
            })
            .unwrap();
        thread::spawn(move || f(runner)).join().unwrap();
        left.send(()).unwrap();
        exit.recv().unwrap();
        thread::current().id()
    });
    gone.recv().unwrap();
    let (reports_now, dropped_now) = (reports.take(), dropped.threads());
    go.send(()).unwrap();
    let home = home.join().unwrap();
    LeftHome {
        home,
        reports: reports_now,
        dropped: dropped_now,
        reports_at_exit: reports.take(),
        dropped_at_exit: dropped.threads(),
        finalized: finalized.load(Ordering::SeqCst),
    }
}

fn assert_left_to_its_home_thread(left: &LeftHome) {
    assert!(left.dropped.is_empty(), "dropped on {:?}", left.dropped);
    let reports = &left.reports;
    let handed: Vec<_> = reports
        .iter()
        .filter(|r| {
            r.message()
                .contains("its loop is a tokio LocalRuntime bound to thread")
        })
        .collect();
    assert_eq!(handed.len(), 1, "{reports:?}");
    assert_eq!(handed[0].kind(), ReportKind::ClosedAwayFromItsLoop);
    assert!(
        handed[0]
            .message()
            .contains("the close is left to that thread, which does it when it exits"),
        "{reports:?}"
    );
    assert_eq!(left.finalized, 1, "the home thread's exit ran no finalizer");
    assert_eq!(
        left.dropped_at_exit,
        [left.home, left.home],
        "the tasks were not dropped at home when it exited"
    );
    assert!(
        left.reports_at_exit.is_empty(),
        "{:?}",
        left.reports_at_exit
    );
}

#[test]
fn closed_on_another_thread_a_local_loop_is_closed_by_its_home_thread_at_its_exit() {
    common::watchdog(common::TEST_LIMIT);
    let left = leave_home(|mut runner| {
        runner.close();
        assert!(runner.is_closed());
        assert!(matches!(runner.run(async {}), Err(RunError::Closed)));
        runner.close(); // a second close does nothing
    });
    assert_left_to_its_home_thread(&left);
}

#[test]
fn dropped_on_another_thread_a_local_loop_is_closed_by_its_home_thread_at_its_exit() {
    common::watchdog(common::TEST_LIMIT);
    let left = leave_home(drop);
    assert_left_to_its_home_thread(&left);
}

#[test]
fn a_runner_moved_before_its_first_run_builds_its_local_loop_where_it_first_runs() {
    common::watchdog(common::TEST_LIMIT);
    let runner = local_builder().build();
    let mut runner = thread::spawn(move || {
        let mut runner = runner;
        let value = runner
            .run(async { tokio::task::spawn_local(async { 4 }).await.unwrap() })
            .unwrap();
        assert_eq!(value, 4);
        runner
    })
    .join()
    .unwrap();
    // Its home is that thread now, and this one is foreign to it.
    assert!(matches!(
        runner.run(async {}),
        Err(RunError::WrongThread { .. })
    ));
    thread::spawn(move || runner.close()).join().unwrap();
}

#[test]
fn a_local_loop_closed_inside_spawn_blocking_waits_for_its_tasks_there() {
    common::watchdog(common::TEST_LIMIT);
    let reports = Reports::default();
    let cleaned = Arc::new(AtomicUsize::new(0));
    let other = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (sink, done) = (reports.clone(), cleaned.clone());
    let job = other.spawn_blocking(move || {
        // A blocking thread: a tokio context where blocking is allowed.
        let mut runner = sink.install(local_builder()).build();
        runner
            .run(async move {
                runner::spawn_local(async move {
                    let _not_send = Rc::new(());
                    runner::cancelled().await;
                    tokio::task::yield_now().await;
                    done.fetch_add(1, Ordering::SeqCst);
                });
                tokio::task::yield_now().await;
            })
            .unwrap();
        runner.close();
    });
    other.block_on(job).unwrap();
    assert_eq!(cleaned.load(Ordering::SeqCst), 1, "no async cleanup");
    let reports = reports.take();
    assert!(reports.is_empty(), "{reports:?}");
}

#[test]
fn spawn_blocking_on_a_local_loop_is_waited_for_at_close() {
    common::watchdog(common::TEST_LIMIT);
    let finished = Arc::new(AtomicUsize::new(0));
    let mut runner = local_builder().build();
    let counter = CountOnDrop(finished.clone());
    runner
        .run(async move {
            drop(runner::spawn_blocking(move || {
                // sleep: blocking work that close() must wait for.
                thread::sleep(Duration::from_millis(100));
                drop(counter);
            }));
        })
        .unwrap();
    runner.close();
    assert_eq!(finished.load(Ordering::SeqCst), 1);
}

#[test]
fn a_loop_factory_may_name_its_local_runtime() {
    common::watchdog(common::TEST_LIMIT);
    let mut runner = Runner::builder()
        .handle_sigint(false)
        .loop_factory(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .name("local-loop")
                .build_local(Default::default())
        })
        .build();
    assert_eq!(runner.get_loop().unwrap().name(), Some("local-loop"));
    let seen = runner
        .run(async { tokio::runtime::Handle::current().name().map(str::to_owned) })
        .unwrap();
    assert_eq!(seen.as_deref(), Some("local-loop"));
}

#[test]
fn a_failing_local_loop_factory_is_a_loop_factory_error() {
    common::watchdog(common::TEST_LIMIT);
    let mut runner = Runner::builder()
        .handle_sigint(false)
        .loop_factory(|| -> std::io::Result<tokio::runtime::LocalRuntime> {
            Err(std::io::Error::other("no local loop today"))
        })
        .build();
    let err = runner.run(async {}).unwrap_err();
    assert!(matches!(err, RunError::LoopFactory(_)), "{err:?}");
    assert!(err.to_string().contains("no local loop today"), "{err}");
}
