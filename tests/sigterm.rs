//! SIGTERM with real child processes and real `kill(2)` (DESIGN.md "SIGTERM"): handled by
//! default under `#[runner::main]` (`handle_sigterm = false` turns it off), opt-in for a
//! `Runner` built by hand (`Builder::handle_sigterm(true)`; on by default only as PID 1,
//! see `tests/pid1.rs`).
//!
//! Scenarios run `examples/sigint_child` (source: `tests/bin/sigint_child.rs`, `term_*`:
//! Runners built by hand) and `examples/sigterm_main` (`tests/bin/sigterm_main.rs`:
//! `#[runner::main]`, with and without `handle_sigterm = false`).
#![cfg(unix)]

mod common;

use std::time::Duration;

use common::child::{Proc, Start};

const EXIT_TIMEOUT: Duration = Duration::from_secs(5);
const KILL_TIMEOUT: Duration = Duration::from_secs(2);
const NORMAL_EXIT_TIMEOUT: Duration = Duration::from_secs(10);

#[test]
fn sigterm_lets_an_observing_main_task_clean_up_and_the_run_returns_terminated() {
    let mut p = Proc::spawn("term_observe");
    p.ready();
    p.sigterm();
    p.assert_died_by_sigterm(EXIT_TIMEOUT);
    p.assert_printed("cancelled observed");
    p.assert_printed("cleanup done");
    p.assert_printed("result: Err(Terminated)");
    p.assert_printed("closed");
    p.assert_not_printed("slept");
}

#[test]
fn runner_main_handles_sigterm_by_default_runs_its_finalizer_then_dies_by_sigterm() {
    let mut p = Proc::example("sigterm_main", &["default"], Start::Default, &[]);
    p.ready();
    p.sigterm();
    p.assert_died_by_sigterm(EXIT_TIMEOUT);
    let at = |line: &str| p.seen.iter().position(|l| l == line);
    let (cleanup, finalizer) = (at("cleanup done"), at("finalizer ran"));
    assert!(
        cleanup.is_some() && finalizer.is_some() && cleanup < finalizer,
        "{}",
        p.describe()
    );
    p.assert_not_printed("slept");
}

#[test]
fn second_sigterm_during_cleanup_kills_at_once() {
    let mut p = Proc::spawn("term_slow_cleanup");
    p.ready();
    p.sigterm();
    p.expect_line("cancelled observed");
    p.sigterm();
    p.assert_died_by_sigterm(KILL_TIMEOUT);
    p.assert_not_printed("cleanup done");
    p.assert_not_printed("closing");
}

#[test]
fn sigint_after_sigterm_kills_at_once() {
    let mut p = Proc::spawn("term_slow_cleanup");
    p.ready();
    p.sigterm();
    p.expect_line("cancelled observed");
    p.sigint();
    p.assert_died_by_sigint(KILL_TIMEOUT);
    p.assert_not_printed("cleanup done");
    p.assert_not_printed("closing");
}

// SIGINT first (handled: the cleanup starts), then SIGTERM: the second signal kills, by
// SIGTERM, whichever the first was.
#[test]
fn sigterm_after_sigint_kills_at_once() {
    let mut p = Proc::spawn("term_slow_cleanup");
    p.ready();
    p.sigint();
    p.expect_line("cancelled observed");
    p.sigterm();
    p.assert_died_by_sigterm(KILL_TIMEOUT);
    p.assert_not_printed("cleanup done");
    p.assert_not_printed("closing");
}

// `handle_sigterm(true)` on a thread that is not the main thread installs nothing: SIGTERM
// keeps its default and the observing main task never sees it.
#[test]
fn sigterm_to_a_runner_on_a_non_main_thread_kills_by_default() {
    let mut p = Proc::spawn("term_thread");
    p.ready();
    p.sigterm();
    p.assert_died_by_sigterm(KILL_TIMEOUT);
    p.assert_not_printed("cancelled cleanup");
    p.assert_not_printed("joined");
}

/// `Runner::new()` keeps asyncio's default: SIGINT only (a library that calls `Runner::run`
/// must not take SIGTERM over). Not PID 1, SIGTERM then kills at once.
#[test]
fn a_runner_built_by_hand_leaves_sigterm_alone_by_default() {
    let mut p = Proc::spawn("term_off");
    p.ready();
    p.sigterm();
    p.assert_died_by_sigterm(KILL_TIMEOUT);
    p.assert_not_printed("cancelled cleanup");
    p.assert_not_printed("closing");
}

#[test]
fn sigterm_between_runs_kills_by_default() {
    let mut p = Proc::spawn("term_between_runs");
    p.ready();
    p.sigterm();
    p.assert_died_by_sigterm(KILL_TIMEOUT);
    p.assert_printed("run 1: Ok(())");
    p.assert_not_printed("survived");
}

#[test]
fn a_process_started_with_sigterm_ignored_keeps_it_ignored() {
    let mut p = Proc::spawn_with("term_ignored", Start::SigtermIgnored);
    p.ready();
    // Returns once the signal is no longer pending (discarded, or delivered to a wrongly
    // installed handler).
    p.sigterm();
    // A negative check: a wrongly installed handler's cancel gets time to act before main
    // is let finish.
    p.assert_alive_after(Duration::from_millis(300));
    p.send_go();
    p.assert_exit_0(NORMAL_EXIT_TIMEOUT);
    p.assert_printed("disposition before: ignored");
    p.assert_printed("main finished");
    p.assert_not_printed("cancelled observed");
    p.assert_printed("result: Ok(\"ok\")");
    p.assert_printed("disposition after: ignored");
}

/// `#[runner::main(handle_sigterm = false)]`: SIGTERM keeps its default action and kills at
/// once, with no cleanup (not PID 1; as PID 1 the kernel drops it, see `tests/pid1.rs`).
#[test]
fn runner_main_with_handle_sigterm_false_dies_by_sigterm_at_once_without_cleanup() {
    let mut p = Proc::example("sigterm_main", &["off"], Start::Default, &[]);
    p.ready();
    p.sigterm();
    p.assert_died_by_sigterm(KILL_TIMEOUT);
    p.assert_not_printed("cancelled observed");
    p.assert_not_printed("finalizer ran");
    // A Ctrl-C is still handled: the same program cleans up on SIGINT.
    let mut p = Proc::example("sigterm_main", &["off"], Start::Default, &[]);
    p.ready();
    p.sigint();
    p.assert_died_by_sigint(EXIT_TIMEOUT);
    p.assert_printed("cleanup done");
    p.assert_printed("finalizer ran");
}
