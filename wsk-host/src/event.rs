//! Events and waits: `KeInitializeEvent`, `KeSetEvent`, `KeResetEvent`, `KeClearEvent`,
//! `KeReadStateEvent`, `KeWaitForSingleObject`, `KeDelayExecutionThread`, and the
//! performance counter.
//!
//! The `KEVENT` memory is the caller's; its state lives in a side table keyed by address
//! (re-initialised by `KeInitializeEvent`) and is mirrored in `Header.SignalState`.
//! `KeSetEvent` touches the `KEVENT` only before waking a waiter, so a waiter may free it as
//! soon as its wait returns, as on Windows.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use wsk_sys::*;

use crate::irql;
use crate::verifier::{Rule, bug_check, require_irql};

struct EventState {
    signalled: Mutex<bool>,
    condvar: Condvar,
    synchronization: bool,
}

/// The events by address. Setting and waiting only read it, so the thread that sets an event
/// and the one waiting on it do not contend for this table.
static EVENTS: RwLock<Option<HashMap<usize, Arc<EventState>>>> = RwLock::new(None);

fn state_of(event: PRKEVENT) -> Option<Arc<EventState>> {
    EVENTS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(|m| m.get(&(event as usize)).cloned())
}

/// `KeInitializeEvent`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeInitializeEvent(Event: PRKEVENT, Type: EVENT_TYPE, State: BOOLEAN) {
    let state = Arc::new(EventState {
        signalled: Mutex::new(State != 0),
        condvar: Condvar::new(),
        synchronization: Type == SynchronizationEvent,
    });
    // SAFETY: the caller gives a writable KEVENT.
    unsafe {
        (*Event).Header.Type = Type as UCHAR;
        (*Event).Header.SignalState = LONG::from(State != 0);
    }
    EVENTS
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(Event as usize, state);
}

fn uninitialised(routine: &str, event: PRKEVENT) {
    bug_check(
        Rule::InvalidParameter,
        format!("{routine}({event:p}): not an event initialised by KeInitializeEvent"),
    );
}

/// `KeSetEvent`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeSetEvent(
    Event: PRKEVENT,
    _Increment: KPRIORITY,
    _Wait: BOOLEAN,
) -> LONG {
    require_irql("KeSetEvent", DISPATCH_LEVEL);
    let Some(state) = state_of(Event) else {
        uninitialised("KeSetEvent", Event);
        return 0;
    };
    let mut signalled = state.signalled.lock().unwrap_or_else(|e| e.into_inner());
    let previous = LONG::from(*signalled);
    *signalled = true;
    // SAFETY: the event is alive until a waiter returns, which needs the lock held here.
    unsafe { (*Event).Header.SignalState = 1 };
    // Wake after unlocking, so the woken waiter does not find the lock still held. The
    // `KEVENT` is not touched past this point (a waiter may free it once its wait returns);
    // the condition variable lives in `state`, which this thread keeps alive.
    drop(signalled);
    if state.synchronization {
        state.condvar.notify_one();
    } else {
        state.condvar.notify_all();
    }
    previous
}

/// `KeResetEvent`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeResetEvent(Event: PRKEVENT) -> LONG {
    let Some(state) = state_of(Event) else {
        uninitialised("KeResetEvent", Event);
        return 0;
    };
    let mut signalled = state.signalled.lock().unwrap_or_else(|e| e.into_inner());
    let previous = LONG::from(*signalled);
    *signalled = false;
    // SAFETY: the caller owns a live event.
    unsafe { (*Event).Header.SignalState = 0 };
    previous
}

/// `KeClearEvent`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeClearEvent(Event: PRKEVENT) {
    // SAFETY: forwarded.
    unsafe { KeResetEvent(Event) };
}

/// `KeReadStateEvent`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeReadStateEvent(Event: PRKEVENT) -> LONG {
    state_of(Event).map_or(0, |s| {
        LONG::from(*s.signalled.lock().unwrap_or_else(|e| e.into_inner()))
    })
}

/// A timeout in 100 ns units (negative: relative; positive: absolute system time, treated
/// as relative to now here) as a duration; `None` waits forever.
fn timeout_of(timeout: PLARGE_INTEGER) -> Option<Duration> {
    if timeout.is_null() {
        return None;
    }
    // SAFETY: the caller gives a readable LARGE_INTEGER.
    let value = unsafe { (*timeout).QuadPart };
    Some(Duration::from_nanos(
        value.unsigned_abs().saturating_mul(100),
    ))
}

/// Whether a wait with this timeout is allowed at the current IRQL (only polls above
/// APC_LEVEL); reports it otherwise.
fn wait_allowed(routine: &str, timeout: Option<Duration>) -> bool {
    let level = irql::current();
    if level >= DISPATCH_LEVEL && timeout != Some(Duration::ZERO) {
        bug_check(
            Rule::WaitAtDispatchLevel,
            format!(
                "{routine} with a {} timeout at IRQL {level}",
                if timeout.is_none() {
                    "infinite"
                } else {
                    "non-zero"
                }
            ),
        );
        return false;
    }
    true
}

/// `KeWaitForSingleObject` (events only).
#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeWaitForSingleObject(
    Object: PVOID,
    _WaitReason: KWAIT_REASON,
    _WaitMode: KPROCESSOR_MODE,
    _Alertable: BOOLEAN,
    Timeout: PLARGE_INTEGER,
) -> NTSTATUS {
    let timeout = timeout_of(Timeout);
    if !wait_allowed("KeWaitForSingleObject", timeout) {
        return STATUS_TIMEOUT;
    }
    let event = Object.cast::<KEVENT>();
    let Some(state) = state_of(event) else {
        uninitialised("KeWaitForSingleObject", event);
        return STATUS_INVALID_PARAMETER;
    };
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut signalled = state.signalled.lock().unwrap_or_else(|e| e.into_inner());
    while !*signalled {
        match deadline {
            None => {
                signalled = state
                    .condvar
                    .wait(signalled)
                    .unwrap_or_else(|e| e.into_inner())
            }
            Some(deadline) => {
                let now = Instant::now();
                if now >= deadline {
                    return STATUS_TIMEOUT;
                }
                signalled = state
                    .condvar
                    .wait_timeout(signalled, deadline - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
    }
    if state.synchronization {
        *signalled = false;
        // SAFETY: the waiter owns a live event.
        unsafe { (*event).Header.SignalState = 0 };
    }
    STATUS_SUCCESS
}

/// `KeDelayExecutionThread`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeDelayExecutionThread(
    _WaitMode: KPROCESSOR_MODE,
    _Alertable: BOOLEAN,
    Interval: PLARGE_INTEGER,
) -> NTSTATUS {
    let interval = timeout_of(Interval).unwrap_or(Duration::ZERO);
    if !wait_allowed("KeDelayExecutionThread", Some(interval)) {
        return STATUS_SUCCESS;
    }
    std::thread::sleep(interval);
    STATUS_SUCCESS
}

/// The origin of the emulated performance counter and interrupt time.
pub(crate) fn start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// `KeQueryPerformanceCounter`: 10 MHz.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn KeQueryPerformanceCounter(
    PerformanceFrequency: PLARGE_INTEGER,
) -> LARGE_INTEGER {
    if !PerformanceFrequency.is_null() {
        // SAFETY: the caller gives a writable LARGE_INTEGER.
        unsafe { (*PerformanceFrequency).QuadPart = 10_000_000 };
    }
    LARGE_INTEGER {
        QuadPart: (start().elapsed().as_nanos() / 100) as i64,
    }
}
