//! What `#[runner::test]` does at run time, one behaviour per test.
#![deny(unused_qualifications)]

mod common;

use std::future::pending;
use std::io;
use std::rc::Rc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::runtime::{Handle, Runtime, RuntimeFlavor};

fn flavor() -> RuntimeFlavor {
    Handle::current().runtime_flavor()
}

#[runner::test]
async fn runs_on_a_current_thread_runtime_by_default() {
    common::watchdog(common::TEST_LIMIT);
    assert_eq!(flavor(), RuntimeFlavor::CurrentThread);
}

#[runner::test(flavor = "current_thread")]
async fn current_thread_flavor_runs_on_a_current_thread_runtime() {
    common::watchdog(common::TEST_LIMIT);
    assert_eq!(flavor(), RuntimeFlavor::CurrentThread);
}

#[runner::test(flavor = "multi_thread")]
async fn multi_thread_flavor_runs_on_a_multi_thread_runtime() {
    common::watchdog(common::TEST_LIMIT);
    assert_eq!(flavor(), RuntimeFlavor::MultiThread);
}

#[runner::test(flavor = "local")]
async fn local_flavor_runs_tokio_spawn_local_in_the_body_and_in_plain_tasks() {
    common::watchdog(common::TEST_LIMIT);
    // tokio's `LocalRuntime` is a current-thread runtime that also takes local tasks.
    assert_eq!(flavor(), RuntimeFlavor::CurrentThread);
    let rc = Rc::new(40); // not Send
    let own = tokio::task::spawn_local({
        let rc = rc.clone();
        async move {
            tokio::task::yield_now().await;
            *rc + 1
        }
    });
    // A plain tokio task (Send) may start local tasks too: it runs on the same thread.
    let from_plain = tokio::spawn(async {
        tokio::task::spawn_local(async { *Rc::new(1) })
            .await
            .unwrap()
    });
    let from_runner = runner::spawn_local(async move { *rc - 40 });
    let sum = own.await.unwrap() + from_plain.await.unwrap() + from_runner.await.unwrap();
    assert_eq!(sum, 42);
}

#[runner::test]
async fn a_runtime_has_no_name_by_default() {
    common::watchdog(common::TEST_LIMIT);
    assert_eq!(Handle::current().name(), None);
}

#[runner::test(name = "my-test-runtime")]
async fn name_names_the_runtime() {
    common::watchdog(common::TEST_LIMIT);
    assert_eq!(flavor(), RuntimeFlavor::CurrentThread);
    assert_eq!(Handle::current().name(), Some("my-test-runtime"));
}

#[runner::test(flavor = "multi_thread", worker_threads = 2, name = "two workers")]
async fn name_names_a_multi_thread_runtime() {
    common::watchdog(common::TEST_LIMIT);
    assert_eq!(flavor(), RuntimeFlavor::MultiThread);
    assert_eq!(Handle::current().metrics().num_workers(), 2);
    assert_eq!(Handle::current().name(), Some("two workers"));
}

#[runner::test(flavor = "local", name = " local-rt ", timeout = "5s")]
async fn name_names_a_local_runtime_as_written() {
    common::watchdog(common::TEST_LIMIT);
    assert_eq!(Handle::current().name(), Some(" local-rt "));
    let value = tokio::task::spawn_local(async { *Rc::new(7) })
        .await
        .unwrap();
    assert_eq!(value, 7);
}

#[runner::test(flavor = "multi_thread", worker_threads = 3)]
async fn worker_threads_sets_the_number_of_workers() {
    common::watchdog(common::TEST_LIMIT);
    assert_eq!(flavor(), RuntimeFlavor::MultiThread);
    assert_eq!(Handle::current().metrics().num_workers(), 3);
}

#[runner::test(debug = true)]
async fn debug_true_is_seen_inside() {
    common::watchdog(common::TEST_LIMIT);
    assert!(runner::debug_enabled());
}

