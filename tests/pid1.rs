//! The process as PID 1 of its PID namespace, as in a container without an init (DESIGN.md
//! "Containers: the process as PID 1"), for real: `unshare --pid --fork --kill-child
//! <example>` started from here with SIGINT and SIGTERM at their default dispositions,
//! signals sent with kill(2) to the namespaced child's host pid, and the exit status read
//! from `unshare`, which exits with its child's status (and dies by its child's signal,
//! were the child killed by one).
//!
//! The kernel drops a signal that PID 1 sends itself with the default disposition, so
//! "die by the signal" cannot work there: runner exits with 128 + n instead (130, 143),
//! and never aborts (which, dropped too, ends in a SIGSEGV loop in glibc).
//!
//! As root the namespace is `unshare --pid --fork`; without root, an unprivileged user
//! namespace (`unshare --user --map-root-user --pid --fork`). Where neither can be made, the
//! PID 1 tests skip with the reason printed, and fail under `CI=true` (`common::namespace`).
#![cfg(target_os = "linux")]

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use common::child::{reset_signals, Proc, Start};

const EXIT_TIMEOUT: Duration = Duration::from_secs(5);

/// `pid1_child SCENARIO` as PID 1 of a new PID namespace.
struct Pid1 {
    proc: Proc,
    /// The child's pid outside the namespace (its pid inside is 1).
    host_pid: libc::pid_t,
}

impl Pid1 {
    /// `None`: no PID namespace can be made here, and the test has been skipped (see
    /// `common::namespace`); it should return.
    #[track_caller]
    fn start(scenario: &str, env: &[(&str, &str)]) -> Option<Pid1> {
        Pid1::start_example("pid1_child", &[scenario], env)
    }

    #[track_caller]
    fn start_example(name: &str, args: &[&str], env: &[(&str, &str)]) -> Option<Pid1> {
        let mut cmd = common::namespace::pid1_command()?;
        cmd.arg(common::example(name))
            .args(args)
            .envs(env.iter().copied());
        // Reset in `unshare` itself, before it forks and execs the child (which inherits
        // the dispositions and the mask).
        reset_signals(&mut cmd, Start::Default);
        let proc = Proc::start(cmd, format!("unshare --pid --fork {name} {args:?}"));
        let host_pid = child_of(proc.pid());
        Some(Pid1 { proc, host_pid })
    }

    /// Waits for the child's `pid 1` line (it is PID 1 of its namespace), then `ready`.
    fn ready(&mut self) {
        let pid = self.proc.expect_line_starting("pid ");
        assert_eq!(pid, "1", "{}", self.proc.describe());
        self.proc.ready();
    }

    fn signal(&mut self, signal: libc::c_int) {
        let pid = self.host_pid;
        self.proc.signal_pid(pid, signal);
    }

    /// The child's exit status as `unshare` passes it on, within `timeout`.
    fn status(&mut self, timeout: Duration) -> ExitStatus {
        self.proc.finish(timeout)
    }

    /// Asserts an exit with `code` (not a death by a signal: no SIGSEGV, no SIGABRT).
    fn assert_exit_code(&mut self, code: i32, timeout: Duration) {
        let status = self.status(timeout);
        assert!(
            !matches!(status.signal(), Some(libc::SIGSEGV | libc::SIGABRT)),
            "crashed ({status:?}):\n{}",
            self.proc.describe()
        );
        assert_eq!(
            (status.code(), status.signal()),
            (Some(code), None),
            "expected exit status {code}, got {status:?}:\n{}",
            self.proc.describe()
        );
    }
}

