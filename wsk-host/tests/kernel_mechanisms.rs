//! Work items, IRQL raising and lowering, and partial MDLs, through `wsk-sys` as a driver calls
//! them: what they do, and — in the style of `verifier_rules.rs` — each verifier rule they
//! bring, on code that breaks it (the rule is reported, and nothing else) and on the same code
//! written correctly (nothing is reported).

use std::collections::BTreeSet;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use wsk_host::{FaultPlan, Nth, ProviderConfig, Rule, Session, Violation, driver, irql};
use wsk_sys::*;

/// The longest any wait of these tests may take.
const DEADLINE: Duration = Duration::from_secs(10);

/// Runs `code` in a session; returns every finding of the session.
fn findings(config: ProviderConfig, code: impl FnOnce(&Session)) -> Vec<Violation> {
    let session = Session::with_config(config);
    code(&session);
    session.conclude().1
}

/// Asserts that `code`, in a session with `config`, breaks `rule` and nothing else.
fn fires_with_config(rule: Rule, config: ProviderConfig, code: impl FnOnce(&Session)) {
    let found = findings(config, code);
    let rules: BTreeSet<&str> = found.iter().map(|v| v.rule.name()).collect();
    assert_eq!(rules, BTreeSet::from([rule.name()]), "{found:#?}");
    let message = found.iter().find(|v| v.rule == rule).unwrap().to_string();
    assert!(message.contains(rule.name()), "{message}");
}

/// Asserts that `code` breaks `rule`, and nothing else.
fn fires(rule: Rule, code: impl FnOnce(&Session)) {
    fires_with_config(rule, ProviderConfig::default(), code);
}

/// Asserts that `code` breaks no rule.
fn silent(code: impl FnOnce(&Session)) {
    let found = findings(ProviderConfig::default(), code);
    assert!(found.is_empty(), "{found:#?}");
}

/// A work item for the session's driver object, as a driver allocates one for itself.
fn allocate(session: &Session) -> PIO_WORKITEM {
    // SAFETY: the session's driver object lives until the session ends.
    let item = unsafe { IoAllocateWorkItem(session.driver_object().cast()) };
    assert!(!item.is_null());
    item
}

/// Queues `item` on the delayed work queue.
///
/// # Safety
/// `context` must be what `routine` expects, valid until the routine has run.
unsafe fn queue(item: PIO_WORKITEM, routine: PIO_WORKITEM_ROUTINE_EX, context: PVOID) {
    // SAFETY: forwarded from the caller.
    unsafe { IoQueueWorkItemEx(item, routine, DelayedWorkQueue, context) };
}

/// What a work item routine saw.
#[derive(Debug, PartialEq)]
struct RoutineCall {
    io_object: usize,
    context: usize,
    item: usize,
    irql: KIRQL,
    on_test_thread: bool,
}

/// The context of [`report_call`]: where to send what it saw, and the test's thread.
struct Reporter {
    calls: Mutex<Sender<RoutineCall>>,
    test_thread: std::thread::ThreadId,
}

/// Sends what it was called with to the [`Reporter`] its context points to.
unsafe extern "system" fn report_call(io_object: PVOID, context: PVOID, item: PIO_WORKITEM) {
    // SAFETY: the context is the test's `Reporter`, which outlives the routine's run.
    let reporter = unsafe { &*context.cast::<Reporter>() };
    let call = RoutineCall {
        io_object: io_object as usize,
        context: context as usize,
        item: item as usize,
        irql: KeGetCurrentIrql(),
        on_test_thread: std::thread::current().id() == reporter.test_thread,
    };
    reporter.calls.lock().unwrap().send(call).unwrap();
}

fn reporter() -> (Reporter, Receiver<RoutineCall>) {
    let (sender, receiver) = channel();
    let reporter = Reporter {
        calls: Mutex::new(sender),
        test_thread: std::thread::current().id(),
    };
    (reporter, receiver)
}

// ---- work items ----

