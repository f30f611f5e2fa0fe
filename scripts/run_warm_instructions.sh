#!/usr/bin/env bash
# Instructions per warm `Runner::run` of a ready future (main thread, Ctrl-C handling on),
# counted by callgrind: the difference between 200k and 100k runs, divided by 100k, so
# start-up and shutdown cancel out. Deterministic, unlike timings on a shared machine.
# Usage: scripts/run_warm_instructions.sh   (needs valgrind)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --example warm_runs
count() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/warm_runs "$1" 2>&1 |
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
small=$(count 100000)
large=$(count 200000)
python3 -c "print(f'run_warm: {($large - $small) / 100000:.1f} instructions per run (callgrind; {$small} for 100k runs, {$large} for 200k)')"
