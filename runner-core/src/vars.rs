//! The data of a context: an immutable, sorted map of variable values, shared by every copy
//! of the context (a copy is one `Arc` increment; a `set` replaces the map, cloning its
//! pointers, never the values). `context` is the public API over it, and `scope` keeps the
//! running code's one in the thread's record.

use std::any::Any;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

pub(crate) type Value = Arc<dyn Any + Send + Sync>;

/// One variable's value in a context. `data` points at the value inside `value`, found once
/// at `set` so that `get` needs no vtable lookup.
#[derive(Clone)]
pub(crate) struct Entry {
    pub(crate) id: usize,
    pub(crate) data: *const (),
    pub(crate) value: Value,
}

// SAFETY: `data` only ever points into `value`, which is `Send + Sync` and kept alive (and
// never mutated) for as long as the entry exists.
unsafe impl Send for Entry {}
// SAFETY: as above.
unsafe impl Sync for Entry {}

/// The values of one context, sorted by variable id: immutable, shared by every copy of the
/// context, replaced (not mutated) by `set`. A handful of variables is the common case, and
/// a flat slice beats hashing there.
pub(crate) type VarMap = Arc<[Entry]>;

#[inline]
pub(crate) fn find(map: &[Entry], id: usize) -> Option<&Entry> {
    if map.len() <= 8 {
        return map.iter().find(|e| e.id == id);
    }
    map.binary_search_by_key(&id, |e| e.id)
        .ok()
        .map(|i| &map[i])
}

/// `map` with `id` set to `value`, and the value it replaced.
pub(crate) fn inserted(map: Option<&[Entry]>, id: usize, value: Value) -> (VarMap, Option<Value>) {
    let mut entries = map.map(<[Entry]>::to_vec).unwrap_or_default();
    let entry = Entry {
        id,
        data: Arc::as_ptr(&value).cast::<()>(),
        value,
    };
    let old = match entries.binary_search_by_key(&id, |e| e.id) {
        Ok(i) => Some(std::mem::replace(&mut entries[i], entry).value),
        Err(i) => {
            entries.insert(i, entry);
            None
        }
    };
    (entries.into(), old)
}

/// `map` without `id`, and the value it had.
pub(crate) fn removed(map: Option<&[Entry]>, id: usize) -> (Option<VarMap>, Option<Value>) {
    let Some(map) = map else { return (None, None) };
    let mut entries = map.to_vec();
    match entries.binary_search_by_key(&id, |e| e.id) {
        Ok(i) => {
            let old = entries.remove(i).value;
            ((!entries.is_empty()).then(|| entries.into()), Some(old))
        }
        Err(_) => (Some(map.into()), None),
    }
}

static NEXT_CONTEXT_ID: AtomicU64 = AtomicU64::new(1);
pub(crate) static NEXT_VAR_ID: AtomicUsize = AtomicUsize::new(1);

pub(crate) fn next_context_id() -> u64 {
    NEXT_CONTEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// The context a piece of running code is in: its identity (tokens are tied to it) and
/// its values. Id 0 is a context whose identity nothing needed yet (a thread's own, a fresh
/// copy), and no map is an empty one: both keep the thread-local `const`-initializable and
/// copies free.
#[derive(Clone)]
pub(crate) struct CtxState {
    pub(crate) id: u64,
    pub(crate) map: Option<VarMap>,
}

impl CtxState {
    pub(crate) const EMPTY: CtxState = CtxState { id: 0, map: None };

    pub(crate) fn fresh() -> CtxState {
        CtxState {
            id: next_context_id(),
            map: None,
        }
    }

    /// A copy: the same values, a new identity, given when first needed (`id`): most copies
    /// (one per spawned task) never need one, and taking one is an atomic read-modify-write.
    pub(crate) fn copy(&self) -> CtxState {
        CtxState {
            id: 0,
            map: self.map.clone(),
        }
    }

    /// This context's identity, given now if it has none yet.
    pub(crate) fn id(&mut self) -> u64 {
        if self.id == 0 {
            self.id = next_context_id();
        }
        self.id
    }
}