#[test]
fn work_item_runs_on_a_system_thread_at_passive_level_with_its_arguments() {
    let session = Session::start();
    let (reporter, calls) = reporter();
    let context = (&raw const reporter).cast_mut().cast();
    let item = allocate(&session);
    {
        // Queued from DISPATCH_LEVEL, as a completion routine would.
        let _dispatch = irql::raise(DISPATCH_LEVEL);
        // SAFETY: the reporter outlives the routine's run (it is awaited below).
        unsafe { queue(item, Some(report_call), context) };
    }
    let call = calls.recv_timeout(DEADLINE).expect("the routine runs");
    assert_eq!(
        call,
        RoutineCall {
            io_object: session.driver_object() as usize,
            context: context as usize,
            item: item as usize,
            irql: PASSIVE_LEVEL,
            on_test_thread: false,
        }
    );
    // Once run, the item may be queued again, on another queue.
    // SAFETY: as above.
    unsafe { IoQueueWorkItemEx(item, Some(report_call), CriticalWorkQueue, context) };
    assert_eq!(calls.recv_timeout(DEADLINE).unwrap().item, item as usize);
    assert!(session.wait_for_work_items(DEADLINE));
    // SAFETY: the item's routine has run; it is freed once.
    unsafe { IoFreeWorkItem(item) };
    let report = session.finish();
    assert_eq!(
        (
            report.work_items_allocated,
            report.work_items_freed,
            report.work_items_run
        ),
        (1, 1, 2)
    );
}

/// Runs of [`requeue_then_free`] left before it frees its item.
static REQUEUES_LEFT: AtomicUsize = AtomicUsize::new(0);
static REQUEUE_DONE: AtomicBool = AtomicBool::new(false);

/// Queues its own item again until [`REQUEUES_LEFT`] runs out, then frees it.
unsafe extern "system" fn requeue_then_free(_io_object: PVOID, context: PVOID, item: PIO_WORKITEM) {
    if REQUEUES_LEFT.fetch_sub(1, Ordering::SeqCst) > 1 {
        // SAFETY: the routine's own item, running (not queued): it may be queued again.
        unsafe { IoQueueWorkItemEx(item, Some(requeue_then_free), DelayedWorkQueue, context) };
    } else {
        // SAFETY: the routine's own item, freed once, by its last run.
        unsafe { IoFreeWorkItem(item) };
        REQUEUE_DONE.store(true, Ordering::SeqCst);
    }
}

#[test]
fn work_item_routine_may_queue_its_item_again_and_free_it() {
    let _serial = serial();
    let session = Session::start();
    REQUEUES_LEFT.store(3, Ordering::SeqCst);
    REQUEUE_DONE.store(false, Ordering::SeqCst);
    let item = allocate(&session);
    // SAFETY: the routine needs no context.
    unsafe { queue(item, Some(requeue_then_free), null_mut()) };
    // Finishing waits for the routines: the last one frees the item, so nothing leaks.
    let report = session.finish();
    assert!(REQUEUE_DONE.load(Ordering::SeqCst));
    assert_eq!(
        (
            report.work_items_allocated,
            report.work_items_freed,
            report.work_items_run
        ),
        (1, 1, 3)
    );
}

/// Tests that use the statics of the routines above and below run one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

static SLOW_ROUTINE_DONE: AtomicBool = AtomicBool::new(false);

/// Sleeps, records that it ran to its end, and frees its item.
unsafe extern "system" fn slow_then_free(_io_object: PVOID, _context: PVOID, item: PIO_WORKITEM) {
    std::thread::sleep(Duration::from_millis(200));
    SLOW_ROUTINE_DONE.store(true, Ordering::SeqCst);
    // SAFETY: the routine's own item, freed once.
    unsafe { IoFreeWorkItem(item) };
}

