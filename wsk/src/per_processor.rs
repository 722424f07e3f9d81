//! What this crate must know about the code running on a processor at DISPATCH_LEVEL — how
//! many of the crate's spin locks it holds and the IRQL to go back to ([`crate::sync`]),
//! how many task polls it is nested in ([`crate::task`]) — kept in a table indexed by
//! `KeGetCurrentProcessorNumberEx`.
//!
//! # Invariants
//! A record changes only while its processor runs at DISPATCH_LEVEL, and only by the code
//! that raised it there and keeps the processor until it lowers the IRQL (nothing else runs
//! on the processor meanwhile: a DPC or another thread only once the IRQL is lowered; an
//! interrupt, above DISPATCH_LEVEL, uses none of this). That code puts the record back as it
//! found it — 0 — before it lowers the IRQL. So a record describes one holder at a time, and
//! reads 0 whenever its processor runs below DISPATCH_LEVEL.

use core::sync::atomic::{AtomicU32, Ordering};

use wsk_sys::KeGetCurrentProcessorNumberEx;

/// The most processors Windows runs on: 32 processor groups of 64
/// (`MAXIMUM_PROC_PER_GROUP`). `KeGetCurrentProcessorNumberEx` answers below it.
const MAX_PROCESSORS: usize = 2048;

/// One processor's record.
pub(crate) struct ProcessorRecord {
    /// The crate's spin locks held (above the low 8 bits), and the IRQL the first of them
    /// raised from (the low 8 bits).
    locks: AtomicU32,
    /// Task polls running, nested in one another.
    polls: AtomicU32,
}

static RECORDS: [ProcessorRecord; MAX_PROCESSORS] = [const {
    ProcessorRecord {
        locks: AtomicU32::new(0),
        polls: AtomicU32::new(0),
    }
}; MAX_PROCESSORS];

/// One lock in [`ProcessorRecord::locks`].
const ONE_LOCK: u32 = 1 << 8;

/// The record of the processor the caller runs on; `None` only for a processor index
/// beyond the most processors Windows runs on, which it does not give. IRQL >=
/// DISPATCH_LEVEL: the caller keeps the processor until it lowers the IRQL.
pub(crate) fn current() -> Option<&'static ProcessorRecord> {
    // SAFETY: a null processor number is allowed (only the index is asked for).
    let index = unsafe { KeGetCurrentProcessorNumberEx(core::ptr::null_mut()) };
    RECORDS.get(index as usize)
}

impl ProcessorRecord {
    // Read-modify-write operations throughout, though on Windows the record has one holder at
    // a time: a kernel that does not keep a thread at DISPATCH_LEVEL on its processor (Wine's,
    // whose `KeGetCurrentProcessorNumberEx` answers 0 to every thread) then gets imprecise
    // counts, never a torn one or an underflow.

    /// Counts a spin lock taken, which raised from `entry_irql`.
    pub(crate) fn lock_taken(&self, entry_irql: u8) {
        if self.locks.fetch_add(ONE_LOCK, Ordering::AcqRel) < ONE_LOCK {
            // The first lock: the IRQL the last release goes back to.
            self.locks.fetch_or(u32::from(entry_irql), Ordering::AcqRel);
        }
    }

    /// Uncounts a spin lock released; returns the IRQL to go back to when it was the last.
    pub(crate) fn lock_released(&self) -> Option<u8> {
        let held = self.locks.fetch_sub(ONE_LOCK, Ordering::AcqRel);
        if held < ONE_LOCK {
            // Not counted here (see above): undone, and nothing lowered.
            self.locks.fetch_add(ONE_LOCK, Ordering::AcqRel);
            return None;
        }
        if held < 2 * ONE_LOCK {
            // The last lock: the record goes back to 0, the IRQL to its base.
            self.locks.store(0, Ordering::Release);
            Some((held & 0xff) as u8)
        } else {
            None
        }
    }

    /// Whether the code running on the processor holds one of the crate's spin locks.
    pub(crate) fn holds_locks(&self) -> bool {
        self.locks.load(Ordering::Acquire) >= ONE_LOCK
    }

    /// How many task polls the code running on the processor is nested in.
    pub(crate) fn polls(&self) -> u32 {
        self.polls.load(Ordering::Acquire)
    }

    /// Counts a task poll entered (`true`) or left (`false`).
    pub(crate) fn count_poll(&self, entered: bool) {
        if entered {
            self.polls.fetch_add(1, Ordering::AcqRel);
        } else {
            let _ = self
                .polls
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |polls| {
                    polls.checked_sub(1)
                });
        }
    }
}
