//! IRPs: allocation, reuse, completion through the stack locations, cancellation — with the
//! verifier tracking who owns each IRP.

use std::alloc::Layout;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};

use rustc_hash::FxBuildHasher;
use std::sync::{Mutex, MutexGuard};

use wsk_sys::*;

use crate::faults;
use crate::irql;
use crate::verifier::{Rule, bug_check, require_irql};

/// `IO_TYPE_IRP`.
const IO_TYPE_IRP: CSHORT = 6;

/// What the verifier knows of a live IRP.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IrpRecord {
    pub(crate) size: usize,
    /// Owned by a request (between the WSK call and its completion).
    pub(crate) in_flight: bool,
}

/// Live IRPs allocated by `IoAllocateIrp`, by address.
pub(crate) static LIVE: Mutex<Option<HashMap<usize, IrpRecord>>> = Mutex::new(None);

/// Recently freed IRPs: their memory is poisoned and kept, so that a use is detected and never
/// touches memory given to someone else.
static QUARANTINE: Mutex<Quarantine> = Mutex::new(Quarantine {
    order: VecDeque::new(),
    members: HashSet::with_hasher(FxBuildHasher),
    buckets: [0; QUARANTINE_BUCKETS],
});

/// The quarantined IRPs in the order they were freed (address, size), and their addresses
/// in a hash set (every IRP use is checked, every free inserts and evicts one), behind a
/// counting filter: how many quarantined addresses hash to each bucket, so that the usual
/// check — of a live IRP, whose bucket is most often empty — is one load.
struct Quarantine {
    order: VecDeque<(usize, usize)>,
    members: HashSet<usize, FxBuildHasher>,
    buckets: [u16; QUARANTINE_BUCKETS],
}

/// Buckets of the quarantine's filter: 16 times the quarantine's length, so that at most
/// about one bucket in sixteen is occupied. A count never exceeds the quarantine's length,
/// which fits a `u16`.
const QUARANTINE_BUCKETS: usize = 1 << 16;

/// The filter bucket of an IRP address (a multiplicative hash of the address above its
/// 16-byte alignment).
fn quarantine_bucket(irp: usize) -> usize {
    ((irp as u64 >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 48) as usize
}
/// None under Miri: it reports any use of freed memory itself, and would report quarantined
/// IRPs (kept by address, without provenance) as leaked at exit.
const QUARANTINE_LENGTH: usize = if cfg!(miri) { 0 } else { 4096 };

fn live() -> MutexGuard<'static, Option<HashMap<usize, IrpRecord>>> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 16).expect("IRP sizes fit a layout")
}

/// Number of live IRPs and of IRPs owned by requests.
pub(crate) fn counts() -> (usize, usize) {
    let live = live();
    let map = live.as_ref();
    (
        map.map_or(0, HashMap::len),
        map.map_or(0, |m| m.values().filter(|r| r.in_flight).count()),
    )
}

fn is_quarantined(irp: PIRP) -> bool {
    let quarantine = QUARANTINE.lock().unwrap_or_else(|e| e.into_inner());
    quarantine.buckets[quarantine_bucket(irp as usize)] != 0
        && quarantine.members.contains(&(irp as usize))
}

/// Checks that `irp` may be used by `routine`; reports a use after free.
pub(crate) fn check_usable(irp: PIRP, routine: &str) -> bool {
    if irp.is_null() {
        bug_check(Rule::InvalidParameter, format!("{routine} with a NULL IRP"));
        return false;
    }
    if is_quarantined(irp) {
        bug_check(
            Rule::IrpUseAfterFree,
            format!("{routine} was given IRP {irp:p}, which was freed"),
        );
        return false;
    }
    true
}

/// Prepares an IRP as the I/O manager does (`IoInitializeIrp`).
///
/// # Safety
/// `irp` must point to `size` writable bytes, `size >= IoSizeOfIrp(stack_size)`.
unsafe fn initialize(irp: PIRP, size: USHORT, stack_size: CCHAR) {
    // SAFETY: forwarded from the caller.
    unsafe {
        std::ptr::write_bytes(irp.cast::<u8>(), 0, size as usize);
        (*irp).Type = IO_TYPE_IRP;
        (*irp).Size = size;
        (*irp).StackCount = stack_size;
        (*irp).CurrentLocation = stack_size + 1;
        let stack = irp.add(1).cast::<IO_STACK_LOCATION>();
        (*irp).Tail.Overlay.Packet.Stack.CurrentStackLocation = stack.add(stack_size as usize);
    }
}

