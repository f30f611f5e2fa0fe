//! The Runner lifecycle, ported from CPython's Lib/test/test_asyncio/test_runners.py where
//! it has a Rust meaning.

mod common;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::CountOnDrop;
use runner::{RunError, Runner};

/// Ctrl-C left to the harness; debug mode off whatever `RUNNER_DEBUG` says.
fn quiet() -> Runner {
    Runner::builder()
        .handle_sigint(false)
        .debug(Some(false))
        .build()
}

#[test]
fn run_returns_the_value() {
    common::watchdog(common::TEST_LIMIT);
    assert_eq!(runner::run(async { 42 }).unwrap(), 42);
}

#[test]
fn run_accepts_into_future() {
    common::watchdog(common::TEST_LIMIT);
    struct Ready;
    impl std::future::IntoFuture for Ready {
        type Output = &'static str;
        type IntoFuture = std::future::Ready<&'static str>;
        fn into_future(self) -> Self::IntoFuture {
            std::future::ready("into")
        }
    }
    assert_eq!(runner::run(Ready).unwrap(), "into");
}

#[test]
fn run_propagates_a_panic_with_its_payload() {
    common::watchdog(common::TEST_LIMIT);
    // test_asyncio_run_raises
    let payload = std::panic::catch_unwind(|| runner::run(async { std::panic::panic_any(17u32) }))
        .unwrap_err();
    assert_eq!(payload.downcast_ref::<u32>(), Some(&17));
}

#[test]
fn the_same_runner_runs_again_after_a_panic() {
    common::watchdog(common::TEST_LIMIT);
    let mut runner = quiet();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runner.run(async { panic!("first run fails") })
    }));
    assert_eq!(
        caught.unwrap_err().downcast_ref::<&str>(),
        Some(&"first run fails")
    );
    assert_eq!(runner.run(async { "second" }).unwrap(), "second");
}

#[test]
fn nested_run_is_an_error_with_the_exact_message() {
    common::watchdog(common::TEST_LIMIT);
    // test_asyncio_run_from_running_loop / test_recursive_run
    let mut outer = quiet();
    let (free_fn, method) = outer
        .run(async {
            let free_fn = runner::run(async { 1 }).unwrap_err();
            let mut inner = Runner::new();
            let method = inner.run(async { 2 }).unwrap_err();
            (free_fn, method)
        })
        .unwrap();
    for err in [free_fn, method] {
        assert!(matches!(err, RunError::NestedRun));
        assert_eq!(
            err.to_string(),
            "Runner::run() cannot be called from a running runner: this thread is inside \
             another Runner's run (its main task, one of its tasks, or its close); await the \
             future instead"
        );
    }
}

#[test]
fn nested_run_from_a_spawned_task_on_a_multi_thread_runtime() {
    common::watchdog(common::TEST_LIMIT);
    let mut runner = Runner::builder()
        .handle_sigint(false)
        .loop_factory(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
        })
        .build();
    let err = runner
        .run(async {
            runner::spawn(async { runner::run(async {}).unwrap_err() })
                .await
                .unwrap()
        })
        .unwrap();
    assert!(matches!(err, RunError::NestedRun));
}

#[test]
fn run_from_a_spawn_blocking_thread_is_allowed() {
    common::watchdog(common::TEST_LIMIT);
    let mut runner = quiet();
    let inner = runner
        .run(async {
            runner::spawn_blocking(|| runner::run(async { 5 }))
                .await
                .unwrap()
        })
        .unwrap();
    assert_eq!(inner.unwrap(), 5);
}

