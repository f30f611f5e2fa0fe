//! Bounded waiting for `close()`. A loop factory may build a runtime without tokio's timer,
//! so deadlines are kept by a plain thread that wakes the waiter, started only when there
//! is something to wait for (a `close()` with nothing pending starts no thread).

use std::any::Any;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use crate::event_loop::LoopRef;
use crate::sync::atomic::{AtomicBool, Ordering};
use crate::sync::Mutex;
use crate::util::lock;

struct Alarm {
    rang: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

/// Wakes the registered waker at the deadline, unless dropped first.
struct Timer {
    alarm: Arc<Alarm>,
    _stop: Sender<()>,
}

impl Timer {
    fn start(deadline: Instant) -> Option<Timer> {
        let alarm = Arc::new(Alarm {
            rang: AtomicBool::new(false),
            waker: Mutex::new(None),
        });
        let (stop, stopped) = mpsc::channel::<()>();
        let ringer = alarm.clone();
        std::thread::Builder::new()
            .name("runner-shutdown-timer".into())
            .spawn(move || {
                let wait = deadline.saturating_duration_since(Instant::now());
                if let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(wait) {
                    ringer.rang.store(true, Ordering::Release);
                    if let Some(waker) = lock(&ringer.waker).take() {
                        waker.wake();
                    }
                }
            })
            .ok()?;
        Some(Timer { alarm, _stop: stop })
    }

    fn rang(&self, waker: &Waker) -> bool {
        *lock(&self.alarm.waker) = Some(waker.clone());
        self.alarm.rang.load(Ordering::Acquire)
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        // The waker may own the runtime (a current-thread `block_on` waker does): the timer
        // thread, which ends a moment later, must not be the one that releases it.
        drop(lock(&self.alarm.waker).take());
    }
}

/// `rt.block_on(fut)`, giving up (`None`) at `deadline`; no deadline waits as long as it takes.
pub(crate) fn block_until<F: Future>(
    rt: LoopRef<'_>,
    deadline: Option<Instant>,
    fut: F,
) -> Option<F::Output> {
    rt.block_on(with_deadline(deadline, fut))
}

/// `fut`, or `None` once `deadline` has passed (checked whenever `fut` is pending).
pub(crate) async fn with_deadline<F: Future>(
    deadline: Option<Instant>,
    fut: F,
) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let mut timer: Option<Timer> = None;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        let Some(deadline) = deadline else {
            return Poll::Pending;
        };
        if Instant::now() >= deadline {
            return Poll::Ready(None);
        }
        if timer.is_none() {
            timer = Timer::start(deadline);
        }
        match &timer {
            Some(t) if t.rang(cx.waker()) => Poll::Ready(None),
            Some(_) => Poll::Pending,
            // No thread could be started: poll again soon rather than wait unbounded.
            None => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    })
    .await
}

/// A future whose panics become `Err(payload)`.
pub(crate) struct CatchUnwind<F: ?Sized>(pub(crate) Pin<Box<F>>);

impl<F: Future + ?Sized> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let fut = self.0.as_mut();
        match panic::catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(out)) => Poll::Ready(Ok(out)),
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}
