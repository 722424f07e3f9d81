//! [`Deadline`]: a point in time on the kernel's clock, for giving several operations (a
//! whole exchange, say) one end: [`Op::deadline`](crate::Op::deadline) and
//! [`WskClient::sleep_until`](crate::WskClient::sleep_until).

use core::time::Duration;

/// A point in time: the system's interrupt time (100 ns units since boot, as wdm.h's
/// `KeQueryInterruptTime` reads it), so a deadline is not moved by changes of the wall
/// clock. Any IRQL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline {
    /// Interrupt time, 100 ns units; never 0.
    at: u64,
}

/// `duration` in 100 ns units, rounded up, saturating.
pub(crate) fn units_of(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos().div_ceil(100)).unwrap_or(u64::MAX)
}

/// The interrupt time. In a driver: wdm.h's `KeQueryInterruptTime` on x64 and ARM64, one
/// aligned 64-bit load of `KUSER_SHARED_DATA.InterruptTime` — no import, so the same image
/// runs on every Windows release the crate supports and on kernels without
/// `KeQueryUnbiasedInterruptTime` (Wine's). On x64 the load is a `mov` of its own: kernels
/// that run drivers in user mode emulate reads of that page instruction by instruction, and
/// know `mov`, not an instruction a compiler could fold a volatile load into.
#[cfg(all(target_arch = "x86_64", windows, not(feature = "host")))]
fn now() -> u64 {
    let time: u64;
    // SAFETY: the shared user data page is mapped and readable at any IRQL for the life of
    // the system; the field is 8-byte aligned and updated with single 64-bit stores on 64-bit
    // systems, so one load reads a whole value. The instruction only reads that memory and
    // writes the output register.
    unsafe {
        core::arch::asm!(
            "mov {time}, qword ptr [{address}]",
            time = lateout(reg) time,
            address = in(reg) INTERRUPT_TIME,
            options(nostack, preserves_flags, readonly),
        );
    }
    time
}

/// The interrupt time: see the x64 form.
#[cfg(all(not(target_arch = "x86_64"), windows, not(feature = "host")))]
fn now() -> u64 {
    // SAFETY: as for the x64 form: one aligned volatile 64-bit load of a page mapped for the
    // life of the system.
    unsafe { core::ptr::read_volatile(INTERRUPT_TIME as *const u64) }
}

/// `KUSER_SHARED_DATA.InterruptTime` in the kernel's mapping of the shared user data page
/// (`KI_USER_SHARED_DATA + 0x8`, the same address on x64 and ARM64).
#[cfg(all(windows, not(feature = "host")))]
const INTERRUPT_TIME: usize = 0xFFFF_F780_0000_0008;

/// The interrupt time on `wsk-host`, which has no shared user data page: its
/// `KeQueryUnbiasedInterruptTime` export, the same clock. Also where the crate is built for
/// anything but Windows without the `host` feature (its own tests on Linux): no kernel but
/// `wsk-host` runs it there.
#[cfg(any(feature = "host", not(windows)))]
fn now() -> u64 {
    // SAFETY: no arguments; callable at any IRQL.
    unsafe { wsk_sys::KeQueryUnbiasedInterruptTime() }
}

impl Deadline {
    /// The deadline `duration` from now.
    #[must_use]
    pub fn after(duration: Duration) -> Deadline {
        Deadline {
            at: now().saturating_add(units_of(duration)).max(1),
        }
    }

    /// The time left until the deadline (zero once it has passed).
    #[must_use]
    pub fn remaining(&self) -> Duration {
        let units = self.at.saturating_sub(now());
        Duration::from_nanos(units.saturating_mul(100))
    }

    /// Whether the deadline has passed.
    #[must_use]
    pub fn has_passed(&self) -> bool {
        now() >= self.at
    }

    /// The deadline as the `Op`'s and the sleep's encoding of a due time (positive).
    pub(crate) fn encoded(self) -> i64 {
        i64::try_from(self.at).unwrap_or(i64::MAX)
    }
}

/// A due time as kept by an operation or a sleep until it is issued: negative, a relative
/// time in 100 ns units (as `KeSetTimer` takes it); positive, a [`Deadline`]'s
/// interrupt time; 0, none.
pub(crate) type DueTime = i64;

/// `duration` as a relative [`DueTime`]: negative, rounded up, at least one unit (so never 0,
/// which stands for none).
pub(crate) fn relative(duration: Duration) -> DueTime {
    -(i64::try_from(units_of(duration).max(1)).unwrap_or(i64::MAX))
}

/// The relative due time for `KeSetTimer` of a non-zero [`DueTime`], computed now: a deadline
/// already passed expires at once (one unit).
pub(crate) fn for_set_timer(due: DueTime) -> i64 {
    if due < 0 {
        return due;
    }
    let left = (due as u64).saturating_sub(now()).max(1);
    -(i64::try_from(left).unwrap_or(i64::MAX))
}
