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

/// Calls `runner::spawn_local` when dropped, with a future that counts its own drops: a
/// destructor that starts a task, run by `close()` as it drops a task.
struct SpawnsLocalOnDrop {
    spawned: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
}

impl Drop for SpawnsLocalOnDrop {
    fn drop(&mut self) {
        let guard = CountOnDrop(self.dropped.clone());
        let task = runner::spawn_local(async move {
            let _guard = (guard, Rc::new(()));
            std::future::pending::<()>().await
        });
        self.spawned.fetch_add(1, Ordering::SeqCst);
        drop(task);
    }
}

/// Issue 29, defect 1: a local task that ignores its cancel (it holds `cancelled()`) past
/// the shutdown timeout is dropped by `close()` after it took the local tasks; its destructor
/// starts a local task, whose future must be dropped then, once, and leave nothing behind.
#[test]
fn a_spawn_local_after_close_took_the_local_tasks_drops_its_future_at_once() {
    common::watchdog(common::TEST_LIMIT);
    for flavor in LOOPS {
        let (spawned, dropped) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut runner = builder(flavor)
            .shutdown_timeout(Duration::from_millis(20))
            .build();
        let on_drop = SpawnsLocalOnDrop {
            spawned: spawned.clone(),
            dropped: dropped.clone(),
        };
        runner
            .run(async move {
                let (ready, started) = tokio::sync::oneshot::channel();
                runner::spawn_local(async move {
                    let _on_drop = on_drop;
                    let _ignored = runner::cancelled();
                    let _ = ready.send(());
                    std::future::pending::<()>().await
                });
                started.await.unwrap();
            })
            .unwrap();
        runner.close();
        assert_eq!(spawned.load(Ordering::SeqCst), 1, "{flavor:?}");
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            1,
            "{flavor:?}: the future spawned after close took the local tasks was not dropped"
        );
        drop(runner);
        assert_eq!(Arc::strong_count(&dropped), 1, "{flavor:?}: leaked");
    }
}

/// The same from a `runner::spawn` task that ignores its cancel and is dropped by the
/// runtime's shutdown (close's step 4), on the Runner's thread or a worker thread: no set
/// is made then, no panic either.
#[test]
fn a_spawn_local_from_a_task_dropped_at_the_runtimes_shutdown_drops_its_future_at_once() {
    common::watchdog(common::TEST_LIMIT);
    for flavor in LOOPS {
        let reports = Reports::default();
        let (spawned, dropped) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut runner = reports
            .install(builder(flavor))
            .shutdown_timeout(Duration::from_millis(20))
            .build();
        let on_drop = SpawnsLocalOnDrop {
            spawned: spawned.clone(),
            dropped: dropped.clone(),
        };
        runner
            .run(async move {
                let (ready, started) = tokio::sync::oneshot::channel();
                runner::spawn(async move {
                    let _on_drop = on_drop;
                    let _ignored = runner::cancelled();
                    let _ = ready.send(());
                    std::future::pending::<()>().await
                });
                started.await.unwrap();
            })
            .unwrap();
        runner.close();
        assert_eq!(spawned.load(Ordering::SeqCst), 1, "{flavor:?}");
        assert_eq!(dropped.load(Ordering::SeqCst), 1, "{flavor:?}: not dropped");
        drop(runner);
        assert_eq!(Arc::strong_count(&dropped), 1, "{flavor:?}: leaked");
        let reports = reports.take();
        assert!(
            !reports
                .iter()
                .any(|r| r.kind() == ReportKind::PanicDuringShutdown),
            "{flavor:?}: {reports:?}"
        );
    }
}

/// A `Task` of a `spawn_local` made after close is done with local tasks awaits to
/// `Cancelled`, and says it has finished.
#[test]
fn a_local_task_spawned_after_close_awaits_to_cancelled() {
    common::watchdog(common::TEST_LIMIT);
    for flavor in [Loop::CurrentThread, Loop::MultiThread] {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut runner = builder(flavor)
            .shutdown_timeout(Duration::from_millis(20))
            .build();
        runner
            .run(async move {
                let (ready, started) = tokio::sync::oneshot::channel();
                runner::spawn_local(async move {
                    struct Late(std::sync::mpsc::Sender<runner::Task<u8>>);
                    impl Drop for Late {
                        fn drop(&mut self) {
                            let _ = self.0.send(runner::spawn_local(async { 1 }));
                        }
                    }
                    let _late = Late(tx);
                    // Ignores its cancel: dropped after close took the local tasks.
                    let _ignored = runner::cancelled();
                    let _ = ready.send(());
                    std::future::pending::<()>().await
                });
                started.await.unwrap();
            })
            .unwrap();
        runner.close();
        let task = rx.try_recv().expect("the destructor ran at close");
        assert!(task.is_finished(), "{flavor:?}");
        let ended = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(task);
        assert!(ended.is_err_and(|e| e.is_cancelled()), "{flavor:?}");
    }
}

