//! The data of a context: an immutable, sorted map of variable values, shared by every copy
//! of the context (a copy is one reference count, on a count that only the copying context's
//! own copies share: see [`VarMap`]; a `set` replaces the map, cloning its pointers, never
//! the values). `context` is the public API over it, and `scope` keeps the
//! running code's one in the thread's record.

use std::alloc::{self, Layout};
use std::any::Any;
use std::ptr::NonNull;
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
///
/// # Copies that scale with cores (issue 31)
///
/// Every task gets a copy of its spawner's context, so a copy must be cheap, and on a
/// multi-thread loop it must not touch a reference count that every spawner touches: two
/// workers spawning from copies of one context would otherwise bounce that count's cache
/// line between them at each spawn and at each end (an `Arc<[Entry]>` did).
///
/// So a map is one allocation, a header and the entries after it (a thin pointer: a copy of
/// a context is 16 bytes, which keeps a task's wrapper small), and a context that gets a map
/// from someone else (a task's copy of its spawner's) takes a *private copy* of it the first
/// time it is copied itself (`CtxState::copy_for_child`): a new allocation holding the
/// entries bit for bit (they borrow the values, counting nothing), and one counted
/// reference on the map that owns them. The copies it hands out from then on count on that
/// private copy, whose count only this context's own children touch. Cost: one allocation
/// and one copy of the entries per context that spawns from an inherited map, and at most
/// one count on the shared map for it, instead of two counts per spawn. A map that this
/// context made itself (a `set`) is its own already. Big maps (more than
/// `PRIVATE_COPY_MAX` entries) are shared as they are.
///
/// A lookup gets the entries' address and their number from the `VarMap` itself (see
/// `PACKED`; only a map whose length does not fit there reads its header's `len` first),
/// then reads the entries (one cache line for a few variables): no more dependent loads
/// than the fat pointer it replaces.
pub(crate) struct VarMap(NonNull<u8>);

/// The header of a map allocation; `len` entries follow it.
#[repr(C)]
struct Head {
    /// Copies of contexts holding this allocation.
    refs: AtomicUsize,
    /// For a private copy: the map owning the values that its entries borrow (one reference
    /// held on it). Null for a map that owns its entries.
    owner: *const Head,
    len: usize,
}

/// The low bit of a `VarMap`: this context's own map (made by its `set`, or its private
/// copy), whose count its copies may take directly.
const MINE: usize = 1;

/// The next bit: the map's length is in the top `LEN_BITS` of the `VarMap` (a 64-bit target,
/// an address that leaves them zero, as user-space addresses do, and a length that fits), so
/// that a lookup gets it with the pointer instead of loading it from the header first.
const PACKED: usize = 2;
const LEN_BITS: u32 = 16;
const LEN_SHIFT: u32 = usize::BITS - LEN_BITS;

/// Where the entries start in a map allocation: after the header, at their alignment.
const ENTRIES: usize = {
    let (head, align) = (std::mem::size_of::<Head>(), std::mem::align_of::<Entry>());
    head.div_ceil(align) * align
};

/// Largest map copied privately (32 bytes an entry); bigger ones are shared as they are.
const PRIVATE_COPY_MAX: usize = 32;

// SAFETY: the entries' values are `Send + Sync`; the header's count is atomic, and nothing
// else of an allocation changes while it is shared.
unsafe impl Send for VarMap {}
// SAFETY: as above.
unsafe impl Sync for VarMap {}

impl VarMap {
    fn layout(len: usize) -> (Layout, usize) {
        let entries = Layout::array::<Entry>(len).expect("a context map fits in memory");
        let (layout, offset) = Layout::new::<Head>()
            .extend(entries)
            .expect("a context map fits in memory");
        debug_assert_eq!(offset, ENTRIES);
        (layout.pad_to_align(), offset)
    }

    /// A map owning `entries` (this context's own).
    fn owning(mut entries: Vec<Entry>) -> VarMap {
        let map = VarMap::allocate(&entries, 1, std::ptr::null());
        // SAFETY: the map holds the entries now (moved in bit for bit): the vector forgets
        // its own, so each is dropped once, by the map.
        unsafe { entries.set_len(0) };
        map
    }

    /// A new map allocation holding `entries` bit for bit (their copies count nothing), with
    /// `refs` references, tagged as its holder's own. With a null `owner` it owns them (the
    /// caller forgets the originals); otherwise they borrow the values of `owner`'s map, one
    /// reference on which the caller gives it, and are never dropped from here (see `Drop`).
    fn allocate(entries: &[Entry], refs: usize, owner: *const Head) -> VarMap {
        let len = entries.len();
        let (layout, offset) = VarMap::layout(len);
        // SAFETY: the layout has a nonzero size (the header).
        let base = unsafe { alloc::alloc(layout) };
        let Some(base) = NonNull::new(base) else {
            alloc::handle_alloc_error(layout)
        };
        // SAFETY: fresh memory of the layout above: the header, then room for `len` entries,
        // copied from a slice that cannot overlap it.
        unsafe {
            base.cast::<Head>().write(Head {
                refs: AtomicUsize::new(refs),
                owner,
                len,
            });
            std::ptr::copy_nonoverlapping(
                entries.as_ptr(),
                base.as_ptr().add(offset).cast::<Entry>(),
                len,
            );
        }
        VarMap::make(base, len)
    }