/// `IoAllocateIrp`.
#[unsafe(no_mangle)]
pub extern "system" fn IoAllocateIrp(StackSize: CCHAR, _ChargeQuota: BOOLEAN) -> PIRP {
    if !require_irql("IoAllocateIrp", DISPATCH_LEVEL) || StackSize < 1 {
        return std::ptr::null_mut();
    }
    if faults::irp_allocation_fails() {
        return std::ptr::null_mut();
    }
    let size = IoSizeOfIrp(StackSize);
    // SAFETY: a non-zero size.
    let irp = unsafe { std::alloc::alloc(layout(size as usize)) }.cast::<IRP>();
    if irp.is_null() {
        return irp;
    }
    // SAFETY: a fresh allocation of the IRP's size.
    unsafe { initialize(irp, size, StackSize) };
    live().get_or_insert_with(HashMap::new).insert(
        irp as usize,
        IrpRecord {
            size: size as usize,
            in_flight: false,
        },
    );
    crate::session::count(|c| c.irps_allocated += 1);
    irp
}

/// `IoInitializeIrp`: for IRPs the driver allocated itself (not tracked for leaks).
#[unsafe(no_mangle)]
pub unsafe extern "system" fn IoInitializeIrp(Irp: PIRP, PacketSize: USHORT, StackSize: CCHAR) {
    if PacketSize < IoSizeOfIrp(StackSize) {
        bug_check(
            Rule::InvalidParameter,
            format!("IoInitializeIrp: {PacketSize} bytes for {StackSize} stack locations"),
        );
        return;
    }
    // SAFETY: the caller gives `PacketSize` writable bytes.
    unsafe { initialize(Irp, PacketSize, StackSize) };
}

/// `IoReuseIrp`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn IoReuseIrp(Irp: PIRP, Iostatus: NTSTATUS) {
    if !check_usable(Irp, "IoReuseIrp") {
        return;
    }
    if live()
        .as_ref()
        .and_then(|m| m.get(&(Irp as usize)))
        .is_some_and(|r| r.in_flight)
    {
        bug_check(
            Rule::IrpInUse,
            format!("IoReuseIrp({Irp:p}) while a request owns it"),
        );
        return;
    }
    // SAFETY: a live IRP not owned by a request.
    unsafe {
        let (size, stack_size, flags) = ((*Irp).Size, (*Irp).StackCount, (*Irp).AllocationFlags);
        initialize(Irp, size, stack_size);
        (*Irp).AllocationFlags = flags;
        (*Irp).IoStatus.u.Status = Iostatus;
    }
}

/// `IoFreeIrp`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn IoFreeIrp(Irp: PIRP) {
    if !Irp.is_null() && is_quarantined(Irp) {
        bug_check(
            Rule::IrpDoubleFree,
            format!("IoFreeIrp({Irp:p}): the IRP was already freed"),
        );
        return;
    }
    if !require_irql("IoFreeIrp", DISPATCH_LEVEL) || !check_usable(Irp, "IoFreeIrp") {
        return;
    }
    let record = {
        let mut live = live();
        let map = live.get_or_insert_with(HashMap::new);
        match map.get(&(Irp as usize)).copied() {
            Some(record) if record.in_flight => {
                drop(live);
                bug_check(
                    Rule::IrpInUse,
                    format!("IoFreeIrp({Irp:p}) while a request owns it"),
                );
                return;
            }
            Some(record) => {
                map.remove(&(Irp as usize));
                record
            }
            None => {
                drop(live);
                bug_check(
                    Rule::IrpDoubleFree,
                    format!("IoFreeIrp({Irp:p}): not an IRP from IoAllocateIrp"),
                );
                return;
            }
        }
    };
    crate::session::count(|c| c.irps_freed += 1);
    // SAFETY: the IRP's memory is ours again; poisoning makes stale reads obvious.
    unsafe { std::ptr::write_bytes(Irp.cast::<u8>(), 0xfe, record.size) };
    let evicted = {
        let mut quarantine = QUARANTINE.lock().unwrap_or_else(|e| e.into_inner());
        quarantine.order.push_back((Irp as usize, record.size));
        quarantine.members.insert(Irp as usize);
        quarantine.buckets[quarantine_bucket(Irp as usize)] += 1;
        if quarantine.order.len() > QUARANTINE_LENGTH {
            let evicted = quarantine.order.pop_front();
            if let Some((ptr, _)) = evicted {
                quarantine.members.remove(&ptr);
                quarantine.buckets[quarantine_bucket(ptr)] -= 1;
            }
            evicted
        } else {
            None
        }
    };
    if let Some((ptr, size)) = evicted {
        // SAFETY: allocated by `IoAllocateIrp` with this size, and out of quarantine.
        unsafe { std::alloc::dealloc(ptr as *mut u8, layout(size)) };
    }
}

