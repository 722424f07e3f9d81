//! [`WithIrp`]: any operation issued with an IRP the caller owns, handed back with the result.

use wsk_sys::*;

use crate::completion::BlockRef;
use crate::irp::Irp;
use crate::op::issue::Issue;
use crate::{Error, Result};

/// The request of an operation made by [`Op::with_irp`](crate::Op::with_irp): the wrapped
/// request, issued with the caller's [`Irp`] instead of one of its socket's, yielding the
/// request's output and the IRP.
///
/// # Ownership of the IRP
/// - before the request reaches the provider, and after its completion: the operation's;
///   the output hands it back (`Some`), completed: [`Irp::status`] and
///   [`Irp::information`] read its `IoStatus`, and it can be given to the next operation
///   as is (one this driver allocated is reinitialised with `IoReuseIrp` when issued; a
///   forwarded one is not the driver's to reinitialise: once cancelled — by its originator,
///   or by a deadline or close of a request it carried — an operation given it fails with
///   [`Error::CANCELLED`] without reaching the provider, and hands it back to be completed);
/// - in flight: the provider's, then the completion routine's, which this crate sets (the
///   IRP's one stack location is the WSK call's); closing the socket, tearing the client
///   down or dropping the operation cancels it like any other request;
/// - if the operation cannot hand it back — abandoned in flight (dropped, or waited for
///   above APC_LEVEL: the output then carries `None`) — it is released once the completion
///   has arrived, with the buffers the request held: an IRP this driver allocated is freed
///   (`IoFreeIrp`), one forwarded to it ([`Irp::from_forwarded`]) is completed to its
///   originator with WSK's result (the completion goes on up its stack); a forgotten
///   operation leaks it with its completion block.
///
/// ```
/// # use wsk::{Buf, ConnectionSocket, Irp};
/// fn send_twice(socket: &ConnectionSocket, irp: Irp) -> wsk::Result<Option<Irp>> {
///     let ((sent, buf), irp) = socket.send(Buf::from_slice(b"one")?).with_irp(irp).wait();
///     sent?;
///     let Some(irp) = irp else { return Ok(None) };
///     let ((sent, _), irp) = socket.send(buf).with_irp(irp).wait();
///     sent?;
///     Ok(irp)
/// }
/// ```
///
/// An operation given two IRPs (`op.with_irp(a).with_irp(b)`) is issued with the first, `a`,
/// handed back in the inner output; `b` is handed back unused in the outer one.
///
/// The IRP belongs to the operation until it hands it back:
///
/// ```compile_fail,E0382
/// # use wsk::{Buf, ConnectionSocket, Irp};
/// fn peek(socket: &ConnectionSocket, irp: Irp, buf: Buf) {
///     let op = socket.receive(buf).with_irp(irp);
///     let _ = irp.status(); // the provider may own it now
///     drop(op);
/// }
/// ```
#[derive(Debug)]
pub struct WithIrp<R> {
    inner: R,
    irp: Option<Irp>,
}

impl<R> WithIrp<R> {
    pub(crate) fn new(inner: R, irp: Irp) -> WithIrp<R> {
        WithIrp {
            inner,
            irp: Some(irp),
        }
    }
}

impl<R: Issue> Issue for WithIrp<R> {
    type Output = (R::Output, Option<Irp>);

    fn start(&mut self) -> Result<BlockRef> {
        // A forwarded IRP keeps its cancel flag (nobody may reuse it): its request is over.
        if self
            .irp
            .as_ref()
            .is_some_and(|irp| irp.is_forwarded() && irp.is_cancelled())
        {
            return Err(Error::CANCELLED);
        }
        let mut block = self.inner.start()?;
        // An operation given an IRP twice (`op.with_irp(a).with_irp(b)`) is issued with the
        // first: the inner request installed it; this one is handed back unused.
        let irp = if block.has_caller_irp() {
            None
        } else {
            self.irp.take()
        };
        if let Some(irp) = irp {
            // SAFETY: the block was just taken for this request: nothing in flight on it, and
            // no caller's IRP installed (checked above; a block's caller IRP is restored
            // before it is idle).
            unsafe { block.install_irp(irp) };
        }
        Ok(block)
    }

    unsafe fn issue(&mut self, block: &BlockRef, irp: PIRP) -> NTSTATUS {
        // SAFETY: forwarded: `irp` is the caller's IRP, just armed on `block`.
        unsafe { self.inner.issue(block, irp) }
    }

    fn finish(
        &mut self,
        block: &mut BlockRef,
        status: NTSTATUS,
        information: usize,
    ) -> Self::Output {
        let output = self.inner.finish(block, status, information);
        // SAFETY: the request is done.
        let irp = unsafe { block.restore_irp() }.or_else(|| self.irp.take());
        (output, irp)
    }

    fn fail(&mut self, error: Error) -> Self::Output {
        (self.inner.fail(error), self.irp.take())
    }
}
