//! A shutdown that fits the orchestrator (DESIGN.md "Shutdown that fits the orchestrator"):
//! the grace period, the drain delay, `shutdown_requested()`, and the final words of a
//! forced exit, with real child processes (`examples/orchestrator_child`, source
//! `tests/bin/orchestrator_child.rs`; `examples/axum_server` for readiness over HTTP) and
//! real kill(2). The same programs as PID 1 of a PID namespace are in `tests/pid1.rs`;
//! systemd's notify socket is in `tests/systemd_notify.rs`.
#![cfg(unix)]

mod common;

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use common::child::{Proc, Start};
use common::{builder, Flavor};

const GRACE_LINE: &str = "runner: Grace period of";
const FORCED_LINE: &str = "runner: Forced exit by a second signal";
const WAITING_LINE: &str = "runner: Shutdown waiting";

fn child(scenario: &str, env: &[(&str, &str)]) -> Proc {
    Proc::example("orchestrator_child", &[scenario], Start::Default, env)
}

/// Waits for the exit (at most `within` after `sent`); how long after `sent` it came.
fn exit_after(p: &mut Proc, sent: Instant, within: Duration) -> Duration {
    let status = p.wait_for_exit(within.saturating_sub(sent.elapsed()));
    let took = sent.elapsed();
    assert!(
        status.is_some(),
        "still running {took:?} after the signal (at most {within:?}):\n{}",
        p.describe()
    );
    took
}

/// The stderr line starting with `prefix` (once exited).
fn stderr_line(p: &mut Proc, prefix: &str) -> String {
    let stderr = p.stderr();
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with(prefix)).collect();
    assert_eq!(
        lines.len(),
        1,
        "expected one {prefix:?} line:\n{}",
        p.describe()
    );
    lines[0].to_owned()
}

fn assert_contains(line: &str, part: &str) {
    assert!(line.contains(part), "{line}\n  does not contain {part:?}");
}

/// A drain that never finishes, `grace_period = "1.5s"`: the process ends 1.5 s after the
/// first signal (not before, and within half a second after), by that signal, with one
/// final report naming what still runs; progress reports came before it, the first at a
/// third of the grace period (5 s without it).
fn grace_period_ends_a_drain_that_never_finishes(signal: libc::c_int, name: &str) {
    let mut p = child("grace_stuck", &[]);
    let main_at = p.expect_line_starting("main at ");
    let task_at = p.expect_line_starting("task at ");
    let blocking_at = p.expect_line_starting("blocking at ");
    p.ready();
    p.signal(signal);
    let sent = Instant::now();
    p.expect_line("cleanup started");
    let (first_report, report) =
        p.expect_stderr_line_where("ShutdownWaiting", Duration::from_secs(5), |l| {
            l.starts_with(WAITING_LINE)
        });
    let at = first_report - sent;
    assert!(
        at >= Duration::from_millis(450) && at <= Duration::from_millis(1200),
        "the first progress report came {at:?} after the signal, not at a third of the grace \
         period (0.5 s): {report}"
    );
    let took = exit_after(&mut p, sent, Duration::from_secs(5));
    assert!(
        took >= Duration::from_millis(1450) && took <= Duration::from_millis(2000),
        "ended {took:?} after the signal; the grace period is 1.5 s:\n{}",
        p.describe()
    );
    p.assert_died_by(signal, Duration::ZERO);
    let last = stderr_line(&mut p, GRACE_LINE);
    assert_contains(
        &last,
        &format!("Grace period of 1.5 s after {name} is over: forcing the exit"),
    );
    assert_contains(&last, &format!("<main task run at {main_at}:"));
    assert_contains(&last, &format!("<task spawned at {task_at}:"));
    assert_contains(&last, "plain tokio tasks: 2");
    assert_contains(
        &last,
        &format!("1 spawn_blocking job(s) (spawned at {blocking_at}:"),
    );
    let stderr = p.stderr();
    assert!(
        stderr.trim_end().ends_with(&last),
        "the grace report is not the last line:\n{stderr}"
    );
}

