//! Ctrl-C handling with real child processes and real `kill(2)` (DESIGN.md "Ctrl-C").
//!
//! Each test runs `examples/sigint_child` (source: `tests/bin/sigint_child.rs`) with one
//! scenario, waits for its `ready` line, sends SIGINT, and checks the exit status and the
//! printed lines.
#![cfg(unix)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a child may take to print an expected line before the first signal (it may
/// still be starting up on a slow, loaded machine) ...
const STARTUP_LINE_TIMEOUT: Duration = Duration::from_secs(30);
/// ... and after it (a broken handler then fails the test sooner).
const LINE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the child starts with for SIGINT.
#[derive(Clone, Copy, PartialEq)]
enum Start {
    /// The default disposition, unblocked (whatever `cargo test` itself inherited).
    Default,
    /// SIGINT ignored, as `nohup`/background jobs of a non-interactive shell do.
    Ignored,
}

/// A running child; SIGKILLed and reaped on drop if still alive (e.g. a failed assertion).
struct Proc {
    scenario: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: Option<JoinHandle<String>>,
    status: Option<ExitStatus>,
    signalled: bool,
}

impl Proc {
    fn spawn(scenario: &'static str) -> Proc {
        Proc::spawn_with(scenario, Start::Default)
    }

    fn spawn_with(scenario: &'static str, start: Start) -> Proc {
        let mut cmd = Command::new(common::example("sigint_child"));
        cmd.arg(scenario)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: only async-signal-safe calls (sigaction, sigprocmask) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // Do not inherit the test runner's SIGINT disposition or mask (ignored
                // dispositions and blocked signals survive exec).
                let handler = match start {
                    Start::Default => libc::SIG_DFL,
                    Start::Ignored => libc::SIG_IGN,
                };
                if libc::signal(libc::SIGINT, handler) == libc::SIG_ERR {
                    return Err(std::io::Error::last_os_error());
                }
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGINT);
                libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("spawn sigint_child");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stderr = child.stderr.take().expect("piped stderr");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Proc {
            scenario,
            stdin: child.stdin.take(),
            child,
            lines,
            seen: Vec::new(),
            stderr: Some(stderr),
            status: None,
            signalled: false,
        }
    }

    /// Reads stdout lines until one equals `want`; panics (with the output) on timeout/EOF.
    fn expect_line(&mut self, want: &str) {
        let timeout = if self.signalled {
            LINE_TIMEOUT
        } else {
            STARTUP_LINE_TIMEOUT
        };
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line == want;
                    self.seen.push(line);
                    if found {
                        return;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{}: no {want:?} line within {timeout:?}", self.describe())
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = self.wait_for_exit(Duration::from_secs(5));
                    panic!("{}: stdout closed before {want:?}", self.describe())
                }
            }
        }
    }

    fn ready(&mut self) {
        self.expect_line("ready");
    }

    fn sigint(&mut self) {
        self.signalled = true;
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: plain kill(2) on our own, not yet reaped, child.
        let rc = unsafe { libc::kill(pid, libc::SIGINT) };
        assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    }

    /// Sends a line on the child's stdin (a go signal for scenarios that wait for it).
    fn send_go(&mut self) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "go").expect("write to child stdin");
        stdin.flush().expect("flush child stdin");
    }

    /// `Some(status)` once the child has exited within `timeout`.
    fn wait_for_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.status.is_some() {
            return self.status;
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.status = Some(status);
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Asserts the child is still running (after giving a signal `grace` to act).
    fn assert_alive_after(&mut self, grace: Duration) {
        std::thread::sleep(grace);
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            self.status = Some(status);
            panic!(
                "{}: exited ({status:?}) but should still run",
                self.describe()
            );
        }
    }

    /// Waits (at most `timeout`) for the exit and collects the rest of stdout.
    fn finish(&mut self, timeout: Duration) -> ExitStatus {
        let started = Instant::now();
        let Some(status) = self.wait_for_exit(timeout) else {
            panic!(
                "{}: still running {timeout:?} after the signal",
                self.describe()
            );
        };
        eprintln!(
            "{}: exited with {status:?} after {:?}",
            self.scenario,
            started.elapsed()
        );
        // The writer is gone: the reader thread reaches EOF promptly.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        status
    }

    fn assert_died_by_sigint(&mut self, timeout: Duration) {
        let status = self.finish(timeout);
        assert_eq!(
            status.signal(),
            Some(libc::SIGINT),
            "{}: expected death by SIGINT, got {status:?}",
            self.describe()
        );
    }

    fn assert_exit_0(&mut self, timeout: Duration) {
        let status = self.finish(timeout);
        assert_eq!(
            status.code(),
            Some(0),
            "{}: expected exit 0, got {status:?}",
            self.describe()
        );
    }

    fn printed(&self, line: &str) -> bool {
        self.seen.iter().any(|l| l == line)
    }

    fn assert_printed(&mut self, line: &str) {
        assert!(
            self.printed(line),
            "{}: missing line {line:?}",
            self.describe()
        );
    }

    fn assert_not_printed(&mut self, line: &str) {
        assert!(
            !self.printed(line),
            "{}: unexpected line {line:?}",
            self.describe()
        );
    }

    /// Scenario, stdout so far and (once exited) stderr, for failure messages.
    fn describe(&mut self) -> String {
        let stderr = match (&self.status, self.stderr.take()) {
            (Some(_), Some(handle)) => handle.join().unwrap_or_default(),
            (_, handle) => {
                self.stderr = handle;
                String::from("<child still running>")
            }
        };
        format!(
            "scenario {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.scenario,
            self.seen.join("\n"),
            stderr
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

const EXIT_TIMEOUT: Duration = Duration::from_secs(5);
const KILL_TIMEOUT: Duration = Duration::from_secs(2);
/// Longer than any of the child's own timed steps, for normal exits.
const NORMAL_EXIT_TIMEOUT: Duration = Duration::from_secs(10);

// 1.
#[test]
fn ctrl_c_drops_an_idle_main_task_and_dies_by_sigint() {
    let mut p = Proc::spawn("idle");
    p.ready();
    p.sigint();
    p.assert_died_by_sigint(EXIT_TIMEOUT);
    p.assert_printed("main dropped");
    p.assert_printed("result: Err(Interrupted)");
    p.assert_printed("closed");
    p.assert_not_printed("slept");
}

// 2.
#[test]
fn ctrl_c_lets_an_observing_main_task_clean_up_asynchronously() {
    let mut p = Proc::spawn("observe");
    p.ready();
    p.sigint();
    p.assert_died_by_sigint(EXIT_TIMEOUT);
    p.assert_printed("cancelled observed");
    p.assert_printed("cleanup done");
    p.assert_printed("result: Err(Interrupted)");
    p.assert_not_printed("slept");
}

// 3.
#[test]
fn second_ctrl_c_kills_a_stuck_main_task() {
    let mut p = Proc::spawn("busy");
    p.ready();
    p.sigint();
    p.assert_alive_after(Duration::from_millis(300));
    p.sigint();
    p.assert_died_by_sigint(KILL_TIMEOUT);
    p.assert_not_printed("loop ended");
    p.assert_not_printed("closing");
}

// 4a.
#[test]
fn ctrl_c_between_runs_kills_by_default() {
    let mut p = Proc::spawn("between_runs");
    p.expect_line("between runs");
    p.ready();
    p.sigint();
    p.assert_died_by_sigint(EXIT_TIMEOUT);
    p.assert_printed("run 1: Ok(())");
    p.assert_not_printed("survived");
}

// 4b.
#[test]
fn ctrl_c_after_close_kills_by_default() {
    let mut p = Proc::spawn("after_close");
    p.expect_line("after close");
    p.ready();
    p.sigint();
    p.assert_died_by_sigint(EXIT_TIMEOUT);
    p.assert_not_printed("survived");
}

// 4c.
#[test]
fn ctrl_c_before_any_run_kills_by_default() {
    let mut p = Proc::spawn("before_run");
    p.ready();
    p.sigint();
    p.assert_died_by_sigint(EXIT_TIMEOUT);
    p.assert_not_printed("survived");
}

// 5.
#[test]
fn ctrl_c_is_ignored_when_the_process_started_with_sigint_ignored() {
    let mut p = Proc::spawn_with("ignored", Start::Ignored);
    p.ready();
    p.sigint();
    // Give a (wrongly) installed handler time to act before letting main finish.
    std::thread::sleep(Duration::from_millis(300));
    p.send_go();
    p.assert_exit_0(NORMAL_EXIT_TIMEOUT);
    p.assert_printed("disposition before: ignored");
    p.assert_printed("main finished");
    p.assert_printed("result: Ok(\"ok\")");
    p.assert_printed("disposition after: ignored");
}

// 6.
#[test]
fn a_handler_installed_before_run_keeps_sigint_and_main_is_not_cancelled() {
    let mut p = Proc::spawn("foreign_handler");
    p.ready();
    p.sigint();
    p.expect_line("handler got it");
    p.expect_line("ready again");
    p.sigint();
    p.assert_exit_0(NORMAL_EXIT_TIMEOUT);
    p.assert_printed("run returned: Ok(\"ok\")");
    p.assert_printed("disposition after: handler");
    p.assert_printed("handler got it again");
}

// 7.
#[test]
fn run_on_a_non_main_thread_installs_nothing() {
    let mut p = Proc::spawn("thread");
    p.ready();
    p.sigint();
    p.assert_died_by_sigint(EXIT_TIMEOUT);
    p.assert_not_printed("cancelled cleanup");
    p.assert_not_printed("joined");
}

// 8.
#[test]
fn handle_sigint_false_installs_nothing() {
    let mut p = Proc::spawn("no_handle");
    p.ready();
    p.sigint();
    p.assert_died_by_sigint(EXIT_TIMEOUT);
    p.assert_not_printed("cancelled cleanup");
    p.assert_not_printed("closing");
}

// 9a.
#[test]
fn second_ctrl_c_during_a_slow_close_finalizer_kills_at_once() {
    let mut p = Proc::spawn("close_finalizer");
    p.ready();
    p.sigint();
    p.expect_line("closing");
    p.expect_line("finalizer started");
    p.sigint();
    p.assert_died_by_sigint(KILL_TIMEOUT);
    p.assert_printed("result: Err(Interrupted)");
    p.assert_not_printed("finalizer done");
    p.assert_not_printed("closed");
}

// 9b.
#[test]
fn second_ctrl_c_during_a_slow_task_cleanup_in_close_kills_at_once() {
    let mut p = Proc::spawn("close_task");
    p.ready();
    p.sigint();
    p.expect_line("closing");
    p.expect_line("task cleanup started");
    p.sigint();
    p.assert_died_by_sigint(KILL_TIMEOUT);
    p.assert_printed("result: Err(Interrupted)");
    p.assert_not_printed("task cleanup done");
    p.assert_not_printed("closed");
}

// 10.
#[test]
fn ctrl_c_in_a_second_run_is_handled_like_the_first() {
    let mut p = Proc::spawn("two_runs");
    p.ready();
    p.sigint();
    p.expect_line("run 1 interrupted");
    p.ready();
    // The first Ctrl-C must not have left SIGINT in "kill" mode for this run.
    p.sigint();
    p.expect_line("run 2 interrupted");
    p.assert_died_by_sigint(EXIT_TIMEOUT);
    p.assert_printed("run 1: Err(Interrupted)");
    p.assert_printed("run 2: Err(Interrupted)");
    assert_eq!(
        p.seen.iter().filter(|l| *l == "main dropped").count(),
        2,
        "{}",
        p.describe()
    );
}

// 11a. test_interrupt_call_soon
#[test]
fn ctrl_c_interrupts_a_main_task_looping_on_yield_now() {
    let mut p = Proc::spawn("yield_loop");
    p.ready();
    p.sigint();
    p.assert_died_by_sigint(EXIT_TIMEOUT);
    p.assert_printed("result: Err(Interrupted)");
}

// 11b. test_interrupt_wait
#[test]
fn ctrl_c_interrupts_a_main_task_awaiting_a_never_ready_future() {
    let mut p = Proc::spawn("pending");
    p.ready();
    p.sigint();
    p.assert_died_by_sigint(EXIT_TIMEOUT);
    p.assert_printed("main dropped");
    p.assert_printed("result: Err(Interrupted)");
}
