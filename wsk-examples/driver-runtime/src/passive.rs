//! [`PassiveLevel`]: a future polled at PASSIVE_LEVEL only, from a work item of the driver —
//! for task work that should not run in a completion routine: CPU-heavy steps (a TLS
//! handshake's public-key cryptography) and deep call stacks, which a completion routine runs
//! at DISPATCH_LEVEL on top of the network stack's own frames.
//!
//! A `wsk::task` task is polled where it is woken: inline, in the completion routine of the
//! request it waited for. Wrapped in [`PassiveLevel::run`], its future is not polled there:
//! the poll hands the task's waker to the driver's work item (`IoQueueWorkItemEx`) and returns
//! `Pending`; the work item wakes the task at PASSIVE_LEVEL, on a system worker thread — a
//! kernel stack of its own, nearly empty — where the task is polled again, and this time the
//! wrapped future runs. Each wake-up from a completion costs one run of the work item (one
//! for all the tasks woken meanwhile). The work item keeps the driver loaded until it has
//! returned.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};

use wsk::irql::Irql;
use wsk::{DriverObject, Error, Result, SpinLock};
use wsk_sys::*;

/// The wakers the work item will wake, and whether it is queued.
struct State {
    wakers: Vec<Waker>,
    queued: bool,
}

/// What the [`PassiveLevel`] handle, its futures and the queued work item share.
///
/// # Invariants
/// `work_item` is a work item from `IoAllocateWorkItem`, freed once, on drop; it is queued
/// only while `queued` was false, and the queued routine holds a reference to the core.
struct Core {
    state: SpinLock<State>,
    work_item: PIO_WORKITEM,
}

// SAFETY: the work item is a kernel object usable from any thread; the rest is behind the
// spin lock.
unsafe impl Send for Core {}
// SAFETY: as above.
unsafe impl Sync for Core {}

impl Core {
    /// Hands `waker` to the work item (queued if it is not). IRQL <= DISPATCH_LEVEL.
    fn defer(self: &Arc<Core>, waker: &Waker) -> Result<()> {
        let mut state = self.state.lock();
        if !state.wakers.iter().any(|w| w.will_wake(waker)) {
            state
                .wakers
                .try_reserve(1)
                .map_err(|_| Error::INSUFFICIENT_RESOURCES)?;
            state.wakers.push(waker.clone());
        }
        if !state.queued {
            state.queued = true;
            let context = Arc::into_raw(Arc::clone(self));
            // SAFETY: the work item is not queued (`queued` was false; the routine sets it
            // false before it wakes anything, and queues nothing itself); the routine takes
            // back the reference given up here.
            unsafe {
                IoQueueWorkItemEx(
                    self.work_item,
                    Some(wake_at_passive),
                    // Not the delayed queue, where the runtime's timer worker waits for its
                    // deadlines: on a system with one worker per queue (wsk-host) the tasks
                    // would wait for the next deadline.
                    CriticalWorkQueue,
                    context.cast_mut().cast(),
                );
            }
        }
        Ok(())
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        // SAFETY: allocated in `PassiveLevel::new`, freed once; no routine is queued (a queued
        // routine holds a reference, and drops it last).
        unsafe { IoFreeWorkItem(self.work_item) };
    }
}

/// The work item's routine: wakes the tasks handed to it. PASSIVE_LEVEL.
unsafe extern "system" fn wake_at_passive(_io_object: PVOID, context: PVOID, _item: PIO_WORKITEM) {
    // SAFETY: the reference `Core::defer` gave up for this run.
    let core = unsafe { Arc::from_raw(context.cast_const().cast::<Core>()) };
    let wakers = {
        let mut state = core.state.lock();
        state.queued = false;
        core::mem::take(&mut state.wakers)
    };
    // Outside the lock: the tasks run here, at PASSIVE_LEVEL.
    for waker in wakers {
        waker.wake();
    }
}

/// The driver's way to PASSIVE_LEVEL for its tasks (share it with an `Arc`, or keep it beside
/// the task set). Drop it after the task set.
pub struct PassiveLevel {
    core: Arc<Core>,
}

impl PassiveLevel {
    /// A work item of `driver` for [`run`](Self::run). IRQL <= DISPATCH_LEVEL.
    ///
    /// # Errors
    /// `STATUS_INSUFFICIENT_RESOURCES` when the work item or memory cannot be had.
    pub fn new(driver: DriverObject) -> Result<PassiveLevel> {
        // SAFETY: the driver object is valid (a `DriverObject`); a driver object is accepted
        // in place of a device object for work items queued with `IoQueueWorkItemEx`.
        let work_item = unsafe { IoAllocateWorkItem(driver.as_ptr().cast()) };
        if work_item.is_null() {
            return Err(Error::INSUFFICIENT_RESOURCES);
        }
        let core = Core {
            state: SpinLock::new(State {
                wakers: Vec::new(),
                queued: false,
            }),
            work_item,
        };
        Ok(PassiveLevel {
            core: Arc::new(core),
        })
    }

    /// `future`, polled at PASSIVE_LEVEL only: its first poll, and any poll above
    /// PASSIVE_LEVEL (from a completion routine), defer to the work item, so that neither the
    /// spawning thread's stack nor a completion routine's holds its frames. When memory is too
    /// short to hand the waker over, the future is polled where it is rather than left
    /// stalled.
    pub fn run<F: Future>(&self, future: F) -> AtPassive<F> {
        AtPassive {
            core: Arc::clone(&self.core),
            started: false,
            future,
        }
    }
}

impl core::fmt::Debug for PassiveLevel {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PassiveLevel").finish_non_exhaustive()
    }
}

/// See [`PassiveLevel::run`].
pub struct AtPassive<F> {
    core: Arc<Core>,
    /// Whether the work item polled the future once.
    started: bool,
    future: F,
}

impl<F: Future> Future for AtPassive<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: `future` is pinned structurally: it is never moved out of the wrapper, which
        // does not implement `Unpin` unless the future does, nor `Drop`.
        let this = unsafe { self.get_unchecked_mut() };
        // The first poll is deferred too: the caller's stack (`DriverEntry`, spawning) holds
        // none of the future's frames.
        let defer = !this.started || Irql::current() > Irql::PASSIVE;
        if defer && this.core.defer(cx.waker()).is_ok() {
            this.started = true;
            return Poll::Pending;
        }
        this.started = true;
        // SAFETY: as above.
        poll_here(unsafe { Pin::new_unchecked(&mut this.future) }, cx)
    }
}

/// Polls `future`, in a frame of its own: the deferring poll above must not carry the
/// future's (possibly large) frame onto the stack of the completion routine or spawner that
/// calls it.
#[inline(never)]
fn poll_here<F: Future>(future: Pin<&mut F>, cx: &mut Context<'_>) -> Poll<F::Output> {
    future.poll(cx)
}