/// Takes ownership of an IRP for a request, as the I/O manager and the WSK provider do when
/// a WSK function is called: checks it, marks it owned, and moves its current stack location
/// down to the one the client filled. Returns `false` (the request must not proceed) when the
/// IRP cannot be used.
pub(crate) fn begin_request(irp: PIRP, routine: &str) -> bool {
    if !check_usable(irp, routine) {
        return false;
    }
    {
        let mut live = live();
        if let Some(record) = live
            .get_or_insert_with(HashMap::new)
            .get_mut(&(irp as usize))
        {
            if record.in_flight {
                drop(live);
                bug_check(
                    Rule::IrpInUse,
                    format!("{routine} was given IRP {irp:p}, already owned by a request"),
                );
                return false;
            }
            record.in_flight = true;
        }
    }
    // SAFETY: a usable IRP with a stack location below the current one (a WSK client's IRP
    // has at least one).
    unsafe {
        if (*irp).CurrentLocation <= 1 {
            bug_check(
                Rule::InvalidParameter,
                format!("{routine}: IRP {irp:p} has no stack location left"),
            );
            return false;
        }
        IoSetNextIrpStackLocation(irp);
        (*irp).IoStatus.u.Status = STATUS_PENDING;
        (*irp).IoStatus.Information = 0;
    }
    true
}

/// Completion routines running now, called by the provider: the end of a session waits for
/// them too, as an unload must (a completion routine still running is driver code in use —
/// what `IoSetCompletionRoutineEx` guards on Windows).
static COMPLETING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Counts a completion in progress until dropped.
struct Completing;

impl Completing {
    fn enter() -> Completing {
        COMPLETING.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Completing
    }
}

