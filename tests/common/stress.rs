//! Shared by the stress tests (`cancel_stress.rs`) and the soak (`concurrency_soak.rs`):
//! the four loop flavors, a panic hook that counts the panics of every thread, loops bounded
//! by iteration count and by wall time, a watchdog, and the child process every test body
//! runs in.
//!
//! Why a child process per test body: a panic hook is process-wide, the tests of one file
//! run in parallel threads, and a panic on a tokio worker thread (or on one of the Runner's
//! own helper threads) carries nothing that says which test it belongs to. A child process
//! runs exactly one body, so every panic in it is that body's, and the count is exact. It
//! is also where a hang can be stopped for good: the child's watchdog fails the test naming
//! the stuck iteration, and the parent kills a child that outlives its own limit, so nothing
//! of a hung body is left running. The soak needs its own process anyway, for its fd, thread
//! and RSS counts. Included with `#[path]` (not through `common/mod.rs`), so that the other
//! test files do not compile it.
#![allow(dead_code)]

use std::fmt;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::pin;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, Once};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use runner::{Builder, Runner};

/// A loop flavor: tokio's current-thread runtime (the Runner's default) or a multi-thread
/// runtime with this many workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    CurrentThread,
    Mt(usize),
}

pub const FLAVORS: [Flavor; 4] = [
    Flavor::CurrentThread,
    Flavor::Mt(1),
    Flavor::Mt(2),
    Flavor::Mt(4),
];

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Flavor::CurrentThread => f.write_str("current-thread"),
            Flavor::Mt(n) => write!(f, "mt({n})"),
        }
    }
}

/// `flavors`, or those of them named in `RUNNER_STRESS_FLAVORS` (e.g. `mt(2),mt(4)`), to run
/// a test on some flavors only.
pub fn flavors(flavors: &[Flavor]) -> Vec<Flavor> {
    let wanted = std::env::var("RUNNER_STRESS_FLAVORS").unwrap_or_default();
    let wanted: Vec<&str> = wanted
        .split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .collect();
    let chosen: Vec<Flavor> = flavors
        .iter()
        .copied()
        .filter(|f| wanted.is_empty() || wanted.contains(&f.to_string().as_str()))
        .collect();
    assert!(
        !chosen.is_empty(),
        "RUNNER_STRESS_FLAVORS={wanted:?} names none of {flavors:?}"
    );
    chosen
}

/// The Runner of issue 17's repros: no signal handling, debug mode off, the given loop.
pub fn builder(flavor: Flavor) -> Builder {
    let b = Runner::builder().handle_sigint(false).debug(Some(false));
    match flavor {
        Flavor::CurrentThread => b,
        Flavor::Mt(workers) => b.loop_factory(move || {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .enable_all()
                .build()
        }),
    }
}

/// A panic whose message starts with this is one the test makes on purpose: counted apart.
pub const EXPECTED_PANIC: &str = "stress-expected: ";

static PANICS: AtomicUsize = AtomicUsize::new(0);
static EXPECTED_PANICS: AtomicUsize = AtomicUsize::new(0);

fn panic_text(payload: &(dyn std::any::Any + Send)) -> Option<&str> {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
}

/// Installs (once per process) a hook that counts every panic on every thread, then hands
/// it to the hook that was there before, which prints it: a panic on a tokio worker thread
/// is otherwise caught by tokio and seen by nobody. Expected panics are only counted.
pub fn count_panics() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let expected =
                panic_text(info.payload()).is_some_and(|m| m.starts_with(EXPECTED_PANIC));
            if expected {
                // Made on purpose, and not printed: printing (with RUST_BACKTRACE set, a
                // backtrace resolved on the panicking worker) can take longer than the
                // shutdown timeout the panic is timed against.
                EXPECTED_PANICS.fetch_add(1, Ordering::SeqCst);
            } else {
                PANICS.fetch_add(1, Ordering::SeqCst);
                previous(info);
            }
        }));
    });
}

/// Panics so far on any thread of this process, not counting the expected ones.
pub fn panics() -> usize {
    PANICS.load(Ordering::SeqCst)
}

/// Panics so far whose message starts with [`EXPECTED_PANIC`].
pub fn expected_panics() -> usize {
    EXPECTED_PANICS.load(Ordering::SeqCst)
}

/// How many iterations a loop makes: at least `min`, at most `max`, and no new one once
/// `time` is spent (and `min` reached).
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    pub min: usize,
    pub max: usize,
    pub time: Duration,
}

/// Where a test body is, for the watchdog's message.
#[derive(Default)]
pub struct Progress {
    label: Mutex<String>,
    iteration: AtomicUsize,
}

