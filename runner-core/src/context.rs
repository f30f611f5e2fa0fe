//! Context variables (Python's `contextvars`), following tasks the way asyncio does.
//!
//! A [`Context`] is a mutable cell holding an immutable map; copying a context shares the map
//! (one reference count, on a copy private to the copying task: see `vars::VarMap`), and the
//! first `set` in the copy clones the map's *pointers*, never the values. The running code reads the map straight from the thread's scope record.

use std::borrow::Borrow;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::panic::Location;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskCx, Poll};

use crate::error::ContextError;
use crate::scope;
use crate::vars::{
    find, inserted, next_context_id, removed, CtxState, Entry, Value, VarMap, NEXT_VAR_ID,
};

struct ContextInner {
    id: u64,
    map: Mutex<Option<VarMap>>,
}

/// A set of context-variable values (asyncio's `contextvars.Context`).
///
/// Code runs *in* a context: [`ContextVar::get`] and [`ContextVar::set`] read and write the
/// context of the running code. Every [`Runner`](crate::Runner) has one context that all its
/// `run` calls share, and [`spawn`](crate::spawn) gives each task a copy of the spawner's.
///
/// ```
/// # use runner_core as runner;
/// use runner::{Context, ContextVar};
/// static USER: ContextVar<&'static str> = ContextVar::new("user");
///
/// let ctx = Context::new();
/// ctx.run(|| USER.set("ada"));
/// assert_eq!(ctx.get(&USER), Some("ada"));
/// assert_eq!(USER.get(), None); // the caller's context is untouched
/// ```
pub struct Context {
    inner: Arc<ContextInner>,
}

impl Context {
    /// An empty context.
    pub fn new() -> Context {
        Context::from_state(CtxState::fresh())
    }

    /// A copy of the running code's context (asyncio's `copy_context()`): it starts with the
    /// same values, and later changes on either side are not seen by the other.
    ///
    /// ```
    /// # use runner_core as runner;
    /// use runner::{Context, ContextVar};
    /// static N: ContextVar<u32> = ContextVar::new("n");
    /// N.set(1);
    /// let snapshot = Context::current();
    /// N.set(2);
    /// assert_eq!(snapshot.get(&N), Some(1));
    /// ```
    pub fn current() -> Context {
        Context::from_state(scope::copy_ctx())
    }

    /// A copy of this context (asyncio's `Context.copy()`).
    ///
    /// ```
    /// # use runner_core as runner;
    /// use runner::{Context, ContextVar};
    /// static N: ContextVar<u32> = ContextVar::new("n");
    /// let a = Context::new();
    /// a.run(|| N.set(1));
    /// let b = a.copy();
    /// b.run(|| N.set(2));
    /// assert_eq!((a.get(&N), b.get(&N)), (Some(1), Some(2)));
    /// ```
    pub fn copy(&self) -> Context {
        Context::from_state(CtxState {
            id: next_context_id(),
            map: self.snapshot(),
        })
    }

    pub(crate) fn from_state(mut state: CtxState) -> Context {
        Context {
            inner: Arc::new(ContextInner {
                // A `Context` has its identity from the start: every `run` enters it with
                // this one, so tokens made in one `run` work in the next.
                id: state.id(),
                map: Mutex::new(state.map),
            }),
        }
    }

    /// The state to enter this context with.
    pub(crate) fn state(&self) -> CtxState {
        CtxState {
            id: self.inner.id,
            map: self.snapshot(),
        }
    }

    /// Keeps what the code that ran in this context made of it.
    pub(crate) fn store(&self, state: CtxState) {
        debug_assert_eq!(state.id, self.inner.id);
        *lock(&self.inner.map) = state.map;
    }

    fn snapshot(&self) -> Option<VarMap> {
        lock(&self.inner.map).clone()
    }