#[runner::test(debug = false)]
async fn debug_false_is_seen_inside() {
    common::watchdog(common::TEST_LIMIT);
    assert!(!runner::debug_enabled());
}

#[runner::test(timeout = "200ms")]
#[should_panic(expected = "timed out after 200ms")]
async fn timeout_fails_a_test_that_runs_longer() {
    common::watchdog(common::TEST_LIMIT);
    pending::<()>().await;
}

#[runner::test(timeout = "200ms")]
#[should_panic(expected = "<task spawned at tests/macros.rs:")]
async fn timeout_names_the_spawn_location_of_pending_tasks() {
    common::watchdog(common::TEST_LIMIT);
    let _stuck = runner::spawn(pending::<()>());
    pending::<()>().await;
}

#[runner::test(timeout = "1.5s")]
#[should_panic(expected = "timed out after 1.5s (timeout = \"1.5s\")")]
async fn timeout_takes_decimals_and_the_message_quotes_them_as_written() {
    common::watchdog(common::TEST_LIMIT);
    pending::<()>().await;
}

#[runner::test(timeout = "0.25s")]
#[should_panic(expected = "timed out after 0.25s (timeout = \"0.25s\")")]
async fn timeout_message_quotes_the_limit_as_it_was_written() {
    common::watchdog(common::TEST_LIMIT);
    pending::<()>().await;
}

#[runner::test(timeout = "100ms")]
#[should_panic(expected = "over its timeout of 100ms (timeout = \"100ms\")")]
async fn timeout_fails_a_body_that_overruns_it_by_blocking() {
    common::watchdog(common::TEST_LIMIT);
    // sleep: a body that blocks its thread past the timeout, the behaviour under test.
    std::thread::sleep(Duration::from_millis(400));
}

#[test]
fn timeout_failure_of_a_blocking_body_names_how_long_it_took() {
    common::watchdog(common::TEST_LIMIT);
    let start = Instant::now();
    let panic = std::panic::catch_unwind(timeout_fails_a_body_that_overruns_it_by_blocking)
        .expect_err("the blocking body must fail its test");
    let elapsed = start.elapsed().as_secs_f64();
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    let took: f64 = message
        .strip_prefix("test took ")
        .and_then(|rest| rest.split_once("s,"))
        .and_then(|(seconds, _)| seconds.parse().ok())
        .unwrap_or_else(|| panic!("no duration in {message:?}"));
    assert!(
        (0.4..=elapsed).contains(&took),
        "took {took}s, blocked 0.4s, whole call {elapsed}s: {message}"
    );
}

static SLOW_REPORTS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn record_slow_report(report: &runner::Report) {
    SLOW_REPORTS.lock().unwrap().push(report.to_string());
}

#[runner::test(
    debug = true,
    slow_callback_duration = "30ms",
    exception_handler = record_slow_report
)]
async fn slow_callback_duration_and_a_handler_path_set_the_runner() {
    common::watchdog(common::TEST_LIMIT);
    // Under the 100 ms default, over the 30 ms set here.
    // sleep: a poll that blocks the thread, for a slow-poll report.
    std::thread::sleep(Duration::from_millis(60));
    tokio::task::yield_now().await;
    let reports = SLOW_REPORTS.lock().unwrap().clone();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert!(
        reports[0].starts_with("Executing <main task"),
        "{reports:?}"
    );
}

static CLOSURE_REPORTS: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[runner::test(
    debug = true,
    slow_callback_duration = "0.02s",
    exception_handler = |report: &runner::Report| CLOSURE_REPORTS.lock().unwrap().push(report.to_string())
)]
async fn exception_handler_takes_a_closure() {
    common::watchdog(common::TEST_LIMIT);
    // sleep: a poll that blocks the thread, for a slow-poll report.
    std::thread::sleep(Duration::from_millis(60));
    tokio::task::yield_now().await;
    let reports = CLOSURE_REPORTS.lock().unwrap().clone();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert!(
        reports[0].starts_with("Executing <main task"),
        "{reports:?}"
    );
}

