//! Helpers shared by the integration tests.
#![allow(dead_code)]

#[cfg(unix)]
pub mod child;
pub mod fixture;
#[cfg(unix)]
pub mod namespace;
pub mod skip;
pub mod watchdog;

#[allow(unused_imports)] // not every test binary has in-process tests
pub use watchdog::{watchdog, TEST_LIMIT};

use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runner::{Builder, Report, Runner};

/// Open file descriptors of this process.
pub fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Threads of this process.
pub fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// Resident set size of this process in KiB.
pub fn rss_kib() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Threads of runtimes just shut down, and blocking work abandoned at a timeout, take a
/// moment to exit: the count after waiting (at most ~5 s) for it to come down to `target`.
pub fn threads_settled_to(target: usize) -> usize {
    for _ in 0..500 {
        if threads() <= target {
            break;
        }
        // Polling the thread count (no event to wait on): not an ordering sleep.
        std::thread::sleep(Duration::from_millis(10));
    }
    threads()
}

/// One `GET path` over HTTP/1.1 on a new connection to a test server: the whole response,
/// or the error that cut it. `read_limit` bounds the wait for the response (a server that
/// hangs fails the test instead of hanging it).
pub fn http_get(
    addr: std::net::SocketAddr,
    path: &str,
    read_limit: Duration,
) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(read_limit))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

/// Collects every report a Runner makes, and lets a task wait for one to arrive.
#[derive(Clone)]
pub struct Reports(Arc<(Mutex<Vec<Report>>, tokio::sync::watch::Sender<usize>)>);

impl Default for Reports {
    fn default() -> Reports {
        Reports(Arc::new((
            Mutex::default(),
            tokio::sync::watch::channel(0).0,
        )))
    }
}

impl Reports {
    pub fn install(&self, builder: Builder) -> Builder {
        let sink = self.0.clone();
        builder.exception_handler(move |r: &Report| {
            sink.0.lock().unwrap().push(r.clone());
            sink.1.send_modify(|count| *count += 1);
        })
    }

    pub fn take(&self) -> Vec<Report> {
        std::mem::take(&mut *self.0 .0.lock().unwrap())
    }

    /// Waits (at most `within`) until a report of `kind` has arrived: the handshake for a
    /// report made by another task. `false` on timeout; the reports stay for `take`.
    pub async fn arrival(&self, kind: runner::ReportKind, within: Duration) -> bool {
        let mut changes = self.0 .1.subscribe();
        let arrived =
            changes.wait_for(|_| self.0 .0.lock().unwrap().iter().any(|r| r.kind() == kind));
        let arrived = matches!(tokio::time::timeout(within, arrived).await, Ok(Ok(_)));
        arrived
    }
}

/// The two loop flavors every task behaviour is checked on.
#[derive(Clone, Copy, Debug)]
pub enum Flavor {
    CurrentThread,
    MultiThread,
}

pub const FLAVORS: [Flavor; 2] = [Flavor::CurrentThread, Flavor::MultiThread];

/// A Runner builder for in-process tests: Ctrl-C left to the harness, and debug mode off
/// whatever `RUNNER_DEBUG` says (tests that want it on say so), so that the reports a test
/// counts do not depend on the developer's shell.
pub fn builder(flavor: Flavor) -> Builder {
    let b = Runner::builder().handle_sigint(false).debug(Some(false));
    match flavor {
        Flavor::CurrentThread => b,
        Flavor::MultiThread => b.loop_factory(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
        }),
    }
}

