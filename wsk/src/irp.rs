//! [`Irp`]: an owned I/O request packet.

use core::ptr::NonNull;

use wsk_sys::*;
// With either kernel base, typed as the parameters that take them.
use wsk_sys::typed::FALSE;

use crate::irql::{Irql, require_at_most};
use crate::{Error, Result};

/// An I/O request packet for a WSK call: one this driver allocated (`IoAllocateIrp(1,
/// FALSE)`, [`Irp::new`]), with the one stack location a WSK call needs, or one forwarded to
/// it by the I/O manager or a higher driver ([`Irp::from_forwarded`]), with a stack location
/// left below the driver's own.
///
/// # Invariants
/// `ptr` points to a live IRP owned by this value: no WSK call holds it (an `Irp` given to a
/// WSK call is owned by the operation until the completion routine has run). If `forwarded`
/// is false it was allocated by `IoAllocateIrp` with one stack location and is freed exactly
/// once, on drop; if it is true its current stack location is this driver's, with one below
/// it, and it is completed (`IoCompleteRequest`) exactly once — by [`Irp::complete`], on
/// drop, or by the completion routine of an operation abandoned with it — unless
/// [`Irp::into_raw`] hands it back.
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
    forwarded: bool,
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
            .map(|ptr| Irp {
                ptr,
                forwarded: false,
            })
            .ok_or(Error::INSUFFICIENT_RESOURCES)
    }

    /// An IRP this driver was given (by the I/O manager or a higher driver, in a dispatch
    /// routine), to carry a WSK request zero-copy on behalf of its originator: WSK accepts
    /// such an IRP when it has a stack location left below the driver's
    /// ([`Error::INVALID_PARAMETER`] otherwise). Give it to an operation with
    /// [`Op::with_irp`](crate::Op::with_irp); the operation hands it back, and
    /// [`Irp::complete`] completes it to its originator. IRQL <= DISPATCH_LEVEL.
    ///
    /// Ownership: the value owns the request until it is completed. It is completed exactly
    /// once: by [`Irp::complete`]; or when the value is dropped, with its `IoStatus` as it
    /// stands (the last WSK request's result); or, when an operation is abandoned in flight
    /// with it (dropped, or waited for above APC_LEVEL), by the operation's completion
    /// routine, which lets completion go on up to the originator with WSK's result. A
    /// forgotten operation never completes it (a leak: the originator waits for good).
    /// [`Irp::into_raw`] gives it back uncompleted.
    ///
    /// # Safety
    /// - `irp` is a live IRP this driver received and has not completed, passed on or freed,
    ///   and its current stack location is this driver's (as in the dispatch routine that
    ///   received it); nothing else uses it until this value hands it back or completes it;
    /// - if the dispatch routine returns `STATUS_PENDING`, it called `IoMarkIrpPending` first;
    /// - its originator accepts its completion at IRQL <= DISPATCH_LEVEL, from any thread.
    pub unsafe fn from_forwarded(irp: NonNull<IRP>) -> Result<Irp> {
        require_at_most(Irql::DISPATCH)?;
        // SAFETY: a live IRP (the caller's contract); the field is plain data.
        if unsafe { (*irp.as_ptr()).CurrentLocation } <= 1 {
            return Err(Error::INVALID_PARAMETER);
        }
        Ok(Irp {
            ptr: irp,
            forwarded: true,
        })
    }

    /// Whether the IRP's cancel flag is set: by its originator (`IoCancelIrp` on a forwarded
    /// request), or by a cancel of a request this crate issued with it (a deadline, a close),
    /// which the next `IoReuseIrp` clears on an IRP this driver allocated.
    pub fn is_cancelled(&self) -> bool {
        // SAFETY: the IRP is owned by this value and not in flight: nobody writes it.
        unsafe { (*self.ptr.as_ptr()).Cancel != 0 }
    }

    /// Whether the IRP was forwarded to this driver ([`Irp::from_forwarded`]), not allocated
    /// by it.
    #[must_use]
    pub fn is_forwarded(&self) -> bool {
        self.forwarded
    }

    /// Completes a forwarded IRP to its originator (`IoCompleteRequest`, with a network
    /// priority boost), with `status` and `information` in its `IoStatus`. An IRP this driver
    /// allocated has no originator: it is handed back (`Err`). IRQL <= DISPATCH_LEVEL.
    pub fn complete(self, status: NTSTATUS, information: usize) -> core::result::Result<(), Irp> {
        if !self.forwarded {
            return Err(self);
        }
        let this = core::mem::ManuallyDrop::new(self);
        // SAFETY: a forwarded IRP owned by this value, not in flight; completed once (the
        // value is not dropped).
        unsafe {
            let irp = this.ptr.as_ptr();
            wsk_sys::io_status::set_status(&raw mut (*irp).IoStatus, status);
            (*irp).IoStatus.Information = information as ULONG_PTR;
            IoCompleteRequest(irp, IO_NETWORK_INCREMENT as CCHAR);
        }
        Ok(())
    }

    /// Gives the IRP back without freeing or completing it: the caller takes over (`IoFreeIrp`
    /// for one this driver allocated, `IoCompleteRequest` for a forwarded one).
    #[must_use]
    pub fn into_raw(self) -> NonNull<IRP> {
        core::mem::ManuallyDrop::new(self).ptr
    }

    /// The IRP, for passing to a WSK function.
    #[must_use]
    pub fn as_ptr(&self) -> PIRP {
        self.ptr.as_ptr()
    }

    /// Reinitialises the completed IRP for another request (`IoReuseIrp`), so no allocation
    /// is needed. A forwarded IRP is not the driver's to reinitialise and needs not be: its
    /// stack location is back at the driver's once a request completed. IRQL <=
    /// DISPATCH_LEVEL.
    #[inline]
    pub fn reuse(&mut self) {
        if !self.forwarded {
            // SAFETY: by the invariant the IRP is owned by `self`, allocated by this driver
            // and not in flight.
            unsafe { IoReuseIrp(self.ptr.as_ptr(), STATUS_UNSUCCESSFUL) };
        }
    }

    /// Final status of the last request (`IoStatus.Status`).
    #[must_use]
    pub fn status(&self) -> NTSTATUS {
        // SAFETY: the IRP is live; the status field is plain data.
        unsafe { io_status::status(&raw const (*self.ptr.as_ptr()).IoStatus) }
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
        // SAFETY: by the invariant the IRP is owned by `self`, not in flight, and freed (or,
        // forwarded, completed with its status as it stands) once.
        unsafe {
            if self.forwarded {
                IoCompleteRequest(self.ptr.as_ptr(), IO_NO_INCREMENT as CCHAR);
            } else {
                IoFreeIrp(self.ptr.as_ptr());
            }
        }
    }
}

impl core::fmt::Debug for Irp {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Irp")
            .field("ptr", &self.ptr)
            .field("forwarded", &self.forwarded)
            .finish()
    }
}
