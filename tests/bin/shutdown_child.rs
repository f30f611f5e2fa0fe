//! Child program for `tests/shutdown_progress.rs`: a shutdown that takes long after Ctrl-C,
//! one scenario per run (argv[1]). It prints `ready` when the test may send SIGINT; the
//! `ShutdownWaiting` reports go to stderr (the default exception handler).

#[cfg(unix)]
fn main() {
    unix::main();
}

#[cfg(not(unix))]
fn main() {
    eprintln!("shutdown_child: a Unix-only test program (signals)");
}

#[cfg(unix)]
mod unix {
    use std::future::pending;
    use std::hint::spin_loop;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use runner::{RunError, Runner};
    use tokio::time::sleep;

    pub(super) fn main() {
        let scenario = std::env::args().nth(1).unwrap_or_default();
        eprintln!("shutdown_child: scenario {scenario:?}");
        match scenario.as_str() {
            "slow_cleanup" => slow_cleanup(),
            "stuck" => stuck(),
            "fast_cleanup" => fast_cleanup(),
            "reports_off" => reports_off(),
            other => {
                eprintln!("shutdown_child: unknown scenario {other:?}");
                std::process::exit(2);
            }
        }
    }

    /// Where the main task is run, for the test to find in the reports: the line of the
    /// `#[runner::main]` attribute (the expansion's call site).
    fn print_main_location(attribute: u32) {
        println!("main at tests/bin/shutdown_child.rs:{attribute}");
    }

    /// After Ctrl-C the main task cleans up for 30 s, with a task and a blocking job still
    /// pending: the reports name all three. A second Ctrl-C ends it.
    #[runner::main(shutdown_report_after = "1s")]
    async fn slow_cleanup() {
        print_main_location(line!() - 2);
        let worker_line = line!() + 1;
        let _worker = runner::spawn(pending::<()>());
        println!("task at tests/bin/shutdown_child.rs:{worker_line}");
        let blocking_line = line!() + 1;
        let _job = runner::spawn_blocking(|| std::thread::sleep(Duration::from_secs(30)));
        println!("blocking at tests/bin/shutdown_child.rs:{blocking_line}");
        println!("ready");
        runner::cancelled().await;
        println!("cleanup started");
        sleep(Duration::from_secs(30)).await;
        println!("cleanup done");
    }

    /// A main task that never reaches an await point: the cancel cannot be delivered, and
    /// the report still comes (from the signal listener thread).
    #[runner::main(shutdown_report_after = "1s")]
    async fn stuck() {
        print_main_location(line!() - 2);
        static STOP: AtomicBool = AtomicBool::new(false);
        println!("ready");
        while !STOP.load(Ordering::Relaxed) {
            spin_loop();
        }
    }

    /// A cleanup well within the default threshold (5 s): no report.
    #[runner::main]
    async fn fast_cleanup() {
        let _worker = runner::spawn(pending::<()>());
        println!("ready");
        runner::cancelled().await;
        sleep(Duration::from_millis(100)).await;
        println!("cleanup done");
    }

    /// A 3 s cleanup with reports off (`Duration::MAX`): none.
    fn reports_off() {
        let mut runner = Runner::builder()
            .shutdown_report_after(Duration::MAX)
            .build();
        let result = runner.run(async {
            println!("ready");
            runner::cancelled().await;
            sleep(Duration::from_secs(3)).await;
            println!("cleanup done");
        });
        runner.close();
        if let Err(RunError::Interrupted) = result {
            runner::die_by_sigint();
        }
        println!("result: {result:?}");
    }
}
