//! The verifier: rules a driver must follow, and bug checks when it does not.
//!
//! A violation is printed at once with a message naming the rule
//! (`wsk-host verifier: RULE: details`) and recorded; the routine that found it then does
//! what keeps the process safe (it does not touch freed memory, does not wait at
//! DISPATCH_LEVEL). The test harness raises recorded violations as a panic on the test's
//! thread at its next call ([`crate::Session::check`], [`crate::Session::finish`], the end
//! of the session): a panic cannot unwind through the `extern "system"` exports the driver
//! calls, so the bug check is delivered there, like a bug check stops the machine. With the
//! environment variable `WSK_HOST_ABORT_ON_BUGCHECK=1` every violation aborts the process at
//! once instead.

use std::fmt;
use std::io::Write;
use std::sync::Mutex;

/// A rule of the verifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rule {
    /// An IRP allocated by the driver was never freed.
    IrpLeaked,
    /// An MDL was never freed.
    MdlLeaked,
    /// A pool allocation was never freed.
    PoolLeaked,
    /// A socket was never closed.
    SocketLeaked,
    /// A captured provider NPI was never released, or a client never deregistered.
    RegistrationLeaked,
    /// A name-resolution result was never freed with `WskFreeAddressInfo`.
    AddressInfoLeaked,
    /// A kernel handle (an open registry key) was never closed with `ZwClose`.
    HandleLeaked,
    /// An IRP was freed twice, or something that is not an IRP was freed as one.
    IrpDoubleFree,
    /// A freed IRP was used.
    IrpUseAfterFree,
    /// An IRP was freed, reused or handed to a second request while a request owned it.
    IrpInUse,
    /// An MDL was freed twice, or something that is not an MDL was freed as one.
    MdlDoubleFree,
    /// Pool was freed twice, or something that is not a pool allocation was freed.
    PoolDoubleFree,
    /// Pool was freed with a tag other than the one it was allocated with.
    PoolTagMismatch,
    /// A wait with a non-zero timeout at DISPATCH_LEVEL or above.
    WaitAtDispatchLevel,
    /// A completion routine of a driver-allocated IRP returned something other than
    /// `STATUS_MORE_PROCESSING_REQUIRED`: the I/O manager would free an IRP it does not own.
    CompletionRoutineResult,
    /// A routine was called at an IRQL above what its reference allows.
    IrqlTooHigh,
    /// The IRQL was lowered by raising it, or raised by lowering it.
    IrqlNotGreaterOrEqual,
    /// `MmBuildMdlForNonPagedPool` on memory that is not a live non-paged pool allocation.
    MdlNotNonPaged,
    /// Locked pages were unlocked twice, or an MDL was freed with its pages locked.
    MdlLockMismatch,
    /// `WskDeregister` waited for sockets or captured NPIs that were not released.
    DeregisterWithOpenSockets,
    /// A release without a capture, a second deregistration, or a call on a deregistered
    /// client.
    CaptureReleaseMismatch,
    /// A WSK function was called on a socket after `WskCloseSocket`.
    SocketUseAfterClose,
    /// An event callback ran after the socket's close completed (the provider's own
    /// guarantee; never expected).
    EventAfterClose,
    /// A driver called `KeBugCheckEx`.
    DriverBugCheck,
    /// A call violated another documented contract (bad parameter combination, wrong
    /// object type).
    InvalidParameter,
    /// `IoBuildPartialMdl` was given a target MDL whose page array is too small for the range
    /// (bug check 0x40, `TARGET_MDL_TOO_SMALL`).
    TargetMdlTooSmall,
    /// A work item from `IoAllocateWorkItem` was never freed.
    WorkItemLeaked,
    /// A work item was freed twice, or something that is not a work item was freed as one.
    WorkItemDoubleFree,
    /// A freed work item was queued.
    WorkItemUseAfterFree,
    /// A work item was queued again, or freed, while queued and not yet started (Driver
    /// Verifier's `WORKER_INVALID`).
    WorkItemInUse,
    /// A work item routine returned at an IRQL other than PASSIVE_LEVEL (bug check 0xE1,
    /// `WORKER_THREAD_RETURNED_AT_BAD_IRQL`).
    WorkItemReturnedAtBadIrql,
    /// A work item was still queued or running when the session ended or the driver was
    /// unloaded, after the wait for it (`ProviderConfig::work_item_wait_report`) ran out.
    WorkItemStillRunning,
    /// A run of a provider thread at DISPATCH_LEVEL — a socket's completion routines and
    /// event callbacks, a deferred completion — took longer than
    /// [`ProviderConfig::dispatch_run_budget`](crate::ProviderConfig::dispatch_run_budget):
    /// on Windows that run is a DPC, and the DPC watchdog bug checks (0x133,
    /// `DPC_WATCHDOG_VIOLATION`).
    DpcWatchdogViolation,
    /// A timer with a DPC was still set, or a DPC still queued or running, when the session
    /// ended or the driver's unload routine returned: on Windows the DPC would run after the
    /// driver's image and memory are gone (the driver must cancel its timers and call
    /// `KeFlushQueuedDpcs` before it returns from its unload).
    TimerPendingAtUnload,
    /// A timer that `KeInitializeTimerEx` did not initialise was set or cancelled, or a set
    /// timer was initialised again.
    TimerInvalid,
    /// `KeCancelTimer` of a timer from that timer's own DPC routine. Windows allows it (the
    /// timer has left the timer queue: FALSE); Wine's kernel runs a timer's DPC as a
    /// thread-pool timer callback, and its `KeCancelTimer` waits for that timer's callbacks
    /// to end — the one calling it — and never returns (Wine 8.0). Checked so that drivers
    /// meant to run under Wine too do not make the call.
    TimerCancelledInItsDpc,
}

