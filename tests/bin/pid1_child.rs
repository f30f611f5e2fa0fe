//! Child program for `tests/pid1.rs`, started as PID 1 of a new PID namespace
//! (`unshare --pid --fork --kill-child`), the way a container without an init runs a
//! program. One scenario per run, chosen by argv[1]; it prints `pid N` (its own pid, 1 in
//! the namespace), then `ready` when the test may send signals.

#[cfg(unix)]
fn main() {
    unix::main();
}

#[cfg(not(unix))]
fn main() {
    eprintln!("pid1_child: a Unix-only test program (signals, PID namespaces)");
}

#[cfg(unix)]
mod unix {
    use std::hint::spin_loop;
    use std::time::{Duration, Instant};

    use runner::{RunError, Runner};
    use tokio::time::sleep;

    const LONG: Duration = Duration::from_secs(60);

    pub(super) fn main() {
        let scenario = std::env::args().nth(1).unwrap_or_default();
        eprintln!("pid1_child: scenario {scenario:?}");
        // SAFETY: no arguments, no preconditions.
        println!("pid {}", unsafe { libc::getpid() });
        match scenario.as_str() {
            "term_on" => term_on(),
            "term_default" => term_default(),
            "term_off" => term_off(),
            "term_builder" => term_builder(),
            "after_close" => after_close(),
            "between_runs" => between_runs(),
            "short_runs" => short_runs(),
            other => {
                eprintln!("pid1_child: unknown scenario {other:?}");
                std::process::exit(2);
            }
        }
    }

    /// How long the main task's cleanup takes after the first signal (`CLEANUP_MS`,
    /// default 200 ms).
    fn cleanup() -> Duration {
        let ms = std::env::var("CLEANUP_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(200);
        Duration::from_millis(ms)
    }

    /// The program: a finalizer, then a main task that observes cancellation,
    /// cleans up, and returns.
    async fn body() {
        runner::at_close(|| async {
            println!("finalizer ran");
        });
        println!("ready");
        tokio::select! {
            _ = runner::cancelled() => {
                println!("cancelled observed");
                sleep(cleanup()).await;
                println!("cleanup done");
            }
            _ = sleep(LONG) => println!("slept"),
        }
    }

    #[runner::main(handle_sigterm = true)]
    async fn term_on() {
        body().await
    }

    /// No `handle_sigterm` key: `#[runner::main]` handles SIGTERM (as PID 1 and not).
    #[runner::main]
    async fn term_default() {
        body().await
    }

    #[runner::main(handle_sigterm = false)]
    async fn term_off() {
        body().await
    }

    /// A Runner built by hand, no option: SIGTERM is handled only as PID 1.
    fn term_builder() {
        let mut runner = Runner::new();
        let result = runner.run(body());
        runner.close();
        match result {
            Err(RunError::Interrupted) => runner::die_by_sigint(),
            Err(RunError::Terminated) => runner::die_by_sigterm(),
            other => println!("result: {other:?}"),
        }
    }

    /// A signal after a Runner has run and closed: runner's handler is installed, and no
    /// run is armed.
    fn after_close() {
        let mut runner = Runner::new();
        let first = runner.run(async {});
        println!("run 1: {first:?}");
        runner.close();
        println!("ready");
        std::thread::sleep(LONG);
        println!("survived");
    }

    /// A signal between two runs of one Runner.
    fn between_runs() {
        let mut runner = Runner::new();
        let first = runner.run(async {});
        println!("run 1: {first:?}");
        println!("ready");
        std::thread::sleep(LONG);
        println!("survived");
        let second = runner.run(async {});
        println!("run 2: {second:?}");
    }

    /// Short runs in a loop (one Runner, and fresh ones), until a signal ends the process:
    /// by `Interrupted` / `Terminated` (close, then die), or between runs (the handler).
    /// `ready` comes after a first run, once runner's handler is installed: before that, a
    /// SIGTERM to PID 1 at its default disposition is dropped by the kernel, runner or not.
    fn short_runs() {
        let mut runner = Runner::new();
        let _ = runner.run(async {});
        println!("ready");
        for i in 0u64.. {
            let result = match i % 6 {
                0 => runner::run(async {}),
                1 => runner.run(async { sleep(Duration::from_micros(200)).await }),
                2 => runner.run(tokio::task::yield_now()),
                3 => runner.run(async {}),
                _ => runner.run(async { compute(Duration::from_micros(100)) }),
            };
            match result {
                Ok(()) => {}
                Err(RunError::Interrupted) => {
                    runner.close();
                    runner::die_by_sigint();
                }
                Err(RunError::Terminated) => {
                    runner.close();
                    runner::die_by_sigterm();
                }
                Err(other) => {
                    println!("unexpected: {other:?}");
                    std::process::exit(3);
                }
            }
        }
    }

    fn compute(how_long: Duration) {
        let started = Instant::now();
        while started.elapsed() < how_long {
            spin_loop();
        }
    }
}
