//! Time for driver tasks: [`WskClient::sleep`] is a future (and a blocking wait) that
//! completes once a delay has passed, on a kernel timer whose DPC wakes it — usable in
//! [`crate::task`] tasks and in `select`-like code (racing a receive against a sleep, say).
//! Deadlines on operations themselves are [`Op::timeout`](crate::Op::timeout).
//!
//! A sleep is a client-level request like a name resolution: it takes a completion block of
//! the client (so steady-state sleeping allocates nothing), its timer lives in that block,
//! and the client's teardown cancels it and waits for its DPC (`KeFlushQueuedDpcs`), so a
//! sleep never keeps a driver from unloading nor runs after it. The kernel timer (`KTIMER`
//! with a `KDPC`, `KeSetTimer`) is used rather than `ExAllocateTimer`/`ExSetTimer`, which
//! would allocate per timer and exist only from Windows 8.1 on: the crate supports Windows 7.

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;

use wsk_sys::*;

use crate::client::{ClientCore, WskClient};
use crate::completion::{BlockRef, TimerAction};
use crate::deadline::{self, Deadline, DueTime};
use crate::op::{Op, issue::Issue};
use crate::shared::Shared;
use crate::{Error, Result};

impl WskClient {
    /// A handle that makes sleeps on this client, for tasks that do not hold the client:
    /// cheap to clone, `Send` and `Sync`. It does not keep the client registered: once the
    /// client's teardown has begun, its sleeps fail at once with `STATUS_DEVICE_NOT_READY`.
    pub fn timers(&self) -> Timers {
        Timers {
            client: self.core().clone(),
        }
    }

    /// A delay of `duration` (at least; the kernel's timer resolution, usually 1 to 15.6 ms,
    /// may add to it), counted from its first poll or [`wait`](Sleep::wait).
    ///
    /// It completes with `Ok(())` once the delay has passed; with [`Error::CANCELLED`] when
    /// the client's teardown ends it first, and with `STATUS_DEVICE_NOT_READY` when started
    /// during the teardown. Dropping it cancels its timer. IRQL <= DISPATCH_LEVEL; no
    /// allocation once the client has an idle completion block.
    pub fn sleep(&self, duration: Duration) -> Sleep {
        Sleep::new(self.core(), deadline::relative(duration))
    }

    /// A sleep until `deadline` (see [`sleep`](WskClient::sleep)); one already passed ends
    /// at its first poll or wait, on the timer's DPC like any other.
    pub fn sleep_until(&self, deadline: Deadline) -> Sleep {
        Sleep::new(self.core(), deadline.encoded())
    }
}

/// Makes sleeps on a client: see [`WskClient::timers`].
#[derive(Clone)]
pub struct Timers {
    client: Shared<ClientCore>,
}

impl Timers {
    /// [`WskClient::sleep`], on this handle's client.
    pub fn sleep(&self, duration: Duration) -> Sleep {
        Sleep::new(&self.client, deadline::relative(duration))
    }

    /// [`WskClient::sleep_until`], on this handle's client.
    pub fn sleep_until(&self, deadline: Deadline) -> Sleep {
        Sleep::new(&self.client, deadline.encoded())
    }
}

impl core::fmt::Debug for Timers {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Timers").finish_non_exhaustive()
    }
}

/// A delay on a kernel timer: see [`WskClient::sleep`].
///
/// Its timer is the one a deadline would use: a sleep takes no deadline of its own (race it
/// against another future instead).
///
/// ```compile_fail,E0599
/// use core::time::Duration;
/// fn bounded(client: &wsk::WskClient) -> wsk::Result<()> {
///     client
///         .sleep(Duration::from_secs(5))
///         .timeout(Duration::from_secs(1)) // no such method
///         .wait()
/// }
/// ```
#[must_use = "a sleep does nothing until it is awaited or waited for"]
#[derive(Debug)]
pub struct Sleep {
    op: Op<SleepRequest>,
}

impl Sleep {
    fn new(client: &Shared<ClientCore>, due: DueTime) -> Sleep {
        Sleep {
            op: Op::new(SleepRequest {
                client: client.clone(),
                due,
            }),
        }
    }

    /// Blocks the calling thread until the delay has passed. IRQL <= APC_LEVEL and never
    /// inside a completion routine, event callback or task: there it fails at once with
    /// [`Error::IRQL_TOO_HIGH`] (and a sleep already started is cancelled).
    pub fn wait(self) -> Result<()> {
        self.op.wait()
    }
}

impl Future for Sleep {
    type Output = Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        Pin::new(&mut self.get_mut().op).poll(cx)
    }
}

/// The request behind a [`Sleep`]: its IRP goes to no provider; the block's timer completes
/// it.
pub struct SleepRequest {
    client: Shared<ClientCore>,
    /// When it ends.
    due: DueTime,
}

impl core::fmt::Debug for SleepRequest {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SleepRequest")
            .field("due", &self.due)
            .finish()
    }
}

impl Issue for SleepRequest {
    type Output = Result<()>;

    fn start(&mut self) -> Result<BlockRef> {
        BlockRef::for_client(&self.client)
    }

    unsafe fn issue(&mut self, block: &BlockRef, _irp: PIRP) -> NTSTATUS {
        // SAFETY: `irp` was just armed on `block` and is given to no provider: the timer's
        // DPC, or the cancel that stops the timer, completes it (its one completion).
        unsafe { block.set_timer(deadline::for_set_timer(self.due), TimerAction::Complete) };
        // A teardown that began before the timer was set may have passed over this block
        // (not yet armed, or armed with no timer to stop): then it is cancelled here, else the
        // teardown would wait for the whole delay. One that begins after this check finds the
        // timer set (the client's lock orders the two) and cancels it itself.
        if self.client.is_shutting_down() {
            block.cancel();
        }
        STATUS_PENDING
    }

    fn finish(
        &mut self,
        _block: &mut BlockRef,
        status: NTSTATUS,
        _information: usize,
    ) -> Result<()> {
        Error::check(status)
    }

    fn fail(&mut self, error: Error) -> Result<()> {
        Err(error)
    }
}
