#!/usr/bin/env bash
# Mutation checks for the tests that once could not fail (issue 23), and a few since: each
# case breaks one behaviour in the library (or the environment), runs the test named after
# it, and expects it to FAIL (a mutation that does not build is a broken case). The file is put back after each case, from a copy (not from git, so local
# changes survive).
#
#   scripts/mutations.sh            every case (about 6 minutes with the test build warm, 2 cores)
#   scripts/mutations.sh FILTER     the cases whose name contains FILTER (e.g. `fuzz_`: the
#                                   lifecycle fuzzer against each fix of issue 29 reverted)
#
# Prints one line per case; exits 1 if a mutation did not apply or a test passed under it.
set -uo pipefail
cd "$(dirname "$0")/.."
filter=${1:-}
bad=0
backup=$(mktemp)
trap 'rm -f "$backup"' EXIT

# case NAME FILE PERL_SUBSTITUTION [ENV=VALUE ...] -- CARGO_TEST_ARGS...
case_() {
    local name=$1 file=$2 expr=$3
    shift 3
    local envs=()
    while [ "$1" != "--" ]; do
        envs+=("$1")
        shift
    done
    shift
    [[ -n "$filter" && "$name" != *"$filter"* ]] && return
    cp "$file" "$backup"
    perl -0pi -e "$expr" "$file"
    if cmp -s "$file" "$backup"; then
        echo "[$name] the mutation did not apply to $file"
        bad=1
        return
    fi
    local log=target/mutations/$name.log
    mkdir -p target/mutations
    env "${envs[@]}" timeout 900 cargo test -q "$@" >"$log" 2>&1
    local status=$?
    cp "$backup" "$file"
    if ! grep -q '^running [0-9]* test' "$log"; then
        echo "[$name] the mutation does not build: fix the case ($log)"
        bad=1
    elif [ "$status" -eq 0 ]; then
        echo "[$name] PASSED under the mutation: the test cannot see it ($log)"
        bad=1
    else
        echo "[$name] fails as it should ($log)"
    fi
}

case_ hermetic_common tests/common/mod.rs \
    's/Runner::builder\(\)\.handle_sigint\(false\)\.debug\(Some\(false\)\);/Runner::builder().handle_sigint(false);/' \
    RUNNER_DEBUG=1 -- --test tasks
case_ hermetic_close_faults tests/close_faults.rs \
    's/\.install\(Runner::builder\(\)\.handle_sigint\(false\)\.debug\(Some\(false\)\)\)/.install(Runner::builder().handle_sigint(false))/' \
    RUNNER_DEBUG=1 -- --test close_faults
case_ run_closes runner-core/src/runner.rs \
    's/let result = runner\.run\(main\);\n    runner\.close\(\);/let result = runner.run(main);\n    std::mem::forget(runner);/' \
    -- --test tasks run_cancels_hanging_tasks_and_still_returns_its_value
case_ cancel_drops_the_future runner-core/src/guarded.rs \
    's/let step = match Self::drop_inner\(inner\) \{\n(\s*)Some\(payload\) => Step::Panicked\(payload\),\n(\s*)None => Step::Cancelled,/let step = match { std::mem::forget(inner.take()); None::<Box<dyn Any + Send>> } {\n$1Some(payload) => Step::Panicked(payload),\n$2None => Step::Cancelled,/' \
    -- --test tasks a_cancelled_task_awaits_to_cancelled_and_its_destructors_run
case_ moved_cancelled_wakes runner-core/src/task.rs \
    's/task\.watch\(&mut this\.watch, cx\.waker\(\)\);//' \
    -- --test tasks cancelled_moved_into_tokio_spawn_resolves_on_task_cancel
case_ unretrieved_panic runner-core/src/guarded.rs \
    's/shared\.report_unretrieved\(state\);//' \
    -- --test debug_mode a_never_retrieved_panic_is_reported
case_ context_follows_a_hop runner-core/src/scope.rs \
    's/Ok\(here\) => \{\n\s*let _back = Back\(here, here\.current\.replace\(scope\), here\.borrow\.replace\(0\)\);\n\s*f\(\)\n\s*\}/Ok(_here) => f(),/' \
    -- --test contexts a_task_forced_onto_another_worker_thread_keeps_its_values
case_ sigint_before_run runner-core/src/runner.rs \
    's/(fn init\(&mut self\) -> Result<\(\), RunError> \{\n)/$1        unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN); }\n/' \
    -- --test sigint ctrl_c_before_any_run_kills_by_default
case_ handler_fallback runner-core/src/runner.rs \
    's/dispose\(payload\);\n(\s*)debug::default_handler\(report\);/dispose(payload);/' \
    -- --test debug_mode a_panicking_exception_handler_falls_back
case_ broken_stderr runner-core/src/debug.rs \
    's/let _ = writeln!\(std::io::stderr\(\)\.lock\(\), "runner: \{report\}"\);/eprintln!("runner: {report}");/' \
    -- --test debug_mode a_broken_stderr
case_ double_close runner-core/src/close.rs \
    's/run_finalizers\(rt\.as_ref\(\), &shared, deadline, timeout\);//' \
    -- --test lifecycle explicit_close_and_double_close
case_ shutdown_timeout_key runner-macros/src/expand.rs \
    's/builder = quote!\(#builder\.shutdown_timeout\(#timeout\)\);/let _ = timeout;/' \
    -- --test macros shutdown_timeout_key_bounds_close_and_its_report_names_it
