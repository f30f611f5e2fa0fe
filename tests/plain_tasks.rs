//! Plain tokio tasks are first-class (DESIGN.md "Plain tokio tasks (axum, hyper, tonic)"):
//! a `runner::cancelled()` made inside a plain `tokio::spawn` task (where axum polls its
//! graceful-shutdown future) resolves when the Runner shuts down, and keeps the main task
//! observing while it lives; a task dropped by a cancel after it had polled a `cancelled()`
//! gets a report. In process on every loop flavor (current-thread, multi-thread with 1, 2
//! and 4 workers, tokio's LocalRuntime), then through real signals in child processes
//! (`tests/bin/plain_child.rs`): axum's own shapes over HTTP, and the ported `select!` loop.

mod common;

use std::future::{pending, Future};
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use runner::{Builder, ReportKind, RunError, Runner};
use tokio::sync::oneshot;

use common::Reports;

/// The loops a plain task's `cancelled()` is checked on.
#[derive(Clone, Copy, Debug)]
enum Loop {
    CurrentThread,
    MultiThread(usize),
    Local,
}

const LOOPS: [Loop; 5] = [
    Loop::CurrentThread,
    Loop::MultiThread(1),
    Loop::MultiThread(2),
    Loop::MultiThread(4),
    Loop::Local,
];

fn builder(kind: Loop) -> Builder {
    let b = Runner::builder().handle_sigint(false).debug(Some(false));
    match kind {
        Loop::CurrentThread => b,
        Loop::MultiThread(workers) => b.loop_factory(move || {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .enable_all()
                .build()
        }),
        Loop::Local => b.loop_factory(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build_local(Default::default())
        }),
    }
}

/// axum's documented shutdown future, with runner's `cancelled()`.
async fn shutdown_signal() {
    runner::cancelled().await;
}

#[test]
fn a_cancelled_made_in_a_plain_task_resolves_when_the_main_task_is_cancelled() {
    common::watchdog(common::TEST_LIMIT);
    for kind in LOOPS {
        let mut runner = builder(kind).build();
        let result = runner.run(async {
            let (made, ready) = oneshot::channel();
            // Made inside the plain task (at its first poll), as axum does with
            // `with_graceful_shutdown(shutdown_signal())`.
            let plain = tokio::spawn(async move {
                let signal = shutdown_signal();
                let mut signal = pin!(signal);
                // One poll makes the `cancelled()`; then tell the main task.
                std::future::poll_fn(|cx| {
                    let _ = signal.as_mut().poll(cx);
                    Poll::Ready(())
                })
                .await;
                made.send(()).unwrap();
                signal.await;
                "drained"
            });
            ready.await.unwrap();
            // The main task cancelled as a signal would: it is observing (through the plain
            // task's `cancelled()`), so it is not dropped, and the plain task's future
            // resolves.
            assert!(runner::current_task().unwrap().cancel());
            plain.await.unwrap()
        });
        assert_eq!(
            result.ok(),
            Some("drained"),
            "{kind:?}: the main task was dropped, or the plain task's cancelled() never fired"
        );
        runner.close();
    }
}

#[test]
fn a_lazily_made_cancelled_in_a_plain_task_keeps_the_main_task_observing_until_it_is_gone() {
    common::watchdog(common::TEST_LIMIT);
    for kind in LOOPS {
        let mut runner = builder(kind).build();
        let drained = Arc::new(AtomicBool::new(false));
        let seen = drained.clone();
        let result = runner.run(async move {
            let (made, ready) = oneshot::channel();
            let (resolved_tx, resolved) = oneshot::channel();
            let (finish_tx, finish) = oneshot::channel::<()>();
            // axum's shutdown task: the future resolves, the task tells the server, and the
            // server drains (here: waits for `finish`) while the main task awaits it.
            tokio::spawn(async move {
                let signal = async {
                    let c = runner::cancelled();
                    made.send(()).unwrap();
                    c.await
                };
                signal.await;
                resolved_tx.send(()).unwrap();
            });
            ready.await.unwrap();
            assert!(runner::current_task().unwrap().cancel());
            resolved.await.unwrap();
            // The plain `cancelled()` is gone now; the drain goes on in the main task, which
            // the cancel it has consumed must not drop at its next poll.
            tokio::spawn(async move {
                tokio::task::yield_now().await;
                finish_tx.send(()).unwrap();
            });
            finish.await.unwrap();
            seen.store(true, Ordering::SeqCst);
        });
        assert!(result.is_ok(), "{kind:?}: {result:?}");
        assert!(drained.load(Ordering::SeqCst), "{kind:?}: drain cut");
        runner.close();
    }
}

