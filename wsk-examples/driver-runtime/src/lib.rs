//! The driver runtime of the wsk-rs example drivers: what a `#![no_std]` Rust driver needs
//! besides WSK.
//!
//! - [`pool`]: the global allocator, over non-paged pool (`wsk_sys::pool`: `ExAllocatePool2`
//!   where the running system exports it, `ExAllocatePoolWithTag` before Windows 10 2004), so
//!   that `alloc` (and `wsk`'s buffers and completion blocks) can be used at any IRQL up to
//!   DISPATCH_LEVEL, on every Windows release from Windows 7.
//! - [`panic`]: the panic handler — the message goes to the debugger, then `KeBugCheckEx`
//!   (a driver cannot unwind, and continuing after a broken invariant corrupts the kernel).
//! - [`kprint!`]: formatted debug output through `DbgPrint`.
//! - [`parameters`]: the values of the service's `Parameters` registry key, the standard
//!   place for a driver's configuration; a bad value is reported by name and why.
//! - [`passive`]: futures polled at PASSIVE_LEVEL only, from a work item, for task work that
//!   should not run in completion routines (heavy cryptography, deep stacks).
//! - [`timer`]: delays and timeouts for tasks (backoff, idle timeouts, deadlines).
//! - [`random`]: random bytes from the kernel's generator (`BCryptGenRandom`), to seed a
//!   driver's own generator at PASSIVE_LEVEL.
//! - [`http`]: the URL, the request and the strict, streamed response parsing of the drivers
//!   that fetch a URL (over TCP or TLS).
//! - [`startup`]: the outcomes of the sockets `DriverEntry` has its tasks open, so that a
//!   driver that could open none fails to load.
//! - `frame_handler`: the personality routine the precompiled standard library names.
//! - [`export_driver_entry!`]: exports the driver's entry function as `DriverEntry`, which
//!   first looks up the pool routines of the running system (`wsk_sys::pool::initialize`).
//!
//! With the `host` feature the crate is built for user mode on `wsk-host`: std's allocator and
//! panic handler are used, and no `DriverEntry` symbol is exported (the host runner calls the
//! entry function itself).
#![no_std]

extern crate alloc;

pub mod debug_print;
pub mod entry;
#[cfg(all(windows, not(feature = "host")))]
pub mod frame_handler;
pub mod http;
#[cfg(not(feature = "host"))]
pub mod panic;
pub mod parameters;
pub mod passive;
pub mod pool;
pub mod random;
pub mod startup;
pub mod timer;

pub use parameters::Parameters;

/// Floating-point marker the MSVC toolchain expects in every image that uses floating-point
/// registers (`_fltused`); the CRT that normally defines it is not linked into drivers.
#[cfg(all(windows, not(feature = "host")))]
#[unsafe(no_mangle)]
#[used]
pub static _fltused: i32 = 0;

/// Exports `$entry` (an `unsafe extern "system" fn(PDRIVER_OBJECT, PUNICODE_STRING) ->
/// NTSTATUS`) as the image's `DriverEntry`, the entry point the linker is given. Without the
/// calling crate's `host` feature only: in user mode the runner calls `$entry` directly, and
/// several drivers can be linked into one program.
#[macro_export]
macro_rules! export_driver_entry {
    ($entry:path) => {
        /// The image's entry point: the I/O manager calls it at PASSIVE_LEVEL when the driver
        /// is loaded.
        ///
        /// # Safety
        /// Called by the I/O manager only, with its driver object and registry path.
        #[cfg(not(feature = "host"))]
        #[unsafe(no_mangle)]
        pub unsafe extern "system" fn DriverEntry(
            driver: $crate::__private::PDRIVER_OBJECT,
            registry_path: $crate::__private::PUNICODE_STRING,
        ) -> $crate::__private::NTSTATUS {
            // DriverEntry runs at PASSIVE_LEVEL, where the pool routines can be looked up.
            let _ = $crate::__private::pool::initialize();
            // SAFETY: forwarded from the I/O manager's call.
            unsafe { $entry(driver, registry_path) }
        }
    };
}

#[doc(hidden)]
pub mod __private {
    pub use wsk_sys::{NTSTATUS, PDRIVER_OBJECT, PUNICODE_STRING, pool};
}
