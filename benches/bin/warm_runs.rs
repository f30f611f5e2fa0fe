//! N warm runs of a ready future on one Runner, on the main thread with Ctrl-C handling on:
//! `Runner::run`'s path alone, for `scripts/run_warm_instructions.sh` (callgrind counts
//! instructions, where criterion's times move with the machine's load).

fn main() {
    let runs: u64 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("usage: warm_runs N");
    let mut runner = runner::Runner::new();
    runner.run(async {}).unwrap();
    for _ in 0..runs {
        runner.run(std::hint::black_box(async {})).unwrap();
    }
}
