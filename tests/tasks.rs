//! Tasks, cancellation and close(), on current-thread and multi-thread loops.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{builder, CountOnDrop, PanicOnDrop, Reports, FLAVORS};
use runner::{ReportKind, TaskError};

#[test]
fn run_cancels_hanging_tasks_and_still_returns_its_value() {
    // test_asyncio_run_cancels_hanging_tasks: `runner::run` itself, not a Runner closed by
    // hand. One leftover task is dropped at its await point; the other observes the cancel
    // and finishes an async cleanup before `run` returns.
    common::watchdog(common::TEST_LIMIT);
    let dropped = Arc::new(AtomicUsize::new(0));
    let cleaned = Arc::new(AtomicUsize::new(0));
    let (d, c) = (dropped.clone(), cleaned.clone());
    let out = runner::run(async move {
        let (parked, is_parked) = tokio::sync::oneshot::channel();
        let (observing, is_observing) = tokio::sync::oneshot::channel();
        runner::spawn(async move {
            let _guard = CountOnDrop(d);
            parked.send(()).unwrap();
            // sleep: stands for work that outlasts the run; `close()` must end it.
            tokio::time::sleep(Duration::from_secs(3600)).await;
        });
        runner::spawn(async move {
            let cancelled = runner::cancelled();
            observing.send(()).unwrap();
            cancelled.await;
            tokio::task::yield_now().await;
            c.fetch_add(1, Ordering::SeqCst);
        });
        is_parked.await.unwrap();
        is_observing.await.unwrap();
        "value"
    });
    assert_eq!(out.unwrap(), "value");
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        1,
        "the hanging task was not dropped"
    );
    assert_eq!(
        cleaned.load(Ordering::SeqCst),
        1,
        "the observing task did not clean up"
    );
}

#[test]
fn close_cancels_hanging_tasks_on_both_flavors() {
    common::watchdog(common::TEST_LIMIT);
    for flavor in FLAVORS {
        let dropped = Arc::new(AtomicUsize::new(0));
        let d = dropped.clone();
        let mut runner = builder(flavor).build();
        let out = runner
            .run(async move {
                let guard = CountOnDrop(d);
                runner::spawn(async move {
                    let _guard = guard;
                    // sleep: stands for work that outlasts the run; `close()` must end it.
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                });
                tokio::task::yield_now().await;
                "value"
            })
            .unwrap();
        runner.close();
        assert_eq!(out, "value");
        assert_eq!(dropped.load(Ordering::SeqCst), 1, "{flavor:?}");
    }
}

#[test]
fn a_hanging_task_whose_cleanup_panics_is_reported_with_its_spawn_location() {
    common::watchdog(common::TEST_LIMIT);
    // test_asyncio_run_reports_hanging_tasks_errors
    for flavor in FLAVORS {
        let reports = Reports::default();
        let mut runner = reports.install(builder(flavor)).build();
        let line = line!() + 4;
        let out = runner
            .run(async {
                let guard = PanicOnDrop("cleanup failed");
                runner::spawn(async move {
                    let _guard = guard;
                    std::future::pending::<()>().await
                });
                1
            })
            .unwrap();
        runner.close();
        assert_eq!(out, 1);
        let reports = reports.take();
        assert_eq!(reports.len(), 1, "{flavor:?}: {reports:?}");
        let report = &reports[0];
        assert_eq!(report.kind(), ReportKind::PanicDuringShutdown);
        assert!(report
            .message()
            .contains("unhandled panic during Runner shutdown"));
        assert_eq!(report.panic(), Some("cleanup failed"));
        let location = report.location().unwrap();
        assert_eq!((location.file(), location.line()), ("tests/tasks.rs", line));
        let shown = format!("{report} {report:?}");
        assert!(shown.contains(&format!("tests/tasks.rs:{line}")), "{shown}");
    }
}

#[test]
fn a_finalizer_may_return_a_tokio_future_built_on_the_spot() {
    common::watchdog(common::TEST_LIMIT);
    // `at_close(|| tokio::time::sleep(..))`: the closure itself needs the runtime's context.
    for flavor in FLAVORS {
        let reports = Reports::default();
        let mut runner = reports.install(builder(flavor)).build();
        runner
            .run(async {
                // sleep: the tokio future under test, made by the finalizer's closure.
                runner::at_close(|| tokio::time::sleep(std::time::Duration::from_millis(1)));
            })
            .unwrap();
        runner.close();
        let reports = reports.take();
        assert!(reports.is_empty(), "{flavor:?}: {reports:?}");
    }
}

