//! Small user crates built against this checkout the way a user's build would build them:
//! each is its own workspace (Cargo does not unify its features with ours), all share one
//! target dir under `target/tmp` (the one `tests/user_features.rs` uses, so dependencies
//! built with the same features are built once), with this checkout's `Cargo.lock`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

/// The checkout, as a path for a manifest.
pub fn checkout() -> String {
    env!("CARGO_MANIFEST_DIR").replace('\\', "/")
}

/// The target dir every fixture builds into.
pub fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("user_features_target")
}

/// Writes crate `name`: its manifest with `dependencies` as the `[dependencies]` section,
/// and `files` (path in the crate, text). Files already as wanted are left alone, so Cargo
/// sees nothing to rebuild; one writer at a time within the process.
pub fn write_crate(name: &str, dependencies: &str, files: &[(&str, &str)]) -> PathBuf {
    static WRITING: Mutex<()> = Mutex::new(());
    let _one = WRITING.lock().unwrap_or_else(|e| e.into_inner());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("fixtures")
        .join(name);
    let manifest = format!(
        "[package]\nname = \"{name}\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\
         [workspace]\n[dependencies]\n{dependencies}\n"
    );
    write_if_changed(&dir.join("Cargo.toml"), &manifest);
    for (path, text) in files {
        write_if_changed(&dir.join(path), text);
    }
    // This checkout's lock file: the same dependency versions, and nothing to resolve.
    if !dir.join("Cargo.lock").exists() {
        let lock = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock");
        std::fs::copy(lock, dir.join("Cargo.lock")).unwrap();
    }
    dir
}

/// Writes `text` to `path` unless it is there already (so Cargo sees nothing to rebuild).
pub fn write_if_changed(path: &Path, text: &str) {
    if std::fs::read_to_string(path).ok().as_deref() != Some(text) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

/// `cargo <args> --offline` in `dir`, into the shared target dir, bounded by
/// `super::BUILD_LIMIT`.
pub fn cargo(dir: &Path, args: &[&str]) -> Output {
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .args(args)
        .arg("--offline")
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target_dir())
        .env_remove("RUNNER_DEBUG");
    super::output_within(
        &mut cargo,
        super::BUILD_LIMIT,
        &format!("cargo {} in {}", args.join(" "), dir.display()),
    )
}

/// Builds binary `bin` of the crate at `dir` (the build must succeed); its path.
pub fn build_bin(dir: &Path, bin: &str) -> PathBuf {
    let built = cargo(dir, &["build", "--quiet", "--bin", bin]);
    assert!(
        built.status.success(),
        "cargo build --bin {bin} in {}: {}\n{}",
        dir.display(),
        built.status,
        String::from_utf8_lossy(&built.stderr)
    );
    target_dir()
        .join("debug")
        .join(format!("{bin}{}", std::env::consts::EXE_SUFFIX))
}
