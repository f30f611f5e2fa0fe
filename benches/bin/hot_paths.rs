//! N iterations of one hot path, on runner or on plain tokio, for `scripts/instructions.sh`:
//! callgrind counts instructions, which stay put where criterion's times move with the
//! machine's load.
//!
//! `hot_paths run_warm runner|tokio N`: N warm `Runner::run` (main thread, Ctrl-C handling
//! on) / `Runtime::block_on` of a ready future.
//! `hot_paths spawn_join runner|tokio N`: N `runner::spawn(..).await` (10 context variables
//! set) / `tokio::spawn(..).await`, inside one run.
//! `hot_paths close runner|tokio N`: `close()` of a Runner with N pending sleeping tasks /
//! tokio aborting N such tasks, awaiting each, and dropping the runtime.
//! `hot_paths run_warm|spawn_join ratio N ROUNDS`: ROUNDS rounds of N iterations, runner and
//! tokio interleaved in one process; prints the median time per iteration of each side and
//! the median of the per-round ratios (drift on a shared machine hits both sides of a round).

use std::hint::black_box;

use runner::ContextVar;

static VARS: [ContextVar<u64>; 10] = [const { ContextVar::new("bench") }; 10];

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: hot_paths run_warm|spawn_join runner|tokio|ratio N [ROUNDS]";
    let (path, side) = (args.next().expect(usage), args.next().expect(usage));
    let n: u64 = args.next().and_then(|n| n.parse().ok()).expect(usage);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut runner = runner::Runner::new();
    runner
        .run(async {
            for (i, var) in VARS.iter().enumerate() {
                var.set(i as u64);
            }
        })
        .unwrap();
    if side == "ratio" {
        let rounds: usize = args.next().and_then(|n| n.parse().ok()).expect(usage);
        let (mut ours, mut theirs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let r = time_side(&path, "runner", n, &rt, &mut runner);
            let t = time_side(&path, "tokio", n, &rt, &mut runner);
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
    run_side(&path, &side, n, &rt, &mut runner);
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

/// Nanoseconds per iteration of `side` over `n` iterations.
fn time_side(
    path: &str,
    side: &str,
    n: u64,
    rt: &tokio::runtime::Runtime,
    runner: &mut runner::Runner,
) -> f64 {
    let start = std::time::Instant::now();
    run_side(path, side, n, rt, runner);
    start.elapsed().as_nanos() as f64 / n as f64
}

fn run_side(
    path: &str,
    side: &str,
    n: u64,
    rt: &tokio::runtime::Runtime,
    runner: &mut runner::Runner,
) {
    let usage = "usage: hot_paths run_warm|spawn_join runner|tokio|ratio N [ROUNDS]";
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
        ("close", "runner") => {
            let mut pending = runner::Runner::new();
            pending
                .run(async move {
                    for _ in 0..n {
                        runner::spawn(tokio::time::sleep(std::time::Duration::from_secs(3600)));
                    }
                    tokio::task::yield_now().await;
                })
                .unwrap();
            pending.close();
        }
        ("close", "tokio") => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let handles = rt.block_on(async move {
                let handles: Vec<_> = (0..n)
                    .map(|_| tokio::spawn(tokio::time::sleep(std::time::Duration::from_secs(3600))))
                    .collect();
                tokio::task::yield_now().await;
                handles
            });
            rt.block_on(async move {
                for handle in &handles {
                    handle.abort();
                }
                for handle in handles {
                    let _ = handle.await;
                }
            });
        }
        ("spawn_join", "tokio") => rt.block_on(async {
            for _ in 0..n {
                black_box(tokio::spawn(async { 1 }).await.unwrap());
            }
        }),
        _ => panic!("{usage}"),
    }
}
