//! The WDK's `#define` and enumeration values that routines take, typed as the parameter that
//! takes them, with either kernel base. Not WDK items.
//!
//! In this crate's own base the values at the crate root already have these types
//! (`DISPATCH_LEVEL` is a `KIRQL`, `FALSE` a `BOOLEAN`), and this module re-exports them. With
//! the `wdk-sys` feature the root re-exports `wdk-sys`'s values, which bindgen types from the
//! C declarations: a `#define` is a `u32` and an enumeration member a `c_int`; here they are
//! converted once, at compile time, to the parameter's type (a value that does not fit fails
//! the build). Code that passes them through this module, `typed::FALSE` rather than
//! `FALSE`, compiles with either base and needs no cast.
//!
//! | Value | Type | Parameter that takes it |
//! |---|---|---|
//! | `PASSIVE_LEVEL`, `APC_LEVEL`, `DISPATCH_LEVEL` | [`KIRQL`](crate::KIRQL) | `KeReleaseSpinLock`'s `NewIrql`, comparisons with `KeGetCurrentIrql` |
//! | `TRUE`, `FALSE` | [`BOOLEAN`](crate::BOOLEAN) | `KeSetEvent`'s `Wait`, `IoAllocateIrp`'s `ChargeQuota`, ... |
//! | `KernelMode`, `UserMode` | [`KPROCESSOR_MODE`](crate::KPROCESSOR_MODE) | `KeWaitForSingleObject`'s `WaitMode`, `MmProbeAndLockPages`'s `AccessMode` |
//! | `IO_NO_INCREMENT` | [`CCHAR`](crate::CCHAR) | `IofCompleteRequest`'s `PriorityBoost` |
//! | `IO_NETWORK_INCREMENT` | [`KPRIORITY`](crate::KPRIORITY) | `KeSetEvent`'s `Increment` |
//! | `LowPagePriority`, `NormalPagePriority`, `HighPagePriority`, `MdlMappingNoExecute` | [`ULONG`](crate::ULONG) | `MmGetSystemAddressForMdlSafe`'s `Priority` (combined with `\|`) |

#![allow(non_upper_case_globals)]

#[cfg(not(all(windows, feature = "wdk-sys")))]
pub use crate::bindings::base::{
    APC_LEVEL, DISPATCH_LEVEL, FALSE, HighPagePriority, IO_NETWORK_INCREMENT, IO_NO_INCREMENT,
    KernelMode, LowPagePriority, MdlMappingNoExecute, NormalPagePriority, PASSIVE_LEVEL, TRUE,
    UserMode,
};

#[cfg(all(windows, feature = "wdk-sys"))]
pub use self::from_wdk_sys::*;

/// With `wdk-sys`: its values, converted to the parameter types.
#[cfg(all(windows, feature = "wdk-sys"))]
mod from_wdk_sys {
    use crate::{BOOLEAN, CCHAR, KIRQL, KPRIORITY, KPROCESSOR_MODE, ULONG};

    /// IRQL 0: threads may wait and touch paged memory. WDK: `PASSIVE_LEVEL`.
    pub const PASSIVE_LEVEL: KIRQL = to_u8(wdk_sys::PASSIVE_LEVEL as i64);
    /// IRQL 1: APCs are masked. WDK: `APC_LEVEL`.
    pub const APC_LEVEL: KIRQL = to_u8(wdk_sys::APC_LEVEL as i64);
    /// IRQL 2: the thread scheduler is masked; no waits. WDK: `DISPATCH_LEVEL`.
    pub const DISPATCH_LEVEL: KIRQL = to_u8(wdk_sys::DISPATCH_LEVEL as i64);
    /// WDK: `TRUE`.
    pub const TRUE: BOOLEAN = to_u8(wdk_sys::TRUE as i64);
    /// WDK: `FALSE`.
    pub const FALSE: BOOLEAN = to_u8(wdk_sys::FALSE as i64);
    /// The kernel's processor mode. WDK: `KernelMode` (`MODE`).
    pub const KernelMode: KPROCESSOR_MODE = to_i8(wdk_sys::_MODE::KernelMode as i64);
    /// User mode. WDK: `UserMode` (`MODE`).
    pub const UserMode: KPROCESSOR_MODE = to_i8(wdk_sys::_MODE::UserMode as i64);
    /// No priority boost on completion. WDK: `IO_NO_INCREMENT`.
    pub const IO_NO_INCREMENT: CCHAR = to_i8(wdk_sys::IO_NO_INCREMENT as i64);
    /// The priority boost for network I/O. WDK: `IO_NETWORK_INCREMENT`.
    pub const IO_NETWORK_INCREMENT: KPRIORITY = to_i32(wdk_sys::IO_NETWORK_INCREMENT as i64);
    /// WDK: `LowPagePriority` (`MM_PAGE_PRIORITY`).
    pub const LowPagePriority: ULONG = to_u32(wdk_sys::_MM_PAGE_PRIORITY::LowPagePriority as i64);
    /// WDK: `NormalPagePriority` (`MM_PAGE_PRIORITY`).
    pub const NormalPagePriority: ULONG =
        to_u32(wdk_sys::_MM_PAGE_PRIORITY::NormalPagePriority as i64);
    /// WDK: `HighPagePriority` (`MM_PAGE_PRIORITY`).
    pub const HighPagePriority: ULONG = to_u32(wdk_sys::_MM_PAGE_PRIORITY::HighPagePriority as i64);
    /// The mapping is not executable (Windows 8 and later). WDK: `MdlMappingNoExecute`.
    pub const MdlMappingNoExecute: ULONG = to_u32(wdk_sys::MdlMappingNoExecute as i64);

    // Range-checked conversions, evaluated at compile time: a value that does not fit its
    // parameter type stops the build instead of being truncated.
    const fn to_u8(value: i64) -> u8 {
        assert!(value >= 0 && value <= u8::MAX as i64);
        value as u8
    }
    const fn to_i8(value: i64) -> i8 {
        assert!(value >= i8::MIN as i64 && value <= i8::MAX as i64);
        value as i8
    }
    const fn to_i32(value: i64) -> i32 {
        assert!(value >= i32::MIN as i64 && value <= i32::MAX as i64);
        value as i32
    }
    const fn to_u32(value: i64) -> u32 {
        assert!(value >= 0 && value <= u32::MAX as i64);
        value as u32
    }
}

// The documented types, with either base.
const _: [crate::KIRQL; 3] = [PASSIVE_LEVEL, APC_LEVEL, DISPATCH_LEVEL];
const _: [crate::BOOLEAN; 2] = [TRUE, FALSE];
const _: [crate::KPROCESSOR_MODE; 2] = [KernelMode, UserMode];
const _: crate::CCHAR = IO_NO_INCREMENT;
const _: crate::KPRIORITY = IO_NETWORK_INCREMENT;
const _: [crate::ULONG; 4] = [
    LowPagePriority,
    NormalPagePriority,
    HighPagePriority,
    MdlMappingNoExecute,
];
