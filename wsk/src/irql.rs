//! Interrupt request levels: what may be called where.
//!
//! Every public function of this crate documents the highest IRQL it may be called at.
//! Functions that must wait (registration, the blocking [`wait`](crate::Op::wait) of an
//! operation, name resolution) check the IRQL and return [`Error::IRQL_TOO_HIGH`] instead of
//! waiting where waiting is forbidden.

use wsk_sys::typed::{APC_LEVEL, DISPATCH_LEVEL, PASSIVE_LEVEL};
use wsk_sys::{KIRQL, KeGetCurrentIrql};

use crate::{Error, Result};

/// An interrupt request level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Irql(pub KIRQL);

impl Irql {
    /// PASSIVE_LEVEL: threads may wait and touch paged memory.
    pub const PASSIVE: Irql = Irql(PASSIVE_LEVEL);
    /// APC_LEVEL: threads may wait; APCs are masked.
    pub const APC: Irql = Irql(APC_LEVEL);
    /// DISPATCH_LEVEL: completion routines, event callbacks, spin-lock holders; no waiting.
    pub const DISPATCH: Irql = Irql(DISPATCH_LEVEL);

    /// The IRQL of the current processor.
    #[must_use]
    #[inline]
    pub fn current() -> Irql {
        Irql(KeGetCurrentIrql())
    }
}

/// Fails with [`Error::IRQL_TOO_HIGH`] unless the current IRQL is at most `max`.
pub(crate) fn require_at_most(max: Irql) -> Result<()> {
    if Irql::current() <= max {
        Ok(())
    } else {
        Err(Error::IRQL_TOO_HIGH)
    }
}
