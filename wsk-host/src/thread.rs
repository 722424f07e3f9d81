//! Thread identity: `PsGetCurrentThreadId`.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use wsk_sys::HANDLE;

/// The next thread identifier to hand out; like Windows' thread IDs, multiples of 4, never 0.
static NEXT_ID: AtomicUsize = AtomicUsize::new(4);

thread_local! {
    static ID: Cell<usize> = const { Cell::new(0) };
}

/// `PsGetCurrentThreadId`: an identifier of the calling thread, unique among the threads of
/// the process (identifiers are not reused). Any IRQL.
#[unsafe(no_mangle)]
pub extern "system" fn PsGetCurrentThreadId() -> HANDLE {
    let id = ID.with(|id| {
        if id.get() == 0 {
            id.set(NEXT_ID.fetch_add(4, Ordering::Relaxed));
        }
        id.get()
    });
    std::ptr::without_provenance_mut(id)
}
