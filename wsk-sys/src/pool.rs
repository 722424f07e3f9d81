//! Non-paged pool on every Windows release from Windows 7, without importing a routine the
//! oldest of them lacks.
//!
//! `ExAllocatePool2` (Windows 10 2004) is what Microsoft recommends, and it zeroes by
//! default; but a driver that imports it does not load on anything older. The routines here
//! look it up at run time with [`MmGetSystemRoutineAddress`] and use it when the running
//! system exports it; otherwise they call `ExAllocatePoolWithTag` with `NonPagedPoolNx`
//! (Windows 8 and later) or `NonPagedPool` (before Windows 8, where non-paged pool has no
//! no-execute variant), and zero the block themselves when asked for zeroed memory. Either
//! way the block is freed with `ExFreePoolWithTag` and the same tag.
//!
//! These are not WDK items: they are this crate's equivalent of the WDK's down-level pool
//! support (`ExAllocatePoolZero` with `POOL_ZERO_DOWN_LEVEL_SUPPORT`), which `wsk`'s buffers
//! and the example drivers' allocator use.
//!
//! # Resolution
//! The lookup needs PASSIVE_LEVEL. [`initialize`] does it (call it from `DriverEntry`); an
//! allocation made before that at PASSIVE_LEVEL does it itself. An allocation above
//! PASSIVE_LEVEL before any lookup uses `ExAllocatePoolWithTag(NonPagedPool)`, the one
//! choice valid on every release, and leaves the lookup for later.

use core::ffi::c_void;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, AtomicU8, Ordering};

use crate::{
    ExAllocatePoolWithTag, KeGetCurrentIrql, MmGetSystemRoutineAddress, NonPagedPool,
    NonPagedPoolNx, PASSIVE_LEVEL, POOL_FLAG_NON_PAGED, POOL_FLAG_UNINITIALIZED, POOL_FLAGS,
    POOL_TYPE, PVOID, RTL_OSVERSIONINFOW, RtlGetVersion, SIZE_T, STATUS_SUCCESS, ULONG,
    UNICODE_STRING,
};

/// How this driver allocates non-paged pool on the running system.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// `ExAllocatePool2(POOL_FLAG_NON_PAGED)` (Windows 10 2004 and later).
    AllocatePool2,
    /// `ExAllocatePoolWithTag(NonPagedPoolNx)`, zeroed by this crate (Windows 8 to Windows 10
    /// 1909).
    WithTagNoExecute,
    /// `ExAllocatePoolWithTag(NonPagedPool)`, zeroed by this crate (Windows 7, and any system
    /// before the lookup).
    WithTagExecutable,
}

const UNRESOLVED: u8 = 0;
const ALLOCATE_POOL2: u8 = 1;
const WITH_TAG_NO_EXECUTE: u8 = 2;
const WITH_TAG_EXECUTABLE: u8 = 3;

/// The strategy found by the last lookup (`UNRESOLVED` before any).
static STRATEGY: AtomicU8 = AtomicU8::new(UNRESOLVED);
/// `ExAllocatePool2` of the running system, when it exports it.
static ALLOCATE_POOL2_ROUTINE: AtomicPtr<c_void> = AtomicPtr::new(null_mut());

/// The signature of `ExAllocatePool2`.
type AllocatePool2 = unsafe extern "system" fn(POOL_FLAGS, SIZE_T, ULONG) -> PVOID;

/// `"ExAllocatePool2"` in UTF-16, NUL-terminated as `RtlInitUnicodeString` would leave it
/// (the terminator is outside the string's `Length`).
static ALLOCATE_POOL2_NAME: [u16; 16] = utf16(b"ExAllocatePool2\0");

const fn utf16<const N: usize>(ascii: &[u8; N]) -> [u16; N] {
    let mut out = [0u16; N];
    let mut i = 0;
    while i < N {
        out[i] = ascii[i] as u16;
        i += 1;
    }
    out
}

/// Looks up `ExAllocatePool2` and the system version, and records how to allocate. Call it
/// from `DriverEntry` (IRQL == PASSIVE_LEVEL); calling it again looks up again. Returns the
/// strategy found, or `None` when called above PASSIVE_LEVEL (nothing is looked up then).
pub fn initialize() -> Option<Strategy> {
    if KeGetCurrentIrql() != PASSIVE_LEVEL as crate::KIRQL {
        return None;
    }
    let name = UNICODE_STRING {
        Length: ((ALLOCATE_POOL2_NAME.len() - 1) * 2) as u16,
        MaximumLength: (ALLOCATE_POOL2_NAME.len() * 2) as u16,
        Buffer: ALLOCATE_POOL2_NAME.as_ptr().cast_mut(),
    };
    // SAFETY: PASSIVE_LEVEL (checked); the counted string is valid for the call, and the
    // routine does not write through it.
    let routine = unsafe { MmGetSystemRoutineAddress(core::ptr::from_ref(&name).cast_mut()) };
    let strategy = if routine.is_null() {
        if windows_8_or_later() {
            Strategy::WithTagNoExecute
        } else {
            Strategy::WithTagExecutable
        }
    } else {
        Strategy::AllocatePool2
    };
    // The routine is published before the strategy that uses it; a reader that sees
    // `ALLOCATE_POOL2` with no routine (a concurrent lookup that found none) falls back.
    ALLOCATE_POOL2_ROUTINE.store(routine, Ordering::Release);
    STRATEGY.store(encode(strategy), Ordering::Release);
    Some(strategy)
}

