//! Where the crate's atomics, locks and cells come from: std in every build, loom's
//! model-checked doubles under `--cfg runner_loom` (tokio's `loom` module does the same).
//! Code that a loom model exercises (the signal word, a task's cancel state, the close
//! pass) imports only from here, so a model checks the real code, not a copy of it.
//!
//! The cfg is `runner_loom`, not the usual `loom`: `RUSTFLAGS` reaches every crate of the
//! build, and tokio reads `cfg(loom)` itself (it then wants loom types of its own and does
//! not build as a dependency).
//!
//! Left on std, outside the models: process-wide statics (they need `const` constructors,
//! which loom's types lack: a lookup table, a one-time-install lock), `Arc` (loom's only adds
//! leak tracking, and records are shared through std's `Arc` everywhere), and the blocking
//! count's `Condvar` (loom's has no timed wait).
//!
//! Run the models with
//! `RUSTFLAGS="--cfg runner_loom" cargo test -p tokio-runner-core --release --lib loom`.

#![allow(dead_code, unused_imports)]

#[cfg(not(runner_loom))]
pub(crate) use std::sync::{atomic, Mutex, MutexGuard};

#[cfg(runner_loom)]
pub(crate) use loom::sync::{atomic, Mutex, MutexGuard};

/// An `UnsafeCell` whose accesses loom can check: reach the data through `with` / `with_mut`.
#[cfg(not(runner_loom))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(runner_loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(data: T) -> UnsafeCell<T> {
        UnsafeCell(std::cell::UnsafeCell::new(data))
    }

    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

#[cfg(runner_loom)]
pub(crate) use loom::cell::UnsafeCell;
