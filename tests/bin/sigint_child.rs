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

    // sleep: outlasts the test, which ends it with a signal (see LONG).
    /// sleep: every `sleep(LONG)` stands for work that outlasts the test: the test ends it
    /// with a signal, and a child that was not ended exits after a minute anyway.
    const LONG: Duration = Duration::from_secs(60);
    /// sleep: how long a child waits, outside any run, for a signal that should kill it
    /// (`std::thread::sleep(OUTSIDE)`); then it prints `survived`, which the test refuses.
    const OUTSIDE: Duration = Duration::from_secs(30);

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
            "self_sigint" => self_sigint(),
            "short_runs" => short_runs(),
            "fuzz" => fuzz(),
            "cancelled_in_tokio_spawn" => cancelled_in_tokio_spawn(),
            "cancelled_in_runner_spawn" => cancelled_in_runner_spawn(),
            "term_observe" => term_observe(),
            "term_slow_cleanup" => term_slow_cleanup(),
            "term_off" => term_off(),
            "term_between_runs" => term_between_runs(),
            "term_ignored" => term_ignored(),
            "panic_then_between" => panic_then_between(),
            "panic_then_run" => panic_then_run(),
            "term_thread" => term_thread(),
            "ctrl_c_and_handle_cancel" => ctrl_c_and_handle_cancel(),
            other => {
                eprintln!("sigint_child: unknown scenario {other:?}");
                std::process::exit(2);
            }
        }
    }

    /// Prints the outcome of `run`, closes the Runner, and dies by SIGINT if interrupted (by
    /// SIGTERM if terminated), as `#[runner::main]` does.
    fn finish<T: std::fmt::Debug>(mut runner: Runner, result: Result<T, RunError>) -> ! {
        println!("result: {result:?}");
        println!("closing");
        runner.close();
        println!("closed");
        match result {
            Err(RunError::Interrupted) => runner::die_by_sigint(),
            Err(RunError::Terminated) => runner::die_by_sigterm(),
            _ => std::process::exit(0),
        }
    }

    /// 1. Idle main awaiting a long sleep: dropped at its await point.
    fn idle() {
        let mut runner = Runner::new();
        let result = runner.run(async {
            let _guard = Guard("main dropped");
            println!("ready");
            // sleep: outlasts the test, which ends it with a signal (see LONG).
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
                    // sleep: the async cleanup itself, which the run waits for.
                    sleep(Duration::from_millis(100)).await;
                    println!("cleanup done");
                }
                // sleep: outlasts the test, which ends it with a signal (see LONG).
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
        // sleep: a run that parks on a timer once, armed all along.
        let first = runner.run(async { sleep(Duration::from_millis(1)).await });
        println!("run 1: {first:?}");
        println!("between runs");
        println!("ready");
        // sleep: the window for the signal that must kill (see OUTSIDE).
        std::thread::sleep(OUTSIDE);
        println!("survived");
        let second = runner.run(async {});
        println!("run 2: {second:?}");
    }

    /// 4b. SIGINT after close: the default.
    fn after_close() {
        let mut runner = Runner::new();
        // sleep: a run that parks on a timer once, armed all along.
        let first = runner.run(async { sleep(Duration::from_millis(1)).await });
        println!("run 1: {first:?}");
        runner.close();
        println!("after close");
        println!("ready");
        // sleep: the window for the signal that must kill (see OUTSIDE).
        std::thread::sleep(OUTSIDE);
        println!("survived");
    }

    /// SIGINT before any run, but after the library has built a Runner and its loop: the
    /// default.
    fn before_run() {
        let mut runner = Runner::new();
        let handle = runner.get_loop().expect("get_loop");
        println!("loop: {:?}", handle.runtime_flavor());
        println!("ready");
        // sleep: the window for the signal that must kill (see OUTSIDE).
        std::thread::sleep(OUTSIDE);
        println!("survived");
        let result = runner.run(async {});
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
            // Polling a flag set by another thread or a signal handler (which cannot send
            // on a channel): not an ordering sleep.
            sleep(Duration::from_millis(10)).await;
        }
        true
    }

    fn sigint_disposition() -> &'static str {
        disposition(libc::SIGINT)
    }

    fn disposition(signal: libc::c_int) -> &'static str {
        // SAFETY: query only; `old` is plain data.
        let handler = unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(signal, std::ptr::null(), &mut old);
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
            // Polling the signal handler's flag: not an ordering sleep.
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
            // sleep: outlasts the test, which ends it with a signal (see LONG).
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
                // sleep: a slow finalizer, for the second Ctrl-C to cut.
                sleep(Duration::from_secs(30)).await;
                println!("finalizer done");
            });
            println!("ready");
            // sleep: outlasts the test, which ends it with a signal (see LONG).
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
                        // sleep: a slow cleanup, for the second Ctrl-C to cut.
                        sleep(Duration::from_secs(30)).await;
                        println!("task cleanup done");
                    }
                    _ = pending::<()>() => {}
                }
            });
            tokio::task::yield_now().await;
            println!("ready");
            // sleep: outlasts the test, which ends it with a signal (see LONG).
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
                // sleep: outlasts the test, which ends it with a signal (see LONG).
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

    /// The main task cancelled by a Ctrl-C and through its `TaskHandle` in one run gives
    /// `Cancelled` (asyncio lets the `CancelledError` through when `uncancel()` leaves a
    /// count); by Ctrl-C alone, `Interrupted`; through its handle alone, `Cancelled`.
    fn ctrl_c_and_handle_cancel() {
        let mut runner = Runner::new();
        let both = runner.run(async {
            let me = runner::current_task().expect("the main task");
            // SAFETY: a plain signal syscall; SIGINT is armed on this (main) thread.
            unsafe { libc::raise(libc::SIGINT) };
            me.cancel();
            std::future::pending::<()>().await
        });
        println!("both: {both:?}");
        let ctrl_c = runner.run(async {
            // SAFETY: as above.
            unsafe { libc::raise(libc::SIGINT) };
            std::future::pending::<()>().await
        });
        println!("ctrl_c: {ctrl_c:?}");
        let handle = runner.run(async {
            let me = runner::current_task().expect("the main task");
            runner::spawn(async move { me.cancel() });
            std::future::pending::<()>().await
        });
        println!("handle: {handle:?}");
        runner.close();
    }

    /// Lost signals: 100 runs whose main task sends itself SIGINT and returns at once. Each
    /// must return `Interrupted`; a SIGINT in a fresh run is that run's first, so the process
    /// lives on to the next. `argv[2]` picks `raise` (thread-directed) or `kill` (to the
    /// process, any thread may take it); `argv[3]` `fresh` uses a new Runner per run.
    fn self_sigint() {
        let how = std::env::args().nth(2).unwrap_or_default();
        let fresh = std::env::args().nth(3).as_deref() == Some("fresh");
        let send = move || {
            // SAFETY: plain signal syscalls.
            unsafe {
                if how == "kill" {
                    libc::kill(libc::getpid(), libc::SIGINT);
                } else {
                    libc::raise(libc::SIGINT);
                }
            }
        };
        let mut runner = Runner::new();
        for i in 1..=100 {
            if fresh {
                runner = Runner::new();
            }
            let send = send.clone();
            let result = runner.run(async move { send() });
            println!("run {i}: {result:?}");
        }
        runner.close();
        println!("survived");
    }

    /// Short runs in a loop, on one Runner and on fresh ones, until a SIGINT ends the
    /// process: by `Interrupted` (then close and die by SIGINT) or by the default action
    /// between runs. Half the runs are main tasks that compute for 100 µs without yielding
    /// and return: a SIGINT landing there finds the main task finished by the time its
    /// cancel could reach it, and must still interrupt the run.
    fn short_runs() {
        one_cpu();
        let mut runner = Runner::new();
        println!("ready");
        for i in 0u64.. {
            let result = match i % 8 {
                0 => runner::run(async {}),
                // sleep: a run that parks on a timer (one of the run shapes).
                1 => runner.run(async { sleep(Duration::from_micros(200)).await }),
                2 => runner.run(tokio::task::yield_now()),
                3 => runner.run(async {}),
                _ => runner.run(async { compute(Duration::from_micros(100)) }),
            };
            if result.is_err() {
                finish(runner, result);
            }
        }
    }

    /// Pins the process (this thread and every thread it starts) to its first allowed CPU,
    /// as in a one-CPU container: the thread that relays a signal then waits for the CPU,
    /// so a short run is often over before the relay could reach its main task.
    fn one_cpu() {
        #[cfg(target_os = "linux")]
        // SAFETY: `set` is plain data; sched_{get,set}affinity on the calling thread.
        unsafe {
            // Without the pinning the scenario loses what it is for: fail, do not skip it.
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) != 0 {
                panic!("sched_getaffinity: {}", std::io::Error::last_os_error());
            }
            let Some(first) = (0..libc::CPU_SETSIZE as usize).find(|&c| libc::CPU_ISSET(c, &set))
            else {
                panic!("sched_getaffinity: no CPU allowed");
            };
            libc::CPU_ZERO(&mut set);
            libc::CPU_SET(first, &mut set);
            if libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) != 0 {
                panic!(
                    "sched_setaffinity to CPU {first}: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
    }

    /// Keeps the thread busy for `how_long` without yielding.
    fn compute(how_long: Duration) {
        let started = Instant::now();
        while started.elapsed() < how_long {
            spin_loop();
        }
    }

    /// The SIGINT timing fuzz: ~100 ms of lazy inits, runs, gaps between runs and closes
    /// (with pending tasks and a finalizer), then `work done` and 5 s outside any run, then
    /// exit 0 (which only a swallowed SIGINT lets happen).
    fn fuzz() {
        let started = Instant::now();
        println!("ready");
        let mut cycle = 0u32;
        while started.elapsed() < Duration::from_millis(100) {
            cycle += 1;
            let mut runner = if cycle % 3 == 0 {
                Runner::builder()
                    .loop_factory(|| {
                        tokio::runtime::Builder::new_multi_thread()
                            .worker_threads(1)
                            .enable_all()
                            .build()
                    })
                    .build()
            } else {
                Runner::new()
            };
            for run in 0..4 {
                let result = runner.run(async move {
                    match run {
                        0 => {
                            let _pending = runner::spawn(pending::<()>());
                            // sleep: a finalizer that awaits a timer (workload).
                            runner::at_close(|| async { sleep(Duration::from_millis(1)).await });
                        }
                        1 => tokio::task::yield_now().await,
                        // sleep: a run that parks on a timer (workload).
                        2 => sleep(Duration::from_millis(1)).await,
                        _ => {}
                    }
                });
                if result.is_err() {
                    finish(runner, result);
                }
                if run == 1 {
                    // sleep: a gap between runs, where a SIGINT must kill (workload).
                    std::thread::sleep(Duration::from_micros(300));
                }
            }
            runner.close();
            if cycle % 2 == 0 {
                let result = runner::run(async {});
                if result.is_err() {
                    finish(Runner::new(), result);
                }
            }
        }
        println!("work done after {cycle} cycles");
        // sleep: time outside any run, where a SIGINT must kill; exiting 0 after it means
        // the SIGINT was swallowed.
        std::thread::sleep(Duration::from_secs(5));
        println!("finished");
    }

    /// `cancelled()` created by the main task and awaited in a `tokio::spawn`ed task.
    fn cancelled_in_tokio_spawn() {
        cancelled_in_spawned(|waiter| {
            let handle = tokio::spawn(waiter);
            async move {
                let _ = handle.await;
            }
        })
    }

    /// `cancelled()` created by the main task and awaited in a `runner::spawn`ed task.
    fn cancelled_in_runner_spawn() {
        cancelled_in_spawned(|waiter| {
            let task = runner::spawn(waiter);
            async move {
                let _ = task.await;
            }
        })
    }

    /// The main task hands its `cancelled()` to a task started by `spawn`, and waits for it.
    fn cancelled_in_spawned<S, J>(spawn: S)
    where
        S: FnOnce(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>) -> J,
        J: std::future::Future<Output = ()>,
    {
        let mut runner = Runner::new();
        let result = runner.run(async {
            let cancelled = runner::cancelled();
            let joined = spawn(Box::pin(async move {
                cancelled.await;
                println!("spawned task saw the cancel");
            }));
            println!("ready");
            joined.await;
            println!("main finished");
        });
        finish(runner, result)
    }

    /// SIGTERM with `handle_sigterm(true)`: an observing main task, cleanup of `cleanup`.
    fn term_observing(cleanup: Duration) -> ! {
        let mut runner = Runner::builder().handle_sigterm(true).build();
        let result = runner.run(async {
            println!("ready");
            tokio::select! {
                _ = runner::cancelled() => {
                    println!("cancelled observed");
                    // sleep: the async cleanup itself (long, for a second signal to cut).
                    sleep(cleanup).await;
                    println!("cleanup done");
                }
                // sleep: outlasts the test, which ends it with a signal (see LONG).
                _ = sleep(LONG) => println!("slept"),
            }
        });
        finish(runner, result)
    }

    fn term_observe() {
        term_observing(Duration::from_millis(100))
    }

    fn term_slow_cleanup() {
        term_observing(Duration::from_secs(30))
    }

    /// SIGTERM without `handle_sigterm`: the default (death by SIGTERM), nothing observed.
    fn term_off() {
        let mut runner = Runner::new();
        let result = runner.run(observing_sleep());
        finish(runner, result)
    }

    /// SIGTERM between two runs of a Runner that handles it: the default.
    fn term_between_runs() {
        let mut runner = Runner::builder().handle_sigterm(true).build();
        // sleep: a run that parks on a timer once, armed all along.
        let first = runner.run(async { sleep(Duration::from_millis(1)).await });
        println!("run 1: {first:?}");
        println!("ready");
        // sleep: the window for the signal that must kill (see OUTSIDE).
        std::thread::sleep(OUTSIDE);
        println!("survived");
        let second = runner.run(async {});
        println!("run 2: {second:?}");
    }

    /// Started with SIGTERM ignored: `handle_sigterm(true)` leaves it ignored.
    fn term_ignored() {
        static GO: AtomicBool = AtomicBool::new(false);
        println!("disposition before: {}", disposition(libc::SIGTERM));
        on_stdin_line(&GO);
        let mut runner = Runner::builder().handle_sigterm(true).build();
        let result = runner.run(async {
            println!("ready");
            tokio::select! {
                _ = runner::cancelled() => println!("cancelled observed"),
                go = wait_flag(&GO, Duration::from_secs(20)) => {
                    println!("{}", if go { "main finished" } else { "timed out waiting for go" });
                }
            }
            "ok"
        });
        println!("disposition after: {}", disposition(libc::SIGTERM));
        finish(runner, result)
    }

    /// A run whose main task panics, with SIGINT armed; the panic is caught. Prints `caught`.
    fn panicking_run(runner: &mut Runner) {
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            runner.run(async {
                tokio::task::yield_now().await;
                panic!("main task failed");
            })
        }));
        let payload = caught.expect_err("the run's panic propagates");
        println!("caught: {:?}", payload.downcast_ref::<&str>());
    }

    /// After a run whose main task panicked: SIGINT outside a run, the default.
    fn panic_then_between() {
        let mut runner = Runner::new();
        panicking_run(&mut runner);
        println!("ready");
        // sleep: the window for the signal that must kill (see OUTSIDE).
        std::thread::sleep(OUTSIDE);
        println!("survived");
    }

    /// After a run whose main task panicked: the next run of the same Runner handles Ctrl-C.
    fn panic_then_run() {
        let mut runner = Runner::new();
        panicking_run(&mut runner);
        let result = runner.run(async {
            let _guard = Guard("main dropped");
            println!("ready");
            // sleep: outlasts the test, which ends it with a signal (see LONG).
            sleep(LONG).await;
        });
        finish(runner, result)
    }

    /// A Runner that handles SIGTERM, run on a thread that is not the main thread: it
    /// installs nothing, SIGTERM keeps its default.
    fn term_thread() {
        let worker = std::thread::spawn(|| {
            let mut runner = Runner::builder().handle_sigterm(true).build();
            let result = runner.run(observing_sleep());
            println!("result: {result:?}");
            runner.close();
        });
        let _ = worker.join();
        println!("joined");
    }
}