case_ crate_key runner-macros/src/expand.rs \
    's/let krate = config\.krate\.clone\(\)\.unwrap_or_else\(\|\| quote!\(::runner\)\);/let krate = quote!(::runner);/' \
    -- --test attribute_fixtures test_attribute_with_crate_key
case_ tracing_level runner-core/src/debug.rs \
    's/\| ReportKind::FinalizerPanicked => tracing::error!\(/| ReportKind::FinalizerPanicked => tracing::warn!(/' \
    -- --test tracing_events --features tracing
case_ stale_example examples/debug_slow.rs \
    's/\z/\ncompile_error!("mutation");\n/' \
    -- --test examples debug_slow_names
case_ one_cpu tests/bin/sigint_child.rs \
    's/libc::CPU_SET\(first, &mut set\);/libc::CPU_SET(first + 1000, &mut set);/' \
    -- --test sigint one_sigint_at_a_random_moment
case_ finalizer_progress runner-core/src/close.rs \
    's/\|until\| block_until\(rt, until, driving\.as_mut\(\)\)/|_until| block_until(rt, deadline, driving.as_mut())/' \
    -- --test shutdown_progress close_names_an_at_close_finalizer
# Issue 29: each fix, reverted, fails its own test...
case_ i29_late_spawn_local runner-core/src/local.rs \
    's/    if home\.state\.load\(Ordering::Acquire\) == CLOSED \{\n        return dropped_at_once\(location, shared, fut\);\n    \}\n//' \
    -- --test spawn_local a_spawn_local_after_close_took_the_local_tasks
case_ i29_fork_reset runner-core/src/signal.rs \
    's/unsafe \{ libc::pthread_atfork\(None, None, Some\(after_fork\)\) \};/let _ = after_fork;/' \
    -- --test fork
case_ i29_thread_exit_runtime runner-core/src/close.rs \
    's/(fn thread_torn_down\(\) -> bool \{\n)/$1    return false;\n/' \
    -- --test thread_exit
case_ i29_thread_exit_local_loop runner-core/src/event_loop.rs \
    's/loops\.push\(slot\.clone\(\)\);/let _ = \&slot;/' \
    -- --test thread_exit
case_ i29_blocking_handle_done runner-core/src/task.rs \
    's/let _done = done;//; s/let done = DoneOnDrop\(state\.clone\(\)\);//; s/(\n\s*)outcome\n(\s*)\}\);\n(\s*)Task::new\(handle, state, &shared\)/$1job_state.mark_done();$1outcome\n$2});\n$3Task::new(handle, state, &shared)/' \
    -- --test blocking_handles
case_ i29_local_tasks_bind_the_runner runner-core/src/runner.rs \
    's/    inner\.shared\.local\.check_thread\(\)\?;\n//' \
    -- --test spawn_local with_local_tasks_pending_run_on_another_thread_is_wrong_thread
case_ i29_close_elsewhere_leaves_local_tasks runner-core/src/local.rs \
    's/(pub\(crate\) fn runs_here\(&self\) -> bool \{\n)/$1        return true;\n/' \
    -- --test spawn_local closed_on_another_thread_a_runner_leaves_only_its_local_tasks
case_ i29_close_rehomes_local_tasks runner-core/src/local.rs \
    's/if self\.check_thread\(\)\.is_ok\(\) && self\.0\.state/if self.0.state/' \
    -- --test spawn_local a_destructor_run_by_a_close_on_another_thread_may_spawn_local
case_ i29_nested_close_scope runner-core/src/close.rs \
    's/scope::poll_in\(&mut scope, \|\| steps\(rt, &shared, timeout\)\);/drop(scope);\n    steps(rt, &shared, timeout);/' \
    -- --test lifecycle a_nested_runners_close_is_its_own_down_to_the_runtimes_shutdown
# ... and the lifecycle fuzzer's bounded run finds each one of fixes 1-4 (its output names
# the case that failed: how many generated cases it took).
case_ fuzz_late_spawn_local runner-core/src/local.rs \
    's/    if home\.state\.load\(Ordering::Acquire\) == CLOSED \{\n        return dropped_at_once\(location, shared, fut\);\n    \}\n//' \
    -- --test lifecycle_fuzz
case_ fuzz_fork_reset runner-core/src/signal.rs \
    's/unsafe \{ libc::pthread_atfork\(None, None, Some\(after_fork\)\) \};/let _ = after_fork;/' \
    -- --test lifecycle_fuzz
case_ fuzz_thread_exit_runtime runner-core/src/close.rs \
    's/(fn thread_torn_down\(\) -> bool \{\n)/$1    return false;\n/' \
    -- --test lifecycle_fuzz
case_ fuzz_thread_exit_local_loop runner-core/src/event_loop.rs \
    's/loops\.push\(slot\.clone\(\)\);/let _ = \&slot;/' \
    -- --test lifecycle_fuzz
case_ fuzz_blocking_handle_done runner-core/src/task.rs \
    's/let _done = done;//; s/let done = DoneOnDrop\(state\.clone\(\)\);//; s/(\n\s*)outcome\n(\s*)\}\);\n(\s*)Task::new\(handle, state, &shared\)/$1job_state.mark_done();$1outcome\n$2});\n$3Task::new(handle, state, &shared)/' \
    -- --test lifecycle_fuzz
exit "$bad"
