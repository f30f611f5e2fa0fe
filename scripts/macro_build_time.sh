#!/usr/bin/env bash
# Clean `cargo build --tests` of a generated crate with 300 #[runner::test] fns against the
# same crate with #[tokio::test], dependencies prebuilt, CARGO_INCREMENTAL=0, median of
# N builds (default 3). Usage: scripts/macro_build_time.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
builds="${1:-3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export CARGO_TARGET_DIR="$work/target" CARGO_INCREMENTAL=0

make_crate() { # name, attribute, extra dependency line
    mkdir -p "$work/$1/src"
    cat >"$work/$1/Cargo.toml" <<TOML
[package]
name = "$1"
version = "0.0.0"
edition = "2021"
publish = false
[workspace]
[dependencies]
tokio-runner = { path = "$root" }
tokio = { version = "1.54", features = ["rt", "macros"] }
TOML
    {
        echo "#[cfg(test)]"
        echo "mod tests {"
        for i in $(seq 1 300); do
            echo "    $2"
            echo "    async fn case_$i() { assert_eq!(std::hint::black_box($i) + 1, $((i + 1))); }"
        done
        echo "}"
    } >"$work/$1/src/lib.rs"
}
make_crate gen_runner '#[runner::test]'
make_crate gen_tokio '#[tokio::test]'

median_build() { # crate
    local times=()
    (cd "$work/$1" && cargo build --tests --quiet) # dependencies
    for _ in $(seq 1 "$builds"); do
        (cd "$work/$1" && cargo clean --quiet -p "$1")
        local start end
        start=$(date +%s.%N)
        (cd "$work/$1" && cargo build --tests --quiet)
        end=$(date +%s.%N)
        times+=("$(awk -v a="$start" -v b="$end" 'BEGIN {print b - a}')")
    done
    printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}
ours=$(median_build gen_runner)
theirs=$(median_build gen_tokio)
ratio=$(awk -v a="$ours" -v b="$theirs" 'BEGIN {print a / b}')
printf 'macro_build: runner %.2f s, tokio %.2f s, ratio %.2fx (300 test fns, median of %s)\n' \
    "$ours" "$theirs" "$ratio" "$builds"
