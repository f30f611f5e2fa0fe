//! Everything that goes wrong at close is reported, and `close()` never panics (DESIGN
//! "Close never leaks, never panics").

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{builder, PanicOnDrop, Reports, FLAVORS};
use runner::{ReportKind, RunError, Runner};

fn foreign_current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_cancel_ignoring_task_whose_drop_panics_when_the_runtime_drops_it_is_reported() {
    common::watchdog(common::TEST_LIMIT);
    for flavor in FLAVORS {
        let reports = Reports::default();
        let mut r = reports
            .install(builder(flavor))
            .shutdown_timeout(Duration::from_millis(200))
            .build();
        r.run(async {
            let (started, is_started) = tokio::sync::oneshot::channel();
            runner::spawn(async move {
                // Observing, so close() does not drop it; never reacting, so it outlives step 1
                // and the runtime drops it at step 4.
                let _observing = runner::cancelled();
                let _bomb = PanicOnDrop("cleanup failed at step 4");
                started.send(()).unwrap();
                std::future::pending::<()>().await
            });
            is_started.await.unwrap();
        })
        .unwrap();
        r.close();
        let reports = reports.take();
        let dropped = reports
            .iter()
            .find(|r| r.kind() == ReportKind::PanicDuringShutdown)
            .unwrap_or_else(|| panic!("{flavor:?}: no panic report in {reports:?}"));
        assert_eq!(
            dropped.panic(),
            Some("cleanup failed at step 4"),
            "{flavor:?}"
        );
        assert!(
            dropped
                .message()
                .contains("<task spawned at tests/close_faults.rs:"),
            "{flavor:?}: {dropped}"
        );
    }
}

#[test]
fn plain_tokio_spawn_blocking_still_running_at_the_timeout_is_reported_and_close_stays_bounded() {
    common::watchdog(common::TEST_LIMIT);
    for flavor in FLAVORS {
        let reports = Reports::default();
        let mut r = reports
            .install(builder(flavor))
            .shutdown_timeout(Duration::from_millis(200))
            .build();
        r.run(async {
            drop(tokio::task::spawn_blocking(|| {
                // sleep: blocking work that outlasts the 0.2 s shutdown timeout.
                std::thread::sleep(Duration::from_secs(2))
            }));
        })
        .unwrap();
        let started = Instant::now();
        r.close();
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(5),
            "{flavor:?}: close took {took:?}"
        );
        let reports = reports.take();
        let abandoned: Vec<_> = reports
            .iter()
            .filter(|r| r.kind() == ReportKind::BlockingAbandoned)
            .collect();
        assert_eq!(abandoned.len(), 1, "{flavor:?}: {reports:?}");
        assert!(
            abandoned[0]
                .message()
                .contains("tokio::task::spawn_blocking")
                && abandoned[0].message().contains("200ms"),
            "{flavor:?}: {}",
            abandoned[0]
        );
    }
}

#[test]
fn blocking_work_that_ends_within_the_timeout_is_not_reported() {
    common::watchdog(common::TEST_LIMIT);
    for flavor in FLAVORS {
        let reports = Reports::default();
        let mut r = reports
            .install(builder(flavor))
            .shutdown_timeout(Duration::from_secs(10))
            .build();
        r.run(async {
            drop(tokio::task::spawn_blocking(|| {
                // sleep: blocking work that ends well within the 10 s timeout.
                std::thread::sleep(Duration::from_millis(50))
            }));
            tokio::fs::metadata(".").await.unwrap();
        })
        .unwrap();
        r.close();
        assert!(reports.take().is_empty(), "{flavor:?}");
    }
}

