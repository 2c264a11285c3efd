//! Recycled memory for records.
//!
//! # Why
//!
//! A record is allocated on the emitting thread and freed on a handler's thread, so with the
//! system allocator every record is a cross-thread free, one of the largest costs of an emit
//! (BENCHMARKS.md has the measurement, and the `spanbus_no_pool` switch that shows it).
//!
//! # How
//!
//! Records of up to 256 bytes (every span signal and any event of up to 184 bytes) live in
//! fixed-size blocks of two classes, 128 and 256 bytes. Blocks of other sizes or alignments
//! go to the global allocator as before.
//!
//! - Each thread keeps a stack of free blocks per class. Allocating pops from it; freeing
//!   pushes onto the stack of the thread that frees.
//! - A stack that grows to two magazines ([`MAGAZINE`] blocks each) hands one magazine to a
//!   process-wide depot. An empty stack takes a magazine from the depot, or, when the depot
//!   is empty too, allocates one block from the global allocator.
//!
//! So blocks flow from handler threads back to emitting threads a magazine at a time, one lock
//! per [`MAGAZINE`] records, and a thread that both emits and handles reuses its own blocks
//! without any lock.
//!
//! # Memory
//!
//! Records in flight are bounded by the channels' capacities, so the blocks in use are too.
//! The depot keeps at most [`MAX_DEPOT`] magazines per class and frees anything beyond that, and
//! a thread's stack holds fewer than two magazines: what the pool keeps follows the peak number
//! of records in flight, not the number emitted. A thread's blocks go to the depot when it exits.
//!
//! Every block of a class has that class's layout, so a block may always be freed by the
//! global allocator instead: that is what happens to a record dropped while its thread's
//! thread-local storage is being torn down.
//!
//! # Checking it
//!
//! Built with `--cfg spanbus_asan` (see `.ci/asan.sh`), a block is poisoned for
//! AddressSanitizer while it sits in the pool, so a record used after it was freed is reported
//! even though its memory was not returned to the system. Under `--cfg loom` the pool is not
//! used at all (loom models the channel, not this).

use std::alloc::{self, Layout};
use std::ptr::NonNull;

/// The block sizes, smallest first.
const CLASSES: [usize; 2] = [128, 256];
/// Every block's alignment (the largest a record's envelope and a typical payload need).
const ALIGN: usize = 16;
/// Blocks moved between a thread and the depot at once.
#[cfg_attr(loom, allow(dead_code))]
const MAGAZINE: usize = 256;
/// Magazines the depot keeps per class (2 MiB of 128-byte blocks, 4 MiB of 256-byte ones).
#[cfg_attr(loom, allow(dead_code))]
const MAX_DEPOT: usize = 64;

/// The layout of a block of class `class`.
fn block_layout(class: usize) -> Layout {
    BLOCK_LAYOUTS[class]
}

/// The layout of each class's blocks, checked when the crate compiles.
const BLOCK_LAYOUTS: [Layout; CLASSES.len()] = [layout(CLASSES[0]), layout(CLASSES[1])];

const fn layout(size: usize) -> Layout {
    match Layout::from_size_align(size, ALIGN) {
        Ok(layout) => layout,
        // Evaluated at compile time: a bad class size fails the build, never a caller.
        Err(_) => panic!("a block class must be a valid layout"),
    }
}

/// The class whose blocks hold `layout`, if any.
#[inline]
fn class_of(layout: Layout) -> Option<usize> {
    // `--cfg spanbus_no_pool` sends every record to the global allocator: for the benchmark
    // that weighs this pool against plain allocation (BENCHMARKS.md).
    if cfg!(loom) || cfg!(spanbus_no_pool) || layout.align() > ALIGN {
        return None;
    }
    CLASSES.iter().position(|&size| layout.size() <= size)
}

/// Allocates memory for `layout` (which must not be zero-sized): a pooled block when one of
/// the classes fits it.
///
/// Free it with [`dealloc`] and the same layout.
///
/// Always inlined: a record's layout is a constant at each call, so the class is chosen at
/// compile time.
#[inline(always)]
pub(crate) fn alloc(layout: Layout) -> NonNull<u8> {
    debug_assert!(layout.size() > 0);
    match class_of(layout) {
        Some(class) => imp::take(class).unwrap_or_else(|| global_alloc(block_layout(class))),
        None => global_alloc(layout),
    }
}

