//! A Runner kept in a `thread_local!` (a per-thread sync-to-async bridge, a common pattern in
//! libraries) closes fully when its thread exits (DESIGN "A Runner and its thread"): steps
//! 1–4, its finalizers run, its tasks holding `cancelled()` get their async cleanup, although
//! tokio's own thread-locals may be destroyed before the Runner's. On every loop kind.

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, ThreadId};
use std::time::Duration;

use common::Reports;
use runner::{Builder, Runner};

#[derive(Clone, Copy, Debug)]
enum Kind {
    CurrentThread,
    MultiThread(usize),
    /// A tokio `LocalRuntime` (`flavor = "local"`).
    Local,
}

const KINDS: [Kind; 5] = [
    Kind::CurrentThread,
    Kind::MultiThread(1),
    Kind::MultiThread(2),
    Kind::MultiThread(4),
    Kind::Local,
];

fn builder(kind: Kind) -> Builder {
    let b = Runner::builder().handle_sigint(false).debug(Some(false));
    match kind {
        Kind::CurrentThread => b,
        Kind::MultiThread(workers) => b.loop_factory(move || {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .enable_all()
                .build()
        }),
        Kind::Local => b.loop_factory(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build_local(Default::default())
        }),
    }
}

thread_local! {
    /// The bridge: made before the thread's first run, so that its destructor runs after
    /// tokio's (thread-locals are destroyed in the reverse order of their first use).
    static BRIDGE: RefCell<Option<Runner>> = const { RefCell::new(None) };
}

/// What one bridge thread saw.
#[derive(Default)]
struct Seen {
    finalized: AtomicUsize,
    /// Finalizers that saw `shutdown_requested()` (close has begun: they all must).
    finalized_asked: AtomicUsize,
    /// Runner tasks that finished their async cleanup (an await on tokio's timer included).
    cleaned: AtomicUsize,
    /// Local tasks that finished theirs.
    local_cleaned: AtomicUsize,
    /// Where the local task's future was dropped.
    local_dropped_on: Mutex<Vec<ThreadId>>,
}

struct RecordsDrop(Arc<Seen>);

impl Drop for RecordsDrop {
    fn drop(&mut self) {
        self.0
            .local_dropped_on
            .lock()
            .unwrap()
            .push(thread::current().id());
    }
}

/// One thread that keeps a Runner of `kind` in a `thread_local!`, runs it once, leaving a
/// finalizer, a runner task and a local task (both holding `cancelled()`), and exits.
fn bridge_thread(kind: Kind, reports: &Reports, seen: &Arc<Seen>) -> ThreadId {
    let (sink, seen) = (reports.clone(), seen.clone());
    thread::spawn(move || {
        BRIDGE.with(|b| *b.borrow_mut() = Some(sink.install(builder(kind)).build()));
        BRIDGE.with(|b| {
            let mut b = b.borrow_mut();
            let runner = b.as_mut().unwrap();
            runner
                .run(async move {
                    let s = seen.clone();
                    runner::at_close(move || async move {
                        s.finalized.fetch_add(1, Ordering::SeqCst);
                        if runner::shutdown_requested() {
                            s.finalized_asked.fetch_add(1, Ordering::SeqCst);
                        }
                    });
                    let (ready, started) = tokio::sync::oneshot::channel();
                    let s = seen.clone();
                    runner::spawn(async move {
                        let cancelled = runner::cancelled();
                        let _ = ready.send(());
                        cancelled.await;
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        s.cleaned.fetch_add(1, Ordering::SeqCst);
                    });
                    started.await.unwrap();
                    let (ready, started) = tokio::sync::oneshot::channel();
                    let s = seen.clone();
                    runner::spawn_local(async move {
                        let _records = (RecordsDrop(s.clone()), Rc::new(()));
                        let cancelled = runner::cancelled();
                        let _ = ready.send(());
                        cancelled.await;
                        tokio::task::yield_now().await;
                        s.local_cleaned.fetch_add(1, Ordering::SeqCst);
                    });
                    started.await.unwrap();
                })
                .unwrap();
        });
        thread::current().id()
    })
    .join()
    .unwrap()
}

#[test]
fn a_runner_in_a_thread_local_closes_fully_at_thread_exit_on_every_loop_kind() {
    common::watchdog(common::TEST_LIMIT);
    for kind in KINDS {
        for _ in 0..20 {
            let reports = Reports::default();
            let seen = Arc::new(Seen::default());
            let home = bridge_thread(kind, &reports, &seen);
            let reports = reports.take();
            assert_eq!(
                seen.finalized.load(Ordering::SeqCst),
                1,
                "{kind:?}: finalizer runs; {reports:?}"
            );
            assert_eq!(
                seen.finalized_asked.load(Ordering::SeqCst),
                1,
                "{kind:?}: shutdown_requested() false in a finalizer"
            );
            assert_eq!(
                seen.cleaned.load(Ordering::SeqCst),
                1,
                "{kind:?}: no async cleanup; {reports:?}"
            );
            assert_eq!(
                *seen.local_dropped_on.lock().unwrap(),
                [home],
                "{kind:?}: the local task was not dropped once, on its thread"
            );
            match kind {
                // Its local tasks are tasks of the runtime, which its thread closes first.
                Kind::Local => {
                    assert_eq!(seen.local_cleaned.load(Ordering::SeqCst), 1, "{kind:?}");
                    assert!(reports.is_empty(), "{kind:?}: {reports:?}");
                }
                // The thread's set of local tasks goes with the thread's other thread-locals,
                // before the Runner: dropped without their cleanup, and reported.
                _ => {
                    assert_eq!(reports.len(), 1, "{kind:?}: {reports:?}");
                    assert!(
                        reports[0].message().contains(
                            "the thread running 1 spawn_local task(s) of a Runner exited"
                        ),
                        "{kind:?}: {reports:?}"
                    );
                }
            }
        }
    }
}
