//! N iterations of one hot path, on runner or on plain tokio, for `scripts/instructions.sh`:
//! callgrind counts instructions, which stay put where criterion's times move with the
//! machine's load.
//!
//! `hot_paths run_warm runner|tokio N`: N warm `Runner::run` (main thread, Ctrl-C handling
//! on) / `Runtime::block_on` of a ready future.
//! `hot_paths spawn_join runner|tokio N`: N `runner::spawn(..).await` (10 context variables
//! set) / `tokio::spawn(..).await`, inside one run.
//! `hot_paths spawn_mt1|spawn_mt2 runner|tokio N`: the same on a multi-thread loop of 1 or 2
//! workers, from 1 or 2 tasks of that loop at once (each a task of the loop, not the main
//! task: the main thread is no worker), each doing N spawns and awaits; the time is per
//! spawn and await of all of them together (N × tasks).
//! `hot_paths contextvar_get runner|tokio N`: N `ContextVar::get` in a task / `task_local!`
//! `with` (both keys through `black_box`, as criterion's `contextvar_get`).
//! `hot_paths close runner|tokio N`: `close()` of a Runner with N pending sleeping tasks /
//! tokio aborting N such tasks, awaiting each, and dropping the runtime.
//! `hot_paths memory runner|tokio N`: spawns N tasks that sleep for an hour (handles
//! dropped) on a current-thread loop, lets each be polled once, and prints the resident
//! memory it took per task (`/proc/self/statm`) and the time per spawn. One side per process
//! (`scripts/memory_per_task.sh` runs both, several times): freed memory of one side would
//! otherwise be reused by the other.
//! `hot_paths run_warm|spawn_join|spawn_mt1|spawn_mt2|contextvar_get|close ratio N ROUNDS`: ROUNDS rounds of
//! N iterations, runner and tokio interleaved in one process; prints the median time per
//! iteration of each side and the median of the per-round ratios (drift on a shared machine
//! hits both sides of a round). For `close`, N is the number of pending tasks, and only the
//! close is timed (as criterion's `close_pending` does).

use std::hint::black_box;
use std::time::Duration;

use runner::ContextVar;

static VARS: [ContextVar<u64>; 10] = [const { ContextVar::new("bench") }; 10];
/// `contextvar_get`'s variable, the only one set in its task (as in criterion's bench).
static VAR: ContextVar<u64> = ContextVar::new("v");

tokio::task_local! {
    static LOCAL: u64;
}

const USAGE: &str = "usage: hot_paths \
                     run_warm|spawn_join|spawn_mt1|spawn_mt2|contextvar_get|close|memory \
                     runner|tokio|ratio N [ROUNDS]";

/// The loops and Runners of one side, made once per process: a current-thread pair, and a
/// multi-thread pair with the number of workers the path asks for.
struct Loops {
    rt: tokio::runtime::Runtime,
    runner: runner::Runner,
    /// Workers, the tokio runtime and the Runner with such a loop (10 context variables set).
    mt: Option<(usize, tokio::runtime::Runtime, runner::Runner)>,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (path, side) = (args.next().expect(USAGE), args.next().expect(USAGE));
    let n: u64 = args.next().and_then(|n| n.parse().ok()).expect(USAGE);
    if path == "memory" {
        memory(&side, n);
        return;
    }
    let workers = match path.as_str() {
        "spawn_mt1" => Some(1),
        "spawn_mt2" => Some(2),
        _ => None,
    };
    let mut loops = Loops {
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
        runner: with_vars(runner::Runner::new()),
        mt: workers.map(|workers| {
            let rt = multi_thread(workers);
            let runner = runner::Runner::builder()
                .loop_factory(move || multi_thread(workers))
                .build();
            (workers, rt, with_vars(runner))
        }),
    };
    if side == "ratio" {
        let rounds: usize = args.next().and_then(|n| n.parse().ok()).expect(USAGE);
        let (mut ours, mut theirs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let r = time_side(&path, "runner", n, &mut loops);
            let t = time_side(&path, "tokio", n, &mut loops);
            ours.push(r);
            theirs.push(t);
            ratios.push(r / t);
        }
        println!(
            "{path}: runner {:.1} ns, tokio {:.1} ns, ratio {:.3} (medians of {rounds} \
             interleaved rounds of {n})",
            median(&mut ours),
            median(&mut theirs),
            median(&mut ratios)
        );
        return;
    }
    run_side(&path, &side, n, &mut loops);
}

fn multi_thread(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap()
}

