//! The panic handler of a driver image: prints the panic with `DbgPrint`, then stops the
//! machine with `KeBugCheckEx(`[`RUST_PANIC_BUG_CHECK`]`, line, column, 0, 0)`.
//!
//! A driver has no unwinding and no process to end; a panic means an invariant of the code
//! broke, and running on with kernel memory in an unknown state is worse than a bug check
//! whose dump shows where it happened.

/// The bug-check code of a panic (a driver-defined code: "RP" for Rust panic, 0x0001).
pub const RUST_PANIC_BUG_CHECK: u32 = 0x5250_0001;

use wsk_sys::ULONG_PTR;

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let (line, column) = info
        .location()
        .map_or((0, 0), |l| (l.line() as ULONG_PTR, l.column() as ULONG_PTR));
    crate::kprint!("rust driver panic: {info}\n");
    // SAFETY: `KeBugCheckEx` may be called at any IRQL and does not return.
    unsafe { wsk_sys::KeBugCheckEx(RUST_PANIC_BUG_CHECK, line, column, 0, 0) }
}
