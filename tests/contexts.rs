//! Context variables follow tasks with asyncio's rules.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{builder, Flavor};
use runner::{Context, ContextError, ContextVar, Runner};

static COUNTER: ContextVar<u32> = ContextVar::new("counter");

#[test]
fn run_keeps_context_across_runs() {
    common::watchdog(common::TEST_LIMIT);
    // test_run_keeps_context
    static CVAR: ContextVar<i32> = ContextVar::with_default("cvar", || -1);
    let mut runner = builder(Flavor::CurrentThread).build();
    let first = runner
        .run(async {
            let seen = CVAR.get();
            CVAR.set(1);
            seen
        })
        .unwrap();
    let second = runner
        .run(async {
            let seen = CVAR.get();
            CVAR.set(2);
            seen
        })
        .unwrap();
    let third = runner.run(async { Context::current().get(&CVAR) }).unwrap();
    assert_eq!((first, second, third), (Some(-1), Some(1), Some(2)));
    assert_eq!(
        CVAR.get(),
        Some(-1),
        "the caller's own context is not the Runner's"
    );
}

#[test]
fn the_runner_context_is_a_copy_of_the_caller_context_at_lazy_init() {
    common::watchdog(common::TEST_LIMIT);
    static V: ContextVar<&'static str> = ContextVar::new("v");
    V.set("before init");
    let mut runner = builder(Flavor::CurrentThread).build();
    runner.get_loop().unwrap();
    V.set("after init");
    assert_eq!(runner.run(async { V.get() }).unwrap(), Some("before init"));
}

#[test]
fn run_in_context_writes_into_the_given_context_not_the_runners() {
    common::watchdog(common::TEST_LIMIT);
    static V: ContextVar<u8> = ContextVar::new("v");
    let ctx = Context::new();
    let mut runner = builder(Flavor::CurrentThread).build();
    runner.run(async { V.set(1) }).unwrap();
    let seen_inside = runner
        .run_in_context(
            async {
                let seen = V.get();
                V.set(2);
                seen
            },
            &ctx,
        )
        .unwrap();
    assert_eq!(
        seen_inside, None,
        "run_in_context runs in ctx, not the Runner's context"
    );
    assert_eq!(ctx.get(&V), Some(2));
    assert_eq!(runner.run(async { V.get() }).unwrap(), Some(1));
}

#[test]
fn child_and_parent_do_not_see_each_others_later_sets() {
    common::watchdog(common::TEST_LIMIT);
    for flavor in common::FLAVORS {
        let mut runner = builder(flavor).build();
        runner
            .run(async {
                COUNTER.set(1);
                let (go, wait) = tokio::sync::oneshot::channel::<()>();
                let child = runner::spawn(async move {
                    let at_start = COUNTER.get();
                    COUNTER.set(100);
                    wait.await.unwrap();
                    (at_start, COUNTER.get())
                });
                tokio::task::yield_now().await;
                COUNTER.set(2); // after the spawn: the child keeps its copy
                go.send(()).unwrap();
                let (at_start, at_end) = child.await.unwrap();
                assert_eq!(at_start, Some(1));
                assert_eq!(
                    at_end,
                    Some(100),
                    "the parent's later set is not seen by the child"
                );
                assert_eq!(
                    COUNTER.get(),
                    Some(2),
                    "the child's set is not seen by the parent"
                );
            })
            .unwrap();
    }
}

#[test]
fn spawn_blocking_sees_the_spawners_values() {
    common::watchdog(common::TEST_LIMIT);
    static USER: ContextVar<String> = ContextVar::new("user");
    let mut runner = builder(Flavor::CurrentThread).build();
    let (seen, after) = runner
        .run(async {
            USER.set("ada".to_owned());
            let seen = runner::spawn_blocking(|| {
                let seen = USER.get();
                USER.set("changed in the thread".to_owned());
                seen
            })
            .await
            .unwrap();
            (seen, USER.get())
        })
        .unwrap();
    assert_eq!(seen.as_deref(), Some("ada"));
    assert_eq!(after.as_deref(), Some("ada"));
}

