//! A minimal executor for kernel drivers: [`TaskSet`] runs futures without a thread of its
//! own. A task is polled once in the spawning thread, then in the completion routine of the
//! request it waits for, at DISPATCH_LEVEL — which is how C WSK code chains its work in
//! completion routines. And [`block_on`] for PASSIVE_LEVEL threads.
//!
//! Tasks must therefore be DISPATCH-safe: no waiting, no paged memory. Everything this crate
//! issues is. Every poll — the first one in [`TaskSet::spawn`], and those of the work item
//! below, too — runs in a callback scope: every blocking wait of this crate refuses inside a
//! task with [`Error::IRQL_TOO_HIGH`](crate::Error::IRQL_TOO_HIGH), whatever the IRQL it is
//! polled at (usually DISPATCH_LEVEL; PASSIVE_LEVEL in the spawning thread, in the work item,
//! or when woken from a completion at PASSIVE_LEVEL), so a task behaves the same wherever it
//! is polled.
//!
//! Where a task is *not* polled, so that polls never pile up on one stack (a kernel stack is
//! a few pages; a DPC's is the processor's) nor run inside a critical section of whoever
//! woke them:
//! - woken by anything but a completion routine of this crate — a channel or a timer of the
//!   driver's, another task, an event handler — a task is continued by the set's work item
//!   (`IoQueueWorkItemEx`, at PASSIVE_LEVEL), never on the waker's stack: the waker may hold
//!   the very lock the task takes;
//! - nor nested in more than a few other task polls on one stack (a task spawned by a task,
//!   a request completed inline inside another task's call: four deep at most), nor under a
//!   [`SpinLock`] of this crate held by the code that woke it or spawned it: the work item
//!   continues it then too.
//!
//! A run is bounded as well: after [`RUN_BUDGET`] operations started or polls again (a task
//! woken during its own poll, by a completion or by itself, is polled again), it ends and
//! the work item continues the task.

use alloc::boxed::Box;
use core::cell::UnsafeCell;
use core::future::Future;
use core::pin::Pin;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicUsize, Ordering};
use core::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

use wsk_sys::*;
// With either kernel base, typed as the parameters that take them.
use wsk_sys::typed::{DISPATCH_LEVEL, FALSE, IO_NO_INCREMENT, KernelMode, TRUE};

use crate::client::DriverObject;
use crate::heap::try_box;
use crate::irql::{Irql, require_at_most};
use crate::lifecycle::callback::{CallbackScope, require_wait_allowed};
use crate::per_processor::{self, ProcessorRecord};
use crate::per_thread::{self, ThreadRecord};
use crate::shared::Shared;
use crate::sync::SpinLock;
use crate::{Error, Result};

/// Not polled, not waiting for the work item: the next wake-up polls it or queues it.
const IDLE: u32 = 0;
/// Being polled by one thread.
const POLLING: u32 = 1;
/// Being polled, and woken meanwhile: its poller polls it again (or queues it).
const NOTIFIED: u32 = 2;
/// Finished (or cancelled and dropped): wake-ups do nothing.
const DONE: u32 = 3;
/// In the set's list for the work item, which alone takes it out of this state: a wake-up
/// changes nothing, and a cancel leaves the dropping of its future to the work item — so a
/// task waiting for the work item is never finished under it, and the set is not dropped
/// (its work item freed) while the task is queued for it.
const QUEUED: u32 = 4;

type BoxedFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// One spawned future.
///
/// # Invariants
/// `future` is accessed only by the thread that moved `state` from `IDLE` to `POLLING` (or
/// that finds it `NOTIFIED` and keeps `POLLING`) until it moves it back or to `DONE`.
struct Task {
    state: AtomicU32,
    cancelled: AtomicU32,
    future: UnsafeCell<Option<BoxedFuture>>,
    set: Shared<SetCore>,
    links: UnsafeCell<(*const Task, *const Task)>,
    /// Operations the task may still start, or polls it may still have again, in the
    /// current run (see [`RUN_BUDGET`]); touched only by the thread polling it.
    budget: AtomicU32,
    /// Set when an operation found the budget spent: the run ends and continues in the set's
    /// work item.
    yield_requested: AtomicBool,
    /// Link in the set's list of tasks waiting for the work item, guarded by that list's
    /// lock. A task is in the list exactly while it is `QUEUED` (it is linked by the thread
    /// that moved it there, and moved out by the work item once unlinked), so at most once.
    deferred_next: UnsafeCell<*const Task>,
}

