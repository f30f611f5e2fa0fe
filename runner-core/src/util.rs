//! Small helpers every other module may use; this module uses none of them.

use crate::sync::{Mutex, MutexGuard};

/// Locks `m`, going on with the data when a panicking holder poisoned it: every lock of this
/// crate guards data that stays consistent across a panic (a slot, a waker, a counter), and
/// `close()` must never panic.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// [`lock`] for a process-wide `static` (std's `Mutex`: loom's has no `const` constructor;
/// see `sync`).
pub(crate) fn lock_std<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// [`lock_std`] that gives up (`None`) when the lock is held: for the final words of a forced
/// exit, which must not wait on a thread that may be stuck holding it.
pub(crate) fn try_lock_std<T>(m: &std::sync::Mutex<T>) -> Option<std::sync::MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(guard) => Some(guard),
        Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}
