//! Child program for `tests/own_handler.rs`: programs that handle SIGINT or SIGTERM
//! themselves (tokio's `ctrl_c()` and `signal(..)`) next to runner's own handling. One
//! scenario per run (argv[1]); `ready...` lines tell the test when to send a signal.

#[cfg(unix)]
fn main() {
    unix::main();
}

#[cfg(not(unix))]
fn main() {
    eprintln!("own_handler_child: a Unix-only test program (signals)");
}

#[cfg(unix)]
mod unix {
    use std::future::Future;
    use std::hint::spin_loop;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::task::Poll;
    use std::time::{Duration, Instant};

    use runner::{RunError, Runner};
    use tokio::signal::unix::{signal, SignalKind};
    use tokio::time::sleep;

    pub(super) fn main() {
        let scenario = std::env::args().nth(1).unwrap_or_default();
        eprintln!("own_handler_child: scenario {scenario:?}");
        match scenario.as_str() {
            "ctrl_c" => issue_program(Wait::CtrlC),
            "stream" => issue_program(Wait::Stream),
            "sigterm" => sigterm(),
            "late_handler" => late_handler(),
            "no_handler" => no_handler(),
            "default_only" => default_only(),
            "fuzz" => fuzz(),
            other => {
                eprintln!("own_handler_child: unknown scenario {other:?}");
                std::process::exit(2);
            }
        }
    }

    #[derive(Clone, Copy)]
    enum Wait {
        CtrlC,
        Stream,
    }

    /// Issue 22's program: a default run first (`runner::run`, which handles Ctrl-C), then a
    /// `handle_sigint(false)` Runner whose main task handles Ctrl-C itself, 5 times. Then a
    /// default Runner again (its run is interrupted by Ctrl-C), and outside any run the
    /// program's own handler again (in a plain tokio runtime).
    fn issue_program(wait: Wait) {
        runner::run(async {}).unwrap();
        let mut own = Runner::builder().handle_sigint(false).build();
        let result = own.run(async {
            match wait {
                Wait::CtrlC => {
                    let mut next = Box::pin(tokio::signal::ctrl_c());
                    let mut early = listening(&mut next).await;
                    println!("ready");
                    for _ in 0..5 {
                        if early.take().is_none() {
                            (&mut next).await.unwrap();
                        }
                        next = Box::pin(tokio::signal::ctrl_c());
                        early = listening(&mut next).await;
                        println!("got Ctrl-C");
                    }
                }
                Wait::Stream => {
                    let mut stream = signal(SignalKind::interrupt()).unwrap();
                    println!("ready");
                    for _ in 0..5 {
                        stream.recv().await;
                        println!("got Ctrl-C");
                    }
                }
            }
        });
        println!("own run: {result:?}");
        own.close();

        let mut default = Runner::new();
        let result = default.run(async {
            println!("ready 2");
            tokio::select! {
                _ = runner::cancelled() => println!("cancelled observed"),
                _ = sleep(Duration::from_secs(60)) => println!("slept"),
            }
        });
        println!("default run: {result:?}");
        default.close();

        let plain = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        plain.block_on(async {
            let mut ctrl_c = Box::pin(tokio::signal::ctrl_c());
            let early = listening(&mut ctrl_c).await;
            println!("ready 3");
            if early.is_none() {
                ctrl_c.await.unwrap();
            }
            println!("got Ctrl-C outside a run");
        });
    }

    /// Polls `fut` once, so that it listens before the program says it is ready: tokio's
    /// `ctrl_c()` subscribes at its first poll, and misses a signal that comes before.
    /// `Some` if it was ready at once.
    async fn listening<F: Future + Unpin>(fut: &mut F) -> Option<F::Output> {
        std::future::poll_fn(|cx| {
            Poll::Ready(match Pin::new(&mut *fut).poll(cx) {
                Poll::Ready(out) => Some(out),
                Poll::Pending => None,
            })
        })
        .await
    }

    /// The SIGTERM variant: a `handle_sigterm(true)` Runner first, then a
    /// `handle_sigterm(false)` one that holds a tokio `terminate()` stream: 5 SIGTERMs. Then
    /// a `handle_sigterm(true)` Runner again gets `Terminated`.
    fn sigterm() {
        let mut first = Runner::builder().handle_sigterm(true).build();
        println!("first run: {:?}", first.run(async {}));
        first.close();
        let mut own = Runner::builder().handle_sigterm(false).build();
        let result = own.run(async {
            let mut terminate = signal(SignalKind::terminate()).unwrap();
            println!("ready");
            for _ in 0..5 {
                terminate.recv().await;
                println!("got SIGTERM");
            }
        });
        println!("own run: {result:?}");
        own.close();
        let mut handled = Runner::builder().handle_sigterm(true).build();
        let result = handled.run(async {
            println!("ready 2");
            sleep(Duration::from_secs(60)).await;
        });
        println!("handled run: {result:?}");
        handled.close();
    }

