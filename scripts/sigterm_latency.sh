#!/usr/bin/env bash
# SIGTERM to exit of an idle #[runner::main(handle_sigterm = true)], median of N runs:
# scripts/sigterm_latency.sh [N] [pid1]   (pid1: as PID 1 of a new PID namespace, root only)
exec "$(dirname "$0")/signal_latency.sh" TERM "$@"
