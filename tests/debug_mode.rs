//! Debug mode names the task that blocked the loop (asyncio debug mode).

mod common;

use std::time::Duration;

use common::{builder, Flavor, Reports};
use runner::{Report, ReportKind};

fn debug_runner(reports: &Reports, flavor: Flavor) -> runner::Runner {
    reports.install(builder(flavor)).debug(Some(true)).build()
}

/// `Executing <...> took 0.150 seconds` -> 0.150
fn seconds(report: &Report) -> f64 {
    let message = report.message();
    let took = message.rsplit(" took ").next().unwrap();
    took.trim_end_matches(" seconds")
        .parse()
        .unwrap_or_else(|_| panic!("{message}"))
}

fn slow_polls(reports: Vec<Report>) -> Vec<Report> {
    reports
        .into_iter()
        .filter(|r| r.kind() == ReportKind::SlowPoll)
        .collect()
}

#[test]
fn a_main_task_blocking_150ms_in_one_poll_is_reported() {
    common::watchdog(common::TEST_LIMIT);
    let reports = Reports::default();
    let mut runner = debug_runner(&reports, Flavor::CurrentThread);
    // `line!()` sits on the line of `.run(`, wherever rustfmt breaks the chain.
    // sleep: a poll that blocks the thread, the thing debug mode reports.
    let line = runner
        .run(async { (line!(), std::thread::sleep(Duration::from_millis(150))).0 })
        .unwrap();
    let slow = slow_polls(reports.take());
    assert_eq!(slow.len(), 1, "{slow:?}");
    let message = slow[0].message();
    assert!(
        message.starts_with("Executing <main task run at tests/debug_mode.rs:"),
        "{message}"
    );
    assert!(message.contains(&format!(":{line}:")), "{message}");
    assert!(seconds(&slow[0]) >= 0.15, "{message}");
}

#[test]
fn a_spawned_task_that_blocks_is_reported_with_its_spawn_location() {
    common::watchdog(common::TEST_LIMIT);
    for flavor in common::FLAVORS {
        let reports = Reports::default();
        let mut runner = debug_runner(&reports, flavor);
        // sleep (below): a poll that blocks the thread, the thing debug mode reports.
        let line = line!() + 3;
        runner
            .run(async {
                runner::spawn(async { std::thread::sleep(Duration::from_millis(120)) })
                    .await
                    .unwrap();
            })
            .unwrap();
        let slow = slow_polls(reports.take());
        assert_eq!(slow.len(), 1, "{flavor:?}: {slow:?}");
        let expected = format!("Executing <task spawned at tests/debug_mode.rs:{line}:17> took ");
        assert!(
            slow[0].message().starts_with(&expected),
            "{}",
            slow[0].message()
        );
        assert_eq!(slow[0].location().unwrap().line(), line);
        assert!(seconds(&slow[0]) >= 0.12);
    }
}

#[test]
fn nothing_is_reported_with_debug_off() {
    common::watchdog(common::TEST_LIMIT);
    let reports = Reports::default();
    let mut runner = reports
        .install(builder(Flavor::CurrentThread))
        .debug(Some(false))
        .build();
    runner
        .run(async {
            // sleep: polls that block the thread, which debug mode would report.
            std::thread::sleep(Duration::from_millis(150));
            runner::spawn(async { std::thread::sleep(Duration::from_millis(150)) })
                .await
                .unwrap();
            let t = runner::spawn(async { panic!("nobody awaits this") });
            drop(t);
            runner::spawn(std::future::pending::<()>());
            tokio::task::yield_now().await;
        })
        .unwrap();
    runner.close();
    assert!(reports.take().is_empty());
}

#[test]
fn polls_below_the_threshold_are_not_reported() {
    common::watchdog(common::TEST_LIMIT);
    let reports = Reports::default();
    let mut runner = debug_runner(&reports, Flavor::CurrentThread);
    runner
        .run(async {
            for _ in 0..20 {
                // sleep: polls that block, each well below the threshold.
                std::thread::sleep(Duration::from_millis(2));
                tokio::task::yield_now().await;
            }
        })
        .unwrap();
    assert!(slow_polls(reports.take()).is_empty());
}

/// The slow-poll reports of a main task blocking `blocked` in one poll, under `threshold`.
fn slow_polls_with(threshold: Duration, blocked: Duration) -> Vec<Report> {
    let reports = Reports::default();
    let mut runner = reports
        .install(builder(Flavor::CurrentThread))
        .debug(Some(true))
        .slow_callback_duration(threshold)
        .build();
    // sleep: a poll that blocks the thread for `blocked`, the thing measured.
    runner.run(async { std::thread::sleep(blocked) }).unwrap();
    slow_polls(reports.take())
}

