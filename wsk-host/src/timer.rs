//! Timers and DPCs: `KeInitializeTimerEx`, `KeSetTimer`, `KeCancelTimer`, `KeInitializeDpc`,
//! `KeFlushQueuedDpcs` and `KeQueryUnbiasedInterruptTime`.
//!
//! One timer thread plays the kernel's timer expiry and DPC queue: it sleeps until the
//! earliest due time, takes the timer out of the table (from then `KeCancelTimer` returns
//! FALSE, as on Windows once a timer has expired) and runs the timer's DPC at DISPATCH_LEVEL.
//! The `KTIMER` and `KDPC` memory is the driver's; the table keys timers by address.
//!
//! Like Driver Verifier, the session's end and a driver's unload check that no timer with a
//! DPC is still set and no DPC is queued or running ([`Rule::TimerPendingAtUnload`]): on
//! Windows that DPC would run in an unloaded image.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wsk_sys::*;

use crate::irql;
use crate::verifier::{Rule, bug_check, require_irql};

/// A set timer. The pointers keep their provenance (for Miri), the table's keys are
/// addresses.
struct Armed {
    timer: PKTIMER,
    /// The DPC to run at expiry (null: none).
    dpc: PKDPC,
    /// Tells this setting from an earlier one of the same timer in the heap.
    generation: u64,
}

// SAFETY: the pointers are the driver's kernel objects, usable from any thread; the table
// only dereferences them under the kernel's own rules (set timer, queued DPC).
unsafe impl Send for Armed {}

#[derive(Default)]
struct Table {
    /// Timers initialised by `KeInitializeTimerEx`, by address.
    initialised: HashSet<usize>,
    /// Set timers, by address.
    armed: HashMap<usize, Armed>,
    /// Due times of set timers: `(due, generation, timer)`; an entry whose generation is not
    /// the timer's current one is stale and skipped.
    due: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    next_generation: u64,
    /// DPCs taken from the table and not yet returned (queued or running).
    dpcs_in_flight: usize,
    /// The timer whose DPC is taken and not yet returned, by address (0: none).
    dpc_of: usize,
    /// Timers that expired since they were last set or cancelled: Wine's `KeCancelTimer`
    /// answers TRUE for them ([`crate::FaultPlan::wine_timers`]).
    expired_since_set: HashSet<usize>,
    /// The timer thread must return (the end of a session).
    stopping: bool,
}

static TABLE: Mutex<Option<Table>> = Mutex::new(None);
/// Signalled when a timer is set (the thread may have to wake sooner) and when a DPC returns.
static CHANGED: Condvar = Condvar::new();
/// The timer thread, started by the first `KeSetTimer` after a session's end.
static THREAD: Mutex<Option<JoinHandle<()>>> = Mutex::new(None);

fn start_thread() {
    let mut thread = THREAD.lock().unwrap_or_else(|e| e.into_inner());
    if thread.is_none() {
        *thread = Some(
            std::thread::Builder::new()
                .name("wsk-host timers".into())
                .spawn(expire_timers)
                .expect("the timer thread starts"),
        );
    }
}

/// Ends the timer thread (at the end of a session, after its checks): a DPC running
/// finishes first; a timer still set (a finding already) never expires. The next
/// `KeSetTimer` starts a new thread. No thread of the host outlives the tests (Miri checks).
pub(crate) fn stop_thread() {
    with_table(|table| table.stopping = true);
    CHANGED.notify_all();
    let thread = THREAD.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(thread) = thread {
        let _ = thread.join();
    }
    with_table(|table| table.stopping = false);
}

fn lock() -> MutexGuard<'static, Option<Table>> {
    TABLE.lock().unwrap_or_else(|e| e.into_inner())
}

fn with_table<R>(f: impl FnOnce(&mut Table) -> R) -> R {
    f(lock().get_or_insert_with(Table::default))
}

/// Timers with a DPC still set, and DPCs queued or running.
pub(crate) fn pending() -> (usize, usize) {
    with_table(|table| {
        (
            table
                .armed
                .values()
                .filter(|armed| !armed.dpc.is_null())
                .count(),
            table.dpcs_in_flight,
        )
    })
}

/// Reports timers or DPCs still pending when `what` happened; returns whether any was.
pub(crate) fn report_pending(what: &str) -> bool {
    let (timers, dpcs) = pending();
    if timers + dpcs > 0 {
        bug_check(
            Rule::TimerPendingAtUnload,
            format!(
                "{timers} timer(s) with a DPC still set and {dpcs} DPC(s) queued or running at \
                 {what} (their DPCs would run in an unloaded driver)"
            ),
        );
    }
    timers + dpcs > 0
}

/// Forgets the timers of an earlier session (a DPC already taken still runs).
pub(crate) fn forget() {
    with_table(|table| {
        table.armed.clear();
        table.due.clear();
        table.initialised.clear();
        table.expired_since_set.clear();
    });
}