/// Starts, on a thread of its own, a Runner with a local task pending (holding `held`, and
/// counting its drops) and a runner task pending; hands the Runner to `f` on another
/// thread, then lets the home thread exit. Returns where the local task was dropped (none
/// before the home thread exits) and the reports.
fn moved_with_a_pending_local_task(
    flavor: Loop,
    f: impl FnOnce(runner::Runner) + Send + 'static,
) -> (
    Vec<std::thread::ThreadId>,
    std::thread::ThreadId,
    Vec<runner::Report>,
) {
    let reports = Reports::default();
    let dropped_on = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (sink, on) = (reports.clone(), dropped_on.clone());
    let (moved, was_moved) = std::sync::mpsc::channel();
    let (go, exit) = std::sync::mpsc::channel::<()>();
    let home = std::thread::spawn(move || {
        let mut runner = sink.install(builder(flavor)).build();
        runner
            .run(async move {
                runner::spawn_local(async move {
                    struct Records(Arc<std::sync::Mutex<Vec<std::thread::ThreadId>>>);
                    impl Drop for Records {
                        fn drop(&mut self) {
                            self.0.lock().unwrap().push(std::thread::current().id());
                        }
                    }
                    let _records = (Records(on), Rc::new(()));
                    std::future::pending::<()>().await
                });
                runner::spawn(std::future::pending::<()>());
                tokio::task::yield_now().await;
            })
            .unwrap();
        std::thread::spawn(move || f(runner)).join().unwrap();
        moved.send(()).unwrap();
        exit.recv().unwrap();
        std::thread::current().id()
    });
    was_moved.recv().unwrap();
    assert!(
        dropped_on.lock().unwrap().is_empty(),
        "{flavor:?}: a local task was dropped away from its thread"
    );
    let reports = reports.take();
    go.send(()).unwrap();
    let home = home.join().unwrap();
    let dropped_on = dropped_on.lock().unwrap().clone();
    (dropped_on, home, reports)
}

/// Issue 29, defect 5: "A Runner with pending spawn_local tasks is bound to the thread that
/// made them: run elsewhere returns RunError::WrongThread".
#[test]
fn with_local_tasks_pending_run_on_another_thread_is_wrong_thread() {
    common::watchdog(common::TEST_LIMIT);
    for flavor in [Loop::CurrentThread, Loop::MultiThread] {
        let (dropped_on, home, _) = moved_with_a_pending_local_task(flavor, move |mut runner| {
            let here = std::thread::current().id();
            let err = runner.run(async { 1 }).unwrap_err();
            assert!(
                matches!(err, runner::RunError::WrongThread { home: h, here: t } if h != here && t == here),
                "{flavor:?}: {err:?}"
            );
            assert!(err.to_string().contains("spawn_local tasks"), "{err}");
            assert!(!runner.is_closed());
            // The runner itself is fine: closing it here works (and leaves the local task).
            runner.close();
        });
        // Left to its thread, which dropped it as it exited.
        assert_eq!(dropped_on, [home], "{flavor:?}");
    }
}

/// Back on its thread, the Runner runs again and its local tasks with it.
#[test]
fn a_runner_bound_by_its_local_tasks_runs_again_on_their_thread() {
    common::watchdog(common::TEST_LIMIT);
    for flavor in [Loop::CurrentThread, Loop::MultiThread] {
        let mut runner = builder(flavor).build();
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        // In a tuple: a run that returns a future is a lint's false alarm here.
        let (waiting,) = runner
            .run(async move {
                let task = runner::spawn_local(async move { rx.await.unwrap() + *Rc::new(1) });
                tokio::task::yield_now().await;
                (task,)
            })
            .unwrap();
        let mut runner = std::thread::spawn(move || {
            let err = runner.run(async {}).unwrap_err();
            assert!(
                matches!(err, runner::RunError::WrongThread { .. }),
                "{err:?}"
            );
            runner
        })
        .join()
        .unwrap();
        tx.send(41).unwrap();
        assert_eq!(runner.run(waiting).unwrap().unwrap(), 42, "{flavor:?}");
        runner.close();
    }
}

