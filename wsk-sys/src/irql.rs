//! The current IRQL (`KeGetCurrentIrql`), which `wdm.h` defines inline on x64.

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

#[cfg(feature = "host")]
mod imp {
    use crate::KIRQL;

    unsafe extern "system" {
        #[link_name = "KeGetCurrentIrql"]
        fn host_current_irql() -> KIRQL;
    }

    #[inline]
    pub(super) fn current_irql() -> KIRQL {
        // SAFETY: the host implementation takes no arguments and has no preconditions.
        unsafe { host_current_irql() }
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
}

#[cfg(all(not(feature = "host"), not(target_arch = "x86_64")))]
mod imp {
    use crate::KIRQL;

    unsafe extern "system" {
        #[link_name = "KeGetCurrentIrql"]
        fn kernel_current_irql() -> KIRQL;
    }

    #[inline]
    pub(super) fn current_irql() -> KIRQL {
        // SAFETY: the kernel export takes no arguments and may be called at any IRQL.
        unsafe { kernel_current_irql() }
    }
}
