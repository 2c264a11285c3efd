//! Waiting on a plain thread: polling with a waker that unparks the thread, so that a wait
//! needs no runtime (and never occupies one).

use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::Instant;

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls until ready, or until `deadline` (then `None`), parking the thread in between.
pub(crate) fn block_until<T>(
    deadline: Option<Instant>,
    mut poll: impl FnMut(&mut Context<'_>) -> Poll<T>,
) -> Option<T> {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(out) = poll(&mut cx) {
            return Some(out);
        }
        match deadline {
            None => std::thread::park(),
            Some(deadline) => {
                let now = Instant::now();
                if now >= deadline {
                    return None;
                }
                std::thread::park_timeout(deadline - now);
            }
        }
    }
}

/// Polls until ready, parking the thread in between.
pub(crate) fn block_on<T>(mut poll: impl FnMut(&mut Context<'_>) -> Poll<T>) -> T {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(out) = poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

/// Whether the calling thread may block: it runs no tokio runtime (so blocking it stalls no
/// task) and is not a handler's.
pub(crate) fn may_block() -> bool {
    tokio::runtime::Handle::try_current().is_err() && !crate::handler::in_handler()
}
