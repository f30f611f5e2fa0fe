//! Helpers shared by the integration tests.
#![allow(dead_code)]

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

/// The built binary of example `name`, (re)built first: `cargo test --test X` alone builds
/// no examples, and a stale binary would test old code. Cargo makes this a no-op when the
/// example is up to date.
pub fn example(name: &str) -> std::path::PathBuf {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static BUILT: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    // target/<profile>/deps/<test binary> -> target/<profile>/examples/<name>
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if built
        .get_or_insert_with(HashSet::new)
        .insert(name.to_owned())
    {
        let mut cmd = std::process::Command::new(env!("CARGO"));
        cmd.args(["build", "--quiet", "--example", name]);
        if profile_dir.file_name().is_some_and(|p| p == "release") {
            cmd.arg("--release");
        }
        let status = cmd.current_dir(env!("CARGO_MANIFEST_DIR")).status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "cargo build --example {name} failed"
        );
    }
    profile_dir.join("examples").join(name)
}
