//! runner-core turns on only the tokio features its own code uses; the default loop enables
//! every driver, so timers and sockets come from the features of the user's own tokio, and
//! so do `flavor = "multi_thread"` (tokio's `rt-multi-thread`) and `start_paused` (tokio's
//! `test-util`). These build small user crates against this checkout (each its own workspace, so
//! Cargo does not unify their tokio features; one shared target dir under `target/tmp`),
//! then run them.

mod common;

use common::fixture;

use std::path::{Path, PathBuf};
use std::process::Command;

const TIME_AND_NET: &str = r#"
#[runner::main]
async fn main() -> std::io::Result<()> {
    let started = std::time::Instant::now();
    // sleep: the timer under test (the default loop's time driver).
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert!(started.elapsed() >= std::time::Duration::from_millis(20));
    let timed_out = tokio::time::timeout(
        std::time::Duration::from_millis(10),
        std::future::pending::<()>(),
    )
    .await;
    assert!(timed_out.is_err());

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let client = runner::spawn(async move { tokio::net::TcpStream::connect(address).await });
    let (server_side, _) = listener.accept().await?;
    let client_side = client.await.expect("connect task")?;
    assert_eq!(server_side.peer_addr()?, client_side.local_addr()?);
    println!("timers and sockets work");
    Ok(())
}
"#;

const RT_ONLY: &str = r#"
#[runner::main]
async fn main() {
    let answer = runner::spawn(async { 6 * 7 });
    tokio::task::yield_now().await;
    println!("answer {}", answer.await.expect("task"));
}
"#;

const MULTI_THREAD: &str = r#"
#[runner::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let flavor = tokio::runtime::Handle::current().runtime_flavor();
    assert_eq!(flavor, tokio::runtime::RuntimeFlavor::MultiThread);
    println!("multi-thread answer {}", runner::spawn(async { 6 * 7 }).await.expect("task"));
}
"#;

const LOCAL_MAIN: &str = r#"
#[runner::main(flavor = "local", name = "rt-only-local")]
async fn main() {
    assert_eq!(tokio::runtime::Handle::current().name(), Some("rt-only-local"));
    let rc = std::rc::Rc::new(6);
    let local = tokio::task::spawn_local({
        let rc = rc.clone();
        async move { *rc * 7 }
    });
    println!("local answer {}", local.await.expect("local task"));
}
"#;

const PAUSED_MAIN: &str = r#"
#[runner::main(start_paused = true)]
async fn main() {
    let real = std::time::Instant::now();
    tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
    let took = real.elapsed();
    assert!(took < std::time::Duration::from_millis(500), "{took:?}");
    println!("an hour passed on the paused clock");
}
"#;

const PAUSED_TESTS: &str = r#"
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const HOUR: Duration = Duration::from_secs(3600);

#[runner::test(start_paused = true)]
async fn an_hour_of_tokio_sleep_takes_no_real_time() {
    let real = Instant::now();
    let on_the_clock = tokio::time::Instant::now();
    tokio::time::sleep(HOUR).await;
    assert!(on_the_clock.elapsed() >= HOUR);
    assert!(real.elapsed() < Duration::from_millis(500), "{:?}", real.elapsed());
}

#[runner::test]
async fn without_start_paused_the_clock_is_real() {
    let real = Instant::now();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(real.elapsed() >= Duration::from_millis(50));
}

#[runner::test(flavor = "local", start_paused = true)]
async fn a_local_runtime_starts_paused_too() {
    let real = Instant::now();
    let hour = tokio::task::spawn_local(async {
        let on_the_clock = tokio::time::Instant::now();
        tokio::time::sleep(HOUR).await;
        on_the_clock.elapsed()
    });
    assert!(hour.await.unwrap() >= HOUR);
    assert!(real.elapsed() < Duration::from_millis(500), "{:?}", real.elapsed());
}

#[runner::test(start_paused = true, timeout = "2s")]
async fn an_hour_on_the_paused_clock_does_not_spend_a_2s_timeout() {
    let real = Instant::now();
    tokio::time::sleep(HOUR).await;
    assert!(real.elapsed() < Duration::from_millis(500), "{:?}", real.elapsed());
}

static HOURS_SLEPT: AtomicU64 = AtomicU64::new(0);

