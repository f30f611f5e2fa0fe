//! Helpers shared by the integration tests.
#![allow(dead_code)]

#[cfg(unix)]
pub mod child;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use runner::{Builder, Report, Runner};

/// Collects every report a Runner makes.
#[derive(Clone, Default)]
pub struct Reports(Arc<Mutex<Vec<Report>>>);

impl Reports {
    pub fn install(&self, builder: Builder) -> Builder {
        let sink = self.0.clone();
        builder.exception_handler(move |r: &Report| sink.lock().unwrap().push(r.clone()))
    }

    pub fn take(&self) -> Vec<Report> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// The two loop flavors every task behaviour is checked on.
#[derive(Clone, Copy, Debug)]
pub enum Flavor {
    CurrentThread,
    MultiThread,
}

pub const FLAVORS: [Flavor; 2] = [Flavor::CurrentThread, Flavor::MultiThread];

pub fn builder(flavor: Flavor) -> Builder {
    let b = Runner::builder().handle_sigint(false);
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
    use std::process::Command;
    use std::sync::Mutex;
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
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if built
        .get_or_insert_with(HashSet::new)
        .insert(name.to_owned())
    {
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
        match build.status() {
            Ok(s) if s.success() => {}
            // A stale binary is still better than none; a missing one fails below.
            other => eprintln!("warning: `cargo build --example {name}` failed: {other:?}"),
        }
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

/// Re-runs this test binary on `child`, with `env` set; returns (stdout, stderr).
pub fn run_child(child: &str, env: &[(&str, &str)]) -> (String, String) {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
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
    let out = cmd.output().unwrap();
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
    pub fn duration(&mut self, max: std::time::Duration) -> std::time::Duration {
        let nanos = max.as_nanos() as u64;
        std::time::Duration::from_nanos(self.next() % (nanos + 1))
    }
}