#[test]
fn finalizers_still_run_after_a_task_panicked_during_shutdown() {
    common::watchdog(common::TEST_LIMIT);
    // test_asyncio_run_closes_gens_after_hanging_tasks_errors
    for flavor in FLAVORS {
        let reports = Reports::default();
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut runner = reports.install(builder(flavor)).build();
        let o = order.clone();
        runner
            .run(async move {
                let guard = PanicOnDrop("task cleanup failed");
                runner::spawn(async move {
                    let _guard = guard;
                    std::future::pending::<()>().await
                });
                let first = o.clone();
                runner::at_close(move || async move {
                    tokio::task::yield_now().await;
                    first.lock().unwrap().push("registered first");
                });
                runner::at_close(|| async { panic!("finalizer failed") });
                let last = o.clone();
                runner::at_close(move || async move {
                    last.lock().unwrap().push("registered last");
                });
            })
            .unwrap();
        runner.close();
        assert_eq!(
            *order.lock().unwrap(),
            ["registered last", "registered first"],
            "{flavor:?}"
        );
        let kinds: Vec<_> = reports.take().iter().map(|r| r.kind()).collect();
        assert_eq!(
            kinds,
            [
                ReportKind::PanicDuringShutdown,
                ReportKind::FinalizerPanicked
            ]
        );
    }
}

#[test]
fn an_observing_task_does_async_cleanup_at_close() {
    common::watchdog(common::TEST_LIMIT);
    for flavor in FLAVORS {
        let (tx, rx) = std::sync::mpsc::channel::<&'static str>();
        let mut runner = builder(flavor).build();
        runner
            .run(async move {
                let (observing, ready) = tokio::sync::oneshot::channel();
                runner::spawn(async move {
                    let cancelled = runner::cancelled();
                    observing.send(()).unwrap();
                    tokio::select! {
                        _ = cancelled => {
                            // sleep: the async cleanup itself (a timer awaited after the
                            // cancel), which close() must wait for.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            tx.send("cleaned up after an async sleep").unwrap();
                        }
                        _ = std::future::pending::<()>() => {}
                    }
                });
                ready.await.unwrap();
            })
            .unwrap();
        runner.close();
        assert_eq!(
            rx.try_recv(),
            Ok("cleaned up after an async sleep"),
            "{flavor:?}"
        );
    }
}

#[test]
fn a_task_spawned_during_close_does_not_hang_close() {
    common::watchdog(common::TEST_LIMIT);
    for flavor in FLAVORS {
        let mut runner = builder(flavor).build();
        runner
            .run(async {
                runner::spawn(async {
                    let _cancelled = runner::cancelled();
                    let mut cancelled = std::pin::pin!(_cancelled);
                    (&mut cancelled).await;
                    // Cleanup that starts more work: close must not wait for it forever.
                    runner::spawn(std::future::pending::<()>());
                });
                tokio::task::yield_now().await;
            })
            .unwrap();
        let started = Instant::now();
        runner.close();
        assert!(started.elapsed() < Duration::from_secs(5), "{flavor:?}");
    }
}

#[test]
fn close_bounds_the_wait_for_blocking_work_and_reports_it() {
    common::watchdog(common::TEST_LIMIT);
    for flavor in FLAVORS {
        let reports = Reports::default();
        let mut runner = reports
            .install(builder(flavor))
            .shutdown_timeout(Duration::from_millis(200))
            .build();
        runner
            .run(async {
                // sleep: blocking work that outlasts the 0.2 s shutdown timeout.
                runner::spawn_blocking(|| std::thread::sleep(Duration::from_secs(30)));
            })
            .unwrap();
        let started = Instant::now();
        runner.close();
        // The bound is the behaviour: 0.2 s configured, far below the 30 s job.
        assert!(started.elapsed() < Duration::from_secs(5), "{flavor:?}");
        let reports = reports.take();
        let warning = reports
            .iter()
            .find(|r| r.kind() == ReportKind::BlockingAbandoned);
        let warning = warning.unwrap_or_else(|| panic!("no warning in {reports:?}"));
        assert!(warning.message().contains("200ms"), "{}", warning.message());
        assert!(
            warning.message().contains("1 spawn_blocking job"),
            "{}",
            warning.message()
        );
    }
}

