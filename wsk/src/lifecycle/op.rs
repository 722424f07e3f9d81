//! [`Op`]: a WSK request as a `Future`, with a blocking [`Op::wait`] for PASSIVE_LEVEL.

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;

use wsk_sys::*;

use super::callback::require_wait_allowed;
use super::completion::{BlockRef, TimerAction};
use crate::deadline::{self, Deadline, DueTime};
use crate::{Error, Result};

/// A kind of WSK request an [`Op`] carries; implemented by this crate's request types only.
pub trait Request: Unpin + issue::Issue {}

impl<T: Unpin + issue::Issue> Request for T {}

pub(crate) mod issue {
    use super::*;

    /// How a request is issued and what it yields (sealed: the module is private).
    #[allow(private_interfaces)]
    pub trait Issue {
        /// What the operation yields (usually a `Result`, with any buffer handed back).
        type Output;

        /// Checks the request and gets the completion block it will use, filling its scratch
        /// fields and moving in what the provider will use. An error here never reaches the
        /// provider; the output is what [`Issue::fail`] makes of it.
        fn start(&mut self) -> Result<BlockRef>;

        /// [`Issue::start`] for a request waited for in the frame that issues it
        /// ([`Op::wait`](super::Op::wait) of an operation not started): that frame outlives
        /// the completion, so the request may keep in itself what the provider uses instead
        /// of moving it into the block. Only the request's own [`Issue::finish_waited`] ends
        /// such a start.
        #[inline(always)]
        fn start_waited(&mut self) -> Result<BlockRef> {
            self.start()
        }

        /// Whether a request of this type started by [`Issue::start_waited`] may complete
        /// under the frame protocol (`BlockRef::arm_in_frame`) when it has no deadline: its
        /// block then holds nothing for the completion routine or the release — nothing in
        /// `held`, no caller's IRP, no client request, an idle owner — only what the provider
        /// reads in the scratch fields. The waiting frame's reference is then the block's
        /// only one, and the routine neither counts nor releases one.
        const COMPLETES_IN_FRAME: bool = false;

        /// [`Issue::finish`] of a request started by [`Issue::start_waited`].
        #[inline(always)]
        fn finish_waited(
            &mut self,
            block: &mut BlockRef,
            status: NTSTATUS,
            information: usize,
        ) -> Self::Output {
            self.finish(block, status, information)
        }

        /// Calls the provider with the armed IRP; returns what the WSK function returned.
        ///
        /// # Safety
        /// `irp` must be the IRP just armed on `block`; it must be passed to exactly one WSK call.
        unsafe fn issue(&mut self, block: &BlockRef, irp: PIRP) -> NTSTATUS;

        /// Builds the output once the completion has arrived (status and information of the IRP).
        fn finish(
            &mut self,
            block: &mut BlockRef,
            status: NTSTATUS,
            information: usize,
        ) -> Self::Output;

        /// Builds the output for a request that failed before reaching the provider, or that
        /// was abandoned in flight (then its buffers are still the provider's: the output
        /// carries a memoryless stand-in instead, and they are released at completion).
        fn fail(&mut self, error: Error) -> Self::Output;
    }
}
use issue::Issue;

/// The error of an operation waited for after it already handed out its output.
const FINISHED: Error = Error::from_status(STATUS_INVALID_DEVICE_REQUEST);

enum Stage {
    NotStarted,
    InFlight(BlockRef),
    Finished,
}

/// A WSK operation. Nothing happens until it is polled or [`wait`](Op::wait)ed.
///
/// - As a `Future` it can be driven by any executor (for instance [`crate::task`]). It is
///   `Send` when what it carries is. Its waker may be woken at DISPATCH_LEVEL from a
///   completion routine: executors used with it must accept that.
/// - [`wait`](Op::wait) blocks the calling thread (IRQL <= APC_LEVEL).
/// - Polled again after it returned its output, it stays pending; waited for then, it fails
///   with `STATUS_INVALID_DEVICE_REQUEST`. It never panics.
/// - **Dropping** an operation in flight cancels its IRP (`IoCancelIrp`); the buffers and the
///   IRP it owns are released when the completion arrives, never before: by the completion
///   routine, or by the drop itself, on the dropping thread, when the cancel completed the
///   request before the drop returned (a buffer's own `Drop` may then run at the IRQL the
///   operation was dropped at).
#[must_use = "an operation does nothing until it is awaited or waited for"]
pub struct Op<R: Request> {
    // Dropped first: the block goes back to its socket's pool while the request still holds
    // the socket (and so the pool).
    stage: Stage,
    request: R,
    /// The deadline, if any (0: none).
    deadline: DueTime,
}