#[test]
fn session_end_waits_for_queued_and_running_work_items() {
    let _serial = serial();
    SLOW_ROUTINE_DONE.store(false, Ordering::SeqCst);
    let session = Session::start();
    let item = allocate(&session);
    // SAFETY: the routine needs no context.
    unsafe { queue(item, Some(slow_then_free), null_mut()) };
    let report = session.finish();
    assert!(SLOW_ROUTINE_DONE.load(Ordering::SeqCst), "finish waited");
    assert_eq!((report.work_items_freed, report.work_items_run), (1, 1));
}

/// `DriverEntry` of a driver that queues [`slow_then_free`] for its own driver object.
unsafe extern "system" fn queueing_driver_entry(
    driver: PDRIVER_OBJECT,
    _registry_path: PUNICODE_STRING,
) -> NTSTATUS {
    // SAFETY: the driver's own object, as `wsk` passes it.
    unsafe {
        (*driver).DriverUnload = Some(queueing_driver_unload);
        let item = IoAllocateWorkItem(driver.cast());
        if item.is_null() {
            return STATUS_INSUFFICIENT_RESOURCES;
        }
        IoQueueWorkItemEx(item, Some(slow_then_free), DelayedWorkQueue, null_mut());
    }
    STATUS_SUCCESS
}

unsafe extern "system" fn queueing_driver_unload(_driver: PDRIVER_OBJECT) {}

#[test]
fn driver_unload_waits_for_work_items() {
    let _serial = serial();
    SLOW_ROUTINE_DONE.store(false, Ordering::SeqCst);
    let session = Session::start();
    let loaded = driver::load("WorkItemDriver", Some(queueing_driver_entry), &[]).unwrap();
    assert!(loaded.unload());
    assert!(SLOW_ROUTINE_DONE.load(Ordering::SeqCst), "unload waited");
    let report = session.finish();
    assert_eq!((report.work_items_allocated, report.work_items_run), (1, 1));
}

#[test]
fn work_item_allocation_fails_as_planned() {
    silent(|session| {
        session.set_faults(FaultPlan::new(3).fail_work_item_allocation(Nth::Call(2)));
        let object = session.driver_object().cast();
        // SAFETY: the session's driver object; every item returned is freed once.
        unsafe {
            let first = IoAllocateWorkItem(object);
            let second = IoAllocateWorkItem(object);
            let third = IoAllocateWorkItem(object);
            assert!(!first.is_null() && second.is_null() && !third.is_null());
            IoFreeWorkItem(first);
            IoFreeWorkItem(third);
        }
        let report = session.report();
        assert_eq!(
            (report.work_items_allocated, report.work_items_freed),
            (2, 2)
        );
    });
}

#[test]
fn work_item_for_a_null_object() {
    fires(Rule::InvalidParameter, |_| {
        // SAFETY: NULL is rejected (the bug under test).
        assert!(unsafe { IoAllocateWorkItem(null_mut()) }.is_null());
    });
}

#[test]
fn work_item_leaked() {
    fires(Rule::WorkItemLeaked, |session| {
        allocate(session);
    });
    silent(|session| {
        // SAFETY: allocated, then freed once.
        unsafe { IoFreeWorkItem(allocate(session)) };
    });
}

#[test]
fn work_item_double_free() {
    fires(Rule::WorkItemDoubleFree, |session| {
        let item = allocate(session);
        // SAFETY: the second free is the bug under test; the host detects it without
        // touching the item.
        unsafe {
            IoFreeWorkItem(item);
            IoFreeWorkItem(item);
        }
    });
}

#[test]
fn work_item_use_after_free() {
    fires(Rule::WorkItemUseAfterFree, |session| {
        let item = allocate(session);
        // SAFETY: queuing the freed item is the bug under test; it is refused.
        unsafe {
            IoFreeWorkItem(item);
            queue(item, Some(requeue_then_free), null_mut());
        }
    });
}