/// The timer thread: expires timers and runs their DPCs.
fn expire_timers() {
    let mut guard = lock();
    loop {
        let table = guard.get_or_insert_with(Table::default);
        if table.stopping {
            return;
        }
        let now = Instant::now();
        let mut wait = None;
        let mut expired = None;
        while let Some(&Reverse((due, generation, timer))) = table.due.peek() {
            if table
                .armed
                .get(&timer)
                .is_none_or(|armed| armed.generation != generation)
            {
                table.due.pop();
                continue;
            }
            if due > now {
                wait = Some(due - now);
                break;
            }
            table.due.pop();
            let armed = table.armed.remove(&timer).expect("checked above");
            // SAFETY: a set timer is live driver memory until it expires or is cancelled (a
            // driver that frees it while set corrupts the kernel's table on Windows too).
            unsafe { (*armed.timer).Header.SignalState = 1 };
            table.expired_since_set.insert(timer);
            if !armed.dpc.is_null() {
                table.dpcs_in_flight += 1;
                table.dpc_of = timer;
                expired = Some(Queued(armed.dpc, timer));
                break;
            }
        }
        if let Some(Queued(dpc, timer)) = expired {
            drop(guard);
            if crate::faults::wine_timers() {
                // A thread-pool callback's dispatch: a cancel may come meanwhile.
                std::thread::sleep(Duration::from_millis(1));
            }
            RUNNING_DPC_OF.set(timer);
            run_dpc(dpc);
            RUNNING_DPC_OF.set(0);
            guard = lock();
            if let Some(table) = guard.as_mut() {
                table.dpcs_in_flight -= 1;
                table.dpc_of = 0;
            }
            CHANGED.notify_all();
            continue;
        }
        guard = match wait {
            Some(wait) => {
                CHANGED
                    .wait_timeout(guard, wait)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
            None => CHANGED.wait(guard).unwrap_or_else(|e| e.into_inner()),
        };
    }
}

/// A DPC taken from the table, to run outside its lock, and its timer's address.
struct Queued(PKDPC, usize);

thread_local! {
    /// The address of the timer whose DPC this thread is running (0: none).
    static RUNNING_DPC_OF: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Runs a DPC's routine at DISPATCH_LEVEL, as a processor's DPC queue does.
fn run_dpc(dpc: PKDPC) {
    // SAFETY: the DPC was initialised by `KeInitializeDpc` and stays valid while it is
    // queued (the driver's contract).
    let (routine, context) = unsafe { ((*dpc).DeferredRoutine, (*dpc).DeferredContext) };
    let Some(routine) = routine else {
        bug_check(
            Rule::InvalidParameter,
            format!("the DPC {dpc:p} of an expired timer has no routine"),
        );
        return;
    };
    let previous = irql::set(DISPATCH_LEVEL);
    // SAFETY: the routine and context the driver gave `KeInitializeDpc`.
    unsafe { routine(dpc, context, std::ptr::null_mut(), std::ptr::null_mut()) };
    let returned_at = irql::set(previous);
    if returned_at != DISPATCH_LEVEL {
        bug_check(
            Rule::IrqlNotGreaterOrEqual,
            format!("the DPC routine of {dpc:p} returned at IRQL {returned_at}"),
        );
    }
    crate::session::count(|c| c.dpcs_run += 1);
}

/// `KeInitializeDpc`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeInitializeDpc(
    Dpc: PRKDPC,
    DeferredRoutine: PKDEFERRED_ROUTINE,
    DeferredContext: PVOID,
) {
    // SAFETY: the caller gives a writable KDPC.
    unsafe {
        Dpc.write(KDPC {
            Type: 0x13,
            DeferredRoutine,
            DeferredContext,
            ..KDPC::default()
        });
    }
}

/// `KeInitializeTimerEx`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeInitializeTimerEx(Timer: PKTIMER, Type: TIMER_TYPE) {
    if !require_irql("KeInitializeTimerEx", DISPATCH_LEVEL) {
        return;
    }
    let set = with_table(|table| {
        if table.armed.contains_key(&(Timer as usize)) {
            return true;
        }
        table.initialised.insert(Timer as usize);
        // A new timer at the address of an expired one: nothing of the old one is kept.
        table.expired_since_set.remove(&(Timer as usize));
        // SAFETY: the caller gives a writable KTIMER, not set (checked under the lock the
        // timer thread writes it under).
        unsafe {
            Timer.write(KTIMER::default());
            (*Timer).Header.Type = 8 + Type as UCHAR;
        }
        false
    });
    if set {
        bug_check(
            Rule::TimerInvalid,
            format!("KeInitializeTimerEx({Timer:p}) on a timer that is set"),
        );
    }
}

