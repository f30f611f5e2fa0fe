#!/usr/bin/env bash
# Time from SIGINT to exit of an idle #[runner::main] program (benches/bin/idle_main.rs),
# median of N runs (default 20). Usage: scripts/sigint_latency.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-20}"
cargo build --release --quiet --example idle_main
bin="target/release/examples/idle_main"
python3 - "$bin" "$runs" <<'PY'
import os, signal, statistics, subprocess, sys, time
binary, runs = sys.argv[1], int(sys.argv[2])
# The child must start with SIGINT at its default disposition (a background job of a
# non-interactive shell inherits it ignored).
def default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
times = []
for _ in range(runs):
    child = subprocess.Popen([binary], stdout=subprocess.PIPE, preexec_fn=default_sigint)
    assert child.stdout.readline().strip() == b"ready"
    start = time.perf_counter()
    os.kill(child.pid, signal.SIGINT)
    status = child.wait()
    times.append((time.perf_counter() - start) * 1000)
    assert status == -signal.SIGINT, f"expected death by SIGINT, got {status}"
print(f"sigint_exit: median {statistics.median(times):.2f} ms over {runs} runs "
      f"(min {min(times):.2f}, max {max(times):.2f}); every run died by SIGINT")
PY