/// The one child of `unshare` (its `--fork`ed child, PID 1 inside), by its host pid.
fn child_of(unshare: libc::pid_t) -> libc::pid_t {
    let path = format!("/proc/{unshare}/task/{unshare}/children");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let children = std::fs::read_to_string(&path).unwrap_or_default();
        let pids: Vec<libc::pid_t> = children
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        if let [pid] = pids[..] {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "{path}: no single child after 10 s ({children:?})"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn as_pid1_sigterm_with_handle_sigterm_runs_cleanup_and_finalizer_then_exits_143() {
    let Some(mut p) = Pid1::start("term_on", &[]) else {
        return;
    };
    p.ready();
    p.signal(libc::SIGTERM);
    p.assert_exit_code(143, EXIT_TIMEOUT);
    let at = |p: &Pid1, line: &str| p.proc.seen.iter().position(|l| l == line);
    let observed = at(&p, "cancelled observed");
    let (cleanup, finalizer) = (at(&p, "cleanup done"), at(&p, "finalizer ran"));
    assert!(
        observed.is_some() && cleanup.is_some() && cleanup < finalizer,
        "{}",
        p.proc.describe()
    );
    p.proc.assert_not_printed("slept");
}

#[test]
fn as_pid1_sigint_runs_cleanup_and_finalizer_then_exits_130() {
    let Some(mut p) = Pid1::start("term_on", &[]) else {
        return;
    };
    p.ready();
    p.signal(libc::SIGINT);
    p.assert_exit_code(130, EXIT_TIMEOUT);
    p.proc.assert_printed("cleanup done");
    p.proc.assert_printed("finalizer ran");
}

#[test]
fn as_pid1_sigterm_without_the_option_is_handled_by_default_and_exits_143() {
    let Some(mut p) = Pid1::start("term_default", &[]) else {
        return;
    };
    p.ready();
    p.signal(libc::SIGTERM);
    p.assert_exit_code(143, EXIT_TIMEOUT);
    p.proc.assert_printed("cancelled observed");
    p.proc.assert_printed("cleanup done");
    p.proc.assert_printed("finalizer ran");
}

/// A Runner built by hand handles SIGTERM by default as PID 1 (where the default action
/// cannot run anyway), unlike elsewhere.
#[test]
fn as_pid1_a_runner_built_by_hand_handles_sigterm_by_default_and_exits_143() {
    let Some(mut p) = Pid1::start("term_builder", &[]) else {
        return;
    };
    p.ready();
    p.signal(libc::SIGTERM);
    p.assert_exit_code(143, EXIT_TIMEOUT);
    p.proc.assert_printed("cancelled observed");
    p.proc.assert_printed("cleanup done");
    p.proc.assert_printed("finalizer ran");
}

#[test]
fn as_pid1_handle_sigterm_false_leaves_sigterm_to_the_kernel_which_drops_it() {
    let Some(mut p) = Pid1::start("term_off", &[]) else {
        return;
    };
    p.ready();
    p.signal(libc::SIGTERM);
    // Nobody handles it, and the kernel does not kill PID 1 by a default action.
    p.proc.assert_alive_after(Duration::from_millis(500));
    p.signal(libc::SIGINT);
    p.assert_exit_code(130, EXIT_TIMEOUT);
    p.proc.assert_printed("cleanup done");
}

/// `first` starts a 30 s cleanup; `second` ends the process at once with 128 + its number.
fn second_signal_during_a_long_cleanup(first: libc::c_int, second: libc::c_int) {
    let Some(mut p) = Pid1::start("term_on", &[("CLEANUP_MS", "30000")]) else {
        return;
    };
    p.ready();
    p.signal(first);
    p.proc.expect_line("cancelled observed");
    let sent = Instant::now();
    p.signal(second);
    p.assert_exit_code(128 + second, Duration::from_secs(5));
    let took = sent.elapsed();
    assert!(took < Duration::from_secs(1), "took {took:?}");
    p.proc.assert_not_printed("cleanup done");
    p.proc.assert_not_printed("finalizer ran");
}

#[test]
fn as_pid1_a_second_sigterm_during_a_30_s_cleanup_exits_143_within_1_s() {
    second_signal_during_a_long_cleanup(libc::SIGTERM, libc::SIGTERM);
}

#[test]
fn as_pid1_sigint_during_a_sigterm_cleanup_exits_130_within_1_s() {
    second_signal_during_a_long_cleanup(libc::SIGTERM, libc::SIGINT);
}

#[test]
fn as_pid1_a_second_sigint_during_a_30_s_cleanup_exits_130_within_1_s() {
    second_signal_during_a_long_cleanup(libc::SIGINT, libc::SIGINT);
}

#[test]
fn as_pid1_sigterm_after_a_closed_runner_exits_143() {
    let Some(mut p) = Pid1::start("after_close", &[]) else {
        return;
    };
    p.ready();
    p.signal(libc::SIGTERM);
    p.assert_exit_code(143, EXIT_TIMEOUT);
    p.proc.assert_not_printed("survived");
}

#[test]
fn as_pid1_sigint_after_a_closed_runner_exits_130() {
    let Some(mut p) = Pid1::start("after_close", &[]) else {
        return;
    };
    p.ready();
    p.signal(libc::SIGINT);
    p.assert_exit_code(130, EXIT_TIMEOUT);
    p.proc.assert_not_printed("survived");
}

#[test]
fn as_pid1_sigterm_between_runs_exits_143() {
    let Some(mut p) = Pid1::start("between_runs", &[]) else {
        return;
    };
    p.ready();
    p.signal(libc::SIGTERM);
    p.assert_exit_code(143, EXIT_TIMEOUT);
    p.proc.assert_not_printed("survived");
}

/// The racy path: a signal at a random moment of a loop of short runs (armed, disarming,
/// between runs, fresh Runners), 100 times (50 SIGTERM, 50 SIGINT), two children at a time.
/// Each ends with 143 or 130 (by `Terminated`/`Interrupted` then `die_by_*`, or by the
/// handler between runs) within 5 s: never a crash, never a hang.
#[test]
fn as_pid1_a_signal_at_a_random_moment_of_short_runs_exits_with_128_plus_n_100_of_100_times() {
    const CHILDREN: usize = 100;
    if common::namespace::pid1_command().is_none() {
        return;
    }
    let mut rng = common::Rng::from_env_or_clock("pid1_short_runs");
    let plan: Vec<(Duration, libc::c_int)> = (0..CHILDREN)
        .map(|i| {
            let signal = if i % 2 == 0 {
                libc::SIGTERM
            } else {
                libc::SIGINT
            };
            (rng.duration(Duration::from_millis(30)), signal)
        })
        .collect();
    let failures: Vec<String> = std::thread::scope(|s| {
        let lanes: Vec<_> = plan
            .chunks(CHILDREN / 2)
            .map(|lane| {
                s.spawn(move || {
                    let mut failures = Vec::new();
                    for &(delay, signal) in lane {
                        let mut p = Pid1::start("short_runs", &[]).expect("checked above");
                        p.ready();
                        std::thread::sleep(delay);
                        p.signal(signal);
                        let status = p.proc.wait_for_exit(Duration::from_secs(5));
                        let ok = status.is_some_and(|s| {
                            s.code() == Some(128 + signal) && s.signal().is_none()
                        });
                        if !ok {
                            failures.push(format!(
                                "signal {signal} after {delay:?}: {status:?}\n{}",
                                p.proc.describe()
                            ));
                        }
                    }
                    failures
                })
            })
            .collect();
        lanes
            .into_iter()
            .flat_map(|lane| lane.join().unwrap())
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {CHILDREN} failed; the first:\n{}",
        failures.len(),
        failures[0]
    );
}

/// Not PID 1, the same programs die by the signal itself (WIFSIGNALED), as before.
#[test]
fn not_pid1_sigterm_with_handle_sigterm_still_dies_by_sigterm() {
    let mut p = Proc::example("pid1_child", &["term_on"], Start::Default, &[]);
    let pid = p.expect_line_starting("pid ");
    assert_ne!(pid, "1");
    p.ready();
    p.sigterm();
    p.assert_died_by_sigterm(EXIT_TIMEOUT);
    p.assert_printed("finalizer ran");
}

/// Not PID 1, `#[runner::main]` handles SIGTERM by default too: cleanup, finalizer, then
/// death by SIGTERM.
#[test]
fn not_pid1_runner_main_handles_sigterm_by_default() {
    let mut p = Proc::example("pid1_child", &["term_default"], Start::Default, &[]);
    p.ready();
    p.sigterm();
    p.assert_died_by_sigterm(EXIT_TIMEOUT);
    p.assert_printed("cancelled observed");
    p.assert_printed("cleanup done");
    p.assert_printed("finalizer ran");
}

/// Not PID 1, a Runner built by hand keeps asyncio's default: SIGTERM kills at once, no
/// cleanup.
#[test]
fn not_pid1_a_runner_built_by_hand_does_not_handle_sigterm_by_default() {
    let mut p = Proc::example("pid1_child", &["term_builder"], Start::Default, &[]);
    p.ready();
    p.sigterm();
    p.assert_died_by_sigterm(Duration::from_secs(2));
    p.assert_not_printed("cancelled observed");
    p.assert_not_printed("finalizer ran");
}

/// Not PID 1, `handle_sigterm = false` on `#[runner::main]`: SIGTERM kills at once.
#[test]
fn not_pid1_runner_main_with_handle_sigterm_false_dies_by_sigterm_at_once() {
    let mut p = Proc::example("pid1_child", &["term_off"], Start::Default, &[]);
    p.ready();
    p.sigterm();
    p.assert_died_by_sigterm(Duration::from_secs(2));
    p.assert_not_printed("cancelled observed");
    p.assert_not_printed("finalizer ran");
}

/// As PID 1, a drain that never finishes (`grace_period = "1.5s"`): the grace period ends
/// the process with exit status 143 (not a crash), within the grace period plus half a
/// second, after one final report naming what still runs.
#[test]
fn as_pid1_a_drain_that_never_finishes_exits_143_at_the_grace_period_with_the_final_report() {
    let Some(mut p) = Pid1::start_example("orchestrator_child", &["grace_stuck"], &[]) else {
        return;
    };
    assert_eq!(p.proc.expect_line_starting("pid "), "1");
    let main_at = p.proc.expect_line_starting("main at ");
    p.proc.ready();
    p.signal(libc::SIGTERM);
    let sent = Instant::now();
    p.proc.expect_line("cleanup started");
    p.assert_exit_code(143, Duration::from_secs(5));
    let took = sent.elapsed();
    assert!(
        took >= Duration::from_millis(1450) && took <= Duration::from_millis(2000),
        "ended {took:?} after SIGTERM; the grace period is 1.5 s"
    );
    let stderr = p.proc.stderr();
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("runner: Grace period of 1.5 s after SIGTERM is over")
            && last.contains(&format!("<main task run at {main_at}:")),
        "{stderr}"
    );
}

/// As PID 1, a second signal forces the exit with final words, and exit status 128 + n.
#[test]
fn as_pid1_a_second_signal_exits_with_final_words_and_128_plus_n() {
    let Some(mut p) = Pid1::start_example("orchestrator_child", &["forced"], &[]) else {
        return;
    };
    assert_eq!(p.proc.expect_line_starting("pid "), "1");
    let main_at = p.proc.expect_line_starting("main at ");
    p.proc.ready();
    p.signal(libc::SIGTERM);
    p.proc.expect_line("cleanup started");
    p.signal(libc::SIGINT);
    p.assert_exit_code(130, Duration::from_secs(5));
    let stderr = p.proc.stderr();
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("runner: Forced exit by a second signal (Ctrl-C)")
            && last.contains(&format!("<main task run at {main_at}:")),
        "{stderr}"
    );
}