// Freed with its last reference.
impl crate::lifecycle::shared::LastReference for Task {}

/// How many operations a task may start, and how many times it may be polled again, in one
/// run — one wake-up, usually inside a completion routine at DISPATCH_LEVEL — before the run
/// ends and the task continues from the set's work item. A task whose requests all complete
/// inline, or that keeps waking itself (a `yield_now` loop), would otherwise never return
/// from the routine that woke it: a DPC that runs too long is bug check 0x133
/// (DPC_WATCHDOG_VIOLATION).
pub const RUN_BUDGET: u32 = 32;

// SAFETY: the future is `Send` and accessed under the state protocol; the links are guarded
// by the set's lock.
unsafe impl Send for Task {}
// SAFETY: as above.
unsafe impl Sync for Task {}

struct TaskList {
    head: *const Task,
}

// SAFETY: the pointers are tasks kept alive by the list's references, guarded by the lock.
unsafe impl Send for TaskList {}

struct SetCore {
    live: AtomicUsize,
    tasks: SpinLock<TaskList>,
    idle: UnsafeCell<KEVENT>,
    /// Tasks whose run used up its budget, for the work item to continue (each holds a
    /// reference given up with `into_raw`).
    deferred: SpinLock<DeferredList>,
    /// The work item that continues deferred tasks, allocated with the set; freed by the
    /// set's drop at PASSIVE_LEVEL (once it is idle), or with the core.
    work_item: AtomicPtr<IO_WORKITEM>,
    /// Whether the work item is queued (and holds a reference to the set).
    work_item_queued: AtomicBool,
    /// Runs of the work item queued or in progress; `work_item_idle` is set when none.
    work_item_runs: AtomicUsize,
    work_item_idle: UnsafeCell<KEVENT>,
}

// Freed with its last reference.
impl crate::lifecycle::shared::LastReference for SetCore {}

/// The tasks queued for the work item, first in first out: a task queued again and again
/// (a run ending on its budget) goes behind those woken meanwhile, never ahead of them.
struct DeferredList {
    head: *const Task,
    tail: *const Task,
    len: usize,
}

// SAFETY: the pointers are tasks kept alive by the list's references, guarded by the lock.
unsafe impl Send for DeferredList {}

impl Drop for SetCore {
    fn drop(&mut self) {
        let work_item = *self.work_item.get_mut();
        if !work_item.is_null() {
            // SAFETY: allocated with the set, not freed by its drop; not queued (a queued
            // item holds a reference to the set, so the set outlives it) — this may run
            // inside the item's own routine, which may free it.
            unsafe { IoFreeWorkItem(work_item) };
        }
    }
}

// SAFETY: the event is a kernel object usable from any thread; the rest is synchronised.
unsafe impl Send for SetCore {}
// SAFETY: as above.
unsafe impl Sync for SetCore {}

/// A set of tasks driven by their wakers (see the module documentation).
///
/// Dropping the set cancels its tasks (drops their futures, which cancels their requests).
/// At IRQL <= APC_LEVEL it then waits for a task another processor is polling to finish its
/// poll; above, or inside a task (of this set or another), an event handler or a completion
/// routine, it does not wait — such a task retires by itself when its poll returns.
pub struct TaskSet {
    core: Shared<SetCore>,
}

