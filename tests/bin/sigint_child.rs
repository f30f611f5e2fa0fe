//! Child program for `tests/sigint.rs`: one Ctrl-C scenario per run, chosen by argv[1].
//!
//! It prints `ready` on stdout when the test may send SIGINT, and progress lines the test
//! asserts on. It uses `runner::Runner` / `runner::run` directly (not `#[runner::main]`);
//! where the program should die by SIGINT after `Interrupted`, it closes the Runner and
//! calls `runner::die_by_sigint()` as `#[runner::main]` does.

#[cfg(unix)]
fn main() {
    unix::main();
}

#[cfg(not(unix))]
fn main() {
    eprintln!("sigint_child: a Unix-only test program (signals, kill(2))");
}

#[cfg(unix)]
mod unix {
    use std::future::pending;
    use std::hint::spin_loop;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    use runner::{RunError, Runner};
    use tokio::time::sleep;

    const LONG: Duration = Duration::from_secs(60);

    /// Prints when dropped: shows a main future was dropped at its await point.
    struct Guard(&'static str);

    impl Drop for Guard {
        fn drop(&mut self) {
            println!("{}", self.0);
        }
    }

    pub(super) fn main() {
        let scenario = std::env::args().nth(1).unwrap_or_default();
        eprintln!("sigint_child: scenario {scenario:?}");
        match scenario.as_str() {
            "idle" => idle(),
            "observe" => observe(),
            "busy" => busy(),
            "between_runs" => between_runs(),
            "after_close" => after_close(),
            "before_run" => before_run(),
            "ignored" => ignored(),
            "foreign_handler" => foreign_handler(),
            "thread" => thread(),
            "no_handle" => no_handle(),
            "close_finalizer" => close_finalizer(),
            "close_task" => close_task(),
            "two_runs" => two_runs(),
            "yield_loop" => yield_loop(),
            "pending" => pending_main(),
            other => {
                eprintln!("sigint_child: unknown scenario {other:?}");
                std::process::exit(2);
            }
        }
    }

    /// Prints the outcome of `run`, closes the Runner, and dies by SIGINT if interrupted.
    fn finish<T: std::fmt::Debug>(mut runner: Runner, result: Result<T, RunError>) -> ! {
        println!("result: {result:?}");
        let interrupted = matches!(result, Err(RunError::Interrupted));
        println!("closing");
        runner.close();
        println!("closed");
        if interrupted {
            runner::die_by_sigint();
        }
        std::process::exit(0)
    }

    /// 1. Idle main awaiting a long sleep: dropped at its await point.
    fn idle() {
        let mut runner = Runner::new();
        let result = runner.run(async {
            let _guard = Guard("main dropped");
            println!("ready");
            sleep(LONG).await;
            println!("slept");
        });
        finish(runner, result)
    }

    /// 2. Main observing `cancelled()`: async cleanup, then `Interrupted`.
    fn observe() {
        let mut runner = Runner::new();
        let result = runner.run(async {
            println!("ready");
            tokio::select! {
                _ = runner::cancelled() => {
                    println!("cancelled observed");
                    sleep(Duration::from_millis(100)).await;
                    println!("cleanup done");
                }
                _ = sleep(LONG) => println!("slept"),
            }
        });
        finish(runner, result)
    }

    /// 3. Main stuck in a loop that never yields.
    fn busy() {
        static STOP: AtomicBool = AtomicBool::new(false);
        let mut runner = Runner::new();
        let result = runner.run(async {
            println!("ready");
            while !STOP.load(Ordering::Relaxed) {
                spin_loop();
            }
            println!("loop ended");
        });
        finish(runner, result)
    }

    /// 4a. SIGINT between two runs: the default (death by SIGINT).
    fn between_runs() {
        let mut runner = Runner::new();
        let first = runner.run(async { sleep(Duration::from_millis(1)).await });
        println!("run 1: {first:?}");
        println!("between runs");
        println!("ready");
        std::thread::sleep(Duration::from_secs(30));
        println!("survived");
        let second = runner.run(async {});
        println!("run 2: {second:?}");
    }

    /// 4b. SIGINT after close: the default.
    fn after_close() {
        let mut runner = Runner::new();
        let first = runner.run(async { sleep(Duration::from_millis(1)).await });
        println!("run 1: {first:?}");
        runner.close();
        println!("after close");
        println!("ready");
        std::thread::sleep(Duration::from_secs(30));
        println!("survived");
    }

    /// SIGINT before any run: the default.
    fn before_run() {
        println!("ready");
        std::thread::sleep(Duration::from_secs(30));
        println!("survived");
        let result = runner::run(async {});
        println!("result: {result:?}");
    }

    /// Reads one line from stdin on a plain thread and sets the flag (a go signal from the test).
    fn on_stdin_line(flag: &'static AtomicBool) {
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
            flag.store(true, Ordering::SeqCst);
        });
    }

    /// Polls `flag` with short tokio sleeps; `false` on timeout.
    async fn wait_flag(flag: &AtomicBool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !flag.load(Ordering::SeqCst) {
            if Instant::now() > deadline {
                return false;
            }
            sleep(Duration::from_millis(10)).await;
        }
        true
    }

    fn sigint_disposition() -> &'static str {
        // SAFETY: query only; `old` is plain data.
        let handler = unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(libc::SIGINT, std::ptr::null(), &mut old);
            old.sa_sigaction
        };
        match handler {
            libc::SIG_DFL => "default",
            libc::SIG_IGN => "ignored",
            _ => "handler",
        }
    }

    /// 5. Started with SIGINT ignored (by the test): the run is not disturbed.
    fn ignored() {
        static GO: AtomicBool = AtomicBool::new(false);
        println!("disposition before: {}", sigint_disposition());
        on_stdin_line(&GO);
        let mut runner = Runner::new();
        let result = runner.run(async {
            println!("ready");
            // The test sends SIGINT, then writes a line to stdin.
            if wait_flag(&GO, Duration::from_secs(20)).await {
                println!("main finished");
            } else {
                println!("timed out waiting for go");
            }
            "ok"
        });
        println!("disposition after: {}", sigint_disposition());
        finish(runner, result)
    }

    static GOT_SIGINT: AtomicBool = AtomicBool::new(false);

    extern "C" fn on_sigint(_signal: libc::c_int) {
        GOT_SIGINT.store(true, Ordering::SeqCst);
    }

    /// 6. A handler installed with `sigaction` before `run` keeps SIGINT; main is not cancelled.
    fn foreign_handler() {
        // SAFETY: installing a handler that only stores to an atomic.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(libc::SIGINT, &action, std::ptr::null_mut()) != 0 {
                eprintln!("sigaction failed: {}", std::io::Error::last_os_error());
                std::process::exit(3);
            }
        }
        let mut runner = Runner::new();
        let result = runner.run(async {
            println!("ready");
            if wait_flag(&GOT_SIGINT, Duration::from_secs(20)).await {
                println!("handler got it");
            } else {
                println!("timed out waiting for the handler");
            }
            "ok"
        });
        println!("run returned: {result:?}");
        println!("disposition after: {}", sigint_disposition());
        // After the run the handler still owns SIGINT.
        GOT_SIGINT.store(false, Ordering::SeqCst);
        println!("ready again");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !GOT_SIGINT.load(Ordering::SeqCst) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if GOT_SIGINT.load(Ordering::SeqCst) {
            println!("handler got it again");
        }
        finish(runner, result)
    }

    /// Main body for the "installs nothing" scenarios: would print a cleanup line if handled.
    async fn observing_sleep() {
        println!("ready");
        tokio::select! {
            _ = runner::cancelled() => println!("cancelled cleanup"),
            _ = sleep(LONG) => println!("slept"),
        }
    }

    /// 7. `run` on a non-main thread installs nothing.
    fn thread() {
        let worker = std::thread::spawn(|| {
            let mut runner = Runner::new();
            let result = runner.run(observing_sleep());
            println!("result: {result:?}");
            runner.close();
        });
        let _ = worker.join();
        println!("joined");
    }

    /// 8. `handle_sigint(false)` installs nothing.
    fn no_handle() {
        let mut runner = Runner::builder().handle_sigint(false).build();
        let result = runner.run(observing_sleep());
        finish(runner, result)
    }

    /// 9a. Second Ctrl-C during a slow `at_close` finalizer.
    fn close_finalizer() {
        let mut runner = Runner::new();
        let result = runner.run(async {
            runner::at_close(|| async {
                println!("finalizer started");
                sleep(Duration::from_secs(30)).await;
                println!("finalizer done");
            });
            println!("ready");
            sleep(LONG).await;
        });
        finish(runner, result)
    }

    /// 9b. Second Ctrl-C while `close()` waits for a task's slow cancellation cleanup.
    fn close_task() {
        let mut runner = Runner::new();
        let result = runner.run(async {
            let _task = runner::spawn(async {
                tokio::select! {
                    _ = runner::cancelled() => {
                        println!("task cleanup started");
                        sleep(Duration::from_secs(30)).await;
                        println!("task cleanup done");
                    }
                    _ = pending::<()>() => {}
                }
            });
            tokio::task::yield_now().await;
            println!("ready");
            sleep(LONG).await;
        });
        finish(runner, result)
    }

    /// 10. Two consecutive runs, each interrupted.
    fn two_runs() {
        let mut runner = Runner::new();
        let mut interrupted = false;
        for i in 1..=2 {
            let result = runner.run(async {
                let _guard = Guard("main dropped");
                println!("ready");
                sleep(LONG).await;
            });
            println!("run {i}: {result:?}");
            if matches!(result, Err(RunError::Interrupted)) {
                println!("run {i} interrupted");
                interrupted = true;
            }
        }
        runner.close();
        println!("closed");
        if interrupted {
            runner::die_by_sigint();
        }
    }

    /// 11a. test_interrupt_call_soon: main loops on `yield_now()`.
    fn yield_loop() {
        let mut runner = Runner::new();
        let result = runner.run(async {
            println!("ready");
            loop {
                tokio::task::yield_now().await;
            }
        });
        finish(runner, result)
    }

    /// 11b. test_interrupt_wait: main awaits a future that is never ready.
    fn pending_main() {
        let mut runner = Runner::new();
        let result = runner.run(async {
            let _guard = Guard("main dropped");
            println!("ready");
            pending::<()>().await;
        });
        finish(runner, result)
    }
}