#[test]
fn loop_factory_is_called_once_and_its_runtime_runs_the_future() {
    common::watchdog(common::TEST_LIMIT);
    // test_asyncio_run_loop_factory / test_custom_factory / test_set_event_loop_called_once
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let mut runner = Runner::builder()
        .handle_sigint(false)
        .loop_factory(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
        })
        .build();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "Runner::builder().build() creates nothing"
    );
    let handle = runner.get_loop().unwrap();
    assert_eq!(
        handle.runtime_flavor(),
        tokio::runtime::RuntimeFlavor::MultiThread
    );
    let (flavor, id) = runner
        .run(async {
            let h = tokio::runtime::Handle::current();
            (h.runtime_flavor(), h.id())
        })
        .unwrap();
    runner.run(async {}).unwrap();
    assert_eq!(flavor, tokio::runtime::RuntimeFlavor::MultiThread);
    assert_eq!(
        id,
        handle.id(),
        "get_loop() is the handle of the runtime that runs the future"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn loop_factory_accepts_a_tokio_builder() {
    common::watchdog(common::TEST_LIMIT);
    let mut runner = Runner::builder()
        .handle_sigint(false)
        .loop_factory(|| {
            let mut b = tokio::runtime::Builder::new_current_thread();
            b.enable_time();
            b
        })
        .build();
    assert_eq!(runner.run(async { 3 }).unwrap(), 3);
}

#[test]
fn a_failing_loop_factory_is_an_error_not_a_panic() {
    common::watchdog(common::TEST_LIMIT);
    let mut runner = Runner::builder()
        .loop_factory(|| -> std::io::Result<tokio::runtime::Runtime> {
            Err(std::io::Error::other("no runtime for you"))
        })
        .build();
    match runner.run(async {}) {
        Err(RunError::LoopFactory(err)) => assert_eq!(err.to_string(), "no runtime for you"),
        other => panic!("expected LoopFactory, got {other:?}"),
    }
    assert!(matches!(runner.run(async {}), Err(RunError::Closed)));
}

#[test]
fn a_panicking_loop_factory_is_an_error_not_a_panic() {
    common::watchdog(common::TEST_LIMIT);
    let mut runner = Runner::builder()
        .loop_factory(|| -> tokio::runtime::Runtime { panic!("factory exploded") })
        .build();
    match runner.get_loop() {
        Err(RunError::LoopFactory(err)) => assert!(err.to_string().contains("factory exploded")),
        other => panic!("expected LoopFactory, got {other:?}"),
    }
}

#[test]
fn default_loop_is_current_thread() {
    common::watchdog(common::TEST_LIMIT);
    let flavor = runner::run(async { tokio::runtime::Handle::current().runtime_flavor() }).unwrap();
    assert_eq!(flavor, tokio::runtime::RuntimeFlavor::CurrentThread);
}

#[test]
fn debug_flag_explicit_values_win() {
    common::watchdog(common::TEST_LIMIT);
    // test_debug / test_non_debug
    for flag in [true, false] {
        let mut runner = Runner::builder()
            .debug(Some(flag))
            .handle_sigint(false)
            .build();
        assert_eq!(runner.debug(), flag);
        assert_eq!(runner.run(async { runner::debug_enabled() }).unwrap(), flag);
        assert_eq!(runner.debug(), flag);
    }
}

/// Environment variables are process-wide: the `RUNNER_DEBUG` cases run in child processes
/// (this test binary, re-run on one test with the variable set).
#[test]
fn debug_flag_from_runner_debug_env() {
    common::watchdog(common::TEST_LIMIT);
    let cases: [(Option<&str>, bool); 5] = [
        (None, false),
        (Some(""), false),
        (Some("0"), false),
        (Some("1"), true),
        (Some("yes"), true),
    ];
    for (value, expected) in cases {
        // RUNNER_DEBUG_EXPECT tells the child what RUNNER_DEBUG={value:?} must resolve to.
        let expect = expected.to_string();
        let mut env = vec![("RUNNER_DEBUG_EXPECT", expect.as_str())];
        if let Some(v) = value {
            env.push(("RUNNER_DEBUG", v));
        }
        common::run_child("debug_env_child", &env);
    }
}

#[test]
#[ignore = "child process of debug_flag_from_runner_debug_env"]
fn debug_env_child() {
    common::watchdog(common::TEST_LIMIT);
    let expected: bool = std::env::var("RUNNER_DEBUG_EXPECT")
        .unwrap()
        .parse()
        .unwrap();
    // No `debug(..)`: this Runner reads RUNNER_DEBUG, the subject of the test.
    let mut runner = Runner::builder().handle_sigint(false).build();
    assert_eq!(
        runner.run(async { runner::debug_enabled() }).unwrap(),
        expected
    );
    assert_eq!(runner.debug(), expected);
    // An explicit value beats the environment.
    let forced = Runner::builder().debug(Some(!expected)).build();
    assert_eq!(forced.debug(), !expected);
}

#[test]
fn explicit_close_and_double_close() {
    // test_explicit_close / test_double_close: the second close() does nothing at all. The
    // first has things to do (a finalizer to run, a failing task to report) that a second
    // one would show by doing them, or anything else, again.
    common::watchdog(common::TEST_LIMIT);
    let finalized = Arc::new(AtomicUsize::new(0));
    let reports = common::Reports::default();
    let mut runner = reports
        .install(Runner::builder().handle_sigint(false).debug(Some(false)))
        .build();
    let f = finalized.clone();
    runner
        .run(async move {
            runner::at_close(move || async move {
                f.fetch_add(1, Ordering::SeqCst);
            });
            let guard = common::PanicOnDrop("cleanup failed");
            runner::spawn(async move {
                let _guard = guard;
                std::future::pending::<()>().await
            });
        })
        .unwrap();
    runner.close();
    assert!(runner.is_closed());
    let first = reports.take();
    assert_eq!(
        finalized.load(Ordering::SeqCst),
        1,
        "the finalizer ran once"
    );
    assert_eq!(first.len(), 1, "{first:?}");
    runner.close();
    assert!(runner.is_closed());
    assert_eq!(
        finalized.load(Ordering::SeqCst),
        1,
        "the second close ran the finalizer again"
    );
    let second = reports.take();
    assert!(second.is_empty(), "the second close reported: {second:?}");
    let second = reports.take();
    assert!(second.is_empty(), "the second close reported: {second:?}");
    drop(runner);
    assert_eq!(
        finalized.load(Ordering::SeqCst),
        1,
        "drop after close ran it"
    );
    assert!(reports.take().is_empty(), "drop after close reported");
}

#[test]
fn close_on_a_fresh_runner_only_marks_it_closed() {
    common::watchdog(common::TEST_LIMIT);
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let mut runner = Runner::builder()
        .loop_factory(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::runtime::Runtime::new()
        })
        .build();
    runner.close();
    assert!(runner.is_closed());
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert!(matches!(runner.get_loop(), Err(RunError::Closed)));
}

