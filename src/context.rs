//! The current span and tags, carried in task-local storage.
//!
//! spanbus keeps one [`Context`] per thread: the span that is current and the tags that are
//! active. A spanned or tagged future swaps its own context in for the duration of each poll and
//! swaps the previous one back afterwards — even when the poll panics — so the context follows the
//! future across every `.await` and every worker thread the task migrates to, and never leaks into
//! other tasks polled on the same thread. The closure forms ([`Context::in_scope`],
//! [`Span::in_scope`](crate::Span::in_scope)) do the same around one call, which is how sync code
//! outside any task sees the span it runs in.
//!
//! # Reading the current context
//!
//! ```
//! use spanbus::current_span;
//! use spanbus::context::Context;
//!
//! assert!(current_span().is_none());
//! let ctx = Context::current().with_tags([("user", "alice")]);
//! ctx.in_scope(|| {
//!     assert_eq!(Context::current().tags()["user"], "alice");
//! });
//! ```
//!
//! # Tag scopes
//!
//! Tags of nested scopes merge; on a key present in both, the inner scope wins. Every record
//! emitted inside a scope carries the merged tags, and a span snapshots them when it is entered.
//!
//! ```
//! use spanbus::with_tags;
//! use spanbus::context::Context;
//!
//! # tokio_test_block_on(async {
//! with_tags([("tenant", "acme"), ("tier", "free")], async {
//!     with_tags([("tier", "pro")], async {
//!         let tags = Context::current().tags().clone();
//!         assert_eq!(tags["tenant"], "acme");
//!         assert_eq!(tags["tier"], "pro");
//!     })
//!     .await;
//! })
//! .await;
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::id::{SpanId, TraceId};

/// Where a span sits: its trace and its own id.
///
/// Records carry the `SpanContext` of the span they belong to. It is `Copy` and 24 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SpanContext {
    trace_id: TraceId,
    span_id: SpanId,
}

impl SpanContext {
    /// A span context from its parts.
    pub fn new(trace_id: TraceId, span_id: SpanId) -> Self {
        SpanContext { trace_id, span_id }
    }

    /// The trace the span belongs to.
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// The span's id.
    pub fn span_id(&self) -> SpanId {
        self.span_id
    }
}

/// The current span, the active tags and the extras, as a value.
///
/// Capture it with [`Context::current`], carry it anywhere (it is `Send + Sync` and cheap to
/// clone), and make it current again with [`Context::in_scope`] or [`Context::attach`] —
/// llama-index's `capture_propagation_context` and `restore_propagation_context`.
///
/// It also crosses processes: it is `Serialize` and `Deserialize`, as a JSON object with the
/// current span's `trace_id` and `span_id` (hex, absent when there is no span), `tags`, and
/// `extras` (absent when empty). A span started under a restored context is a child of the
/// captured span, in the same trace.
///
/// # Examples
///
/// ```
/// use spanbus::current_span;
/// use spanbus::context::Context;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let d = spanbus::Dispatcher::new("worker")?;
/// d.add_span_handler(spanbus::handlers::NullSpanHandler)?; // a listener makes spans live (`Span::is_idle`)
/// let (parent, wire) = d.span("request").in_scope(|| {
///     let ctx = Context::current().with_extra("tracestate", "vendor=1");
///     (current_span().unwrap(), serde_json::to_string(&ctx).unwrap())
/// });
///
/// // Elsewhere — another thread, another process:
/// let restored: Context = serde_json::from_str(&wire)?;
/// assert_eq!(restored.span(), Some(parent));
/// assert_eq!(restored.extras()["tracestate"], "vendor=1");
/// restored.in_scope(|| {
///     let child = d.span("job").enter();
///     assert_eq!(child.context().trace_id(), parent.trace_id());
///     child.exit();
/// });
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context {
    pub(crate) span: Option<SpanContext>,
    pub(crate) tags: Option<Arc<Tags>>,
    pub(crate) extras: Option<Arc<Extras>>,
}

