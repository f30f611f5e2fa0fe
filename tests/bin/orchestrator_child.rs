//! Child program for `tests/orchestrator.rs` and `tests/systemd_notify.rs`: a shutdown the
//! way an orchestrator drives it (SIGTERM, a grace period, a drain delay, a second signal,
//! systemd's notify socket). One scenario per run, chosen by argv[1]. It prints `pid N`,
//! the places the reports should name, then `ready` when the test may send signals; reports
//! go to stderr (the default exception handler) unless a scenario says otherwise.

#[cfg(unix)]
fn main() {
    unix::main();
}

#[cfg(not(unix))]
fn main() {
    eprintln!("orchestrator_child: a Unix-only test program (signals)");
}

#[cfg(unix)]
mod unix {
    use std::future::pending;
    use std::hint::spin_loop;
    use std::io::BufRead;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    use runner::{RunError, Runner};
    use tokio::time::sleep;

    const FILE: &str = "tests/bin/orchestrator_child.rs";

    pub(super) fn main() {
        let scenario = std::env::args().nth(1).unwrap_or_default();
        eprintln!("orchestrator_child: scenario {scenario:?}");
        // SAFETY: no arguments, no preconditions.
        println!("pid {}", unsafe { libc::getpid() });
        match scenario.as_str() {
            "grace_stuck" => grace_stuck(),
            "grace_spin" => grace_spin(),
            "grace_close" => grace_close(),
            "delay" => delay(),
            "forced" => forced(),
            "forced_close" => forced_close(),
            "stuck_handler" => stuck_handler(),
            "stderr_locked" => stderr_locked(),
            "self_term" => self_term(),
            "notify" => notify(),
            "notify_block" => notify_block(),
            "fuzz" => fuzz(),
            other => {
                eprintln!("orchestrator_child: unknown scenario {other:?}");
                std::process::exit(2);
            }
        }
    }

