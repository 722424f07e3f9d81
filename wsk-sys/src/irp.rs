//! The IRP macros and inline routines of `wdm.h` that bindgen cannot produce.
//!
//! A WSK client allocates an IRP with one stack location ([`IoAllocateIrp`]`(1, FALSE)`),
//! registers its completion routine in the *next* stack location with
//! [`IoSetCompletionRoutine`], and hands the IRP to a WSK function, which uses that location.
//!
//! [`IoAllocateIrp`]: crate::IoAllocateIrp

use core::sync::atomic::{AtomicPtr, Ordering};

use crate::{
    CCHAR, IO_STACK_LOCATION, IRP, IofCompleteRequest, PDRIVER_CANCEL, PIO_COMPLETION_ROUTINE,
    PIO_STACK_LOCATION, PIRP, PVOID, SL_INVOKE_ON_CANCEL, SL_INVOKE_ON_ERROR, SL_INVOKE_ON_SUCCESS,
    SL_PENDING_RETURNED, UCHAR, USHORT,
};

/// The IRP's current stack location member: `Tail.Overlay.Packet.Stack.CurrentStackLocation`
/// in this crate's base, an anonymous member in `wdk-sys`'s.
///
/// # Safety
/// `irp` must point to a valid IRP.
#[inline]
unsafe fn current_stack_location(irp: PIRP) -> *mut PIO_STACK_LOCATION {
    // SAFETY: the caller guarantees `irp` is valid; only the member's address is taken.
    unsafe {
        #[cfg(not(all(windows, feature = "wdk-sys")))]
        let member = core::ptr::addr_of_mut!((*irp).Tail.Overlay.Packet.Stack.CurrentStackLocation);
        #[cfg(all(windows, feature = "wdk-sys"))]
        let member = core::ptr::addr_of_mut!(
            (*irp)
                .Tail
                .Overlay
                .__bindgen_anon_2
                .__bindgen_anon_1
                .CurrentStackLocation
        );
        member
    }
}

/// Size in bytes of an IRP with `stack_size` stack locations. WDK: `IoSizeOfIrp`.
#[allow(non_snake_case)]
#[inline]
#[must_use]
pub const fn IoSizeOfIrp(stack_size: CCHAR) -> USHORT {
    (core::mem::size_of::<IRP>() + stack_size as usize * core::mem::size_of::<IO_STACK_LOCATION>())
        as USHORT
}

/// The stack location of the driver that currently owns the IRP. WDK:
/// `IoGetCurrentIrpStackLocation`.
///
/// # Safety
/// `irp` must point to a valid IRP.
#[allow(non_snake_case)]
#[inline]
#[must_use]
pub unsafe fn IoGetCurrentIrpStackLocation(irp: PIRP) -> PIO_STACK_LOCATION {
    // SAFETY: the caller guarantees `irp` is valid; reading the union member the I/O manager
    // maintains for every IRP that is not a mini-packet.
    unsafe { *current_stack_location(irp) }
}

/// The stack location of the next-lower driver: where a caller puts its completion
/// routine and the parameters for the driver it calls. WDK: `IoGetNextIrpStackLocation`.
///
/// # Safety
/// `irp` must point to a valid IRP with a stack location below the current one (an IRP
/// freshly allocated by `IoAllocateIrp` with a stack size of at least 1 qualifies).
#[allow(non_snake_case)]
#[inline]
#[must_use]
pub unsafe fn IoGetNextIrpStackLocation(irp: PIRP) -> PIO_STACK_LOCATION {
    // SAFETY: the caller guarantees a stack location exists below the current one, so the
    // result stays inside the IRP's allocation.
    unsafe { IoGetCurrentIrpStackLocation(irp).sub(1) }
}

/// Moves the IRP's current stack location down by one, as `IoCallDriver` does before
/// calling the next driver. WDK: `IoSetNextIrpStackLocation`.
///
/// # Safety
/// `irp` must point to a valid IRP whose current location is not the last one.
#[allow(non_snake_case)]
#[inline]
pub unsafe fn IoSetNextIrpStackLocation(irp: PIRP) {
    // SAFETY: the caller guarantees `irp` is valid and has a lower stack location.
    unsafe {
        (*irp).CurrentLocation -= 1;
        let stack = &mut *current_stack_location(irp);
        *stack = stack.sub(1);
    }
}

/// Moves the IRP's current stack location up by one, so that the next driver reuses the
/// current location. WDK: `IoSkipCurrentIrpStackLocation`.
///
/// # Safety
/// `irp` must point to a valid IRP whose current location is not the first one.
#[allow(non_snake_case)]
#[inline]
pub unsafe fn IoSkipCurrentIrpStackLocation(irp: PIRP) {
    // SAFETY: the caller guarantees `irp` is valid and has an upper stack location.
    unsafe {
        (*irp).CurrentLocation += 1;
        let stack = &mut *current_stack_location(irp);
        *stack = stack.add(1);
    }
}

