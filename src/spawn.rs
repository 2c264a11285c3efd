//! Carrying the current span and tags into new tasks and threads.
//!
//! # Crossing tasks and threads
//!
//! spanbus keeps the current [`Context`] (span, tags, extras) in a thread-local slot that each
//! spanned or tagged future swaps in for the duration of its polls. So the context goes
//! wherever the *future* goes, and nowhere else.
//!
//! **What crosses on its own**
//!
//! | you write…                                          | the callee sees the caller's span and tags because… |
//! |-----------------------------------------------------|-----------------------------------------------------|
//! | `.await` on a future                                | it is polled inside the caller's poll               |
//! | nothing: the runtime moves the task to another worker | the context is swapped in on every poll, on whatever thread |
//! | a nested span (`#[spanbus::span]`, `in_span`, `in_scope`) | it reads its parent from the context current at entry |
//! | a tag scope ([`with_tags`](crate::with_tags), [`tags_in_scope`](crate::tags_in_scope)) | scopes merge into the current tags |
//! | a sync call from inside a spanned closure or future | the thread-local is set for the duration            |
//! | `futures::join!`, `select!`, `FuturesUnordered` in the same task | the children are polled inside the parent's poll |
//!
//! **What needs a helper** — anything that runs code *later, somewhere else*, starts from an
//! empty context:
//!
//! | raw call                        | use instead                                              |
//! |---------------------------------|----------------------------------------------------------|
//! | `tokio::spawn(fut)`             | [`spanbus::spawn(fut)`](spawn())                         |
//! | `tokio::task::spawn_blocking(f)`| [`spanbus::spawn_blocking(f)`](spawn_blocking())         |
//! | `join_set.spawn(fut)`           | [`join_set.spawn_in_current_span(fut)`](JoinSetExt::spawn_in_current_span) |
//! | `std::thread::spawn(f)`         | [`spanbus::thread::spawn(f)`](thread::spawn)             |
//! | any other executor or callback  | [`fut.in_current_span()`](crate::SpanFutureExt::in_current_span), or `Context::current()` then [`Context::in_scope`] |
//! | another process                 | serialize `Context::current()` (serde, e.g. JSON), send it, deserialize it there and [`attach`](Context::attach) it |
//! | another process, over HTTP       | W3C `traceparent`/`tracestate` headers: [`propagation::inject`](crate::propagation::inject) there, [`propagation::extract`](crate::propagation::extract) here |
//!
//! Each helper captures [`Context::current`] at the call, not when the task first runs, so
//! the new task's spans are children of the span that spawned it, in the same trace, with the
//! same tags. The spawned work does not keep the parent span open: a parent that ends first
//! is recorded as ended, and its children still point at it.
//!
//! # Examples
//!
//! ```
//! use spanbus::{SpanFutureExt, current_span};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let d = spanbus::Dispatcher::new("jobs")?;
//! d.add_span_handler(spanbus::handlers::NullSpanHandler)?; // a listener makes spans live (`Span::is_idle`)
//! async {
//!     let parent = current_span();
//!     let in_task = spanbus::spawn(async { current_span() }).await?;
//!     let in_pool = spanbus::spawn_blocking(current_span).await?;
//!     let in_thread = spanbus::thread::spawn(current_span).join().unwrap();
//!     assert!(parent.is_some());
//!     assert_eq!([in_task, in_pool, in_thread], [parent; 3]);
//!     // A raw tokio::spawn starts from nothing:
//!     assert_eq!(tokio::spawn(async { current_span() }).await?, None);
//!     Ok::<_, tokio::task::JoinError>(())
//! }
//! .in_span(d.span("batch"))
//! .await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Keeping raw spawns out of your code
//!
//! Clippy can enforce the helpers. In your crate's `clippy.toml`:
//!
//! ```toml
//! disallowed-methods = [
//!     { path = "tokio::spawn", reason = "loses the current span: use spanbus::spawn" },
//!     { path = "tokio::task::spawn", reason = "loses the current span: use spanbus::spawn" },
//!     { path = "tokio::task::spawn_blocking", reason = "loses the current span: use spanbus::spawn_blocking" },
//!     { path = "tokio::task::JoinSet::spawn", reason = "loses the current span: use spanbus::JoinSetExt::spawn_in_current_span" },
//!     { path = "std::thread::spawn", reason = "loses the current span: use spanbus::thread::spawn" },
//! ]
//! ```
//!
//! and `#[allow(clippy::disallowed_methods)]` where a task must deliberately start from an
//! empty context.

use std::future::Future;

use tokio::task::{AbortHandle, JoinHandle, JoinSet};

use crate::context::{Context, WithContext};