#[test]
fn run_after_close_is_closed_and_never_polls_the_future() {
    common::watchdog(common::TEST_LIMIT);
    // test_second_with_block_raises
    let polled = Rc::new(Cell::new(false));
    let mut runner = quiet();
    runner.run(async {}).unwrap();
    runner.close();
    let flag = polled.clone();
    let err = runner.run(async move { flag.set(true) }).unwrap_err();
    assert!(matches!(err, RunError::Closed));
    assert_eq!(err.to_string(), "Runner is closed");
    assert!(!polled.get());
    assert!(matches!(runner.get_loop(), Err(RunError::Closed)));
}

#[test]
fn drop_closes_and_cancels_leftover_tasks() {
    common::watchdog(common::TEST_LIMIT);
    let dropped = Arc::new(AtomicUsize::new(0));
    {
        let mut runner = quiet();
        let d = dropped.clone();
        runner
            .run(async move {
                let guard = CountOnDrop(d);
                runner::spawn(async move {
                    let _guard = guard;
                    std::future::pending::<()>().await
                });
            })
            .unwrap();
        assert_eq!(dropped.load(Ordering::SeqCst), 0);
    }
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
}

#[test]
fn main_future_need_not_be_send_or_static() {
    common::watchdog(common::TEST_LIMIT);
    let local = Rc::new(Cell::new(1));
    let borrowed = &local;
    let mut runner = quiet();
    let out = runner
        .run(async {
            tokio::task::yield_now().await;
            borrowed.set(borrowed.get() + 1);
            borrowed.get()
        })
        .unwrap();
    assert_eq!(out, 2);
}

#[test]
fn output_needs_no_debug_and_is_never_formatted() {
    common::watchdog(common::TEST_LIMIT);
    // test_no_repr_is_call_on_the_task_result
    struct NoDebug(u8);
    let out = runner::run(async { NoDebug(9) }).unwrap();
    assert_eq!(out.0, 9);
}

#[test]
fn a_pending_task_from_run_one_makes_progress_in_run_two() {
    common::watchdog(common::TEST_LIMIT);
    let mut runner = quiet();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u32>();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    runner
        .run(async move {
            runner::spawn(async move {
                tx.send(1).unwrap();
                go_rx.await.unwrap();
                tx.send(2).unwrap();
            });
            tokio::task::yield_now().await;
        })
        .unwrap();
    let seen = runner
        .run(async move {
            let first = rx.recv().await;
            go_tx.send(()).unwrap();
            let second = rx.recv().await;
            (first, second)
        })
        .unwrap();
    assert_eq!(seen, (Some(1), Some(2)));
}