impl<R: Request> Op<R> {
    pub(crate) fn new(request: R) -> Op<R> {
        Op {
            stage: Stage::NotStarted,
            request,
            deadline: 0,
        }
    }

    /// Gives the operation a deadline: `timeout` after it is issued (its first poll or
    /// [`wait`](Op::wait)), a kernel timer's DPC cancels its IRP (`IoCancelIrp`), and the
    /// operation fails with [`Error::TIMED_OUT`], handing back its buffers as any failure
    /// does. Works the same awaited, waited for, or dropped; costs no allocation (the timer
    /// lives in the request's completion block). IRQL <= DISPATCH_LEVEL, like every
    /// operation.
    ///
    /// What "timed out" guarantees: the request was cancelled at the deadline and the
    /// provider completed it as cancelled; nothing it moved was lost. If the provider
    /// completed it another way — data that arrived as the timer fired, a send already
    /// taken — that result is returned instead, as if there had been no deadline. A stream
    /// send or receive the provider cancelled after it had moved part of its bytes returns
    /// their count (`Ok`): they left, or are in the buffer handed back; a receive that must
    /// fill its whole range (`receive_exact`) fails instead, the bytes it got in the buffer.
    /// The same holds for the timeout of [`wait_timeout`](Op::wait_timeout). The
    /// deadline is counted in interrupt time and is at least `timeout` (rounded up to
    /// 100 ns; the kernel's timer resolution, usually 1 to 15.6 ms, may add to it).
    ///
    /// Set it before the operation starts: on an operation already issued (polled before)
    /// it has no effect.
    ///
    /// ```no_run
    /// use core::time::Duration;
    /// use wsk::{Buf, ConnectionSocket, Error};
    ///
    /// /// The next bytes from the peer, or `None` after 5 s of silence.
    /// async fn next_bytes(socket: &ConnectionSocket) -> wsk::Result<Option<Buf>> {
    ///     let buf = Buf::with_capacity(4096)?;
    ///     let (received, buf) = socket.receive(buf).timeout(Duration::from_secs(5)).await;
    ///     match received {
    ///         Ok(_) => Ok(Some(buf)),
    ///         Err(Error::TIMED_OUT) => Ok(None), // the buffer is back, empty
    ///         Err(error) => Err(error),
    ///     }
    /// }
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Op<R> {
        if let Stage::NotStarted = self.stage {
            self.deadline = deadline::relative(timeout);
        }
        self
    }

    /// Like [`timeout`](Op::timeout), with a point in time: one [`Deadline`] can bound
    /// several operations (a whole exchange). The time left is taken when the operation is
    /// issued; a deadline already passed then cancels it at once — it completes with what
    /// the provider had at hand (data already received), or times out.
    pub fn deadline(mut self, deadline: Deadline) -> Op<R> {
        if let Stage::NotStarted = self.stage {
            self.deadline = deadline.encoded();
        }
        self
    }

    /// Issues the request; returns the output at once if it failed before reaching the
    /// provider.
    fn launch(&mut self) -> Option<<R as Issue>::Output> {
        let mut block = match self.request.start() {
            Ok(block) => block,
            Err(error) => {
                self.stage = Stage::Finished;
                return Some(self.request.fail(error));
            }
        };
        issue_on(&mut self.request, self.deadline, &mut block);
        self.stage = Stage::InFlight(block);
        None
    }

    /// The same operation, issued with `irp` — an IRP the caller owns, allocated by the
    /// driver or forwarded to it ([`Irp::from_forwarded`](crate::Irp::from_forwarded)) —
    /// instead of one of its socket's; yields the operation's output and the IRP, completed, for reuse
    /// (`None` only when it could not be handed back: see [`WithIrp`](crate::ops::WithIrp),
    /// which documents who owns the IRP when). Every WSK request this crate issues accepts a
    /// caller's IRP. Called on an operation already issued, the IRP is not used and is
    /// handed back as given. IRQL <= DISPATCH_LEVEL.
    pub fn with_irp(self, irp: crate::Irp) -> Op<crate::caller_irp::WithIrp<R>> {
        let this = core::mem::ManuallyDrop::new(self);
        // SAFETY: both fields are read once out of a value that is never dropped nor used
        // again, so each is moved exactly once.
        let (stage, request) = unsafe {
            (
                core::ptr::read(&raw const this.stage),
                core::ptr::read(&raw const this.request),
            )
        };
        let deadline = this.deadline;
        Op {
            stage,
            request: crate::caller_irp::WithIrp::new(request, irp),
            deadline,
        }
    }

    fn take_output(&mut self) -> <R as Issue>::Output {
        let Stage::InFlight(mut block) = core::mem::replace(&mut self.stage, Stage::Finished)
        else {
            unreachable!("take_output is called on an operation in flight");
        };
        // SAFETY: called once the completion has arrived.
        let (status, information) = unsafe { block.result() };
        self.request.finish(&mut block, status, information)
    }