#[test]
fn reset_restores_the_previous_value() {
    common::watchdog(common::TEST_LIMIT);
    static V: ContextVar<u8> = ContextVar::new("v");
    runner::run(async {
        assert_eq!(V.get(), None);
        let unset = V.set(1);
        let one = V.set(2);
        assert_eq!(one.old_value(), Some(&1));
        V.reset(one).unwrap();
        assert_eq!(V.get(), Some(1));
        V.reset(&unset).unwrap();
        assert_eq!(V.get(), None);
    })
    .unwrap();
}

#[test]
fn reset_refuses_a_used_token_a_foreign_token_and_another_vars_token() {
    common::watchdog(common::TEST_LIMIT);
    static A: ContextVar<u8> = ContextVar::new("a");
    static B: ContextVar<u8> = ContextVar::new("b");
    runner::run(async {
        let token = A.set(1);
        A.reset(&token).unwrap();
        assert_eq!(A.reset(&token), Err(ContextError::TokenUsed));

        let a_token = A.set(2);
        assert_eq!(B.reset(&a_token), Err(ContextError::WrongVar));

        let from_child = runner::spawn(async { A.set(3) }).await.unwrap();
        let err = A.reset(&from_child).unwrap_err();
        assert_eq!(err, ContextError::WrongContext);
        assert_eq!(err.to_string(), "Token was created in a different Context");
        assert_eq!(A.get(), Some(2), "a refused reset changes nothing");
    })
    .unwrap();
}

#[test]
fn context_run_nests_and_restores() {
    common::watchdog(common::TEST_LIMIT);
    static V: ContextVar<&'static str> = ContextVar::new("v");
    let outer = Context::new();
    let inner = Context::new();
    let seen = outer.run(|| {
        V.set("outer");
        let inside = inner.run(|| {
            let before = V.get();
            V.set("inner");
            (before, V.get())
        });
        (inside, V.get())
    });
    assert_eq!(seen, ((None, Some("inner")), Some("outer")));
    assert_eq!(outer.get(&V), Some("outer"));
    assert_eq!(inner.get(&V), Some("inner"));
    assert_eq!(V.get(), None);
}

#[test]
fn context_run_restores_after_a_panic() {
    common::watchdog(common::TEST_LIMIT);
    static V: ContextVar<u8> = ContextVar::new("v");
    let ctx = Context::new();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ctx.run(|| {
            V.set(4);
            panic!("inside")
        })
    }));
    assert!(caught.is_err());
    assert_eq!(V.get(), None);
    assert_eq!(ctx.get(&V), Some(4));
}

#[test]
fn outside_any_runner_each_thread_has_its_own_context() {
    common::watchdog(common::TEST_LIMIT);
    static V: ContextVar<u32> = ContextVar::new("v");
    V.set(1);
    let other = std::thread::spawn(|| {
        let before = V.get();
        V.set(2);
        (before, V.get())
    })
    .join()
    .unwrap();
    assert_eq!(other, (None, Some(2)));
    assert_eq!(V.get(), Some(1));
}

