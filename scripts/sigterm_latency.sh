#!/usr/bin/env bash
# Time from SIGTERM to exit of an idle #[runner::main(handle_sigterm = true)] program
# (benches/bin/idle_main_sigterm.rs), median of N runs (default 20).
# Usage: scripts/sigterm_latency.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-20}"
cargo build --release --quiet --example idle_main_sigterm
bin="target/release/examples/idle_main_sigterm"
python3 - "$bin" "$runs" <<'PY'
import os, signal, statistics, subprocess, sys, time
binary, runs = sys.argv[1], int(sys.argv[2])
# The child must start with SIGTERM at its default disposition, whatever we inherited.
def default_sigterm():
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
times = []
for _ in range(runs):
    child = subprocess.Popen([binary], stdout=subprocess.PIPE, preexec_fn=default_sigterm)
    assert child.stdout.readline().strip() == b"ready"
    start = time.perf_counter()
    os.kill(child.pid, signal.SIGTERM)
    status = child.wait()
    times.append((time.perf_counter() - start) * 1000)
    assert status == -signal.SIGTERM, f"expected death by SIGTERM, got {status}"
print(f"sigterm_exit: median {statistics.median(times):.2f} ms over {runs} runs "
      f"(min {min(times):.2f}, max {max(times):.2f}); every run died by SIGTERM")
PY
