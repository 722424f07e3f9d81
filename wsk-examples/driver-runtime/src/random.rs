//! Random bytes from the kernel's generator: `BCryptGenRandom` with
//! `BCRYPT_USE_SYSTEM_PREFERRED_RNG` (CNG, exported by `cng.sys`, imported through `cng.lib`;
//! Windows 7 and later — on Windows Vista the kernel's CNG was in `ksecdd.sys`).
//!
//! The flag is documented for PASSIVE_LEVEL only: draw a seed in `DriverEntry` and expand it
//! with a cryptographically secure generator (ChaCha20, say) for what runs at DISPATCH_LEVEL.

use wsk::irql::Irql;
use wsk::{Error, Result};
use wsk_sys::{NTSTATUS, PUCHAR, PVOID, ULONG};

/// `BCRYPT_USE_SYSTEM_PREFERRED_RNG` (`bcrypt.h`).
const BCRYPT_USE_SYSTEM_PREFERRED_RNG: ULONG = 0x0000_0002;

unsafe extern "system" {
    /// `BCryptGenRandom` (`bcrypt.h`), from `cng.sys`.
    fn BCryptGenRandom(
        hAlgorithm: PVOID,
        pbBuffer: PUCHAR,
        cbBuffer: ULONG,
        dwFlags: ULONG,
    ) -> NTSTATUS;
}

/// Fills `bytes` from the system's preferred random number generator (a NIST SP 800-90
/// CTR_DRBG seeded by the kernel's entropy sources). PASSIVE_LEVEL only:
/// [`Error::IRQL_TOO_HIGH`] above it, [`Error::INVALID_BUFFER_SIZE`] for more than
/// `u32::MAX` bytes, and the status of `BCryptGenRandom` if it fails.
pub fn fill(bytes: &mut [u8]) -> Result<()> {
    if Irql::current() > Irql::PASSIVE {
        return Err(Error::IRQL_TOO_HIGH);
    }
    let length = ULONG::try_from(bytes.len()).map_err(|_| Error::INVALID_BUFFER_SIZE)?;
    // SAFETY: a NULL algorithm handle with BCRYPT_USE_SYSTEM_PREFERRED_RNG, at PASSIVE_LEVEL
    // (checked); the buffer is writable for `length` bytes.
    let status = unsafe {
        BCryptGenRandom(
            core::ptr::null_mut(),
            bytes.as_mut_ptr(),
            length,
            BCRYPT_USE_SYSTEM_PREFERRED_RNG,
        )
    };
    Error::check(status)
}
