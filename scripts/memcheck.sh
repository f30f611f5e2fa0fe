#!/usr/bin/env bash
# The tests that exercise runner-core's unsafe code, under valgrind's memcheck: the
# registry's raw pointers and the close pass (tasks, close_resources, cancel_main), the
# thread-local scope record and context maps (contexts, context_isolation), the local set and
# the local runtime (spawn_local, local_loop), the task record's waker slot and cancel word
# (plain_tasks, lifecycle), and runner-core's own unit tests. Any memcheck error (an invalid
# read or write, a use of uninitialised memory, a bad free) fails the run.
#
# Child processes that some of these tests start run natively (no --trace-children): their
# code paths are the in-process tests' own. Leak checking is off: tokio and std keep
# per-thread and per-process allocations until exit by design; fd and RSS counts in the
# tests cover runner's leaks.
#
#   scripts/memcheck.sh            (about 1 to 2 minutes after the test build, 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v valgrind >/dev/null; then
    echo "memcheck: valgrind is not installed" >&2
    exit 1
fi

executable() {
    cargo test --no-run --quiet --message-format=json "$@" 2>/dev/null |
        python3 -c 'import json, sys
for line in sys.stdin:
    msg = json.loads(line)
    if msg.get("executable"):
        print(msg["executable"])'
}

status=0
check() {
    local label=$1 exe=$2
    shift 2
    local log=target/memcheck/$label.log
    mkdir -p target/memcheck
    local started=$SECONDS
    if valgrind --error-exitcode=99 --quiet "$exe" --test-threads=2 "$@" >"$log" 2>&1; then
        echo "memcheck: $label clean ($((SECONDS - started)) s)"
    else
        echo "memcheck: $label FAILED (exit $?); see $log" >&2
        grep -E '^==[0-9]+== ' "$log" | head -40 >&2 || true
        tail -20 "$log" >&2
        status=1
    fi
}

for test in tasks close_resources cancel_main contexts context_isolation spawn_local \
    local_loop lifecycle plain_tasks spawn_scaling; do
    # `signals`: the child-process tests of plain_tasks (their children run natively).
    check "$test" "$(executable --test "$test")" --skip signals
done
check runner-core-lib "$(executable -p tokio-runner-core --lib)"
exit "$status"
