//! Signals shared with the program's own handlers (issue 22): outside a run that handles a
//! signal, runner steps aside, so a handler of the program's own (tokio's `ctrl_c()` and
//! `signal(..)`) gets every one, registered before or after runner's first run; a program
//! without one keeps the default action. Real child processes
//! (`examples/own_handler_child`, source `tests/bin/own_handler_child.rs`), real kill(2).
#![cfg(unix)]

mod common;

use std::time::Duration;

use common::child::{Proc, Start};

const LINE_GAP: Duration = Duration::from_secs(10);
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

fn spawn(scenario: &str) -> Proc {
    Proc::example("own_handler_child", &[scenario], Start::Default, &[])
}

/// The issue's program: `runner::run` first, then a `handle_sigint(false)` Runner whose
/// main task handles Ctrl-C 5 times; then a default Runner is interrupted by Ctrl-C again;
/// then, outside any run, the program's own handler gets it once more.
fn issue_program(scenario: &str) {
    let mut p = spawn(scenario);
    p.ready();
    for _ in 0..5 {
        p.sigint();
        p.expect_line("got Ctrl-C");
    }
    p.expect_line("own run: Ok(())");
    p.expect_line("ready 2");
    p.sigint();
    p.expect_line("cancelled observed");
    p.expect_line("default run: Err(Interrupted)");
    p.expect_line("ready 3");
    p.sigint();
    p.expect_line("got Ctrl-C outside a run");
    p.assert_exit_0(EXIT_TIMEOUT);
}

#[test]
fn handle_sigint_false_after_runner_run_lets_tokio_ctrl_c_get_5_sigints_in_a_row() {
    issue_program("ctrl_c");
}

#[test]
fn handle_sigint_false_after_runner_run_lets_a_tokio_interrupt_stream_get_5_sigints_in_a_row() {
    issue_program("stream");
}

#[test]
fn handle_sigterm_false_after_a_handling_runner_lets_a_tokio_terminate_stream_get_5_sigterms() {
    let mut p = spawn("sigterm");
    p.expect_line("first run: Ok(())");
    p.ready();
    for _ in 0..5 {
        p.sigterm();
        p.expect_line("got SIGTERM");
    }
    p.expect_line("own run: Ok(())");
    p.expect_line("ready 2");
    p.sigterm();
    p.expect_line("handled run: Err(Terminated)");
    p.assert_exit_0(EXIT_TIMEOUT);
}

/// Beyond the issue: no `handle_sigint(false)` Runner at all, a handler registered after a
/// default Runner's run gets the SIGINTs between runs, and the next default run still
/// handles its own.
#[test]
fn a_handler_registered_after_a_default_runner_gets_every_sigint_between_runs() {
    let mut p = spawn("late_handler");
    p.expect_line("run 1: Ok(())");
    p.ready();
    for _ in 0..3 {
        p.sigint();
        p.expect_line("got Ctrl-C");
    }
    p.expect_line("ready 2");
    p.sigint();
    p.expect_line("run 2: Err(Interrupted)");
    p.assert_exit_0(EXIT_TIMEOUT);
}

/// Stepping aside never leaves SIGINT ignored: without a handler of its own, a program
/// running a `handle_sigint(false)` Runner dies by SIGINT, as by default.
#[test]
fn handle_sigint_false_without_a_handler_of_its_own_dies_by_sigint() {
    let mut p = spawn("no_handler");
    p.ready();
    p.sigint();
    p.assert_died_by_sigint(Duration::from_secs(2));
    p.assert_not_printed("survived");
}

#[test]
fn a_process_with_only_default_runners_still_dies_by_sigint_between_runs() {
    let mut p = spawn("default_only");
    p.expect_line("run 3: Ok(())");
    p.ready();
    p.sigint();
    p.assert_died_by_sigint(Duration::from_secs(2));
    p.assert_not_printed("survived");
}

/// The racy path: 200 SIGINTs, each at a random moment of a loop of short runs (default
/// Runners armed and disarming, fresh ones, a `handle_sigint(false)` one, gaps between)
/// while the program's own tokio handler counts them. Every one reaches that handler,
/// exactly once, whatever runner was doing; some interrupt a run on the way; the process
/// never dies.
#[test]
fn every_sigint_at_a_random_moment_reaches_the_programs_handler_and_never_kills() {
    const SIGNALS: u64 = 200;
    let mut rng = common::Rng::from_env_or_clock("own_handler_fuzz");
    let mut p = spawn("fuzz");
    p.ready();
    for n in 1..=SIGNALS {
        std::thread::sleep(rng.duration(Duration::from_millis(5)));
        p.sigint();
        let got = p.expect_line_starting("got ");
        assert_eq!(got, n.to_string(), "{}", p.describe());
    }
    p.send_go();
    let interrupted: u64 = p
        .expect_line_starting("interrupted runs: ")
        .parse()
        .unwrap();
    p.assert_exit_0(LINE_GAP);
    eprintln!("{interrupted} of {SIGNALS} SIGINTs interrupted a run on their way");
    assert!(
        (1..=SIGNALS).contains(&interrupted),
        "{interrupted} runs interrupted by {SIGNALS} SIGINTs"
    );
}
