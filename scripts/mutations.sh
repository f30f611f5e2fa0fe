#!/usr/bin/env bash
# Mutation checks for the tests that once could not fail (issue 23), and a few since: each
# case breaks one behaviour in the library (or the environment), runs the test named after
# it, and expects it to FAIL (a mutation that does not build is a broken case). The file is put back after each case, from a copy (not from git, so local
# changes survive).
#
#   scripts/mutations.sh            every case (several minutes with the test build warm, 2 cores)
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
    's/let _ = std::io::stderr\(\)\.lock\(\)\.write_all\(line\.as_bytes\(\)\);/eprint!("{line}");/' \
    -- --test debug_mode a_broken_stderr
case_ double_close runner-core/src/close.rs \
    's/run_finalizers\(rt\.as_ref\(\), shared, deadline, timeout\);//' \
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
    's/(close can wait for what they clean up\.\n)    shared\.stop\.close\(\);\n/$1/' \
    -- --test plain_tasks a_cancelled_made_in_a_plain_task_resolves_at_close
case_ closed_runtime_not_remembered runner-core/src/scope.rs \
    's/    closed\.push_back\(id\);\n//' \
    -- --test plain_tasks a_plain_task_a_close_gave_up_on
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
    's/match self\.slots\.get_mut\(index\) \{\n(\s*)Some\(slot\) if \*slot == task as \*const TaskState as usize => \{/match Some(&mut self.slots[index]) {\n$1Some(slot) => {/' \
    "${loom[@]}" -- -p tokio-runner-core --release --lib registry::loom_models::loom_task_ending_as_the_pass_is_taken
case_ registry_stops_at_an_empty_shard runner-core/src/registry.rs \
    's/let \(slab, gone\) = shard\.with\(\|state\| \{\n/let Some((slab, gone)) = shard.with(|state| {\n                if state.slab.len == 0 { return None; }\n/; s/\(slab, state\.gone\)\n(\s*)\}\);/Some((slab, state.gone))\n$1}) else { break };/' \
    "${loom[@]}" -- -p tokio-runner-core --release --lib registry::loom_models::loom_the_pass_walks_every_shard
case_ registry_lost_wakeup runner-core/src/registry.rs \
    's/(\*lock\(&self\.closer\) = Some\(cx\.waker\(\)\.clone\(\)\);\n).*?(\n\s*Poll::Pending)/$1$2/s' \
    "${loom[@]}" -- -p tokio-runner-core --release --lib registry::loom_models::loom_last_task_of_the_pass_wakes_the_closer
case_ registry_stake_given_back_first runner-core/src/registry.rs \
    's/(self\.outstanding\.fetch_add\(left, Ordering::AcqRel\);)\n(\s*)(self\.outstanding\.fetch_sub\(STAKE, Ordering::AcqRel\) == STAKE)/let gone = $3;\n$2$1\n$2gone/' \
    "${loom[@]}" -- -p tokio-runner-core --release --lib registry::loom_models::loom_the_state_outlives_every_task
case_ registry_loose_tasks_uncounted runner-core/src/registry.rs \
    's/self\.outstanding\.fetch_add\(1 \+ loose_live, Ordering::AcqRel\)/self.outstanding.fetch_add(1 + 0 * loose_live, Ordering::AcqRel)/' \
    "${loom[@]}" -- -p tokio-runner-core --release --lib registry::loom_models::loom_tasks_of_a_pass_cut_short
case_ registry_pass_lets_go_before_waking runner-core/src/registry.rs \
    's/(\n\s*)self\.touch\(\);\n(\s*)if let Some\(waker\) = lock\(&self\.closer\)\.take\(\) \{\n(\s*)waker\.wake\(\);\n(\s*)\}\n\s*\/\/ The pass.s own reference, now that none of its tasks is left\.\n\s*self\.release\(\)/$1let last = self.release();$1self.touch();\n$2if let Some(waker) = lock(&self.closer).take() {\n$3waker.wake();\n$4}$1last/' \
    "${loom[@]}" -- -p tokio-runner-core --release --lib registry::loom_models::loom_tasks_of_a_pass_cut_short
case_ registry_late_pass_counts_twice runner-core/src/registry.rs \
    's/if joined_gone > 0 \{/if false \&\& joined_gone > 0 {/' \
    "${loom[@]}" -- -p tokio-runner-core --release --lib registry::loom_models::loom_a_pass_after_the_runner_let_go