    /// A handler of the program's own registered after a default Runner, with no
    /// `handle_sigint(false)` Runner anywhere: between runs it gets every SIGINT, and a
    /// later default run is still interrupted by one.
    fn late_handler() {
        let mut runner = Runner::new();
        println!("run 1: {:?}", runner.run(async {}));
        let plain = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        plain.block_on(async {
            let mut stream = signal(SignalKind::interrupt()).unwrap();
            println!("ready");
            for _ in 0..3 {
                stream.recv().await;
                println!("got Ctrl-C");
            }
        });
        let result = runner.run(async {
            println!("ready 2");
            sleep(Duration::from_secs(60)).await;
        });
        println!("run 2: {result:?}");
        runner.close();
    }

    /// A `handle_sigint(false)` Runner after a default one, and no handler of the program's
    /// own: SIGINT has its default action (runner never leaves it ignored).
    fn no_handler() {
        runner::run(async {}).unwrap();
        let mut own = Runner::builder().handle_sigint(false).build();
        let result = own.run(async {
            println!("ready");
            sleep(Duration::from_secs(60)).await;
            println!("survived");
        });
        println!("own run: {result:?}");
    }

    /// Only default Runners (several, reused and fresh): a SIGINT between runs kills.
    fn default_only() {
        for i in 0..3 {
            println!("run {i}: {:?}", runner::run(async {}));
        }
        let mut runner = Runner::new();
        println!("run 3: {:?}", runner.run(async {}));
        println!("ready");
        std::thread::sleep(Duration::from_secs(60));
        println!("survived");
        println!("run 4: {:?}", runner.run(async {}));
    }

    static RUNS_DONE: AtomicU64 = AtomicU64::new(0);
    static QUIT: AtomicBool = AtomicBool::new(false);

    /// Short runs in a loop (a reused default Runner, fresh `runner::run`s, and a
    /// `handle_sigint(false)` Runner), while a thread of the program's own counts SIGINTs
    /// with a tokio `signal` stream. After each SIGINT it waits until the run going on when
    /// it came has ended, then prints `got N`, so the test's next SIGINT cannot land in a
    /// run already hit (that one would kill, by design). A line on stdin ends the loop.
    fn fuzz() {
        runner::run(async {}).unwrap();
        let (registered, on_registered) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let plain = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            plain.block_on(async {
                let mut stream = signal(SignalKind::interrupt()).unwrap();
                let _ = registered.send(());
                let mut count = 0u64;
                loop {
                    stream.recv().await;
                    count += 1;
                    let at = RUNS_DONE.load(Ordering::SeqCst);
                    while RUNS_DONE.load(Ordering::SeqCst) < at + 2 {
                        sleep(Duration::from_millis(1)).await;
                    }
                    println!("got {count}");
                }
            });
        });
        on_registered.recv().unwrap();
        std::thread::spawn(|| {
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
            QUIT.store(true, Ordering::SeqCst);
        });
        let mut reused = Runner::new();
        let mut own = Runner::builder().handle_sigint(false).build();
        let mut interrupted = 0u64;
        println!("ready");
        let mut i = 0u64;
        while !QUIT.load(Ordering::SeqCst) {
            i += 1;
            let result = match i % 5 {
                0 => runner::run(async {}),
                1 => reused.run(async { sleep(Duration::from_micros(300)).await }),
                2 => own.run(async { sleep(Duration::from_micros(300)).await }),
                3 => reused.run(tokio::task::yield_now()),
                _ => reused.run(async { compute(Duration::from_micros(200)) }),
            };
            match result {
                Ok(()) => {}
                Err(RunError::Interrupted) => interrupted += 1,
                Err(other) => {
                    println!("unexpected: {other:?}");
                    std::process::exit(3);
                }
            }
            RUNS_DONE.fetch_add(1, Ordering::SeqCst);
        }
        println!("interrupted runs: {interrupted}");
    }

    fn compute(how_long: Duration) {
        let started = Instant::now();
        while started.elapsed() < how_long {
            spin_loop();
        }
    }
}
