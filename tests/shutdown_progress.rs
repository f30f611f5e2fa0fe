//! A shutdown that shows its progress (DESIGN.md "Shutdown that shows its progress"): when
//! the main task is still running `shutdown_report_after` after a signal cancelled it, or
//! `close()` has waited that long for cancelled tasks or blocking work, a `ShutdownWaiting`
//! report names how long, the pending tasks by spawn location, how many plain tokio tasks
//! are alive, the blocking work, and the signal that forces the exit (a second one of what
//! began the shutdown); then again at most once per threshold. After SIGTERM, and with a
//! grace period, see `tests/orchestrator.rs`.
//!
//! Signal cases run real child processes (`examples/shutdown_child`, source
//! `tests/bin/shutdown_child.rs`, and `examples/axum_server`) with real kill(2), reading
//! their stderr as it comes; `close()` cases run in-process with a capturing handler.
#![cfg(unix)]

mod common;

use std::future::pending;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::child::{Proc, Start};
use runner::{Report, ReportKind, Runner};

const WAITING: &str = "Shutdown waiting";

/// Reports with the moment each was made.
#[derive(Clone, Default)]
struct Timed(Arc<Mutex<Vec<(Instant, Report)>>>);

impl Timed {
    fn builder(&self) -> runner::Builder {
        let sink = self.0.clone();
        // Debug mode off whatever `RUNNER_DEBUG` says: its reports (tasks pending at close)
        // would be counted with the ones these tests are about.
        Runner::builder()
            .handle_sigint(false)
            .debug(Some(false))
            .exception_handler(move |r: &Report| {
                sink.lock().unwrap().push((Instant::now(), r.clone()));
            })
    }

    /// A Runner that reports a slow shutdown after `threshold` and gives up at `timeout`.
    fn slow_close(&self, threshold: Duration, timeout: Duration) -> Runner {
        self.builder()
            .shutdown_report_after(threshold)
            .shutdown_timeout(timeout)
            .build()
    }

    fn of_kind(&self, kind: ReportKind) -> Vec<(Instant, Report)> {
        let all = self.0.lock().unwrap();
        all.iter()
            .filter(|(_, r)| r.kind() == kind)
            .cloned()
            .collect()
    }

