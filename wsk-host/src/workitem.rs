//! Work items: `IoAllocateWorkItem`, `IoQueueWorkItemEx` and `IoFreeWorkItem`, run by system
//! worker threads that `wsk-host` owns — one per queue type, each running its items one after
//! the other at PASSIVE_LEVEL. A queue's thread starts with its first item and ends when the
//! queue is empty (the next item starts another); the end of a session joins the threads that
//! ended, so that no thread of the host outlives the work it was started for.
//!
//! Like the I/O manager, which holds a reference on a work item's IO object while the item is
//! queued or running (so the driver cannot unload under it), the end of a session and
//! [`LoadedDriver::unload`](crate::LoadedDriver::unload) wait until no work item is queued or
//! running.

use std::collections::{HashMap, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wsk_sys::*;

use crate::faults;
use crate::irql;
use crate::verifier::{Rule, bug_check, require_irql};

/// The memory a `PIO_WORKITEM` points to.
#[repr(C)]
struct WorkItemBody {
    /// The object the item was allocated for.
    io_object: PVOID,
}

/// Where a live work item is in its cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ItemState {
    /// Allocated, not queued (or its routine has returned).
    Idle,
    /// Queued, its routine not started.
    Queued,
    /// Its routine is running.
    Running,
}

/// The work items of the process.
struct Items {
    /// Live items by address.
    live: HashMap<usize, ItemState>,
    /// Recently freed items: their memory is poisoned and kept, so that a use is detected and
    /// an address is not handed out again at once.
    quarantine: VecDeque<usize>,
}

/// None under Miri: it reports any use of freed memory itself, and would report quarantined
/// work items (kept by address, without provenance) as leaked at exit.
const QUARANTINE_LENGTH: usize = if cfg!(miri) { 0 } else { 1024 };

static ITEMS: Mutex<Option<Items>> = Mutex::new(None);

fn items() -> MutexGuard<'static, Option<Items>> {
    ITEMS.lock().unwrap_or_else(|e| e.into_inner())
}

fn with_items<R>(f: impl FnOnce(&mut Items) -> R) -> R {
    let mut guard = items();
    f(guard.get_or_insert_with(|| Items {
        live: HashMap::new(),
        quarantine: VecDeque::new(),
    }))
}

/// A queued routine call.
struct Job {
    item: usize,
    routine: unsafe extern "system" fn(PVOID, PVOID, PIO_WORKITEM),
    io_object: usize,
    context: usize,
}

/// One system worker queue and its thread.
struct WorkerQueue {
    state: Mutex<QueueState>,
}

/// A queue's jobs and thread.
struct QueueState {
    jobs: VecDeque<Job>,
    /// Whether the queue's thread is running its jobs (it stops, under this lock, when it
    /// finds none).
    running: bool,
    /// The queue's last thread, to join once it has stopped.
    thread: Option<JoinHandle<()>>,
}