#[test]
fn grace_period_ends_a_drain_after_sigterm_that_never_finishes_within_grace_plus_half_a_second() {
    grace_period_ends_a_drain_that_never_finishes(libc::SIGTERM, "SIGTERM");
}

#[test]
fn grace_period_ends_a_drain_after_ctrl_c_that_never_finishes_within_grace_plus_half_a_second() {
    grace_period_ends_a_drain_that_never_finishes(libc::SIGINT, "Ctrl-C");
}

/// The grace period is kept by runner's signal thread: a main task that never yields (the
/// cancel can never reach it) ends on time all the same.
#[test]
fn grace_period_ends_a_main_task_that_never_yields() {
    let mut p = child("grace_spin", &[]);
    let main_at = p.expect_line_starting("main at ");
    p.ready();
    p.sigterm();
    let sent = Instant::now();
    let took = exit_after(&mut p, sent, Duration::from_secs(5));
    assert!(took >= Duration::from_millis(950), "{took:?}");
    assert!(took <= Duration::from_millis(1500), "{took:?}");
    p.assert_died_by_sigterm(Duration::ZERO);
    let last = stderr_line(&mut p, GRACE_LINE);
    assert_contains(
        &last,
        &format!("still running: <main task run at {main_at}:"),
    );
}

/// The grace period covers `close()` too: the drain ends at once, a finalizer never does,
/// and the final report names it.
#[test]
fn grace_period_covers_close_and_names_the_finalizer_it_cuts_short() {
    let mut p = child("grace_close", &[]);
    let finalizer_at = p.expect_line_starting("finalizer at ");
    p.ready();
    p.sigterm();
    let sent = Instant::now();
    p.expect_line("drained");
    let took = exit_after(&mut p, sent, Duration::from_secs(5));
    assert!(took >= Duration::from_millis(950), "{took:?}");
    assert!(took <= Duration::from_millis(1500), "{took:?}");
    p.assert_died_by_sigterm(Duration::ZERO);
    let last = stderr_line(&mut p, GRACE_LINE);
    assert_contains(
        &last,
        &format!("still running: Runner::close running the at_close finalizer registered at {finalizer_at}:"),
    );
}

/// The main task sends itself SIGTERM and returns at once: the run ends before runner's
/// signal thread has looked at the signal. The run's own thread tells it, so the grace
/// period still covers the `close()` that follows (here stuck on a finalizer).
#[test]
fn grace_period_holds_when_the_run_ends_before_the_signal_thread_sees_its_signal() {
    let mut p = child("self_term", &[]);
    let finalizer_at = p.expect_line_starting("finalizer at ");
    p.ready();
    let started = Instant::now();
    let took = exit_after(&mut p, started, Duration::from_secs(5));
    assert!(took <= Duration::from_millis(1500), "{took:?}");
    p.assert_died_by_sigterm(Duration::ZERO);
    let last = stderr_line(&mut p, GRACE_LINE);
    assert_contains(
        &last,
        &format!("still running: Runner::close running the at_close finalizer registered at {finalizer_at}:"),
    );
}

/// After SIGTERM the reports name the plain tokio tasks and SIGTERM as the way out (not
/// "Ctrl-C"); a second signal then forces the exit at once, with final words naming what
/// it cuts short.
#[test]
fn a_second_signal_forces_the_exit_with_final_words_naming_what_it_cuts_short() {
    let mut p = child("forced", &[]);
    let main_at = p.expect_line_starting("main at ");
    let task_at = p.expect_line_starting("task at ");
    let blocking_at = p.expect_line_starting("blocking at ");
    p.ready();
    p.sigterm();
    p.expect_line("cleanup started");
    let (_, report) = p.expect_stderr_line_where("ShutdownWaiting", Duration::from_secs(5), |l| {
        l.starts_with(WAITING_LINE)
    });
    assert_contains(&report, "after SIGTERM for the main task to finish");
    assert_contains(&report, "plain tokio tasks: 2;");
    assert_contains(&report, "a second SIGTERM forces the exit");
    assert!(!report.contains("Ctrl-C"), "{report}");

    p.sigint();
    let sent = Instant::now();
    let took = exit_after(&mut p, sent, Duration::from_secs(5));
    assert!(took < Duration::from_secs(1), "{took:?}");
    p.assert_died_by_sigint(Duration::ZERO);
    p.assert_not_printed("cleanup done");
    let last = stderr_line(&mut p, FORCED_LINE);
    assert_contains(&last, "Forced exit by a second signal (Ctrl-C)");
    assert_contains(&last, "after SIGTERM; cut short: ");
    assert_contains(&last, &format!("<main task run at {main_at}:"));
    assert_contains(&last, &format!("<task spawned at {task_at}:"));
    assert_contains(&last, "plain tokio tasks: 2;");
    assert_contains(
        &last,
        &format!("1 spawn_blocking job(s) (spawned at {blocking_at}:"),
    );
}