case_ registry_late_pass_takes_nothing_back runner-core/src/registry.rs \
    's/strong = StrongRef::Take;/let _ = StrongRef::Take;/' \
    "${loom[@]}" -- -p tokio-runner-core --release --lib registry::loom_models::loom_a_pass_after_the_runner_let_go
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
case_ late_pass_counts_twice runner-core/src/registry.rs \
    's/if joined_gone > 0 \{/if false \&\& joined_gone > 0 {/' \
    -- --test spawn_scaling a_close_handed_to_a_local_loops_home_thread_frees_the_runner_after_it
case_ private_copy_drops_the_values runner-core/src/vars.rs \
    's/(let Head \{ owner, len, \.\. \} = \*self\.head\(\);\n\s*)if owner\.is_null\(\) \{/${1}if true {/' \
    -- --test spawn_scaling context_values_follow_spawns_across_workers_and_drop_once
case_ private_copy_leaks_its_owner runner-core/src/vars.rs \
    's/\} else \{\n(\s*)drop\(old\);/} else {\n$1std::mem::forget(old);/' \
    -- --test spawn_scaling context_values_follow_spawns_across_workers_and_drop_once
# Issue 28: shutdown that fits the orchestrator. The loom cases build in target/loom, as
# .ci/run does (RUSTFLAGS would otherwise rebuild everything in target/).
LOOM=(RUSTFLAGS=--cfg\ runner_loom LOOM_MAX_PREEMPTIONS=3 CARGO_TARGET_DIR=target/loom)
case_ sigterm_by_default runner-core/src/__private.rs \
    's/let mut runner = builder\.handle_sigterm_unless_set\(\)\.build\(\);/let mut runner = builder.build();/' \
    -- --test sigterm runner_main_handles_sigterm_by_default
case_ grace_period_timer runner-core/src/signal.rs \
    's/if t\.grace_deadline\(\)\.is_some_and\(\|at\| now >= at\) \{/if false \&\& t.grace_deadline().is_some_and(|at| now >= at) {/' \
    -- --test orchestrator grace_period_ends_a_drain_after_sigterm
case_ grace_report_third runner-core/src/runner.rs \
    's/self\.shutdown_report_after\.min\(grace \/ 3\)/self.shutdown_report_after.max(grace - grace)/' \
    -- --test orchestrator grace_period_ends_a_drain_after_sigterm
case_ grace_key runner-macros/src/expand.rs \
    's/builder = quote!\(#builder\.grace_period\(#grace\)\);/let _ = grace;/' \
    -- --test orchestrator grace_period_ends_a_main_task_that_never_yields
case_ run_ended_published runner-core/src/signal.rs \
    's/fn hit_run\(signal: StopSignal\) \{\n    imp::run_was_hit\(signal\);/fn hit_run(signal: StopSignal) {\n    let _ = signal;/' \
    -- --test orchestrator grace_period_holds_when_the_run_ends
case_ drain_delay_armed runner-core/src/signal.rs \
    's/signals = signals\.with_drain_delay\(\);//' \
    -- --test orchestrator a_second_sigterm_cuts_the_drain_delay_short
case_ drain_delay_key runner-macros/src/expand.rs \
    's/builder = quote!\(#builder\.drain_delay\(#delay\)\);/let _ = delay;/' \
    -- --test orchestrator a_second_sigterm_cuts_the_drain_delay_short
case_ cut_short_not_kill runner-core/src/signal_state.rs \
    's/\} else if word & DELAYING != 0 \{\n(\s*)word & !DELAYING\n/} else if false {\n$1word\n/' \
    -- --test orchestrator a_second_signal_at_a_random_moment
case_ loom_cut_short_not_kill runner-core/src/signal_state.rs \
    's/\} else if word & DELAYING != 0 \{\n(\s*)word & !DELAYING\n/} else if false {\n$1word\n/' \
    "${LOOM[@]}" -- -p tokio-runner-core --release --lib loom_drain_delay_ends_once
case_ loom_end_delay_once runner-core/src/signal_state.rs \
    's/match self\.word\.compare_exchange\(\n\s*word,\n\s*word & !DELAYING,\n\s*Ordering::SeqCst,\n\s*Ordering::SeqCst,\n\s*\) \{\n\s*Ok\(_\) => return true,\n\s*Err\(now\) => word = now,\n\s*\}/self.word.store(word & !DELAYING, Ordering::SeqCst);\n            return true;/' \
    "${LOOM[@]}" -- -p tokio-runner-core --release --lib loom_drain_delay_ends_once