/// With no local task pending, the Runner is not bound: it runs on another thread, and
/// `spawn_local` works there (that thread runs its loop now).
#[test]
fn with_no_local_task_pending_a_runner_runs_and_spawns_local_on_another_thread() {
    common::watchdog(common::TEST_LIMIT);
    for flavor in [Loop::CurrentThread, Loop::MultiThread] {
        let mut runner = builder(flavor).build();
        let first = runner
            .run(async { runner::spawn_local(async { *Rc::new(1) }).await.unwrap() })
            .unwrap();
        assert_eq!(first, 1);
        let mut runner = std::thread::spawn(move || {
            let here = std::thread::current().id();
            let (value, thread) = runner
                .run(async {
                    runner::spawn_local(async { (*Rc::new(2), std::thread::current().id()) })
                        .await
                        .unwrap()
                })
                .unwrap();
            assert_eq!((value, thread), (2, here), "{flavor:?}");
            runner
        })
        .join()
        .unwrap();
        // And back: nothing pending there either.
        let third = runner
            .run(async { runner::spawn_local(async { *Rc::new(3) }).await.unwrap() })
            .unwrap();
        assert_eq!(third, 3, "{flavor:?}");
        runner.close();
    }
}

/// "close() elsewhere leaks only those local tasks, with a report saying so": the rest of the
/// Runner closes (its runner task is cancelled and dropped there), the local task is left to
/// its thread, which drops it, there, when it exits.
#[test]
fn closed_on_another_thread_a_runner_leaves_only_its_local_tasks_to_their_thread() {
    common::watchdog(common::TEST_LIMIT);
    for flavor in [Loop::CurrentThread, Loop::MultiThread] {
        let closed = Arc::new(AtomicUsize::new(0));
        let c = closed.clone();
        let (dropped_on, home, reports) = moved_with_a_pending_local_task(flavor, move |mut r| {
            r.run(async move {
                // A second runner task, pending, to see the close do its work here.
                let guard = CountOnDrop(c);
                runner::spawn(async move {
                    let _guard = guard;
                    std::future::pending::<()>().await
                });
            })
            .unwrap_err();
            r.close();
        });
        // The run elsewhere was refused, so only the first run's runner task was pending.
        assert_eq!(closed.load(Ordering::SeqCst), 0, "{flavor:?}");
        assert_eq!(dropped_on, [home], "{flavor:?}");
        let left: Vec<_> = reports
            .iter()
            .filter(|r| r.message().contains("spawn_local tasks"))
            .collect();
        assert_eq!(left.len(), 1, "{flavor:?}: {reports:?}");
        assert!(
            left[0]
                .message()
                .contains("1 local task(s) cannot be cancelled or dropped here")
                && left[0].message().contains("left to that thread"),
            "{flavor:?}: {reports:?}"
        );
    }
}

/// Found by the lifecycle fuzzer: a Runner with no local task pending, closed on another
/// thread, runs its loop there, so a finalizer, or a destructor of a task its close cancels,
/// may start local tasks there (they then run, and are dropped, there).
#[test]
fn a_destructor_run_by_a_close_on_another_thread_may_spawn_local() {
    common::watchdog(common::TEST_LIMIT);
    for flavor in [Loop::CurrentThread, Loop::MultiThread] {
        let reports = Reports::default();
        let (spawned, dropped) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let finalized = Arc::new(std::sync::Mutex::new(None));
        let mut runner = reports.install(builder(flavor)).build();
        let (counts, done) = ((spawned.clone(), dropped.clone()), finalized.clone());
        runner
            .run(async move {
                // A local task made and finished here: this thread was their home.
                assert_eq!(runner::spawn_local(async { *Rc::new(1) }).await.unwrap(), 1);
                runner::at_close(move || async move {
                    let task =
                        runner::spawn_local(async { (*Rc::new(7), std::thread::current().id()) });
                    *done.lock().unwrap() = Some(task.await.unwrap());
                });
                if matches!(flavor, Loop::CurrentThread) {
                    let on_drop = SpawnsLocalOnDrop {
                        spawned: counts.0,
                        dropped: counts.1,
                    };
                    let (ready, started) = tokio::sync::oneshot::channel();
                    // Dropped by the close's cancel, on the thread that runs the loop then.
                    runner::spawn(async move {
                        let _on_drop = on_drop;
                        let _ = ready.send(());
                        std::future::pending::<()>().await
                    });
                    started.await.unwrap();
                }
            })
            .unwrap();
        let closer = std::thread::spawn(move || {
            runner.close();
            std::thread::current().id()
        })
        .join()
        .unwrap();
        assert_eq!(
            *finalized.lock().unwrap(),
            Some((7, closer)),
            "{flavor:?}: {:?}",
            reports.take()
        );
        if matches!(flavor, Loop::CurrentThread) {
            assert_eq!(spawned.load(Ordering::SeqCst), 1);
            assert_eq!(dropped.load(Ordering::SeqCst), 1);
        }
        let reports = reports.take();
        assert!(reports.is_empty(), "{flavor:?}: {reports:?}");
    }
}
