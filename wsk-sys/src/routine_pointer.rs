//! Kernel routine pointers made from Rust functions, with either kernel base. Not WDK items.
//!
//! A driver writes its completion and work item routines as `unsafe extern "system" fn`, the
//! type of this crate's own [`PIO_COMPLETION_ROUTINE`](crate::PIO_COMPLETION_ROUTINE) and
//! [`PIO_WORKITEM_ROUTINE_EX`](crate::PIO_WORKITEM_ROUTINE_EX). `wdk-sys` (feature `wdk-sys`)
//! declares the same pointer types with the `"C"` ABI string, the same calling convention on
//! the 64-bit targets but another Rust type, which a `"system"` function does not coerce to.
//! The macros here turn a routine into the pointer the base declares:
//! - own base: `Some(routine)`, nothing else;
//! - `wdk-sys` base: `Some(forward)`, where `forward` is an `unsafe extern "C" fn` of the
//!   pointer's signature that calls `routine` with its arguments (a direct call of a
//!   `"system"` function, so no function pointer is transmuted or called through a type it was
//!   not made with).
//!
//! ```
//! use wsk_sys::*;
//!
//! unsafe extern "system" fn on_complete(_: PDEVICE_OBJECT, _: PIRP, _: PVOID) -> NTSTATUS {
//!     STATUS_MORE_PROCESSING_REQUIRED
//! }
//! let routine: PIO_COMPLETION_ROUTINE = wsk_sys::io_completion_routine!(on_complete);
//! assert!(routine.is_some());
//! ```

/// The [`PIO_COMPLETION_ROUTINE`](crate::PIO_COMPLETION_ROUTINE) of a function
/// `unsafe extern "system" fn(PDEVICE_OBJECT, PIRP, PVOID) -> NTSTATUS` (see the
/// [module](crate::routine_pointer)).
#[cfg(not(all(windows, feature = "wdk-sys")))]
#[macro_export]
macro_rules! io_completion_routine {
    ($routine:path) => {
        ::core::option::Option::Some($routine)
    };
}

/// The [`PIO_COMPLETION_ROUTINE`](crate::PIO_COMPLETION_ROUTINE) of a function
/// `unsafe extern "system" fn(PDEVICE_OBJECT, PIRP, PVOID) -> NTSTATUS` (see the
/// [module](crate::routine_pointer)).
#[cfg(all(windows, feature = "wdk-sys"))]
#[macro_export]
macro_rules! io_completion_routine {
    ($routine:path) => {{
        unsafe extern "C" fn forward(
            device_object: $crate::PDEVICE_OBJECT,
            irp: $crate::PIRP,
            context: $crate::PVOID,
        ) -> $crate::NTSTATUS {
            // SAFETY: the I/O manager calls this with the arguments it calls a completion
            // routine with, which are forwarded unchanged to the routine.
            unsafe { $routine(device_object, irp, context) }
        }
        ::core::option::Option::Some(forward)
    }};
}

/// The [`PIO_WORKITEM_ROUTINE_EX`](crate::PIO_WORKITEM_ROUTINE_EX) of a function
/// `unsafe extern "system" fn(PVOID, PVOID, PIO_WORKITEM)` (see the
/// [module](crate::routine_pointer)).
#[cfg(not(all(windows, feature = "wdk-sys")))]
#[macro_export]
macro_rules! io_workitem_routine_ex {
    ($routine:path) => {
        ::core::option::Option::Some($routine)
    };
}

/// The [`PIO_WORKITEM_ROUTINE_EX`](crate::PIO_WORKITEM_ROUTINE_EX) of a function
/// `unsafe extern "system" fn(PVOID, PVOID, PIO_WORKITEM)` (see the
/// [module](crate::routine_pointer)).
#[cfg(all(windows, feature = "wdk-sys"))]
#[macro_export]
macro_rules! io_workitem_routine_ex {
    ($routine:path) => {{
        unsafe extern "C" fn forward(
            io_object: $crate::PVOID,
            context: $crate::PVOID,
            io_work_item: $crate::PIO_WORKITEM,
        ) {
            // SAFETY: the system worker thread calls this with the arguments it calls a work
            // item routine with, which are forwarded unchanged to the routine.
            unsafe { $routine(io_object, context, io_work_item) }
        }
        ::core::option::Option::Some(forward)
    }};
}

/// The [`PKDEFERRED_ROUTINE`](crate::PKDEFERRED_ROUTINE) of a function
/// `unsafe extern "system" fn(PKDPC, PVOID, PVOID, PVOID)`, a DPC's routine (see the
/// [module](crate::routine_pointer)).
#[cfg(not(all(windows, feature = "wdk-sys")))]
#[macro_export]
macro_rules! deferred_routine {
    ($routine:path) => {
        ::core::option::Option::Some($routine)
    };
}

/// The [`PKDEFERRED_ROUTINE`](crate::PKDEFERRED_ROUTINE) of a function
/// `unsafe extern "system" fn(PKDPC, PVOID, PVOID, PVOID)`, a DPC's routine (see the
/// [module](crate::routine_pointer)).
#[cfg(all(windows, feature = "wdk-sys"))]
#[macro_export]
macro_rules! deferred_routine {
    ($routine:path) => {{
        unsafe extern "C" fn forward(
            dpc: $crate::PKDPC,
            deferred_context: $crate::PVOID,
            system_argument1: $crate::PVOID,
            system_argument2: $crate::PVOID,
        ) {
            // SAFETY: the kernel calls this with the arguments it calls a DPC routine with,
            // which are forwarded unchanged to the routine.
            unsafe { $routine(dpc, deferred_context, system_argument1, system_argument2) }
        }
        ::core::option::Option::Some(forward)
    }};
}