/// Copies the current stack location's parameters to the next one, without the completion
/// routine. WDK: `IoCopyCurrentIrpStackLocationToNext`.
///
/// # Safety
/// As for [`IoGetNextIrpStackLocation`].
#[allow(non_snake_case)]
#[inline]
pub unsafe fn IoCopyCurrentIrpStackLocationToNext(irp: PIRP) {
    // SAFETY: the caller guarantees both locations exist; they do not overlap.
    unsafe {
        let current = IoGetCurrentIrpStackLocation(irp);
        let next = IoGetNextIrpStackLocation(irp);
        (*next).MajorFunction = (*current).MajorFunction;
        (*next).MinorFunction = (*current).MinorFunction;
        (*next).Flags = (*current).Flags;
        (*next).Parameters = (*current).Parameters;
        (*next).DeviceObject = (*current).DeviceObject;
        (*next).FileObject = (*current).FileObject;
        (*next).Control = 0;
    }
}

/// Registers `routine` to be called with `context` when the next-lower driver completes
/// the IRP, for the outcomes selected. WDK: `IoSetCompletionRoutine`.
///
/// # Safety
/// As for [`IoGetNextIrpStackLocation`]; `routine` and `context` must stay valid until the
/// routine has run.
#[allow(non_snake_case)]
#[inline]
pub unsafe fn IoSetCompletionRoutine(
    irp: PIRP,
    routine: PIO_COMPLETION_ROUTINE,
    context: PVOID,
    invoke_on_success: bool,
    invoke_on_error: bool,
    invoke_on_cancel: bool,
) {
    let mut control: UCHAR = 0;
    if invoke_on_success {
        control |= SL_INVOKE_ON_SUCCESS as UCHAR;
    }
    if invoke_on_error {
        control |= SL_INVOKE_ON_ERROR as UCHAR;
    }
    if invoke_on_cancel {
        control |= SL_INVOKE_ON_CANCEL as UCHAR;
    }
    // SAFETY: the caller guarantees the next stack location exists.
    unsafe {
        let next = IoGetNextIrpStackLocation(irp);
        (*next).CompletionRoutine = routine;
        (*next).Context = context;
        (*next).Control = control;
    }
}

/// Marks the IRP pending in the current stack location: a dispatch routine that returns
/// STATUS_PENDING calls it first. WDK: `IoMarkIrpPending`.
///
/// # Safety
/// `irp` must point to a valid IRP.
#[allow(non_snake_case)]
#[inline]
pub unsafe fn IoMarkIrpPending(irp: PIRP) {
    // SAFETY: the caller guarantees `irp` is valid; the current location is inside it.
    unsafe { (*IoGetCurrentIrpStackLocation(irp)).Control |= SL_PENDING_RETURNED as UCHAR };
}

/// The routine type of [`PDRIVER_CANCEL`], with the ABI its base spells it with (bindgen
/// gives the WDK's 64-bit routines `"C"`, the same calling convention as `"system"`).
#[cfg(not(all(windows, feature = "wdk-sys")))]
type CancelRoutine = unsafe extern "system" fn(crate::PDEVICE_OBJECT, PIRP);
#[cfg(all(windows, feature = "wdk-sys"))]
type CancelRoutine = unsafe extern "C" fn(crate::PDEVICE_OBJECT, PIRP);

/// Atomically sets the IRP's cancel routine and returns the previous one. WDK:
/// `IoSetCancelRoutine`.
///
/// # Safety
/// `irp` must point to a valid IRP.
#[allow(non_snake_case)]
#[inline]
pub unsafe fn IoSetCancelRoutine(irp: PIRP, routine: PDRIVER_CANCEL) -> PDRIVER_CANCEL {
    let new = routine.map_or(core::ptr::null_mut(), |f| f as *mut core::ffi::c_void);
    // SAFETY: the caller guarantees `irp` is valid; `CancelRoutine` is a pointer-sized,
    // pointer-aligned field that the kernel only ever accesses atomically.
    let old = unsafe {
        let field = core::ptr::addr_of_mut!((*irp).CancelRoutine).cast::<*mut core::ffi::c_void>();
        AtomicPtr::from_ptr(field).swap(new, Ordering::AcqRel)
    };
    if old.is_null() {
        None
    } else {
        // SAFETY: a non-null value in `CancelRoutine` was stored from a `PDRIVER_CANCEL`.
        Some(unsafe { core::mem::transmute::<*mut core::ffi::c_void, CancelRoutine>(old) })
    }
}

/// Completes an IRP on behalf of the driver that owns its current stack location. WDK:
/// `IoCompleteRequest` (a macro over `IofCompleteRequest`).
///
/// # Safety
/// `irp` must point to a valid IRP owned by the caller; it must not be touched afterwards.
#[allow(non_snake_case)]
#[inline]
pub unsafe fn IoCompleteRequest(irp: PIRP, priority_boost: CCHAR) {
    // SAFETY: forwarded from the caller.
    unsafe { IofCompleteRequest(irp, priority_boost) }
}
