//! Dispatchers: named nodes that emit records to their handlers and their ancestors' handlers.
//!
//! # The hierarchy
//!
//! Dispatchers form a tree by dotted names, like Python's `logging`: `app.retriever`'s parent is
//! the nearest registered ancestor (`app` if it exists), else the registry's root. A record
//! emitted on a dispatcher goes to that dispatcher's handlers, then its parent's, and so on,
//! stopping after a dispatcher whose `propagate` is false (the root's is). See
//! [`Registry`](crate::Registry) for how names are resolved and re-linked.
//!
//! # The flow of a record
//!
//! 1. An emitter calls [`Dispatcher::event`] (or enters a span). If no handler on the chain
//!    listens, nothing is built: the check is two atomic loads.
//! 2. The record is built once — id, timestamp, current span and tags from the task-local
//!    [`Context`](crate::context::Context), the dispatcher's name — and shared behind an `Arc`.
//! 3. It is pushed onto the bounded broadcast channel of each dispatcher on the chain that has
//!    handlers (see [`channel`](crate#delivery)).
//! 4. Each handler's task takes it, in emit order, and calls the handler.
//!
//! The set of channels a dispatcher reaches is cached and recomputed only after the topology
//! changed (a handler added or removed, a dispatcher created, a `propagate` flag flipped).
//!
//! # Where things are
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | [`Dispatcher`] and its state |
//! | `builder.rs` | [`DispatcherBuilder`] |
//! | `name.rs` | name validation and interning |
//! | `route.rs` | the cached channels of the propagation chain, and the sync push |
//! | `emit.rs` | [`Emit`] and [`EmitFuture`] |
//! | `open_spans.rs` | a span's enter, exit and drop signals, and the spans still open |
//! | `attach.rs` | handlers attached, removed and counted |
//! | `flush.rs` | the flush barrier |
//! | `shutdown.rs` | shutdown and its [`ShutdownReport`] |
//!
//! # Examples
//!
//! ```
//! use serde::Serialize;
//! use spanbus::{Dispatcher, Event, EventHandler, Record};
//!
//! #[derive(Serialize)]
//! struct Hello;
//! impl Event for Hello {
//!     const NAME: &'static str = "Hello";
//! }
//!
//! struct Print;
//! impl EventHandler for Print {
//!     async fn handle(&mut self, record: &Record) {
//!         println!("{} from {}", record.class_name(), record.dispatcher());
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let app = Dispatcher::new("app")?;
//! app.add_event_handler(Print)?;
//! app.event(Hello).await?;
//! app.flush().await; // Print has handled Hello
//! # Ok(())
//! # }
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

use arc_swap::ArcSwap;

use crate::delivery::{Channel, topology_changed};
use crate::error::NameError;

mod attach;
mod builder;
mod emit;
mod flush;
mod name;
mod open_spans;
mod route;
mod shutdown;

pub use builder::DispatcherBuilder;
pub use emit::{Emit, EmitFuture};
pub(crate) use flush::flush_channels;
pub(crate) use name::intern;
pub(crate) use name::validate_name;
pub(crate) use open_spans::Tracked;
pub(crate) use route::{LIVE, SHUT};
pub use shutdown::{HandlerReport, ShutdownReport};

use attach::Attached;
use open_spans::OpenSpans;
use shutdown::SharedReport;

/// The default capacity of a dispatcher's channel, in records.
pub const DEFAULT_CAPACITY: usize = 4096;

/// A named node of the hierarchy that emits events and span signals.
///
/// Cloning is cheap and gives another handle to the same dispatcher.
#[derive(Clone)]
pub struct Dispatcher(Arc<Inner>);