    /// Runs `f` inside this context: `ContextVar`s read and write this context while `f`
    /// runs, and what `f` sets stays here afterwards. The caller's context is restored after,
    /// also if `f` panics.
    ///
    /// ```
    /// # use runner_core as runner;
    /// use runner::{Context, ContextVar};
    /// static N: ContextVar<u32> = ContextVar::new("n");
    /// let ctx = Context::new();
    /// let seen = ctx.run(|| { N.set(5); N.get() });
    /// assert_eq!(seen, Some(5));
    /// assert_eq!(ctx.get(&N), Some(5));
    /// ```
    pub fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        /// Keeps what `f` made of the context, also if `f` unwinds.
        struct Store<'a> {
            ctx: &'a Context,
            state: CtxState,
        }
        impl Drop for Store<'_> {
            fn drop(&mut self) {
                let state = std::mem::replace(&mut self.state, CtxState::EMPTY);
                self.ctx.store(state);
            }
        }
        let mut store = Store {
            ctx: self,
            state: self.state(),
        };
        scope::enter_ctx(&mut store.state, f)
    }

    /// Runs `fut` inside this context, wherever it is polled (asyncio's
    /// `create_task(coro, context=ctx)` for a future): each poll enters this context, so what
    /// `fut` reads and sets is this context's, isolated from the code that polls it. The
    /// future keeps the context from here on.
    ///
    /// This is how a plain tokio task gets a context: `tokio::spawn` (and axum, hyper or
    /// tonic, which spawn a task per connection) does not copy runner's context the way
    /// [`runner::spawn`](crate::spawn) does, and a plain task cannot
    /// [`set`](ContextVar::set) a variable otherwise (see [`ContextVar`]).
    ///
    /// ```
    /// # use runner_core as runner;
    /// use runner::{Context, ContextVar};
    /// static USER: ContextVar<&'static str> = ContextVar::new("user");
    /// runner::run(async {
    ///     USER.set("ada");
    ///     // A plain tokio task, carrying the spawner's context along.
    ///     let seen = tokio::spawn(Context::current().scope(async {
    ///         let seen = USER.get();
    ///         USER.set("bob"); // its own context: allowed, and seen by nobody else
    ///         seen
    ///     }));
    ///     assert_eq!(seen.await.unwrap(), Some("ada"));
    ///     assert_eq!(USER.get(), Some("ada"));
    /// })
    /// .unwrap();
    /// ```
    pub fn scope<F: IntoFuture>(self, fut: F) -> Scoped<F::IntoFuture> {
        Scoped::new(self.state(), fut.into_future())
    }

    /// The value of `var` in this context (or its default), without entering it.
    pub fn get<T: Clone + Send + Sync + 'static>(&self, var: &ContextVar<T>) -> Option<T> {
        var.lookup(self.snapshot().as_deref())
    }

    /// How many variables have a value in this context.
    pub fn len(&self) -> usize {
        self.snapshot().map_or(0, |m| m.len())
    }

    /// `true` if no variable has a value in this context.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for Context {
    fn default() -> Context {
        Context::new()
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("id", &self.inner.id)
            .field("vars", &self.len())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A context variable (asyncio's `contextvars.ContextVar`), declared as a `static`.
///
/// Its value depends on the context the code runs in: each task spawned with
/// [`spawn`](crate::spawn) starts with a copy of its spawner's values, and its own `set`s
/// are not seen by the spawner. Outside any Runner each thread has a context of its own.
///
/// ```
/// # use runner_core as runner;
/// static REQUEST_ID: runner::ContextVar<u64> = runner::ContextVar::new("request_id");
///
/// runner::run(async {
///     REQUEST_ID.set(7);
///     let child = runner::spawn(async {
///         let seen = REQUEST_ID.get();
///         REQUEST_ID.set(8); // only the child's copy changes
///         seen
///     });
///     assert_eq!(child.await.unwrap(), Some(7));
///     assert_eq!(REQUEST_ID.get(), Some(7));
/// })
/// .unwrap();
/// ```
///
/// # Plain tokio tasks (axum, hyper, tonic)
///
/// A server runs your handlers and middleware in tasks it starts itself with
/// `tokio::spawn`, not with [`runner::spawn`](crate::spawn). Such a plain task has no
/// context of its own: it runs in its thread's, which every plain task polled on that
/// thread shares. So the rule is:
/// - in a plain task, [`get`](ContextVar::get) reads the thread's context (or what a
///   scope gave the future, below);
/// - a [`set`](ContextVar::set) there is **refused**: the value would be seen by every other
///   request on the thread. Nothing is set, and a [`Report`](crate::Report) of kind
///   [`ContextSetRefused`](crate::ReportKind::ContextSetRefused) names the variable, the call
///   site and the fix (once per call site);
/// - give the future a context of its own instead, wherever it is polled:
///   [`ContextVar::scope`] (one variable) or [`Context::scope`] (a whole context). Inside
///   it, `set` works and stays inside.
///
/// A request-id middleware in axum (the pattern, written with `axum::middleware::from_fn`):
///
/// ```ignore
/// static REQUEST_ID: runner::ContextVar<u64> = runner::ContextVar::new("request_id");
///
/// async fn request_id(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
///     let id = next_id();
///     // Not `REQUEST_ID.set(id)`: that would be refused (and, were it allowed, seen by
///     // every other request on this thread).
///     REQUEST_ID.scope(id, next.run(req)).await
/// }
/// ```
///
/// The crate `tokio-runner`'s documentation runs that middleware in a real axum server.
pub struct ContextVar<T> {
    name: &'static str,
    id: AtomicUsize,
    default: Option<fn() -> T>,
    _marker: PhantomData<fn() -> T>,
}

impl<T> ContextVar<T> {
    /// A variable with no default: [`get`](ContextVar::get) is `None` until it is set.
    pub const fn new(name: &'static str) -> ContextVar<T> {
        ContextVar {
            name,
            id: AtomicUsize::new(0),
            default: None,
            _marker: PhantomData,
        }
    }

    /// A variable whose [`get`](ContextVar::get) falls back to `default()` where it is unset.
    ///
    /// ```
    /// # use runner_core as runner;
    /// static LEVEL: runner::ContextVar<u8> = runner::ContextVar::with_default("level", || 3);
    /// assert_eq!(LEVEL.get(), Some(3));
    /// ```
    pub const fn with_default(name: &'static str, default: fn() -> T) -> ContextVar<T> {
        ContextVar {
            name,
            id: AtomicUsize::new(0),
            default: Some(default),
            _marker: PhantomData,
        }
    }

    /// The name given at declaration.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// A process-unique id, taken on first use (a `const fn` cannot allocate one).
    fn id(&self) -> usize {
        match self.id.load(Ordering::Relaxed) {
            0 => {
                let fresh = NEXT_VAR_ID.fetch_add(1, Ordering::Relaxed);
                match self
                    .id
                    .compare_exchange(0, fresh, Ordering::Relaxed, Ordering::Relaxed)
                {
                    Ok(_) => fresh,
                    Err(existing) => existing,
                }
            }
            id => id,
        }
    }
}

impl<T: Send + Sync + 'static> ContextVar<T> {
    #[inline]
    fn lookup(&self, map: Option<&[Entry]>) -> Option<T>
    where
        T: Clone,
    {
        match map.and_then(|m| find(m, self.id())) {
            Some(entry) => {
                debug_assert!(entry.value.is::<T>());
                // SAFETY: ids are unique per `ContextVar`, and a `ContextVar<T>` only ever
                // stores `T` under its id, so `data` points at a live `T`. (Skips the
                // `TypeId` check: this is the hot path of `get`.)
                Some(unsafe { &*entry.data.cast::<T>() }.clone())
            }
            None => self.default.map(|f| f()),
        }
    }

    /// Runs `fut` with this variable set to `value`, wherever it is polled: each poll
    /// enters a copy of the current context (taken now) in which the variable is `value`.
    /// What `fut` sets stays inside it. The way to give a request its own value in code
    /// that runs in plain tokio tasks, such as axum middleware (see [`ContextVar`]):
    ///
    /// ```
    /// # use runner_core as runner;
    /// static REQUEST_ID: runner::ContextVar<u64> = runner::ContextVar::new("request_id");
    /// runner::run(async {
    ///     // Two requests handled by plain tokio tasks, each with its own id.
    ///     let a = tokio::spawn(REQUEST_ID.scope(1, async {
    ///         tokio::task::yield_now().await;
    ///         REQUEST_ID.get()
    ///     }));
    ///     let b = tokio::spawn(REQUEST_ID.scope(2, async { REQUEST_ID.get() }));
    ///     assert_eq!(a.await.unwrap(), Some(1));
    ///     assert_eq!(b.await.unwrap(), Some(2));
    ///     assert_eq!(REQUEST_ID.get(), None); // the caller's context is untouched
    /// })
    /// .unwrap();
    /// ```
    pub fn scope<F: IntoFuture>(&self, value: T, fut: F) -> Scoped<F::IntoFuture> {
        let mut ctx = scope::copy_ctx();
        let (map, _) = inserted(ctx.map.as_deref(), self.id(), Arc::new(value));
        ctx.map = Some(map);
        Scoped::new(ctx, fut.into_future())
    }

    /// A refused `set` (see [`ContextVar`]): reported once per call site.
    #[cold]
    fn refuse(&self, at: &'static Location<'static>) {
        let runner = scope::current_runner();
        let first = match &runner {
            Some(shared) => shared.first_refusal(self.id(), at),
            None => first_refusal_outside(self.id(), at),
        };
        if !first {
            return;
        }
        let name = self.name;
        let report = crate::debug::Report::make(
            crate::debug::ReportKind::ContextSetRefused,
            format!(
                "ContextVar \"{name}\" was not set at {at}: this code runs in a plain tokio task \
                 (one runner did not start, such as an axum handler or middleware), whose \
                 context is shared by every plain task on its thread, so the value would be \
                 seen by other requests. Give the future a context of its own: \
                 `VAR.scope(value, fut).await` (in axum middleware: \
                 `VAR.scope(id, next.run(req)).await`) or \
                 `runner::Context::current().scope(fut)`, or start the task with \
                 runner::spawn"
            ),
            Some(at),
            None,
        );
        match runner {
            Some(shared) => shared.report(report),
            None => crate::debug::default_exception_handler(&report),
        }
    }

    /// The value in the current context, else the default, else `None`.
    ///
    /// ```
    /// # use runner_core as runner;
    /// static V: runner::ContextVar<String> = runner::ContextVar::new("v");
    /// assert_eq!(V.get(), None);
    /// V.set("x".to_owned());
    /// assert_eq!(V.get().as_deref(), Some("x"));
    /// ```
    #[inline]
    pub fn get(&self) -> Option<T>
    where
        T: Clone,
    {
        scope::read(|s| self.lookup(s.ctx.map.as_deref())).flatten()
    }

    /// Sets the value in the current context; the [`Token`] lets [`reset`](ContextVar::reset)
    /// put the previous value back.
    ///
    /// ```
    /// # use runner_core as runner;
    /// static V: runner::ContextVar<u8> = runner::ContextVar::new("v");
    /// let token = V.set(1);
    /// assert_eq!(V.get(), Some(1));
    /// V.reset(token).unwrap();
    /// assert_eq!(V.get(), None);
    /// ```
    #[track_caller]
    pub fn set(&self, value: T) -> Token<T> {
        let id = self.id();
        let mut value = Some(value);
        // The replaced map leaves the closure to be dropped after it: nothing may reach the
        // scope while it is being changed (see `scope::with`), and a drop can run user code.
        let set = scope::with(|s| {
            if scope::set_would_leak(s) {
                return None;
            }
            let value = Arc::new(value.take()?);
            let (map, old) = inserted(s.ctx.map.as_deref(), id, value);
            let replaced = s.ctx.map.replace(map);
            Some((s.ctx.id(), old, replaced))
        });
        let (ctx, old, _replaced) = match set {
            Some(Some(set)) => set,
            Some(None) => {
                drop(value);
                self.refuse(Location::caller());
                (REFUSED, None, None)
            }
            None => (0, None, None),
        };
        Token {
            var: id,
            ctx,
            old,
            used: AtomicBool::new(false),
            _marker: PhantomData,
        }
    }

    /// Puts back the value this variable had before the `set` that made `token`.
    ///
    /// Errors, changing nothing, when the token was already used, was made by another
    /// variable, or was made in another context.
    ///
    /// ```
    /// # use runner_core as runner;
    /// static V: runner::ContextVar<u8> = runner::ContextVar::new("v");
    /// V.set(1);
    /// let token = V.set(2);
    /// V.reset(&token).unwrap();
    /// assert_eq!(V.get(), Some(1));
    /// assert!(V.reset(&token).is_err()); // a token works once
    /// ```
    pub fn reset(&self, token: impl Borrow<Token<T>>) -> Result<(), ContextError> {
        let token = token.borrow();
        if token.used.load(Ordering::Acquire) {
            return Err(ContextError::TokenUsed);
        }
        if token.var != self.id() {
            return Err(ContextError::WrongVar);
        }
        if token.ctx == REFUSED {
            // The `set` was refused (a plain tokio task): there is nothing to put back.
            token.used.store(true, Ordering::Release);
            return Ok(());
        }
        // What the reset replaces is dropped after the closure (see `set`).
        let replaced = scope::with(|s| {
            if s.ctx.id() != token.ctx {
                return Err(ContextError::WrongContext);
            }
            if token.used.swap(true, Ordering::AcqRel) {
                return Err(ContextError::TokenUsed);
            }
            let (map, value) = match &token.old {
                Some(old) => {
                    let (map, value) = inserted(s.ctx.map.as_deref(), token.var, old.clone());
                    (Some(map), value)
                }
                None => removed(s.ctx.map.as_deref(), token.var),
            };
            Ok((std::mem::replace(&mut s.ctx.map, map), value))
        })
        .unwrap_or(Err(ContextError::WrongContext))?;
        drop(replaced);
        Ok(())
    }
}

impl<T> fmt::Debug for ContextVar<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextVar")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// What [`ContextVar::set`] returns: the previous value, for [`ContextVar::reset`].
///
/// ```
/// # use runner_core as runner;
/// static V: runner::ContextVar<u8> = runner::ContextVar::new("v");
/// let token = V.set(9);
/// assert!(token.old_value().is_none());
/// ```
pub struct Token<T> {
    var: usize,
    ctx: u64,
    old: Option<Value>,
    used: AtomicBool,
    _marker: PhantomData<fn() -> T>,
}

impl<T: 'static> Token<T> {
    /// The value the variable had before the `set` (`None` if it had none).
    pub fn old_value(&self) -> Option<&T> {
        self.old.as_ref().and_then(|v| v.downcast_ref::<T>())
    }
}