#[test]
fn a_plain_cancelled_dropped_unpolled_leaves_the_cancel_to_drop_the_main_task() {
    common::watchdog(common::TEST_LIMIT);
    for kind in LOOPS {
        let mut runner = builder(kind).build();
        let result = runner.run(async {
            let (dropped_tx, dropped) = oneshot::channel();
            tokio::spawn(async move {
                drop(runner::cancelled());
                dropped_tx.send(()).unwrap();
            });
            dropped.await.unwrap();
            runner::current_task().unwrap().cancel();
            pending::<()>().await
        });
        assert!(
            matches!(result, Err(RunError::Cancelled)),
            "{kind:?}: {result:?}"
        );
        runner.close();
    }
}

#[test]
fn a_cancelled_made_in_a_plain_task_resolves_at_close_and_close_waits_for_its_cleanup() {
    common::watchdog(common::TEST_LIMIT);
    for kind in LOOPS {
        let mut runner = builder(kind).build();
        let cleaned = Arc::new(AtomicBool::new(false));
        let flag = cleaned.clone();
        runner
            .run(async move {
                let (made, ready) = oneshot::channel();
                // A background job in a plain task, left running when the main task returns.
                tokio::spawn(async move {
                    // Held (not consumed by `.await`) until the cleanup is done: the way to
                    // have close() wait for a plain task's cleanup.
                    let mut stop = runner::cancelled();
                    made.send(()).unwrap();
                    (&mut stop).await;
                    // Async cleanup after the close resolved it: close() must wait for it.
                    tokio::task::yield_now().await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    flag.store(true, Ordering::SeqCst);
                    drop(stop);
                });
                ready.await.unwrap();
            })
            .unwrap();
        runner.close();
        assert!(
            cleaned.load(Ordering::SeqCst),
            "{kind:?}: the plain task's cancelled() did not resolve at close, or close() did \
             not wait for its cleanup"
        );
    }
}

#[test]
fn a_plain_cancelled_made_between_runs_on_a_worker_resolves_at_close() {
    common::watchdog(common::TEST_LIMIT);
    for workers in [1, 2, 4] {
        let mut runner = builder(Loop::MultiThread(workers)).build();
        let (go_tx, go) = oneshot::channel::<()>();
        let (made_tx, made) = std::sync::mpsc::channel();
        let cleaned = Arc::new(AtomicBool::new(false));
        let flag = cleaned.clone();
        runner
            .run(async move {
                tokio::spawn(async move {
                    go.await.unwrap();
                    // No run is active now: the Runner's close is what it observes.
                    let stop = runner::cancelled();
                    made_tx.send(()).unwrap();
                    stop.await;
                    flag.store(true, Ordering::SeqCst);
                });
            })
            .unwrap();
        go_tx.send(()).unwrap();
        made.recv_timeout(Duration::from_secs(30)).unwrap();
        assert!(!cleaned.load(Ordering::SeqCst));
        runner.close();
        assert!(cleaned.load(Ordering::SeqCst), "mt({workers})");
    }
}

#[test]
fn close_bounds_its_wait_for_a_plain_task_that_holds_cancelled_and_never_finishes() {
    common::watchdog(common::TEST_LIMIT);
    let reports = Reports::default();
    let mut runner = reports
        .install(builder(Loop::CurrentThread))
        .shutdown_timeout(Duration::from_millis(200))
        .build();
    runner
        .run(async {
            let (made, ready) = oneshot::channel();
            tokio::spawn(async move {
                let _held = runner::cancelled(); // held, never polled, never dropped
                made.send(()).unwrap();
                pending::<()>().await
            });
            ready.await.unwrap();
        })
        .unwrap();
    let started = std::time::Instant::now();
    runner.close();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "close() took {:?}",
        started.elapsed()
    );
    let timeouts: Vec<_> = reports
        .take()
        .into_iter()
        .filter(|r| r.kind() == ReportKind::ShutdownTimeout)
        .collect();
    assert!(
        timeouts.iter().any(|r| r
            .message()
            .contains("1 runner::cancelled() future(s) still held in plain tokio tasks")),
        "{timeouts:?}"
    );
}

/// What a plain task saw of runner's functions once the Runner had closed under it.
#[derive(Debug)]
struct AfterClose {
    spawn: Result<(), String>,
    spawn_blocking: Result<(), String>,
    at_close: Result<(), String>,
    cancelled: Result<bool, String>,
    shutdown_requested: Result<bool, String>,
}