impl WorkerQueue {
    const fn new() -> WorkerQueue {
        WorkerQueue {
            state: Mutex::new(QueueState {
                jobs: VecDeque::new(),
                running: false,
                thread: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Joins the worker threads, which stop once their queues are empty. Called when no work
/// item is queued or running: a thread still running then has just returned from its last
/// routine and is about to find its queue empty; a queue that has jobs again is left alone.
pub(crate) fn join_stopped_workers() {
    for queue in &QUEUES {
        let thread = loop {
            let mut state = queue.lock();
            if !state.running {
                break state.thread.take();
            }
            if !state.jobs.is_empty() {
                break None;
            }
            drop(state);
            std::thread::yield_now();
        };
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

/// The queues of `CriticalWorkQueue`, `DelayedWorkQueue` and `HyperCriticalWorkQueue`, in the
/// order of their values.
static QUEUES: [WorkerQueue; 3] = [const { WorkerQueue::new() }; 3];

/// Work items queued or running, and the condition signalled when the count drops.
static ACTIVE: Mutex<usize> = Mutex::new(0);
static ACTIVE_CHANGED: Condvar = Condvar::new();

fn active() -> MutexGuard<'static, usize> {
    ACTIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Number of work items queued or running now.
pub(crate) fn in_flight() -> usize {
    *active()
}

/// Waits up to `timeout` until no work item is queued or running; returns whether none is.
pub(crate) fn wait_idle(timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut active = active();
    while *active > 0 {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        active = ACTIVE_CHANGED
            .wait_timeout(active, deadline - now)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    true
}

/// Number of live work items that are neither queued nor running.
pub(crate) fn leaked() -> usize {
    with_items(|items| {
        items
            .live
            .values()
            .filter(|&&state| state == ItemState::Idle)
            .count()
    })
}

/// Forgets the live work items of an earlier session (they are not freed).
pub(crate) fn forget() {
    with_items(|items| items.live.clear());
}

/// Reports that work items were still queued or running when `what` waited `waited` for
/// them; returns whether any was.
pub(crate) fn report_still_running(what: &str, waited: Duration) -> bool {
    let count = in_flight();
    if count > 0 {
        bug_check(
            Rule::WorkItemStillRunning,
            format!(
                "{count} work item(s) still queued or running after {what} waited {waited:?} \
                 (the I/O manager's reference on their IO object keeps the driver loaded)"
            ),
        );
    }
    count > 0
}

/// The worker thread of queue `index`: runs its jobs until there are none.
fn worker(index: usize) {
    let queue = &QUEUES[index];
    loop {
        let job = {
            let mut state = queue.lock();
            match state.jobs.pop_front() {
                Some(job) => job,
                None => {
                    state.running = false;
                    return;
                }
            }
        };
        run(job);
    }
}

/// Runs one queued routine at PASSIVE_LEVEL.
fn run(job: Job) {
    with_items(|items| {
        if let Some(state) = items.live.get_mut(&job.item) {
            *state = ItemState::Running;
        }
    });
    irql::set(PASSIVE_LEVEL);
    // SAFETY: the routine and its arguments are those the driver queued; the item is live
    // (it cannot be freed while queued), and the I/O manager's reference keeps the IO object.
    unsafe {
        (job.routine)(
            job.io_object as PVOID,
            job.context as PVOID,
            job.item as PIO_WORKITEM,
        );
    }
    let returned_at = irql::current();
    if returned_at != PASSIVE_LEVEL {
        bug_check(
            Rule::WorkItemReturnedAtBadIrql,
            format!(
                "the routine of work item {:#x} returned at IRQL {returned_at} (bug check 0xE1)",
                job.item
            ),
        );
        irql::set(PASSIVE_LEVEL);
    }
    with_items(|items| {
        // Freed by its routine, or queued again by it: nothing to do.
        if let Some(state) = items
            .live
            .get_mut(&job.item)
            .filter(|state| **state == ItemState::Running)
        {
            *state = ItemState::Idle;
        }
    });
    crate::session::count(|c| c.work_items_run += 1);
    let mut active = active();
    *active -= 1;
    ACTIVE_CHANGED.notify_all();
}

/// `IoAllocateWorkItem`: a work item for `DeviceObject` (a device object, or the caller's
/// driver object cast to `PDEVICE_OBJECT`).
#[unsafe(no_mangle)]
pub extern "system" fn IoAllocateWorkItem(DeviceObject: PDEVICE_OBJECT) -> PIO_WORKITEM {
    if !require_irql("IoAllocateWorkItem", DISPATCH_LEVEL) {
        return std::ptr::null_mut();
    }
    if DeviceObject.is_null() {
        bug_check(
            Rule::InvalidParameter,
            "IoAllocateWorkItem with a NULL device or driver object",
        );
        return std::ptr::null_mut();
    }
    if faults::work_item_allocation_fails() {
        return std::ptr::null_mut();
    }
    let item = Box::into_raw(Box::new(WorkItemBody {
        io_object: DeviceObject.cast(),
    }));
    with_items(|items| {
        items.live.insert(item as usize, ItemState::Idle);
    });
    crate::session::count(|c| c.work_items_allocated += 1);
    item.cast()
}

/// `IoQueueWorkItemEx`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn IoQueueWorkItemEx(
    IoWorkItem: PIO_WORKITEM,
    WorkerRoutine: PIO_WORKITEM_ROUTINE_EX,
    QueueType: WORK_QUEUE_TYPE,
    Context: PVOID,
) {
    if !require_irql("IoQueueWorkItemEx", DISPATCH_LEVEL) {
        return;
    }
    let Some(routine) = WorkerRoutine else {
        bug_check(
            Rule::InvalidParameter,
            format!("IoQueueWorkItemEx({IoWorkItem:p}) without a routine"),
        );
        return;
    };
    let queue = match QueueType {
        CriticalWorkQueue | DelayedWorkQueue | HyperCriticalWorkQueue => QueueType as usize,
        other => {
            bug_check(
                Rule::InvalidParameter,
                format!("IoQueueWorkItemEx({IoWorkItem:p}) on the unknown queue type {other}"),
            );
            return;
        }
    };
    let address = IoWorkItem as usize;
    let queued = with_items(|items| match items.live.get_mut(&address) {
        Some(state @ (ItemState::Idle | ItemState::Running)) => {
            *state = ItemState::Queued;
            // SAFETY: a live work item, which this module allocated.
            Ok(unsafe { (*IoWorkItem.cast::<WorkItemBody>()).io_object } as usize)
        }
        Some(ItemState::Queued) => Err((
            Rule::WorkItemInUse,
            format!("IoQueueWorkItemEx({IoWorkItem:p}): queued again before its routine started"),
        )),
        None if items.quarantine.contains(&address) => Err((
            Rule::WorkItemUseAfterFree,
            format!("IoQueueWorkItemEx was given work item {IoWorkItem:p}, which was freed"),
        )),
        None => Err((
            Rule::InvalidParameter,
            format!("IoQueueWorkItemEx({IoWorkItem:p}): not a work item from IoAllocateWorkItem"),
        )),
    });
    let io_object = match queued {
        Ok(io_object) => io_object,
        Err((rule, details)) => {
            bug_check(rule, details);
            return;
        }
    };
    *active() += 1;
    let mut state = QUEUES[queue].lock();
    state.jobs.push_back(Job {
        item: address,
        routine,
        io_object,
        context: Context as usize,
    });
    if !state.running {
        state.running = true;
        // The queue's last thread stopped (or is returning, past its last use of the lock).
        if let Some(stopped) = state.thread.take() {
            let _ = stopped.join();
        }
        state.thread = Some(
            std::thread::Builder::new()
                .name(format!("wsk-host work queue {queue}"))
                .spawn(move || worker(queue))
                .expect("a system worker thread starts"),
        );
    }
}

/// `IoFreeWorkItem`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn IoFreeWorkItem(IoWorkItem: PIO_WORKITEM) {
    if !require_irql("IoFreeWorkItem", DISPATCH_LEVEL) {
        return;
    }
    let address = IoWorkItem as usize;
    let freed = with_items(|items| {
        match items.live.get(&address) {
            None => {
                return Err((
                    Rule::WorkItemDoubleFree,
                    format!("IoFreeWorkItem({IoWorkItem:p}): not a live work item"),
                ));
            }
            Some(ItemState::Queued) => {
                return Err((
                    Rule::WorkItemInUse,
                    format!("IoFreeWorkItem({IoWorkItem:p}) while queued, before its routine ran"),
                ));
            }
            Some(ItemState::Idle | ItemState::Running) => {}
        }
        items.live.remove(&address);
        // SAFETY: a live work item this module allocated; poisoned to make stale use obvious.
        unsafe {
            (*IoWorkItem.cast::<WorkItemBody>()).io_object = usize::MAX as PVOID;
        }
        items.quarantine.push_back(address);
        Ok((items.quarantine.len() > QUARANTINE_LENGTH)
            .then(|| items.quarantine.pop_front())
            .flatten())
    });
    let evicted = match freed {
        Ok(evicted) => evicted,
        Err((rule, details)) => {
            bug_check(rule, details);
            return;
        }
    };
    if let Some(oldest) = evicted {
        // SAFETY: allocated by `Box::into_raw` in `IoAllocateWorkItem`, freed by the driver,
        // and now out of the quarantine: nothing refers to it any more.
        drop(unsafe { Box::from_raw(oldest as *mut WorkItemBody) });
    }
    crate::session::count(|c| c.work_items_freed += 1);
}
