//! [`Irp`]: an owned I/O request packet.

use core::ptr::NonNull;

use wsk_sys::*;

use crate::irql::{Irql, require_at_most};
use crate::{Error, Result};

/// An I/O request packet this driver allocated (`IoAllocateIrp(1, FALSE)`), with the one
/// stack location a WSK call needs.
///
/// # Invariants
/// `ptr` points to a live IRP allocated by `IoAllocateIrp` with one stack location, owned
/// by this value: no WSK call holds it (an `Irp` given to a WSK call is owned by the
/// operation until the completion routine has run). It is freed exactly once, on drop.
///
/// Ownership at each moment:
/// - idle: owned by this value (inside an operation's completion block between requests);
/// - in flight: owned by the WSK provider from the call until it completes the IRP; the
///   completion block (and with it this value) cannot be freed before the completion
///   routine has run, whatever happens to the operation's future;
/// - completed: owned again by this value; [`Irp::reuse`] prepares it for the next request,
///   so steady-state I/O allocates no IRP.
///
/// Every socket's requests use IRPs of its own; a driver that keeps IRPs of its own gives one
/// to any operation with [`Op::with_irp`](crate::Op::with_irp), and gets it back, completed,
/// with the result.
pub struct Irp {
    ptr: NonNull<IRP>,
}

// SAFETY: an IRP is plain kernel memory, usable from any thread; ownership rules above are
// enforced by the types that hold `Irp`s.
unsafe impl Send for Irp {}
// SAFETY: shared references only read the IRP's status fields.
unsafe impl Sync for Irp {}

impl Irp {
    /// Allocates an IRP with one stack location. Fails with
    /// [`Error::INSUFFICIENT_RESOURCES`] when the kernel has none to give.
    /// IRQL <= DISPATCH_LEVEL.
    pub fn new() -> Result<Irp> {
        require_at_most(Irql::DISPATCH)?;
        // SAFETY: IoAllocateIrp has no preconditions beyond the IRQL checked above.
        let raw = unsafe { IoAllocateIrp(1, FALSE) };
        NonNull::new(raw)
            .map(|ptr| Irp { ptr })
            .ok_or(Error::INSUFFICIENT_RESOURCES)
    }

    /// The IRP, for passing to a WSK function.
    #[must_use]
    pub fn as_ptr(&self) -> PIRP {
        self.ptr.as_ptr()
    }

    /// Reinitialises the completed IRP for another request (`IoReuseIrp`), so no allocation
    /// is needed. IRQL <= DISPATCH_LEVEL.
    pub fn reuse(&mut self) {
        // SAFETY: by the invariant the IRP is owned by `self` and not in flight.
        unsafe { IoReuseIrp(self.ptr.as_ptr(), STATUS_UNSUCCESSFUL) };
    }

    /// Final status of the last request (`IoStatus.Status`).
    #[must_use]
    pub fn status(&self) -> NTSTATUS {
        // SAFETY: the IRP is live; the status field is plain data.
        unsafe { (*self.ptr.as_ptr()).IoStatus.u.Status }
    }

    /// Request-dependent result of the last request (`IoStatus.Information`): bytes
    /// transferred, or a pointer such as a new socket.
    #[must_use]
    pub fn information(&self) -> usize {
        // SAFETY: the IRP is live; the field is plain data.
        unsafe { (*self.ptr.as_ptr()).IoStatus.Information as usize }
    }
}

impl Drop for Irp {
    fn drop(&mut self) {
        // SAFETY: by the invariant the IRP is owned by `self`, not in flight, and freed once.
        unsafe { IoFreeIrp(self.ptr.as_ptr()) };
    }
}

impl core::fmt::Debug for Irp {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Irp").field("ptr", &self.ptr).finish()
    }
}