/// The built binary of example `name` (in the target dir and profile of this test
/// binary), (re)built once per test process: `cargo test --test X` alone builds no
/// examples, and a stale binary would test old code. Cargo makes it a no-op when up to date.
pub fn example(name: &str) -> std::path::PathBuf {
    use std::collections::HashSet;
    static BUILT: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    // current_exe = target/<profile>/deps/<test>-HASH
    let me = std::env::current_exe().expect("current_exe");
    let profile_dir = me
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary lives in target/<profile>/deps");
    let exe = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let mut done = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let done = done.get_or_insert_with(HashSet::new);
    if !done.contains(name) {
        let mut build = Command::new(env!("CARGO"));
        build
            .args(["build", "--quiet", "--example", name])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => {}
            Some("release") => {
                build.arg("--release");
            }
            Some(other) => {
                build.args(["--profile", other]);
            }
        }
        // Build into the target dir this test binary came from.
        if let Some(target_dir) = profile_dir.parent() {
            if target_dir.join("CACHEDIR.TAG").exists() {
                build.env("CARGO_TARGET_DIR", target_dir);
            }
        }
        // A failed build must fail the test: the binary left from an earlier build would
        // test old code.
        let built = output_within(
            &mut build,
            BUILD_LIMIT,
            &format!("cargo build --example {name}"),
        );
        assert!(
            built.status.success(),
            "`cargo build --example {name}` failed ({}):\n{}",
            built.status,
            String::from_utf8_lossy(&built.stderr)
        );
        done.insert(name.to_owned());
    }
    assert!(exe.exists(), "{} was not built", exe.display());
    exe
}

/// Counts its drops: proves a cancelled task's destructors ran.
pub struct CountOnDrop(pub Arc<AtomicUsize>);

impl Drop for CountOnDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Panics when dropped: a task whose cleanup fails.
pub struct PanicOnDrop(pub &'static str);

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("{}", self.0);
    }
}

/// How long a `cargo build` of an example or a fixture crate may take: a cold build on a
/// loaded 2-core machine takes minutes, a hang takes forever.
pub const BUILD_LIMIT: Duration = Duration::from_secs(900);

/// The watchdog bound of a test that builds a fixture crate or an example (one or two
/// cargo commands, each bounded by `BUILD_LIMIT`).
pub const FIXTURE_TEST_LIMIT: Duration = Duration::from_secs(1200);

/// How long a child re-run of this test binary may take (none takes more than seconds).
/// Below `TEST_LIMIT`, so that a hung child fails its parent test before the watchdog ends
/// the whole binary.
pub const CHILD_LIMIT: Duration = Duration::from_secs(45);

/// Runs `cmd` to completion with piped stdout and stderr, as `Command::output`, but fails
/// (naming `what`) if it has not exited within `limit`: the child's whole process group
/// (`cargo run` and the program it runs, say) is killed first.
pub fn output_within(cmd: &mut Command, limit: Duration, what: &str) -> Output {
    use std::io::Read;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        child::die_with_parent(cmd);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let read = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = read(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = read(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            #[cfg(unix)]
            // SAFETY: kill(2) of the process group we made the child lead.
            unsafe {
                libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL);
            }
            let _ = child.kill();
            let _ = child.wait();
            let stdout = stdout.join().unwrap_or_default();
            let stderr = stderr.join().unwrap_or_default();
            panic!(
                "{what}: still running after {limit:?}; killed\n--- stdout ---\n{}\n--- stderr ---\n{}",
                String::from_utf8_lossy(&stdout),
                String::from_utf8_lossy(&stderr)
            );
        }
        // Polling for the exit (there is no wait with a timeout in std): not an ordering sleep.
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// Re-runs this test binary on `child`, with `env` set; returns (stdout, stderr). The child
/// must pass within [`CHILD_LIMIT`].
pub fn run_child(child: &str, env: &[(&str, &str)]) -> (String, String) {
    run_child_within(child, env, CHILD_LIMIT)
}

/// [`run_child`], with a bound of its own.
pub fn run_child_within(child: &str, env: &[(&str, &str)], limit: Duration) -> (String, String) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        child,
        "--nocapture",
        "--include-ignored",
        "--test-threads=1",
    ]);
    cmd.env_remove("RUNNER_DEBUG").env("RUNNER_CHILD", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = output_within(&mut cmd, limit, &format!("child test {child}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "child {child} failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("1 passed"), "{stdout}");
    (stdout, stderr)
}

/// A small xorshift generator for random timings; the seed is printed so a failure can be
/// replayed with `RUNNER_TEST_SEED`.
pub struct Rng(u64);

impl Rng {
    pub fn from_env_or_clock(test: &str) -> Rng {
        let seed = std::env::var("RUNNER_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        eprintln!("{test}: RUNNER_TEST_SEED={seed}");
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in `[0, max]`.
    pub fn duration(&mut self, max: Duration) -> Duration {
        let nanos = max.as_nanos() as u64;
        Duration::from_nanos(self.next() % (nanos + 1))
    }
}
