//! What `#[runner::test]` does at run time, one behaviour per test.
#![deny(unused_qualifications)]

use std::future::pending;
use std::io;

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
