#!/usr/bin/env bash
# SIGINT to exit of an idle #[runner::main], median of N runs: scripts/sigint_latency.sh [N] [pid1]
exec "$(dirname "$0")/signal_latency.sh" INT "$@"
