//! What this crate must know about the calling kernel thread — whether it is inside a
//! callback scope, how many of the crate's spin locks it holds and the IRQL to go back to —
//! kept in a small table keyed by `PsGetCurrentThreadId` (the kernel has no thread-local
//! storage for drivers).
//!
//! A record belongs to one thread: only that thread changes its counters; others only read
//! the `thread` field while looking for their own. A thread holding a spin lock runs at
//! DISPATCH_LEVEL and so stays on its processor, and a thread inside a callback scope below
//! DISPATCH_LEVEL is the one that entered it: the thread identifier is stable for as long as
//! its record is in use. The record is freed when both counters are back to zero.

use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use wsk_sys::{KIRQL, PsGetCurrentThreadId};

/// How many threads can have a record at once. A thread holding a spin lock runs at
/// DISPATCH_LEVEL, one per processor; threads inside a callback scope below DISPATCH_LEVEL
/// are the provider's completing threads. Past this, spin locks wait for a free record and
/// callback scopes raise the IRQL instead.
const RECORDS: usize = 64;

/// One thread's record.
pub(crate) struct ThreadRecord {
    /// The owner's `PsGetCurrentThreadId`; 0 when free.
    thread: AtomicUsize,
    /// Depth of callback scopes entered below DISPATCH_LEVEL.
    pub(crate) callback_depth: AtomicUsize,
    /// Number of this crate's spin locks held.
    pub(crate) spin_locks: AtomicUsize,
    /// The IRQL the first of those spin locks raised from.
    pub(crate) base_irql: AtomicU8,
}

static TABLE: [ThreadRecord; RECORDS] = [const {
    ThreadRecord {
        thread: AtomicUsize::new(0),
        callback_depth: AtomicUsize::new(0),
        spin_locks: AtomicUsize::new(0),
        base_irql: AtomicU8::new(0),
    }
}; RECORDS];

/// Number of records in use: 0 makes a lookup one load.
static IN_USE: AtomicUsize = AtomicUsize::new(0);

/// The calling thread's identifier.
pub(crate) fn current_thread() -> usize {
    // SAFETY: PsGetCurrentThreadId has no preconditions (any IRQL).
    unsafe { PsGetCurrentThreadId() as usize }
}

/// The calling thread's record, if it has one.
pub(crate) fn find() -> Option<&'static ThreadRecord> {
    if IN_USE.load(Ordering::Acquire) == 0 {
        return None;
    }
    let thread = current_thread();
    TABLE
        .iter()
        .find(|record| record.thread.load(Ordering::Acquire) == thread)
}

/// The calling thread's record, claimed if it has none; `None` when the table is full.
pub(crate) fn find_or_claim() -> Option<&'static ThreadRecord> {
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

/// Frees the calling thread's record once nothing is counted in it.
pub(crate) fn release_if_unused(record: &ThreadRecord) {
    if record.callback_depth.load(Ordering::Relaxed) == 0
        && record.spin_locks.load(Ordering::Relaxed) == 0
    {
        IN_USE.fetch_sub(1, Ordering::AcqRel);
        record.thread.store(0, Ordering::Release);
    }
}

/// The IRQL the thread's first held spin lock raised from: where to go back to when its last
/// is released.
pub(crate) fn base_irql(record: &ThreadRecord) -> KIRQL {
    record.base_irql.load(Ordering::Relaxed)
}
