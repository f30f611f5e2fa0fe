//! A child process under test: an example binary started with SIGINT and SIGTERM at their
//! default disposition (or ignored, on request), its stdout read line by line, signals sent
//! with real `kill(2)`, and its exit status checked for death by a given signal.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a child may take to print an expected line before the first signal (it may
/// still be starting up on a slow, loaded machine) ...
pub const STARTUP_LINE_TIMEOUT: Duration = Duration::from_secs(30);
/// ... and after it (a broken handler then fails the test sooner).
pub const LINE_TIMEOUT: Duration = Duration::from_secs(10);

/// The signals a child has its disposition reset for before exec.
const RESET: [libc::c_int; 2] = [libc::SIGINT, libc::SIGTERM];

/// What the child starts with for SIGINT (and SIGTERM).
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Start {
    /// Both at the default disposition, unblocked, whatever `cargo test` itself inherited.
    Default,
    /// SIGINT ignored (as `nohup`/background jobs of a non-interactive shell start), SIGTERM
    /// at its default.
    SigintIgnored,
    /// SIGTERM ignored, SIGINT at its default.
    SigtermIgnored,
}

impl Start {
    fn ignores(self, signal: libc::c_int) -> bool {
        matches!(
            (self, signal),
            (Start::SigintIgnored, libc::SIGINT) | (Start::SigtermIgnored, libc::SIGTERM)
        )
    }
}

/// Sets `cmd` up so the child starts with SIGINT and SIGTERM as `start` says, and unblocked:
/// ignored dispositions and blocked signals survive exec, and a background job of a
/// non-interactive shell (e.g. `cargo test &`) inherits SIGINT ignored.
pub fn reset_signals(cmd: &mut Command, start: Start) {
    // SAFETY: only async-signal-safe calls (signal, sigprocmask) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for signal in RESET {
                let handler = if start.ignores(signal) {
                    libc::SIG_IGN
                } else {
                    libc::SIG_DFL
                };
                if libc::signal(signal, handler) == libc::SIG_ERR {
                    return Err(std::io::Error::last_os_error());
                }
                libc::sigaddset(&mut set, signal);
            }
            libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
}

/// Makes the child die (SIGKILL) when the thread that starts it ends: when the watchdog
/// aborts a hung test binary, or a test panics past its `Proc`, nothing is left running.
/// Start the child from the thread that waits for it.
pub fn die_with_parent(cmd: &mut Command) {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl and getppid are async-signal-safe.
    unsafe {
        let parent = libc::getpid();
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have gone before the prctl: then nobody would kill us.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// Whether `signal` is still pending for process `pid` (sent, not yet delivered to any of
/// its threads); `false` once delivered or discarded, or once the process has died (a
/// signal that kills stays in a zombie's pending set).
#[cfg(target_os = "linux")]
fn is_pending(pid: libc::pid_t, signal: libc::c_int) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    let dead = status
        .lines()
        .any(|l| l.starts_with("State:") && (l.contains("zombie") || l.contains("dead")));
    if dead {
        return false;
    }
    let bit = 1u64 << (signal - 1);
    status
        .lines()
        .filter(|l| l.starts_with("ShdPnd:") || l.starts_with("SigPnd:"))
        .filter_map(|l| u64::from_str_radix(l.split_whitespace().nth(1)?, 16).ok())
        .any(|mask| mask & bit != 0)
}

/// How long a sent signal may stay pending before the test gives up on the child.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// A running child; SIGKILLed and reaped on drop if still alive (e.g. a failed assertion).
pub struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// Every stdout line read so far.
    pub seen: Vec<String>,
    stderr: Option<JoinHandle<String>>,
    stderr_text: Option<String>,
    /// Each stderr line as it arrives, with the moment it was read.
    stderr_lines: Receiver<(Instant, String)>,
    status: Option<ExitStatus>,
    signalled: bool,
}

impl Proc {
    /// `sigint_child SCENARIO`, with both signals at their default.
    pub fn spawn(scenario: &str) -> Proc {
        Proc::spawn_with(scenario, Start::Default)
    }

    /// `sigint_child SCENARIO`, starting with the signals as `start` says.
    pub fn spawn_with(scenario: &str, start: Start) -> Proc {
        Proc::example("sigint_child", &[scenario], start, &[])
    }

