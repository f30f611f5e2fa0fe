//! Every cost `runner` adds over plain tokio, measured side by side in one process.
//! `cargo bench --bench vs_tokio`; BENCHMARKS.md has the table and the goals.

use std::future::ready;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use runner::{ContextVar, Runner};

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// `Runner::run` of a ready future on a live Runner (SIGINT handling on, main thread)
/// against `Runtime::block_on` of the same.
fn run_warm(c: &mut Criterion) {
    let mut g = c.benchmark_group("run_warm");
    let mut runner = Runner::new();
    runner.run(ready(())).unwrap();
    g.bench_function("runner", |b| {
        b.iter(|| runner.run(ready(black_box(1))).unwrap())
    });
    let rt = current_thread();
    g.bench_function("tokio", |b| b.iter(|| rt.block_on(ready(black_box(1)))));
    g.finish();
}

/// `runner::run` (build, run, close) against building, using and dropping a runtime.
fn run_cold(c: &mut Criterion) {
    let mut g = c.benchmark_group("run_cold");
    g.bench_function("runner", |b| {
        b.iter(|| runner::run(ready(black_box(1))).unwrap())
    });
    g.bench_function("tokio", |b| {
        b.iter(|| {
            let rt = current_thread();
            let out = rt.block_on(ready(black_box(1)));
            drop(rt);
            out
        })
    });
    g.finish();
}

static VARS: [ContextVar<u64>; 10] = [const { ContextVar::new("bench") }; 10];

/// `runner::spawn` + await inside a run with 10 context vars set, against `tokio::spawn`.
fn spawn_join(c: &mut Criterion) {
    let mut g = c.benchmark_group("spawn_join");
    let mut runner = Runner::new();
    runner
        .run(async {
            for (i, var) in VARS.iter().enumerate() {
                var.set(i as u64);
            }
        })
        .unwrap();
    g.bench_function("runner", |b| {
        b.iter_custom(|iters| {
            runner
                .run(async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        black_box(runner::spawn(async { 1 }).await.unwrap());
                    }
                    start.elapsed()
                })
                .unwrap()
        })
    });
    let rt = current_thread();
    g.bench_function("tokio", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async move {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(tokio::spawn(async { 1 }).await.unwrap());
                }
                start.elapsed()
            })
        })
    });
    g.finish();
}

fn multi_thread(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap()
}

/// `spawn_join` on a multi-thread loop of 1 and 2 workers, from as many tasks of the loop at
/// once (each a task of the loop: the main thread is no worker), against `tokio::spawn` the
/// same way. The time is per spawn and await of all spawning tasks together, so with 2
/// workers it shows what they cost each other (a lock or a count they both touch).
fn spawn_join_mt(c: &mut Criterion) {
    let mut g = c.benchmark_group("spawn_join_mt");
    for workers in [1usize, 2] {
        let mut runner = Runner::builder()
            .loop_factory(move || multi_thread(workers))
            .build();
        runner
            .run(async {
                for (i, var) in VARS.iter().enumerate() {
                    var.set(i as u64);
                }
            })
            .unwrap();
        g.bench_with_input(
            BenchmarkId::new("runner", workers),
            &workers,
            |b, &workers| {
                b.iter_custom(|iters| {
                    runner
                        .run(async move {
                            let start = std::sync::Arc::new(tokio::sync::Barrier::new(workers + 1));
                            let tasks: Vec<_> = (0..workers)
                                .map(|_| {
                                    let start = start.clone();
                                    runner::spawn(async move {
                                        start.wait().await;
                                        for _ in 0..iters {
                                            black_box(runner::spawn(async { 1 }).await.unwrap());
                                        }
                                    })
                                })
                                .collect();
                            start.wait().await;
                            let started = Instant::now();
                            for task in tasks {
                                task.await.unwrap();
                            }
                            started.elapsed() / workers as u32
                        })
                        .unwrap()
                })
            },
        );
        let rt = multi_thread(workers);
        g.bench_with_input(
            BenchmarkId::new("tokio", workers),
            &workers,
            |b, &workers| {
                b.iter_custom(|iters| {
                    rt.block_on(async move {
                        let start = std::sync::Arc::new(tokio::sync::Barrier::new(workers + 1));
                        let tasks: Vec<_> = (0..workers)
                            .map(|_| {
                                let start = start.clone();
                                tokio::spawn(async move {
                                    start.wait().await;
                                    for _ in 0..iters {
                                        black_box(tokio::spawn(async { 1 }).await.unwrap());
                                    }
                                })
                            })
                            .collect();
                        start.wait().await;
                        let started = Instant::now();
                        for task in tasks {
                            task.await.unwrap();
                        }
                        started.elapsed() / workers as u32
                    })
                })
            },
        );
    }
    g.finish();
}

