#!/usr/bin/env bash
# Time from a signal to exit of an idle #[runner::main] program, median of N runs.
# Usage: scripts/signal_latency.sh INT|TERM [N] [pid1]   (default N = 20)
#   INT:  benches/bin/idle_main.rs, #[runner::main]
#   TERM: benches/bin/idle_main_sigterm.rs, #[runner::main(handle_sigterm = true)]
#   pid1: run the program as PID 1 of a new PID namespace (`unshare --pid --fork
#         --kill-child`, needs root), as in a container without an init; the signal goes to
#         its host pid, and it must exit with status 128 + n (the kernel drops a signal PID 1
#         re-raises at the default disposition). Otherwise it must die by the signal.
set -euo pipefail
cd "$(dirname "$0")/.."
sig="${1:?usage: scripts/signal_latency.sh INT|TERM [N] [pid1]}"
runs="${2:-20}"
mode="${3:-}"
case "$sig" in
  INT) example=idle_main ;;
  TERM) example=idle_main_sigterm ;;
  *) echo "signal must be INT or TERM, not $sig" >&2; exit 2 ;;
esac
case "$mode" in
  ""|pid1) ;;
  *) echo "the third argument is pid1 or nothing, not $mode" >&2; exit 2 ;;
esac
cargo build --release --quiet --example "$example"
python3 - "target/release/examples/$example" "$runs" "$sig" "$mode" <<'PY'
import os, signal, statistics, subprocess, sys, time
binary, runs, name, mode = sys.argv[1], int(sys.argv[2]), "SIG" + sys.argv[3], sys.argv[4]
sig = getattr(signal, name)
pid1 = mode == "pid1"
# The child must start with the signal at its default disposition (a background job of a
# non-interactive shell inherits SIGINT ignored), and unblocked. As PID 1, `unshare` passes
# both on to the program it forks and execs.
def default_disposition():
    signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
def host_pid_of_child(unshare):
    path = f"/proc/{unshare}/task/{unshare}/children"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(path) as f:
            pids = f.read().split()
        if len(pids) == 1:
            return int(pids[0])
        time.sleep(0.001)
    raise SystemExit(f"{path}: no single child")
command = ["unshare", "--pid", "--fork", "--kill-child", binary] if pid1 else [binary]
times = []
for _ in range(runs):
    child = subprocess.Popen(command, stdout=subprocess.PIPE, preexec_fn=default_disposition)
    assert child.stdout.readline().strip() == b"ready", "no ready line (unshare failed?)"
    target = host_pid_of_child(child.pid) if pid1 else child.pid
    start = time.perf_counter()
    os.kill(target, sig)
    status = child.wait()
    times.append((time.perf_counter() - start) * 1000)
    if pid1:
        assert status == 128 + sig, f"expected exit status {128 + sig} as PID 1, got {status}"
    else:
        assert status == -sig, f"expected death by {name}, got {status}"
how = f"exited with status {128 + sig} as PID 1" if pid1 else f"died by {name}"
label = name.lower() + "_exit" + (" as PID 1" if pid1 else "")
print(f"{label}: median {statistics.median(times):.2f} ms over {runs} runs "
      f"(min {min(times):.2f}, max {max(times):.2f}); every run {how}")
PY
