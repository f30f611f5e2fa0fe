#!/usr/bin/env bash
# Instructions per iteration of a hot path, runner against tokio, counted by callgrind: the
# difference between 2N and N iterations, divided by N, so start-up and shutdown cancel
# out. Deterministic, unlike timings on a shared machine (callgrind runs one thread at a
# time, so it counts work, not contention: the multi-thread paths spawn_mt1 and spawn_mt2
# count the instructions of a spawn there, not what two workers cost each other; their
# counts also move by a few percent from run to run with how often workers park).
# Usage: scripts/instructions.sh [run_warm|spawn_join|spawn_mt1|spawn_mt2|contextvar_get ...]
# (needs valgrind)
# HOT_PATHS=path/to/hot_paths counts another build's binary (e.g. the code before a change,
# built in a second worktree with this hot_paths.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
hot_paths=${HOT_PATHS:-target/release/examples/hot_paths}
[ -n "${HOT_PATHS:-}" ] || cargo build --release --quiet --example hot_paths
count() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        "$hot_paths" "$1" "$2" "$3" 2>&1 |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
per_iteration() {
    local n=$3 small large
    small=$(count "$1" "$2" "$n")
    large=$(count "$1" "$2" $((2 * n)))
    python3 -c "print(($large - $small) / $n)"
}
for path in "${@:-run_warm spawn_join spawn_mt1 spawn_mt2 contextvar_get}"; do
    for p in $path; do
        n=100000
        [ "$p" = spawn_join ] && n=50000
        case $p in spawn_mt*) n=20000 ;; contextvar_get) n=1000000 ;; esac
        r=$(per_iteration "$p" runner $n)
        t=$(per_iteration "$p" tokio $n)
        python3 -c "print(f'$p: runner {$r:.1f}, tokio {$t:.1f} instructions per iteration: {$r / $t:.2f}x')"
    done
done