/// `close()` with N pending sleeping tasks, against dropping a runtime holding the same, and
/// against tokio doing what `close()` does: abort every task and wait for each to end.
fn close_pending(c: &mut Criterion) {
    let mut g = c.benchmark_group("close_pending");
    g.sample_size(10);
    for n in [10_000usize, 100_000] {
        g.bench_with_input(BenchmarkId::new("runner", n), &n, |b, &n| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let mut runner = Runner::new();
                    runner
                        .run(async move {
                            for _ in 0..n {
                                runner::spawn(tokio::time::sleep(Duration::from_secs(3600)));
                            }
                            tokio::task::yield_now().await;
                        })
                        .unwrap();
                    let start = Instant::now();
                    runner.close();
                    total += start.elapsed();
                }
                total
            })
        });
        g.bench_with_input(BenchmarkId::new("tokio", n), &n, |b, &n| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let rt = current_thread();
                    rt.block_on(async move {
                        for _ in 0..n {
                            tokio::spawn(tokio::time::sleep(Duration::from_secs(3600)));
                        }
                        tokio::task::yield_now().await;
                    });
                    let start = Instant::now();
                    drop(rt);
                    total += start.elapsed();
                }
                total
            })
        });
        // The same work as `close()` done with tokio alone: cancel every task, wait until
        // each has ended (so that anything after sees them gone), then drop the runtime.
        g.bench_with_input(BenchmarkId::new("tokio_abort_and_wait", n), &n, |b, &n| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let rt = current_thread();
                    let handles = rt.block_on(async move {
                        let handles: Vec<_> = (0..n)
                            .map(|_| tokio::spawn(tokio::time::sleep(Duration::from_secs(3600))))
                            .collect();
                        tokio::task::yield_now().await;
                        handles
                    });
                    let start = Instant::now();
                    rt.block_on(async move {
                        for handle in &handles {
                            handle.abort();
                        }
                        for handle in handles {
                            let _ = handle.await;
                        }
                    });
                    drop(rt);
                    total += start.elapsed();
                }
                total
            })
        });
    }
    g.finish();
}

tokio::task_local! {
    static LOCAL: u64;
}

/// `ContextVar::get` inside a task, against `task_local!`'s `with`.
///
/// Both keys go through `black_box`: with a key the optimizer can see, it hoists most of
/// `task_local!`'s lookup out of the loop (about 2 cycles per iteration, which measures
/// the optimizer, not a lookup). Real code looks a value up once per use.
fn contextvar_get(c: &mut Criterion) {
    let mut g = c.benchmark_group("contextvar_get");
    static V: ContextVar<u64> = ContextVar::new("v");
    let mut runner = Runner::new();
    g.bench_function("runner", |b| {
        b.iter_custom(|iters| {
            runner
                .run(async move {
                    runner::spawn(async move {
                        V.set(7);
                        let start = Instant::now();
                        for _ in 0..iters {
                            black_box(black_box(&V).get());
                        }
                        start.elapsed()
                    })
                    .await
                    .unwrap()
                })
                .unwrap()
        })
    });
    let rt = current_thread();
    g.bench_function("tokio", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async move {
                tokio::spawn(LOCAL.scope(7, async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        black_box(black_box(&LOCAL).with(|v| *v));
                    }
                    start.elapsed()
                }))
                .await
                .unwrap()
            })
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    run_warm,
    run_cold,
    spawn_join,
    spawn_join_mt,
    close_pending,
    contextvar_get
);
criterion_main!(benches);