/// The strategy in effect: `None` before the first lookup.
#[must_use]
pub fn strategy() -> Option<Strategy> {
    decode(STRATEGY.load(Ordering::Acquire))
}

fn encode(strategy: Strategy) -> u8 {
    match strategy {
        Strategy::AllocatePool2 => ALLOCATE_POOL2,
        Strategy::WithTagNoExecute => WITH_TAG_NO_EXECUTE,
        Strategy::WithTagExecutable => WITH_TAG_EXECUTABLE,
    }
}

fn decode(value: u8) -> Option<Strategy> {
    match value {
        ALLOCATE_POOL2 => Some(Strategy::AllocatePool2),
        WITH_TAG_NO_EXECUTE => Some(Strategy::WithTagNoExecute),
        WITH_TAG_EXECUTABLE => Some(Strategy::WithTagExecutable),
        _ => None,
    }
}

/// Whether the running system is Windows 8 (6.2) or later. IRQL == PASSIVE_LEVEL.
fn windows_8_or_later() -> bool {
    let mut info = RTL_OSVERSIONINFOW {
        dwOSVersionInfoSize: size_of::<RTL_OSVERSIONINFOW>() as ULONG,
        ..RTL_OSVERSIONINFOW::default()
    };
    // SAFETY: a writable structure whose size field is set; PASSIVE_LEVEL (the caller's).
    let status = unsafe { RtlGetVersion(&mut info) };
    status == STATUS_SUCCESS && (info.dwMajorVersion, info.dwMinorVersion) >= (6, 2)
}

/// Allocates `bytes` bytes of non-paged pool with `tag`, zeroed; NULL on failure. Free it
/// with [`ExFreePoolWithTag`](crate::ExFreePoolWithTag) and the same tag.
///
/// # Safety
/// IRQL <= DISPATCH_LEVEL; `tag` is not zero; `bytes` is not zero.
#[must_use]
pub unsafe fn allocate_non_paged_zeroed(bytes: SIZE_T, tag: ULONG) -> PVOID {
    // SAFETY: the caller's contract.
    unsafe { allocate_non_paged(bytes, tag, true) }
}

/// Allocates `bytes` bytes of non-paged pool with `tag`, not initialised; NULL on failure.
/// Free it with [`ExFreePoolWithTag`](crate::ExFreePoolWithTag) and the same tag.
///
/// # Safety
/// IRQL <= DISPATCH_LEVEL; `tag` is not zero; `bytes` is not zero.
#[must_use]
pub unsafe fn allocate_non_paged_uninitialized(bytes: SIZE_T, tag: ULONG) -> PVOID {
    // SAFETY: the caller's contract.
    unsafe { allocate_non_paged(bytes, tag, false) }
}

/// # Safety
/// As [`allocate_non_paged_zeroed`].
unsafe fn allocate_non_paged(bytes: SIZE_T, tag: ULONG, zeroed: bool) -> PVOID {
    let strategy = match strategy() {
        Some(strategy) => strategy,
        None => initialize().unwrap_or(Strategy::WithTagExecutable),
    };
    if strategy == Strategy::AllocatePool2 {
        let routine = ALLOCATE_POOL2_ROUTINE.load(Ordering::Acquire);
        if !routine.is_null() {
            // SAFETY: the address `MmGetSystemRoutineAddress` returned for `ExAllocatePool2`,
            // whose signature this is.
            let allocate = unsafe { core::mem::transmute::<*mut c_void, AllocatePool2>(routine) };
            let flags = if zeroed {
                POOL_FLAG_NON_PAGED
            } else {
                POOL_FLAG_NON_PAGED | POOL_FLAG_UNINITIALIZED
            };
            // SAFETY: non-paged pool at IRQL <= DISPATCH_LEVEL with a non-zero tag (the
            // caller's contract).
            return unsafe { allocate(flags, bytes, tag) };
        }
    }
    let pool_type: POOL_TYPE = if strategy == Strategy::WithTagNoExecute {
        NonPagedPoolNx
    } else {
        NonPagedPool
    };
    // SAFETY: a pool type the running system has (NonPagedPoolNx only from Windows 8), at
    // IRQL <= DISPATCH_LEVEL, with a non-zero size and tag (the caller's contract).
    let block = unsafe { ExAllocatePoolWithTag(pool_type, bytes, tag) };
    if zeroed && !block.is_null() {
        // SAFETY: a fresh block of `bytes` bytes.
        unsafe { core::ptr::write_bytes(block.cast::<u8>(), 0, bytes as usize) };
    }
    block
}
