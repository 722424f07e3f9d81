//! `BCryptGenRandom` (the kernel's CNG, `cng.sys`) over the host's random source.

use wsk_sys::*;

/// `BCRYPT_USE_SYSTEM_PREFERRED_RNG`: the system's preferred generator; the algorithm handle
/// must be NULL. PASSIVE_LEVEL only.
const BCRYPT_USE_SYSTEM_PREFERRED_RNG: ULONG = 0x0000_0002;

/// `BCryptGenRandom`, as kernel callers may use it without an algorithm handle: `hAlgorithm`
/// NULL with `BCRYPT_USE_SYSTEM_PREFERRED_RNG`, at PASSIVE_LEVEL (a higher IRQL is reported
/// by the verifier, as Windows documents the flag for PASSIVE_LEVEL only). Fills the buffer
/// from the host's operating system generator (`getrandom`).
#[unsafe(no_mangle)]
pub unsafe extern "system" fn BCryptGenRandom(
    hAlgorithm: PVOID,
    pbBuffer: PUCHAR,
    cbBuffer: ULONG,
    dwFlags: ULONG,
) -> NTSTATUS {
    if !crate::verifier::require_irql("BCryptGenRandom", PASSIVE_LEVEL as KIRQL) {
        return STATUS_INVALID_DEVICE_STATE;
    }
    if !hAlgorithm.is_null() || dwFlags & BCRYPT_USE_SYSTEM_PREFERRED_RNG == 0 {
        // No algorithm provider can be opened on the host.
        return STATUS_INVALID_HANDLE;
    }
    if dwFlags & !BCRYPT_USE_SYSTEM_PREFERRED_RNG & !1 != 0 {
        return STATUS_INVALID_PARAMETER;
    }
    if cbBuffer == 0 {
        return STATUS_SUCCESS;
    }
    if pbBuffer.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: the caller gives a writable buffer of `cbBuffer` bytes.
    let buffer = unsafe { std::slice::from_raw_parts_mut(pbBuffer, cbBuffer as usize) };
    match getrandom::fill(buffer) {
        Ok(()) => STATUS_SUCCESS,
        Err(_) => STATUS_UNSUCCESSFUL,
    }
}