/// Blocks its worker until the channel its context points to delivers (or the deadline).
unsafe extern "system" fn block_until_released(
    _io_object: PVOID,
    context: PVOID,
    _item: PIO_WORKITEM,
) {
    // SAFETY: the context is the test's receiver, which outlives the routine's run.
    let release = unsafe { &*context.cast::<Mutex<Receiver<()>>>() };
    let _ = release.lock().unwrap().recv_timeout(DEADLINE);
}

#[test]
fn work_item_in_use() {
    let _serial = serial();
    fires(Rule::WorkItemInUse, |session| {
        let (release, released) = channel::<()>();
        let released = Mutex::new(released);
        let blocker = allocate(session);
        let item = allocate(session);
        let (reporter, calls) = reporter();
        // SAFETY: the contexts outlive the routines' runs, awaited below. The delayed queue's
        // worker is busy with the blocker, so `item` stays queued: queuing it again and
        // freeing it then are the bugs under test, both refused.
        unsafe {
            queue(
                blocker,
                Some(block_until_released),
                (&raw const released).cast_mut().cast(),
            );
            queue(
                item,
                Some(report_call),
                (&raw const reporter).cast_mut().cast(),
            );
            queue(
                item,
                Some(report_call),
                (&raw const reporter).cast_mut().cast(),
            );
            IoFreeWorkItem(item);
        }
        release.send(()).unwrap();
        calls.recv_timeout(DEADLINE).expect("the item runs once");
        assert!(calls.recv_timeout(Duration::from_millis(100)).is_err());
        assert!(session.wait_for_work_items(DEADLINE));
        // SAFETY: both routines have returned; each item is freed once.
        unsafe {
            IoFreeWorkItem(blocker);
            IoFreeWorkItem(item);
        }
    });
    silent(|session| {
        let item = allocate(session);
        let (reporter, calls) = reporter();
        for _ in 0..2 {
            // SAFETY: queued again only once its routine has run; the reporter outlives it.
            unsafe {
                queue(
                    item,
                    Some(report_call),
                    (&raw const reporter).cast_mut().cast(),
                )
            };
            calls.recv_timeout(DEADLINE).unwrap();
            assert!(session.wait_for_work_items(DEADLINE));
        }
        // SAFETY: not queued; freed once.
        unsafe { IoFreeWorkItem(item) };
    });
}

/// Raises the IRQL and returns without lowering it.
unsafe extern "system" fn return_at_dispatch(
    _io_object: PVOID,
    _context: PVOID,
    item: PIO_WORKITEM,
) {
    let _ = KeRaiseIrqlToDpcLevel();
    // SAFETY: the routine's own item, freed once.
    unsafe { IoFreeWorkItem(item) };
}

/// Raises the IRQL, and lowers it again before returning.
unsafe extern "system" fn raise_and_lower(_io_object: PVOID, _context: PVOID, item: PIO_WORKITEM) {
    let old = KeRaiseIrqlToDpcLevel();
    // SAFETY: back to the IRQL the raise returned; the item is the routine's own, freed once.
    unsafe {
        KeLowerIrql(old);
        IoFreeWorkItem(item);
    }
}

#[test]
fn work_item_returned_at_bad_irql() {
    fires(Rule::WorkItemReturnedAtBadIrql, |session| {
        // SAFETY: the routine needs no context.
        unsafe { queue(allocate(session), Some(return_at_dispatch), null_mut()) };
    });
    silent(|session| {
        // SAFETY: the routine needs no context.
        unsafe { queue(allocate(session), Some(raise_and_lower), null_mut()) };
    });
}

static STUCK_RELEASE: Mutex<Option<Receiver<()>>> = Mutex::new(None);

/// Waits for the test's release (or the deadline), then frees its item.
unsafe extern "system" fn stuck_then_free(_io_object: PVOID, _context: PVOID, item: PIO_WORKITEM) {
    if let Some(release) = STUCK_RELEASE.lock().unwrap().as_ref() {
        let _ = release.recv_timeout(DEADLINE);
    }
    // SAFETY: the routine's own item, freed once.
    unsafe { IoFreeWorkItem(item) };
}

