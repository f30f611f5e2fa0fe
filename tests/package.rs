//! The package is `tokio-runner` and the crate in code is `runner`: a user crate that
//! depends on it the way the README says builds and runs `#[runner::main]` and
//! `#[runner::test]`, and so does one that renames the dependency and passes the new name
//! with `crate = "…"` (fixture crates: `tests/common/fixture.rs`).

mod common;

use std::path::{Path, PathBuf};

use common::fixture;

/// `main.rs` of the README's quick start, plus tests, in a crate that names runner `$krate`.
fn program(krate: &str, crate_key: &str) -> String {
    format!(
        r#"
#[{krate}::main{crate_key}]
async fn main() -> std::io::Result<()> {{
    let worker = {krate}::spawn(async {{ 6 * 7 }});
    println!("answer: {{}}", worker.await.unwrap());
    Ok(())
}}

#[cfg(test)]
mod tests {{
    #[{krate}::test{crate_key}]
    async fn a_spawned_task_answers() {{
        assert_eq!({krate}::spawn(async {{ 6 * 7 }}).await.unwrap(), 42);
    }}

    #[{krate}::test(timeout = "5s"{crate_comma})]
    async fn timers_work_under_a_timeout() {{
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }}
}}
"#,
        crate_comma = if crate_key.is_empty() {
            String::new()
        } else {
            format!(", crate = \"{krate}\"")
        },
    )
}

/// A user crate `name` whose `[dependencies]` line for this checkout is `dependency`
/// (`{path}`: the checkout's path), tokio with the README's features, and `main.rs`.
fn user_crate(name: &str, dependency: &str, main: &str) -> PathBuf {
    let dependencies = format!(
        "{}\ntokio = {{ version = \"1.54\", features = [\"time\", \"net\"] }}",
        dependency.replace("{path}", &fixture::checkout())
    );
    fixture::write_crate(name, &dependencies, &[("src/main.rs", main)])
}

/// `cargo <args>` in `dir`; its stdout, after asserting it succeeded.
fn cargo(dir: &Path, args: &[&str]) -> String {
    let out = fixture::cargo(dir, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "`cargo {}` in {}: {}\n{stdout}\n{stderr}",
        args.join(" "),
        dir.display(),
        out.status
    );
    stdout
}

fn runs_main_and_tests(dir: &Path) {
    assert_eq!(cargo(dir, &["run", "--quiet"]), "answer: 42\n");
    let tests = cargo(dir, &["test", "--quiet"]);
    assert!(tests.contains("test result: ok. 2 passed"), "{tests}");
}

#[test]
fn a_user_crate_depending_on_tokio_runner_writes_runner_in_code() {
    let dir = user_crate(
        "user_tokio_runner",
        "tokio-runner = { path = \"{path}\" }",
        &program("runner", ""),
    );
    runs_main_and_tests(&dir);
}

#[test]
fn a_renamed_dependency_passes_its_name_with_the_crate_key() {
    let dir = user_crate(
        "user_renamed",
        "rt = { package = \"tokio-runner\", path = \"{path}\" }",
        &program("rt", "(crate = \"rt\")"),
    );
    runs_main_and_tests(&dir);
}