#[test]
fn close_waits_for_short_blocking_work() {
    common::watchdog(common::TEST_LIMIT);
    let done = Arc::new(AtomicUsize::new(0));
    let d = done.clone();
    let mut runner = builder(common::Flavor::CurrentThread).build();
    runner
        .run(async move {
            runner::spawn_blocking(move || {
                // sleep: short blocking work, still running when close() starts waiting.
                std::thread::sleep(Duration::from_millis(50));
                d.fetch_add(1, Ordering::SeqCst);
            });
        })
        .unwrap();
    runner.close();
    assert_eq!(done.load(Ordering::SeqCst), 1);
}

#[test]
fn cancel_on_a_finished_task_is_false() {
    common::watchdog(common::TEST_LIMIT);
    for flavor in FLAVORS {
        let mut runner = builder(flavor).build();
        runner
            .run(async {
                let task = runner::spawn(async { 1 });
                while !task.is_finished() {
                    tokio::task::yield_now().await;
                }
                assert!(!task.cancel());
                assert_eq!(task.await.unwrap(), 1);
            })
            .unwrap();
    }
}

#[test]
fn a_cancelled_task_awaits_to_cancelled_and_its_destructors_run() {
    common::watchdog(common::TEST_LIMIT);
    for flavor in FLAVORS {
        let dropped = Arc::new(AtomicUsize::new(0));
        let d = dropped.clone();
        let mut runner = builder(flavor).build();
        runner
            .run(async move {
                let (started, is_started) = tokio::sync::oneshot::channel();
                let task = runner::spawn(async move {
                    let _guard = CountOnDrop(d);
                    started.send(()).unwrap();
                    std::future::pending::<u8>().await
                });
                // The guard exists once the task has reached its await point.
                is_started.await.unwrap();
                assert!(task.cancel());
                assert!(matches!(task.await, Err(e) if e.is_cancelled()));
            })
            .unwrap();
        assert_eq!(dropped.load(Ordering::SeqCst), 1, "{flavor:?}");
    }
}

#[test]
fn a_panicked_task_awaits_to_panicked_with_the_payload() {
    common::watchdog(common::TEST_LIMIT);
    for flavor in FLAVORS {
        let mut runner = builder(flavor).build();
        runner
            .run(async {
                let task = runner::spawn(async { std::panic::panic_any(7i64) });
                match task.await {
                    Err(err) if err.is_panic() => {
                        assert_eq!(err.into_panic().downcast_ref::<i64>(), Some(&7))
                    }
                    other => panic!("{other:?}"),
                }
            })
            .unwrap();
    }
}

// `task.await?` must reach `anyhow::Error` and `Box<dyn Error + Send + Sync>`: both need
// an error that is `Send + Sync + 'static`. Checked when this file compiles.
const _: fn() = || {
    fn error_for_question_mark<E: std::error::Error + Send + Sync + 'static>() {}
    error_for_question_mark::<TaskError>();
};

/// What an application writes: `?` on the awaited task, in a fn returning `anyhow::Result`.
async fn sum_of_tasks(a: runner::Task<u32>, b: runner::Task<u32>) -> anyhow::Result<u32> {
    Ok(a.await? + b.await?)
}