impl TaskSet {
    /// An empty set. `driver` is the driver's object: a task whose run uses up its budget
    /// ([`RUN_BUDGET`]) continues in a work item of the driver (`IoQueueWorkItemEx`), which
    /// keeps the driver loaded until it has run. IRQL <= DISPATCH_LEVEL.
    pub fn new(driver: DriverObject) -> Result<TaskSet> {
        require_at_most(Irql::DISPATCH)?;
        // SAFETY: `driver` is the caller's driver object (its constructor's contract);
        // IoAllocateWorkItem accepts a driver object, for use with IoQueueWorkItemEx.
        let work_item = unsafe { IoAllocateWorkItem(driver.as_ptr().cast()) };
        if work_item.is_null() {
            return Err(Error::INSUFFICIENT_RESOURCES);
        }
        let core = match Shared::try_new(SetCore {
            live: AtomicUsize::new(0),
            tasks: SpinLock::new(TaskList {
                head: core::ptr::null(),
            }),
            idle: UnsafeCell::new(KEVENT::default()),
            deferred: SpinLock::new(DeferredList {
                head: core::ptr::null(),
                tail: core::ptr::null(),
                len: 0,
            }),
            work_item: AtomicPtr::new(work_item),
            work_item_queued: AtomicBool::new(false),
            work_item_runs: AtomicUsize::new(0),
            work_item_idle: UnsafeCell::new(KEVENT::default()),
        }) {
            Ok(core) => core,
            Err(error) => {
                // SAFETY: allocated above, never queued.
                unsafe { IoFreeWorkItem(work_item) };
                return Err(error);
            }
        };
        // SAFETY: the events live in the set's core, in non-paged memory.
        unsafe {
            KeInitializeEvent(core.idle.get(), NotificationEvent, TRUE);
            KeInitializeEvent(core.work_item_idle.get(), NotificationEvent, TRUE);
        }
        Ok(TaskSet { core })
    }

    /// Runs `future` as a task: it is polled at once, on the calling thread — or, spawned
    /// under a [`SpinLock`] of this crate or from deep inside nested task polls, by the set's
    /// work item — then where it is woken (see the module documentation). IRQL <=
    /// DISPATCH_LEVEL. Fails only when memory is short.
    pub fn spawn(&self, future: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        require_at_most(Irql::DISPATCH)?;
        let boxed: BoxedFuture = Box::into_pin(try_box(future)?);
        let task = Shared::try_new(Task {
            state: AtomicU32::new(IDLE),
            cancelled: AtomicU32::new(0),
            future: UnsafeCell::new(Some(boxed)),
            set: self.core.clone(),
            links: UnsafeCell::new((core::ptr::null(), core::ptr::null())),
            budget: AtomicU32::new(RUN_BUDGET),
            yield_requested: AtomicBool::new(false),
            deferred_next: UnsafeCell::new(core::ptr::null()),
        })?;
        {
            let mut list = self.core.tasks.lock();
            if self.core.live.fetch_add(1, Ordering::AcqRel) == 0 {
                // SAFETY: the event lives in the set's core.
                unsafe { KeClearEvent(self.core.idle.get()) };
            }
            let raw = task.clone().into_raw();
            // SAFETY: guarded by the lock; the list's reference keeps linked tasks alive.
            unsafe {
                (*task.links.get()).1 = list.head;
                if let Some(head) = list.head.as_ref() {
                    (*head.links.get()).0 = raw;
                }
            }
            list.head = raw;
        }
        run(&task);
        Ok(())
    }

    /// Number of tasks not finished.
    #[must_use]
    pub fn len(&self) -> usize {
        self.core.live.load(Ordering::Acquire)
    }

    /// Whether every task has finished.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Cancels every task: its future is dropped (cancelling its requests) as soon as it is
    /// not being polled — here, for a task idle now (unless this is called under a
    /// [`SpinLock`] of this crate or deep inside nested task polls: then by the set's work
    /// item), by its poller
    /// for one being polled, by the work item for one queued there. One pass over the tasks.
    /// IRQL <= DISPATCH_LEVEL.
    pub fn cancel_all(&self) {
        // Outside a task's poll and any spin lock of this crate, an idle task's future is
        // dropped here; else by the work item, as a poll would be.
        let site = PollSite::here();
        let drop_here = !site.inside_polls_or_a_lock();
        // One pass over the list, under its lock: every task is marked cancelled; an idle
        // one is claimed (`IDLE` to `POLLING`: nobody else polls it now) and chained through
        // its `deferred_next` — free, as a task not `QUEUED` is in no queue — to have its
        // future dropped once the lock is released; one being polled is notified (its poller
        // polls it again, finds it cancelled, and drops it); one queued is left to the work
        // item, which does the same.
        let mut claimed: *const Task = core::ptr::null();
        {
            let list = self.core.tasks.lock();
            let mut cursor = list.head;
            // SAFETY: linked tasks are alive (the list's references) and their links guarded
            // by the lock; a claimed task's `deferred_next` is this pass's alone.
            unsafe {
                while let Some(task) = cursor.as_ref() {
                    let next = (*task.links.get()).1;
                    if task.cancelled.swap(1, Ordering::AcqRel) == 0 {
                        let claim = drop_here
                            && task
                                .state
                                .compare_exchange(
                                    IDLE,
                                    POLLING,
                                    Ordering::AcqRel,
                                    Ordering::Acquire,
                                )
                                .is_ok();
                        let task = Shared::clone_from_raw(cursor);
                        if claim {
                            *task.deferred_next.get() = claimed;
                            claimed = task.into_raw();
                        } else {
                            take_wake_up(&task, false);
                        }
                    }
                    cursor = next;
                }
            }
        }
        if claimed.is_null() {
            return;
        }
        // Dropped in a poll's scope, as a cancelled task's future is by its poller.
        let _poll = PollScope::enter(site);
        while !claimed.is_null() {
            // SAFETY: the reference the pass gave up with `into_raw`.
            let task = unsafe { Shared::from_raw(claimed) };
            // SAFETY: the pass claimed the task (`POLLING`): this thread alone touches its
            // future and its `deferred_next`.
            unsafe {
                claimed = *task.deferred_next.get();
                *task.future.get() = None;
            }
            task.state.store(DONE, Ordering::Release);
            retire(&task);
        }
    }