/// String key–value pairs that travel with a [`Context`] but are not record tags: what
/// handlers and integrations need to carry across tasks and processes (for example a W3C
/// `tracestate`).
pub type Extras = BTreeMap<String, String>;

/// Key–value tags attached to records (llama-index's `tags`).
pub type Tags = BTreeMap<String, Value>;

thread_local! {
    /// The context current on this thread outside every scope (what [`replace_current`] sets
    /// there).
    static BASE: RefCell<Context> = const {
        RefCell::new(Context { span: None, tags: None, extras: None })
    };
    /// The context of the innermost [`scoped`] call running on this thread, or null outside
    /// every scope. A spanned future makes its own context current for each poll by pointing this at
    /// it — two pointer writes — rather than moving contexts in and out of a thread-local.
    static SCOPE: Cell<*mut Context> = const { Cell::new(std::ptr::null_mut()) };
}

/// Runs `f` on the context current on this thread (`None` once the thread-local is gone).
#[inline]
fn with_current<R>(f: impl FnOnce(&Context) -> R) -> Option<R> {
    let scope = SCOPE.with(Cell::get);
    if !scope.is_null() {
        // SAFETY: a non-null `SCOPE` was set by a `scoped` call still running on this thread,
        // from a `&mut Context` it borrows for the whole call (so the context is neither moved
        // nor freed nor accessed by other code meanwhile), and every such call restores the
        // previous pointer when it returns or unwinds, innermost first; the restoring guard is
        // private to the call, so it cannot be leaked. Only this module dereferences `SCOPE`, for the length of a call that
        // runs no user code and does not re-enter here, so this shared reference does not overlap
        // a mutable one. (This is the pattern of the `scoped-tls` crate.)
        return Some(f(unsafe { &*scope }));
    }
    BASE.try_with(|c| f(&c.borrow())).ok()
}

static NO_EXTRAS: Extras = BTreeMap::new();

static NO_TAGS: Tags = Tags::new();

impl Context {
    /// The context current on this thread: inside a spanned future or closure, that span and
    /// its tags; elsewhere, empty.
    #[doc(alias = "capture_propagation_context")]
    #[inline]
    pub fn current() -> Context {
        with_current(Context::clone).unwrap_or_default()
    }

    /// An empty context: no span and no tags.
    pub fn empty() -> Context {
        Context::default()
    }

    /// The current span, if any.
    pub fn span(&self) -> Option<SpanContext> {
        self.span
    }

    /// The active tags.
    pub fn tags(&self) -> &Tags {
        self.tags.as_deref().unwrap_or(&NO_TAGS)
    }

    /// The extras: string pairs carried along with the context (see [`Extras`]).
    pub fn extras(&self) -> &Extras {
        self.extras.as_deref().unwrap_or(&NO_EXTRAS)
    }

    /// This context with the extra `key` set to `value` (replacing a previous value).
    ///
    /// Spans entered under this context, and tasks and threads started from it with the
    /// helpers of [`spawn`](crate::spawn()), carry the extras on.
    pub fn with_extra(mut self, key: impl Into<String>, value: impl Into<String>) -> Context {
        Arc::make_mut(self.extras.get_or_insert_with(Default::default))
            .insert(key.into(), value.into());
        self
    }

    /// This context with `span` as its current span.
    pub fn with_span(mut self, span: Option<SpanContext>) -> Context {
        self.span = span;
        self
    }

    /// This context with `tags` merged into its tags; a key already present is overwritten.
    pub fn with_tags<K, V>(mut self, tags: impl IntoIterator<Item = (K, V)>) -> Context
    where
        K: Into<String>,
        V: Into<Value>,
    {
        let mut iter = tags.into_iter().peekable();
        if iter.peek().is_some() {
            let merged = Arc::make_mut(self.tags.get_or_insert_with(Default::default));
            merged.extend(iter.map(|(k, v)| (k.into(), v.into())));
        }
        self
    }