#[test]
fn a_second_signal_during_close_forces_the_exit_and_names_the_finalizer() {
    let mut p = child("forced_close", &[]);
    let finalizer_at = p.expect_line_starting("finalizer at ");
    p.ready();
    p.sigterm();
    p.expect_line("finalizer started");
    p.sigterm();
    let sent = Instant::now();
    let took = exit_after(&mut p, sent, Duration::from_secs(5));
    assert!(took < Duration::from_secs(1), "{took:?}");
    p.assert_died_by_sigterm(Duration::ZERO);
    let last = stderr_line(&mut p, FORCED_LINE);
    assert_contains(&last, "Forced exit by a second signal (SIGTERM)");
    assert_contains(
        &last,
        &format!(
            "cut short: Runner::close running the at_close finalizer registered at {finalizer_at}:"
        ),
    );
}

/// The final words go to the exception handler, on the shutdown's helper thread; a handler
/// stuck there (here in a progress report, before the second signal) cannot hold the exit
/// back more than 100 ms (1 s here: the bound of the test, not of the code).
#[test]
fn a_forced_exit_is_not_held_back_by_an_exception_handler_that_never_returns() {
    let mut p = child("stuck_handler", &[]);
    p.ready();
    p.sigterm();
    p.expect_line("cleanup started");
    p.expect_line("handler stuck");
    p.sigterm();
    let sent = Instant::now();
    let took = exit_after(&mut p, sent, Duration::from_secs(5));
    assert!(took < Duration::from_secs(1), "{took:?}");
    p.assert_died_by_sigterm(Duration::ZERO);
}

/// A main thread stuck in a loop that never yields, holding std's stderr lock: the second
/// signal still kills at once, and the final words still come out.
#[test]
fn final_words_come_out_while_a_stuck_thread_holds_the_stderr_lock() {
    let mut p = child("stderr_locked", &[]);
    let main_at = p.expect_line_starting("main at ");
    p.ready();
    p.sigterm();
    p.expect_line("holding stderr");
    p.sigterm();
    let sent = Instant::now();
    let took = exit_after(&mut p, sent, Duration::from_secs(5));
    assert!(took < Duration::from_secs(1), "{took:?}");
    p.assert_died_by_sigterm(Duration::ZERO);
    let last = stderr_line(&mut p, FORCED_LINE);
    assert_contains(&last, &format!("cut short: <main task run at {main_at}:"));
}

/// `drain_delay = "30s"`: a SIGTERM makes `shutdown_requested()` true at once (seen from a
/// plain tokio task) and does not cancel the main task; a second signal cuts the delay
/// short (the drain begins at once), and the run then ends by the first signal.
fn a_second_signal_cuts_the_drain_delay_short(second: libc::c_int) {
    let mut p = child("delay", &[]);
    p.ready();
    p.sigterm();
    p.expect_line("requested");
    // A negative check: a delay that ended at once would cancel within milliseconds.
    p.assert_alive_after(Duration::from_millis(300));
    p.assert_not_printed("cancelled observed");
    p.signal(second);
    let sent = Instant::now();
    p.expect_line("cancelled observed");
    assert!(
        sent.elapsed() < Duration::from_secs(2),
        "{:?}",
        sent.elapsed()
    );
    p.expect_line("cleanup done");
    p.assert_died_by_sigterm(Duration::from_secs(5));
    p.assert_printed("finalizer ran");
    let stderr = p.stderr();
    assert!(!stderr.contains(FORCED_LINE), "{stderr}");
}