#[test]
fn close_inside_a_foreign_block_on_returns_without_panic() {
    common::watchdog(common::TEST_LIMIT);
    let reports = Reports::default();
    let mut r = reports
        .install(Runner::builder().handle_sigint(false))
        .build();
    r.run(async {
        runner::spawn(std::future::pending::<()>());
    })
    .unwrap();
    foreign_current_thread().block_on(async move {
        r.close();
        assert!(r.is_closed());
    });
    let reports = reports.take();
    assert!(
        reports
            .iter()
            .any(|r| r.message().contains("from inside a running runtime")),
        "{reports:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_dropped_inside_tokio_main_does_not_panic() {
    common::watchdog(common::TEST_LIMIT);
    let mut r = Runner::builder().handle_sigint(false).build();
    r.get_loop().unwrap();
    drop(r);
    let task = tokio::spawn(async {
        let mut r = Runner::builder().handle_sigint(false).build();
        r.get_loop().unwrap();
        r.close();
        r.is_closed()
    });
    assert!(task.await.unwrap());
}

#[test]
fn run_inside_a_foreign_block_on_returns_inside_tokio_runtime() {
    common::watchdog(common::TEST_LIMIT);
    foreign_current_thread().block_on(async {
        let mut r = Runner::builder().handle_sigint(false).build();
        let err = r.run(async { 1 }).unwrap_err();
        assert!(matches!(err, RunError::InsideTokioRuntime), "{err:?}");
        // Not "from a running runner": no Runner runs here.
        assert!(
            err.to_string()
                .starts_with("Runner::run() cannot be called inside a tokio runtime"),
            "{err}"
        );
        let err = runner::run(async { 1 }).unwrap_err();
        assert!(matches!(err, RunError::InsideTokioRuntime), "{err:?}");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_inside_a_tokio_task_returns_inside_tokio_runtime() {
    common::watchdog(common::TEST_LIMIT);
    let nested = tokio::spawn(async { runner::run(async { 1 }) });
    assert!(matches!(
        nested.await.unwrap(),
        Err(RunError::InsideTokioRuntime)
    ));
}

#[tokio::main(flavor = "current_thread")]
async fn a_tokio_main(runs: fn() -> Result<u8, RunError>) -> Result<u8, RunError> {
    runs()
}

#[test]
fn run_inside_tokio_main_says_inside_a_tokio_runtime_not_a_running_runner() {
    common::watchdog(common::TEST_LIMIT);
    let free_fn = a_tokio_main(|| runner::run(async { 1 })).unwrap_err();
    let method = a_tokio_main(|| Runner::new().run(async { 2 })).unwrap_err();
    for err in [free_fn, method] {
        assert!(matches!(err, RunError::InsideTokioRuntime), "{err:?}");
        assert!(err.to_string().contains("#[tokio::main]"), "{err}");
        assert!(!err.to_string().contains("running runner"), "{err}");
    }
}

/// A run whose close must wait: an observing task that finishes its cleanup asynchronously.
fn run_with_async_cleanup(reports: &Reports) -> bool {
    let cleaned = Arc::new(AtomicBool::new(false));
    let flag = cleaned.clone();
    // Debug mode off whatever RUNNER_DEBUG says: its pending-task report would be a report.
    let mut r = reports
        .install(Runner::builder().handle_sigint(false).debug(Some(false)))
        .build();
    r.run(async move {
        runner::spawn(async move {
            runner::cancelled().await;
            tokio::task::yield_now().await;
            flag.store(true, Ordering::SeqCst);
        });
        tokio::task::yield_now().await;
    })
    .unwrap();
    r.close();
    cleaned.load(Ordering::SeqCst)
}

#[test]
fn runner_run_inside_tokio_spawn_blocking_closes_normally_without_a_report() {
    common::watchdog(common::TEST_LIMIT);
    let reports = Reports::default();
    let sink = reports.clone();
    let cleaned = foreign_current_thread()
        .block_on(async {
            tokio::task::spawn_blocking(move || run_with_async_cleanup(&sink)).await
        })
        .unwrap();
    assert!(cleaned, "close() waited for the task's cleanup");
    assert!(reports.take().is_empty());
}

#[test]
fn runner_run_inside_runner_spawn_blocking_closes_normally_without_a_report() {
    common::watchdog(common::TEST_LIMIT);
    let reports = Reports::default();
    let sink = reports.clone();
    let cleaned = runner::run(async move {
        runner::spawn_blocking(move || run_with_async_cleanup(&sink))
            .await
            .unwrap()
    })
    .unwrap();
    assert!(cleaned, "close() waited for the task's cleanup");
    assert!(reports.take().is_empty());
}

#[test]
fn close_returns_when_the_handler_panics_with_a_payload_that_panics_on_drop() {
    common::watchdog(common::TEST_LIMIT);
    struct Bomb;
    impl Drop for Bomb {
        fn drop(&mut self) {
            panic!("the payload's drop panicked")
        }
    }
    let mut r = Runner::builder()
        .handle_sigint(false)
        .exception_handler(|_: &runner::Report| std::panic::panic_any(Bomb))
        .build();
    r.run(async {
        runner::at_close(|| async { panic!("finalizer failed") });
    })
    .unwrap();
    r.close();
    assert!(r.is_closed());
}

#[test]
fn runner_spawn_works_from_a_plain_tokio_task_on_both_flavors() {
    common::watchdog(common::TEST_LIMIT);
    for flavor in FLAVORS {
        let mut r = builder(flavor).build();
        let value = r
            .run(async {
                let plain = tokio::spawn(async { runner::spawn(async { 7 }).await.unwrap() });
                plain.await.unwrap()
            })
            .unwrap();
        assert_eq!(value, 7, "{flavor:?}");
    }
}
