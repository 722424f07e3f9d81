//! Running out of memory in the middle of an operation: the heap allocations of this crate
//! (its `Vec`s and boxes, through the driver's global allocator) fail one by one, and every
//! failure must be a clean [`Error::INSUFFICIENT_RESOURCES`] that leaks nothing the kernel
//! gave (MDLs, pool, IRPs) — checked by the verifier at the end of each session.

use wsk::{Buf, BufList, Error};
use wsk_host::Session;

mod common;
use common::{FailingAllocator, fail_nth_heap_allocation, heap_failure_armed};

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
        fail_nth_heap_allocation(n);
        let pushed = list.push(buf);
        let armed = heap_failure_armed();
        fail_nth_heap_allocation(0);
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