    /// The `VarMap` of the allocation at `base`, of `len` entries, tagged as its holder's own
    /// (`MINE`). It holds the address of the entries (what a lookup reads first), not of the
    /// header.
    fn make(base: NonNull<u8>, len: usize) -> VarMap {
        let entries = base.addr().get() + ENTRIES;
        let packed = usize::BITS == 64 && entries >> LEN_SHIFT == 0 && len >> LEN_BITS == 0;
        let tag = if packed { len << LEN_SHIFT | PACKED } else { 0 };
        // SAFETY: nonzero: an address inside the allocation.
        let word = unsafe { std::num::NonZeroUsize::new_unchecked(entries | tag | MINE) };
        VarMap(base.with_addr(word))
    }

    /// The same `VarMap`, not tagged as its holder's own.
    #[inline]
    fn not_mine(&self) -> VarMap {
        // SAFETY: nonzero: the address stays.
        VarMap(
            self.0
                .map_addr(|a| unsafe { std::num::NonZeroUsize::new_unchecked(a.get() & !MINE) }),
        )
    }

    /// The address of the entries, without the tags.
    #[inline]
    fn entries_addr(&self) -> usize {
        let word = self.0.addr().get();
        let addr = if word & PACKED != 0 {
            word & ((1 << LEN_SHIFT) - 1)
        } else {
            word
        };
        addr & !(MINE | PACKED)
    }

    /// The allocation's address (its header's).
    #[inline]
    fn base(&self) -> NonNull<u8> {
        // SAFETY: the entries' address, past the header's: nonzero after the subtraction.
        self.0.with_addr(unsafe {
            std::num::NonZeroUsize::new_unchecked(self.entries_addr() - ENTRIES)
        })
    }

    #[inline]
    fn head(&self) -> &Head {
        // SAFETY: the allocation lives while this reference to it does.
        unsafe { self.base().cast::<Head>().as_ref() }
    }

    #[inline]
    fn entries_ptr(&self) -> *const Entry {
        // SAFETY: nonzero: the entries' address.
        let entries = unsafe { std::num::NonZeroUsize::new_unchecked(self.entries_addr()) };
        self.0.with_addr(entries).cast::<Entry>().as_ptr()
    }

    #[inline]
    fn is_mine(&self) -> bool {
        self.0.addr().get() & MINE != 0
    }

    /// A copy for a child (a spawned task, a snapshot) of the context holding `self`, which
    /// may now make `self` its private copy (see the type's docs).
    #[inline]
    fn copy_for_child(&mut self) -> VarMap {
        if self.is_mine() || self.len() > PRIVATE_COPY_MAX {
            return self.clone();
        }
        self.make_private()
    }

    /// `copy_for_child` of a map that is not this context's own yet.
    #[cold]
    fn make_private(&mut self) -> VarMap {
        let owner = self.head().owner;
        let values = match NonNull::new(owner.cast_mut()) {
            // `self` is a reference on the owning map: it becomes the private copy's (no
            // count touched).
            None => self.base().cast::<Head>(),
            // A reference on someone's private copy: the new one counts on the owner once.
            Some(owner) => {
                // SAFETY: the owner is kept alive by the private copy `self` refers to.
                unsafe { owner.as_ref() }
                    .refs
                    .fetch_add(1, Ordering::Relaxed);
                owner
            }
        };
        // Two references: this context's and the copy returned.
        let private = VarMap::allocate(self, 2, values.as_ptr());
        let old = std::mem::replace(self, private);
        if owner.is_null() {
            // Its reference now belongs to the private copy.
            std::mem::forget(old);
        } else {
            drop(old);
        }
        self.not_mine()
    }
}

impl std::ops::Deref for VarMap {
    type Target = [Entry];

    #[inline]
    fn deref(&self) -> &[Entry] {
        let word = self.0.addr().get();
        if word & PACKED == 0 {
            return self.unpacked_entries();
        }
        // The lookup's path: the entries' address and their number from the one word.
        let entries = self
            .0
            .with_addr(
                // SAFETY: nonzero: the entries' address.
                unsafe {
                    std::num::NonZeroUsize::new_unchecked(
                        word & ((1 << LEN_SHIFT) - 1) & !(MINE | PACKED),
                    )
                },
            )
            .cast::<Entry>();
        // SAFETY: `len` initialized entries follow the header, alive with the allocation.
        unsafe { std::slice::from_raw_parts(entries.as_ptr(), word >> LEN_SHIFT) }
    }
}