/// Spawns `future` on the tokio runtime with the caller's span and tags current in it.
///
/// [`tokio::spawn`] with the caller's [`Context`] attached: spans the task enters are children
/// of the caller's span.
///
/// # Panics
///
/// Like [`tokio::spawn`], if called outside a tokio runtime.
///
/// # Examples
///
/// See [the module documentation](self).
#[track_caller]
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(Context::current().attach(future))
}

/// Runs `f` on tokio's blocking pool with the caller's span and tags current in it.
///
/// # Panics
///
/// Like [`tokio::task::spawn_blocking`], if called outside a tokio runtime.
#[track_caller]
pub fn spawn_blocking<F, R>(f: F) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let ctx = Context::current();
    tokio::task::spawn_blocking(move || ctx.in_scope(f))
}

/// Spawning into a [`tokio::task::JoinSet`] with the caller's span and tags.
///
/// An extension trait rather than a wrapper type: your code keeps tokio's `JoinSet` and all of
/// its methods (`join_next`, `abort_all`, `spawn_on`, …, and whatever tokio adds), and only
/// the spawning call changes. Ban the raw `JoinSet::spawn` with the `clippy.toml` snippet in
/// [the module documentation](self) to make it stick.
///
/// # Examples
///
/// ```
/// use spanbus::{JoinSetExt, SpanFutureExt, current_span};
/// use tokio::task::JoinSet;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let d = spanbus::Dispatcher::new("fanout")?;
/// d.add_span_handler(spanbus::handlers::NullSpanHandler)?; // a listener makes spans live (`Span::is_idle`)
/// let parent = async {
///     let mut set = JoinSet::new();
///     for _ in 0..3 {
///         set.spawn_in_current_span(async { current_span() });
///     }
///     let parent = current_span();
///     while let Some(seen) = set.join_next().await {
///         assert_eq!(seen.unwrap(), parent);
///     }
///     parent
/// }
/// .in_span(d.span("fan_out"))
/// .await;
/// assert!(parent.is_some());
/// # Ok(())
/// # }
/// ```
pub trait JoinSetExt<T> {
    /// [`JoinSet::spawn`] with the caller's [`Context`] current in the task.
    ///
    /// # Panics
    ///
    /// Like [`JoinSet::spawn`], if called outside a tokio runtime.
    fn spawn_in_current_span<F>(&mut self, future: F) -> AbortHandle
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static;

    /// [`JoinSet::spawn_blocking`] with the caller's [`Context`] current in the closure.
    ///
    /// # Panics
    ///
    /// Like [`JoinSet::spawn_blocking`], if called outside a tokio runtime.
    fn spawn_blocking_in_current_span<F>(&mut self, f: F) -> AbortHandle
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static;
}

impl<T: 'static> JoinSetExt<T> for JoinSet<T> {
    #[track_caller]
    fn spawn_in_current_span<F>(&mut self, future: F) -> AbortHandle
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let attached: WithContext<F> = Context::current().attach(future);
        self.spawn(attached)
    }

    #[track_caller]
    fn spawn_blocking_in_current_span<F>(&mut self, f: F) -> AbortHandle
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let ctx = Context::current();
        self.spawn_blocking(move || ctx.in_scope(f))
    }
}

/// Std threads that start with the caller's span and tags.
pub mod thread {
    use std::io;
    use std::thread::{Builder, JoinHandle};

    use crate::context::Context;

    /// [`std::thread::spawn`] with the caller's [`Context`] current in the new thread
    /// (llama-index's context-copying `Thread`).
    ///
    /// # Panics
    ///
    /// Like [`std::thread::spawn`], if the operating system cannot create a thread; use
    /// [`spawn_with`] to get the error instead.
    ///
    /// # Examples
    ///
    /// ```
    /// let d = spanbus::Dispatcher::new("threads")?;
    /// let (parent, seen) = d.span("main").in_scope(|| {
    ///     let handle = spanbus::thread::spawn(spanbus::current_span);
    ///     (spanbus::current_span(), handle.join().unwrap())
    /// });
    /// assert_eq!(seen, parent);
    /// # Ok::<(), spanbus::error::NameError>(())
    /// ```
    pub fn spawn<F, T>(f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let ctx = Context::current();
        std::thread::spawn(move || ctx.in_scope(f))
    }

    /// [`Builder::spawn`] with the caller's [`Context`] current in the new thread: for a
    /// named thread, a custom stack size, or to handle the OS refusing a thread.
    ///
    /// # Errors
    ///
    /// The operating system's error if the thread cannot be created.
    ///
    /// # Examples
    ///
    /// ```
    /// let handle = spanbus::thread::spawn_with(
    ///     std::thread::Builder::new().name("indexer".into()),
    ///     || std::thread::current().name().map(str::to_owned),
    /// )?;
    /// assert_eq!(handle.join().unwrap().as_deref(), Some("indexer"));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn spawn_with<F, T>(builder: Builder, f: F) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let ctx = Context::current();
        builder.spawn(move || ctx.in_scope(f))
    }
}