/// Blocks the worker thread it runs on, if that is `wanted`, until `release` is set (at
/// most 20 s); tells `placed` whether it landed there.
async fn block_worker(
    wanted: std::thread::ThreadId,
    placed: tokio::sync::oneshot::Sender<bool>,
    release: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let here = std::thread::current().id() == wanted;
    placed.send(here).unwrap();
    if here {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !release.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
            // sleep: this is the blocking (the worker must stay busy); the loop polls the
            // release flag.
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

#[test]
fn a_task_forced_onto_another_worker_thread_keeps_its_values() {
    // A task parks on worker A; A is then blocked, so the wake-up (sent from the Runner's
    // own thread, which is no worker) can only be run by worker B: a thread hop by
    // construction, verified, with 32 other tasks setting their own values on both workers.
    common::watchdog(common::TEST_LIMIT);
    static ID: ContextVar<usize> = ContextVar::new("id");
    let mut runner = builder(Flavor::MultiThread).build();
    let (before, after, seen) = runner
        .run(async {
            let others: Vec<_> = (1..=32)
                .map(|i| {
                    runner::spawn(async move {
                        ID.set(i);
                        for _ in 0..100 {
                            tokio::task::yield_now().await;
                            assert_eq!(ID.get(), Some(i), "task {i} lost its value");
                        }
                    })
                })
                .collect();
            let (wake, woken) = tokio::sync::oneshot::channel::<()>();
            let release = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let released = release.clone();
            let (placed, is_placed) = tokio::sync::oneshot::channel();
            let (parked, is_parked) = tokio::sync::oneshot::channel();
            let blocker_release = release.clone();
            let hopper = runner::spawn(async move {
                ID.set(0);
                let before = std::thread::current().id();
                // Spawned from worker A, the blocker goes to A's own next-task slot, which
                // other workers do not steal: it runs on A as soon as this task parks.
                tokio::spawn(block_worker(before, placed, blocker_release));
                parked.send(before).unwrap();
                woken.await.unwrap();
                let after = std::thread::current().id();
                let seen = ID.get();
                released.store(true, Ordering::SeqCst);
                (before, after, seen)
            });
            let worker_a = is_parked.await.unwrap();
            let mut blocked = is_placed.await.unwrap();
            // Should tokio have put it elsewhere after all: blockers in bulk from here (the
            // injection queue) until one lands on A.
            for _ in 0..50 {
                if blocked {
                    break;
                }
                let placements: Vec<_> = (0..8)
                    .map(|_| {
                        let (placed, is_placed) = tokio::sync::oneshot::channel();
                        tokio::spawn(block_worker(worker_a, placed, release.clone()));
                        is_placed
                    })
                    .collect();
                for placement in placements {
                    blocked |= placement.await.unwrap();
                }
            }
            assert!(blocked, "no blocker landed on worker A");
            wake.send(()).unwrap();
            let hop = hopper.await.unwrap();
            for task in others {
                task.await.unwrap();
            }
            hop
        })
        .unwrap();
    assert_ne!(before, after, "the task did not move to another thread");
    assert_eq!(seen, Some(0), "the task's value did not follow it");
}

#[test]
fn spawning_does_not_clone_values() {
    common::watchdog(common::TEST_LIMIT);
    static CLONES: AtomicUsize = AtomicUsize::new(0);
    struct Counted;
    impl Clone for Counted {
        fn clone(&self) -> Counted {
            CLONES.fetch_add(1, Ordering::SeqCst);
            Counted
        }
    }
    static VARS: [ContextVar<Counted>; 50] = [const { ContextVar::new("counted") }; 50];
    let mut runner = builder(Flavor::CurrentThread).build();
    runner
        .run(async {
            for var in &VARS {
                var.set(Counted);
            }
            for _ in 0..10_000 {
                runner::spawn(async {}).await.unwrap();
            }
        })
        .unwrap();
    assert_eq!(CLONES.load(Ordering::SeqCst), 0);
}

#[test]
fn context_debug_and_copy() {
    common::watchdog(common::TEST_LIMIT);
    static V: ContextVar<u8> = ContextVar::new("v");
    let a = Context::new();
    assert!(a.is_empty());
    a.run(|| V.set(1));
    let b = a.copy();
    b.run(|| V.set(2));
    assert_eq!((a.get(&V), b.get(&V), a.len()), (Some(1), Some(2), 1));
    assert!(format!("{a:?}").contains("vars: 1"));
    assert_eq!(format!("{V:?}"), "ContextVar { name: \"v\", .. }");
}

#[test]
fn the_runner_context_is_released_at_close() {
    common::watchdog(common::TEST_LIMIT);
    use std::sync::Arc;
    static HELD: ContextVar<Arc<()>> = ContextVar::new("held");
    let value = Arc::new(());
    let mut runner: Runner = builder(Flavor::CurrentThread).build();
    let v = value.clone();
    runner.run(async move { HELD.set(v) }).unwrap();
    assert_eq!(Arc::strong_count(&value), 2);
    runner.close();
    assert_eq!(Arc::strong_count(&value), 1);
}
