//! Timers and DPCs through `wsk-sys` as a driver calls them: a DPC runs at DISPATCH_LEVEL
//! with its context once its timer expires, `KeCancelTimer` tells a stopped timer from an
//! expired one, `KeFlushQueuedDpcs` waits for a running DPC, and the verifier reports a timer
//! left set at the end of a session or used without initialisation, and a DPC that cancels
//! its own timer (which Wine's kernel never returns from).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::time::{Duration, Instant};

use wsk_host::{FaultPlan, Rule, Session, irql};
use wsk_sys::*;

/// A timer, its DPC and what the DPC reports, kept in one box (the kernel objects must not
/// move while set).
struct Fixture {
    timer: KTIMER,
    dpc: KDPC,
    runs: AtomicUsize,
    report: Option<Sender<(KIRQL, usize)>>,
    hold: Duration,
}

unsafe extern "system" fn count_run(
    _dpc: PKDPC,
    context: PVOID,
    _argument1: PVOID,
    _argument2: PVOID,
) {
    // SAFETY: the context is the fixture, alive while its timer is set or its DPC queued.
    let fixture = unsafe { &*context.cast::<Fixture>() };
    std::thread::sleep(fixture.hold);
    let runs = fixture.runs.fetch_add(1, Ordering::SeqCst) + 1;
    if let Some(report) = &fixture.report {
        let _ = report.send((irql::current(), runs));
    }
}

fn fixture(hold: Duration, report: Option<Sender<(KIRQL, usize)>>) -> Box<Fixture> {
    let mut fixture = Box::new(Fixture {
        timer: KTIMER::default(),
        dpc: KDPC::default(),
        runs: AtomicUsize::new(0),
        report,
        hold,
    });
    let context: *mut Fixture = &raw mut *fixture;
    // SAFETY: the objects live in the box, which the tests keep until the timer is done.
    unsafe {
        KeInitializeTimerEx(&raw mut fixture.timer, NotificationTimer);
        KeInitializeDpc(&raw mut fixture.dpc, Some(count_run), context.cast());
    }
    fixture
}

fn set(fixture: &mut Fixture, due_100ns: i64) -> BOOLEAN {
    // SAFETY: an initialised timer and DPC, in place until they are done.
    unsafe {
        KeSetTimer(
            &raw mut fixture.timer,
            LARGE_INTEGER {
                QuadPart: due_100ns,
            },
            &raw mut fixture.dpc,
        )
    }
}

fn cancel(fixture: &mut Fixture) -> BOOLEAN {
    // SAFETY: an initialised timer.
    unsafe { KeCancelTimer(&raw mut fixture.timer) }
}

fn rules(findings: &[wsk_host::Violation]) -> BTreeSet<&'static str> {
    findings.iter().map(|v| v.rule.name()).collect()
}

#[test]
fn an_expired_timer_runs_its_dpc_at_dispatch_level_once() {
    let session = Session::start();
    let (report, reports) = channel();
    let mut fixture = fixture(Duration::ZERO, Some(report));
    let started = Instant::now();
    assert_eq!(set(&mut fixture, -200_000), FALSE, "not set before");
    let (level, runs) = reports.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(20));
    assert_eq!(level, DISPATCH_LEVEL);
    assert_eq!(runs, 1);
    assert_eq!(cancel(&mut fixture), FALSE, "an expired timer is not set");
    // SAFETY: PASSIVE_LEVEL.
    unsafe { KeFlushQueuedDpcs() };
    let report = session.finish();
    assert_eq!(report.dpcs_run, 1);
    drop(fixture);
}

#[test]
fn wine_timers_answer_true_for_an_expired_timer_once() {
    let session = Session::start();
    session.set_faults(FaultPlan::default().wine_timers(true));
    let (report, reports) = channel();
    let mut fixture = fixture(Duration::ZERO, Some(report));
    set(&mut fixture, -1);
    let (_, runs) = reports.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(runs, 1);
    assert_eq!(
        cancel(&mut fixture),
        TRUE,
        "Wine: TRUE for an expired timer"
    );
    assert_eq!(cancel(&mut fixture), FALSE, "until it is cancelled");
    // SAFETY: PASSIVE_LEVEL.
    unsafe { KeFlushQueuedDpcs() };
    session.finish();
}

