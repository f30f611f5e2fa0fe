#!/usr/bin/env bash
# Instructions per iteration of a hot path, runner against tokio, counted by callgrind: the
# difference between 2N and N iterations, divided by N, so start-up and shutdown cancel
# out. Deterministic, unlike timings on a shared machine (callgrind runs one thread at a
# time, so it counts work, not contention).
# Usage: scripts/instructions.sh [run_warm|spawn_join ...]   (needs valgrind)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --example hot_paths
count() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        target/release/examples/hot_paths "$1" "$2" "$3" 2>&1 |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
per_iteration() {
    local n=$3 small large
    small=$(count "$1" "$2" "$n")
    large=$(count "$1" "$2" $((2 * n)))
    python3 -c "print(($large - $small) / $n)"
}
for path in "${@:-run_warm spawn_join}"; do
    for p in $path; do
        n=100000
        [ "$p" = spawn_join ] && n=50000
        r=$(per_iteration "$p" runner $n)
        t=$(per_iteration "$p" tokio $n)
        python3 -c "print(f'$p: runner {$r:.1f}, tokio {$t:.1f} instructions per iteration: {$r / $t:.2f}x')"
    done
done