#[runner::test(start_paused = true, timeout = "2s")]
#[ignore = "run by the_timeout_counts_real_time_while_the_paused_clock_races_ahead"]
async fn sleeps_an_hour_at_a_time_forever() {
    loop {
        tokio::time::sleep(HOUR).await;
        HOURS_SLEPT.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn the_timeout_counts_real_time_while_the_paused_clock_races_ahead() {
    let real = Instant::now();
    let panic = std::panic::catch_unwind(sleeps_an_hour_at_a_time_forever)
        .expect_err("the timeout fails the test");
    let took = real.elapsed();
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("test timed out after 2s (timeout = \"2s\")"), "{message}");
    assert!(took >= Duration::from_secs(2), "fired after {took:?}");
    assert!(took < Duration::from_secs(10), "fired after {took:?}");
    // Hours went by on the paused clock before the 2 real seconds were up.
    let hours = HOURS_SLEPT.load(Ordering::Relaxed);
    assert!(hours >= 2, "{hours} hours");
}
"#;

const PAUSED_WITHOUT_TEST_UTIL: &str = r#"#[runner::test(start_paused = true)]
async fn paused() {
    tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
}
"#;

/// Writes a one-package workspace `name` depending on this checkout's `runner` with
/// `runner_features` and on tokio with `features`, with `bins` as its binaries.
fn user_crate(
    name: &str,
    runner_features: &[&str],
    features: &[&str],
    bins: &[(&str, &str)],
) -> PathBuf {
    let list = |features: &[&str]| {
        features
            .iter()
            .map(|f| format!("{f:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let dependencies = format!(
        "tokio-runner = {{ path = \"{}\", features = [{}] }}\n\
         tokio = {{ version = \"1.54\", default-features = false, features = [{}] }}",
        fixture::checkout(),
        list(runner_features),
        list(features)
    );
    let files: Vec<(String, &str)> = bins
        .iter()
        .map(|(bin, source)| (format!("src/bin/{bin}.rs"), *source))
        .collect();
    let files: Vec<(&str, &str)> = files.iter().map(|(p, s)| (p.as_str(), *s)).collect();
    fixture::write_crate(name, &dependencies, &files)
}

/// Adds integration tests (`tests/<name>.rs`) to the user crate at `dir`.
fn add_tests(dir: &Path, tests: &[(&str, &str)]) {
    for (name, source) in tests {
        fixture::write_if_changed(&dir.join("tests").join(format!("{name}.rs")), source);
    }
}

/// `cargo <command> --quiet --bin <bin>` in `dir`, into the shared target dir.
fn cargo(dir: &Path, command: &str, bin: &str) -> std::process::Output {
    fixture::cargo(dir, &[command, "--quiet", "--bin", bin])
}

/// Builds the crate at `dir` and runs binary `bin`; its stdout.
fn build_and_run(dir: &Path, bin: &str) -> String {
    let run = cargo(dir, "run", bin);
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "`cargo run --bin {bin}` in {}: {}\n{stdout}\n{stderr}",
        dir.display(),
        run.status
    );
    stdout
}

#[test]
fn a_user_crate_with_tokio_time_and_net_gets_timers_and_sockets_on_the_default_loop() {
    let dir = user_crate(
        "user_time_net",
        &[],
        &["time", "net"],
        &[("time_net", TIME_AND_NET)],
    );
    assert_eq!(build_and_run(&dir, "time_net"), "timers and sockets work\n");
}

#[test]
fn a_user_crate_with_runner_and_tokio_macros_compiles_one_syn() {
    let dir = user_crate(
        "user_tokio_macros",
        &[],
        &["rt", "macros"],
        &[("tokio_macros", RT_ONLY)],
    );
    let mut tree = Command::new(env!("CARGO"));
    tree.args([
        "tree",
        "--offline",
        "--edges",
        "normal,build",
        "--invert",
        "syn",
    ])
    .current_dir(&dir);
    let tree = common::output_within(&mut tree, common::BUILD_LIMIT, "cargo tree");
    let stdout = String::from_utf8_lossy(&tree.stdout);
    let stderr = String::from_utf8_lossy(&tree.stderr);
    // With two versions of syn, `--invert syn` is ambiguous and cargo says so.
    assert!(tree.status.success(), "{stdout}\n{stderr}");
    let syns: Vec<&str> = stdout.lines().filter(|l| l.starts_with("syn v")).collect();
    assert_eq!(syns.len(), 1, "{stdout}");
    assert!(syns[0].starts_with("syn v3."), "{stdout}");
    assert!(
        stdout.contains("tokio-runner-macros") && stdout.contains("tokio-macros"),
        "{stdout}"
    );
}

fn rt_only_crate() -> PathBuf {
    user_crate(
        "user_rt_only",
        &[],
        &["rt"],
        &[
            ("rt_only", RT_ONLY),
            ("rt_only_multi", MULTI_THREAD),
            ("rt_only_local", LOCAL_MAIN),
        ],
    )
}

#[test]
fn a_user_crate_with_only_tokio_rt_builds_and_runs_runner_main() {
    assert_eq!(build_and_run(&rt_only_crate(), "rt_only"), "answer 42\n");
}

#[test]
fn local_flavor_with_a_name_needs_only_tokio_rt() {
    assert_eq!(
        build_and_run(&rt_only_crate(), "rt_only_local"),
        "local answer 42\n"
    );
}

/// The user-facing part of the error (the note after it points into runner's source).
const MULTI_THREAD_WITHOUT_TOKIO_FEATURE: &str = r#"
error[E0277]: `flavor = "multi_thread"` needs tokio's `rt-multi-thread` feature, which this build's tokio does not have
 --> src/bin/rt_only_multi.rs:2:16
  |
2 | #[runner::main(flavor = "multi_thread", worker_threads = 2)]
  |                ^^^^^^ the multi-thread runtime is not compiled in
  |
  = help: the trait `runner::__private::TokioRtMultiThread` is not implemented for `tokio::runtime::Builder`
  = note: turn it on where you depend on tokio: `tokio = { version = "1", features = ["rt-multi-thread"] }` (`features = ["full"]` has it too)
  = note: or with runner's shortcut for it: `tokio-runner = { version = "0.2", features = ["rt-multi-thread"] }`
  = note: or keep the default current-thread runtime: remove `flavor` and `worker_threads`
"#;

/// rustc's output with each line's indentation removed: the width of its margin depends on
/// the longest line number it quotes, here one in runner's own source.
fn unindented(text: &str) -> String {
    text.lines()
        .map(str::trim_start)
        .collect::<Vec<_>>()
        .join("\n")
}

/// `cargo <args>` in `dir` must fail with exactly one error: `expected` (compared without
/// indentation).
fn assert_one_error(dir: &Path, args: &[&str], expected: &str) {
    let build = fixture::cargo(dir, args);
    let stderr = String::from_utf8_lossy(&build.stderr);
    assert!(!build.status.success(), "{stderr}");
    assert!(
        unindented(&stderr).contains(unindented(expected).trim()),
        "expected:{expected}\ngot:\n{stderr}"
    );
    // Nothing else: no rustc error about generated code.
    assert_eq!(stderr.matches("error[").count(), 1, "{stderr}");
}

#[test]
fn multi_thread_flavor_without_tokio_rt_multi_thread_is_an_error_at_the_key_naming_it() {
    assert_one_error(
        &rt_only_crate(),
        &["build", "--quiet", "--bin", "rt_only_multi"],
        MULTI_THREAD_WITHOUT_TOKIO_FEATURE,
    );
}

#[test]
fn multi_thread_flavor_runs_with_tokio_full_and_runner_default_features() {
    let dir = user_crate("user_full", &[], &["full"], &[("full_multi", MULTI_THREAD)]);
    assert_eq!(
        build_and_run(&dir, "full_multi"),
        "multi-thread answer 42\n"
    );
}

#[test]
fn multi_thread_flavor_runs_with_the_rt_multi_thread_feature_and_tokio_rt_only() {
    let dir = user_crate(
        "user_rt_multi",
        &["rt-multi-thread"],
        &["rt"],
        &[("rt_multi", MULTI_THREAD)],
    );
    assert_eq!(build_and_run(&dir, "rt_multi"), "multi-thread answer 42\n");
}

fn paused_crate() -> PathBuf {
    let dir = user_crate(
        "user_paused",
        &[],
        &["rt", "time", "test-util"],
        &[("paused_main", PAUSED_MAIN)],
    );
    add_tests(&dir, &[("paused", PAUSED_TESTS)]);
    dir
}

#[test]
fn start_paused_main_with_tokio_test_util_sleeps_an_hour_at_once() {
    assert_eq!(
        build_and_run(&paused_crate(), "paused_main"),
        "an hour passed on the paused clock\n"
    );
}

#[test]
fn start_paused_tests_with_tokio_test_util_skip_clock_time_but_not_their_timeout() {
    let run = fixture::cargo(&paused_crate(), &["test", "--test", "paused"]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stdout}\n{stderr}");
    for test in [
        "an_hour_of_tokio_sleep_takes_no_real_time",
        "without_start_paused_the_clock_is_real",
        "an_hour_on_the_paused_clock_does_not_spend_a_2s_timeout",
        "a_local_runtime_starts_paused_too",
        "the_timeout_counts_real_time_while_the_paused_clock_races_ahead",
    ] {
        assert!(
            stdout.contains(&format!("test {test} ... ok")),
            "{test}: {stdout}"
        );
    }
}

const START_PAUSED_WITHOUT_TEST_UTIL: &str = r#"
error[E0277]: `start_paused = true` needs tokio's `test-util` feature, which this build's tokio does not have
 --> tests/paused_without_test_util.rs:1:16
  |
1 | #[runner::test(start_paused = true)]
  |                ^^^^^^^^^^^^ tokio's clock cannot be paused in this build
  |
  = help: the trait `runner::__private::TokioTestUtil` is not implemented for `tokio::runtime::Builder`
  = note: turn it on where you depend on tokio (for tests: under `[dev-dependencies]`), as tokio's own `start_paused` needs: `tokio = { version = "1", features = ["test-util"] }`
"#;

#[test]
fn start_paused_without_tokio_test_util_is_an_error_at_the_key_naming_it() {
    // tokio `full` does not include `test-util`.
    let dir = user_crate("user_full", &[], &["full"], &[("full_multi", MULTI_THREAD)]);
    add_tests(
        &dir,
        &[("paused_without_test_util", PAUSED_WITHOUT_TEST_UTIL)],
    );
    assert_one_error(
        &dir,
        &[
            "test",
            "--quiet",
            "--no-run",
            "--test",
            "paused_without_test_util",
        ],
        START_PAUSED_WITHOUT_TEST_UTIL,
    );
}