impl Progress {
    /// The iterations of one loop (`label` names it, e.g. the flavor), as [`Bounds`] allow;
    /// each is recorded for the watchdog, a panic on any thread during one fails the loop
    /// there, and the count and time go to stderr at the end.
    pub fn iterations(&self, label: impl fmt::Display, bounds: Bounds) -> Iterations<'_> {
        let label = label.to_string();
        label.clone_into(&mut self.label.lock().unwrap());
        self.iteration.store(0, Ordering::SeqCst);
        Iterations {
            progress: self,
            label,
            bounds,
            next: 0,
            started: Instant::now(),
            done: false,
            panics: panics(),
        }
    }

    /// Records a step outside any loop (e.g. "closing").
    pub fn at(&self, label: impl fmt::Display) {
        *self.label.lock().unwrap() = label.to_string();
    }
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = self.label.lock().unwrap_or_else(|e| e.into_inner());
        write!(
            f,
            "{label}, iteration {}",
            self.iteration.load(Ordering::SeqCst)
        )
    }
}

pub struct Iterations<'a> {
    progress: &'a Progress,
    label: String,
    bounds: Bounds,
    next: usize,
    started: Instant,
    done: bool,
    /// Panics counted before the loop: any more, and the iteration that just ended fails.
    panics: usize,
}

impl Iterator for Iterations<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.done {
            return None;
        }
        let Bounds { min, max, time } = self.bounds;
        let i = self.next;
        let panics = panics();
        if panics > self.panics {
            self.done = true;
            panic!(
                "{}, iteration {}: {} panic(s) on the body's threads (tokio workers included); \
                 messages above",
                self.label,
                i.saturating_sub(1),
                panics - self.panics
            );
        }
        if i >= max || (i >= min && self.started.elapsed() >= time) {
            self.done = true;
            eprintln!(
                "stress: {}: {i} iterations in {:.1?}",
                self.label,
                self.started.elapsed()
            );
            return None;
        }
        self.progress.iteration.store(i, Ordering::SeqCst);
        self.next += 1;
        Some(i)
    }
}

/// How long a child's body may take before its watchdog fails it.
pub const WATCHDOG: Duration = Duration::from_secs(60);

/// The child's side: runs `body` on a thread of its own under the watchdog (failing with
/// where the body was stuck if it takes longer than `limit`), then asserts that no thread
/// panicked. Call it from the `#[ignore]`d child test, which [`run_child`] starts.
pub fn child(limit: Duration, body: impl FnOnce(&Progress) + Send + 'static) {
    assert_eq!(
        std::env::var("RUNNER_CHILD").as_deref(),
        Ok("1"),
        "a child test body: run through its parent test"
    );
    count_panics();
    let progress = Arc::new(Progress::default());
    let (done, finished) = mpsc::channel();
    let p = progress.clone();
    thread::Builder::new()
        .name("stress-body".into())
        .spawn(move || {
            let result = panic::catch_unwind(AssertUnwindSafe(|| body(&p)));
            let _ = done.send(result);
        })
        .unwrap();
    match finished.recv_timeout(limit) {
        Ok(Ok(())) => {}
        Ok(Err(payload)) => panic::resume_unwind(payload),
        Err(RecvTimeoutError::Timeout) => {
            panic!("watchdog: the body did not finish within {limit:?}; stuck at {progress}")
        }
        Err(RecvTimeoutError::Disconnected) => unreachable!("the body thread always reports"),
    }
    let panics = panics();
    assert_eq!(
        panics, 0,
        "{panics} panic(s) on the body's threads (tokio workers included); messages above"
    );
}

/// The parent's side: re-runs this test binary on the `#[ignore]`d test `child` alone, and
/// fails if it fails; a child still running after `limit` is killed and reaped. Echoes the
/// child's `stress:` and `soak:` lines (iteration counts, figures).
pub fn run_child(child: &str, limit: Duration) {
    let (_, stderr) = crate::common::run_child_within(child, &[], limit);
    for line in stderr.lines() {
        if line.starts_with("stress:") || line.starts_with("soak:") {
            eprintln!("{line}");
        }
    }
}

/// Wakes a thread parked in [`block_on_thread`].
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `fut` on this (plain OS) thread until it is ready, parking in between; `None` if
/// it is not ready within `limit` (it is then dropped here).
pub fn block_on_thread<F: Future>(fut: F, limit: Duration) -> Option<F::Output> {
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    let deadline = Instant::now() + limit;
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return Some(out);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        thread::park_timeout(deadline - now);
    }
}
