//! The shared block a record lives in: [`RecordRef`], a reference-counted pointer into the
//! record pool, and [`Lent`], a record borrowed from one without counting.

use std::alloc::Layout;
use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering, fence};

use super::{Payload, Record, RecordBox};

/// A counted reference to a record: what channels and handler batches hold.
///
/// It is `Arc<Record>` with the record's memory taken from the record pool (`crate::pool`)
/// instead of the global allocator: a record is allocated on the emitting thread and freed on
/// a handler's, and the pool turns that cross-thread free into a push onto a thread-local
/// stack. (`Arc` cannot take another allocator on stable Rust.) The count and the record share
/// one block, as in an `Arc`.
pub(crate) struct RecordRef(NonNull<Shared<dyn Payload>>);

/// The block behind a [`RecordRef`].
pub(super) struct Shared<P: ?Sized> {
    count: AtomicUsize,
    record: RecordBox<P>,
}

/// A reference count past this is a leak of `RecordRef`s, as in `Arc`: abort rather than
/// overflow.
const MAX_REFCOUNT: usize = isize::MAX as usize;

// SAFETY: a `RecordRef` gives shared access (`&Record`) to a record that is `Send + Sync`
// (every payload is), and its count is atomic; the last reference frees the record, which
// takes only `Send`: the same reasoning as `Arc<Record>` being `Send + Sync`.
unsafe impl Send for RecordRef {}
// SAFETY: as above.
unsafe impl Sync for RecordRef {}

impl RecordRef {
    #[inline]
    pub(super) fn new<P: Payload>(record: RecordBox<P>) -> RecordRef {
        let layout = Layout::new::<Shared<P>>();
        let block = crate::pool::alloc(layout).cast::<Shared<P>>();
        // SAFETY: `block` is fresh memory for `layout`, the layout of `Shared<P>`.
        unsafe {
            block.as_ptr().write(Shared {
                count: AtomicUsize::new(1),
                record,
            });
        }
        // Unsizes to the payload's trait object: same address, plus the vtable.
        RecordRef(block)
    }

    #[inline]
    fn shared(&self) -> &Shared<dyn Payload> {
        // SAFETY: the block stays alive while this reference counts in it.
        unsafe { self.0.as_ref() }
    }

    /// A pointer to the record that does not count as a reference (see [`Lent`]).
    #[inline]
    pub(crate) fn lend(&self) -> Lent {
        Lent(self.0)
    }
}

impl Clone for RecordRef {
    #[inline]
    fn clone(&self) -> Self {
        // Relaxed, as in `Arc::clone`: the new reference is made from an existing one, which
        // keeps the record alive; nothing else is published by the increment.
        let old = self.shared().count.fetch_add(1, Ordering::Relaxed);
        if old > MAX_REFCOUNT {
            std::process::abort();
        }
        RecordRef(self.0)
    }
}

impl Drop for RecordRef {
    #[inline]
    fn drop(&mut self) {
        // Release, then Acquire before freeing, as in `Arc::drop`: every use of the record
        // through another reference happens before it is dropped and freed here.
        if self.shared().count.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        fence(Ordering::Acquire);
        free(self.0);
    }
}

/// Drops and frees the record in `block`, whose last reference is gone; kept out of line so
/// that dropping a reference that is not the last stays small.
#[inline(never)]
fn free(block: NonNull<Shared<dyn Payload>>) {
    // SAFETY: the last reference is gone, so nothing else can reach the block. The block was
    // allocated by `pool::alloc` with `Layout::new::<Shared<P>>()`, which is what `for_value`
    // computes from the vtable (read before the value is dropped).
    unsafe {
        let layout = Layout::for_value(block.as_ref());
        std::ptr::drop_in_place(block.as_ptr());
        crate::pool::dealloc(block.cast::<u8>(), layout);
    }
}

impl std::ops::Deref for RecordRef {
    type Target = Record;

    #[inline]
    fn deref(&self) -> &Record {
        let record: &RecordBox<dyn Payload> = &self.shared().record;
        // SAFETY: `Record` is `#[repr(transparent)]` over `RecordBox<dyn Payload>`: the same
        // layout and the same pointer metadata (the payload's vtable), so the cast keeps both
        // the address and the metadata (std's `Path` over `OsStr` is the same pattern).
        unsafe { &*(record as *const RecordBox<dyn Payload> as *const Record) }
    }
}

impl fmt::Debug for RecordRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// A record lent by whoever holds a [`RecordRef`] to it, without counting a reference: the
/// channel lends the records of its queue to a lossless reader (see `crate::channel`).
#[derive(Clone, Copy)]
pub(crate) struct Lent(NonNull<Shared<dyn Payload>>);

impl Lent {
    /// The record.
    ///
    /// # Safety
    ///
    /// A [`RecordRef`] to the record must stay alive for as long as the returned reference
    /// is used.
    #[inline]
    pub(crate) unsafe fn get<'a>(self) -> &'a Record {
        // SAFETY: the caller keeps a counted reference alive meanwhile; `Deref` of that
        // reference would return this same borrow.
        unsafe {
            let record: &'a RecordBox<dyn Payload> = &(*self.0.as_ptr()).record;
            &*(record as *const RecordBox<dyn Payload> as *const Record)
        }
    }

    /// A counted reference of its own to the record.
    ///
    /// # Safety
    ///
    /// As for [`get`](Self::get): a [`RecordRef`] to the record must be alive during the call.
    #[cfg(all(loom, test))]
    pub(crate) unsafe fn to_counted(self) -> RecordRef {
        let lender = std::mem::ManuallyDrop::new(RecordRef(self.0));
        (*lender).clone()
    }
}