case_ loom_handler_marks_the_shutdown runner-core/src/signal_state.rs \
    's/self\.shutting_down\(generation\);\n(\s*)return if next/return if next/' \
    "${LOOM[@]}" -- -p tokio-runner-core --release --lib loom_after_a_hit
case_ forced_exit_during_close runner-core/src/signal.rs \
    's/Decision::ShuttingDown\(generation\) if dies_here\(signo\) => unsafe \{\n\s*forced_exit\(signal, generation\)\n\s*\},/Decision::ShuttingDown(_) if dies_here(signo) => unsafe { die_now(signal) },/' \
    -- --test orchestrator a_second_signal_during_close_forces_the_exit
case_ final_words_bound runner-core/src/shutdown.rs \
    's/FINAL_WORDS_LIMIT: Duration = Duration::from_millis\(100\)/FINAL_WORDS_LIMIT: Duration = Duration::from_secs(600)/' \
    -- --test orchestrator a_forced_exit_is_not_held_back
case_ final_words_without_stderr_lock runner-core/src/shutdown.rs \
    's/if shared\.shutdown\.default_handler && !crate::debug::tracing_subscriber_set\(\) \{/if false {/' \
    -- --test orchestrator final_words_come_out_while_a_stuck_thread
case_ plain_tasks_counted runner-core/src/shutdown.rs \
    's/Some\(alive\.saturating_sub\(ours \+ own\)\)/Some(alive.saturating_sub(own))/' \
    -- --test shutdown_progress close_names_a_task_ignoring
case_ local_driver_not_plain runner-core/src/shared.rs \
    's/        self\.local\.driver_spawned\(\)\n/        false\n/' \
    -- --test shutdown_progress close_names_a_task_ignoring
case_ signal_named_in_reports runner-core/src/progress.rs \
    's/Some\(signal\) => format!\("a second \{\} forces the exit", signal\.name\(\)\),/Some(_) => "a second Ctrl-C forces the exit".to_owned(),/' \
    -- --test orchestrator a_second_signal_forces_the_exit_with_final_words
case_ requested_at_close runner-core/src/runner.rs \
    's/closing\.shutdown\.request\(\);//' \
    -- --test orchestrator shutdown_requested_answers
case_ requested_at_signal runner-core/src/shutdown.rs \
    's/self\.requested\.store\(true, Ordering::Release\);\n(\s*)self\.generation\.fetch_max/self.generation.fetch_max/' \
    -- --test orchestrator axum_readiness
case_ stopping_notified runner-core/src/shutdown.rs \
    's/crate::notify::stopping\(\);//' \
    -- --test systemd_notify notify_socket_at_a_path
case_ watchdog_from_the_loop runner-core/src/notify.rs \
    's/ringer\.due\.store\(true, Ordering::Release\);/send("WATCHDOG=1");/' \
    -- --test systemd_notify watchdog_pings_stop
case_ watchdog_not_plain runner-core/src/runner.rs \
    's/shared\.shutdown\.own_task_started\(\);//' \
    -- --test systemd_notify notify_socket_at_a_path
case_ watchdog_pid runner-core/src/notify.rs \
    's/if pid\.trim\(\)\.parse::<libc::pid_t>\(\)\.ok\(\) != Some\(me\) \{/if false {/' \
    -- --test systemd_notify no_watchdog_pings
case_ notify_reported_once runner-core/src/notify.rs \
    's/if REPORTED\.swap\(true, Ordering::AcqRel\) \{/if false {/' \
    -- --test systemd_notify a_broken_notify_socket
case_ notify_abstract_name runner-core/src/notify.rs \
    's/\[b.\@., abstract_name \@ \.\.\] => abstract_addr\(abstract_name\)\?,/[b\x27\@\x27, abstract_name \@ ..] => abstract_addr(\&[abstract_name, b"x"].concat())?,/' \
    -- --test systemd_notify notify_socket_with_an_abstract_name
# Issue 30.
case_ waker_replaced runner-core/src/task_state.rs \
    's/if !same \{\n\s*self\.replace_waker\(waker\);\n\s*\}/let _ = same;/' \
    -- -p tokio-runner-core --lib a_cancel_reaches_a_task_whose_executor_changes_wakers
case_ waker_owed_wake runner-core/src/task_state.rs \
    's/if word & WAKE_OWED != 0 \{/if false \&\& word \& WAKE_OWED != 0 {/' \
    -- -p tokio-runner-core --lib a_cancel_reaches_a_task_whose_executor_changes_wakers