    /// Blocks until every task has finished. IRQL <= APC_LEVEL.
    pub fn wait_idle(&self) -> Result<()> {
        require_wait_allowed()?;
        // SAFETY: the event lives in the set's core; waiting is allowed (checked).
        unsafe {
            KeWaitForSingleObject(
                self.core.idle.get().cast(),
                Executive,
                KernelMode,
                FALSE,
                core::ptr::null_mut(),
            );
        }
        Ok(())
    }
}

impl Drop for TaskSet {
    fn drop(&mut self) {
        self.cancel_all();
        // Above APC_LEVEL, or inside a callback or task, nothing can be waited for: a task
        // still running retires by itself, and the work item goes with the set's core.
        if self.wait_idle().is_err() {
            return;
        }
        // SAFETY: the event lives in the set's core; waiting is allowed (checked just above).
        unsafe {
            KeWaitForSingleObject(
                self.core.work_item_idle.get().cast(),
                Executive,
                KernelMode,
                FALSE,
                core::ptr::null_mut(),
            );
        }
        // Every task has retired and no run of the work item is queued or in progress: a
        // waker that outlives the set finds its task done and defers nothing, so the work
        // item can go now rather than with the last such waker.
        let work_item = self
            .core
            .work_item
            .swap(core::ptr::null_mut(), Ordering::AcqRel);
        if !work_item.is_null() {
            // SAFETY: allocated with the set, idle (waited for above), taken out once.
            unsafe { IoFreeWorkItem(work_item) };
        }
    }
}

impl core::fmt::Debug for TaskSet {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TaskSet")
            .field("live", &self.len())
            .finish()
    }
}

/// A task's poll: a callback scope (every blocking wait refuses inside), counted where a
/// poll about to start looks for polls in progress — in the processor's record at
/// DISPATCH_LEVEL (the poller keeps the processor), in the thread's record below. Not
/// `Send`: it belongs to the thread and processor that entered it.
struct PollScope {
    counted: Counted,
    // Dropped after the count: the thread's record it counts in lives while the scope does.
    _scope: CallbackScope,
}