#[test]
fn run_error_is_a_std_error_with_messages() {
    common::watchdog(common::TEST_LIMIT);
    fn assert_error<E: std::error::Error + Send + Sync + 'static>(_: &E) {}
    let err = RunError::LoopFactory(std::io::Error::other("x"));
    assert_error(&err);
    assert!(std::error::Error::source(&err).is_some());
    assert_eq!(RunError::Closed.to_string(), "Runner is closed");
    assert_eq!(
        RunError::Interrupted.to_string(),
        "the main task was interrupted by Ctrl-C"
    );
    assert_eq!(
        RunError::Terminated.to_string(),
        "the main task was terminated by SIGTERM"
    );
    assert_eq!(
        RunError::Cancelled.to_string(),
        "the main task was cancelled"
    );
    for err in [
        RunError::Interrupted,
        RunError::Terminated,
        RunError::Cancelled,
    ] {
        assert!(std::error::Error::source(&err).is_none(), "{err:?}");
    }
}

#[test]
fn runner_is_send_and_debug() {
    common::watchdog(common::TEST_LIMIT);
    fn assert_send<T: Send>() {}
    assert_send::<Runner>();
    let runner = Runner::builder().debug(Some(true)).build();
    let text = format!("{runner:?}");
    assert!(
        text.contains("created") && text.contains("debug: true"),
        "{text}"
    );
}

#[test]
fn closing_a_runner_inside_another_runners_run_neither_panics_nor_hangs() {
    common::watchdog(common::TEST_LIMIT);
    let reports = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = reports.clone();
    let mut inner = Runner::builder()
        .handle_sigint(false)
        .exception_handler(move |r: &runner::Report| sink.lock().unwrap().push(r.to_string()))
        .build();
    inner
        .run(async { drop(runner::spawn(std::future::pending::<()>())) })
        .unwrap();
    let mut outer = quiet();
    outer
        .run(async move {
            // block_on is impossible here: close() falls back to a background shutdown.
            inner.close();
            assert!(inner.is_closed());
        })
        .unwrap();
    let reports = reports.lock().unwrap();
    assert!(
        reports
            .iter()
            .any(|r| r.contains("from inside a running runtime")),
        "{reports:?}"
    );
}

/// Found by the lifecycle fuzzer: a Runner run and closed inside another Runner's
/// `spawn_blocking` is its own until the end of its close: a plain tokio task that its
/// close's last step drops, and whose destructor asks for the running Runner, finds that
/// Runner, not the one whose blocking job called `close()`.
#[test]
fn a_nested_runners_close_is_its_own_down_to_the_runtimes_shutdown() {
    common::watchdog(common::TEST_LIMIT);
    struct Asks(Arc<std::sync::Mutex<Option<bool>>>);
    impl Drop for Asks {
        fn drop(&mut self) {
            *self.0.lock().unwrap() = Some(runner::debug_enabled());
        }
    }
    // A local loop closes on the blocking thread itself (it cannot go to a helper thread, as
    // the other loops do there), under the blocking job's record.
    for local in [true, false] {
        let seen = Arc::new(std::sync::Mutex::new(None));
        let mut outer = quiet(); // debug off
        let s = seen.clone();
        outer
            .run(async move {
                runner::spawn_blocking(move || {
                    let mut inner = Runner::builder().handle_sigint(false).debug(Some(true));
                    if local {
                        inner = inner.loop_factory(|| {
                            tokio::runtime::Builder::new_current_thread()
                                .enable_all()
                                .build_local(Default::default())
                        });
                    }
                    let mut inner = inner.exception_handler(|_: &runner::Report| {}).build();
                    inner
                        .run(async move {
                            let asks = Asks(s);
                            // Pending until the runtime's shutdown drops it.
                            drop(tokio::spawn(async move {
                                let _asks = asks;
                                std::future::pending::<()>().await
                            }));
                            tokio::task::yield_now().await;
                        })
                        .unwrap();
                    inner.close();
                })
                .await
                .unwrap();
            })
            .unwrap();
        outer.close();
        assert_eq!(
            *seen.lock().unwrap(),
            Some(true),
            "local loop {local}: the destructor found the outer Runner"
        );
    }
}
