#!/usr/bin/env bash
# Resident memory per pending task, runner against tokio: `hot_paths memory SIDE N` spawns N
# tasks that sleep for an hour on a current-thread loop (handles dropped), lets each be polled
# once, and prints the RSS it took per task (and the time per spawn). One side per process,
# the two sides alternating, RUNS times; prints each run and the medians.
# Usage: scripts/memory_per_task.sh [RUNS] [N]      (defaults: 5 runs of 1,000,000 tasks)
# HOT_PATHS=path/to/hot_paths measures another build's binary (e.g. the code before a change,
# built in a second worktree with this hot_paths.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
n=${2:-1000000}
hot_paths=${HOT_PATHS:-target/release/examples/hot_paths}
[ -n "${HOT_PATHS:-}" ] || cargo build --release --quiet --example hot_paths
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for _ in $(seq 1 "$runs"); do
    for side in runner tokio; do
        "$hot_paths" memory "$side" "$n" | tee -a "$out"
    done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$out" <<'PY'
import re, statistics, sys
rows = {"runner": [], "tokio": []}
for line in open(sys.argv[1]):
    m = re.match(r"memory (\w+): ([\d.]+) bytes per pending task, ([\d.]+) ns per spawn", line)
    if m:
        rows[m.group(1)].append((float(m.group(2)), float(m.group(3))))
r = statistics.median(b for b, _ in rows["runner"])
t = statistics.median(b for b, _ in rows["tokio"])
rs = statistics.median(s for _, s in rows["runner"])
ts = statistics.median(s for _, s in rows["tokio"])
print(f"memory per pending task: runner {r:.1f} B, tokio {t:.1f} B, ratio {r / t:.3f}x "
      f"(medians of {len(rows['runner'])}); spawn without await: runner {rs:.0f} ns, "
      f"tokio {ts:.0f} ns, ratio {rs / ts:.2f}x")
PY
