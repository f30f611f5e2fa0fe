//! Everything that goes wrong at close is reported, and `close()` never panics (DESIGN
//! "Close never leaks, never panics").

mod common;

use std::time::{Duration, Instant};

use common::{builder, PanicOnDrop, Reports, FLAVORS};
use runner::{ReportKind, Runner};

#[test]
fn a_cancel_ignoring_task_whose_drop_panics_when_the_runtime_drops_it_is_reported() {
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
    for flavor in FLAVORS {
        let reports = Reports::default();
        let mut r = reports
            .install(builder(flavor))
            .shutdown_timeout(Duration::from_millis(200))
            .build();
        r.run(async {
            drop(tokio::task::spawn_blocking(|| {
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
    for flavor in FLAVORS {
        let reports = Reports::default();
        let mut r = reports
            .install(builder(flavor))
            .shutdown_timeout(Duration::from_secs(10))
            .build();
        r.run(async {
            drop(tokio::task::spawn_blocking(|| {
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
fn close_returns_when_the_handler_panics_with_a_payload_that_panics_on_drop() {
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