impl<T> fmt::Debug for Token<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("used", &self.used.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// The `ctx` of a [`Token`] whose `set` was refused.
const REFUSED: u64 = u64::MAX;

/// Refused `set`s already reported outside any Runner: (variable, call site).
fn first_refusal_outside(var: usize, at: &'static Location<'static>) -> bool {
    static SEEN: Mutex<Vec<(usize, &'static Location<'static>)>> = Mutex::new(Vec::new());
    let mut seen = lock(&SEEN);
    if seen.contains(&(var, at)) {
        return false;
    }
    seen.push((var, at));
    true
}

/// A future polled inside a context of its own, wherever it is polled: made by
/// [`ContextVar::scope`] and [`Context::scope`].
///
/// Its destructor runs in that context too, as a task's does.
#[must_use = "futures do nothing unless polled"]
pub struct Scoped<F> {
    fut: ManuallyDrop<F>,
    ctx: CtxState,
}

impl<F> Scoped<F> {
    fn new(ctx: CtxState, fut: F) -> Scoped<F> {
        Scoped {
            fut: ManuallyDrop::new(fut),
            ctx,
        }
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<F::Output> {
        // SAFETY: `fut` is pinned with `Scoped` (never moved out: dropped in place in
        // `Drop`); `ctx` is not structurally pinned.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: as above: `fut` stays in place for as long as `Scoped` lives.
        let fut = unsafe { Pin::new_unchecked(&mut *this.fut) };
        scope::enter_ctx(&mut this.ctx, || fut.poll(cx))
    }
}

impl<F> Drop for Scoped<F> {
    fn drop(&mut self) {
        let fut = &mut self.fut;
        // SAFETY: dropped once, here, in place.
        scope::enter_ctx(&mut self.ctx, || unsafe { ManuallyDrop::drop(fut) });
    }
}

impl<F> fmt::Debug for Scoped<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scoped")
            .field("vars", &self.ctx.map.as_ref().map_or(0, |m| m.len()))
            .finish_non_exhaustive()
    }
}
