#!/usr/bin/env bash
# Cold `cargo build` of a `#[runner::main]` hello against a `#[tokio::main]` hello (tokio
# `rt, macros`), each in a fresh target dir, median of N builds each (default 3), builds
# interleaved so that a change in the machine's load falls on both. Prints both medians,
# the ratio and how many crates each build compiles. Nothing is downloaded while timing:
# both crates are fetched first. Usage: scripts/hello_build_time.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
builds="${1:-3}"
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
}' "runner = { path = \"$root\" }"
make_crate hello_tokio '"rt", "macros"' '#[tokio::main(flavor = "current_thread")]
async fn main() {
    println!("hello");
}' ''

# One cold build of crate $1 in a fresh target dir: prints "seconds crates".
cold_build() {
    local target="$work/target-$1" start end crates
    rm -rf "$target"
    start=$(date +%s.%N)
    crates=$(cd "$work/$1" && CARGO_TARGET_DIR="$target" cargo build --offline 2>&1 |
        grep -c '^ *Compiling ')
    end=$(date +%s.%N)
    awk -v a="$start" -v b="$end" -v c="$crates" 'BEGIN {printf "%.2f %d\n", b - a, c}'
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

runner_times=() tokio_times=()
for _ in $(seq 1 "$builds"); do
    read -r t runner_crates < <(cold_build hello_runner)
    runner_times+=("$t")
    read -r t tokio_crates < <(cold_build hello_tokio)
    tokio_times+=("$t")
done
ours=$(printf '%s\n' "${runner_times[@]}" | median)
theirs=$(printf '%s\n' "${tokio_times[@]}" | median)
ratio=$(awk -v a="$ours" -v b="$theirs" 'BEGIN {printf "%.2f", a / b}')
echo "runner builds: ${runner_times[*]} s; tokio builds: ${tokio_times[*]} s"
printf 'hello_build: runner %.2f s (%d crates), tokio %.2f s (%d crates), ratio %sx (cold, median of %s, load %s)\n' \
    "$ours" "$runner_crates" "$theirs" "$tokio_crates" "$ratio" "$builds" "$(cut -d' ' -f1-3 /proc/loadavg)"