#[test]
fn task_await_question_mark_into_anyhow_keeps_the_task_error() {
    common::watchdog(common::TEST_LIMIT);
    for flavor in FLAVORS {
        let (sum, cancelled, panicked, at) = builder(flavor)
            .build()
            .run(async {
                let sum = sum_of_tasks(runner::spawn(async { 40 }), runner::spawn(async { 2 }));
                let sum = sum.await.unwrap();
                let pending = runner::spawn(std::future::pending::<u32>());
                let at = pending.location();
                pending.cancel();
                let cancelled = sum_of_tasks(runner::spawn(async { 1 }), pending).await;
                let panicking = runner::spawn(async { panic!("boom") });
                let panicked = sum_of_tasks(panicking, runner::spawn(async { 1 })).await;
                (sum, cancelled.unwrap_err(), panicked.unwrap_err(), at)
            })
            .unwrap();
        assert_eq!(sum, 42, "{flavor:?}");
        let err = cancelled.downcast_ref::<TaskError>().expect("a TaskError");
        assert!(err.is_cancelled() && !err.is_panic(), "{flavor:?}: {err:?}");
        assert_eq!(err.location(), at);
        assert_eq!(
            cancelled.to_string(),
            format!("task spawned at {at} was cancelled")
        );
        let err = panicked.downcast::<TaskError>().expect("a TaskError");
        assert!(err.is_panic() && !err.is_cancelled(), "{flavor:?}: {err:?}");
        assert!(err.to_string().ends_with(" panicked: boom"), "{err}");
        assert_eq!(err.into_panic().downcast_ref::<&str>(), Some(&"boom"));
    }
}

#[test]
fn a_task_error_is_shared_between_threads() {
    common::watchdog(common::TEST_LIMIT);
    let err = runner::run(async {
        runner::spawn(async { std::panic::panic_any(String::from("shared")) })
            .await
            .unwrap_err()
    })
    .unwrap();
    // `&TaskError` on two threads at once: what `Sync` allows, and what an
    // `Arc<anyhow::Error>` in a logger does.
    let texts: Vec<String> = std::thread::scope(|s| {
        let readers: Vec<_> = (0..2)
            .map(|_| s.spawn(|| format!("{err} / {err:?}")))
            .collect();
        readers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    for text in texts {
        assert!(text.contains("panicked: shared"), "{text}");
        assert!(text.contains("message: \"shared\""), "{text}");
    }
    let payload = err.into_panic();
    assert_eq!(payload.downcast_ref::<String>().unwrap(), "shared");
}

#[test]
fn into_panic_of_a_cancelled_task_panics_with_a_clear_message_and_try_into_panic_does_not() {
    common::watchdog(common::TEST_LIMIT);
    let cancelled = || {
        runner::run(async {
            let task = runner::spawn(std::future::pending::<()>());
            task.cancel();
            task.await.unwrap_err()
        })
        .unwrap()
    };
    let err = cancelled().try_into_panic().unwrap_err();
    assert!(err.is_cancelled());
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cancelled().into_panic()))
        .expect_err("into_panic of a cancelled task");
    let message = panic.downcast_ref::<String>().unwrap();
    assert!(
        message
            .starts_with("TaskError::into_panic on an error that is not a panic: task spawned at"),
        "{message}"
    );
}

#[test]
fn a_dropped_task_keeps_running() {
    common::watchdog(common::TEST_LIMIT);
    for flavor in FLAVORS {
        let mut runner = builder(flavor).build();
        let got = runner
            .run(async {
                let (tx, rx) = tokio::sync::oneshot::channel();
                drop(runner::spawn(async move {
                    tokio::task::yield_now().await;
                    tx.send("detached but alive").unwrap();
                }));
                rx.await.unwrap()
            })
            .unwrap();
        assert_eq!(got, "detached but alive");
    }
}

#[test]
fn an_observing_task_finishes_on_its_own_after_cancel() {
    common::watchdog(common::TEST_LIMIT);
    for flavor in FLAVORS {
        let mut runner = builder(flavor).build();
        let out = runner
            .run(async {
                let (observing, ready) = tokio::sync::oneshot::channel();
                let task = runner::spawn(async move {
                    let cancelled = runner::cancelled();
                    observing.send(()).unwrap();
                    tokio::select! {
                        _ = cancelled => {}
                        _ = std::future::pending::<()>() => {}
                    }
                    tokio::task::yield_now().await;
                    "finished after cleanup"
                });
                ready.await.unwrap();
                assert!(task.cancel());
                task.await
            })
            .unwrap();
        assert_eq!(out.unwrap(), "finished after cleanup", "{flavor:?}");
    }
}

/// How the observing task hands its `cancelled()` future to another task.
#[derive(Clone, Copy, Debug)]
enum MovedInto {
    TokioSpawn,
    RunnerSpawn,
}