struct Inner {
    /// Interned (see [`intern`]): `&'static &'static str` so that a record carries one word.
    name: &'static &'static str,
    parent: RwLock<Option<Dispatcher>>,
    propagate: AtomicBool,
    capacity: usize,
    overflow: usize,
    /// `(topology generation << ROUTE_BITS) | GONE | SHUT | LIVE`, as of the last refresh of
    /// `targets`.
    route: AtomicU64,
    /// The channels records go to, replaced whole by `refresh` (under `refreshing`) and read
    /// without locking by every emit.
    targets: ArcSwap<Vec<Arc<Channel>>>,
    refreshing: Mutex<()>,
    hub: Mutex<Hub>,
    open: OpenSpans,
    shut_down: AtomicBool,
    spans_dropped_at_shutdown: AtomicU64,
    /// The shutdown in progress or done, shared by every caller of `shutdown`.
    report: Mutex<Option<SharedReport>>,
}

// No user code runs while its locks are held, so a panic cannot leave their data half-changed:
// as unwind-safe as with `std::sync::Mutex` (which poisons instead).
impl std::panic::UnwindSafe for Inner {}
impl std::panic::RefUnwindSafe for Inner {}

/// The dispatcher's own handlers and the channel they read.
#[derive(Default)]
struct Hub {
    channel: Option<Arc<Channel>>,
    handlers: Vec<Attached>,
}

impl Drop for Inner {
    /// The last handle is gone, so nothing can emit here any more: close the channel, so that
    /// the handler tasks drain it, run their handlers' `flush` and `close`, and end.
    fn drop(&mut self) {
        let hub = self.hub.get_mut();
        if let Some(channel) = hub.channel.take() {
            channel.close();
        }
    }
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("name", &self.name())
            .field("parent", &self.parent().map(|p| *p.0.name))
            .field("propagate", &self.propagate())
            .finish_non_exhaustive()
    }
}

impl PartialEq for Dispatcher {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Dispatcher {}

impl Dispatcher {
    /// A standalone dispatcher with no parent, outside any registry.
    ///
    /// # Errors
    ///
    /// [`NameError`] when the name is not a valid dotted name.
    pub fn new(name: &str) -> Result<Dispatcher, NameError> {
        Dispatcher::builder(name).build()
    }

    pub(crate) fn from_parts(
        name: &str,
        parent: Option<Dispatcher>,
        propagate: bool,
        capacity: usize,
        overflow: usize,
    ) -> Dispatcher {
        topology_changed();
        Dispatcher(Arc::new(Inner {
            name: intern(name),
            parent: RwLock::new(parent),
            propagate: AtomicBool::new(propagate),
            capacity,
            overflow,
            route: AtomicU64::new(0),
            targets: ArcSwap::from_pointee(Vec::new()),
            refreshing: Mutex::new(()),
            hub: Mutex::new(Hub::default()),
            open: OpenSpans::default(),
            shut_down: AtomicBool::new(false),
            spans_dropped_at_shutdown: AtomicU64::new(0),
            report: Mutex::new(None),
        }))
    }

    /// The dispatcher's dotted name.
    pub fn name(&self) -> &str {
        self.0.name
    }

    /// The dispatcher records propagate to, if any.
    pub fn parent(&self) -> Option<Dispatcher> {
        self.0.parent.read().clone()
    }

    pub(crate) fn set_parent(&self, parent: Option<Dispatcher>) {
        *self.0.parent.write() = parent;
        topology_changed();
    }

    /// Whether records go on to the parent's handlers.
    pub fn propagate(&self) -> bool {
        self.0.propagate.load(Ordering::Acquire)
    }

    /// Sets whether records go on to the parent's handlers.
    pub fn set_propagate(&self, propagate: bool) {
        self.0.propagate.store(propagate, Ordering::Release);
        topology_changed();
    }

    /// Whether [`shutdown`](Self::shutdown) has begun.
    pub fn is_shut_down(&self) -> bool {
        self.0.shut_down.load(Ordering::Acquire)
    }
}

/// Parent chains longer than this are treated as cut (a guard against a cycle).
const MAX_DEPTH: usize = 1024;
