//! Emulated IRQL: one per thread. Threads start at PASSIVE_LEVEL; the provider's thread and
//! every completion routine or event callback run at DISPATCH_LEVEL.

use std::cell::Cell;

use wsk_sys::{DISPATCH_LEVEL, KIRQL, PASSIVE_LEVEL};

thread_local! {
    static IRQL: Cell<KIRQL> = const { Cell::new(PASSIVE_LEVEL) };
}

/// The calling thread's emulated IRQL.
#[must_use]
pub fn current() -> KIRQL {
    IRQL.with(Cell::get)
}

/// Sets the calling thread's IRQL; returns the previous one.
pub(crate) fn set(level: KIRQL) -> KIRQL {
    IRQL.with(|irql| irql.replace(level))
}

/// Raises the calling thread's IRQL to `level` until the guard is dropped (as
/// `KeRaiseIrql`/`KeLowerIrql` would). Raising to a lower level than the current one is a
/// driver bug the verifier reports.
pub fn raise(level: KIRQL) -> IrqlGuard {
    let previous = current();
    if level < previous {
        crate::verifier::bug_check(
            crate::verifier::Rule::IrqlNotGreaterOrEqual,
            format!("raising the IRQL from {previous} to the lower {level}"),
        );
    }
    set(level);
    IrqlGuard { previous }
}

/// Runs `f` at DISPATCH_LEVEL (at least), restoring the IRQL afterwards.
pub(crate) fn at_dispatch<R>(f: impl FnOnce() -> R) -> R {
    let previous = current();
    set(previous.max(DISPATCH_LEVEL));
    let result = f();
    set(previous);
    result
}

/// Restores the previous IRQL when dropped.
#[derive(Debug)]
#[must_use = "the IRQL is lowered again when the guard is dropped"]
pub struct IrqlGuard {
    previous: KIRQL,
}

impl Drop for IrqlGuard {
    fn drop(&mut self) {
        set(self.previous);
    }
}

/// `KeGetCurrentIrql` for `wsk-sys` built with its `host` feature.
#[unsafe(no_mangle)]
pub extern "system" fn KeGetCurrentIrql() -> KIRQL {
    current()
}

/// `KfRaiseIrql` (behind `KeRaiseIrql`, and `wsk-sys`'s `KeRaiseIrqlToDpcLevel` with its
/// `host` feature): raises the calling thread's emulated IRQL to `NewIrql`; returns the
/// previous one. A raise to a lower IRQL — which would bug check with
/// `IRQL_NOT_GREATER_OR_EQUAL` — is reported ([`Rule::IrqlNotGreaterOrEqual`]) and leaves the
/// IRQL as it is.
///
/// [`Rule::IrqlNotGreaterOrEqual`]: crate::Rule::IrqlNotGreaterOrEqual
#[unsafe(no_mangle)]
pub extern "system" fn KfRaiseIrql(NewIrql: KIRQL) -> KIRQL {
    let previous = current();
    if NewIrql < previous {
        crate::verifier::bug_check(
            crate::verifier::Rule::IrqlNotGreaterOrEqual,
            format!("KfRaiseIrql({NewIrql}) at the higher IRQL {previous}"),
        );
        return previous;
    }
    set(NewIrql);
    previous
}

/// `KeLowerIrql` (`wsk-sys`'s `KeLowerIrql` with its `host` feature): lowers the calling
/// thread's emulated IRQL to `NewIrql`. A lower to a higher IRQL — a bug check on Windows —
/// is reported ([`Rule::IrqlNotGreaterOrEqual`]) and leaves the IRQL as it is.
///
/// [`Rule::IrqlNotGreaterOrEqual`]: crate::Rule::IrqlNotGreaterOrEqual
#[unsafe(no_mangle)]
pub extern "system" fn KeLowerIrql(NewIrql: KIRQL) {
    let previous = current();
    if NewIrql > previous {
        crate::verifier::bug_check(
            crate::verifier::Rule::IrqlNotGreaterOrEqual,
            format!("KeLowerIrql({NewIrql}) at the lower IRQL {previous}"),
        );
        return;
    }
    set(NewIrql);
}
