//! The IRQL routines `wdm.h` defines inline on x64: `KeGetCurrentIrql`,
//! `KeRaiseIrqlToDpcLevel` and `KeLowerIrql`.
//!
//! # IRQL rules
//! - The IRQL of a processor only goes up by raising and down by lowering: raising to a level
//!   below the current one, or lowering to a level above it, is a bug check
//!   (`IRQL_NOT_GREATER_OR_EQUAL`, `IRQL_NOT_LESS_OR_EQUAL`).
//! - A raise is paired with a lower to the IRQL the raise returned, on the same processor,
//!   before the code that raised returns to its caller.
//! - At DISPATCH_LEVEL and above the thread cannot be preempted nor wait: no waits with a
//!   non-zero timeout, no pageable code or data, and only the routines documented for that
//!   IRQL (see each routine's IRQL in its documentation).
//! - Work item routines, `DriverEntry` and `DriverUnload` start at PASSIVE_LEVEL and must
//!   return at it.

use crate::KIRQL;

/// The IRQL the current processor runs at. Any IRQL. WDK: `KeGetCurrentIrql`.
///
/// On x64 this reads CR8, as `wdm.h`'s inline definition does. On ARM64 it calls the
/// kernel export. With the `host` feature it calls the `KeGetCurrentIrql` of the user-mode
/// kernel implementation linked into the program (the emulated IRQL of the thread).
#[allow(non_snake_case)]
#[inline]
#[must_use]
pub fn KeGetCurrentIrql() -> KIRQL {
    imp::current_irql()
}

/// Raises the current processor's IRQL to DISPATCH_LEVEL and returns the IRQL it ran at,
/// which the caller passes to [`KeLowerIrql`] to return to it. IRQL <= DISPATCH_LEVEL (from
/// a higher IRQL this would lower it: a bug check). WDK: `KeRaiseIrqlToDpcLevel`.
///
/// On x64 this reads CR8, then writes DISPATCH_LEVEL to it, as `wdm.h`'s inline definition
/// does. On ARM64 it calls the kernel export `KfRaiseIrql(DISPATCH_LEVEL)`. With the `host`
/// feature it calls the `KfRaiseIrql` of the user-mode kernel implementation linked into the
/// program, which raises the thread's emulated IRQL.
#[allow(non_snake_case)]
#[inline]
#[must_use = "the IRQL returned is the one to lower back to with KeLowerIrql"]
pub fn KeRaiseIrqlToDpcLevel() -> KIRQL {
    imp::raise_irql(crate::DISPATCH_LEVEL as KIRQL)
}

/// Lowers the current processor's IRQL to `NewIrql`, the IRQL an earlier raise returned.
/// WDK: `KeLowerIrql`.
///
/// On x64 this writes CR8, as `wdm.h`'s inline definition does. On ARM64 it calls the kernel
/// export. With the `host` feature it calls the `KeLowerIrql` of the user-mode kernel
/// implementation linked into the program.
///
/// # Safety
/// `NewIrql` must be at most the current IRQL (lowering to a higher IRQL is a bug check), and
/// must be the IRQL returned by the raise this lower ends: code that raised the IRQL relies on
/// it staying raised (a spin lock held, a processor-local structure in use) until it lowers it.
#[allow(non_snake_case)]
#[inline]
pub unsafe fn KeLowerIrql(NewIrql: KIRQL) {
    // SAFETY: forwarded from the caller.
    unsafe { imp::lower_irql(NewIrql) }
}

#[cfg(feature = "host")]
mod imp {
    use crate::KIRQL;

    unsafe extern "system" {
        #[link_name = "KeGetCurrentIrql"]
        fn host_current_irql() -> KIRQL;
        #[link_name = "KfRaiseIrql"]
        fn host_raise_irql(new_irql: KIRQL) -> KIRQL;
        #[link_name = "KeLowerIrql"]
        fn host_lower_irql(new_irql: KIRQL);
    }