#[test]
fn work_item_still_running() {
    let _serial = serial();
    let config = ProviderConfig {
        work_item_wait_report: Duration::from_millis(100),
        ..ProviderConfig::default()
    };
    let (release, released) = channel::<()>();
    *STUCK_RELEASE.lock().unwrap() = Some(released);
    fires_with_config(Rule::WorkItemStillRunning, config.clone(), |session| {
        // SAFETY: the routine needs no context.
        unsafe { queue(allocate(session), Some(stuck_then_free), null_mut()) };
    });
    // The routine outlived its session; let it end (it holds the lock of `STUCK_RELEASE`
    // while it waits), and check that the next session is clean.
    release.send(()).unwrap();
    *STUCK_RELEASE.lock().unwrap() = None;
    let session = Session::with_config(config);
    // SAFETY: the routine needs no context; it does not wait (the release was sent).
    unsafe { queue(allocate(&session), Some(stuck_then_free), null_mut()) };
    let report = session.finish();
    assert_eq!((report.work_items_freed, report.work_items_run), (1, 1));
}

// ---- IRQL ----

#[test]
fn raise_to_dpc_level_and_lower_through_wsk_sys() {
    silent(|_| {
        assert_eq!(KeGetCurrentIrql(), PASSIVE_LEVEL);
        let old = KeRaiseIrqlToDpcLevel();
        assert_eq!((old, KeGetCurrentIrql()), (PASSIVE_LEVEL, DISPATCH_LEVEL));
        // Already at DISPATCH_LEVEL: a raise to it is allowed.
        let again = KeRaiseIrqlToDpcLevel();
        assert_eq!(again, DISPATCH_LEVEL);
        // SAFETY: each lower returns to the IRQL its raise returned, innermost first.
        unsafe {
            KeLowerIrql(again);
            assert_eq!(KeGetCurrentIrql(), DISPATCH_LEVEL);
            KeLowerIrql(old);
        }
        assert_eq!(KeGetCurrentIrql(), PASSIVE_LEVEL);
        let _apc = irql::raise(APC_LEVEL);
        let old = KeRaiseIrqlToDpcLevel();
        assert_eq!(old, APC_LEVEL);
        // SAFETY: back to the IRQL the raise returned.
        unsafe { KeLowerIrql(old) };
        assert_eq!(KeGetCurrentIrql(), APC_LEVEL);
    });
    assert_eq!(KeGetCurrentIrql(), PASSIVE_LEVEL);
}

#[test]
fn irql_not_greater_or_equal_through_wsk_sys() {
    fires(Rule::IrqlNotGreaterOrEqual, |_| {
        // SAFETY: lowering to a higher IRQL is the bug under test; it is refused.
        unsafe { KeLowerIrql(DISPATCH_LEVEL) };
        assert_eq!(KeGetCurrentIrql(), PASSIVE_LEVEL);
    });
    fires(Rule::IrqlNotGreaterOrEqual, |_| {
        // Above DISPATCH_LEVEL (a device IRQL), raising to DISPATCH_LEVEL would lower it.
        let _device = irql::raise(DISPATCH_LEVEL + 3);
        let old = KeRaiseIrqlToDpcLevel();
        assert_eq!(
            (old, KeGetCurrentIrql()),
            (DISPATCH_LEVEL + 3, DISPATCH_LEVEL + 3)
        );
    });
}

// ---- partial MDLs ----

const PAGE: usize = PAGE_SIZE;

/// A non-paged pool block of `len` bytes, its MDL built.
fn pool_with_mdl(len: usize) -> (PVOID, PMDL) {
    // SAFETY: a plain allocation; the MDL describes all of it.
    unsafe {
        let block = ExAllocatePool2(
            POOL_FLAG_NON_PAGED,
            len as SIZE_T,
            u32::from_le_bytes(*b"Part"),
        );
        assert!(!block.is_null());
        let mdl = IoAllocateMdl(block, len as ULONG, FALSE, FALSE, null_mut());
        assert!(!mdl.is_null());
        MmBuildMdlForNonPagedPool(mdl);
        (block, mdl)
    }
}