/// A due time (100 ns units; negative: relative; positive: absolute system time since 1601)
/// as an instant.
fn due_instant(due: i64) -> Instant {
    let now = Instant::now();
    if due <= 0 {
        return now + Duration::from_nanos(due.unsigned_abs().saturating_mul(100));
    }
    // 100 ns intervals between 1601-01-01 and 1970-01-01.
    const EPOCH_DIFFERENCE: u64 = 116_444_736_000_000_000;
    let since_unix = Duration::from_nanos((due as u64).saturating_sub(EPOCH_DIFFERENCE) * 100);
    let now_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    now + since_unix.saturating_sub(now_unix)
}

/// `KeSetTimer`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeSetTimer(
    Timer: PKTIMER,
    DueTime: LARGE_INTEGER,
    Dpc: PKDPC,
) -> BOOLEAN {
    if !require_irql("KeSetTimer", DISPATCH_LEVEL) {
        return FALSE;
    }
    // SAFETY: a LARGE_INTEGER is read whole.
    let due = due_instant(unsafe { DueTime.QuadPart });
    let was_set = with_table(|table| {
        if !table.initialised.contains(&(Timer as usize)) {
            return None;
        }
        // SAFETY: the caller's live timer; written under the table's lock, as the timer
        // thread writes its state at expiry.
        unsafe {
            (*Timer).Header.SignalState = 0;
            (*Timer).Dpc = Dpc;
        }
        table.expired_since_set.remove(&(Timer as usize));
        let generation = table.next_generation;
        table.next_generation += 1;
        let was_set = table
            .armed
            .insert(
                Timer as usize,
                Armed {
                    timer: Timer,
                    dpc: Dpc,
                    generation,
                },
            )
            .is_some();
        table.due.push(Reverse((due, generation, Timer as usize)));
        Some(was_set)
    });
    let Some(was_set) = was_set else {
        bug_check(
            Rule::TimerInvalid,
            format!("KeSetTimer({Timer:p}): not a timer initialised by KeInitializeTimerEx"),
        );
        return FALSE;
    };
    start_thread();
    CHANGED.notify_all();
    BOOLEAN::from(was_set)
}

/// `KeCancelTimer`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeCancelTimer(Timer: PKTIMER) -> BOOLEAN {
    if !require_irql("KeCancelTimer", DISPATCH_LEVEL) {
        return FALSE;
    }
    if RUNNING_DPC_OF.get() == Timer as usize {
        bug_check(
            Rule::TimerCancelledInItsDpc,
            format!(
                "KeCancelTimer({Timer:p}) from the timer's own DPC: Windows answers FALSE, \
                 Wine's kernel waits for this very DPC to end and never returns"
            ),
        );
    }
    let wine = crate::faults::wine_timers();
    let mut guard = lock();
    if wine && RUNNING_DPC_OF.get() != Timer as usize {
        // Wine waits for the timer's callback to return.
        while guard
            .as_ref()
            .is_some_and(|table| table.dpc_of == Timer as usize)
        {
            guard = CHANGED.wait(guard).unwrap_or_else(|e| e.into_inner());
        }
    }
    let table = guard.get_or_insert_with(Table::default);
    let cancelled = if table.initialised.contains(&(Timer as usize)) {
        let stopped = table.armed.remove(&(Timer as usize)).is_some();
        let expired = table.expired_since_set.remove(&(Timer as usize));
        Some(stopped || (wine && expired))
    } else {
        None
    };
    drop(guard);
    match cancelled {
        Some(cancelled) => BOOLEAN::from(cancelled),
        None => {
            bug_check(
                Rule::TimerInvalid,
                format!("KeCancelTimer({Timer:p}): not a timer initialised by KeInitializeTimerEx"),
            );
            FALSE
        }
    }
}

/// `KeFlushQueuedDpcs`: returns once no DPC is queued or running. A timer still set is not
/// waited for (its DPC is not queued yet), as on Windows.
#[unsafe(no_mangle)]
pub extern "system" fn KeFlushQueuedDpcs() {
    if !require_irql("KeFlushQueuedDpcs", PASSIVE_LEVEL) {
        return;
    }
    let mut guard = lock();
    while guard.as_ref().is_some_and(|table| table.dpcs_in_flight > 0) {
        guard = CHANGED.wait(guard).unwrap_or_else(|e| e.into_inner());
    }
    drop(guard);
    crate::session::count(|c| c.dpc_flushes += 1);
}

/// `KeQueryUnbiasedInterruptTime`: 100 ns units since the process's first use of a clock.
#[unsafe(no_mangle)]
pub extern "system" fn KeQueryUnbiasedInterruptTime() -> ULONGLONG {
    (crate::event::start().elapsed().as_nanos() / 100) as ULONGLONG
}