/// Polls `task` once: a task dropped as it was spawned is ready at once, cancelled and
/// finished.
fn ended_cancelled<T: std::fmt::Debug>(mut task: runner::Task<T>) -> Result<(), String> {
    if !task.is_finished() {
        return Err("its Task says it has not finished".into());
    }
    match pin!(&mut task).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(Err(e)) if e.is_cancelled() => Ok(()),
        other => Err(format!("awaited to {other:?}")),
    }
}

fn caught<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => Err(format!(
            "panicked: {}",
            payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or(payload.downcast_ref::<&str>().copied())
                .unwrap_or("?")
        )),
    }
}

/// A plain task that keeps a worker thread past the shutdown timeout (a blocking call inside
/// its poll) goes on after `close()` has given up and returned. There runner's functions act
/// as on a Runner that has closed: a task started is dropped at once and awaits to
/// `Cancelled`, a finalizer never runs, `cancelled()` resolves, `shutdown_requested()` is
/// true. None of them panics (in a destructor during unwinding that would abort).
#[test]
fn a_plain_task_a_close_gave_up_on_finds_a_closed_runner_not_a_panic() {
    common::watchdog(common::TEST_LIMIT);
    for workers in [1, 2, 4] {
        let reports = Reports::default();
        let mut runner = reports
            .install(builder(Loop::MultiThread(workers)))
            .shutdown_timeout(Duration::from_millis(100))
            .build();
        let (seen_tx, seen) = std::sync::mpsc::channel();
        let (closed_tx, closed) = std::sync::mpsc::channel::<()>();
        let dropped = Arc::new(AtomicUsize::new(0));
        runner
            .run({
                let dropped = dropped.clone();
                async move {
                    let (started, running) = oneshot::channel();
                    tokio::spawn(async move {
                        started.send(()).unwrap();
                        // Blocks this worker until close() has given up on it and returned.
                        closed.recv().unwrap();
                        let counted = common::CountOnDrop(dropped.clone());
                        let seen = AfterClose {
                            spawn: caught(|| {
                                ended_cancelled(runner::spawn(async move {
                                    let _counted = counted;
                                }))
                            }),
                            spawn_blocking: caught(|| {
                                ended_cancelled(runner::spawn_blocking(|| ()))
                            }),
                            at_close: caught(|| {
                                runner::at_close(|| async {});
                                Ok(())
                            }),
                            cancelled: caught(|| {
                                let mut stop = runner::cancelled();
                                let mut cx = Context::from_waker(Waker::noop());
                                Ok(pin!(&mut stop).poll(&mut cx).is_ready())
                            }),
                            shutdown_requested: caught(|| Ok(runner::shutdown_requested())),
                        };
                        seen_tx.send(seen).unwrap();
                    });
                    running.await.unwrap();
                }
            })
            .unwrap();
        runner.close();
        closed_tx.send(()).unwrap();
        let seen = seen
            .recv_timeout(Duration::from_secs(20))
            .expect("the plain task never went on after close()");
        assert_eq!(seen.spawn, Ok(()), "mt({workers}): {seen:?}");
        assert_eq!(seen.spawn_blocking, Ok(()), "mt({workers}): {seen:?}");
        assert_eq!(seen.at_close, Ok(()), "mt({workers}): {seen:?}");
        assert_eq!(seen.cancelled, Ok(true), "mt({workers}): {seen:?}");
        assert_eq!(seen.shutdown_requested, Ok(true), "mt({workers}): {seen:?}");
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            1,
            "mt({workers}): the future"
        );
    }
}

#[test]
fn a_cancelled_made_outside_any_runner_never_resolves() {
    common::watchdog(common::TEST_LIMIT);
    let mut outside = runner::cancelled();
    let mut cx = Context::from_waker(Waker::noop());
    assert_eq!(pin!(&mut outside).poll(&mut cx), Poll::Pending);
    // Nor in a foreign tokio runtime's task.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let polled = rt.block_on(async {
        tokio::spawn(async {
            let mut c = runner::cancelled();
            let mut cx = Context::from_waker(Waker::noop());
            pin!(&mut c).poll(&mut cx)
        })
        .await
        .unwrap()
    });
    assert_eq!(polled, Poll::Pending);
}

