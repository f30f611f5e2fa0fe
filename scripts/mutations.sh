#!/usr/bin/env bash
# Mutation checks for the tests that once could not fail (issue 23), and a few since: each
# case breaks one behaviour in the library (or the environment), runs the test named after
# it, and expects it to FAIL (a mutation that does not build is a broken case). The file is put back after each case, from a copy (not from git, so local
# changes survive).
#
#   scripts/mutations.sh            every case (about 3 minutes with the test build warm, 2 cores)
#   scripts/mutations.sh FILTER     the cases whose name contains FILTER
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
case_ plain_cancelled runner-core/src/task.rs \
    's/let Some\(\(main, stop\)\) = scope::plain_observed\(\) else \{/let Some((main, stop)) = None::<(Option<Arc<TaskState>>, Arc<RunnerStop>)> else {/' \
    -- --test plain_tasks a_cancelled_made_in_a_plain_task_resolves_when_the_main_task_is_cancelled
case_ plain_cancelled_axum runner-core/src/task.rs \
    's/let Some\(\(main, stop\)\) = scope::plain_observed\(\) else \{/let Some((main, stop)) = None::<(Option<Arc<TaskState>>, Arc<RunnerStop>)> else {/' \
    -- --test plain_tasks signals::axum_async_fn_shutdown_signal
case_ main_published_for_workers runner-core/src/shared.rs \
    's/active_main: multi_thread\.then\(\|\| Mutex::new\(None\)\),/active_main: None,/' \
    -- --test plain_tasks a_cancelled_made_in_a_plain_task_resolves_when_the_main_task_is_cancelled
case_ plain_cancelled_at_close runner-core/src/close.rs \
    's/    shared\.stop\.close\(\);\n//' \
    -- --test plain_tasks a_cancelled_made_in_a_plain_task_resolves_at_close
case_ context_set_refused runner-core/src/scope.rs \
    's/!s\.isolated && tokio::task::try_id\(\)\.is_some\(\)/false/' \
    -- --test context_isolation a_value_set_in_one_plain_task_is_never_seen_by_another
case_ context_set_refused_axum runner-core/src/scope.rs \
    's/!s\.isolated && tokio::task::try_id\(\)\.is_some\(\)/false/' \
    -- --test context_isolation naive_set_middleware
case_ dropped_mid_work_report runner-core/src/guarded.rs \
    's/report_dropped_mid_work\(state\);//' \
    -- --test plain_tasks a_task_dropped_mid_work_after_polling
# The sharded registry's loom models (issue 31), each against a wrong version of the registry
# it is written to catch. The models run under loom's own build (about 2 minutes the first
# time, then seconds).
loom=("RUSTFLAGS=--cfg runner_loom" LOOM_MAX_PREEMPTIONS=3 CARGO_TARGET_DIR=target/loom)
case_ registry_old_deregister runner-core/src/registry.rs \
    's/match self\.slots\.get_mut\(index\) \{\n(\s*)Some\(slot\) if \*slot == task as usize => \{/match Some(&mut self.slots[index]) {\n$1Some(slot) => {/' \
    "${loom[@]}" -- -p tokio-runner-core --release --lib registry::loom_models::loom_task_ending_as_the_pass_is_taken
case_ registry_stops_at_an_empty_shard runner-core/src/registry.rs \
    's/(let slab = shard\.with\(\|state\| \{\n)/$1                if state.slab.len == 0 { return None; }\n/; s/(\n\s*)slab\n(\s*)\}\);(\n\s*)\/\/ SAFETY: the strong references taken above\./$1Some(slab)\n$2}) else { break };$3\/\/ SAFETY: the strong references taken above./; s/let slab = shard\.with/let Some(slab) = shard.with/' \
    "${loom[@]}" -- -p tokio-runner-core --release --lib registry::loom_models::loom_the_pass_walks_every_shard
case_ registry_lost_wakeup runner-core/src/registry.rs \
    's/(\*lock\(&self\.closer\) = Some\(cx\.waker\(\)\.clone\(\)\);\n).*?(\n\s*Poll::Pending)/$1$2/s' \
    "${loom[@]}" -- -p tokio-runner-core --release --lib registry::loom_models::loom_last_task_of_the_pass_wakes_the_closer
case_ registry_stake_given_back_first runner-core/src/registry.rs \
    's/(self\.outstanding\.fetch_add\(left, Ordering::AcqRel\);)\n(\s*)(self\.outstanding\.fetch_sub\(STAKE, Ordering::AcqRel\) == STAKE)/let gone = $3;\n$2$1\n$2gone/' \
    "${loom[@]}" -- -p tokio-runner-core --release --lib registry::loom_models::loom_the_state_outlives_every_task
case_ registry_loose_tasks_uncounted runner-core/src/registry.rs \
    's/self\.outstanding\.fetch_add\(1 \+ loose, Ordering::AcqRel\);/self.outstanding.fetch_add(1 + 0 * loose, Ordering::AcqRel);/' \
    "${loom[@]}" -- -p tokio-runner-core --release --lib registry::loom_models::loom_tasks_of_a_pass_cut_short
case_ registry_pass_lets_go_before_waking runner-core/src/registry.rs \
    's/(\n\s*)self\.touch\(\);\n(\s*)if let Some\(waker\) = lock\(&self\.closer\)\.take\(\) \{\n(\s*)waker\.wake\(\);\n(\s*)\}\n\s*\/\/ The pass.s own reference, now that none of its tasks is left\.\n\s*self\.release\(\)/$1let last = self.release();$1self.touch();\n$2if let Some(waker) = lock(&self.closer).take() {\n$3waker.wake();\n$4}$1last/' \
    "${loom[@]}" -- -p tokio-runner-core --release --lib registry::loom_models::loom_tasks_of_a_pass_cut_short
case_ registry_gone_spawn_uncounted runner-core/src/registry.rs \
    's/state\.gone && self\.outstanding\.fetch_add\(1, Ordering::AcqRel\) == 0/false/' \
    "${loom[@]}" -- -p tokio-runner-core --release --lib registry::loom_models::loom_a_spawn_after_the_runner_let_go
# Issue 31 from the outside (tests/spawn_scaling.rs).
case_ pass_walks_one_shard runner-core/src/registry.rs \
    's/(let mut observing = Vec::new\(\);\n\s*)for shard in self\.shards\.iter\(\) \{/${1}for shard in self.shards.iter().take(1) {/' \
    -- --test spawn_scaling close_cancels_every_task_spawned_from_every_worker_at_once
case_ last_task_keeps_the_state runner-core/src/shared.rs \
    's/if last \{/if last && false {/' \
    -- --test spawn_scaling a_runner_whose_task_outlived_close_is_freed_after_that_task
case_ private_copy_drops_the_values runner-core/src/vars.rs \
    's/(let Head \{ owner, len, \.\. \} = \*self\.head\(\);\n\s*)if owner\.is_null\(\) \{/${1}if true {/' \
    -- --test spawn_scaling context_values_follow_spawns_across_workers_and_drop_once
case_ private_copy_leaks_its_owner runner-core/src/vars.rs \
    's/\} else \{\n(\s*)drop\(old\);/} else {\n$1std::mem::forget(old);/' \
    -- --test spawn_scaling context_values_follow_spawns_across_workers_and_drop_once
exit "$bad"