    fn all(&self) -> String {
        let all = self.0.lock().unwrap();
        all.iter()
            .map(|(_, r)| format!("{:?}: {r}", r.kind()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Reports of one waiting stage come at most once per `threshold` (the handler's clock
/// reads lag the reports' own by a little: 5 ms of slack).
fn assert_spaced(reports: &[(Instant, Report)], threshold: Duration) {
    for pair in reports.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(
            gap + Duration::from_millis(5) >= threshold,
            "two reports {gap:?} apart, under the threshold {threshold:?}: {:?} / {:?}",
            pair[0].1.message(),
            pair[1].1.message()
        );
    }
}

#[test]
fn close_names_a_task_ignoring_its_cancel_and_blocking_work_by_spawn_location() {
    let threshold = Duration::from_millis(300);
    let timeout = Duration::from_millis(1500);
    let reports = Timed::default();
    let mut runner = reports.slow_close(threshold, timeout);
    let (task_line, blocking_line) = runner
        .run(async {
            let task_line = line!() + 1;
            let task = runner::spawn(async {
                // Holds `cancelled()`, so it is not dropped, and never acts on it.
                let _ignored = runner::cancelled();
                pending::<()>().await
            });
            drop(task);
            let blocking_line = line!() + 1;
            let job = runner::spawn_blocking(|| std::thread::sleep(Duration::from_secs(4)));
            drop(job);
            // Plain tokio tasks (a server's connections): counted, not named.
            for _ in 0..3 {
                drop(tokio::spawn(pending::<()>()));
            }
            // A local task, whose driver on a current-thread loop is a tokio task of
            // runner's own (not a plain one); dropped by the close's cancel.
            drop(runner::spawn_local(pending::<()>()));
            tokio::task::yield_now().await;
            (task_line, blocking_line)
        })
        .unwrap();
    let task_at = format!("<task spawned at tests/shutdown_progress.rs:{task_line}:");
    let blocking_at = format!("tests/shutdown_progress.rs:{blocking_line}:");
    let closing = Instant::now();
    runner.close();

    let waiting = reports.of_kind(ReportKind::ShutdownWaiting);
    let (step1, step3): (Vec<_>, Vec<_>) = waiting
        .into_iter()
        .partition(|(_, r)| r.message().contains("cancelled task(s)"));
    // Step 1 waits the whole timeout (1.5 s) for the task: reports at about 0.3, 0.6, 0.9
    // and 1.2 s. Step 3 then waits for the 4 s blocking job: the same again.
    assert!(step1.len() >= 2, "{}", reports.all());
    assert!(step3.len() >= 2, "{}", reports.all());
    assert!(step1[0].0 - closing >= threshold, "{}", reports.all());
    for (_, report) in &step1 {
        let m = report.message();
        assert!(m.starts_with(WAITING), "{m}");
        assert!(
            m.contains("in Runner::close for 1 cancelled task(s) to finish"),
            "{m}"
        );
        assert!(m.contains(&task_at), "{m}\nexpected {task_at}");
        assert!(m.contains(&blocking_at), "{m}\nexpected {blocking_at}");
        // Runner's own tasks (the one of the close pass) are not counted as plain.
        assert!(m.contains("plain tokio tasks: 3;"), "{m}");
        // No signal began this shutdown: a Ctrl-C is the first, and it ends the process.
        assert!(m.ends_with("; Ctrl-C forces the exit"), "{m}");
        // The same facts, as data (issue 30: a handler needs no parsing).
        let facts = report
            .shutdown()
            .expect("a shutdown report carries its facts");
        assert!(facts.waited() >= threshold, "{facts:?}");
        assert!(
            facts
                .pending_tasks()
                .iter()
                .any(|at| at.file() == "tests/shutdown_progress.rs" && at.line() == task_line),
            "{facts:?}"
        );
        assert_eq!(facts.plain_tasks(), Some(3), "{facts:?}");
        assert_eq!(facts.blocking_jobs(), 1, "{facts:?}");
        assert_eq!(
            facts.blocking_jobs_by_location()[0].0.line(),
            blocking_line,
            "{facts:?}"
        );
    }
    for (_, report) in &step3 {
        let m = report.message();
        assert!(m.contains("in Runner::close for blocking work"), "{m}");
        assert!(
            m.contains(&format!(
                "1 spawn_blocking job(s) (spawned at {blocking_at}"
            )),
            "{m}"
        );
    }
    assert_spaced(&step1, threshold);
    assert_spaced(&step3, threshold);
    // The waits still end at the shutdown timeout, with their own reports.
    assert_eq!(
        reports.of_kind(ReportKind::ShutdownTimeout).len(),
        1,
        "{}",
        reports.all()
    );
    assert_eq!(
        reports.of_kind(ReportKind::BlockingAbandoned).len(),
        1,
        "{}",
        reports.all()
    );
}

#[test]
fn close_names_an_at_close_finalizer_that_does_not_finish_by_where_it_was_registered() {
    let threshold = Duration::from_millis(300);
    let timeout = Duration::from_millis(1500);
    let reports = Timed::default();
    let mut runner = reports.slow_close(threshold, timeout);
    let (quick_line, stuck_line) = runner
        .run(async {
            // Finalizers run last registered first: the stuck one, then the quick one.
            let quick_line = line!() + 1;
            runner::at_close(|| async {});
            let stuck_line = line!() + 1;
            runner::at_close(|| async { pending::<()>().await });
            (quick_line, stuck_line)
        })
        .unwrap();
    let stuck_at = format!("tests/shutdown_progress.rs:{stuck_line}:");
    let closing = Instant::now();
    runner.close();
    let waiting = reports.of_kind(ReportKind::ShutdownWaiting);
    // Step 2 waits the whole timeout for the stuck finalizer: reports at about 0.3, 0.6, 0.9
    // and 1.2 s.
    assert!(waiting.len() >= 2, "{}", reports.all());
    assert!(waiting[0].0 - closing >= threshold, "{}", reports.all());
    for (_, report) in &waiting {
        let m = report.message();
        assert!(
            m.contains(&format!(
                "in Runner::close for the at_close finalizer registered at {stuck_at}"
            )),
            "{m}\nexpected {stuck_at}"
        );
        assert!(!m.contains(&format!(":{quick_line}:")), "{m}");
        assert!(m.ends_with("; Ctrl-C forces the exit"), "{m}");
        assert_eq!(report.location().map(|l| l.line()), Some(stuck_line));
    }
    assert_spaced(&waiting, threshold);
    // The wait still ends at the shutdown timeout, with its own report naming the finalizer.
    let timed_out = reports.of_kind(ReportKind::ShutdownTimeout);
    assert_eq!(timed_out.len(), 1, "{}", reports.all());
    assert!(
        timed_out[0].1.message().contains(&stuck_at),
        "{}",
        reports.all()
    );
}

#[test]
fn close_on_a_multi_thread_loop_names_the_task_it_waits_for() {
    let threshold = Duration::from_millis(200);
    let reports = Timed::default();
    let mut runner = reports
        .builder()
        .shutdown_report_after(threshold)
        .shutdown_timeout(Duration::from_millis(700))
        .loop_factory(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
        })
        .build();
    let line = runner
        .run(async {
            let (observing, started) = tokio::sync::oneshot::channel();
            let line = line!() + 1;
            let _task = runner::spawn(async move {
                let cancelled = runner::cancelled();
                let _ = observing.send(());
                cancelled.await;
                // A cleanup that outlasts the shutdown timeout.
                tokio::time::sleep(Duration::from_secs(30)).await;
            });
            // On a worker thread: wait until it observes, or close() would drop it.
            started.await.unwrap();
            line
        })
        .unwrap();
    runner.close();
    let waiting = reports.of_kind(ReportKind::ShutdownWaiting);
    assert!(!waiting.is_empty(), "{}", reports.all());
    let at = format!("<task spawned at tests/shutdown_progress.rs:{line}:");
    for (_, report) in &waiting {
        assert!(
            report.message().contains(&at),
            "{}\nexpected {at}",
            report.message()
        );
        assert!(
            report.message().contains("blocking work: none"),
            "{}",
            report.message()
        );
        // The task of the close pass is runner's, on a worker thread: not a plain task.
        assert!(
            report.message().contains("plain tokio tasks: 0;"),
            "{}",
            report.message()
        );
    }
    assert_spaced(&waiting, threshold);
}

#[test]
fn with_reports_off_a_slow_close_reports_no_shutdown_waiting() {
    let reports = Timed::default();
    let mut runner = reports
        .builder()
        .shutdown_report_after(Duration::MAX)
        .shutdown_timeout(Duration::from_millis(600))
        .build();
    runner
        .run(async {
            runner::spawn(async {
                let _ignored = runner::cancelled();
                pending::<()>().await
            });
            runner::spawn_blocking(|| std::thread::sleep(Duration::from_secs(2)));
            tokio::task::yield_now().await;
        })
        .unwrap();
    runner.close();
    assert!(
        reports.of_kind(ReportKind::ShutdownWaiting).is_empty(),
        "{}",
        reports.all()
    );
    // The close was slow all the same: it timed out in both steps.
    assert_eq!(reports.of_kind(ReportKind::ShutdownTimeout).len(), 1);
    assert_eq!(reports.of_kind(ReportKind::BlockingAbandoned).len(), 1);
}

#[test]
fn a_fast_close_reports_nothing() {
    let reports = Timed::default();
    let mut runner = reports
        .builder()
        .shutdown_report_after(Duration::from_millis(300))
        .build();
    runner
        .run(async {
            runner::spawn(async {
                runner::cancelled().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            });
            runner::spawn(pending::<()>());
            runner::spawn_blocking(|| std::thread::sleep(Duration::from_millis(50)));
            tokio::task::yield_now().await;
        })
        .unwrap();
    runner.close();
    assert_eq!(
        reports.all(),
        "",
        "a close within the threshold reports nothing"
    );
}

/// The first `ShutdownWaiting` line on `p`'s stderr, within `within` of `sent`.
fn first_report(p: &mut Proc, sent: Instant, within: Duration) -> (Instant, String) {
    let (at, line) =
        p.expect_stderr_line_where("ShutdownWaiting", within + Duration::from_secs(5), |l| {
            l.contains(WAITING)
        });
    assert!(
        at - sent <= within,
        "the first report came {:?} after the signal (at most {within:?}): {line}",
        at - sent
    );
    (at, line)
}

#[test]
fn ctrl_c_then_a_slow_cleanup_reports_the_main_task_the_task_and_the_blocking_job() {
    let mut p = Proc::example("shutdown_child", &["slow_cleanup"], Start::Default, &[]);
    let main_at = p.expect_line_starting("main at ");
    let task_at = p.expect_line_starting("task at ");
    let blocking_at = p.expect_line_starting("blocking at ");
    p.ready();
    p.sigint();
    let sent = Instant::now();
    p.expect_line("cleanup started");
    // Threshold 1 s, plus 1 s of slack.
    let (first_at, first) = first_report(&mut p, sent, Duration::from_secs(2));
    assert!(
        first_at - sent >= Duration::from_millis(900),
        "too early: {first}"
    );
    assert!(
        first.contains("after Ctrl-C for the main task to finish"),
        "{first}"
    );
    assert!(
        first.contains(&format!("<main task run at {main_at}:")),
        "{first}"
    );
    assert!(
        first.contains(&format!("<task spawned at {task_at}:")),
        "{first}"
    );
    assert!(
        first.contains(&format!(
            "1 spawn_blocking job(s) (spawned at {blocking_at}:"
        )),
        "{first}"
    );
    assert!(first.contains("a second Ctrl-C forces the exit"), "{first}");
    // Again, no sooner than the threshold (lines are timed as the test reads them, which
    // may lag the first one more than the second: 300 ms of slack, far from "too often").
    let (second_at, _) =
        p.expect_stderr_line_where("a second report", Duration::from_secs(5), |l| {
            l.contains(WAITING)
        });
    assert!(
        second_at - first_at >= Duration::from_millis(700),
        "reports {:?} apart",
        second_at - first_at
    );
    p.sigint();
    p.assert_died_by_sigint(Duration::from_secs(2));
    p.assert_not_printed("cleanup done");
}

#[test]
fn ctrl_c_to_a_main_task_stuck_without_an_await_is_reported_by_the_listener() {
    let mut p = Proc::example("shutdown_child", &["stuck"], Start::Default, &[]);
    let main_at = p.expect_line_starting("main at ");
    p.ready();
    p.sigint();
    let sent = Instant::now();
    let (_, report) = first_report(&mut p, sent, Duration::from_secs(2));
    assert!(
        report.contains(&format!("<main task run at {main_at}:")),
        "{report}"
    );
    assert!(
        report.contains("pending tasks: <main task run at"),
        "{report}"
    );
    p.sigint();
    p.assert_died_by_sigint(Duration::from_secs(2));
}

#[test]
fn a_cleanup_within_the_threshold_reports_nothing() {
    let mut p = Proc::example("shutdown_child", &["fast_cleanup"], Start::Default, &[]);
    p.ready();
    p.sigint();
    p.assert_died_by_sigint(Duration::from_secs(10));
    p.assert_printed("cleanup done");
    let stderr = p.stderr();
    assert!(!stderr.contains(WAITING), "{stderr}");
}

#[test]
fn with_reports_off_a_slow_cleanup_after_ctrl_c_reports_nothing() {
    let mut p = Proc::example("shutdown_child", &["reports_off"], Start::Default, &[]);
    p.ready();
    p.sigint();
    // The 3 s cleanup runs to its end (past the default threshold's report times).
    p.assert_died_by_sigint(Duration::from_secs(15));
    p.assert_printed("cleanup done");
    let stderr = p.stderr();
    assert!(!stderr.contains(WAITING), "{stderr}");
}

/// An axum server draining a request that never finishes (drain bound raised to 60 s):
/// Ctrl-C, then within the default threshold (5 s) plus 1 s a report naming the main task
/// that waits for the drain; a second Ctrl-C ends it.
#[test]
fn axum_server_draining_a_request_that_never_finishes_reports_within_6_s() {
    let mut server = Proc::example(
        "axum_server",
        &[],
        Start::Default,
        &[("DRAIN_TIMEOUT_MS", "60000")],
    );
    let addr = server.expect_line_starting("listening on ");
    let addr: std::net::SocketAddr = addr.parse().expect("a socket address");
    let request = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(90)))?;
        write!(
            stream,
            "GET /slow?ms=60000 HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok::<String, std::io::Error>(response)
    });
    server.expect_line("slow request: sleeping 60000 ms");
    server.sigint();
    let sent = Instant::now();
    server.expect_line_starting("draining");
    let (_, report) = first_report(&mut server, sent, Duration::from_secs(6));
    assert!(
        report.contains("after Ctrl-C for the main task to finish"),
        "{report}"
    );
    assert!(
        report.contains("pending tasks: <main task run at examples/axum_server.rs:"),
        "{report}"
    );
    assert!(
        report.contains("a second Ctrl-C forces the exit"),
        "{report}"
    );
    server.sigint();
    server.assert_died_by_sigint(Duration::from_secs(2));
    server.assert_not_printed("slow request: done");
    let cut = request.join().unwrap();
    assert!(
        !matches!(&cut, Ok(text) if text.starts_with("HTTP/1.1")),
        "the request got a response: {cut:?}"
    );
}