/// The naive port of a `CancellationToken` loop, run as a task; `started` hears of each
/// unit as it starts, `done` counts the units that finished.
async fn naive_loop(started: tokio::sync::mpsc::UnboundedSender<u32>, done: Arc<AtomicUsize>) {
    let mut unit = 0;
    loop {
        tokio::select! {
            _ = runner::cancelled() => break,
            _ = tokio::task::yield_now() => {
                unit += 1;
                let _ = started.send(unit);
                tokio::time::sleep(Duration::from_millis(200)).await;
                done.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

/// The loop as the docs write it: one `cancelled()` held across the iterations.
async fn ported_loop(started: tokio::sync::mpsc::UnboundedSender<u32>, done: Arc<AtomicUsize>) {
    let mut stop = runner::cancelled();
    let mut unit = 0;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::task::yield_now() => {
                unit += 1;
                let _ = started.send(unit);
                tokio::time::sleep(Duration::from_millis(200)).await;
                done.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

#[test]
fn a_task_dropped_mid_work_after_polling_cancelled_is_reported_outside_debug_mode() {
    common::watchdog(common::TEST_LIMIT);
    for kind in LOOPS {
        let reports = Reports::default();
        let mut runner = reports.install(builder(kind)).build();
        let done = Arc::new(AtomicUsize::new(0));
        let (spawned_at, result) = runner
            .run({
                let done = done.clone();
                async move {
                    let (started, mut units) = tokio::sync::mpsc::unbounded_channel();
                    let worker = runner::spawn(naive_loop(started, done));
                    assert_eq!(units.recv().await, Some(1));
                    // The cancel comes while the unit sleeps: no `cancelled()` is alive.
                    worker.cancel();
                    (worker.location(), worker.await)
                }
            })
            .unwrap();
        runner.close();
        assert!(result.unwrap_err().is_cancelled(), "{kind:?}");
        assert_eq!(done.load(Ordering::SeqCst), 0, "{kind:?}");
        let reports = reports.take();
        let mid_work: Vec<_> = reports
            .iter()
            .filter(|r| r.kind() == ReportKind::DroppedMidWork)
            .collect();
        assert_eq!(mid_work.len(), 1, "{kind:?}: {reports:?}");
        let report = mid_work[0];
        assert_eq!(report.location(), Some(spawned_at), "{kind:?}");
        for needle in [
            "<task spawned at tests/plain_tasks.rs:",
            "the work it was doing was cut",
            "let mut stop = runner::cancelled();",
            "&mut stop",
        ] {
            assert!(report.message().contains(needle), "{kind:?}: {report}");
        }
    }
}

#[test]
fn the_ported_loop_keeps_its_unit_through_a_cancel_and_is_not_reported() {
    common::watchdog(common::TEST_LIMIT);
    for kind in LOOPS {
        let reports = Reports::default();
        let mut runner = reports.install(builder(kind)).build();
        let done = Arc::new(AtomicUsize::new(0));
        let result = runner
            .run({
                let done = done.clone();
                async move {
                    let (started, mut units) = tokio::sync::mpsc::unbounded_channel();
                    let worker = runner::spawn(ported_loop(started, done));
                    assert_eq!(units.recv().await, Some(1));
                    worker.cancel();
                    worker.await
                }
            })
            .unwrap();
        runner.close();
        assert!(result.is_ok(), "{kind:?}: {result:?}");
        assert_eq!(done.load(Ordering::SeqCst), 1, "{kind:?}: the unit was cut");
        let reports = reports.take();
        assert!(reports.is_empty(), "{kind:?}: {reports:?}");
    }
}

#[test]
fn a_task_that_never_polled_cancelled_is_dropped_without_the_mid_work_report() {
    common::watchdog(common::TEST_LIMIT);
    let reports = Reports::default();
    let mut runner = reports.install(builder(Loop::CurrentThread)).build();
    runner
        .run(async {
            let worker = runner::spawn(pending::<()>());
            tokio::task::yield_now().await;
            worker.cancel();
            assert!(worker.await.unwrap_err().is_cancelled());
        })
        .unwrap();
    runner.close();
    let reports = reports.take();
    assert!(reports.is_empty(), "{reports:?}");
}

// ---- Through real signals, in child processes ----

#[cfg(unix)]
mod signals {
    use super::*;
    use common::child::{Proc, Start};

    fn start(scenario: &str, flavor: &str) -> Proc {
        Proc::example("plain_child", &[scenario, flavor], Start::Default, &[])
    }

    fn get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
        common::http_get(addr, path, Duration::from_secs(30))
    }

    /// axum serving with a shutdown future made inside its own task: the request in flight
    /// when `signal` arrives finishes with 200, then the process dies by `signal`.
    fn drains(scenario: &str, flavor: &str, signal: libc::c_int) {
        let mut server = start(scenario, flavor);
        let addr: SocketAddr = server
            .expect_line_starting("listening on ")
            .parse()
            .expect("an address");
        let hello = get(addr, "/").unwrap();
        assert!(hello.ends_with("hello\n"), "{hello:?}");
        let slow = std::thread::spawn(move || get(addr, "/slow?ms=1500"));
        server.expect_line("slow request: sleeping 1500 ms");
        server.signal(signal);
        server.expect_line("shutdown signal received");
        let response = slow.join().unwrap();
        match &response {
            Ok(text) => assert!(
                text.starts_with("HTTP/1.1 200 ") && text.ends_with("done after 1500 ms\n"),
                "{scenario} {flavor}: {text:?}"
            ),
            Err(e) => panic!(
                "{scenario} {flavor}: the request in flight was cut ({e}): the main task was \
                 dropped instead of draining"
            ),
        }
        server.assert_died_by(signal, Duration::from_secs(10));
        server.assert_printed("drained");
    }

    #[test]
    fn axum_async_fn_shutdown_signal_drains_on_sigterm_current_thread() {
        common::watchdog(common::TEST_LIMIT);
        drains("axum_fn", "current_thread", libc::SIGTERM);
    }

    #[test]
    fn axum_async_fn_shutdown_signal_drains_on_sigint_multi_thread() {
        common::watchdog(common::TEST_LIMIT);
        drains("axum_fn", "multi_thread", libc::SIGINT);
    }

    #[test]
    fn axum_async_block_shutdown_future_drains_on_sigint_current_thread() {
        common::watchdog(common::TEST_LIMIT);
        drains("axum_block", "current_thread", libc::SIGINT);
    }

    #[test]
    fn axum_async_block_shutdown_future_drains_on_sigterm_multi_thread() {
        common::watchdog(common::TEST_LIMIT);
        drains("axum_block", "multi_thread", libc::SIGTERM);
    }

    /// The last unit the loop started (the signal came during it, or just before).
    fn last_started(child: &Proc) -> u32 {
        child
            .seen
            .iter()
            .filter_map(|l| {
                l.strip_prefix("unit ")?
                    .strip_suffix(" start")?
                    .parse()
                    .ok()
            })
            .max()
            .expect("a unit started")
    }

    /// The ported loop in the main task: the unit of work in progress when the signal comes
    /// finishes, then the loop stops, then the process dies by the signal.
    fn keeps_its_unit(flavor: &str, signal: libc::c_int) {
        let mut child = start("ported_loop", flavor);
        child.expect_line("unit 2 start");
        child.signal(signal);
        child.assert_died_by(signal, Duration::from_secs(10));
        let unit = last_started(&child);
        child.assert_printed(&format!("unit {unit} done"));
        child.assert_printed(&format!("loop stopped after unit {unit}"));
        let stderr = child.stderr();
        assert!(!stderr.contains("dropped by a cancel"), "{stderr}");
    }

    #[test]
    fn the_ported_loop_keeps_its_unit_through_sigterm_current_thread() {
        common::watchdog(common::TEST_LIMIT);
        keeps_its_unit("current_thread", libc::SIGTERM);
    }

    #[test]
    fn the_ported_loop_keeps_its_unit_through_sigint_multi_thread() {
        common::watchdog(common::TEST_LIMIT);
        keeps_its_unit("multi_thread", libc::SIGINT);
    }

    /// The naive loop: the signal comes during a unit of work (the units run back to back,
    /// so the loop spends next to no time in its `select!`), which is cut, and reported.
    #[test]
    fn the_naive_loop_cut_by_a_signal_is_reported_on_stderr() {
        common::watchdog(common::TEST_LIMIT);
        let mut child = start("naive_loop", "current_thread");
        child.expect_line("unit 2 start");
        child.signal(libc::SIGINT);
        child.assert_died_by(libc::SIGINT, Duration::from_secs(10));
        let unit = last_started(&child);
        child.assert_not_printed(&format!("unit {unit} done"));
        let stderr = child.stderr();
        assert!(
            stderr.contains("<main task run at tests/bin/plain_child.rs:")
                && stderr.contains("was dropped by a cancel while it held no runner::cancelled()"),
            "{stderr}"
        );
    }
}
