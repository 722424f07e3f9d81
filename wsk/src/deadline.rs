//! [`Deadline`]: a point in time on the kernel's clock, for giving several operations (a
//! whole exchange, say) one end: [`Op::deadline`](crate::Op::deadline) and
//! [`WskClient::sleep_until`](crate::WskClient::sleep_until).

use core::time::Duration;

use wsk_sys::KeQueryUnbiasedInterruptTime;

/// A point in time: the system's unbiased interrupt time (`KeQueryUnbiasedInterruptTime`,
/// 100 ns units since boot, without the time spent asleep or hibernating), so a deadline is
/// not moved by changes of the wall clock. Any IRQL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline {
    /// Unbiased interrupt time, 100 ns units; never 0.
    at: u64,
}

/// `duration` in 100 ns units, rounded up, saturating.
pub(crate) fn units_of(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos().div_ceil(100)).unwrap_or(u64::MAX)
}

fn now() -> u64 {
    // SAFETY: no arguments; callable at any IRQL.
    unsafe { KeQueryUnbiasedInterruptTime() }
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
/// time in 100 ns units (as `KeSetTimer` takes it); positive, a [`Deadline`]'s unbiased
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
