//! What `DriverEntry` learns of the sockets its tasks open: [`Openings`] counts each
//! socket's outcome (opened, or failed with an error) as the tasks report it from their
//! completion routines, and lets `DriverEntry` wait, with a deadline, until every one has
//! one — so that a driver that could open nothing fails to load instead of staying loaded
//! serving nothing.

use alloc::sync::Arc;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

use wsk::Error;
use wsk_sys::*;

/// # Invariants
/// `done` is signalled once `pending` reaches zero.
struct Core {
    pending: AtomicUsize,
    opened: AtomicUsize,
    failed: AtomicUsize,
    last_error: AtomicI32,
    done: UnsafeCell<KEVENT>,
}

// SAFETY: the event is a kernel object usable from any thread; the rest is atomic.
unsafe impl Send for Core {}
// SAFETY: as above.
unsafe impl Sync for Core {}

/// The outcomes of the sockets a driver opens at start (see the module documentation).
pub struct Openings {
    core: Arc<Core>,
}

/// The outcomes counted by [`Openings::wait`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Sockets opened.
    pub opened: usize,
    /// Sockets that could not be opened.
    pub failed: usize,
    /// Sockets with no outcome yet (still being opened when the wait ended).
    pub pending: usize,
    /// The error of the last socket that failed, if any.
    pub last_error: Option<Error>,
}

impl Outcome {
    /// Whether every socket failed (none opened, none still pending, at least one tried).
    #[must_use]
    pub fn nothing_opened(&self) -> bool {
        self.opened == 0 && self.pending == 0 && self.failed > 0
    }
}

impl Openings {
    /// Outcomes for `count` sockets, each to be reported through one [`Opening`].
    #[must_use]
    pub fn new(count: usize) -> Openings {
        let core = Arc::new(Core {
            pending: AtomicUsize::new(count),
            opened: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            last_error: AtomicI32::new(STATUS_SUCCESS),
            done: UnsafeCell::new(KEVENT::default()),
        });
        let initial = if count == 0 { TRUE } else { FALSE };
        // SAFETY: the event lives in the shared core, in non-paged memory, not in use yet.
        unsafe { KeInitializeEvent(core.done.get(), NotificationEvent, initial) };
        Openings { core }
    }

    /// The reporter of one socket's outcome (hand one to each task; at most `count`).
    #[must_use]
    pub fn reporter(&self) -> Opening {
        Opening {
            core: Some(Arc::clone(&self.core)),
        }
    }

    /// Waits until every socket has an outcome, for at most `timeout_ms` milliseconds, and
    /// counts them. PASSIVE_LEVEL (`DriverEntry`), outside tasks.
    #[must_use]
    pub fn wait(&self, timeout_ms: u32) -> Outcome {
        let mut interval = LARGE_INTEGER {
            QuadPart: -(i64::from(timeout_ms) * 10_000),
        };
        if KeGetCurrentIrql() == PASSIVE_LEVEL as KIRQL {
            // SAFETY: the event lives in the core, which `self` keeps alive; PASSIVE_LEVEL
            // allows waiting (checked).
            unsafe {
                KeWaitForSingleObject(
                    self.core.done.get().cast(),
                    Executive,
                    KernelMode,
                    FALSE,
                    &raw mut interval,
                );
            }
        }
        // The counts decide, not the wait's status: an outcome not reported yet is pending.
        let status = self.core.last_error.load(Ordering::Acquire);
        Outcome {
            opened: self.core.opened.load(Ordering::Acquire),
            failed: self.core.failed.load(Ordering::Acquire),
            pending: self.core.pending.load(Ordering::Acquire),
            last_error: (status != STATUS_SUCCESS).then(|| Error::from_status(status)),
        }
    }
}

/// Reports one socket's outcome; dropped without a report, it counts as failed
/// (`STATUS_CANCELLED`). Any IRQL <= DISPATCH_LEVEL.
pub struct Opening {
    core: Option<Arc<Core>>,
}

impl Opening {
    /// The socket was opened.
    pub fn opened(mut self) {
        if let Some(core) = self.core.take() {
            core.opened.fetch_add(1, Ordering::AcqRel);
            finish(&core);
        }
    }

    /// The socket could not be opened.
    pub fn failed(mut self, error: Error) {
        if let Some(core) = self.core.take() {
            fail(&core, error);
        }
    }
}

fn fail(core: &Core, error: Error) {
    core.last_error.store(error.status(), Ordering::Release);
    core.failed.fetch_add(1, Ordering::AcqRel);
    finish(core);
}

fn finish(core: &Core) {
    if core.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
        // SAFETY: the event lives in the core; KeSetEvent is callable at DISPATCH_LEVEL.
        unsafe { KeSetEvent(core.done.get(), IO_NO_INCREMENT.into(), FALSE) };
    }
}

impl Drop for Opening {
    fn drop(&mut self) {
        if let Some(core) = self.core.take() {
            fail(&core, Error::CANCELLED);
        }
    }
}
