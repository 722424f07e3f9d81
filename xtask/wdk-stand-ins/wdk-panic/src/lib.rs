//! Stand-in for `wdk-panic` 0.5: the panic handler of kernel drivers (a bug check in the real
//! crate), for `extern crate wdk_panic;`.
#![no_std]

/// Spins: the stand-in is type-checked, never run.
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