#[runner::test(timeout = "5s")]
async fn timeout_lets_a_quick_test_pass() {
    common::watchdog(common::TEST_LIMIT);
    tokio::task::yield_now().await;
}

#[runner::test]
#[should_panic(expected = "boom")]
async fn should_panic_passes_through() {
    common::watchdog(common::TEST_LIMIT);
    tokio::task::yield_now().await;
    panic!("boom");
}

#[runner::test]
#[ignore = "checks that #[ignore] passes through: running it fails"]
async fn ignore_passes_through() {
    common::watchdog(common::TEST_LIMIT);
    panic!("an ignored test ran");
}

#[runner::test]
async fn result_return_type_works_with_question_mark() -> Result<(), std::num::ParseIntError> {
    common::watchdog(common::TEST_LIMIT);
    let n: u32 = "42".parse()?;
    assert_eq!(n, 42);
    Ok(())
}

#[runner::test]
async fn return_in_the_body_returns_from_the_test() {
    common::watchdog(common::TEST_LIMIT);
    if flavor() == RuntimeFlavor::CurrentThread {
        return;
    }
    unreachable!("the default runtime is current-thread");
}

fn two_workers() -> io::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

#[runner::test(loop_factory = two_workers)]
async fn loop_factory_path_builds_the_runtime() {
    common::watchdog(common::TEST_LIMIT);
    assert_eq!(flavor(), RuntimeFlavor::MultiThread);
    assert_eq!(Handle::current().metrics().num_workers(), 2);
}

#[runner::test(loop_factory = || {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(1).enable_all();
    builder
})]
async fn loop_factory_closure_builds_the_runtime() {
    common::watchdog(common::TEST_LIMIT);
    assert_eq!(flavor(), RuntimeFlavor::MultiThread);
    assert_eq!(Handle::current().metrics().num_workers(), 1);
}

/// The close after the body is what the key bounds, and only the caller of the test fn
/// sees it: `shutdown_timeout_key_bounds_close_and_its_report_names_it` runs this in a child.
#[runner::test(shutdown_timeout = "100ms")]
#[ignore = "child process of shutdown_timeout_key_bounds_close_and_its_report_names_it"]
async fn child_shutdown_timeout_key() {
    common::watchdog(common::TEST_LIMIT);
    // The task sees the cancel request and keeps running; without the short shutdown
    // timeout, closing the Runner would wait the default 300 s for it.
    let (observing, is_observing) = tokio::sync::oneshot::channel();
    drop(runner::spawn(async move {
        let cancelled = runner::cancelled();
        observing.send(()).unwrap();
        cancelled.await;
        pending::<()>().await;
    }));
    is_observing.await.unwrap();
}

#[test]
fn shutdown_timeout_key_bounds_close_and_its_report_names_it() {
    common::watchdog(common::TEST_LIMIT);
    let started = Instant::now();
    let (_, stderr) =
        common::run_child_within("child_shutdown_timeout_key", &[], Duration::from_secs(30));
    let took = started.elapsed();
    // The bound is the behaviour: 100 ms set, against the default 300 s.
    assert!(
        took < Duration::from_secs(5),
        "the child test took {took:?}"
    );
    let report = stderr
        .lines()
        .find(|l| l.starts_with("runner: Runner shutdown: 1 cancelled task(s)"))
        .unwrap_or_else(|| panic!("no shutdown-timeout report in:\n{stderr}"));
    assert!(
        report.contains("after the shutdown timeout of 100ms"),
        "{report}"
    );
}

mod m {
    pub use ::runner as r;
}