/// The Runner with the 10 context variables set in its context (every spawn copies them).
fn with_vars(mut runner: runner::Runner) -> runner::Runner {
    runner
        .run(async {
            for (i, var) in VARS.iter().enumerate() {
                var.set(i as u64);
            }
        })
        .unwrap();
    runner
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

/// Nanoseconds per iteration of `side` over `n` iterations (per spawn and await of all
/// spawning tasks together, for the multi-thread paths; per task closed, for `close`, timing
/// only the close: `close()` against aborting, awaiting and dropping).
fn time_side(path: &str, side: &str, n: u64, loops: &mut Loops) -> f64 {
    if path == "close" {
        return close(side, n).as_nanos() as f64 / n as f64;
    }
    let start = std::time::Instant::now();
    let iterations = run_side(path, side, n, loops);
    start.elapsed().as_nanos() as f64 / iterations as f64
}

/// Runs `n` iterations of `path` on `side`; how many iterations that made in all.
fn run_side(path: &str, side: &str, n: u64, loops: &mut Loops) -> u64 {
    let Loops { rt, runner, mt } = loops;
    match (path, side) {
        ("run_warm", "runner") => {
            for _ in 0..n {
                runner.run(black_box(async {})).unwrap();
            }
        }
        ("run_warm", "tokio") => {
            for _ in 0..n {
                rt.block_on(black_box(async {}));
            }
        }
        ("spawn_join", "runner") => runner
            .run(async {
                for _ in 0..n {
                    black_box(runner::spawn(async { 1 }).await.unwrap());
                }
            })
            .unwrap(),
        ("spawn_join", "tokio") => rt.block_on(async {
            for _ in 0..n {
                black_box(tokio::spawn(async { 1 }).await.unwrap());
            }
        }),
        ("spawn_mt1" | "spawn_mt2", "runner") => {
            let (workers, _, runner) = mt.as_mut().expect(USAGE);
            let spawners = *workers;
            runner
                .run(async move {
                    let start = std::sync::Arc::new(tokio::sync::Barrier::new(spawners));
                    let tasks: Vec<_> = (0..spawners)
                        .map(|_| {
                            let start = start.clone();
                            runner::spawn(async move {
                                start.wait().await;
                                for _ in 0..n {
                                    black_box(runner::spawn(async { 1 }).await.unwrap());
                                }
                            })
                        })
                        .collect();
                    for task in tasks {
                        task.await.unwrap();
                    }
                })
                .unwrap();
            return n * spawners as u64;
        }
        ("spawn_mt1" | "spawn_mt2", "tokio") => {
            let (workers, rt, _) = mt.as_mut().expect(USAGE);
            let spawners = *workers;
            rt.block_on(async move {
                let start = std::sync::Arc::new(tokio::sync::Barrier::new(spawners));
                let tasks: Vec<_> = (0..spawners)
                    .map(|_| {
                        let start = start.clone();
                        tokio::spawn(async move {
                            start.wait().await;
                            for _ in 0..n {
                                black_box(tokio::spawn(async { 1 }).await.unwrap());
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.unwrap();
                }
            });
            return n * spawners as u64;
        }
        ("close", side) => drop(close(side, n)),
        ("contextvar_get", "runner") => runner
            .run(async move {
                // In an empty context, as criterion's bench: one variable in the task's map.
                let task = runner::Context::new().run(|| {
                    runner::spawn(async move {
                        VAR.set(7);
                        for _ in 0..n {
                            black_box(black_box(&VAR).get());
                        }
                    })
                });
                task.await.unwrap()
            })
            .unwrap(),
        ("contextvar_get", "tokio") => rt.block_on(async move {
            tokio::spawn(LOCAL.scope(7, async move {
                for _ in 0..n {
                    black_box(black_box(&LOCAL).with(|v| *v));
                }
            }))
            .await
            .unwrap()
        }),
        _ => panic!("{USAGE}"),
    }
    n
}

/// `close()` of a Runner with `n` pending sleeping tasks (`side` runner), or tokio aborting
/// `n` such tasks, awaiting each, and dropping the runtime (`side` tokio): how long that took
/// (the spawning not included).
fn close(side: &str, n: u64) -> std::time::Duration {
    match side {
        "runner" => {
            let mut pending = runner::Runner::new();
            pending
                .run(async move {
                    for _ in 0..n {
                        runner::spawn(tokio::time::sleep(Duration::from_secs(3600)));
                    }
                    tokio::task::yield_now().await;
                })
                .unwrap();
            let start = std::time::Instant::now();
            pending.close();
            start.elapsed()
        }
        "tokio" => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let handles = rt.block_on(async move {
                let handles: Vec<_> = (0..n)
                    .map(|_| tokio::spawn(tokio::time::sleep(Duration::from_secs(3600))))
                    .collect();
                tokio::task::yield_now().await;
                handles
            });
            let start = std::time::Instant::now();
            rt.block_on(async move {
                for handle in &handles {
                    handle.abort();
                }
                for handle in handles {
                    let _ = handle.await;
                }
            });
            drop(rt);
            start.elapsed()
        }
        _ => panic!("{USAGE}"),
    }
}

/// Resident memory of this process, in bytes.
fn resident() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("statm's resident field");
    // SAFETY: no arguments, no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
}

/// `hot_paths memory SIDE N`: see the module docs. Prints one line: bytes per task, then
/// nanoseconds per spawn.
fn memory(side: &str, n: u64) {
    let sleep = || tokio::time::sleep(Duration::from_secs(3600));
    // Both sides on a warm loop: the runtime, its timer, the Runner's state exist before.
    let (before, after, took) = match side {
        "runner" => {
            let mut runner = runner::Runner::new();
            runner.run(async {}).unwrap();
            let before = resident();
            let took = runner
                .run(async move {
                    let start = std::time::Instant::now();
                    for _ in 0..n {
                        drop(runner::spawn(sleep()));
                    }
                    let took = start.elapsed();
                    tokio::task::yield_now().await;
                    took
                })
                .unwrap();
            let after = resident();
            // Not closed: the process ends here (closing 1M tasks is `close`'s bench).
            std::mem::forget(runner);
            (before, after, took)
        }
        "tokio" => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {});
            let before = resident();
            let took = rt.block_on(async move {
                let start = std::time::Instant::now();
                for _ in 0..n {
                    drop(tokio::spawn(sleep()));
                }
                let took = start.elapsed();
                tokio::task::yield_now().await;
                took
            });
            let after = resident();
            std::mem::forget(rt);
            (before, after, took)
        }
        _ => panic!("{USAGE}"),
    };
    println!(
        "memory {side}: {:.1} bytes per pending task, {:.1} ns per spawn ({n} tasks)",
        after.saturating_sub(before) as f64 / n as f64,
        took.as_nanos() as f64 / n as f64
    );
}
