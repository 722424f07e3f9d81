//! Timers for tasks: [`Timers::sleep`] is a future that completes once a delay has passed,
//! and [`timeout`] races a future against one — what the example drivers need for backoff,
//! idle timeouts and deadlines, inside `wsk::task` tasks, where nothing may wait.
//!
//! The sleeps are `wsk`'s ([`wsk::Sleep`]): a kernel timer and DPC in a completion block of
//! the client, no thread and no allocation per sleep; the client's teardown cancels the
//! sleeps still armed and waits for their DPCs. A request with a deadline of its own is
//! better served by `Op::timeout`; [`timeout`] bounds any future (a resolution and a connect
//! together, a whole response).

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;

use wsk::{Result, WskClient};

/// The timers of a driver (share it with an `Arc`): sleeps on its WSK client.
#[derive(Debug)]
pub struct Timers {
    timers: wsk::Timers,
}

impl Timers {
    /// The timers of `client`. IRQL <= DISPATCH_LEVEL.
    ///
    /// # Errors
    /// None today; kept a `Result` for drivers that build their state with `?`.
    pub fn new(client: &WskClient) -> Result<Timers> {
        Ok(Timers {
            timers: client.timers(),
        })
    }

    /// A future that completes `milliseconds` from now (at the earliest). Any IRQL <=
    /// DISPATCH_LEVEL; usable inside tasks. It completes at once when it cannot be armed —
    /// memory too short, the client being torn down — and when the client's teardown cancels
    /// it.
    #[must_use]
    pub fn sleep(&self, milliseconds: u32) -> Sleep {
        Sleep {
            sleep: self
                .timers
                .sleep(Duration::from_millis(u64::from(milliseconds))),
        }
    }
}

/// A delay ([`Timers::sleep`]); disarmed when dropped.
#[derive(Debug)]
pub struct Sleep {
    sleep: wsk::Sleep,
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // Ended, whichever way: the delay passed, or the sleep could not run or was cancelled.
        Pin::new(&mut self.get_mut().sleep).poll(cx).map(|_| ())
    }
}

/// Races `future` against `sleep`: `Some(output)` when the future completes first, `None`
/// once the sleep has ended — its delay passed, or it could not be armed or was cancelled
/// (the future is dropped with the returned [`Timeout`], which cancels a request it
/// carries).
pub fn timeout<F: Future + Unpin>(sleep: Sleep, future: F) -> Timeout<F> {
    Timeout { future, sleep }
}

/// See [`timeout`].
pub struct Timeout<F> {
    future: F,
    sleep: Sleep,
}

impl<F: Future + Unpin> Future for Timeout<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<F::Output>> {
        let this = self.get_mut();
        if let Poll::Ready(output) = Pin::new(&mut this.future).poll(cx) {
            return Poll::Ready(Some(output));
        }
        match Pin::new(&mut this.sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}