    fn env_ms(name: &str, default: u64) -> Duration {
        let ms = std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default);
        Duration::from_millis(ms)
    }

    /// Where the main task is run: the line of its `#[runner::main]` attribute.
    fn print_main(attribute: u32) {
        println!("main at {FILE}:{attribute}");
    }

    /// Things still running at a forced exit: a runner task ignoring its cancel, two plain
    /// tokio tasks, a blocking job. Prints where they were spawned.
    fn leave_work_behind() {
        let task_line = line!() + 1;
        drop(runner::spawn(async {
            let _ignored = runner::cancelled();
            pending::<()>().await
        }));
        println!("task at {FILE}:{task_line}");
        for _ in 0..2 {
            drop(tokio::spawn(pending::<()>()));
        }
        let blocking_line = line!() + 1;
        drop(runner::spawn_blocking(|| {
            std::thread::sleep(Duration::from_secs(60))
        }));
        println!("blocking at {FILE}:{blocking_line}");
    }

    /// A main task that starts its cleanup at the first signal and never finishes it: the
    /// grace period ends the process (reports at least every third of it before).
    #[runner::main(grace_period = "1.5s")]
    async fn grace_stuck() {
        print_main(line!() - 2);
        leave_work_behind();
        println!("ready");
        runner::cancelled().await;
        println!("cleanup started");
        pending::<()>().await
    }

    /// A main task that never yields: the cancel cannot reach it, the grace period ends the
    /// process all the same.
    #[runner::main(grace_period = "1s")]
    async fn grace_spin() {
        print_main(line!() - 2);
        static STOP: AtomicBool = AtomicBool::new(false);
        println!("ready");
        while !STOP.load(Ordering::Relaxed) {
            spin_loop();
        }
    }

    /// The drain ends at once, then `close()` waits for a finalizer that never finishes:
    /// the grace period ends the process and names it.
    #[runner::main(grace_period = "1s")]
    async fn grace_close() {
        let line = line!() + 1;
        runner::at_close(pending::<()>);
        println!("finalizer at {FILE}:{line}");
        println!("ready");
        runner::cancelled().await;
        println!("drained");
    }

    /// The main task sends itself a SIGTERM and returns at once, before runner's signal
    /// thread can look at the signal; `close()` then waits for a finalizer that never ends.
    /// The grace period still ends the process: the run's own thread told the signal thread.
    #[runner::main(grace_period = "1s")]
    async fn self_term() {
        let line = line!() + 1;
        runner::at_close(pending::<()>);
        println!("finalizer at {FILE}:{line}");
        println!("ready");
        // SAFETY: raise(3) of a signal whose handler is runner's.
        unsafe { libc::raise(libc::SIGTERM) };
    }

    /// Prints `requested` as soon as `shutdown_requested()` turns true, asked from a plain
    /// tokio task (as a readiness handler would).
    fn watch_requested() {
        drop(tokio::spawn(async {
            while !runner::shutdown_requested() {
                sleep(Duration::from_millis(2)).await;
            }
            println!("requested");
        }));
    }

    /// A drain delay of 30 s (longer than any test waits): after a SIGTERM the main task is
    /// not cancelled until a second signal cuts the delay short. The cleanup then takes
    /// `CLEANUP_MS` (default 200 ms).
    #[runner::main(drain_delay = "30s", grace_period = "60s")]
    async fn delay() {
        runner::at_close(|| async { println!("finalizer ran") });
        watch_requested();
        println!("ready");
        runner::cancelled().await;
        println!("cancelled observed");
        sleep(env_ms("CLEANUP_MS", 200)).await;
        println!("cleanup done");
    }

    /// Work left behind, and a cleanup that outlasts the test: the reports (every 300 ms)
    /// name it, and a second signal forces the exit with final words.
    #[runner::main(shutdown_report_after = "300ms")]
    async fn forced() {
        print_main(line!() - 2);
        leave_work_behind();
        println!("ready");
        runner::cancelled().await;
        println!("cleanup started");
        sleep(Duration::from_secs(60)).await;
        println!("cleanup done");
    }

    /// The drain ends at once; `close()` then waits for a finalizer: a second signal during
    /// it forces the exit, and the final words name the finalizer.
    #[runner::main]
    async fn forced_close() {
        let line = line!() + 1;
        runner::at_close(|| async {
            println!("finalizer started");
            pending::<()>().await
        });
        println!("finalizer at {FILE}:{line}");
        println!("ready");
        runner::cancelled().await;
        println!("drained");
    }

    /// An exception handler that never returns, stuck on the thread that would write the
    /// final words: the forced exit still comes within the bound (100 ms), without them.
    fn stuck_handler() {
        // The first progress report of the drain (after 50 ms) gets the handler stuck on
        // the shutdown's helper thread, before the test sends the second signal: the final
        // words, which that thread would write, can then never come.
        let mut runner = Runner::builder()
            .handle_sigterm(true)
            .shutdown_report_after(Duration::from_millis(50))
            .exception_handler(|report: &runner::Report| {
                if report.kind() == runner::ReportKind::ShutdownWaiting {
                    println!("handler stuck");
                    std::thread::sleep(Duration::from_secs(600));
                }
                runner::default_exception_handler(report);
            })
            .build();
        let result = runner.run(async {
            println!("ready");
            runner::cancelled().await;
            println!("cleanup started");
            sleep(Duration::from_secs(60)).await;
        });
        finish(runner, result);
    }

    /// A main task stuck in a loop that never yields, holding std's stderr lock: the final
    /// words of the forced exit still come out (they are written without that lock).
    #[runner::main]
    async fn stderr_locked() {
        print_main(line!() - 2);
        static STOP: AtomicBool = AtomicBool::new(false);
        println!("ready");
        runner::cancelled().await;
        let _stderr = std::io::stderr().lock();
        println!("holding stderr");
        while !STOP.load(Ordering::Relaxed) {
            spin_loop();
        }
    }

    /// systemd's notify protocol: READY=1 when ready, then the shutdown's messages. Each
    /// notification's result is printed.
    #[runner::main(shutdown_report_after = "200ms")]
    async fn notify() {
        let ready = runner::notify_ready();
        println!("notify_ready: {ready:?}");
        println!("ready");
        runner::cancelled().await;
        println!("cleanup started");
        sleep(env_ms("CLEANUP_MS", 700)).await;
        println!("cleanup done");
    }

    /// The watchdog stops while a poll blocks the loop: on each `go` line on stdin, the
    /// main task blocks its thread for `BLOCK_MS`, printing `blocking` and `unblocked`.
    #[runner::main]
    async fn notify_block() {
        let ready = runner::notify_ready();
        println!("notify_ready: {ready:?}");
        let (lines, mut go) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                if line.is_err() || lines.send(()).is_err() {
                    return;
                }
            }
        });
        println!("ready");
        let block = env_ms("BLOCK_MS", 1000);
        loop {
            tokio::select! {
                _ = runner::cancelled() => break,
                got = go.recv() => {
                    if got.is_none() {
                        break;
                    }
                    println!("blocking");
                    // The subject: a poll that blocks the loop's thread.
                    std::thread::sleep(block);
                    println!("unblocked");
                }
            }
        }
    }

    /// For the timing fuzz: SIGTERM handled with a drain delay and a grace period from the
    /// environment (`DELAY_MS`, `GRACE_MS`; 0: none), a cleanup of `CLEANUP_MS`, and an
    /// `at_close` finalizer of `CLOSE_MS`. Prints `requested` (from a plain task),
    /// `cancelled observed` (at most once, it must be), `cleanup done` and `closed`.
    fn fuzz() {
        let mut builder = Runner::builder().handle_sigterm(true);
        let delay = env_ms("DELAY_MS", 0);
        if !delay.is_zero() {
            builder = builder.drain_delay(delay);
        }
        let grace = env_ms("GRACE_MS", 0);
        if !grace.is_zero() {
            builder = builder.grace_period(grace);
        }
        let mut runner = builder.build();
        let result = runner.run(async {
            watch_requested();
            runner::at_close(|| async {
                sleep(env_ms("CLOSE_MS", 0)).await;
                println!("finalizer done");
            });
            println!("ready");
            runner::cancelled().await;
            println!("cancelled observed");
            let started = Instant::now();
            sleep(env_ms("CLEANUP_MS", 0)).await;
            println!("cleanup done after {:?}", started.elapsed());
        });
        finish(runner, result);
    }

    fn finish(mut runner: Runner, result: Result<(), RunError>) -> ! {
        println!("result: {result:?}");
        runner.close();
        println!("closed");
        match result {
            Err(RunError::Interrupted) => runner::die_by_sigint(),
            Err(RunError::Terminated) => runner::die_by_sigterm(),
            _ => std::process::exit(0),
        }
    }
}