#[test]
fn the_threshold_is_configurable() {
    common::watchdog(common::TEST_LIMIT);
    let slow = slow_polls_with(Duration::from_millis(20), Duration::from_millis(40));
    assert_eq!(slow.len(), 1);
    assert!(seconds(&slow[0]) >= 0.04);
    let slow = slow_polls_with(Duration::from_secs(10), Duration::from_millis(150));
    assert!(slow.is_empty());
}

#[test]
fn pending_tasks_are_listed_with_locations_at_close() {
    common::watchdog(common::TEST_LIMIT);
    let reports = Reports::default();
    let mut runner = debug_runner(&reports, Flavor::CurrentThread);
    // sleep (below): a task still pending (on a timer) at close.
    let first = line!() + 3;
    runner
        .run(async {
            runner::spawn(std::future::pending::<()>());
            runner::spawn(tokio::time::sleep(Duration::from_secs(60)));
        })
        .unwrap();
    runner.close();
    let pending: Vec<_> = reports
        .take()
        .into_iter()
        .filter(|r| r.kind() == ReportKind::PendingAtClose)
        .map(|r| r.location().unwrap().line())
        .collect();
    assert_eq!(pending, [first, first + 1]);
}

#[test]
fn a_never_retrieved_panic_is_reported() {
    common::watchdog(common::TEST_LIMIT);
    for flavor in common::FLAVORS {
        let reports = Reports::default();
        let mut runner = debug_runner(&reports, flavor);
        let line = line!() + 3;
        runner
            .run(async {
                let task = runner::spawn(async { panic!("lost panic") });
                drop(task);
                // Handshake: the report is made by the task's own poll; close() must not
                // start (and cancel the task) before it. A broken build times out here and
                // fails the count below.
                reports
                    .arrival(ReportKind::PanicNeverRetrieved, Duration::from_secs(10))
                    .await;
                // An awaited panic is retrieved: not reported.
                assert!(runner::spawn(async { panic!("seen") }).await.is_err());
            })
            .unwrap();
        runner.close();
        let lost: Vec<_> = reports
            .take()
            .into_iter()
            .filter(|r| r.kind() == ReportKind::PanicNeverRetrieved)
            .collect();
        assert_eq!(lost.len(), 1, "{flavor:?}: {lost:?}");
        assert_eq!(lost[0].panic(), Some("lost panic"));
        assert_eq!(lost[0].location().unwrap().line(), line);
        assert!(lost[0]
            .to_string()
            .contains(&format!("tests/debug_mode.rs:{line}")));
    }
}

