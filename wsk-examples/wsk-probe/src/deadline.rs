//! Deadlines that need nothing of the kernel but a clock and a wait with a timeout: the probe
//! runs its futures on [`run`], an executor of its own that polls them whenever a completion
//! wakes them and at least every [`POLL_MS`] milliseconds, and [`Within`] checks the clock
//! (the interrupt time, as `wsk`'s deadlines read it) each time it is polled.
//!
//! The driver runtime's timers (`wsk` sleeps: a kernel timer and its DPC) are not used, so
//! that the deadlines hold on a kernel whose timers or DPCs misbehave (a kernel under test may
//! lack exactly what a timer needs), and so that nothing is left queued when `DriverEntry`
//! returns.

use alloc::sync::Arc;
use alloc::task::Wake;
use core::cell::UnsafeCell;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};
use core::time::Duration;

use wsk::Deadline;

use wsk_sys::*;

/// The longest the executor sleeps between two polls, in milliseconds.
pub const POLL_MS: u32 = 5;

/// A clock in milliseconds since it was made: the kernel's interrupt time, read as `wsk`'s
/// deadlines read it (`KUSER_SHARED_DATA`, no import), so the probe runs on kernels without
/// `KeQueryPerformanceCounter` (Wine's). Any IRQL.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// A point [`HORIZON`] after the clock's origin: the time since the origin is what its
    /// remaining time lacks of the horizon.
    end: Deadline,
}

/// How far the clock reaches (a century): past it, it stops.
const HORIZON: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

impl Clock {
    /// A clock starting now.
    #[must_use]
    pub fn new() -> Clock {
        Clock {
            end: Deadline::after(HORIZON),
        }
    }

    /// Milliseconds since the clock was made.
    #[must_use]
    pub fn now_ms(&self) -> u64 {
        u64::try_from(HORIZON.saturating_sub(self.end.remaining()).as_millis()).unwrap_or(u64::MAX)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// `future` raced against the clock: `Some(output)` if it completes within `milliseconds`,
/// else `None` (the future is dropped with the `Within`, which cancels a request it carries).
#[must_use]
pub fn within<F: Future + Unpin>(clock: Clock, milliseconds: u32, future: F) -> Within<F> {
    Within {
        future,
        until_ms: clock.now_ms().saturating_add(u64::from(milliseconds)),
        clock,
    }
}

/// See [`within`].
pub struct Within<F> {
    future: F,
    until_ms: u64,
    clock: Clock,
}

impl<F: Future + Unpin> Future for Within<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<F::Output>> {
        let this = self.get_mut();
        if let Poll::Ready(output) = Pin::new(&mut this.future).poll(cx) {
            return Poll::Ready(Some(output));
        }
        if this.clock.now_ms() >= this.until_ms {
            return Poll::Ready(None);
        }
        // Polled again by the executor within POLL_MS.
        Poll::Pending
    }
}

/// A future pending once: the executor polls it again within [`POLL_MS`] milliseconds.
#[must_use]
pub fn tick() -> Tick {
    Tick { polled: false }
}

/// See [`tick`].
pub struct Tick {
    polled: bool,
}

impl Future for Tick {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.polled {
            Poll::Ready(())
        } else {
            this.polled = true;
            Poll::Pending
        }
    }
}

/// The executor's wake-up: an event a completion routine may set at DISPATCH_LEVEL.
struct Signal {
    event: UnsafeCell<KEVENT>,
}

// SAFETY: the event is a kernel object usable from any thread.
unsafe impl Send for Signal {}
// SAFETY: as above.
unsafe impl Sync for Signal {}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // SAFETY: the event lives in the signal, which the waker keeps alive; KeSetEvent is
        // callable at DISPATCH_LEVEL.
        unsafe { KeSetEvent(self.event.get(), IO_NO_INCREMENT.into(), FALSE) };
    }
}

/// Runs `future` to completion on the calling thread, polling it when it is woken and at
/// least every [`POLL_MS`] milliseconds. PASSIVE_LEVEL or APC_LEVEL; `None` above (nothing is
/// polled then).
pub fn run<F: Future>(future: F) -> Option<F::Output> {
    if KeGetCurrentIrql() > APC_LEVEL as KIRQL {
        return None;
    }
    let signal = Arc::new(Signal {
        event: UnsafeCell::new(KEVENT::default()),
    });
    // SAFETY: the event lives in the signal, in non-paged memory, not in use yet.
    unsafe { KeInitializeEvent(signal.event.get(), SynchronizationEvent, FALSE) };
    let waker = Waker::from(Arc::clone(&signal));
    let mut cx = Context::from_waker(&waker);
    let mut future = core::pin::pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return Some(output);
        }
        let mut timeout = LARGE_INTEGER {
            QuadPart: -(i64::from(POLL_MS) * 10_000),
        };
        // SAFETY: IRQL <= APC_LEVEL (checked; the futures polled here do not raise it across
        // a poll); the event lives in the signal, which `signal` keeps alive.
        unsafe {
            KeWaitForSingleObject(
                signal.event.get().cast(),
                Executive,
                KernelMode,
                FALSE,
                &raw mut timeout,
            );
        }
    }
}
