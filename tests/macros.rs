//! What `#[runner::test]` does at run time, one behaviour per test.
#![deny(unused_qualifications)]

use std::future::pending;
use std::io;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::runtime::{Handle, Runtime, RuntimeFlavor};

fn flavor() -> RuntimeFlavor {
    Handle::current().runtime_flavor()
}

#[runner::test]
async fn runs_on_a_current_thread_runtime_by_default() {
    assert_eq!(flavor(), RuntimeFlavor::CurrentThread);
}

#[runner::test(flavor = "current_thread")]
async fn current_thread_flavor_runs_on_a_current_thread_runtime() {
    assert_eq!(flavor(), RuntimeFlavor::CurrentThread);
}

#[runner::test(flavor = "multi_thread")]
async fn multi_thread_flavor_runs_on_a_multi_thread_runtime() {
    assert_eq!(flavor(), RuntimeFlavor::MultiThread);
}

#[runner::test(flavor = "multi_thread", worker_threads = 3)]
async fn worker_threads_sets_the_number_of_workers() {
    assert_eq!(flavor(), RuntimeFlavor::MultiThread);
    assert_eq!(Handle::current().metrics().num_workers(), 3);
}

#[runner::test(debug = true)]
async fn debug_true_is_seen_inside() {
    assert!(runner::debug_enabled());
}

#[runner::test(debug = false)]
async fn debug_false_is_seen_inside() {
    assert!(!runner::debug_enabled());
}

#[runner::test(timeout = "200ms")]
#[should_panic(expected = "timed out after 200ms")]
async fn timeout_fails_a_test_that_runs_longer() {
    pending::<()>().await;
}

#[runner::test(timeout = "200ms")]
#[should_panic(expected = "<task spawned at tests/macros.rs:")]
async fn timeout_names_the_spawn_location_of_pending_tasks() {
    let _stuck = runner::spawn(pending::<()>());
    pending::<()>().await;
}

#[runner::test(timeout = "1.5s")]
#[should_panic(expected = "timed out after 1.5s (timeout = \"1.5s\")")]
async fn timeout_takes_decimals_and_the_message_quotes_them_as_written() {
    pending::<()>().await;
}

#[runner::test(timeout = "0.25s")]
#[should_panic(expected = "timed out after 250ms (timeout = \"250ms\")")]
async fn timeout_message_quotes_the_limit_in_a_form_the_attribute_accepts() {
    pending::<()>().await;
}

#[runner::test(timeout = "100ms")]
#[should_panic(expected = "over its timeout of 100ms (timeout = \"100ms\")")]
async fn timeout_fails_a_body_that_overruns_it_by_blocking() {
    std::thread::sleep(Duration::from_millis(400));
}

#[test]
fn timeout_failure_of_a_blocking_body_names_how_long_it_took() {
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
    // Under the 100 ms default, over the 30 ms set here.
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
    tokio::task::yield_now().await;
}

#[runner::test]
#[should_panic(expected = "boom")]
async fn should_panic_passes_through() {
    tokio::task::yield_now().await;
    panic!("boom");
}

#[runner::test]
#[ignore = "checks that #[ignore] passes through: running it fails"]
async fn ignore_passes_through() {
    panic!("an ignored test ran");
}

#[runner::test]
async fn result_return_type_works_with_question_mark() -> Result<(), std::num::ParseIntError> {
    let n: u32 = "42".parse()?;
    assert_eq!(n, 42);
    Ok(())
}

#[runner::test]
async fn return_in_the_body_returns_from_the_test() {
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
    assert_eq!(flavor(), RuntimeFlavor::MultiThread);
    assert_eq!(Handle::current().metrics().num_workers(), 2);
}

#[runner::test(loop_factory = || {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(1).enable_all();
    builder
})]
async fn loop_factory_closure_builds_the_runtime() {
    assert_eq!(flavor(), RuntimeFlavor::MultiThread);
    assert_eq!(Handle::current().metrics().num_workers(), 1);
}

#[runner::test(shutdown_timeout = "100ms")]
async fn shutdown_timeout_bounds_the_wait_for_a_task_that_ignores_cancellation() {
    // The task sees the cancel request and keeps running; without the short shutdown
    // timeout, closing the Runner would wait the default 300 s for it.
    drop(runner::spawn(async {
        let cancelled = runner::cancelled();
        cancelled.await;
        pending::<()>().await;
    }));
    tokio::task::yield_now().await;
}

#[runner::test(crate = "runner")]
async fn crate_key_names_the_runner_crate() {
    assert_eq!(flavor(), RuntimeFlavor::CurrentThread);
}

/// Doc comments and lint attributes pass through.
#[runner::test]
#[allow(clippy::bool_assert_comparison)]
async fn outer_attributes_pass_through() {
    assert_eq!(true, true);
}

#[runner::test]
async fn inner_attributes_apply_to_the_body() {
    #![allow(clippy::bool_assert_comparison)]
    assert_eq!(true, true);
}

#[runner::test]
async fn spawned_tasks_run_on_the_runner() {
    let task = runner::spawn(async { 6 * 7 });
    assert_eq!(task.await.ok(), Some(42));
}