/// Frees what [`pool_with_mdl`] made.
///
/// # Safety
/// `block` and `mdl` come from [`pool_with_mdl`] and are freed once.
unsafe fn free_pool_with_mdl(block: PVOID, mdl: PMDL) {
    // SAFETY: forwarded from the caller.
    unsafe {
        IoFreeMdl(mdl);
        ExFreePoolWithTag(block, u32::from_le_bytes(*b"Part"));
    }
}

#[test]
fn io_allocate_mdl_sizes_the_page_array_for_the_buffer() {
    silent(|_| {
        let (block, mdl) = pool_with_mdl(3 * PAGE);
        // SAFETY: the live MDL; freed once.
        unsafe {
            assert_eq!((*mdl).Size as usize, MmSizeOfMdl(block, 3 * PAGE));
            assert_eq!(
                (*mdl).Size as usize,
                size_of::<MDL>()
                    + size_of::<PFN_NUMBER>() * ADDRESS_AND_SIZE_TO_SPAN_PAGES(block, 3 * PAGE)
            );
            free_pool_with_mdl(block, mdl);
        }
    });
}

#[test]
fn io_allocate_mdl_refuses_a_buffer_longer_than_4_gib_less_a_page() {
    silent(|_| {
        // The address is only recorded (the buffer is never touched): any one does.
        let mut byte = 0u8;
        let address: PVOID = (&raw mut byte).cast();
        // SAFETY: no IRP; each MDL allocated is freed once.
        unsafe {
            for length in [u32::MAX, u32::MAX - PAGE as u32 + 2] {
                assert!(
                    IoAllocateMdl(address, length, FALSE, FALSE, null_mut()).is_null(),
                    "an MDL for {length} bytes"
                );
            }
            let longest = u32::MAX - PAGE as u32 + 1;
            let mdl = IoAllocateMdl(address, longest, FALSE, FALSE, null_mut());
            assert!(!mdl.is_null(), "an MDL for 4 GiB less a page");
            assert_eq!((*mdl).ByteCount, longest);
            IoFreeMdl(mdl);
        }
    });
}

#[test]
fn target_mdl_too_small() {
    fires(Rule::TargetMdlTooSmall, |_| {
        let (block, source) = pool_with_mdl(3 * PAGE);
        // SAFETY: the target is an MDL for a one-page buffer, too small for the three-page
        // range (the bug under test): the build is refused and the target left as it was.
        unsafe {
            let target = IoAllocateMdl(block, PAGE as ULONG, FALSE, FALSE, null_mut());
            assert!(!target.is_null());
            let before = *target;
            IoBuildPartialMdl(source, target, block, (3 * PAGE) as ULONG);
            assert_eq!(
                ((*target).ByteCount, (*target).MdlFlags, (*target).Size),
                (before.ByteCount, before.MdlFlags, before.Size)
            );
            IoFreeMdl(target);
            free_pool_with_mdl(block, source);
        }
    });
    silent(|_| {
        let (block, source) = pool_with_mdl(3 * PAGE);
        // SAFETY: a target sized for the range; everything is freed once.
        unsafe {
            let target = IoAllocateMdl(block, (3 * PAGE) as ULONG, FALSE, FALSE, null_mut());
            assert!(!target.is_null());
            IoBuildPartialMdl(source, target, block, (3 * PAGE) as ULONG);
            assert_eq!(MmGetMdlByteCount(target), (3 * PAGE) as ULONG);
            assert_eq!(MmGetMdlVirtualAddress(target), block);
            // A smaller range fits too.
            let middle = block.cast::<u8>().add(PAGE).cast();
            IoBuildPartialMdl(source, target, middle, PAGE as ULONG);
            assert_eq!(MmGetMdlVirtualAddress(target), middle);
            IoFreeMdl(target);
            free_pool_with_mdl(block, source);
        }
    });
}