case_ inside_tokio_runtime runner-core/src/runner.rs \
    's/(say which, since[^\n]*\n\s*)return Err\(RunError::InsideTokioRuntime\);/$1return Err(RunError::NestedRun);/' \
    -- --test close_faults run_inside_tokio_main_says_inside_a_tokio_runtime
case_ task_error_names_the_task runner-core/src/error.rs \
    's/write!\(f, "task spawned at \{\} was cancelled", self\.spawned_at\)/f.write_str("task was cancelled")/' \
    -- --test tasks task_await_question_mark_into_anyhow
case_ inner_attributes_reach_the_body runner-macros/src/expand.rs \
    's/(func\.brace\.surround\(&mut body, \|body\| \{\n\s*body\.extend\(quote! \{\n)\s*#\(#inner_attrs\)\*\n/$1/' \
    -- --test ui
case_ ui_snapshots_of_another_rustc_fail_in_ci tests/ui/toolchain.txt \
    's/^rustc [^\n]*/rustc 1.0.0 (mutation)/' \
    CI=true -- --test ui
case_ no_pid_namespace_fails_in_ci tests/common/namespace.rs \
    's/&\["--pid", "--fork", "--kill-child"\]/&["--no-such-option"]/; s/"--user",/"--no-such-option",/' \
    CI=true -- --test pid1 as_pid1_sigterm_between_runs_exits_143
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
    's/        self\.state\.mark_done\(\);\n//; s/(let result = scope::poll_in[^\n]*\n)/$1        job.state.mark_done();\n/' \
    -- --test blocking_handles
case_ i29_local_tasks_bind_the_runner runner-core/src/runner.rs \
    's/    inner\.shared\.local\.check_thread\(\)\?;\n//' \
    -- --test spawn_local with_local_tasks_pending_run_on_another_thread_is_wrong_thread
case_ i29_close_elsewhere_leaves_local_tasks runner-core/src/local.rs \
    's/(pub\(crate\) fn runs_here\(&self\) -> bool \{\n)/$1        return true;\n/' \
    -- --test spawn_local closed_on_another_thread_a_runner_leaves_only_its_local_tasks
case_ i29_close_rehomes_local_tasks runner-core/src/local.rs \
    's/if self\.check_thread\(\)\.is_ok\(\) && self\.home\.state/if self.home.state/' \
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
    's/        self\.state\.mark_done\(\);\n//; s/(let result = scope::poll_in[^\n]*\n)/$1        job.state.mark_done();\n/' \
    -- --test lifecycle_fuzz
case_ close_scope_not_isolated runner-core/src/close.rs \
    's/isolated: false,(\n    \};\n    scope::poll_in\(&mut scope, \|\| steps)/isolated: true,$1/' \
    -- --test context_isolation plain_tasks_polled_by_close
# The one key table of the docs (runner-macros/src/keys.md) against the parser's (keys.rs).
case_ keys_md_missing_key runner-macros/src/keys.md \
    's/^\| `timeout` \|.*\n//m' \
    -- -p tokio-runner-macros --lib keys_doc::keys_md_names_every_key
case_ keys_md_unknown_key runner-macros/src/keys.md \
    's/^(\| `crate` \|.*\n)/$1| `unhandled_panic` | both | a bool | none |\n/m' \
    -- -p tokio-runner-macros --lib keys_doc::keys_md_names_every_key
case_ keys_md_new_parser_key runner-macros/src/keys.rs \
    's/name: "drain_delay",/name: "drain_delay_ms",/' \
    -- -p tokio-runner-macros --lib keys_doc::keys_md_names_every_key
case_ keys_md_main_only_marked_both runner-macros/src/keys.md \
    's/^\| `grace_period` \| main \|/| `grace_period` | both |/m' \
    -- -p tokio-runner-macros --lib keys_doc::keys_md_marks
case_ keys_md_test_only_in_keys_rs runner-macros/src/keys.rs \
    's/(name: "timeout",\n\s*scope: )Scope::Only\(Macro::Test\)/${1}Scope::Both/' \
    -- -p tokio-runner-macros --lib keys_doc::keys_md_marks
case_ keys_md_not_included runner-macros/src/lib.rs \
    's/#\[doc = include_str!\("keys.md"\)\]\n//' \
    -- -p tokio-runner-macros --lib keys_doc::both_attributes_include
exit "$bad"
