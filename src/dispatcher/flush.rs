//! Flush: a barrier through the chain's channels.

use std::sync::Arc;

use super::Dispatcher;
use crate::delivery::Channel;
use crate::handler;

impl Dispatcher {
    // ---- flush and shutdown -------------------------------------------------------------

    /// Waits until every record emitted on this dispatcher before the call has been handled
    /// by every handler it reaches (here and up the chain), and those handlers have been
    /// flushed.
    ///
    /// A handler that never returns makes `flush` wait forever; bound it with
    /// `tokio::time::timeout` if a handler may hang.
    ///
    /// Called from inside a handler, `flush` skips that handler's own channel (it would wait
    /// for itself) and does not wait for handlers that are themselves waiting in a flush
    /// called from inside them (they would wait for each other).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping the future stops the waiting only; handlers still reach the
    /// barrier and flush.
    pub async fn flush(&self) {
        flush_channels(self.chain_channels()).await;
    }

    /// The channel of this dispatcher's own handlers, if it has any.
    pub(crate) fn own_channel(&self) -> Option<Arc<Channel>> {
        self.0.hub.lock().channel.clone()
    }
}

/// Places a barrier on each channel and waits for all of them.
///
/// Called from inside a handler, the handler's own channel is skipped (its barrier could only
/// be reached after the handler returns), and the handler is marked as flushing on its own
/// channel while it waits: barriers placed from inside other handlers do not wait for it, so
/// handlers flushing each other's channels all finish.
pub(crate) async fn flush_channels(channels: impl IntoIterator<Item = Arc<Channel>>) {
    let own = handler::handling();
    let _flushing = own.as_ref().map(Flushing::new);
    let barriers: Vec<_> = channels
        .into_iter()
        .filter(|c| own.as_ref().is_none_or(|h| !Arc::ptr_eq(&h.channel, c)))
        .filter_map(|c| c.barrier(own.is_some()))
        .collect();
    for barrier in barriers {
        let _ = barrier.await;
    }
}

/// Marks a handler as waiting in a flush of its own until dropped (see [`flush_channels`]).
struct Flushing<'a>(&'a handler::Handling);

impl<'a> Flushing<'a> {
    fn new(h: &'a handler::Handling) -> Self {
        h.channel.set_flushing(h.reader, true);
        Flushing(h)
    }
}

impl Drop for Flushing<'_> {
    fn drop(&mut self) {
        self.0.channel.set_flushing(self.0.reader, false);
    }
}
