//! Where the crate's atomics, locks and cells come from: std in every build, loom's
//! model-checked doubles under `--cfg loom` (tokio's `loom` module does the same). Code that
//! a loom model exercises (the signal word, a task's cancel state, the close pass) imports
//! only from here, so a model checks the real code, not a copy of it.
//!
//! Process-wide statics need `const` constructors, which loom's types lack: those few use
//! `std::sync` directly and stay outside the models (they hold a lookup table or a
//! one-time-install lock, never a handshake between threads).
//!
//! Until every modeled part uses it, some of it is unused in some builds.
//!
//! Run the models with
//! `RUSTFLAGS="--cfg loom" cargo test -p tokio-runner-core --release --lib loom`.

#![allow(dead_code, unused_imports)]

#[cfg(not(loom))]
pub(crate) use std::sync::{atomic, Arc, Mutex, MutexGuard};

#[cfg(loom)]
pub(crate) use loom::sync::{atomic, Arc, Mutex, MutexGuard};

/// An `UnsafeCell` whose accesses loom can check: reach the data through `with` / `with_mut`.
#[cfg(not(loom))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
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

#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;