/// A task creates `cancelled()`, moves it into another task and awaits that task; on
/// `Task::cancel` the moved future resolves where it is polled, and the task ends normally.
fn cancelled_moved_into_another_task_resolves_on_cancel(into: MovedInto) {
    for flavor in FLAVORS {
        // If the moved future never resolves, the task never ends: keep close() short.
        let mut runner = builder(flavor)
            .shutdown_timeout(Duration::from_secs(1))
            .build();
        let out = runner
            .run(async move {
                let (parked, is_parked) = tokio::sync::oneshot::channel();
                let task = runner::spawn(async move {
                    let cancelled = runner::cancelled();
                    let waiter = async move {
                        // Says when the moved future has been polled and is parked, so the
                        // cancel below finds it waiting in the other task.
                        let mut cancelled = std::pin::pin!(cancelled);
                        let mut parked = Some(parked);
                        std::future::poll_fn(|cx| {
                            let poll = std::future::Future::poll(cancelled.as_mut(), cx);
                            if poll.is_pending() {
                                if let Some(parked) = parked.take() {
                                    parked.send(()).unwrap();
                                }
                            }
                            poll
                        })
                        .await;
                        "resolved in the other task"
                    };
                    match into {
                        MovedInto::TokioSpawn => tokio::spawn(waiter).await.unwrap(),
                        MovedInto::RunnerSpawn => runner::spawn(waiter).await.unwrap(),
                    }
                });
                is_parked.await.unwrap();
                assert!(task.cancel());
                tokio::time::timeout(Duration::from_secs(10), task).await
            })
            .unwrap();
        let out = out.unwrap_or_else(|_| panic!("{into:?}, {flavor:?}: never resolved"));
        assert_eq!(
            out.unwrap(),
            "resolved in the other task",
            "{into:?}, {flavor:?}"
        );
    }
}

#[test]
fn cancelled_moved_into_tokio_spawn_resolves_on_task_cancel() {
    common::watchdog(common::TEST_LIMIT);
    cancelled_moved_into_another_task_resolves_on_cancel(MovedInto::TokioSpawn);
}

#[test]
fn cancelled_moved_into_runner_spawn_resolves_on_task_cancel() {
    common::watchdog(common::TEST_LIMIT);
    cancelled_moved_into_another_task_resolves_on_cancel(MovedInto::RunnerSpawn);
}

#[test]
fn close_with_a_cancel_ignoring_task_is_bounded_by_the_shutdown_timeout() {
    common::watchdog(common::TEST_LIMIT);
    let reports = Reports::default();
    let mut runner = reports
        .install(builder(common::Flavor::CurrentThread))
        .shutdown_timeout(Duration::from_millis(100))
        .build();
    runner
        .run(async {
            runner::spawn(async {
                let _observer = runner::cancelled(); // held but never awaited: ignores cancel
                std::future::pending::<()>().await
            });
            tokio::task::yield_now().await;
        })
        .unwrap();
    let started = Instant::now();
    runner.close();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(reports
        .take()
        .iter()
        .any(|r| r.kind() == ReportKind::ShutdownTimeout));
}

#[test]
#[should_panic(expected = "runner::spawn must be called inside Runner::run")]
fn spawn_outside_a_runner_panics_with_a_clear_message() {
    common::watchdog(common::TEST_LIMIT);
    drop(runner::spawn(async {}));
}

#[test]
fn spawn_from_a_plain_tokio_task_on_the_runner_thread_works() {
    common::watchdog(common::TEST_LIMIT);
    let mut runner = builder(common::Flavor::CurrentThread).build();
    let out = runner
        .run(async {
            tokio::spawn(async { runner::spawn(async { 5 }).await.unwrap() })
                .await
                .unwrap()
        })
        .unwrap();
    assert_eq!(out, 5);
}

#[test]
fn close_reports_nothing_when_all_is_well() {
    common::watchdog(common::TEST_LIMIT);
    let reports = Reports::default();
    let mut runner = reports
        .install(builder(common::Flavor::MultiThread))
        .build();
    runner
        .run(async { runner::spawn(async {}).await.unwrap() })
        .unwrap();
    runner.close();
    assert!(reports.take().is_empty());
}
