//! systemd's notify protocol for real (DESIGN.md "Shutdown that fits the orchestrator"):
//! the test binds a datagram socket as systemd does for a `Type=notify` unit, starts the
//! child (`examples/orchestrator_child`, source `tests/bin/orchestrator_child.rs`) with
//! `NOTIFY_SOCKET` (and `WATCHDOG_USEC`) pointing at it, and reads what arrives: `READY=1`
//! from `runner::notify_ready()`, `STOPPING=1` at the first signal, `STATUS=` with each
//! progress report, and `WATCHDOG=1` pings from the Runner's loop, which stop while a poll
//! blocks it.
#![cfg(target_os = "linux")]

mod common;

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::child::{Proc, Start};

const WATCHDOG: &str = "WATCHDOG=1";

/// The listening end systemd would hold: every datagram, with the moment it arrived.
struct Systemd {
    received: Arc<Mutex<Vec<(Instant, String)>>>,
    stop: Arc<AtomicBool>,
    reader: Option<std::thread::JoinHandle<()>>,
    path: Option<PathBuf>,
    /// What `NOTIFY_SOCKET` says.
    name: String,
}

impl Systemd {
    /// A socket at a path of our own, as systemd's `/run/systemd/notify`.
    fn at_path() -> Systemd {
        let dir = std::env::temp_dir();
        let path = dir.join(format!(
            "runner-notify-{}-{:?}.sock",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_file(&path);
        let sock = UnixDatagram::bind(&path).expect("bind the notify socket");
        let name = path.to_str().expect("a UTF-8 temp path").to_owned();
        Systemd::listen(sock, Some(path), name)
    }

    /// A socket with an abstract name (`@...`), as systemd uses for some units.
    fn abstract_name() -> Systemd {
        let name = format!(
            "runner-notify-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        );
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let sock = UnixDatagram::bind_addr(&addr).expect("bind the abstract notify socket");
        Systemd::listen(sock, None, format!("@{name}"))
    }

    fn listen(sock: UnixDatagram, path: Option<PathBuf>, name: String) -> Systemd {
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (received, stop) = (received.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(n) = sock.recv(&mut buf) {
                        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                        received.lock().unwrap().push((Instant::now(), text));
                    }
                }
            })
        };
        Systemd {
            received,
            stop,
            reader: Some(reader),
            path,
            name,
        }
    }

    fn messages(&self) -> Vec<(Instant, String)> {
        self.received.lock().unwrap().clone()
    }