    #[inline]
    pub(super) fn current_irql() -> KIRQL {
        // SAFETY: the host implementation takes no arguments and has no preconditions.
        unsafe { host_current_irql() }
    }

    #[inline]
    pub(super) fn raise_irql(new_irql: KIRQL) -> KIRQL {
        // SAFETY: the host implementation changes only the thread's emulated IRQL; a raise
        // to a lower level is reported by its verifier, not undefined behaviour.
        unsafe { host_raise_irql(new_irql) }
    }

    /// # Safety
    /// As [`KeLowerIrql`](super::KeLowerIrql).
    #[inline]
    pub(super) unsafe fn lower_irql(new_irql: KIRQL) {
        // SAFETY: forwarded from the caller.
        unsafe { host_lower_irql(new_irql) }
    }
}

#[cfg(all(not(feature = "host"), target_arch = "x86_64"))]
mod imp {
    use crate::KIRQL;

    #[inline]
    pub(super) fn current_irql() -> KIRQL {
        let cr8: u64;
        // SAFETY: reading CR8 (the task priority register) is allowed in kernel mode, which
        // is the only mode a build without the `host` feature runs in; it has no side effects.
        unsafe {
            core::arch::asm!("mov {}, cr8", out(reg) cr8, options(nomem, nostack, preserves_flags));
        }
        cr8 as KIRQL
    }

    #[inline]
    pub(super) fn raise_irql(new_irql: KIRQL) -> KIRQL {
        let old = current_irql();
        // SAFETY: writing CR8 is allowed in kernel mode. Raising masks interrupts at and below
        // the new level; the asm is a compiler barrier (no `nomem`), so memory accesses the
        // caller makes after the raise are not moved before it.
        unsafe {
            core::arch::asm!("mov cr8, {}", in(reg) u64::from(new_irql), options(nostack, preserves_flags));
        }
        old
    }

    /// # Safety
    /// As [`KeLowerIrql`](super::KeLowerIrql).
    #[inline]
    pub(super) unsafe fn lower_irql(new_irql: KIRQL) {
        // SAFETY: writing CR8 is allowed in kernel mode; the caller guarantees the level is
        // the one to return to. The asm is a compiler barrier (no `nomem`), so memory
        // accesses made before the lower stay before it.
        unsafe {
            core::arch::asm!("mov cr8, {}", in(reg) u64::from(new_irql), options(nostack, preserves_flags));
        }
    }
}

#[cfg(all(not(feature = "host"), not(target_arch = "x86_64")))]
mod imp {
    use crate::KIRQL;

    unsafe extern "system" {
        #[link_name = "KeGetCurrentIrql"]
        fn kernel_current_irql() -> KIRQL;
        #[link_name = "KfRaiseIrql"]
        fn kernel_raise_irql(new_irql: KIRQL) -> KIRQL;
        #[link_name = "KeLowerIrql"]
        fn kernel_lower_irql(new_irql: KIRQL);
    }

    #[inline]
    pub(super) fn current_irql() -> KIRQL {
        // SAFETY: the kernel export takes no arguments and may be called at any IRQL.
        unsafe { kernel_current_irql() }
    }

    #[inline]
    pub(super) fn raise_irql(new_irql: KIRQL) -> KIRQL {
        // SAFETY: the kernel export raises the IRQL and returns the previous one; the callers
        // in this module raise only to DISPATCH_LEVEL, which `KeRaiseIrqlToDpcLevel`'s
        // contract allows from its caller's IRQL.
        unsafe { kernel_raise_irql(new_irql) }
    }

    /// # Safety
    /// As [`KeLowerIrql`](super::KeLowerIrql).
    #[inline]
    pub(super) unsafe fn lower_irql(new_irql: KIRQL) {
        // SAFETY: forwarded from the caller.
        unsafe { kernel_lower_irql(new_irql) }
    }
}