impl Drop for Completing {
    fn drop(&mut self) {
        COMPLETING.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Number of provider completions (and the completion routines they run) in progress.
pub(crate) fn completions_in_progress() -> usize {
    COMPLETING.load(std::sync::atomic::Ordering::Acquire)
}

/// Completes a request's IRP with `status` and `information`: releases the request's
/// ownership and runs the completion routines, at DISPATCH_LEVEL (or the caller's IRQL if
/// higher), as the provider does.
pub(crate) fn complete(irp: PIRP, status: NTSTATUS, information: usize) {
    let _completing = Completing::enter();
    if let Some(record) = live().as_mut().and_then(|m| m.get_mut(&(irp as usize))) {
        record.in_flight = false;
    }
    // SAFETY: the request owned the IRP until now.
    unsafe {
        (*irp).IoStatus.u.Status = status;
        (*irp).IoStatus.Information = information as ULONG_PTR;
    }
    irql::at_dispatch(|| {
        // SAFETY: the IRP is being completed by its owner.
        unsafe { IofCompleteRequest(irp, IO_NO_INCREMENT) }
    });
}

/// Like [`complete`], but runs the completion routines at the calling thread's IRQL (for a
/// request completed inline, the caller's — PASSIVE_LEVEL when it was at PASSIVE_LEVEL).
pub(crate) fn complete_at_current_irql(irp: PIRP, status: NTSTATUS, information: usize) {
    if irql::current() >= DISPATCH_LEVEL {
        complete(irp, status, information);
        return;
    }
    let _completing = Completing::enter();
    if let Some(record) = live().as_mut().and_then(|m| m.get_mut(&(irp as usize))) {
        record.in_flight = false;
    }
    // SAFETY: the request owned the IRP until now; it is being completed by its owner.
    unsafe {
        (*irp).IoStatus.u.Status = status;
        (*irp).IoStatus.Information = information as ULONG_PTR;
        IofCompleteRequest(irp, IO_NO_INCREMENT);
    }
}

/// `IofCompleteRequest` (the export behind `IoCompleteRequest`).
#[unsafe(no_mangle)]
pub unsafe extern "system" fn IofCompleteRequest(Irp: PIRP, _PriorityBoost: CCHAR) {
    if !require_irql("IoCompleteRequest", DISPATCH_LEVEL) || !check_usable(Irp, "IoCompleteRequest")
    {
        return;
    }
    let allocated_by_driver = live()
        .as_ref()
        .is_some_and(|m| m.contains_key(&(Irp as usize)));
    let mut last_status = None;
    // SAFETY: the caller owns the IRP; the walk stays within its stack locations, and the IRP
    // is not touched after a completion routine returns STATUS_MORE_PROCESSING_REQUIRED.
    unsafe {
        let status = (*Irp).IoStatus.u.Status;
        while (*Irp).CurrentLocation <= (*Irp).StackCount {
            let location = IoGetCurrentIrpStackLocation(Irp);
            (*Irp).PendingReturned = (*location).Control & SL_PENDING_RETURNED;
            IoSkipCurrentIrpStackLocation(Irp);
            let control = (*location).Control;
            let wanted = (NT_SUCCESS(status) && control & SL_INVOKE_ON_SUCCESS != 0)
                || (!NT_SUCCESS(status) && control & SL_INVOKE_ON_ERROR != 0)
                || ((*Irp).Cancel != 0 && control & SL_INVOKE_ON_CANCEL != 0);
            if let (true, Some(routine)) = (wanted, (*location).CompletionRoutine) {
                let device = if (*Irp).CurrentLocation <= (*Irp).StackCount {
                    (*IoGetCurrentIrpStackLocation(Irp)).DeviceObject
                } else {
                    std::ptr::null_mut()
                };
                let result = routine(device, Irp, (*location).Context);
                if result == STATUS_MORE_PROCESSING_REQUIRED {
                    return;
                }
                last_status = Some(result);
            } else if (*Irp).PendingReturned != 0 && (*Irp).CurrentLocation <= (*Irp).StackCount {
                IoMarkIrpPending(Irp);
            }
        }
    }
    if allocated_by_driver {
        bug_check(
            Rule::CompletionRoutineResult,
            match last_status {
                Some(status) => format!(
                    "the completion routine of driver-allocated IRP {Irp:p} returned {status:#010x}, not \
                     STATUS_MORE_PROCESSING_REQUIRED: the I/O manager would free an IRP it does not own"
                ),
                None => format!(
                    "driver-allocated IRP {Irp:p} completed with no completion routine taking it back \
                     (STATUS_MORE_PROCESSING_REQUIRED): the I/O manager would free an IRP it does not own"
                ),
            },
        );
    }
}

/// `IoSetCompletionRoutineEx`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn IoSetCompletionRoutineEx(
    _DeviceObject: PDEVICE_OBJECT,
    Irp: PIRP,
    CompletionRoutine: PIO_COMPLETION_ROUTINE,
    Context: PVOID,
    InvokeOnSuccess: BOOLEAN,
    InvokeOnError: BOOLEAN,
    InvokeOnCancel: BOOLEAN,
) -> NTSTATUS {
    if !check_usable(Irp, "IoSetCompletionRoutineEx") {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: a usable IRP with a next stack location (the caller's contract).
    unsafe {
        IoSetCompletionRoutine(
            Irp,
            CompletionRoutine,
            Context,
            InvokeOnSuccess != 0,
            InvokeOnError != 0,
            InvokeOnCancel != 0,
        )
    };
    STATUS_SUCCESS
}

// ---- cancellation ------------------------------------------------------------------------------

static CANCEL_LOCK: Mutex<()> = Mutex::new(());

thread_local! {
    static CANCEL_GUARD: RefCell<Vec<MutexGuard<'static, ()>>> = const { RefCell::new(Vec::new()) };
}

/// `IoAcquireCancelSpinLock`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn IoAcquireCancelSpinLock(Irql: PKIRQL) {
    let guard = CANCEL_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    CANCEL_GUARD.with(|g| g.borrow_mut().push(guard));
    let previous = irql::set(irql::current().max(DISPATCH_LEVEL));
    if !Irql.is_null() {
        // SAFETY: the caller gives a writable KIRQL.
        unsafe { *Irql = previous };
    }
}

/// `IoReleaseCancelSpinLock`.
#[unsafe(no_mangle)]
pub extern "system" fn IoReleaseCancelSpinLock(Irql: KIRQL) {
    let released = CANCEL_GUARD.with(|g| g.borrow_mut().pop());
    if released.is_none() {
        bug_check(
            Rule::InvalidParameter,
            "IoReleaseCancelSpinLock without IoAcquireCancelSpinLock on this thread",
        );
    }
    irql::set(Irql);
}

/// `IoCancelIrp`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn IoCancelIrp(Irp: PIRP) -> BOOLEAN {
    if !require_irql("IoCancelIrp", DISPATCH_LEVEL) || !check_usable(Irp, "IoCancelIrp") {
        return FALSE;
    }
    let mut old_irql: KIRQL = 0;
    // SAFETY: the caller holds a valid IRP; the cancel routine is taken atomically under the
    // cancel lock, and called with it held, as Windows does (the routine releases it).
    unsafe {
        IoAcquireCancelSpinLock(&mut old_irql);
        (*Irp).Cancel = TRUE;
        match IoSetCancelRoutine(Irp, None) {
            Some(routine) => {
                (*Irp).CancelIrql = old_irql;
                routine(std::ptr::null_mut(), Irp);
                TRUE
            }
            None => {
                IoReleaseCancelSpinLock(old_irql);
                FALSE
            }
        }
    }
}
