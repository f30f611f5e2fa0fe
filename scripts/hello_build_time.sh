#!/usr/bin/env bash
# Cold `cargo build` of a `#[runner::main]` hello against a `#[tokio::main]` hello (tokio
# `rt, macros`), each in a fresh target dir, median of N builds each (default 3), builds
# interleaved so that a change in the machine's load falls on all of them. A third crate
# is the runner hello alongside tokio's macros (its tokio has `rt, macros`, as for
# `tokio::select!`): the build a user with both pays. Prints the medians, the ratios to the
# tokio hello and how many crates each build compiles. Nothing is downloaded while timing:
# the crates are fetched first. Usage: scripts/hello_build_time.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
builds="${1:-3}"
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export CARGO_INCREMENTAL=0 CARGO_TERM_COLOR=never

make_crate() { # name, tokio features, main.rs
    mkdir -p "$work/$1/src"
    cat >"$work/$1/Cargo.toml" <<TOML
[package]
name = "$1"
version = "0.0.0"
edition = "2021"
publish = false
[workspace]
[dependencies]
$4
tokio = { version = "1.54", features = [$2] }
TOML
    printf '%s\n' "$3" >"$work/$1/src/main.rs"
    # The same dependency versions as this checkout.
    cp "$root/Cargo.lock" "$work/$1/Cargo.lock"
    (cd "$work/$1" && cargo fetch --quiet)
}
make_crate hello_runner '' '#[runner::main]
async fn main() {
    println!("hello");
}' "tokio-runner = { path = \"$root\" }"
make_crate hello_runner_tokio_macros '"rt", "macros"' '#[runner::main]
async fn main() {
    println!("hello");
}' "tokio-runner = { path = \"$root\" }"
make_crate hello_tokio '"rt", "macros"' '#[tokio::main(flavor = "current_thread")]
async fn main() {
    println!("hello");
}' ''

# One cold build of crate $1 in a fresh target dir: prints "wall-seconds cpu-seconds crates".
# CPU time (user + sys) is printed too: on a machine shared with other builds it moves less
# than wall time.
cold_build() {
    local target="$work/target-$1" timing crates
    rm -rf "$target"
    timing=$( { TIMEFORMAT='%R %U %S'; time (cd "$work/$1" &&
        CARGO_TARGET_DIR="$target" cargo build --offline 2>"$work/log-$1"); } 2>&1)
    crates=$(grep -c '^ *Compiling ' "$work/log-$1")
    awk -v t="$timing" -v c="$crates" 'BEGIN {split(t, x, " "); printf "%.2f %.2f %d\n", x[1], x[2] + x[3], c}'
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

runner_times=() tokio_times=() both_times=() runner_cpu=() tokio_cpu=() both_cpu=()
for _ in $(seq 1 "$builds"); do
    read -r t c runner_crates < <(cold_build hello_runner)
    runner_times+=("$t") runner_cpu+=("$c")
    read -r t c tokio_crates < <(cold_build hello_tokio)
    tokio_times+=("$t") tokio_cpu+=("$c")
    read -r t c both_crates < <(cold_build hello_runner_tokio_macros)
    both_times+=("$t") both_cpu+=("$c")
done
ours=$(printf '%s\n' "${runner_times[@]}" | median)
theirs=$(printf '%s\n' "${tokio_times[@]}" | median)
both=$(printf '%s\n' "${both_times[@]}" | median)
ours_cpu=$(printf '%s\n' "${runner_cpu[@]}" | median)
theirs_cpu=$(printf '%s\n' "${tokio_cpu[@]}" | median)
both_cpu_median=$(printf '%s\n' "${both_cpu[@]}" | median)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"
echo "runner wall: ${runner_times[*]} s, cpu: ${runner_cpu[*]} s"
echo "tokio  wall: ${tokio_times[*]} s, cpu: ${tokio_cpu[*]} s"
echo "runner + tokio macros wall: ${both_times[*]} s, cpu: ${both_cpu[*]} s"
printf 'hello_build: runner %.2f s (%d crates), tokio %.2f s (%d crates), ratio %sx; cpu %.2f / %.2f s = %sx (cold, median of %s; load average before: %s, after: %s)\n' \
    "$ours" "$runner_crates" "$theirs" "$tokio_crates" "$(ratio "$ours" "$theirs")" \
    "$ours_cpu" "$theirs_cpu" "$(ratio "$ours_cpu" "$theirs_cpu")" "$builds" "$load_before" "$load_after"
printf 'hello_build alongside tokio macros: runner + tokio rt,macros %.2f s (%d crates), tokio %.2f s, ratio %sx; cpu %.2f / %.2f s = %sx\n' \
    "$both" "$both_crates" "$theirs" "$(ratio "$both" "$theirs")" \
    "$both_cpu_median" "$theirs_cpu" "$(ratio "$both_cpu_median" "$theirs_cpu")"