#[test]
fn a_cancelled_timer_runs_no_dpc_and_setting_again_replaces_it() {
    let session = Session::start();
    let mut fixture = fixture(Duration::ZERO, None);
    assert_eq!(set(&mut fixture, -600_000_000), FALSE);
    assert_eq!(set(&mut fixture, -300_000), TRUE, "a set timer is replaced");
    assert_eq!(cancel(&mut fixture), TRUE, "stopped before its expiry");
    assert_eq!(cancel(&mut fixture), FALSE);
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(fixture.runs.load(Ordering::SeqCst), 0);
    let report = session.finish();
    assert_eq!(report.dpcs_run, 0);
}

#[test]
fn flushing_waits_for_a_running_dpc() {
    let session = Session::start();
    let mut fixture = fixture(Duration::from_millis(100), None);
    set(&mut fixture, -1);
    // Expired (signalled): its DPC is taken, and holds for 100 ms.
    let deadline = Instant::now() + Duration::from_secs(10);
    // SAFETY: the timer lives in the box; the host writes its state from the timer thread.
    while unsafe { std::ptr::read_volatile(&raw const fixture.timer.Header.SignalState) } == 0 {
        assert!(Instant::now() < deadline, "the timer did not expire");
        std::thread::sleep(Duration::from_millis(1));
    }
    // SAFETY: PASSIVE_LEVEL.
    unsafe { KeFlushQueuedDpcs() };
    assert_eq!(
        fixture.runs.load(Ordering::SeqCst),
        1,
        "returned after the DPC"
    );
    let report = session.finish();
    assert!(report.dpc_flushes >= 1);
}

#[test]
fn a_timer_left_set_is_reported_at_the_end_of_the_session() {
    let session = Session::start();
    let mut fixture = fixture(Duration::ZERO, None);
    set(&mut fixture, -600_000_000);
    let (_, findings) = session.conclude();
    assert_eq!(
        rules(&findings),
        BTreeSet::from([Rule::TimerPendingAtUnload.name()])
    );
    // The session's end stopped the timer thread and the next session forgets the timer;
    // cancelling it here could race that next session. Its memory stays.
    std::mem::forget(fixture);
}

unsafe extern "system" fn cancel_own_timer(
    _dpc: PKDPC,
    context: PVOID,
    _argument1: PVOID,
    _argument2: PVOID,
) {
    // SAFETY: the context is the fixture, alive while its DPC runs.
    let fixture = unsafe { &mut *context.cast::<Fixture>() };
    let stopped = cancel(fixture);
    fixture.runs.fetch_add(1, Ordering::SeqCst);
    if let Some(report) = &fixture.report {
        let _ = report.send((irql::current(), usize::from(stopped)));
    }
}

#[test]
fn a_dpc_cancelling_its_own_timer_is_reported() {
    let session = Session::start();
    let (report, reports) = channel();
    let mut fixture = fixture(Duration::ZERO, Some(report));
    let context: *mut Fixture = &raw mut *fixture;
    // SAFETY: the DPC lives in the box; not queued (the timer is not set).
    unsafe { KeInitializeDpc(&raw mut fixture.dpc, Some(cancel_own_timer), context.cast()) };
    set(&mut fixture, -1);
    let (_, stopped) = reports.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(
        stopped, 0,
        "an expired timer is not stopped (FALSE), as on Windows"
    );
    // SAFETY: PASSIVE_LEVEL.
    unsafe { KeFlushQueuedDpcs() };
    let (_, findings) = session.conclude();
    assert_eq!(
        rules(&findings),
        BTreeSet::from([Rule::TimerCancelledInItsDpc.name()])
    );
}

#[test]
fn an_uninitialised_timer_is_reported() {
    let session = Session::start();
    let mut timer = Box::new(KTIMER::default());
    // SAFETY: writable memory; the call is the mistake under test (reported, not done).
    unsafe {
        KeSetTimer(
            &raw mut *timer,
            LARGE_INTEGER { QuadPart: -1 },
            std::ptr::null_mut(),
        );
    }
    let (_, findings) = session.conclude();
    assert_eq!(
        rules(&findings),
        BTreeSet::from([Rule::TimerInvalid.name()])
    );
}

#[test]
fn flushing_at_dispatch_level_is_reported() {
    let session = Session::start();
    {
        let _dispatch = irql::raise(DISPATCH_LEVEL);
        // SAFETY: the mistake under test: reported, and returns at once.
        unsafe { KeFlushQueuedDpcs() };
    }
    let (_, findings) = session.conclude();
    assert_eq!(rules(&findings), BTreeSet::from([Rule::IrqlTooHigh.name()]));
}
