//! N iterations of one hot path, on runner or on plain tokio, for `scripts/instructions.sh`:
//! callgrind counts instructions, which stay put where criterion's times move with the
//! machine's load.
//!
//! `hot_paths run_warm runner|tokio N`: N warm `Runner::run` (main thread, Ctrl-C handling
//! on) / `Runtime::block_on` of a ready future.
//! `hot_paths spawn_join runner|tokio N`: N `runner::spawn(..).await` (10 context variables
//! set) / `tokio::spawn(..).await`, inside one run.

use std::hint::black_box;

use runner::ContextVar;

static VARS: [ContextVar<u64>; 10] = [const { ContextVar::new("bench") }; 10];

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: hot_paths run_warm|spawn_join runner|tokio N";
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
    match (path.as_str(), side.as_str()) {
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
        _ => panic!("{usage}"),
    }
}