#[test]
fn a_second_sigterm_cuts_the_drain_delay_short_and_the_drain_runs_to_its_end() {
    a_second_signal_cuts_the_drain_delay_short(libc::SIGTERM);
}

#[test]
fn a_ctrl_c_cuts_the_drain_delay_short_and_the_drain_runs_to_its_end() {
    a_second_signal_cuts_the_drain_delay_short(libc::SIGINT);
}

/// Once the delay is cut short, a further signal forces the exit as usual.
#[test]
fn a_third_signal_after_the_drain_delay_was_cut_short_forces_the_exit() {
    let mut p = child("delay", &[("CLEANUP_MS", "60000")]);
    p.ready();
    p.sigterm();
    p.expect_line("requested");
    p.sigterm();
    p.expect_line("cancelled observed");
    p.sigint();
    let sent = Instant::now();
    let took = exit_after(&mut p, sent, Duration::from_secs(5));
    assert!(took < Duration::from_secs(1), "{took:?}");
    p.assert_died_by_sigint(Duration::ZERO);
    let last = stderr_line(&mut p, FORCED_LINE);
    assert_contains(&last, "Forced exit by a second signal (Ctrl-C)");
    assert_contains(&last, "<main task run at tests/bin/orchestrator_child.rs:");
}

/// A Ctrl-C at a terminal is never delayed, with a drain delay set.
#[test]
fn ctrl_c_is_never_delayed_by_the_drain_delay() {
    let mut p = child("delay", &[]);
    p.ready();
    p.sigint();
    let sent = Instant::now();
    p.expect_line("cancelled observed");
    assert!(
        sent.elapsed() < Duration::from_secs(2),
        "{:?}",
        sent.elapsed()
    );
    p.assert_died_by_sigint(Duration::from_secs(5));
    p.assert_printed("requested");
    p.assert_printed("cleanup done");
}

/// A drain delay that runs its course: the cancel comes when it is over, not before.
#[test]
fn the_main_task_is_cancelled_when_the_drain_delay_is_over() {
    let mut p = child("fuzz", &[("DELAY_MS", "400")]);
    p.ready();
    p.sigterm();
    let sent = Instant::now();
    p.expect_line("requested");
    let requested = sent.elapsed();
    p.expect_line("cancelled observed");
    let cancelled = sent.elapsed();
    assert!(requested < Duration::from_millis(300), "{requested:?}");
    assert!(cancelled >= Duration::from_millis(390), "{cancelled:?}");
    p.assert_died_by_sigterm(Duration::from_secs(5));
    p.assert_printed("result: Err(Terminated)");
    p.assert_printed("closed");
}

/// One `GET path` on a new connection: the status line, or the error that cut it.
fn get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let response = common::http_get(addr, path, Duration::from_secs(10))?;
    Ok(response.lines().next().unwrap_or_default().to_owned())
}