    /// Runs the operation to completion, blocking the calling thread. IRQL <= APC_LEVEL, and
    /// never inside a completion routine, event callback or task (which run at
    /// DISPATCH_LEVEL): there it fails at once with [`Error::IRQL_TOO_HIGH`]. An operation
    /// already in flight (polled before) is then cancelled; its buffers are released when the
    /// completion arrives, and a memoryless stand-in (capacity 0) is handed back in their
    /// place.
    pub fn wait(self) -> <R as Issue>::Output {
        self.wait_for(None)
    }

    /// Like [`wait`](Op::wait), but cancels the operation after `timeout_ms` milliseconds;
    /// a cancelled-by-timeout operation fails with [`Error::TIMED_OUT`]. The wait's own
    /// timeout: [`timeout`](Op::timeout) gives the request a deadline that also holds when
    /// it is awaited.
    pub fn wait_timeout(self, timeout_ms: u32) -> <R as Issue>::Output {
        // Relative timeouts are negative, in 100 ns units.
        self.wait_for(Some(-(i64::from(timeout_ms) * 10_000)))
    }

    #[inline(always)]
    fn wait_for(self, timeout: Option<i64>) -> <R as Issue>::Output {
        if let Stage::NotStarted = self.stage {
            // Taken apart first, before any call: what it holds is this frame's locals.
            let (mut request, deadline) = self.into_unstarted();
            if let Err(error) = require_wait_allowed() {
                return request.fail(error);
            }
            return run_to_completion(request, deadline, timeout);
        }
        self.wait_started(timeout)
    }

    /// [`Op::wait_for`] of an operation polled before.
    fn wait_started(mut self, timeout: Option<i64>) -> <R as Issue>::Output {
        if let Err(error) = require_wait_allowed() {
            match core::mem::replace(&mut self.stage, Stage::Finished) {
                Stage::InFlight(block) if block.is_done() => {
                    // Nothing to wait for: the result is there.
                    self.stage = Stage::InFlight(block);
                    return self.take_output();
                }
                // The completion routine's reference keeps the block, its IRP and buffers
                // until the completion arrives.
                Stage::InFlight(block) => block.cancel(),
                Stage::NotStarted | Stage::Finished => {}
            }
            return self.request.fail(error);
        }
        let Stage::InFlight(block) = &self.stage else {
            // Waited for after it was polled to completion: its output was handed out then.
            return self.request.fail(FINISHED);
        };
        if wait_or_cancel(block, timeout) {
            let Stage::InFlight(mut block) = core::mem::replace(&mut self.stage, Stage::Finished)
            else {
                unreachable!()
            };
            // SAFETY: done (the wait returned): what the request moved before its cancel.
            let (_, information) = unsafe { block.result() };
            return self
                .request
                .finish(&mut block, STATUS_IO_TIMEOUT, information);
        }
        self.take_output()
    }
}

/// Arms `block` (just prepared by `request`'s start), sets the deadline's timer if the
/// operation has one (`deadline` not 0), and gives the request to the provider.
#[inline(always)]
fn issue_on<R: Request>(request: &mut R, deadline: DueTime, block: &mut BlockRef) {
    // SAFETY: the block was just prepared and no request is in flight on it.
    let irp = unsafe { block.arm() };
    if deadline != 0 {
        // SAFETY: armed just above, not issued yet, no timer set.
        unsafe { block.set_timer(deadline::for_set_timer(deadline), TimerAction::Cancel) };
    }
    // SAFETY: `irp` was just armed on `block`; it is passed to exactly one WSK call. Its
    // completion routine runs whatever the call returns (WSK completes every IRP it is
    // given), so the returned status carries no extra information.
    let _ = unsafe { request.issue(block, irp) };
}

/// Blocks until the request on `block` completes; at `timeout` (100 ns units, negative =
/// relative) cancels it and blocks until the cancelled request completes. Returns whether it
/// timed out: cancelled at the timeout and completed as cancelled (a request the provider
/// completed another way meanwhile keeps its result). IRQL <= APC_LEVEL (callers check).
fn wait_or_cancel(block: &BlockRef, timeout: Option<i64>) -> bool {
    if block.block_until_done(timeout) {
        return false;
    }
    block.cancel();
    block.block_until_done(None);
    // SAFETY: done (the infinite wait returned).
    let (status, _) = unsafe { block.result() };
    status == STATUS_CANCELLED
}

