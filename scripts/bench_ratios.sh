#!/usr/bin/env bash
# Runs `cargo bench --bench vs_tokio -- FILTER` RUNS times and prints, per bench, each run's
# ratio runner / baseline (criterion's point estimate of the mean, both sides from the same
# run) and the median over the runs. Runs follow one another, so drift on a shared machine
# shows as spread, not as a bias of one side.
# Usage: scripts/bench_ratios.sh RUNS 'run_warm|spawn_join|run_cold'
#        (spawn_join matches spawn_join_mt/1 and spawn_join_mt/2 too: a multi-thread loop of 1
#        and 2 workers, as many tasks spawning at once)
#        scripts/bench_ratios.sh 5 close_pending   (baselines: tokio, tokio_abort_and_wait)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
filter=${2:-'run_warm|spawn_join|run_cold'}
cargo bench --bench vs_tokio --no-run --quiet
out=$(mktemp)
for i in $(seq 1 "$runs"); do
    cargo bench --bench vs_tokio -- "$filter" >/dev/null 2>&1
    python3 - "$i" >>"$out" <<'PY'
import json, pathlib, sys
root = pathlib.Path("target/criterion")
for est in sorted(set(root.glob("**/runner/**/new/estimates.json")) | set(root.glob("**/runner/new/estimates.json"))):
    parts = est.parts
    i = parts.index("runner")
    group, rest = parts[i - 1], parts[i + 1:-2]
    size = "/".join(rest)
    ours = json.loads(est.read_text())["mean"]["point_estimate"]
    for base in ("tokio", "tokio_abort_and_wait"):
        other = root.joinpath(group, base, *rest, "new", "estimates.json")
        if other.exists() and other.stat().st_mtime >= est.stat().st_mtime - 600:
            theirs = json.loads(other.read_text())["mean"]["point_estimate"]
            name = f"{group}{'/' + size if size else ''} vs {base}"
            print(f"{sys.argv[1]}\t{name}\t{ours:.1f}\t{theirs:.1f}\t{ours / theirs:.3f}")
PY
done
python3 - "$out" "$filter" <<'PY'
import collections, re, sys
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    run, name, ours, theirs, ratio = line.rstrip("\n").split("\t")
    if re.search(sys.argv[2], name):
        rows[name].append((float(ours), float(theirs), float(ratio)))
for name, values in sorted(rows.items()):
    ratios = sorted(v[2] for v in values)
    ours = sorted(v[0] for v in values)
    theirs = sorted(v[1] for v in values)
    mid = len(values) // 2
    each = " ".join(f"{v[2]:.2f}" for v in values)
    print(f"{name}: median {ratios[mid]:.2f}x (runner {ours[mid]:.0f} ns, baseline {theirs[mid]:.0f} ns; runs: {each})")
PY
rm -f "$out"