impl VarMap {
    /// `deref` of a map whose length is in its header.
    #[cold]
    fn unpacked_entries(&self) -> &[Entry] {
        // SAFETY: `len` initialized entries follow the header, alive with the allocation.
        unsafe { std::slice::from_raw_parts(self.entries_ptr(), self.head().len) }
    }
}

impl Clone for VarMap {
    #[inline]
    /// Another reference to the same map (not this context's own: see `copy_for_child`).
    fn clone(&self) -> VarMap {
        self.head().refs.fetch_add(1, Ordering::Relaxed);
        self.not_mine()
    }
}

impl Drop for VarMap {
    #[inline]
    fn drop(&mut self) {
        if self.head().refs.fetch_sub(1, Ordering::Release) == 1 {
            self.free();
        }
    }
}

impl VarMap {
    /// The last reference went away.
    #[cold]
    fn free(&mut self) {
        std::sync::atomic::fence(Ordering::Acquire);
        let base = self.base();
        let Head { owner, len, .. } = *self.head();
        if owner.is_null() {
            // SAFETY: the last reference to a map owning its entries: drop them, once.
            unsafe {
                std::ptr::drop_in_place(std::ptr::slice_from_raw_parts_mut(
                    self.entries_ptr().cast_mut(),
                    len,
                ))
            };
        } else {
            // A private copy's entries borrow: let go of the owner instead.
            // SAFETY: not null (checked above): the reference this copy held on its owner.
            let owner = unsafe { NonNull::new_unchecked(owner.cast_mut().cast::<u8>()) };
            // SAFETY: alive (the reference above).
            let len = unsafe { owner.cast::<Head>().as_ref() }.len;
            // Only dropped: its `MINE` tag is read by nothing.
            drop(VarMap::make(owner, len));
        }
        // SAFETY: allocated in `allocate` with this layout.
        unsafe { alloc::dealloc(base.as_ptr(), VarMap::layout(len).0) };
    }
}

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
    (VarMap::owning(entries), old)
}