impl<R: Request> Op<R> {
    /// The request and deadline of an operation not started, taken out of it: nothing is in
    /// flight, so the operation's drop would have had nothing to cancel.
    #[inline(always)]
    fn into_unstarted(self) -> (R, DueTime) {
        debug_assert!(matches!(self.stage, Stage::NotStarted));
        let this = core::mem::ManuallyDrop::new(self);
        // SAFETY: the request is read once out of a value that is never dropped nor used
        // again; the stage, `NotStarted`, owns nothing to drop.
        let request = unsafe { core::ptr::read(&raw const this.request) };
        (request, this.deadline)
    }
}

/// Issues `request` and blocks until its completion, the block kept in this frame (never
/// stored in an operation: nobody else can reach it before the wait returns), the request a
/// local of this frame, dropped after its output is built. The caller checked that the IRQL
/// allows waiting.
#[inline(always)]
fn run_to_completion<R: Request>(
    mut request: R,
    deadline: DueTime,
    timeout: Option<i64>,
) -> <R as Issue>::Output {
    let mut block = match request.start_waited() {
        Ok(block) => block,
        Err(error) => return request.fail(error),
    };
    // From the provider call until the completion, the provider may use memory this frame
    // owns (`start_waited`): the frame must not unwind meanwhile (nor while arming, just
    // before: nothing there can panic either).
    let provider_holds_the_frame = AbortOnUnwind;
    let in_frame = R::COMPLETES_IN_FRAME && deadline == 0;
    let timed_out = if in_frame {
        // SAFETY: the block was just prepared by `start_waited` of a request that completes
        // in its frame (no caller's IRP, nothing held, idle owner), with no deadline; nothing
        // unwinds before the wait below returns (the guard above), and the block is released
        // in this frame after it.
        let irp = unsafe { block.arm_in_frame() };
        // SAFETY: `irp` was just armed on `block`; it is passed to exactly one WSK call,
        // whose completion routine runs whatever it returns.
        let _ = unsafe { request.issue(&block, irp) };
        block.wait_in_frame(timeout)
    } else {
        issue_on(&mut request, deadline, &mut block);
        wait_or_cancel(&block, timeout)
    };
    core::mem::forget(provider_holds_the_frame);
    let (status, information) = if in_frame {
        // SAFETY: `wait_in_frame` returned.
        unsafe { block.result_in_frame() }
    } else {
        // SAFETY: done (the wait returned).
        unsafe { block.result() }
    };
    // Timed out: cancelled at the timeout, with what it moved before (`information`).
    let status = if timed_out { STATUS_IO_TIMEOUT } else { status };
    let output = request.finish_waited(&mut block, status, information);
    if in_frame {
        block.release_in_frame();
    }
    output
}

/// Ends the process if dropped, which only unwinding can do (it is forgotten otherwise): held
/// across a stretch where the provider may still use memory of the frame, so that a panic
/// there — none can come from safe code: only a provider missing a function the request
/// calls fails an `expect` there — never frees that memory under the provider. A panic while
/// panicking aborts; in a driver, built with `panic = "abort"`, any panic already does.
struct AbortOnUnwind;

impl Drop for AbortOnUnwind {
    fn drop(&mut self) {
        panic!("a request waited for unwound while the provider could still use its memory");
    }
}

impl<R: Request> Future for Op<R> {
    type Output = <R as Issue>::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<<R as Issue>::Output> {
        let this = self.get_mut();
        if let Stage::NotStarted = this.stage {
            // Inside a task whose run used up its budget, the request starts in the task's
            // next run (from a work item), not in this one.
            if crate::task::must_yield(cx) {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            if let Some(output) = this.launch() {
                return Poll::Ready(output);
            }
        }
        match &this.stage {
            Stage::InFlight(block) => {
                if block.is_done() || block.register(cx.waker()) {
                    Poll::Ready(this.take_output())
                } else {
                    Poll::Pending
                }
            }
            Stage::NotStarted => unreachable!("launched above"),
            // Polled again after it returned its output: it stays pending (the `Future`
            // contract allows it); a driver must not panic for it.
            Stage::Finished => Poll::Pending,
        }
    }
}

impl<R: Request> Drop for Op<R> {
    fn drop(&mut self) {
        if let Stage::InFlight(block) = &self.stage {
            if !block.is_done() {
                // The completion routine's reference keeps the block, its IRP and what the
                // request holds alive until the completion arrives (and the block keeps its
                // socket: see `BlockRef`'s drop).
                block.cancel();
            }
        }
    }
}

impl<R: Request> core::fmt::Debug for Op<R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let stage = match self.stage {
            Stage::NotStarted => "not started",
            Stage::InFlight(_) => "in flight",
            Stage::Finished => "finished",
        };
        f.debug_struct("Op").field("stage", &stage).finish()
    }
}