    /// Example `name` with `args` and extra environment `env`.
    pub fn example(name: &str, args: &[&str], start: Start, env: &[(&str, &str)]) -> Proc {
        Proc::program(&super::example(name), name, args, start, env)
    }

    /// The program at `path` (called `name` in messages) with `args` and extra environment
    /// `env`, `RUNNER_DEBUG` unset unless `env` sets it.
    pub fn program(
        path: &std::path::Path,
        name: &str,
        args: &[&str],
        start: Start,
        env: &[(&str, &str)],
    ) -> Proc {
        let mut cmd = Command::new(path);
        cmd.args(args).envs(env.iter().copied());
        reset_signals(&mut cmd, start);
        let mut label = name.to_owned();
        for arg in args {
            label.push(' ');
            label.push_str(arg);
        }
        Proc::start(cmd, label)
    }

    /// Starts `cmd` (set up by the caller, e.g. with [`reset_signals`]) with piped stdio,
    /// dying with the test process, and without `RUNNER_DEBUG` unless `cmd` sets it; `label`
    /// names it in failure messages.
    pub fn start(mut cmd: Command, label: String) -> Proc {
        let debug_set = cmd
            .get_envs()
            .any(|(k, v)| k == "RUNNER_DEBUG" && v.is_some());
        if !debug_set {
            cmd.env_remove("RUNNER_DEBUG");
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {label}: {e}"));
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
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, stderr_lines) = mpsc::channel();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                text.push_str(&line);
                text.push('\n');
                let _ = tx.send((Instant::now(), line));
            }
            text
        });
        Proc {
            name: label,
            stdin: child.stdin.take(),
            child,
            lines,
            seen: Vec::new(),
            stderr: Some(stderr),
            stderr_text: None,
            stderr_lines,
            status: None,
            signalled: false,
        }
    }

    pub fn pid(&self) -> libc::pid_t {
        libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t")
    }

    /// Reads stdout lines until one satisfies `want`; returns it. Panics (with the output)
    /// on timeout or EOF.
    pub fn expect_line_where(&mut self, what: &str, want: impl Fn(&str) -> bool) -> String {
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
                    let found = want(&line);
                    self.seen.push(line.clone());
                    if found {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{}: no {what} line within {timeout:?}", self.describe())
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = self.wait_for_exit(Duration::from_secs(5));
                    panic!("{}: stdout closed before {what} line", self.describe())
                }
            }
        }
    }

    /// Reads stdout lines until one equals `want`.
    pub fn expect_line(&mut self, want: &str) {
        self.expect_line_where(&format!("{want:?}"), |l| l == want);
    }

    /// Reads stdout lines until one starts with `prefix`; returns the rest of it.
    pub fn expect_line_starting(&mut self, prefix: &str) -> String {
        let line = self.expect_line_where(&format!("{prefix:?}..."), |l| l.starts_with(prefix));
        line[prefix.len()..].to_owned()
    }

    pub fn ready(&mut self) {
        self.expect_line("ready");
    }

    /// Sends `signal` with kill(2), and returns once the child has taken it: a signal sent
    /// while an earlier one of the same kind is still pending would merge with it, so the
    /// next step (a second signal, a go line) waits for this handshake, not for a sleep.
    pub fn signal(&mut self, signal: libc::c_int) {
        let pid = self.pid();
        self.signal_pid(pid, signal);
    }

    /// Sends `signal` with kill(2) to `pid`, a process of this child's (e.g. the program
    /// that `unshare --fork` started).
    pub fn signal_pid(&mut self, pid: libc::pid_t, signal: libc::c_int) {
        self.signalled = true;
        // SAFETY: plain kill(2) on a process of our child's, alive until our child is reaped.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
        #[cfg(target_os = "linux")]
        {
            let deadline = Instant::now() + DELIVERY_TIMEOUT;
            while is_pending(self.pid(), signal) {
                if Instant::now() >= deadline {
                    panic!(
                        "{}: signal {signal} still pending {DELIVERY_TIMEOUT:?} after kill(2)",
                        self.describe()
                    );
                }
                // Polling /proc for the delivery (no event to wait on): not an ordering sleep.
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }

    /// Reads stderr lines as they come until one satisfies `want`, at most `timeout`;
    /// returns it and when it was read. Panics (with the output) on timeout or EOF.
    pub fn expect_stderr_line_where(
        &mut self,
        what: &str,
        timeout: Duration,
        want: impl Fn(&str) -> bool,
    ) -> (Instant, String) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr_lines.recv_timeout(left) {
                Ok((at, line)) if want(&line) => return (at, line),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "{}: no {what} line on stderr within {timeout:?}",
                        self.describe()
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = self.wait_for_exit(Duration::from_secs(5));
                    panic!("{}: stderr closed before {what} line", self.describe())
                }
            }
        }
    }

    pub fn sigint(&mut self) {
        self.signal(libc::SIGINT);
    }

    pub fn sigterm(&mut self) {
        self.signal(libc::SIGTERM);
    }

    /// Sends a line on the child's stdin (a go signal for scenarios that wait for it).
    pub fn send_go(&mut self) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "go").expect("write to child stdin");
        stdin.flush().expect("flush child stdin");
    }

    /// `Some(status)` once the child has exited within `timeout`.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
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
            // Polling for the exit (std has no wait with a timeout): not an ordering sleep.
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Asserts the child is still running (after giving a signal `grace` to act).
    pub fn assert_alive_after(&mut self, grace: Duration) {
        // A negative check: there is no event for "did not die", only time to let a wrong
        // death happen. Callers order their next step after this with a handshake.
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
    pub fn finish(&mut self, timeout: Duration) -> ExitStatus {
        let Some(status) = self.wait_for_exit(timeout) else {
            panic!(
                "{}: still running {timeout:?} after the signal",
                self.describe()
            );
        };
        self.drain_lines();
        status
    }

    /// Reads the rest of stdout (the child has exited, so the reader reaches EOF promptly).
    pub fn drain_lines(&mut self) {
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
    }

    pub fn assert_died_by(&mut self, signal: libc::c_int, timeout: Duration) {
        let status = self.finish(timeout);
        assert_eq!(
            status.signal(),
            Some(signal),
            "{}: expected death by signal {signal}, got {status:?}",
            self.describe()
        );
    }

    pub fn assert_died_by_sigint(&mut self, timeout: Duration) {
        self.assert_died_by(libc::SIGINT, timeout);
    }

    pub fn assert_died_by_sigterm(&mut self, timeout: Duration) {
        self.assert_died_by(libc::SIGTERM, timeout);
    }

    pub fn assert_exit_0(&mut self, timeout: Duration) {
        let status = self.finish(timeout);
        assert_eq!(
            status.code(),
            Some(0),
            "{}: expected exit 0, got {status:?}",
            self.describe()
        );
    }

    pub fn printed(&self, line: &str) -> bool {
        self.seen.iter().any(|l| l == line)
    }

    pub fn assert_printed(&mut self, line: &str) {
        assert!(
            self.printed(line),
            "{}: missing line {line:?}",
            self.describe()
        );
    }

    pub fn assert_not_printed(&mut self, line: &str) {
        assert!(
            !self.printed(line),
            "{}: unexpected line {line:?}",
            self.describe()
        );
    }

    /// The child's whole stderr, once it has exited.
    pub fn stderr(&mut self) -> String {
        assert!(
            self.status.is_some(),
            "{}: stderr read before exit",
            self.name
        );
        if let Some(handle) = self.stderr.take() {
            self.stderr_text = Some(handle.join().unwrap_or_default());
        }
        self.stderr_text.clone().unwrap_or_default()
    }

    /// Program, stdout so far and (once exited) stderr, for failure messages.
    pub fn describe(&mut self) -> String {
        let stderr = if self.status.is_some() {
            self.stderr()
        } else {
            String::from("<child still running>")
        };
        format!(
            "{:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.name,
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

/// Waits for the forked child `pid` at most `limit` (then SIGKILLs and reaps it): its exit
/// code, or 128 + the signal that ended it; `None` if it had to be killed.
pub fn wait_pid_within(pid: libc::pid_t, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    loop {
        let mut status = 0;
        // SAFETY: waitpid on our own child.
        let done = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if done == pid {
            return Some(if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                128 + libc::WTERMSIG(status)
            });
        }
        if done < 0 || Instant::now() >= deadline {
            // SAFETY: kill and reap our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return None;
        }
        // Polling for the exit (no wait with a timeout): not an ordering sleep.
        std::thread::sleep(Duration::from_millis(2));
    }
}