    /// Waits (at most 10 s) until `count` messages satisfy `want`.
    fn wait_for(&self, what: &str, count: usize, want: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let seen = self.messages().iter().filter(|(_, m)| want(m)).count();
            if seen >= count {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{seen} of {count} {what} within 10 s: {:?}",
                self.texts()
            );
            // Polling what the reader thread collected: not an ordering sleep.
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn texts(&self) -> Vec<String> {
        self.messages().into_iter().map(|(_, m)| m).collect()
    }

    fn pings(&self) -> Vec<Instant> {
        self.messages()
            .into_iter()
            .filter(|(_, m)| m == WATCHDOG)
            .map(|(at, _)| at)
            .collect()
    }
}

impl Drop for Systemd {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn child(scenario: &str, env: &[(&str, &str)]) -> Proc {
    Proc::example("orchestrator_child", &[scenario], Start::Default, env)
}

/// The whole sequence: READY=1, watchdog pings, STOPPING=1 at SIGTERM, STATUS= with each
/// progress report of the slow drain (every 200 ms), in that order.
fn the_message_sequence(systemd: &Systemd) {
    let mut p = child(
        "notify",
        &[
            ("NOTIFY_SOCKET", systemd.name.as_str()),
            ("WATCHDOG_USEC", "100000"),
        ],
    );
    p.expect_line("notify_ready: Ok(())");
    p.ready();
    systemd.wait_for("READY=1", 1, |m| m == "READY=1");
    systemd.wait_for("watchdog pings", 3, |m| m == WATCHDOG);
    assert!(
        !systemd.texts().iter().any(|m| m.starts_with("STOPPING")),
        "{:?}",
        systemd.texts()
    );
    p.sigterm();
    systemd.wait_for("STOPPING=1", 1, |m| m == "STOPPING=1");
    p.assert_died_by_sigterm(Duration::from_secs(10));
    p.assert_printed("cleanup done");

    let others: Vec<String> = systemd
        .texts()
        .into_iter()
        .filter(|m| m != WATCHDOG)
        .collect();
    assert_eq!(others[..2], ["READY=1", "STOPPING=1"], "{others:?}");
    let status = &others[2..];
    assert!(status.len() >= 2, "{others:?}");
    for line in status {
        assert!(
            line.starts_with("STATUS=Shutdown waiting ")
                && line.contains(" after SIGTERM for the main task to finish")
                && line.contains("a second SIGTERM forces the exit")
                // The watchdog's task is runner's own, not a plain tokio task.
                && line.contains("plain tokio tasks: 0;")
                && !line.contains('\n'),
            "{line:?}"
        );
    }
    // The loop kept pinging through the drain (it was not blocked).
    let stopping = systemd
        .messages()
        .into_iter()
        .find(|(_, m)| m == "STOPPING=1")
        .map(|(at, _)| at)
        .unwrap();
    let after = systemd
        .pings()
        .into_iter()
        .filter(|at| *at > stopping)
        .count();
    assert!(after >= 3, "{after} pings during the 700 ms drain");
    let stderr = p.stderr();
    assert!(!stderr.contains("systemd notification failed"), "{stderr}");
}

#[test]
fn notify_socket_at_a_path_gets_ready_stopping_and_status_in_order_with_watchdog_pings() {
    the_message_sequence(&Systemd::at_path());
}

#[test]
fn notify_socket_with_an_abstract_name_works() {
    the_message_sequence(&Systemd::abstract_name());
}

/// The pings come from a task on the Runner's loop: while a poll blocks the loop for 1 s,
/// none comes; they resume after it.
#[test]
fn watchdog_pings_stop_while_a_poll_blocks_the_loop() {
    let systemd = Systemd::at_path();
    let mut p = child(
        "notify_block",
        &[
            ("NOTIFY_SOCKET", systemd.name.as_str()),
            ("WATCHDOG_USEC", "100000"),
            ("BLOCK_MS", "1000"),
        ],
    );
    p.ready();
    systemd.wait_for("watchdog pings", 5, |m| m == WATCHDOG);
    let before = systemd.pings().len();
    p.send_go();
    p.expect_line("blocking");
    let blocking_seen = Instant::now();
    p.expect_line("unblocked");
    systemd.wait_for("watchdog pings after the block", before + 4, |m| {
        m == WATCHDOG
    });
    p.sigterm();
    p.assert_died_by_sigterm(Duration::from_secs(10));

    let pings = systemd.pings();
    let gaps: Vec<(Instant, Duration)> = pings.windows(2).map(|w| (w[0], w[1] - w[0])).collect();
    // The gap around the moment the test saw `blocking`: the whole block, no ping in it.
    let (_, block_gap) = gaps
        .iter()
        .find(|(start, gap)| *start <= blocking_seen && blocking_seen <= *start + *gap)
        .copied()
        .expect("pings before and after the block");
    assert!(
        block_gap >= Duration::from_millis(900),
        "a ping came during the 1 s block: the widest gap around it is {block_gap:?}"
    );
    // Before it, the pings came every 50 ms (800 ms of slack for a loaded machine).
    let usual = gaps[..before.saturating_sub(1)]
        .iter()
        .map(|(_, gap)| *gap)
        .max()
        .unwrap();
    assert!(usual < Duration::from_millis(800), "{usual:?}");
}

/// systemd sets WATCHDOG_PID for the main process; a process with another pid (a child that
/// inherited the variables) must not ping on its behalf.
#[test]
fn no_watchdog_pings_when_watchdog_pid_is_another_process() {
    let systemd = Systemd::at_path();
    let mut p = child(
        "notify",
        &[
            ("NOTIFY_SOCKET", systemd.name.as_str()),
            ("WATCHDOG_USEC", "100000"),
            ("WATCHDOG_PID", "1"),
        ],
    );
    p.ready();
    systemd.wait_for("READY=1", 1, |m| m == "READY=1");
    // A negative check: at least 10 pings would have come meanwhile.
    p.assert_alive_after(Duration::from_millis(500));
    p.sigterm();
    p.assert_died_by_sigterm(Duration::from_secs(10));
    assert!(systemd.pings().is_empty(), "{:?}", systemd.texts());
    assert!(systemd.texts().contains(&"STOPPING=1".to_owned()));
}

/// A `NOTIFY_SOCKET` nobody listens on: `notify_ready` says so, one report on stderr (not
/// one per message), and the program goes on and shuts down as usual.
#[test]
fn a_broken_notify_socket_is_reported_once_and_the_program_goes_on() {
    let missing = std::env::temp_dir().join(format!("runner-no-such-{}.sock", std::process::id()));
    let missing = missing.to_str().unwrap().to_owned();
    for (socket, error) in [
        (missing.as_str(), "No such file or directory"),
        (
            "relative/path",
            "neither an absolute path nor an @abstract name",
        ),
    ] {
        let mut p = child(
            "notify",
            &[("NOTIFY_SOCKET", socket), ("WATCHDOG_USEC", "100000")],
        );
        let result = p.expect_line_starting("notify_ready: ");
        assert!(
            result.starts_with("Err(") && result.contains(error),
            "{result}"
        );
        p.ready();
        p.sigterm();
        p.assert_died_by_sigterm(Duration::from_secs(10));
        p.assert_printed("cleanup done");
        let stderr = p.stderr();
        let reports = stderr
            .lines()
            .filter(|l| l.contains("systemd notification failed"))
            .count();
        assert_eq!(reports, 1, "{stderr}");
        assert!(stderr.contains(error), "{stderr}");
    }
}

/// Without `NOTIFY_SOCKET` (empty counts as unset) everything is a no-op: `Ok(())`, no
/// report.
#[test]
fn without_notify_socket_notify_ready_is_a_silent_no_op() {
    let mut p = child(
        "notify",
        &[("NOTIFY_SOCKET", ""), ("WATCHDOG_USEC", "100000")],
    );
    p.expect_line("notify_ready: Ok(())");
    p.ready();
    p.sigterm();
    p.assert_died_by_sigterm(Duration::from_secs(10));
    let stderr = p.stderr();
    assert!(!stderr.contains("systemd"), "{stderr}");
}
