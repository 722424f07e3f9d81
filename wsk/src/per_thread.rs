//! What this crate must know about a kernel thread running below DISPATCH_LEVEL — whether it
//! is inside a callback scope ([`crate::lifecycle::callback`]), and in how many task polls —
//! kept in a small table keyed
//! by `PsGetCurrentThreadId` (the kernel has no thread-local storage for drivers).
//!
//! A record belongs to one thread: only that thread changes it, and only below
//! DISPATCH_LEVEL; others only read the `thread` field while looking for their own. Code at
//! DISPATCH_LEVEL or above never changes a record — a scope entered there counts nothing, and
//! the crate's spin locks count per processor ([`crate::sync`]) — so a DPC, which runs on
//! whatever thread it interrupted and borrows its identifier, cannot touch that thread's
//! record halfway through a change. (A kernel APC interrupting the thread is the thread
//! itself: whatever it changes, it finishes before the thread goes on.) A thread inside a
//! callback scope below DISPATCH_LEVEL is the one that entered it: the identifier is stable
//! for as long as its record is in use. The record is freed when the count is back to zero.

use core::sync::atomic::{AtomicUsize, Ordering};

use wsk_sys::PsGetCurrentThreadId;

/// How many threads can have a record at once: threads inside a callback scope below
/// DISPATCH_LEVEL (the provider's completing threads, task polls in a spawning thread or a
/// work item). Past this, callback scopes raise the IRQL instead (see `CallbackScope`).
const RECORDS: usize = 64;

/// One thread's record.
pub(crate) struct ThreadRecord {
    /// The owner's `PsGetCurrentThreadId`; 0 when free.
    thread: AtomicUsize,
    /// Depth of callback scopes entered below DISPATCH_LEVEL.
    pub(crate) callback_depth: AtomicUsize,
    /// How many of those scopes are task polls ([`crate::task`]).
    pub(crate) task_polls: AtomicUsize,
}

static TABLE: [ThreadRecord; RECORDS] = [const {
    ThreadRecord {
        thread: AtomicUsize::new(0),
        callback_depth: AtomicUsize::new(0),
        task_polls: AtomicUsize::new(0),
    }
}; RECORDS];

/// Number of records in use: 0 makes a lookup one load.
static IN_USE: AtomicUsize = AtomicUsize::new(0);

/// The calling thread's identifier.
pub(crate) fn current_thread() -> usize {
    // SAFETY: PsGetCurrentThreadId has no preconditions (any IRQL).
    unsafe { PsGetCurrentThreadId() as usize }
}

/// The calling thread's record, if it has one. The check that no thread has one is inlined;
/// the search is not.
#[inline]
pub(crate) fn find() -> Option<&'static ThreadRecord> {
    if IN_USE.load(Ordering::Acquire) == 0 {
        return None;
    }
    search()
}

/// The calling thread's record, searched for in the table.
#[inline(never)]
fn search() -> Option<&'static ThreadRecord> {
    let thread = current_thread();
    TABLE
        .iter()
        .find(|record| record.thread.load(Ordering::Acquire) == thread)
}

/// The calling thread's record, claimed if it has none; `None` when the table is full.
/// Below DISPATCH_LEVEL only (see the module documentation).
pub(crate) fn find_or_claim() -> Option<&'static ThreadRecord> {
    debug_assert!(wsk_sys::KeGetCurrentIrql() < wsk_sys::typed::DISPATCH_LEVEL);
    if let Some(record) = find() {
        return Some(record);
    }
    let thread = current_thread();
    let record = TABLE.iter().find(|record| {
        record
            .thread
            .compare_exchange(0, thread, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    })?;
    IN_USE.fetch_add(1, Ordering::AcqRel);
    Some(record)
}

/// Frees the calling thread's record once nothing is counted in it. Below DISPATCH_LEVEL
/// only.
pub(crate) fn release_if_unused(record: &ThreadRecord) {
    debug_assert!(wsk_sys::KeGetCurrentIrql() < wsk_sys::typed::DISPATCH_LEVEL);
    if record.callback_depth.load(Ordering::Relaxed) == 0 {
        IN_USE.fetch_sub(1, Ordering::AcqRel);
        record.thread.store(0, Ordering::Release);
    }
}
