//! `#[runner::main]` and `#[runner::test]` in a user's own crate, built by cargo as the
//! user's build would (`common::fixture`): a dependency renamed in the user's Cargo.toml
//! (`rt = { package = "tokio-runner", .. }`), which only compiles with `crate = "rt"`; and
//! `#[runner::main]`'s own keys checked at run time, on a real child process with real
//! kill(2).
#![cfg(unix)]

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::child::{Proc, Start};
use common::fixture;

/// The library's tests: `#[rt::test]` with `crate = "rt"`, plain and with keys.
const LIB: &str = r#"//! Fixture: runner under the name `rt`.

#[cfg(test)]
mod tests {
    #[rt::test(crate = "rt")]
    async fn renamed_crate_runs_a_test() {
        assert_eq!(rt::spawn(async { 6 * 7 }).await.ok(), Some(42));
    }

    #[rt::test(crate = "rt", flavor = "current_thread", debug = true, shutdown_timeout = "1s")]
    async fn renamed_crate_with_keys() {
        assert!(rt::debug_enabled());
        tokio::time::sleep(std::time::Duration::from_millis(1)).await; // sleep: a timer works
    }

    #[rt::test(crate = "rt", timeout = "100ms")]
    #[should_panic(expected = "timed out after 100ms")]
    async fn renamed_crate_timeout_fails_the_test() {
        std::future::pending::<()>().await;
    }
}
"#;

/// `#[rt::main]` with the main-only key `handle_sigint = false` and `shutdown_timeout`.
/// Prints `ready`, then waits for a line on stdin (`go`) or a cancel (`cancelled observed`);
/// then leaves a task that observes the cancel and ignores it, so `close()` (done by the
/// attribute after main) waits for it until the shutdown timeout.
const MAIN_KEYS: &str = r#"use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

static OBSERVING: AtomicBool = AtomicBool::new(false);

#[rt::main(crate = "rt", handle_sigint = false, shutdown_timeout = "100ms")]
async fn main() {
    let go = rt::spawn_blocking(|| {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    });
    let mut go = std::pin::pin!(go);
    let mut cancelled = std::pin::pin!(rt::cancelled());
    println!("ready");
    let woken_by = std::future::poll_fn(|cx| {
        if cancelled.as_mut().poll(cx).is_ready() {
            Poll::Ready("cancelled observed")
        } else if go.as_mut().poll(cx).is_ready() {
            Poll::Ready("go")
        } else {
            Poll::Pending
        }
    })
    .await;
    println!("{woken_by}");
    drop(rt::spawn(async {
        let cancelled = rt::cancelled();
        OBSERVING.store(true, Ordering::SeqCst);
        cancelled.await;
        std::future::pending::<()>().await;
    }));
    // Handshake: the task holds its cancelled() before main returns (one yield on this
    // current-thread loop is enough; the loop makes sure).
    while !OBSERVING.load(Ordering::SeqCst) {
        tokio::task::yield_now().await;
    }
    println!("returning");
}
"#;

fn fixture_crate() -> PathBuf {
    let dependencies = format!(
        "rt = {{ package = \"tokio-runner\", path = \"{}\" }}\n\
         tokio = {{ version = \"1.54\", default-features = false, features = [\"time\", \"net\"] }}",
        fixture::checkout()
    );
    fixture::write_crate(
        "renamed_runner",
        &dependencies,
        &[("src/lib.rs", LIB), ("src/bin/main_keys.rs", MAIN_KEYS)],
    )
}

/// The `main_keys` program, built once per test process.
fn main_keys() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| fixture::build_bin(&fixture_crate(), "main_keys"))
}

#[test]
fn test_attribute_with_crate_key_runs_in_a_crate_that_renamed_runner() {
    common::watchdog(common::FIXTURE_TEST_LIMIT);
    let run = fixture::cargo(&fixture_crate(), &["test", "--lib"]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{}\n{stdout}\n{stderr}", run.status);
    for test in [
        "renamed_crate_runs_a_test",
        "renamed_crate_with_keys",
        "renamed_crate_timeout_fails_the_test - should panic",
    ] {
        assert!(
            stdout.contains(&format!("test tests::{test} ... ok")),
            "{test} did not pass:\n{stdout}"
        );
    }
    assert!(stdout.contains("test result: ok. 3 passed"), "{stdout}");
}

#[test]
fn main_shutdown_timeout_key_bounds_close_and_its_report_names_it() {
    common::watchdog(common::FIXTURE_TEST_LIMIT);
    let mut p = Proc::program(main_keys(), "main_keys", &[], Start::Default, &[]);
    p.ready();
    p.send_go();
    let go = Instant::now();
    p.expect_line("go");
    p.expect_line("returning");
    // The bound is the behaviour: 100 ms set, against the default 300 s.
    p.assert_exit_0(Duration::from_secs(30));
    let took = go.elapsed();
    assert!(took < Duration::from_secs(5), "exit {took:?} after go");
    let stderr = p.stderr();
    let report = stderr
        .lines()
        .find(|l| l.starts_with("runner: Runner shutdown: 1 cancelled task(s)"))
        .unwrap_or_else(|| panic!("no shutdown-timeout report in:\n{stderr}"));
    assert!(report.contains("shutdown timeout of 100ms"), "{report}");
}

#[test]
fn main_handle_sigint_false_leaves_ctrl_c_at_its_default() {
    common::watchdog(common::FIXTURE_TEST_LIMIT);
    let mut p = Proc::program(main_keys(), "main_keys", &[], Start::Default, &[]);
    p.ready();
    p.sigint();
    p.assert_died_by_sigint(Duration::from_secs(5));
    // Handled, the main task would have seen the cancel.
    p.assert_not_printed("cancelled observed");
    p.assert_not_printed("returning");
}