enum Counted {
    Processor(&'static ProcessorRecord),
    Thread(&'static ThreadRecord),
    Nowhere,
}

impl PollScope {
    /// Enters a poll at `site` (where the caller is, as [`PollSite::here`] found it).
    fn enter(site: PollSite) -> PollScope {
        let scope = CallbackScope::enter();
        let processor = match site {
            PollSite::Dispatch(processor) => processor,
            // Below DISPATCH_LEVEL: counted in the thread's record, or — the scope had to raise
            // the IRQL, no thread record being free — in the processor's.
            PollSite::BelowDispatch => match scope.thread_record() {
                Some(record) => {
                    record.task_polls.fetch_add(1, Ordering::Relaxed);
                    return PollScope {
                        counted: Counted::Thread(record),
                        _scope: scope,
                    };
                }
                None => per_processor::current(),
            },
        };
        let counted = processor.map_or(Counted::Nowhere, |record| {
            record.count_poll(true);
            Counted::Processor(record)
        });
        PollScope {
            counted,
            _scope: scope,
        }
    }
}

impl Drop for PollScope {
    fn drop(&mut self) {
        match self.counted {
            Counted::Processor(record) => record.count_poll(false),
            Counted::Thread(record) => {
                record.task_polls.fetch_sub(1, Ordering::Relaxed);
            }
            Counted::Nowhere => {}
        }
    }
}

/// How deep task polls may nest on one stack: a task spawned from inside a task, or whose
/// request completed inline inside another task's call to the provider, is polled there up
/// to this depth — a few of a task's frames on a kernel stack — and by the set's work item
/// beyond it.
const MAX_NESTED_POLLS: usize = 4;

/// Where a poll is about to run: read once per run, for the check and the count.
#[derive(Clone, Copy)]
enum PollSite {
    /// At DISPATCH_LEVEL, on the processor of this record (`None`: an index Windows does not
    /// give).
    Dispatch(Option<&'static ProcessorRecord>),
    /// Below DISPATCH_LEVEL: no spin lock held, and the processor's record reads 0.
    BelowDispatch,
}

impl PollSite {
    fn here() -> PollSite {
        if KeGetCurrentIrql() >= DISPATCH_LEVEL {
            PollSite::Dispatch(per_processor::current())
        } else {
            PollSite::BelowDispatch
        }
    }

    /// Whether a task may not be polled here: inside [`MAX_NESTED_POLLS`] task polls already
    /// (counted on this processor at DISPATCH_LEVEL, on this thread below), or under a spin
    /// lock of this crate.
    fn inside_polls_or_a_lock(self) -> bool {
        let processor = match self {
            PollSite::Dispatch(processor) => processor,
            PollSite::BelowDispatch => None,
        };
        if processor.is_some_and(ProcessorRecord::holds_locks) {
            return true;
        }
        let on_processor = processor.map_or(0, |p| p.polls() as usize);
        // A DPC borrowing the thread of a poll at PASSIVE_LEVEL counts it too: it only sends a
        // wake-up to the work item a little earlier.
        let on_thread =
            per_thread::find().map_or(0, |record| record.task_polls.load(Ordering::Relaxed));
        on_processor + on_thread >= MAX_NESTED_POLLS
    }
}

/// Polls (or, once cancelled, drops) the task until it is pending without a new wake-up, or
/// finished — or, when that would nest it in another task's poll or run it under a spin lock
/// of this crate its caller holds, hands it to the set's work item instead, so that polls
/// never pile up on one stack nor run inside a critical section of their waker's. Returns at
/// once if another thread is polling it (that thread will poll again).
fn run(task: &Shared<Task>) {
    let site = PollSite::here();
    if !take_wake_up(task, !site.inside_polls_or_a_lock()) {
        return;
    }
    let waker = waker_for(task);
    let mut cx = Context::from_waker(&waker);
    let _poll = PollScope::enter(site);
    task.budget.store(RUN_BUDGET, Ordering::Relaxed);
    loop {
        // SAFETY: this thread moved the state to POLLING: it alone touches the future.
        let slot = unsafe { &mut *task.future.get() };
        let finished = if task.cancelled.load(Ordering::Acquire) != 0 {
            true
        } else {
            match slot.as_mut() {
                Some(future) => future.as_mut().poll(&mut cx).is_ready(),
                None => true,
            }
        };
        if finished {
            *slot = None;
            task.state.store(DONE, Ordering::Release);
            retire(task);
            return;
        }
        if task.yield_requested.swap(false, Ordering::Relaxed) {
            // The budget is spent: this run ends here, and the work item continues the task.
            queue(task);
            return;
        }
        match task
            .state
            .compare_exchange(POLLING, IDLE, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => return,
            Err(_) => {
                // Woken during its poll (by a completion it caused, by itself, by another
                // thread): polled again — a re-poll spends the budget as an operation does,
                // so that a task that keeps waking itself ends its run too.
                if !task.spend_budget() {
                    queue(task);
                    return;
                }
                task.state.store(POLLING, Ordering::Release);
            }
        }
    }
}

/// A wake-up that does not poll here: a task being polled is polled again by its poller; an
/// idle one is handed to the set's work item. Any IRQL <= DISPATCH_LEVEL.
fn schedule(task: &Shared<Task>) {
    take_wake_up(task, false);
}

/// Takes a wake-up into the task's state: a task being polled is marked to be polled again
/// by its poller; an idle one becomes the caller's to poll (`poll_here`: returns `true`, the
/// state `POLLING`) or is handed to the set's work item; a finished one ignores it.
fn take_wake_up(task: &Shared<Task>, poll_here: bool) -> bool {
    let mut state = task.state.load(Ordering::Acquire);
    loop {
        match state {
            IDLE if poll_here => match task.state.compare_exchange(
                IDLE,
                POLLING,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(actual) => state = actual,
            },
            IDLE => {
                match task
                    .state
                    .compare_exchange(IDLE, QUEUED, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => {
                        enqueue(task);
                        return false;
                    }
                    Err(actual) => state = actual,
                }
            }
            POLLING => match task.state.compare_exchange(
                POLLING,
                NOTIFIED,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return false,
                Err(actual) => state = actual,
            },
            // Notified already, or queued for the work item: its next poll comes after this
            // wake-up (a read-modify-write, so that what the waker wrote before waking is seen
            // by the thread that takes the task out of this state next).
            NOTIFIED | QUEUED => {
                match task
                    .state
                    .compare_exchange(state, state, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => return false,
                    Err(actual) => state = actual,
                }
            }
            // Finished.
            _ => return false,
        }
    }
}

/// Wakes `waker` from a completion routine of this crate: a task's is run here, in the
/// routine (see [`run`]: unless that would nest polls or run under a lock) — how a task
/// continues where its request completed; any other waker is woken as usual.
pub(crate) fn wake_from_completion(waker: Waker) {
    if !core::ptr::eq(waker.vtable(), &TASK_WAKER) {
        waker.wake();
        return;
    }
    let waker = core::mem::ManuallyDrop::new(waker);
    // SAFETY: a waker with this vtable holds a task reference (the waker protocol), which
    // this takes over (the waker is not dropped).
    let task = unsafe { Shared::from_raw(waker.data().cast::<Task>()) };
    run(&task);
}

/// Whether the operation being polled with `cx` must not start now: inside a task whose run
/// used up its budget, it returns `Pending` instead (the task is woken, and continues from
/// the set's work item). Outside a task, always `false`.
pub(crate) fn must_yield(cx: &Context<'_>) -> bool {
    let waker = cx.waker();
    if !core::ptr::eq(waker.vtable(), &TASK_WAKER) {
        return false;
    }
    // SAFETY: a waker with this vtable holds a task reference (the waker protocol), alive
    // while the waker is.
    let task = unsafe { &*waker.data().cast::<Task>() };
    if task.spend_budget() {
        false
    } else {
        task.yield_requested.store(true, Ordering::Relaxed);
        true
    }
}

impl Task {
    /// Spends one unit of the run's budget (an operation started, a poll again); `false`
    /// when it is spent already. Called by the thread polling the task.
    fn spend_budget(&self) -> bool {
        let left = self.budget.load(Ordering::Relaxed);
        if left == 0 {
            return false;
        }
        self.budget.store(left - 1, Ordering::Relaxed);
        true
    }
}

/// Ends the run of a task its poller holds (`POLLING` or `NOTIFIED`): the task goes to the
/// set's work item.
fn queue(task: &Shared<Task>) {
    // A read-modify-write: it acquires what a waker that set `NOTIFIED` wrote, for the
    // work item's poll.
    task.state.swap(QUEUED, Ordering::AcqRel);
    enqueue(task);
}

/// Puts a task this thread moved to `QUEUED` in the set's list for the work item, and queues
/// the work item if it is not. The set's work item is alive: a queued task is not finished,
/// so the set's drop has not freed it (it frees it only once every task has finished and no
/// run of the item is queued or in progress).
fn enqueue(task: &Shared<Task>) {
    let set = &task.set;
    let queue_the_item = {
        let mut list = set.deferred.lock();
        debug_assert_eq!(task.state.load(Ordering::Relaxed), QUEUED);
        let raw = task.clone().into_raw();
        // SAFETY: guarded by the lock; the list's references keep the linked tasks alive.
        unsafe {
            *task.deferred_next.get() = core::ptr::null();
            match list.tail.as_ref() {
                Some(tail) => *tail.deferred_next.get() = raw,
                None => list.head = raw,
            }
        }
        list.tail = raw;
        list.len += 1;
        // The run is counted before the task can be seen in the list (the lock is still
        // held): the set's drop, which frees the work item only once no run is counted, cannot
        // free it between the task's linking and the queueing below — even if a run already
        // in progress takes the task and finishes it meanwhile.
        let queue_the_item = !set.work_item_queued.swap(true, Ordering::AcqRel);
        if queue_the_item && set.work_item_runs.fetch_add(1, Ordering::AcqRel) == 0 {
            // SAFETY: the event lives in the set's core.
            unsafe { KeClearEvent(set.work_item_idle.get()) };
        }
        queue_the_item
    };
    if queue_the_item {
        let context = set.clone().into_raw();
        // SAFETY: the work item belongs to the set, which the reference given here keeps
        // alive until the routine takes it back; it is not queued (the flag was clear), and
        // not freed (only the set's drop frees it, once no run is queued or in progress —
        // this one is counted).
        unsafe {
            IoQueueWorkItemEx(
                set.work_item.load(Ordering::Acquire),
                wsk_sys::io_workitem_routine_ex!(continue_deferred),
                DelayedWorkQueue,
                context.cast_mut().cast(),
            );
        }
    }
}

/// The set's work item: runs, at PASSIVE_LEVEL, the tasks whose run used up its budget.
unsafe extern "system" fn continue_deferred(
    _io_object: PVOID,
    context: PVOID,
    _work_item: PIO_WORKITEM,
) {
    // SAFETY: the reference `enqueue` gave up with `into_raw`.
    let set = unsafe { Shared::<SetCore>::from_raw(context.cast::<SetCore>()) };
    // Tasks queued from now on queue the item again, and are continued by that next run of
    // the item: this one runs only as many tasks as were waiting when it started, so it is
    // bounded too (system worker threads are shared).
    set.work_item_queued.store(false, Ordering::Release);
    let waiting = set.deferred.lock().len;
    for _ in 0..waiting {
        let next = {
            let mut list = set.deferred.lock();
            let head = list.head;
            if head.is_null() {
                break;
            }
            // SAFETY: guarded by the lock; the head is alive (the list's reference).
            unsafe {
                list.head = *(*head).deferred_next.get();
            }
            if list.head.is_null() {
                list.tail = core::ptr::null();
            }
            list.len -= 1;
            head
        };
        // SAFETY: the list's reference, given up in `enqueue`.
        let task = unsafe { Shared::from_raw(next) };
        // Out of the list: the task is the work item's to release from `QUEUED` (nobody
        // else moves it from there), then polled as any woken task is.
        let was = task.state.swap(IDLE, Ordering::AcqRel);
        debug_assert_eq!(was, QUEUED);
        run(&task);
    }
    if set.work_item_runs.fetch_sub(1, Ordering::AcqRel) == 1 {
        // SAFETY: the event lives in the set's core, kept alive by `set`.
        unsafe { KeSetEvent(set.work_item_idle.get(), IO_NO_INCREMENT.into(), FALSE) };
    }
}

/// Unlinks a finished task and counts it out of its set.
fn retire(task: &Shared<Task>) {
    let set = &task.set;
    let raw = {
        let mut list = set.tasks.lock();
        // SAFETY: guarded by the lock; neighbours are alive (linked).
        unsafe {
            let (prev, next) = *task.links.get();
            match prev.as_ref() {
                Some(prev) => (*prev.links.get()).1 = next,
                None => list.head = next,
            }
            if let Some(next) = next.as_ref() {
                (*next.links.get()).0 = prev;
            }
        }
        if set.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            // SAFETY: the event lives in the set's core.
            unsafe { KeSetEvent(set.idle.get(), IO_NO_INCREMENT.into(), FALSE) };
        }
        task.as_ptr()
    };
    // SAFETY: the list's reference, given up when the task was linked.
    drop(unsafe { Shared::from_raw(raw) });
}

fn waker_for(task: &Shared<Task>) -> Waker {
    let raw = task.clone().into_raw().cast::<()>();
    // SAFETY: the vtable's functions treat the data pointer as a `Shared<Task>` reference,
    // which `raw` is.
    unsafe { Waker::from_raw(RawWaker::new(raw, &TASK_WAKER)) }
}

static TASK_WAKER: RawWakerVTable = RawWakerVTable::new(clone_waker, wake, wake_by_ref, drop_waker);

unsafe fn clone_waker(data: *const ()) -> RawWaker {
    // SAFETY: `data` is a held task reference (waker protocol).
    let task = unsafe { Shared::clone_from_raw(data.cast::<Task>()) };
    RawWaker::new(task.into_raw().cast(), &TASK_WAKER)
}

/// A wake-up from anywhere but a completion routine of this crate (a channel, a timer of the
/// user's, another task, a handler): the task is not polled on the waker's stack, where the
/// waker may hold a lock the task takes, or be polling a task itself (see [`schedule`]).
unsafe fn wake(data: *const ()) {
    // SAFETY: `wake` consumes the waker's reference.
    let task = unsafe { Shared::from_raw(data.cast::<Task>()) };
    schedule(&task);
}

unsafe fn wake_by_ref(data: *const ()) {
    // SAFETY: the waker keeps its reference.
    let task = unsafe { Shared::clone_from_raw(data.cast::<Task>()) };
    schedule(&task);
}

unsafe fn drop_waker(data: *const ()) {
    // SAFETY: dropping the waker releases its reference.
    drop(unsafe { Shared::from_raw(data.cast::<Task>()) });
}

/// Runs a future to completion on the calling thread, sleeping between wake-ups.
/// IRQL <= APC_LEVEL ([`Error::IRQL_TOO_HIGH`](crate::Error::IRQL_TOO_HIGH) otherwise).
pub fn block_on<F: Future>(future: F) -> Result<F::Output> {
    require_wait_allowed()?;
    let signal = Shared::try_new(Signal {
        event: UnsafeCell::new(KEVENT::default()),
    })?;
    // SAFETY: the event lives in the shared signal, in non-paged memory.
    unsafe { KeInitializeEvent(signal.event.get(), SynchronizationEvent, FALSE) };
    let raw = signal.clone().into_raw().cast::<()>();
    // SAFETY: the vtable treats the data pointer as a `Shared<Signal>` reference.
    let waker = unsafe { Waker::from_raw(RawWaker::new(raw, &SIGNAL_WAKER)) };
    let mut cx = Context::from_waker(&waker);
    let mut future = core::pin::pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return Ok(output);
        }
        // The future may have left the IRQL raised (a spin-lock guard held across an await):
        // then it cannot be waited for; it is dropped, which cancels its requests.
        require_wait_allowed()?;
        // SAFETY: waiting on the signal's event at an IRQL that allows it (checked).
        unsafe {
            KeWaitForSingleObject(
                signal.event.get().cast(),
                Executive,
                KernelMode,
                FALSE,
                core::ptr::null_mut(),
            );
        }
    }
}

