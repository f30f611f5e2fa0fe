//! `runner::spawn_local`: `!Send` futures as full tasks of the Runner, on its own thread,
//! on every loop flavor, with no `LocalSet` to set up: on a tokio `LocalRuntime` loop too,
//! where they are tasks of the runtime itself.

mod common;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{CountOnDrop, Flavor, Reports};
use runner::{Builder, ContextVar, ReportKind};

/// The loops `spawn_local` is checked on: the two of `common`, and a tokio `LocalRuntime`.
#[derive(Clone, Copy, Debug)]
enum Loop {
    CurrentThread,
    MultiThread,
    Local,
}

const LOOPS: [Loop; 3] = [Loop::CurrentThread, Loop::MultiThread, Loop::Local];

fn builder(kind: Loop) -> Builder {
    match kind {
        Loop::CurrentThread => common::builder(Flavor::CurrentThread),
        Loop::MultiThread => common::builder(Flavor::MultiThread),
        Loop::Local => common::builder(Flavor::CurrentThread).loop_factory(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build_local(Default::default())
        }),
    }
}

/// Records the thread it is dropped on.
struct DropsOn(Arc<std::sync::Mutex<Option<std::thread::ThreadId>>>);

impl Drop for DropsOn {
    fn drop(&mut self) {
        *self.0.lock().unwrap() = Some(std::thread::current().id());
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    match payload.downcast_ref::<&str>() {
        Some(text) => (*text).to_owned(),
        None => payload
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default(),
    }
}

#[test]
fn a_non_send_future_runs_as_a_task_and_gives_its_value() {
    for flavor in LOOPS {
        let mut runner = builder(flavor).debug(Some(false)).build();
        let caller = std::thread::current().id();
        let (value, thread) = runner
            .run(async {
                let shared = Rc::new(Cell::new(1));
                let task = runner::spawn_local({
                    let shared = shared.clone();
                    async move {
                        tokio::task::yield_now().await;
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        shared.set(shared.get() + 41);
                        (shared.get(), std::thread::current().id())
                    }
                });
                task.await.unwrap()
            })
            .unwrap();
        assert_eq!(value, 42, "{flavor:?}");
        assert_eq!(thread, caller, "{flavor:?}: not on the Runner's thread");
    }
}

#[test]
fn a_local_task_may_spawn_local_tasks() {
    for flavor in LOOPS {
        let mut runner = builder(flavor).debug(Some(false)).build();
        let sum = runner
            .run(async {
                runner::spawn_local(async {
                    let inner = runner::spawn_local(async { Rc::new(20) });
                    *inner.await.unwrap() + 22
                })
                .await
                .unwrap()
            })
            .unwrap();
        assert_eq!(sum, 42, "{flavor:?}");
    }
}

#[test]
fn a_local_task_gets_a_copy_of_the_spawners_context() {
    static ID: ContextVar<u32> = ContextVar::new("id");
    for flavor in LOOPS {
        let mut runner = builder(flavor).debug(Some(false)).build();
        let (seen, after) = runner
            .run(async {
                ID.set(7);
                let seen = runner::spawn_local(async {
                    let seen = ID.get();
                    ID.set(99); // in the task's copy only
                    seen
                })
                .await
                .unwrap();
                (seen, ID.get())
            })
            .unwrap();
        assert_eq!(seen, Some(7), "{flavor:?}");
        assert_eq!(after, Some(7), "{flavor:?}: the task's set leaked out");
    }
}

#[test]
fn cancel_drops_a_local_task_and_cancelled_resolves_in_an_observing_one() {
    for flavor in LOOPS {
        let dropped = Arc::new(AtomicUsize::new(0));
        let mut runner = builder(flavor).debug(Some(false)).build();
        let d = dropped.clone();
        let (plain, observing) = runner
            .run(async move {
                let (ready, started) = tokio::sync::oneshot::channel();
                let guard = CountOnDrop(d);
                let plain = runner::spawn_local(async move {
                    let _guard = guard;
                    let _not_send = Rc::new(());
                    let _ = ready.send(());
                    std::future::pending::<()>().await
                });
                started.await.unwrap();
                assert!(plain.cancel());

                let (ready, started) = tokio::sync::oneshot::channel();
                let observing = runner::spawn_local(async move {
                    let cancelled = runner::cancelled();
                    let _ = ready.send(());
                    cancelled.await;
                    tokio::task::yield_now().await; // async cleanup
                    Rc::new("cleaned up")
                });
                started.await.unwrap();
                observing.cancel();
                (plain.await, observing.await)
            })
            .unwrap();
        assert!(matches!(plain, Err(e) if e.is_cancelled()), "{flavor:?}");
        assert_eq!(*observing.unwrap(), "cleaned up", "{flavor:?}");
        assert_eq!(dropped.load(Ordering::SeqCst), 1, "{flavor:?}");
    }
}

#[test]
fn local_tasks_pause_between_runs_and_resume_in_the_next() {
    for flavor in LOOPS {
        let mut runner = builder(flavor).debug(Some(false)).build();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let steps = runner
            .run(async move {
                runner::spawn_local(async move {
                    for step in 0..3 {
                        let _ = tx.send(step);
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                });
                rx.recv().await.unwrap();
                rx
            })
            .unwrap();
        let mut rx = steps;
        let rest = runner
            .run(async move {
                let mut rest = Vec::new();
                while let Some(step) = rx.recv().await {
                    rest.push(step);
                }
                rest
            })
            .unwrap();
        assert_eq!(rest, [1, 2], "{flavor:?}");
    }
}

#[test]
fn close_cancels_pending_local_tasks_on_the_runners_thread() {
    for flavor in LOOPS {
        let reports = Reports::default();
        let mut runner = reports.install(builder(flavor)).debug(Some(true)).build();
        let dropped_on = Arc::new(std::sync::Mutex::new(None));
        let cleaned = Arc::new(AtomicUsize::new(0));
        let (guard, done) = (DropsOn(dropped_on.clone()), cleaned.clone());
        let line = line!() + 3;
        runner
            .run(async move {
                runner::spawn_local(async move {
                    let _guard = guard;
                    let _not_send = Rc::new(());
                    std::future::pending::<()>().await
                });
                runner::spawn_local(async move {
                    runner::cancelled().await;
                    tokio::task::yield_now().await;
                    done.fetch_add(1, Ordering::SeqCst);
                });
                tokio::task::yield_now().await;
            })
            .unwrap();
        runner.close();
        assert_eq!(
            *dropped_on.lock().unwrap(),
            Some(std::thread::current().id()),
            "{flavor:?}: dropped elsewhere, or not at all"
        );
        assert_eq!(
            cleaned.load(Ordering::SeqCst),
            1,
            "{flavor:?}: no async cleanup"
        );
        let reports = reports.take();
        let pending: Vec<_> = reports
            .iter()
            .filter(|r| r.kind() == ReportKind::PendingAtClose)
            .collect();
        assert_eq!(pending.len(), 2, "{flavor:?}: {reports:?}");
        assert!(
            pending
                .iter()
                .any(|r| r.location().is_some_and(|l| l.line() == line)),
            "{flavor:?}: {reports:?}"
        );
    }
}

#[test]
fn close_frees_local_tasks_with_everything_they_hold() {
    // The set lives in the Runner's shared state and its tasks point back to it: close()
    // must break that circle, or each pending task would leak with what it holds.
    for flavor in LOOPS {
        let held = Arc::new(());
        for _ in 0..200 {
            let mut runner = builder(flavor).debug(Some(false)).build();
            let held = held.clone();
            runner
                .run(async move {
                    runner::spawn_local(async move {
                        let _held = held;
                        std::future::pending::<()>().await
                    });
                    tokio::task::yield_now().await;
                })
                .unwrap();
            runner.close();
        }
        assert_eq!(
            Arc::strong_count(&held),
            1,
            "{flavor:?}: local tasks leaked"
        );
    }
}

#[test]
fn a_slow_poll_in_a_local_task_is_reported_as_that_task() {
    for flavor in LOOPS {
        let reports = Reports::default();
        let mut runner = reports
            .install(builder(flavor))
            .debug(Some(true))
            .slow_callback_duration(Duration::from_millis(20))
            .build();
        let line = line!() + 3;
        runner
            .run(async {
                runner::spawn_local(async {
                    std::thread::sleep(Duration::from_millis(40)); // blocks the loop
                })
                .await
                .unwrap();
            })
            .unwrap();
        runner.close();
        let reports = reports.take();
        let slow: Vec<_> = reports
            .iter()
            .filter(|r| r.kind() == ReportKind::SlowPoll)
            .collect();
        assert!(
            slow.iter()
                .any(|r| r.location().is_some_and(|l| l.line() == line)
                    && r.message().contains("<task spawned at")),
            "{flavor:?}: {reports:?}"
        );
        assert!(
            !slow.iter().any(|r| r.message().contains("<main task")),
            "{flavor:?}: the local task's slow poll was blamed on the main task: {reports:?}"
        );
    }
}

#[test]
fn spawn_local_on_a_worker_thread_panics_saying_where_it_may_be_called() {
    let mut runner = builder(Loop::MultiThread).debug(Some(false)).build();
    let err = runner
        .run(async {
            // A task of a multi-thread loop runs on a worker thread, not the Runner's.
            runner::spawn(async {
                runner::spawn_local(async {});
            })
            .await
        })
        .unwrap()
        .unwrap_err();
    let payload = match err.try_into_panic() {
        Ok(payload) => payload,
        Err(err) => panic!("expected a panic, got {err:?}"),
    };
    let message = panic_text(payload.as_ref());
    assert!(
        message.contains("must be called on the thread that runs the Runner's loop"),
        "{message}"
    );
}

#[test]
fn spawn_local_outside_a_runner_panics_saying_where_it_may_be_called() {
    let payload = std::thread::spawn(|| runner::spawn_local(async {}))
        .join()
        .unwrap_err();
    let message = panic_text(payload.as_ref());
    assert!(
        message.contains("runner::spawn_local must be called inside Runner::run"),
        "{message}"
    );
}

#[test]
fn on_a_current_thread_loop_any_task_may_spawn_local() {
    for flavor in [Loop::CurrentThread, Loop::Local] {
        let mut runner = builder(flavor).debug(Some(false)).build();
        let value = runner
            .run(async {
                runner::spawn(async { runner::spawn_local(async { *Rc::new(5) }).await.unwrap() })
                    .await
                    .unwrap()
            })
            .unwrap();
        assert_eq!(value, 5, "{flavor:?}");
    }
}

#[test]
fn on_a_local_loop_plain_tokio_tasks_may_spawn_local_on_the_runner() {
    common::watchdog(common::TEST_LIMIT);
    let mut runner = builder(Loop::Local).debug(Some(false)).build();
    let caller = std::thread::current().id();
    let (from_plain, from_tokio_local) = runner
        .run(async {
            // A plain tokio task and a plain tokio local task: both on the Runner's thread.
            let plain = tokio::spawn(async {
                runner::spawn_local(async { (*Rc::new(1), std::thread::current().id()) })
                    .await
                    .unwrap()
            });
            let tokio_local = tokio::task::spawn_local(async {
                let rc = Rc::new(2);
                runner::spawn_local(async move { (*rc, std::thread::current().id()) })
                    .await
                    .unwrap()
            });
            (plain.await.unwrap(), tokio_local.await.unwrap())
        })
        .unwrap();
    assert_eq!(from_plain, (1, caller));
    assert_eq!(from_tokio_local, (2, caller));
}

#[test]
fn on_a_local_loop_spawn_local_inside_another_runtime_panics_saying_where_it_may_be_called() {
    common::watchdog(common::TEST_LIMIT);
    let mut runner = builder(Loop::Local).debug(Some(false)).build();
    let payload = runner
        .run(async {
            let other = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let entered = other.enter();
            // The Runner's thread, but tokio's current runtime is another one.
            let spawned = std::panic::catch_unwind(|| drop(runner::spawn_local(async {})));
            drop(entered);
            other.shutdown_background();
            spawned.unwrap_err()
        })
        .unwrap();
    let message = panic_text(payload.as_ref());
    assert!(
        message.contains("must be called on the thread that runs the Runner's loop"),
        "{message}"
    );
}