/// Frees memory from [`alloc`](fn@alloc).
///
/// # Safety
///
/// `ptr` must come from [`alloc`](fn@alloc) with this same `layout`, must not be used afterwards, and
/// must not be freed twice.
#[inline]
pub(crate) unsafe fn dealloc(ptr: NonNull<u8>, layout: Layout) {
    match class_of(layout) {
        Some(class) => {
            if let Err(ptr) = imp::give(class, ptr) {
                // SAFETY: every block of `class` is allocated with `block_layout(class)`
                // (here or in `alloc`), and the caller gives up `ptr`.
                unsafe { alloc::dealloc(ptr.as_ptr(), block_layout(class)) }
            }
        }
        // SAFETY: `alloc` used the global allocator with this layout (no class fits it), and
        // the caller gives up `ptr`.
        None => unsafe { alloc::dealloc(ptr.as_ptr(), layout) },
    }
}

fn global_alloc(layout: Layout) -> NonNull<u8> {
    // SAFETY: `layout` is not zero-sized (a record always has its envelope).
    let ptr = unsafe { alloc::alloc(layout) };
    NonNull::new(ptr).unwrap_or_else(|| alloc::handle_alloc_error(layout))
}

#[cfg(not(loom))]
mod imp {
    use parking_lot::Mutex;
    use std::cell::RefCell;
    use std::ptr::NonNull;

    use super::{CLASSES, MAGAZINE, MAX_DEPOT, block_layout};

    /// A free block. Blocks are plain memory owned by whoever holds the pointer.
    struct Block(NonNull<u8>);

    // SAFETY: a `Block` is the sole owner of an unused allocation; nothing else refers to it,
    // so moving it to another thread moves the whole of it.
    unsafe impl Send for Block {}

    /// The depot: full magazines, per class.
    static DEPOT: [Mutex<Vec<Vec<Block>>>; 2] = [Mutex::new(Vec::new()), Mutex::new(Vec::new())];

    /// A thread's free blocks, per class.
    struct Stacks([Vec<Block>; CLASSES.len()]);

    impl Drop for Stacks {
        fn drop(&mut self) {
            for (class, stack) in self.0.iter_mut().enumerate() {
                while !stack.is_empty() {
                    let at = stack.len().saturating_sub(MAGAZINE);
                    to_depot(class, stack.split_off(at));
                }
            }
        }
    }

    thread_local! {
        static STACKS: RefCell<Stacks> = const { RefCell::new(Stacks([Vec::new(), Vec::new()])) };
    }

    /// A free block of `class` from this thread's stack or the depot; `None` when both are
    /// empty (or this thread's storage is gone): the caller allocates a new one.
    #[inline]
    pub(super) fn take(class: usize) -> Option<NonNull<u8>> {
        STACKS
            .try_with(|stacks| {
                let mut stacks = stacks.try_borrow_mut().ok()?;
                let stack = &mut stacks.0[class];
                if stack.is_empty() {
                    *stack = from_depot(class)?;
                }
                let block = stack.pop()?.0;
                poison::unpoison(block, class);
                Some(block)
            })
            .ok()
            .flatten()
    }

    /// Keeps `ptr`, a block of `class`, for reuse; hands it back when this thread's storage is
    /// gone, for the caller to free.
    #[inline]
    pub(super) fn give(class: usize, ptr: NonNull<u8>) -> Result<(), NonNull<u8>> {
        STACKS
            .try_with(|stacks| {
                let Ok(mut stacks) = stacks.try_borrow_mut() else {
                    return Err(ptr);
                };
                let stack = &mut stacks.0[class];
                poison::poison(ptr, class);
                stack.push(Block(ptr));
                if stack.len() >= 2 * MAGAZINE {
                    let magazine = stack.split_off(stack.len() - MAGAZINE);
                    to_depot(class, magazine);
                }
                Ok(())
            })
            .unwrap_or(Err(ptr))
    }

    fn from_depot(class: usize) -> Option<Vec<Block>> {
        DEPOT[class].lock().pop()
    }

    fn to_depot(class: usize, magazine: Vec<Block>) {
        let magazine = {
            let mut depot = DEPOT[class].lock();
            if depot.len() < MAX_DEPOT {
                depot.push(magazine);
                return;
            }
            magazine
        };
        for Block(ptr) in magazine {
            poison::unpoison(ptr, class);
            // SAFETY: blocks of `class` are allocated with `block_layout(class)`, and this
            // one is unused (it was in the pool).
            unsafe { std::alloc::dealloc(ptr.as_ptr(), block_layout(class)) }
        }
    }

    /// AddressSanitizer poisoning of pooled blocks (no-ops unless built with
    /// `--cfg spanbus_asan`).
    mod poison {
        use std::ptr::NonNull;

        #[cfg(spanbus_asan)]
        unsafe extern "C" {
            fn __asan_poison_memory_region(addr: *const u8, size: usize);
            fn __asan_unpoison_memory_region(addr: *const u8, size: usize);
        }

