//! Small helpers every other module may use; this module uses none of them.

use std::ops::DerefMut;

/// A mutex [`lock`] can take: std's, and (under `--cfg loom`) loom's. In normal builds
/// `crate::sync::Mutex` is std's, so this is one impl; under loom the crate holds both kinds
/// (code that runs outside the models keeps std's), and every call site stays as it is.
pub(crate) trait Lockable {
    type Guard<'a>: DerefMut
    where
        Self: 'a;

    fn lock_anyway(&self) -> Self::Guard<'_>;
}

impl<T> Lockable for std::sync::Mutex<T> {
    type Guard<'a>
        = std::sync::MutexGuard<'a, T>
    where
        T: 'a;

    fn lock_anyway(&self) -> Self::Guard<'_> {
        self.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(loom)]
impl<T> Lockable for loom::sync::Mutex<T> {
    type Guard<'a>
        = loom::sync::MutexGuard<'a, T>
    where
        T: 'a;

    fn lock_anyway(&self) -> Self::Guard<'_> {
        self.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Locks `m`, going on with the data when a panicking holder poisoned it: every lock of this
/// crate guards data that stays consistent across a panic (a slot, a waker, a counter), and
/// `close()` must never panic.
pub(crate) fn lock<M: Lockable>(m: &M) -> M::Guard<'_> {
    m.lock_anyway()
}

/// [`lock`] for a process-wide `static` (std's `Mutex`: loom's has no `const` constructor;
/// see `sync`).
pub(crate) fn lock_static<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