impl Rule {
    /// The rule's name, as it appears in messages.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Rule::IrpLeaked => "IRP_LEAKED",
            Rule::MdlLeaked => "MDL_LEAKED",
            Rule::PoolLeaked => "POOL_LEAKED",
            Rule::SocketLeaked => "SOCKET_LEAKED",
            Rule::RegistrationLeaked => "REGISTRATION_LEAKED",
            Rule::AddressInfoLeaked => "ADDRESS_INFO_LEAKED",
            Rule::HandleLeaked => "HANDLE_LEAKED",
            Rule::IrpDoubleFree => "IRP_DOUBLE_FREE",
            Rule::IrpUseAfterFree => "IRP_USE_AFTER_FREE",
            Rule::IrpInUse => "IRP_IN_USE",
            Rule::MdlDoubleFree => "MDL_DOUBLE_FREE",
            Rule::PoolDoubleFree => "POOL_DOUBLE_FREE",
            Rule::PoolTagMismatch => "POOL_TAG_MISMATCH",
            Rule::WaitAtDispatchLevel => "WAIT_AT_DISPATCH_LEVEL",
            Rule::CompletionRoutineResult => "COMPLETION_ROUTINE_RESULT",
            Rule::IrqlTooHigh => "IRQL_TOO_HIGH",
            Rule::IrqlNotGreaterOrEqual => "IRQL_NOT_GREATER_OR_EQUAL",
            Rule::MdlNotNonPaged => "MDL_NOT_NONPAGED",
            Rule::MdlLockMismatch => "MDL_LOCK_MISMATCH",
            Rule::DeregisterWithOpenSockets => "DEREGISTER_WITH_OPEN_SOCKETS",
            Rule::CaptureReleaseMismatch => "CAPTURE_RELEASE_MISMATCH",
            Rule::SocketUseAfterClose => "SOCKET_USE_AFTER_CLOSE",
            Rule::EventAfterClose => "EVENT_AFTER_CLOSE",
            Rule::DriverBugCheck => "DRIVER_BUG_CHECK",
            Rule::InvalidParameter => "INVALID_PARAMETER",
            Rule::TargetMdlTooSmall => "TARGET_MDL_TOO_SMALL",
            Rule::WorkItemLeaked => "WORK_ITEM_LEAKED",
            Rule::WorkItemDoubleFree => "WORK_ITEM_DOUBLE_FREE",
            Rule::WorkItemUseAfterFree => "WORK_ITEM_USE_AFTER_FREE",
            Rule::WorkItemInUse => "WORK_ITEM_IN_USE",
            Rule::WorkItemReturnedAtBadIrql => "WORKER_THREAD_RETURNED_AT_BAD_IRQL",
            Rule::WorkItemStillRunning => "WORK_ITEM_STILL_RUNNING",
            Rule::DpcWatchdogViolation => "DPC_WATCHDOG_VIOLATION",
            Rule::TimerPendingAtUnload => "TIMER_PENDING_AT_UNLOAD",
            Rule::TimerInvalid => "TIMER_INVALID",
            Rule::TimerCancelledInItsDpc => "TIMER_CANCELLED_IN_ITS_OWN_DPC",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A recorded violation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The rule broken.
    pub rule: Rule,
    /// What happened.
    pub details: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "wsk-host verifier: {}: {}", self.rule, self.details)
    }
}

static RECORDED: Mutex<Vec<Violation>> = Mutex::new(Vec::new());

/// Reports a violation: prints and records it (see the module documentation).
pub(crate) fn bug_check(rule: Rule, details: impl Into<String>) {
    let violation = Violation {
        rule,
        details: details.into(),
    };
    // Not `eprintln!`: it panics when standard error is gone, and this runs inside kernel
    // exports called by driver code, where a panic aborts the process.
    let _ = writeln!(std::io::stderr(), "{violation}");
    if std::env::var_os("WSK_HOST_ABORT_ON_BUGCHECK").is_some_and(|v| v == "1") {
        std::process::abort();
    }
    RECORDED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(violation);
}

/// The violations recorded so far, without taking them.
pub(crate) fn recorded() -> Vec<Violation> {
    RECORDED.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Takes the violations recorded so far.
pub(crate) fn take_recorded() -> Vec<Violation> {
    std::mem::take(&mut *RECORDED.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Panics with the recorded violations, if any (called by the harness API).
pub(crate) fn raise_recorded() {
    let recorded = take_recorded();
    if !recorded.is_empty() {
        let text: Vec<String> = recorded.iter().map(ToString::to_string).collect();
        panic!("{}", text.join("\n"));
    }
}

/// Checks that the IRQL is at most `max` for `routine`; reports and returns `false` if not.
pub(crate) fn require_irql(routine: &str, max: wsk_sys::KIRQL) -> bool {
    let irql = crate::irql::current();
    if irql > max {
        bug_check(
            Rule::IrqlTooHigh,
            format!("{routine} called at IRQL {irql}, allowed up to {max}"),
        );
        return false;
    }
    true
}
