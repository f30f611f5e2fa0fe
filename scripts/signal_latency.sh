#!/usr/bin/env bash
# Time from a signal to exit of an idle #[runner::main] program, median of N runs.
# Usage: scripts/signal_latency.sh INT|TERM [N]   (default N = 20)
#   INT:  benches/bin/idle_main.rs, #[runner::main]
#   TERM: benches/bin/idle_main_sigterm.rs, #[runner::main(handle_sigterm = true)]
set -euo pipefail
cd "$(dirname "$0")/.."
sig="${1:?usage: scripts/signal_latency.sh INT|TERM [N]}"
runs="${2:-20}"
case "$sig" in
  INT) example=idle_main ;;
  TERM) example=idle_main_sigterm ;;
  *) echo "signal must be INT or TERM, not $sig" >&2; exit 2 ;;
esac
cargo build --release --quiet --example "$example"
python3 - "target/release/examples/$example" "$runs" "$sig" <<'PY'
import os, signal, statistics, subprocess, sys, time
binary, runs, name = sys.argv[1], int(sys.argv[2]), "SIG" + sys.argv[3]
sig = getattr(signal, name)
# The child must start with the signal at its default disposition (a background job of a
# non-interactive shell inherits SIGINT ignored), and unblocked.
def default_disposition():
    signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
times = []
for _ in range(runs):
    child = subprocess.Popen([binary], stdout=subprocess.PIPE, preexec_fn=default_disposition)
    assert child.stdout.readline().strip() == b"ready"
    start = time.perf_counter()
    os.kill(child.pid, sig)
    status = child.wait()
    times.append((time.perf_counter() - start) * 1000)
    assert status == -sig, f"expected death by {name}, got {status}"
print(f"{name.lower()}_exit: median {statistics.median(times):.2f} ms over {runs} runs "
      f"(min {min(times):.2f}, max {max(times):.2f}); every run died by {name}")
PY
