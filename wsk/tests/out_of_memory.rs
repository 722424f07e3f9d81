//! Running out of memory in the middle of an operation: the heap allocations of this crate
//! (its `Vec`s and boxes, through the driver's global allocator) fail one by one, and every
//! failure must be a clean [`Error::INSUFFICIENT_RESOURCES`] that leaks nothing the kernel
//! gave (MDLs, pool, IRPs) — checked by the verifier at the end of each session.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use wsk::{Buf, BufList, Error};
use wsk_host::Session;

/// The system allocator, except that the calling thread's `n`-th allocation from now fails
/// when armed with [`fail_nth_allocation`].
struct FailingAllocator;

thread_local! {
    static COUNTDOWN: Cell<usize> = const { Cell::new(0) };
}

/// Makes this thread's `n`-th allocation from now (1-based) fail; 0 disarms.
fn fail_nth_allocation(n: usize) {
    COUNTDOWN.with(|c| c.set(n));
}

// SAFETY: forwards to the system allocator, or returns null (an allowed answer).
unsafe impl GlobalAlloc for FailingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let fail = COUNTDOWN
            .try_with(|c| match c.get() {
                0 => false,
                1 => {
                    c.set(0);
                    true
                }
                n => {
                    c.set(n - 1);
                    false
                }
            })
            .unwrap_or(false);
        if fail {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: FailingAllocator = FailingAllocator;

#[test]
fn a_buf_list_that_cannot_grow_leaks_no_mdl() {
    let session = Session::start();
    let mut failures = 0;
    // Each allocation of `push` in turn (the list's vectors, then the partial MDL's pool),
    // until one push goes through untouched.
    for n in 1..16 {
        let mut list = BufList::new();
        let buf = Buf::from_slice(b"payload").unwrap();
        fail_nth_allocation(n);
        let pushed = list.push(buf);
        let armed = COUNTDOWN.with(Cell::get) != 0;
        fail_nth_allocation(0);
        match pushed {
            Err(error) => {
                assert_eq!(error, Error::INSUFFICIENT_RESOURCES);
                assert!(
                    list.bufs().is_empty(),
                    "a failed push leaves the list unchanged"
                );
                failures += 1;
            }
            Ok(()) => {
                assert!(armed, "the push succeeded although an allocation failed");
                break;
            }
        }
    }
    assert!(failures >= 3, "every vector of the list is grown fallibly");
    session.finish();
}