/// `crate` reaching runner through a re-export (a renamed dependency is in
/// tests/attribute_fixtures.rs), with a closure loop factory and inner attributes.
#[m::r::test(crate = "m::r", loop_factory = || {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
})]
async fn crate_key_reaches_runner_through_a_reexport() {
    #![allow(unused_variables)]
    common::watchdog(common::TEST_LIMIT);
    let unused = "inner attributes apply to the whole fn";
    // The closure built this runtime.
    assert_eq!(flavor(), RuntimeFlavor::MultiThread);
    assert_eq!(Handle::current().metrics().num_workers(), 1);
    assert_eq!(m::r::spawn(async { 6 * 7 }).await.ok(), Some(42));
}

static EVERY_KEY_REPORTS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Every key of `#[runner::test]` at once (this was a trybuild pass case, where a `#[test]`
/// fn is compiled out and so never type-checked); what can be seen from inside is checked
/// here, the handler by `every_test_key_reports_to_its_handler`.
#[runner::test(
    debug = false,
    flavor = "current_thread",
    shutdown_timeout = "500ms",
    shutdown_report_after = "250ms",
    timeout = "2.5m",
    slow_callback_duration = "0.5s",
    exception_handler = |report: &runner::Report| EVERY_KEY_REPORTS.lock().unwrap().push(report.to_string()),
    crate = "runner"
)]
async fn every_test_key_at_once() {
    common::watchdog(common::TEST_LIMIT);
    assert!(!runner::debug_enabled());
    assert_eq!(flavor(), RuntimeFlavor::CurrentThread);
    // Reported at close, after the body: to the handler set above, which the caller reads.
    runner::at_close(|| async { panic!("finalizer failed on purpose") });
}

#[test]
fn every_test_key_reports_to_its_handler() {
    common::watchdog(common::TEST_LIMIT);
    every_test_key_at_once();
    let reports = EVERY_KEY_REPORTS.lock().unwrap().clone();
    assert!(
        reports
            .iter()
            .any(|r| r.contains("at_close finalizer") && r.contains("finalizer failed on purpose")),
        "{reports:?}"
    );
}

#[runner::test(flavor = "multi_thread")]
async fn multi_thread_without_a_worker_count() {
    common::watchdog(common::TEST_LIMIT);
    assert_eq!(flavor(), RuntimeFlavor::MultiThread);
}

#[runner::test(loop_factory = two_workers, timeout = "1s")]
async fn path_factory_with_a_result_return_type() -> Result<(), io::Error> {
    common::watchdog(common::TEST_LIMIT);
    assert_eq!(Handle::current().metrics().num_workers(), 2);
    let n: u32 = "7".parse().map_err(io::Error::other)?;
    assert_eq!(n, 7);
    Ok(())
}

/// Doc comments and lint attributes pass through to the test the attribute makes (a doc
/// comment is the outer attribute `#[doc = ".."]`). `overflowing_literals` is deny-by-default:
/// this file compiles only if the `allow` reaches the body, and the literal then wraps.
/// (`#[should_panic]` and `#[ignore]` are checked at run time above; the same attributes on
/// `#[runner::main]`, set to deny, by tests/ui/fail/lint_attributes_reach_the_body.rs.)
#[runner::test]
#[allow(overflowing_literals)]
async fn an_outer_lint_attribute_reaches_the_body() {
    common::watchdog(common::TEST_LIMIT);
    let wrapped: u8 = 256;
    assert_eq!(wrapped, 0);
}

/// `#![...]` at the top of the body applies to the body, as without the attribute.
#[runner::test]
async fn an_inner_lint_attribute_reaches_the_body() {
    #![allow(overflowing_literals)]
    common::watchdog(common::TEST_LIMIT);
    let wrapped: i8 = 128;
    assert_eq!(wrapped, i8::MIN);
}

#[runner::test]
async fn spawned_tasks_run_on_the_runner() {
    common::watchdog(common::TEST_LIMIT);
    let task = runner::spawn(async { 6 * 7 });
    assert_eq!(task.await.ok(), Some(42));
}
