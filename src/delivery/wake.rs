//! Work left for after the channel's lock is released: records to free and tasks to wake.

use std::task::Waker;

use crate::record::RecordRef;

/// What to do once the lock is released: drop records (freeing their memory) and wake tasks.
/// Declared before the guard, so that it runs after the guard is dropped.
pub(super) struct Deferred<'a> {
    /// Emptied, not dropped: a reader's batch lends its buffer, so it is allocated once.
    pub(super) freed: &'a mut Vec<RecordRef>,
    pub(super) wake: Wakers,
}

impl<'a> Deferred<'a> {
    pub(super) fn new(freed: &'a mut Vec<RecordRef>) -> Self {
        Deferred {
            freed,
            wake: Wakers::default(),
        }
    }
}

impl Drop for Deferred<'_> {
    fn drop(&mut self) {
        self.freed.clear();
        std::mem::take(&mut self.wake).wake_all();
    }
}

/// Tasks to wake once the lock is released. The first is kept inline, so that waking the one
/// parked handler of a channel (the usual case) allocates nothing.
#[derive(Default)]
pub(super) struct Wakers {
    pub(super) first: Option<Waker>,
    pub(super) rest: Vec<Waker>,
}

impl Wakers {
    pub(super) fn extend(&mut self, wakers: impl IntoIterator<Item = Waker>) {
        for waker in wakers {
            if self.first.is_none() {
                self.first = Some(waker);
            } else {
                self.rest.push(waker);
            }
        }
    }

    pub(super) fn append(&mut self, wakers: &mut Vec<Waker>) {
        if self.first.is_none() && self.rest.is_empty() {
            // Keep the list's own buffer: no copy, no allocation.
            std::mem::swap(&mut self.rest, wakers);
        } else {
            self.extend(wakers.drain(..));
        }
    }

    #[inline]
    pub(super) fn wake_all(self) {
        if let Some(first) = self.first {
            first.wake();
        }
        if !self.rest.is_empty() {
            wake_each(self.rest);
        }
    }
}

#[cold]
pub(super) fn wake_each(wakers: Vec<Waker>) {
    for w in wakers {
        w.wake();
    }
}
