//! Every example runs and does what its docs say (run as child processes).
#![cfg(unix)]

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn run(name: &str, envs: &[(&str, &str)]) -> (String, String) {
    let mut cmd = Command::new(common::example(name));
    cmd.env_remove("RUNNER_DEBUG");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = common::output_within(
        &mut cmd,
        Duration::from_secs(60),
        &format!("example {name}"),
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{name} failed: {:?}\n{stdout}\n{stderr}",
        out.status
    );
    (stdout, stderr)
}

#[test]
fn hello_prints_from_a_task_and_from_main() {
    let (stdout, _) = run("hello", &[]);
    assert_eq!(stdout, "hello from a task\nhello from runner\n");
}

#[test]
fn many_runs_carries_context_and_tasks_across_runs() {
    let (stdout, _) = run("many_runs", &[]);
    assert!(
        stdout.contains("run 1: the context carried 0 earlier visit(s)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("run 3: the context carried 2 earlier visit(s)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("tasks spawned in runs [1, 2, 3] finished"),
        "{stdout}"
    );
}

#[test]
fn custom_loop_runs_on_the_factory_runtime() {
    let (stdout, _) = run("custom_loop", &[]);
    assert!(stdout.contains("runtime flavor: MultiThread"), "{stdout}");
    assert!(stdout.contains("custom-worker"), "{stdout}");
}

#[test]
fn context_vars_follow_spawned_tasks() {
    let (stdout, _) = run("context_vars", &[]);
    for id in 1..=3 {
        for what in ["handling", "audit written", "blocking lookup done"] {
            let line = format!("[request {id}] {what}");
            assert!(stdout.contains(&line), "missing {line:?} in\n{stdout}");
        }
    }
    assert!(stdout.starts_with("[no request] starting\n"), "{stdout}");
    assert!(
        stdout.ends_with("[no request] done (the main task's context never saw a request id)\n")
    );
}

#[test]
fn debug_slow_names_the_blocking_task_and_not_the_sleeping_one() {
    let (stdout, stderr) = run("debug_slow", &[]);
    assert!(stdout.contains("done"), "{stdout}");
    let reports: Vec<_> = stderr
        .lines()
        .filter(|l| l.starts_with("runner: Executing"))
        .collect();
    assert_eq!(reports.len(), 1, "{stderr}");
    let source = std::fs::read_to_string("examples/debug_slow.rs").unwrap();
    let culprit_line = source
        .lines()
        .position(|l| l.contains("let culprit = runner::spawn"))
        .map(|i| i + 1)
        .unwrap();
    let expected = format!("<task spawned at examples/debug_slow.rs:{culprit_line}:");
    assert!(
        reports[0].contains(&expected),
        "{} lacks {expected}",
        reports[0]
    );
    // The module docs quote the report: keep them true.
    assert!(source.contains(&format!("examples/debug_slow.rs:{culprit_line}:")));
}

/// Starts graceful_shutdown, waits for its `ready` line; returns the child and its lines.
fn start_graceful(cleanup_ms: &str) -> (std::process::Child, mpsc::Receiver<String>) {
    let mut cmd = Command::new(common::example("graceful_shutdown"));
    cmd.env_remove("RUNNER_DEBUG")
        .env("CLEANUP_MS", cleanup_ms)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // SIGINT at its default even under a `cargo test &` that ignores it; gone with us.
    common::child::reset_signals(&mut cmd, common::child::Start::Default);
    common::child::die_with_parent(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line == "ready" => break,
            Ok(_) => {}
            Err(e) => {
                let _ = child.kill();
                panic!("no ready line: {e}");
            }
        }
    }
    (child, rx)
}

fn wait_with_timeout(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("child still running after {limit:?}");
        }
        // Polling for the exit (std has no wait with a timeout): not an ordering sleep.
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn graceful_shutdown_cleans_up_on_ctrl_c_then_dies_by_sigint() {
    let (mut child, lines) = start_graceful("100");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = wait_with_timeout(&mut child, Duration::from_secs(10));
    assert_eq!(status.signal(), Some(libc::SIGINT), "{status:?}");
    let rest: Vec<String> = lines.try_iter().collect();
    let at = |needle: &str| rest.iter().position(|l| l.contains(needle));
    let (shutdown, cleanup, finalizer) = (
        at("Ctrl-C: shutting down"),
        at("cleanup done"),
        at("finalizer: flushed logs"),
    );
    assert!(
        shutdown.is_some() && cleanup.is_some() && finalizer.is_some(),
        "{rest:?}"
    );
    assert!(shutdown < cleanup && cleanup < finalizer, "{rest:?}");
}

#[test]
fn graceful_shutdown_second_ctrl_c_kills_during_a_slow_cleanup() {
    let (mut child, lines) = start_graceful("30000");
    let pid = child.id() as i32;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let line = lines.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(line.contains("shutting down"), "{line}");
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGINT) };
    // Killed within seconds, not after the 30 s cleanup.
    let status = wait_with_timeout(&mut child, Duration::from_secs(5));
    assert_eq!(status.signal(), Some(libc::SIGINT));
    assert!(!lines.try_iter().any(|l| l.contains("cleanup done")));
}