struct Signal {
    event: UnsafeCell<KEVENT>,
}

// Freed with its last reference.
impl crate::lifecycle::shared::LastReference for Signal {}

// SAFETY: a kernel event may be signalled from any thread.
unsafe impl Send for Signal {}
// SAFETY: as above.
unsafe impl Sync for Signal {}

static SIGNAL_WAKER: RawWakerVTable =
    RawWakerVTable::new(clone_signal, wake_signal, wake_signal_by_ref, drop_signal);

unsafe fn clone_signal(data: *const ()) -> RawWaker {
    // SAFETY: `data` is a held signal reference.
    let signal = unsafe { Shared::clone_from_raw(data.cast::<Signal>()) };
    RawWaker::new(signal.into_raw().cast(), &SIGNAL_WAKER)
}

unsafe fn wake_signal(data: *const ()) {
    // SAFETY: consumes the waker's reference after signalling.
    unsafe {
        wake_signal_by_ref(data);
        drop_signal(data);
    }
}

unsafe fn wake_signal_by_ref(data: *const ()) {
    // SAFETY: the waker's reference keeps the signal alive; KeSetEvent is callable at
    // IRQL <= DISPATCH_LEVEL, where wakers run.
    unsafe {
        let signal = Shared::borrow_raw(data.cast::<Signal>());
        KeSetEvent(signal.event.get(), IO_NO_INCREMENT.into(), FALSE);
    }
}

unsafe fn drop_signal(data: *const ()) {
    // SAFETY: releases the waker's reference.
    drop(unsafe { Shared::from_raw(data.cast::<Signal>()) });
}