    /// Runs `f` with this context current on this thread, then restores the previous one.
    #[doc(alias = "restore_propagation_context")]
    pub fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        let mut ctx = self.clone();
        scoped(&mut ctx, f)
    }

    /// Wraps `future` so that this context is current during each of its polls.
    #[doc(alias = "restore_propagation_context")]
    pub fn attach<F: Future>(self, future: F) -> WithContext<F> {
        WithContext {
            inner: future,
            ctx: self,
            delta: None,
        }
    }
}

/// The wire form of a [`Context`].
#[derive(Serialize)]
struct WireRef<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<TraceId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    span_id: Option<SpanId>,
    tags: &'a Tags,
    #[serde(skip_serializing_if = "is_empty")]
    extras: &'a Extras,
}

fn is_empty(extras: &&Extras) -> bool {
    extras.is_empty()
}

#[derive(Deserialize)]
struct Wire {
    #[serde(default)]
    trace_id: Option<TraceId>,
    #[serde(default)]
    span_id: Option<SpanId>,
    #[serde(default)]
    tags: Tags,
    #[serde(default)]
    extras: Extras,
}

impl Serialize for Context {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        WireRef {
            trace_id: self.span.map(|s| s.trace_id),
            span_id: self.span.map(|s| s.span_id),
            tags: self.tags(),
            extras: self.extras(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Context {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = Wire::deserialize(deserializer)?;
        let span = match (wire.trace_id, wire.span_id) {
            (Some(trace_id), Some(span_id)) => Some(SpanContext { trace_id, span_id }),
            (None, None) => None,
            _ => {
                return Err(serde::de::Error::custom(
                    "a context needs both `trace_id` and `span_id`, or neither",
                ));
            }
        };
        Ok(Context {
            span,
            tags: (!wire.tags.is_empty()).then(|| Arc::new(wire.tags)),
            extras: (!wire.extras.is_empty()).then(|| Arc::new(wire.extras)),
        })
    }
}

/// The span current on this thread, if any.
///
/// # Examples
///
/// ```
/// assert_eq!(spanbus::current_span(), None);
/// ```
pub fn current_span() -> Option<SpanContext> {
    with_current(|c| c.span).flatten()
}

/// The current span and the active tags (shared), in one thread-local access.
pub(crate) fn current_parts() -> (Option<SpanContext>, Option<Arc<Tags>>) {
    with_current(|c| (c.span, c.tags.clone())).unwrap_or_default()
}

/// Makes `ctx` the context current on this thread and returns the one it replaces.
///
/// For integrations whose scopes are callbacks rather than Rust scopes (the `tracing` bridge
/// swaps a bridged span in at `on_enter` and back at `on_exit`); everything else uses the
/// closure form, [`scoped`].
pub(crate) fn replace_current(ctx: Context) -> Context {
    let scope = SCOPE.with(Cell::get);
    if !scope.is_null() {
        // SAFETY: as in `with_current`: the pointer is the live, exclusively held context of the
        // innermost `scoped` call on this thread, and nothing else references it during this call.
        // Replacing it in place is what swapping it in and out did: the scope's owner gets back
        // the replaced context when its scope ends.
        return std::mem::replace(unsafe { &mut *scope }, ctx);
    }
    BASE.try_with(|c| std::mem::replace(&mut *c.borrow_mut(), ctx))
        .unwrap_or_default()
}

/// Runs `future` with `tags` merged into the current tags (inner keys win).
///
/// The tags are merged into the context current at the future's first poll, so spans and tag
/// scopes nest the way the futures are awaited.
pub fn with_tags<F, K, V>(tags: impl IntoIterator<Item = (K, V)>, future: F) -> WithContext<F>
where
    F: Future,
    K: Into<String>,
    V: Into<Value>,
{
    WithContext {
        inner: future,
        ctx: Context::empty(),
        delta: Some(
            tags.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        ),
    }
}

/// Runs `f` with `tags` merged into the current tags (inner keys win).
///
/// # Examples
///
/// ```
/// let tier = spanbus::tags_in_scope([("tier", "pro")], || {
///     spanbus::context::Context::current().tags()["tier"].clone()
/// });
/// assert_eq!(tier, "pro");
/// ```
pub fn tags_in_scope<R, K, V>(tags: impl IntoIterator<Item = (K, V)>, f: impl FnOnce() -> R) -> R
where
    K: Into<String>,
    V: Into<Value>,
{
    Context::current().with_tags(tags).in_scope(f)
}

/// Merges `tags` into the current tags until the returned guard is dropped (inner keys win):
/// the form for sync code that spans several statements, beside the closure
/// ([`tags_in_scope`]) and future ([`with_tags`]) forms.
///
/// The guard is not `Send`: it restores this thread's context. Drop guards in reverse order of
/// making (scopes do). A guard dropped while guards made after it are still alive restores
/// what it replaced at once, which ends their tags too (their own drops then do nothing): tags
/// end early rather than outlive every guard. A guard dropped after the span scope it was made
/// in has ended restores nothing there. Across `.await`, use [`with_tags`].
///
/// # Examples
///
/// ```
/// use spanbus::context::Context;
///
/// {
///     let _tags = spanbus::tags_guard([("user.id", "u-42"), ("tier", "pro")]);
///     assert_eq!(Context::current().tags()["tier"], "pro");
///     let _inner = spanbus::tags_guard([("tier", "free")]);
///     assert_eq!(Context::current().tags()["tier"], "free");
/// }
/// assert!(Context::current().tags().is_empty()); // both restored
/// ```
pub fn tags_guard<K, V>(tags: impl IntoIterator<Item = (K, V)>) -> TagsGuard
where
    K: Into<String>,
    V: Into<Value>,
{
    let scope = SCOPE.with(Cell::get);
    let ctx = Context::current().with_tags(tags);
    let installed = ctx.tags.clone();
    let prev = replace_current(ctx);
    let depth = GUARDS.with(|g| g.get() + 1);
    GUARDS.with(|g| g.set(depth));
    TagsGuard {
        prev: Some(prev),
        scope,
        depth,
        installed,
    }
}

thread_local! {
    /// How many [`TagsGuard`]s on this thread are live (not ended early by an outer one).
    static GUARDS: Cell<usize> = const { Cell::new(0) };
}

/// Tags made current by [`tags_guard`]; dropping it makes the previous tags current again (also
/// when a panic unwinds through it).
#[must_use = "the tags are current only while the guard lives"]
pub struct TagsGuard {
    /// The context this guard replaced.
    prev: Option<Context>,
    /// The scope it was made in (`SCOPE` then); compared, never dereferenced. A raw pointer
    /// also keeps the guard on its thread (not `Send` or `Sync`).
    scope: *mut Context,
    /// Its place among this thread's live guards: 1 for the outermost.
    depth: usize,
    /// The tags it made current.
    installed: Option<Arc<Tags>>,
}

impl std::fmt::Debug for TagsGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TagsGuard")
            .field("tags", &self.installed)
            .finish_non_exhaustive()
    }
}

