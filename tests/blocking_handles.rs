//! The handles of a `runner::spawn_blocking` job tell the truth about it, also when it was
//! cancelled before it started: the pool then drops the job unrun, and its `Task` and
//! `TaskHandle` report it finished, and a further `cancel()` returns `false`.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::{builder, Flavor};

#[test]
fn a_blocking_job_cancelled_before_it_started_reports_finished_and_cancel_then_returns_false() {
    common::watchdog(common::TEST_LIMIT);
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread] {
        // A pool of one thread, kept busy: the second job waits in the queue.
        let mut runner = builder(flavor)
            .loop_factory(move || {
                let mut b = match flavor {
                    Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
                    Flavor::MultiThread => tokio::runtime::Builder::new_multi_thread(),
                };
                b.max_blocking_threads(1).enable_all().build()
            })
            .build();
        runner
            .run(async move {
                for from_the_task in [false, true] {
                    let (release, released) = mpsc::channel::<()>();
                    let (started, is_started) = tokio::sync::oneshot::channel();
                    let busy = runner::spawn_blocking(move || {
                        let _ = started.send(());
                        let _ = released.recv_timeout(Duration::from_secs(30));
                    });
                    is_started.await.unwrap();
                    let queued = runner::spawn_blocking(|| ());
                    let handle = queued.handle();
                    assert!(!handle.is_finished(), "{flavor:?}");
                    let requested = if from_the_task {
                        queued.cancel()
                    } else {
                        handle.cancel()
                    };
                    assert!(requested, "{flavor:?}: the first cancel is a request");
                    // The pool drops the job unrun once its thread is free.
                    release.send(()).unwrap();
                    busy.await.unwrap();
                    let ended = queued.await;
                    assert!(
                        ended.as_ref().is_err_and(|e| e.is_cancelled()),
                        "{flavor:?}: {ended:?}"
                    );
                    assert!(handle.is_finished(), "{flavor:?}: cancelled, so finished");
                    assert!(!handle.cancel(), "{flavor:?}: nothing left to cancel");
                }
            })
            .unwrap();
        runner.close();
    }
}