/// `examples/axum_server.rs` (`drain_delay = "1s"`), as Kubernetes drives it: a client polls
/// the readiness route from the SIGTERM on. During the delay the route says 503 while the
/// server still serves other requests; then the drain begins and new connections are
/// refused.
#[test]
fn axum_readiness_fails_during_the_drain_delay_while_the_server_still_serves() {
    let mut server = Proc::example("axum_server", &[], Start::Default, &[]);
    let addr: SocketAddr = server
        .expect_line_starting("listening on ")
        .parse()
        .unwrap();
    assert_eq!(get(addr, "/ready").unwrap(), "HTTP/1.1 200 OK");
    server.sigterm();
    let sent = Instant::now();
    let mut unready = 0;
    let mut served = 0;
    let refused_after = loop {
        match get(addr, "/ready") {
            Ok(status) if status.starts_with("HTTP/1.1 503") => {
                unready += 1;
                if get(addr, "/").is_ok_and(|s| s == "HTTP/1.1 200 OK") {
                    served += 1;
                }
            }
            // The signal reaches runner's signal thread a moment after kill(2) returns:
            // until then the probe may still see the server ready, never after.
            Ok(status) if unready == 0 && sent.elapsed() < Duration::from_secs(1) => {
                assert_eq!(status, "HTTP/1.1 200 OK");
            }
            Ok(status) => panic!(
                "/ready answered {status:?} {:?} after SIGTERM, after {unready} unready answers",
                sent.elapsed()
            ),
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => break sent.elapsed(),
            // The listener closes under a connection in its backlog: look again.
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Err(e) => panic!("/ready: {e}"),
        }
        assert!(sent.elapsed() < Duration::from_secs(10), "never refused");
        // Polling as a readiness probe does (no event to wait on): not an ordering sleep.
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(unready >= 5, "{unready} unready answers during the delay");
    assert!(served >= 5, "{served} requests served during the delay");
    assert!(
        refused_after >= Duration::from_millis(900),
        "refused {refused_after:?} after SIGTERM, before the 1 s drain delay was over"
    );
    server.expect_line_starting("draining");
    server.assert_died_by_sigterm(Duration::from_secs(10));
}

/// `shutdown_requested()` from every kind of code of a Runner: false while it runs, true
/// from the start of `close()` (a finalizer, a task cancelled by the close, a plain tokio
/// task polled during it, a blocking job), and false outside any Runner.
#[test]
fn shutdown_requested_answers_from_every_kind_of_task_on_every_loop() {
    use std::sync::{Arc, Mutex};
    for workers in [0, 1, 2, 4] {
        let seen = Arc::new(Mutex::new(Vec::<(&str, bool)>::new()));
        let mut runner = match workers {
            0 => builder(Flavor::CurrentThread).build(),
            n => builder(Flavor::CurrentThread)
                .loop_factory(move || {
                    tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(n)
                        .enable_all()
                        .build()
                })
                .build(),
        };
        let record = |seen: &Arc<Mutex<Vec<(&'static str, bool)>>>, what| {
            seen.lock()
                .unwrap()
                .push((what, runner::shutdown_requested()));
        };
        runner
            .run({
                let seen = seen.clone();
                async move {
                    record(&seen, "main");
                    let s = seen.clone();
                    runner::spawn(async move { record(&s, "runner::spawn") })
                        .await
                        .unwrap();
                    let s = seen.clone();
                    tokio::spawn(async move { record(&s, "tokio::spawn") })
                        .await
                        .unwrap();
                    let s = seen.clone();
                    runner::spawn_blocking(move || record(&s, "runner::spawn_blocking"))
                        .await
                        .unwrap();
                    let s = seen.clone();
                    tokio::task::spawn_blocking(move || record(&s, "tokio spawn_blocking"))
                        .await
                        .unwrap();
                    // Left for the close: a task that observes its cancel, a plain task.
                    let s = seen.clone();
                    let (observing, started) = tokio::sync::oneshot::channel();
                    drop(runner::spawn(async move {
                        let cancelled = runner::cancelled();
                        let _ = observing.send(());
                        cancelled.await;
                        record(&s, "cancelled by close");
                    }));
                    started.await.unwrap();
                    let s = seen.clone();
                    drop(tokio::spawn(async move {
                        loop {
                            if runner::shutdown_requested() {
                                record(&s, "plain task during close");
                                return;
                            }
                            tokio::task::yield_now().await;
                        }
                    }));
                    let s = seen.clone();
                    runner::at_close(move || async move {
                        record(&s, "at_close");
                        let s2 = s.clone();
                        runner::spawn_blocking(move || record(&s2, "blocking during close"))
                            .await
                            .unwrap();
                    });
                }
            })
            .unwrap();
        record(&seen, "between run and close");
        runner.close();
        record(&seen, "after close");
        let seen = seen.lock().unwrap().clone();
        let expected = [
            ("main", false),
            ("runner::spawn", false),
            ("tokio::spawn", false),
            ("runner::spawn_blocking", false),
            ("tokio spawn_blocking", false),
            ("between run and close", false),
            ("cancelled by close", true),
            ("at_close", true),
            ("blocking during close", true),
            ("after close", false),
        ];
        for (what, value) in expected {
            assert!(
                seen.contains(&(what, value)),
                "{workers} worker(s): expected {what} = {value} in {seen:?}"
            );
        }
        // The plain task may or may not get a poll between the start of the close and the
        // runtime's end; when it did, it saw the request.
        assert!(
            !seen.contains(&("plain task during close", false)),
            "{seen:?}"
        );
    }
}

/// The timing fuzz of the new handler states: a SIGTERM (with a drain delay, and for some
/// children a grace period), then a Ctrl-C at a random moment: during the delay (it cuts it
/// short), as the delay ends, during the drain, during `close()`, after the end. 200
/// children, four at a time (they mostly sleep). Each must end one of the ways the rules
/// allow:
/// - by SIGTERM, after `close()` returned (the graceful end; the Ctrl-C, if it came before,
///   cut the delay short), or by the grace period (its final report then says so);
/// - by SIGINT with the final words (a forced exit), or once `close()` was at its very end
///   (its finalizer done: a Ctrl-C after `close()` returns gets the default action, and the
///   child cannot print "closed" at that very moment), or while the grace period's final
///   words were being written;
/// - a Ctrl-C sent while the delay surely still ran (25 ms before it could end) cut it
///   short: never a forced exit.
///
/// And never crash, hang, panic, or cancel the main task twice.
#[test]
fn a_second_signal_at_a_random_moment_of_a_delayed_shutdown_ends_it_one_allowed_way() {
    const CHILDREN: usize = 200;
    let mut rng = common::Rng::from_env_or_clock("delayed_shutdown_fuzz");
    let plan: Vec<[u64; 5]> = (0..CHILDREN)
        .map(|i| {
            let ms = |rng: &mut common::Rng, max: u64| {
                rng.duration(Duration::from_millis(max)).as_millis() as u64
            };
            let delay = 1 + ms(&mut rng, 80);
            let cleanup = ms(&mut rng, 20);
            let close = ms(&mut rng, 10);
            // One child in four has a grace period that may end before the cleanup does.
            let grace = if i % 4 == 0 {
                delay + 5 + ms(&mut rng, 20)
            } else {
                0
            };
            let second = ms(&mut rng, delay + cleanup + close + 10);
            [delay, cleanup, close, grace, second]
        })
        .collect();
    let started = Instant::now();
    let results: Vec<Result<End, String>> = std::thread::scope(|s| {
        let lanes: Vec<_> = plan
            .chunks(CHILDREN / 4)
            .map(|lane| s.spawn(move || lane.iter().map(|p| fuzz_child(*p)).collect::<Vec<_>>()))
            .collect();
        lanes
            .into_iter()
            .flat_map(|lane| lane.join().unwrap())
            .collect()
    });
    let mut tally = std::collections::BTreeMap::new();
    let mut failures = Vec::new();
    for result in results {
        match result {
            Ok(end) => *tally.entry(format!("{end:?}")).or_insert(0) += 1,
            Err(failure) => failures.push(failure),
        }
    }
    eprintln!("{CHILDREN} children in {:?}: {tally:?}", started.elapsed());
    assert!(
        failures.is_empty(),
        "{} of {CHILDREN} failed; the first:\n{}",
        failures.len(),
        failures[0]
    );
    // The moments that matter were reached (each is a large share of the plan).
    for end in ["CutShort", "Forced", "Graced"] {
        assert!(tally.contains_key(end), "no child ended {end}: {tally:?}");
    }
}

/// How a fuzz child ended.
#[derive(Debug)]
enum End {
    /// The Ctrl-C, sent while the drain delay surely ran, cut it short; the drain and close
    /// ran to their end.
    CutShort,
    /// The drain and close ran to their end (a Ctrl-C at an uncertain moment cut the delay
    /// short, or came as the process ended, or after).
    Graceful,
    /// The Ctrl-C forced the exit, with final words.
    Forced,
    /// The grace period ended it, with its final report.
    Graced,
    /// The Ctrl-C came as `close()` ended (the default action).
    AfterClose,
    /// The Ctrl-C, sent right after the SIGTERM, was delivered first (the kernel hands
    /// pending signals out lowest number first): it began the shutdown undelayed, and the
    /// SIGTERM forced the exit with final words.
    Overtaken,
}

fn fuzz_child([delay, cleanup, close, grace, second]: [u64; 5]) -> Result<End, String> {
    let env = [
        ("DELAY_MS", delay.to_string()),
        ("CLEANUP_MS", cleanup.to_string()),
        ("CLOSE_MS", close.to_string()),
        ("GRACE_MS", grace.to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let plan = format!(
        "delay {delay} ms, cleanup {cleanup} ms, close {close} ms, grace {grace} ms, Ctrl-C \
         {second} ms after SIGTERM"
    );
    let mut p = child("fuzz", &env);
    p.ready();
    let sigterm_sent = Instant::now();
    p.sigterm();
    // sleep: the random moment of the second signal, the test's subject.
    std::thread::sleep(Duration::from_millis(second).saturating_sub(sigterm_sent.elapsed()));
    let alive = p.wait_for_exit(Duration::ZERO).is_none();
    if alive {
        // SAFETY: kill(2) of our child, alive (or a zombie until reaped: no pid reuse).
        unsafe { libc::kill(p.pid(), libc::SIGINT) };
    }
    // Taken once kill(2) has returned: the Ctrl-C was sent by then.
    let ctrl_c_sent = Instant::now();
    // The delay ends no sooner than `delay` after the SIGTERM was sent. The margin: the
    // child's handler may run later than the kill (a child not scheduled at once on a
    // loaded machine), and so may the signal thread's timer.
    let during_delay = alive
        && ctrl_c_sent + Duration::from_millis(25) < sigterm_sent + Duration::from_millis(delay);
    let Some(status) = p.wait_for_exit(Duration::from_secs(10)) else {
        return Err(format!(
            "{plan}: still running 10 s later\n{}",
            p.describe()
        ));
    };
    p.drain_lines();
    let stderr = p.stderr();
    let fail =
        |p: &mut Proc, why: &str| Err(format!("{plan}: {why} ({status:?})\n{}", p.describe()));
    if stderr.contains("panicked") {
        return fail(&mut p, "a panic");
    }
    let cancels = p.seen.iter().filter(|l| *l == "cancelled observed").count();
    if cancels > 1 {
        return fail(&mut p, "the main task was cancelled twice");
    }
    let closed = p.printed("closed");
    let finalized = p.printed("finalizer done");
    let forced = stderr.contains(FORCED_LINE);
    let graced = stderr.contains(GRACE_LINE);
    let end = match status.signal() {
        Some(libc::SIGTERM) if closed && !forced && !graced => {
            if !p.printed("result: Err(Terminated)") {
                return fail(
                    &mut p,
                    "ended by SIGTERM, but its run did not return Terminated",
                );
            }
            if !p.seen.iter().any(|l| l.starts_with("cleanup done")) {
                return fail(&mut p, "the drain was cut, yet no forced exit");
            }
            if during_delay {
                End::CutShort
            } else {
                End::Graceful
            }
        }
        Some(libc::SIGTERM) if graced && grace > 0 && !forced => End::Graced,
        // The Ctrl-C overtook the SIGTERM (sent right after it: with both pending, the
        // kernel delivers the lower-numbered SIGINT first): the SIGTERM was second.
        Some(libc::SIGTERM) if forced && second < 2 => End::Overtaken,
        Some(libc::SIGINT) if forced && !graced => End::Forced,
        Some(libc::SIGINT) if graced && grace > 0 => End::Graced,
        Some(libc::SIGINT) if finalized && !forced => End::AfterClose,
        _ => return fail(&mut p, "an end the rules do not allow"),
    };
    if during_delay && matches!(end, End::Forced | End::AfterClose) {
        return fail(
            &mut p,
            "a Ctrl-C during the drain delay did not cut it short",
        );
    }
    Ok(end)
}
