#!/usr/bin/env bash
# SIGTERM to exit of an idle #[runner::main(handle_sigterm = true)], median of N runs:
# scripts/sigterm_latency.sh [N]
exec "$(dirname "$0")/signal_latency.sh" TERM "$@"
