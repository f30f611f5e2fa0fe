//! Cancelling the main task by other means than a signal (asyncio's
//! `current_task().cancel()`): `runner::current_task()` and `TaskHandle`, and the
//! `RunError::Cancelled` a run then returns.

mod common;

use std::time::Duration;

use common::child::{Proc, Start};
use common::{builder, FLAVORS};
use runner::RunError;

#[test]
fn a_main_task_cancelled_through_its_handle_makes_run_return_cancelled() {
    common::watchdog(common::TEST_LIMIT);
    for flavor in FLAVORS {
        let mut runner = builder(flavor).build();
        let result = runner.run(async {
            let main = runner::current_task().expect("the main task has a handle");
            // From another thread, as a watchdog would.
            std::thread::spawn(move || assert!(main.cancel()))
                .join()
                .unwrap();
            std::future::pending::<()>().await
        });
        assert!(
            matches!(result, Err(RunError::Cancelled)),
            "{flavor:?}: {result:?}"
        );
        assert_eq!(
            result.unwrap_err().to_string(),
            "the main task was cancelled"
        );
        // The Runner goes on.
        assert_eq!(runner.run(async { 7 }).unwrap(), 7, "{flavor:?}");
    }
}

#[test]
fn an_observing_main_task_cancelled_through_its_handle_cleans_up_and_returns() {
    common::watchdog(common::TEST_LIMIT);
    for flavor in FLAVORS {
        let mut runner = builder(flavor).build();
        let result = runner.run(async {
            let main = runner::current_task().unwrap();
            let cancelled = runner::cancelled();
            runner::spawn(async move { main.cancel() });
            cancelled.await;
            tokio::task::yield_now().await; // async cleanup
            "cleaned up"
        });
        assert_eq!(result.unwrap(), "cleaned up", "{flavor:?}");
    }
}

#[test]
fn a_task_handle_cancels_from_any_thread_and_reports_the_end() {
    common::watchdog(common::TEST_LIMIT);
    for flavor in FLAVORS {
        let mut runner = builder(flavor).build();
        runner
            .run(async {
                let task = runner::spawn(std::future::pending::<()>());
                let handle = task.handle();
                assert_eq!(handle.location(), task.location());
                assert!(!handle.is_finished());
                let h = handle.clone();
                assert!(std::thread::spawn(move || h.cancel()).join().unwrap());
                assert!(task.await.unwrap_err().is_cancelled());
                assert!(handle.is_finished());
                assert!(
                    !handle.cancel(),
                    "a finished task cannot be cancelled again"
                );
            })
            .unwrap();
    }
}

#[test]
fn current_task_is_the_running_task_and_none_outside_tasks() {
    common::watchdog(common::TEST_LIMIT);
    assert!(runner::current_task().is_none());
    let mut runner = builder(common::Flavor::MultiThread).build();
    runner
        .run(async {
            let main = runner::current_task().unwrap();
            let line = line!() + 1;
            let spawned = runner::spawn(async { runner::current_task().unwrap() });
            let spawned = spawned.await.unwrap();
            assert_eq!(spawned.location().line(), line);
            assert_ne!(spawned.location(), main.location());
            let blocking = runner::spawn_blocking(runner::current_task).await.unwrap();
            assert!(blocking.is_none(), "a blocking job is not a task");
            let plain = tokio::spawn(async { runner::current_task().is_none() });
            assert!(
                plain.await.unwrap(),
                "a plain tokio task is not a runner task"
            );
        })
        .unwrap();
}

#[test]
fn a_main_task_cancelled_by_ctrl_c_and_its_handle_returns_cancelled() {
    let mut p = Proc::example(
        "sigint_child",
        &["ctrl_c_and_handle_cancel"],
        Start::Default,
        &[],
    );
    p.assert_exit_0(Duration::from_secs(30));
    p.assert_printed("both: Err(Cancelled)");
    p.assert_printed("ctrl_c: Err(Interrupted)");
    p.assert_printed("handle: Err(Cancelled)");
}