#[test]
fn runner_debug_env_turns_it_on_and_an_explicit_false_overrides_it() {
    common::watchdog(common::TEST_LIMIT);
    let (_, stderr) = common::run_child("child_env_debug", &[("RUNNER_DEBUG", "1")]);
    assert!(
        stderr.contains("runner: Executing <main task run at"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("Executing").count(),
        1,
        "debug(Some(false)) reports nothing"
    );
}

#[test]
#[ignore = "child process of runner_debug_env_turns_it_on_and_an_explicit_false_overrides_it"]
fn child_env_debug() {
    common::watchdog(common::TEST_LIMIT);
    assert_eq!(std::env::var("RUNNER_CHILD").as_deref(), Ok("1"));
    let mut on = runner::Runner::builder().handle_sigint(false).build();
    assert!(on.debug());
    // sleep: a poll that blocks the thread, reported when debug mode is on.
    on.run(async { std::thread::sleep(Duration::from_millis(120)) })
        .unwrap();
    let mut off = runner::Runner::builder()
        .handle_sigint(false)
        .debug(Some(false))
        .build();
    assert!(!off.debug());
    // sleep: the same blocking poll, not reported with debug mode off.
    off.run(async { std::thread::sleep(Duration::from_millis(120)) })
        .unwrap();
}

#[test]
fn the_default_handler_prints_one_line_per_report_to_stderr() {
    common::watchdog(common::TEST_LIMIT);
    let (stdout, stderr) = common::run_child("child_default_handler", &[]);
    let lines: Vec<_> = stderr
        .lines()
        .filter(|l| l.starts_with("runner: "))
        .collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(lines[0].starts_with("runner: Executing <task spawned at tests/debug_mode.rs:"));
    assert!(lines[1].starts_with("runner: Task was still pending at close: <task spawned at"));
    assert!(!stdout.contains("runner: "));
}

#[test]
#[ignore = "child process of the_default_handler_prints_one_line_per_report_to_stderr"]
fn child_default_handler() {
    common::watchdog(common::TEST_LIMIT);
    assert_eq!(std::env::var("RUNNER_CHILD").as_deref(), Ok("1"));
    let mut runner = runner::Runner::builder()
        .handle_sigint(false)
        .debug(Some(true))
        .build();
    runner
        .run(async {
            // sleep: a poll that blocks the thread, for a slow-poll report.
            runner::spawn(async { std::thread::sleep(Duration::from_millis(120)) })
                .await
                .unwrap();
            runner::spawn(std::future::pending::<()>());
        })
        .unwrap();
    runner.close();
}

#[test]
fn a_broken_stderr_loses_the_reports_but_not_the_run_or_close() {
    // The default handler prints with `eprintln!`, which panics when stderr is a pipe nobody
    // reads (EPIPE). The reports are lost then, and nothing else: not the main task's value,
    // not close().
    common::watchdog(common::TEST_LIMIT);
    let (stdout, _) = common::run_child("child_broken_stderr", &[]);
    assert!(stdout.contains("child: ran 7"), "{stdout}");
    assert!(stdout.contains("child: closed"), "{stdout}");
}

#[test]
#[ignore = "child process of a_broken_stderr_loses_the_reports_but_not_the_run_or_close"]
fn child_broken_stderr() {
    common::watchdog(common::TEST_LIMIT);
    assert_eq!(std::env::var("RUNNER_CHILD").as_deref(), Ok("1"));
    // SAFETY: plain fd calls; fd 2 becomes the write end of a pipe whose read end is closed.
    unsafe {
        let mut fds = [0; 2];
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
        libc::close(fds[0]);
        assert_eq!(libc::dup2(fds[1], 2), 2);
        libc::close(fds[1]);
    }
    // Panics can only be seen on stdout now.
    std::panic::set_hook(Box::new(|info| println!("child: panic: {info}")));
    // The premise: printing to stderr panics now.
    assert!(std::panic::catch_unwind(|| eprintln!("lost")).is_err());
    let mut runner = runner::Runner::builder()
        .handle_sigint(false)
        .debug(Some(true))
        .build();
    let value = runner
        .run(async {
            // sleep: a poll that blocks the thread, for a slow-poll report (made in the poll).
            runner::spawn(async { std::thread::sleep(Duration::from_millis(120)) })
                .await
                .unwrap();
            // A panic nobody retrieves, and a task pending at close: two more reports.
            drop(runner::spawn(async { panic!("never retrieved") }));
            runner::spawn(std::future::pending::<()>());
            tokio::task::yield_now().await;
            7
        })
        .unwrap();
    println!("child: ran {value}");
    runner.close();
    assert!(runner.is_closed());
    println!("child: closed");
}

#[test]
fn a_panicking_exception_handler_falls_back_to_stderr_and_close_survives() {
    common::watchdog(common::TEST_LIMIT);
    let (stdout, stderr) = common::run_child("child_panicking_handler", &[]);
    let line = stdout
        .lines()
        .find_map(|l| Some(l.split_once("child: spawned at line ")?.1))
        .unwrap_or_else(|| panic!("{stdout}"));
    let pending = format!(
        "runner: Task was still pending at close: <task spawned at tests/debug_mode.rs:{line}:"
    );
    // The one report, on stderr, although the handler panicked on it.
    let reports: Vec<_> = stderr
        .lines()
        .filter(|l| l.starts_with("runner: "))
        .collect();
    assert_eq!(reports.len(), 1, "{stderr}");
    assert!(reports[0].starts_with(&pending), "{stderr}");
    assert!(stderr.contains("handler is broken"), "{stderr}");
    assert!(stdout.contains("child: closed"), "{stdout}");
}

#[test]
#[ignore = "child process of a_panicking_exception_handler_falls_back_to_stderr_and_close_survives"]
fn child_panicking_handler() {
    common::watchdog(common::TEST_LIMIT);
    assert_eq!(std::env::var("RUNNER_CHILD").as_deref(), Ok("1"));
    let mut runner = builder(Flavor::CurrentThread)
        .debug(Some(true))
        .exception_handler(|_| panic!("handler is broken"))
        .build();
    let line = line!() + 2;
    runner
        .run(async { drop(runner::spawn(std::future::pending::<()>())) })
        .unwrap();
    println!("child: spawned at line {line}");
    runner.close();
    assert!(runner.is_closed());
    println!("child: closed");
}