        #[inline]
        pub(super) fn poison(_block: NonNull<u8>, _class: usize) {
            // SAFETY: the block is a live allocation of its class's size, owned by the pool.
            #[cfg(spanbus_asan)]
            unsafe {
                __asan_poison_memory_region(_block.as_ptr(), super::CLASSES[_class]);
            }
        }

        #[inline]
        pub(super) fn unpoison(_block: NonNull<u8>, _class: usize) {
            // SAFETY: as above; the block leaves the pool.
            #[cfg(spanbus_asan)]
            unsafe {
                __asan_unpoison_memory_region(_block.as_ptr(), super::CLASSES[_class]);
            }
        }
    }
}

#[cfg(loom)]
mod imp {
    use std::ptr::NonNull;

    pub(super) fn take(_class: usize) -> Option<NonNull<u8>> {
        None
    }

    pub(super) fn give(_class: usize, ptr: NonNull<u8>) -> Result<(), NonNull<u8>> {
        Err(ptr)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn layouts_pick_the_smallest_class_that_fits() {
        assert_eq!(class_of(Layout::from_size_align(72, 8).unwrap()), Some(0));
        assert_eq!(class_of(Layout::from_size_align(128, 16).unwrap()), Some(0));
        assert_eq!(class_of(Layout::from_size_align(129, 8).unwrap()), Some(1));
        assert_eq!(class_of(Layout::from_size_align(256, 8).unwrap()), Some(1));
        assert_eq!(class_of(Layout::from_size_align(257, 8).unwrap()), None);
        assert_eq!(class_of(Layout::from_size_align(64, 32).unwrap()), None);
    }

    #[test]
    fn a_freed_block_is_reused_by_the_same_thread() {
        let layout = Layout::from_size_align(100, 8).unwrap();
        let a = alloc(layout);
        // SAFETY: `a` came from `alloc` with `layout` and is not used again.
        unsafe { dealloc(a, layout) };
        let b = alloc(layout);
        assert_eq!(a, b, "the block just freed is the next one handed out");
        // SAFETY: as above.
        unsafe { dealloc(b, layout) };
    }

    /// A block handed to another thread to free (a pointer, not an address, so that Miri
    /// still knows which allocation it points to).
    struct Sent(NonNull<u8>);
    // SAFETY: the test hands each block to exactly one thread, which frees it.
    unsafe impl Send for Sent {}

    #[test]
    fn blocks_freed_on_another_thread_come_back_through_the_depot_and_every_byte_is_usable() {
        let layout = Layout::from_size_align(200, 16).unwrap();
        let n = 4 * MAGAZINE;
        let blocks: Vec<Sent> = (0..n)
            .map(|i| {
                let p = alloc(layout);
                // Fill the whole requested size: a block smaller than asked would corrupt
                // its neighbour (and ASan would say so).
                // SAFETY: `p` is a fresh allocation of `layout.size()` bytes.
                unsafe { p.as_ptr().write_bytes(i as u8, layout.size()) };
                Sent(p)
            })
            .collect();
        let addresses: Vec<usize> = blocks.iter().map(|b| b.0.addr().get()).collect();
        std::thread::spawn(move || {
            for (i, Sent(p)) in blocks.into_iter().enumerate() {
                // SAFETY: each block was written with its own index and is freed once.
                unsafe {
                    assert!(
                        std::slice::from_raw_parts(p.as_ptr(), 200)
                            .iter()
                            .all(|&b| b == i as u8)
                    );
                    dealloc(p, layout);
                }
            }
        })
        .join()
        .unwrap();
        // The freeing thread moved magazines to the depot as its stack grew, and the rest
        // when it exited. This thread's stack is empty, so it now draws from the depot:
        // blocks the other thread freed (other tests' threads may have added a magazine or
        // two on top meanwhile, hence drawing as many as were freed).
        let again: Vec<NonNull<u8>> = (0..n).map(|_| alloc(layout)).collect();
        assert!(again.iter().any(|p| addresses.contains(&p.addr().get())));
        for p in again {
            // SAFETY: fresh from `alloc` with `layout`, freed once.
            unsafe { dealloc(p, layout) };
        }
    }

    #[test]
    fn large_or_overaligned_layouts_use_the_global_allocator() {
        for layout in [
            Layout::from_size_align(4096, 8).unwrap(),
            Layout::from_size_align(64, 64).unwrap(),
        ] {
            let p = alloc(layout);
            assert_eq!(p.as_ptr() as usize % layout.align(), 0);
            // SAFETY: fresh from `alloc` with `layout`, freed once.
            unsafe {
                p.as_ptr().write_bytes(7, layout.size());
                dealloc(p, layout);
            }
        }
    }
}
