//! The registry: dispatchers by dotted name, and the root that ends every chain.
//!
//! # Names and parents
//!
//! A name is a dotted path of non-empty segments without whitespace: `app`, `app.retriever`.
//! `root` names the registry's root. A dispatcher's parent is its **nearest registered
//! ancestor**: `a.b.c` with only `a` registered gets `a`, and when `a.b` is created later,
//! `a.b.c` (and every other descendant whose parent was above `a.b`) is re-linked to it. With no
//! registered ancestor, the parent is the root. The root's `propagate` is false, so chains
//! stop there.
//!
//! llama-index differs on two points, both fixed here: it takes the immediate dotted prefix as
//! parent only if that exact prefix is registered (else the root), and it never re-links.
//!
//! # Examples
//!
//! ```
//! use spanbus::Registry;
//!
//! let registry = Registry::new();
//! let leaf = registry.get_dispatcher("app.retriever.bm25")?;
//! let app = registry.get_dispatcher("app")?;
//! assert_eq!(leaf.parent(), Some(app.clone()));
//!
//! let retriever = registry.get_dispatcher("app.retriever")?; // re-links `leaf`
//! assert_eq!(leaf.parent(), Some(retriever));
//! assert_eq!(app.parent(), Some(registry.root()));
//! # Ok::<(), spanbus::error::NameError>(())
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use std::time::Duration;

use crate::dispatcher::ShutdownReport;
use crate::dispatcher::{DEFAULT_CAPACITY, Dispatcher, flush_channels, validate_name};
use crate::error::NameError;

/// The root dispatcher's name.
pub const ROOT: &str = "root";

/// Dispatchers by name. Most programs use the process-wide one through
/// [`get_dispatcher`](crate::get_dispatcher); tests and embedded uses can make their own.
#[derive(Clone, Debug)]
pub struct Registry(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    root: Dispatcher,
    by_name: Mutex<BTreeMap<String, Dispatcher>>,
    /// Set (under `by_name`) when shutdown begins: dispatchers created later are born shut down.
    shut_down: AtomicBool,
}

// No user code runs while its locks are held, so a panic cannot leave their data half-changed:
// as unwind-safe as with `std::sync::Mutex` (which poisons instead).
impl std::panic::UnwindSafe for Inner {}
impl std::panic::RefUnwindSafe for Inner {}

impl Default for Registry {
    fn default() -> Self {
        Registry::new()
    }
}

impl Registry {
    /// An empty registry with its own root.
    pub fn new() -> Registry {
        Registry(Arc::new(Inner {
            root: Dispatcher::from_parts(ROOT, None, false, DEFAULT_CAPACITY, DEFAULT_CAPACITY),
            by_name: Mutex::new(BTreeMap::new()),
            shut_down: AtomicBool::new(false),
        }))
    }

    /// The process-wide registry.
    pub fn global() -> &'static Registry {
        static GLOBAL: OnceLock<Registry> = OnceLock::new();
        GLOBAL.get_or_init(Registry::new)
    }

    /// The root dispatcher.
    pub fn root(&self) -> Dispatcher {
        self.0.root.clone()
    }

    /// The dispatcher named `name`, created (and linked into the tree) if needed.
    ///
    /// # Errors
    ///
    /// [`NameError`] for an empty name, an empty segment, or whitespace.
    pub fn get_dispatcher(&self, name: &str) -> Result<Dispatcher, NameError> {
        validate_name(name)?;
        if name == ROOT {
            return Ok(self.root());
        }
        let mut by_name = self.0.by_name.lock();
        if let Some(d) = by_name.get(name) {
            return Ok(d.clone());
        }
        let parent = ancestors(name)
            .find_map(|a| by_name.get(a).cloned())
            .unwrap_or_else(|| self.root());
        let created =
            Dispatcher::from_parts(name, Some(parent), true, DEFAULT_CAPACITY, DEFAULT_CAPACITY);
        // Re-link descendants whose parent sits above the new dispatcher.
        let prefix = format!("{name}.");
        for (child_name, child) in by_name.range(prefix.clone()..) {
            if !child_name.starts_with(&prefix) {
                break;
            }
            let above = child
                .parent()
                .is_none_or(|p| p.name() == ROOT || p.name().len() < name.len());
            if above {
                child.set_parent(Some(created.clone()));
            }
        }
        by_name.insert(name.to_owned(), created.clone());
        if self.0.shut_down.load(Ordering::Acquire) {
            // The registry was shut down: a handler attached here would never be flushed or
            // closed, and emits would vanish. Refuse both, like every other dispatcher here.
            created.begin_shutdown();
        }
        Ok(created)
    }

    /// Every dispatcher in the registry, the root first.
    pub fn dispatchers(&self) -> Vec<Dispatcher> {
        let by_name = self.0.by_name.lock();
        std::iter::once(self.root())
            .chain(by_name.values().cloned())
            .collect()
    }

    /// Waits until every record emitted before the call, on any dispatcher of this registry,
    /// has been handled by every handler, and the handlers have been flushed.
    pub async fn flush(&self) {
        flush_channels(
            self.dispatchers()
                .iter()
                .filter_map(Dispatcher::own_channel),
        )
        .await;
    }

    /// Shuts down every dispatcher of the registry within one `timeout`, and reports on every
    /// handler. First all dispatchers stop accepting records and drop their open spans (so
    /// those drops reach ancestors' handlers), then every handler drains, flushes and closes.
    /// A dispatcher first requested after this call is shut down from the start.
    ///
    /// Only the registry's own dispatchers are covered: a standalone dispatcher built with
    /// [`Dispatcher::builder`] (even with a registry dispatcher as its parent) is flushed and
    /// shut down on its own.
    ///
    /// Like [`Dispatcher::shutdown`](crate::Dispatcher::shutdown), it works from anywhere, even on a
    /// runtime built without tokio's time driver or with no runtime at all.
    pub async fn shutdown(&self, timeout: Duration) -> ShutdownReport {
        {
            let _by_name = self.0.by_name.lock();
            self.0.shut_down.store(true, Ordering::Release);
        }
        let all = self.dispatchers();
        for d in &all {
            d.begin_shutdown();
        }
        let reports = futures::future::join_all(all.iter().map(|d| d.shutdown(timeout))).await;
        let mut report = ShutdownReport::default();
        for r in reports {
            report.merge(r);
        }
        report
    }
}

/// The proper dotted prefixes of `name`, longest first: `a.b.c` → `a.b`, `a`.
fn ancestors(name: &str) -> impl Iterator<Item = &str> {
    name.rmatch_indices('.').map(move |(i, _)| &name[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ancestors_are_listed_longest_first() {
        assert_eq!(ancestors("a.b.c").collect::<Vec<_>>(), ["a.b", "a"]);
        assert_eq!(ancestors("a").count(), 0);
    }
}
