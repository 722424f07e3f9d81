//! A minimal executor for kernel drivers: [`TaskSet`] runs futures without a thread of its
//! own, polling each task wherever it is woken — in the spawning thread, or in the
//! completion routine of the request it waits for, at DISPATCH_LEVEL — which is how C WSK
//! code chains its work in completion routines. And [`block_on`] for PASSIVE_LEVEL threads.
//!
//! Tasks must therefore be DISPATCH-safe: no waiting, no paged memory. Everything this crate
//! issues is. Every poll — the first one in [`TaskSet::spawn`] too — runs in a callback
//! scope: every blocking wait of this crate refuses inside a task with
//! [`Error::IRQL_TOO_HIGH`](crate::Error::IRQL_TOO_HIGH), whatever the IRQL it is polled
//! at (usually DISPATCH_LEVEL; PASSIVE_LEVEL in the spawning thread or when woken from a
//! completion at PASSIVE_LEVEL), so a task behaves the same wherever it is woken.

use alloc::boxed::Box;
use core::cell::UnsafeCell;
use core::future::Future;
use core::pin::Pin;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use core::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

use wsk_sys::*;

use crate::Result;
use crate::heap::try_box;
use crate::irql::{Irql, require_at_most};
use crate::lifecycle::callback::{CallbackScope, require_wait_allowed};
use crate::shared::Shared;
use crate::sync::SpinLock;

const IDLE: u32 = 0;
const POLLING: u32 = 1;
const NOTIFIED: u32 = 2;
const DONE: u32 = 3;

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
}

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
    /// An empty set. IRQL <= DISPATCH_LEVEL.
    pub fn new() -> Result<TaskSet> {
        let core = Shared::try_new(SetCore {
            live: AtomicUsize::new(0),
            tasks: SpinLock::new(TaskList {
                head: core::ptr::null(),
            }),
            idle: UnsafeCell::new(KEVENT::default()),
        })?;
        // SAFETY: the event lives in the set's core, in non-paged memory.
        unsafe { KeInitializeEvent(core.idle.get(), NotificationEvent, TRUE) };
        Ok(TaskSet { core })
    }

    /// Runs `future` as a task: it is polled at once, on the calling thread, then wherever
    /// it is woken. IRQL <= DISPATCH_LEVEL. Fails only when memory is short.
    pub fn spawn(&self, future: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        require_at_most(Irql::DISPATCH)?;
        let boxed: BoxedFuture = Box::into_pin(try_box(future)?);
        let task = Shared::try_new(Task {
            state: AtomicU32::new(IDLE),
            cancelled: AtomicU32::new(0),
            future: UnsafeCell::new(Some(boxed)),
            set: self.core.clone(),
            links: UnsafeCell::new((core::ptr::null(), core::ptr::null())),
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
    /// not being polled. IRQL <= DISPATCH_LEVEL.
    pub fn cancel_all(&self) {
        loop {
            let next = {
                let list = self.core.tasks.lock();
                let mut cursor = list.head;
                let mut found = None;
                // SAFETY: linked tasks are alive and their links guarded by the lock.
                unsafe {
                    while let Some(task) = cursor.as_ref() {
                        if task.cancelled.load(Ordering::Acquire) == 0 {
                            found = Some(Shared::clone_from_raw(cursor));
                            break;
                        }
                        cursor = (*task.links.get()).1;
                    }
                }
                found
            };
            let Some(task) = next else { break };
            task.cancelled.store(1, Ordering::Release);
            run(&task);
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
        if self.is_empty() {
            return;
        }
        // Above APC_LEVEL nothing can be waited for; a task still running retires by itself.
        let _ = self.wait_idle();
    }
}

impl core::fmt::Debug for TaskSet {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TaskSet")
            .field("live", &self.len())
            .finish()
    }
}

/// Polls (or, once cancelled, drops) the task until it is pending without a new wake-up, or
/// finished. Returns at once if another thread is polling it (that thread will poll again).
fn run(task: &Shared<Task>) {
    let mut state = task.state.load(Ordering::Acquire);
    loop {
        match state {
            IDLE => match task.state.compare_exchange(
                IDLE,
                POLLING,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(actual) => state = actual,
            },
            POLLING => match task.state.compare_exchange(
                POLLING,
                NOTIFIED,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) | Err(NOTIFIED) => return,
                Err(actual) => state = actual,
            },
            _ => return,
        }
    }
    let waker = waker_for(task);
    let mut cx = Context::from_waker(&waker);
    let _scope = CallbackScope::enter();
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
        match task
            .state
            .compare_exchange(POLLING, IDLE, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => return,
            Err(_) => task.state.store(POLLING, Ordering::Release),
        }
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

unsafe fn wake(data: *const ()) {
    // SAFETY: `wake` consumes the waker's reference.
    let task = unsafe { Shared::from_raw(data.cast::<Task>()) };
    run(&task);
}

unsafe fn wake_by_ref(data: *const ()) {
    // SAFETY: the waker keeps its reference.
    let task = unsafe { Shared::clone_from_raw(data.cast::<Task>()) };
    run(&task);
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