impl Drop for TagsGuard {
    fn drop(&mut self) {
        let live = GUARDS.try_with(Cell::get).unwrap_or(0);
        if self.depth > live {
            return; // ended early by a guard made before it
        }
        let _ = GUARDS.try_with(|g| g.set(self.depth - 1));
        let same_scope = SCOPE.try_with(Cell::get).is_ok_and(|s| s == self.scope);
        if same_scope && let Some(prev) = self.prev.take() {
            replace_current(prev);
        }
    }
}

/// Runs `f` with `ctx` current on this thread, then makes the previous context current again
/// (also when `f` panics).
///
/// A closure rather than a guard: the context is current exactly for the length of the call,
/// so no caller can leak the scope (a leaked guard would leave the thread pointing at a
/// context that is gone). `ctx` stays mutably borrowed meanwhile: code in the scope reaches it
/// only through this module (and [`replace_current`] may replace it in place, which its owner
/// then keeps).
#[inline]
pub(crate) fn scoped<R>(ctx: &mut Context, f: impl FnOnce() -> R) -> R {
    /// Restores the previous scope, on return or unwind. Private to this call.
    struct Restore(*mut Context);
    impl Drop for Restore {
        #[inline]
        fn drop(&mut self) {
            SCOPE.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(SCOPE.with(|s| s.replace(ctx)));
    f()
}

pin_project_lite::pin_project! {
    /// A future that runs with a [`Context`] current during each poll.
    ///
    /// Made by [`Context::attach`] and [`with_tags`].
    #[must_use = "futures do nothing unless polled"]
    pub struct WithContext<F> {
        #[pin]
        inner: F,
        ctx: Context,
        // Tags to merge into the context current at the first poll (a tag scope).
        delta: Option<Vec<(String, Value)>>,
    }
}

impl<F: Future> Future for WithContext<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        if let Some(delta) = this.delta.take() {
            *this.ctx = Context::current().with_tags(delta);
        }
        let inner = this.inner;
        scoped(this.ctx, || inner.poll(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_inside_a_scope_restores_the_previous_context() {
        let outer = Context::empty().with_tags([("k", "outer")]);
        outer.in_scope(|| {
            let inner = Context::current().with_tags([("k", "inner")]);
            let r = std::panic::catch_unwind(|| inner.in_scope(|| panic!("boom")));
            assert!(r.is_err());
            assert_eq!(Context::current().tags()["k"], "outer");
        });
        assert!(Context::current().tags().is_empty());
    }

    /// The current `k` tag.
    fn tag() -> Option<String> {
        Context::current()
            .tags()
            .get("k")
            .and_then(|v| v.as_str().map(str::to_owned))
    }

    #[test]
    fn nested_scopes_see_their_own_context_and_restore_the_outer_one() {
        let mut outer = Context::empty().with_tags([("k", "outer")]);
        let mut inner = Context::empty().with_tags([("k", "inner")]);
        scoped(&mut outer, || {
            assert_eq!(tag().as_deref(), Some("outer"));
            scoped(&mut inner, || {
                assert_eq!(tag().as_deref(), Some("inner"));
                // Another thread has its own (empty) context.
                std::thread::scope(|s| {
                    s.spawn(|| assert!(Context::current().tags().is_empty()));
                });
            });
            assert_eq!(tag().as_deref(), Some("outer"));
        });
        assert!(Context::current().tags().is_empty());
        // The scopes' contexts are unchanged and usable again.
        assert_eq!(outer.tags()["k"], "outer");
        assert_eq!(inner.tags()["k"], "inner");
    }

    #[test]
    fn replacing_the_current_context_inside_a_scope_replaces_the_scopes_own() {
        let mut scoped_ctx = Context::empty().with_tags([("k", "scoped")]);
        scoped(&mut scoped_ctx, || {
            let previous = replace_current(Context::empty().with_tags([("k", "bridged")]));
            assert_eq!(previous.tags()["k"], "scoped");
            assert_eq!(tag().as_deref(), Some("bridged"));
        });
        // Outside the scope the thread's own context is current again; the scope's owner keeps
        // what was current when its scope ended, as a swap in and out would have left it.
        assert!(Context::current().tags().is_empty());
        assert_eq!(scoped_ctx.tags()["k"], "bridged");
        // Outside any scope the thread's base context is replaced.
        let before = replace_current(Context::empty().with_tags([("k", "base")]));
        assert!(before.tags().is_empty());
        assert_eq!(tag().as_deref(), Some("base"));
        assert_eq!(replace_current(before).tags()["k"], "base");
        assert!(Context::current().tags().is_empty());
    }
}