/// `map` without `id`, and the value it had.
pub(crate) fn removed(map: Option<&[Entry]>, id: usize) -> (Option<VarMap>, Option<Value>) {
    let Some(map) = map else { return (None, None) };
    let mut entries = map.to_vec();
    match entries.binary_search_by_key(&id, |e| e.id) {
        Ok(i) => {
            let old = entries.remove(i).value;
            (
                (!entries.is_empty()).then(|| VarMap::owning(entries)),
                Some(old),
            )
        }
        Err(_) => (Some(VarMap::owning(entries)), None),
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

    /// A copy, as [`copy`](CtxState::copy), that counts on this context's own map: the
    /// first copy of a map this context got from elsewhere makes it a private copy first
    /// (see [`VarMap`]), so that spawning from it touches no count shared with other
    /// spawners. Runs no user code (no value is dropped).
    #[inline]
    pub(crate) fn copy_for_child(&mut self) -> CtxState {
        CtxState {
            id: 0,
            map: self.map.as_mut().map(VarMap::copy_for_child),
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::{
        find, inserted, CtxState, Entry, Value, VarMap, LEN_BITS, PACKED, PRIVATE_COPY_MAX,
    };

    /// A value that counts its drops.
    struct Counted(Arc<AtomicUsize>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A context holding `n` variables (ids 1..=n, each value its id), made by `set`s.
    fn context(n: usize) -> CtxState {
        let mut ctx = CtxState::EMPTY;
        for id in 1..=n {
            let value: Value = Arc::new(id);
            ctx.map = Some(inserted(ctx.map.as_deref(), id, value).0);
        }
        ctx
    }

    fn refs(map: &VarMap) -> usize {
        map.head().refs.load(Ordering::SeqCst)
    }

    fn value_of(ctx: &CtxState, id: usize) -> Option<usize> {
        let entry = find(ctx.map.as_deref()?, id)?;
        entry.value.downcast_ref::<usize>().copied()
    }

    /// The point of private copies (issue 31): a task that got its map from its spawner and
    /// spawns many tasks itself touches the shared map's count once, not at every spawn and
    /// every end, and the tasks it spawns count on its private copy.
    #[test]
    fn a_task_spawning_from_an_inherited_map_counts_on_its_own_copy() {
        let mut main = context(10);
        let mut spawner = main.copy_for_child();
        let shared = main.map.as_ref().unwrap();
        let before = refs(shared);
        let children: Vec<CtxState> = (0..100).map(|_| spawner.copy_for_child()).collect();
        assert_eq!(
            refs(shared),
            before,
            "the spawner's copies counted on the shared map"
        );
        let own = spawner.map.as_ref().unwrap();
        assert!(own.is_mine());
        assert_eq!(
            refs(own),
            101,
            "the private copy counts the spawner and its children"
        );
        for child in &children {
            assert_eq!(value_of(child, 7), Some(7));
            assert!(!child.map.as_ref().unwrap().is_mine());
        }
        drop(children);
        assert_eq!(refs(spawner.map.as_ref().unwrap()), 1);
        // A grandchild's own copy counts once on the map owning the values, not on the
        // spawner's copy.
        let mut child = spawner.copy_for_child();
        let owner_before = refs(main.map.as_ref().unwrap());
        let grandchild = child.copy_for_child();
        assert_eq!(refs(main.map.as_ref().unwrap()), owner_before + 1);
        assert_eq!(value_of(&grandchild, 10), Some(10));
        assert_eq!(value_of(&main.copy_for_child(), 1), Some(1));
    }

    /// Values are dropped exactly once, when the last context holding them (through any
    /// private copy) goes, whatever the order.
    #[test]
    fn values_outlive_every_private_copy_and_drop_once() {
        let drops = Arc::new(AtomicUsize::new(0));
        let value: Value = Arc::new(Counted(drops.clone()));
        let mut main = CtxState::EMPTY;
        main.map = Some(inserted(None, 1, value).0);
        let mut spawner = main.copy_for_child();
        let mut child = spawner.copy_for_child();
        let grandchild = child.copy_for_child();
        // `main` moves on to another value: the old one lives on in the copies.
        main.map = Some(inserted(main.map.as_deref(), 1, Arc::new(0usize)).0);
        drop(main);
        drop(spawner);
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        drop(child);
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        assert!(find(grandchild.map.as_deref().unwrap(), 1).is_some());
        drop(grandchild);
        assert_eq!(
            drops.load(Ordering::SeqCst),
            1,
            "dropped once, with the last copy"
        );
    }

    /// A `set` in a context after it was copied is not seen by the copies, and one in a copy
    /// is not seen by the context it came from.
    #[test]
    fn copies_are_independent() {
        let mut parent = context(3);
        let mut inherited = parent.copy_for_child();
        let child = inherited.copy_for_child();
        inherited.map = Some(inserted(inherited.map.as_deref(), 2, Arc::new(20usize)).0);
        parent.map = Some(inserted(parent.map.as_deref(), 3, Arc::new(30usize)).0);
        assert_eq!(
            (value_of(&parent, 2), value_of(&parent, 3)),
            (Some(2), Some(30))
        );
        assert_eq!(
            (value_of(&inherited, 2), value_of(&inherited, 3)),
            (Some(20), Some(3))
        );
        assert_eq!(
            (value_of(&child, 2), value_of(&child, 3)),
            (Some(2), Some(3))
        );
    }

    /// A map's length travels with its pointer when it fits (see `PACKED`), and is read from
    /// its header when it does not: the same entries either way.
    #[test]
    fn a_map_too_long_to_pack_reads_its_length_from_its_header() {
        let entries = |n: usize| -> Vec<Entry> {
            (1..=n)
                .map(|id| {
                    let value: Value = Arc::new(id);
                    Entry {
                        id,
                        data: Arc::as_ptr(&value).cast::<()>(),
                        value,
                    }
                })
                .collect()
        };
        for n in [
            1,
            3,
            (1 << LEN_BITS) - 1,
            1 << LEN_BITS,
            (1 << LEN_BITS) + 5,
        ] {
            let map = VarMap::owning(entries(n));
            let packed = map.0.addr().get() & PACKED != 0;
            assert_eq!(
                packed,
                usize::BITS == 64 && n < 1 << LEN_BITS,
                "{n} entries"
            );
            assert_eq!(map.len(), n);
            let copy = map.clone();
            assert_eq!((copy.len(), copy.base()), (n, map.base()));
            assert_eq!(find(&copy, n).map(|e| e.id), Some(n));
            let value = find(&map, n)
                .unwrap()
                .value
                .downcast_ref::<usize>()
                .copied();
            assert_eq!(value, Some(n));
        }
    }

    /// A map too big to copy is shared as it is (each copy one count on it), and an empty
    /// context copies as nothing.
    #[test]
    fn big_and_empty_maps_are_shared_as_they_are() {
        let main = context(PRIVATE_COPY_MAX + 1);
        let mut spawner = main.copy();
        let child = spawner.copy_for_child();
        assert!(!spawner.map.as_ref().unwrap().is_mine());
        assert_eq!(refs(main.map.as_ref().unwrap()), 3);
        assert_eq!(
            value_of(&child, PRIVATE_COPY_MAX + 1),
            Some(PRIVATE_COPY_MAX + 1)
        );
        let mut empty = CtxState::EMPTY;
        assert!(empty.copy_for_child().map.is_none());
    }
}
