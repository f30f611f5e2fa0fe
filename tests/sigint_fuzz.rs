//! The SIGINT timing fuzz (DESIGN.md "Ctrl-C", point 6: no Ctrl-C is ever lost).
//!
//! Each child (`sigint_child fuzz`) spends ~100 ms creating Runners (lazy init, current- and
//! multi-thread), running short main tasks, pausing between runs and closing (with pending
//! tasks and a finalizer); then it prints `work done` and sleeps 5 s outside any run before
//! exiting 0. It gets one SIGINT at a random moment in that span. The only acceptable ends:
//! a run returns `Interrupted` (the child prints it, closes and dies by SIGINT), or the
//! default action kills it outside a run. Exiting 0, or still running 5 s after the signal,
//! is a swallowed SIGINT.
#![cfg(unix)]

mod common;

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use common::child::Proc;

const CHILDREN: usize = 300;
/// Keeps the test under a minute on a loaded machine: no new child starts after this.
const BUDGET: Duration = Duration::from_secs(45);
/// The child's work lasts ~100 ms; a few signals land just after it, outside any run.
const MAX_DELAY: Duration = Duration::from_millis(105);
/// A generous bound: a handled SIGINT ends the child in milliseconds.
const SWALLOWED_AFTER: Duration = Duration::from_secs(5);

#[derive(Debug)]
enum End {
    /// A run returned `Interrupted`; the child then died by SIGINT.
    Interrupted,
    /// Killed by the default action, during the work (between runs, lazy init, close).
    KilledDuringWork,
    /// Killed by the default action after the work.
    KilledAfterWork,
    /// The child had already exited before the signal could be sent.
    Late,
}

fn one_child(delay: Duration) -> Result<End, String> {
    let mut p = Proc::spawn("fuzz");
    p.ready();
    // sleep: the random moment of the SIGINT, the test's subject.
    std::thread::sleep(delay);
    if let Some(status) = p.wait_for_exit(Duration::ZERO) {
        return match status.code() {
            Some(0) => Ok(End::Late),
            _ => Err(format!(
                "exited on its own with {status:?}\n{}",
                p.describe()
            )),
        };
    }
    p.sigint();
    let Some(status) = p.wait_for_exit(SWALLOWED_AFTER) else {
        return Err(format!(
            "swallowed: still running {SWALLOWED_AFTER:?} after the SIGINT (delay {delay:?})\n{}",
            p.describe()
        ));
    };
    p.drain_lines();
    if p.stderr().contains("panicked") {
        return Err(format!("a panic (delay {delay:?})\n{}", p.describe()));
    }
    if status.signal() != Some(libc::SIGINT) {
        return Err(format!(
            "expected death by SIGINT (delay {delay:?}), got {status:?}\n{}",
            p.describe()
        ));
    }
    if p.printed("result: Err(Interrupted)") {
        Ok(End::Interrupted)
    } else if p.seen.iter().any(|l| l.starts_with("result:")) {
        Err(format!(
            "a run ended otherwise (delay {delay:?})\n{}",
            p.describe()
        ))
    } else if p.seen.iter().any(|l| l.starts_with("work done")) {
        Ok(End::KilledAfterWork)
    } else {
        Ok(End::KilledDuringWork)
    }
}

#[test]
fn every_sigint_at_a_random_moment_interrupts_a_run_or_kills() {
    let mut rng = common::Rng::from_env_or_clock("sigint_fuzz");
    let delays: Vec<Duration> = (0..CHILDREN).map(|_| rng.duration(MAX_DELAY)).collect();
    let started = Instant::now();
    // Two lanes: the machine has two cores, and a loaded one must not look like a lost signal.
    let ends: Vec<Result<End, String>> = std::thread::scope(|s| {
        let lanes: Vec<_> = delays
            .chunks(CHILDREN / 2)
            .map(|lane| {
                s.spawn(move || {
                    lane.iter()
                        .take_while(|_| started.elapsed() < BUDGET)
                        .map(|&delay| one_child(delay))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        lanes.into_iter().flat_map(|l| l.join().unwrap()).collect()
    });
    let failures: Vec<&String> = ends.iter().filter_map(|e| e.as_ref().err()).collect();
    let count = |want: fn(&End) -> bool| ends.iter().flatten().filter(|e| want(e)).count();
    let (interrupted, during, after, late) = (
        count(|e| matches!(e, End::Interrupted)),
        count(|e| matches!(e, End::KilledDuringWork)),
        count(|e| matches!(e, End::KilledAfterWork)),
        count(|e| matches!(e, End::Late)),
    );
    eprintln!(
        "sigint_fuzz: {} children in {:?}: {interrupted} interrupted in a run, {during} killed \
         between runs/in init or close, {after} killed after the work, {late} late, {} failed",
        ends.len(),
        started.elapsed(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} SIGINTs mishandled; first:\n{}",
        failures.len(),
        ends.len(),
        failures[0]
    );
    assert!(
        ends.len() >= 100,
        "only {} children ran within {BUDGET:?}",
        ends.len()
    );
    assert!(
        interrupted > 0 && during > 0,
        "the random moments missed the runs ({interrupted}) or the gaps ({during})"
    );
}
