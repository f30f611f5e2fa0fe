//! In a `fork()`ed child the signal state starts afresh (DESIGN "A Runner and its thread"):
//! the parent's self-pipe and listener thread are not relied on, so the first Ctrl-C there
//! is the first Ctrl-C, and it never reaches the parent. Pre-fork servers and daemons fork
//! after their setup, which may have run a Runner.
//!
//! Real processes and real `kill(2)`: the test forks a process (A) whose only thread is its
//! main thread, with SIGINT at its default disposition; A runs a Runner once (runner takes
//! SIGINT over and starts its listener), forks B, and arms a run of its own while B sends
//! itself SIGINT inside an armed run. Exit statuses carry the verdict.

#![cfg(target_os = "linux")]

mod common;

use std::time::Duration;

/// B's status: its run returned `Err(Interrupted)`.
const INTERRUPTED: i32 = 42;
/// A's statuses.
const A_OK: i32 = 0;
const B_HUNG: i32 = 10;
const B_WRONG: i32 = 11;
const A_INTERRUPTED: i32 = 12;
const FORK_FAILED: i32 = 13;

/// B: the first Ctrl-C of its first run must cancel its main task.
fn process_b() -> ! {
    let mut runner = runner::Runner::new();
    let result = runner.run(async {
        // SAFETY: kill(2) of our own process.
        unsafe { libc::kill(libc::getpid(), libc::SIGINT) };
        runner::cancelled().await;
    });
    let code = match result {
        Err(runner::RunError::Interrupted) => INTERRUPTED,
        _ => 1,
    };
    // SAFETY: ends the forked process without running the test harness's code.
    unsafe { libc::_exit(code) }
}

/// A: SIGINT at its default, one run to set runner's handling up, then B, then a run of its
/// own that B's Ctrl-C must not reach.
fn process_a() -> ! {
    // SAFETY: plain signal(2) calls, and fork in a process with one thread.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
        libc::signal(libc::SIGTERM, libc::SIG_DFL);
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    runner::run(async {}).unwrap();
    // SAFETY: fork; the child only runs `process_b`, which ends with `_exit`.
    let b = unsafe { libc::fork() };
    if b < 0 {
        unsafe { libc::_exit(FORK_FAILED) };
    }
    if b == 0 {
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
        process_b();
    }
    let mut runner = runner::Runner::new();
    let waited = runner.run(async move {
        // Armed while B runs: the generation of B's run is the same number as this one's.
        let b_status = runner::spawn_blocking(move || {
            common::child::wait_pid_within(b, Duration::from_secs(10))
        })
        .await;
        b_status.unwrap()
    });
    let code = match waited {
        Ok(Some(INTERRUPTED)) => A_OK,
        Ok(Some(_)) => B_WRONG,
        Ok(None) => B_HUNG,
        Err(_) => A_INTERRUPTED,
    };
    unsafe { libc::_exit(code) }
}

#[test]
fn in_a_forked_child_the_first_ctrl_c_is_the_first_ctrl_c_and_never_reaches_the_parent() {
    common::watchdog(common::TEST_LIMIT);
    // Several times: the listener's pipe is read at its own pace.
    for round in 0..10 {
        // SAFETY: fork; the child only runs `process_a`, which ends with `_exit`.
        let a = unsafe { libc::fork() };
        assert!(a >= 0, "fork: {}", std::io::Error::last_os_error());
        if a == 0 {
            process_a();
        }
        let status = common::child::wait_pid_within(a, Duration::from_secs(30));
        let verdict = match status {
            Some(A_OK) => "ok",
            Some(B_HUNG) => "the child's first Ctrl-C was lost: its run hung",
            Some(B_WRONG) => "the child's run did not return Interrupted",
            Some(A_INTERRUPTED) => "the child's Ctrl-C interrupted the parent's run",
            Some(FORK_FAILED) => "fork failed",
            None => "the parent hung",
            Some(_) => "the parent failed otherwise",
        };
        assert_eq!(status, Some(A_OK), "round {round}: {verdict}");
    }
}
