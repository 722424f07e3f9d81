//! The extended members of the connection and stream dispatch tables: `WskConnectEx`
//! (connect, sending a first buffer with it; Windows 10 1703) and `WskSendEx` /
//! `WskReceiveEx` (sends and receives with control information, `CMSGHDR` records;
//! Windows 10 1803). On older systems the provider's tables end before these members: they
//! are never read there, and the operations fail with [`Error::NOT_SUPPORTED`].
//!
//! Each operation may be issued at IRQL <= DISPATCH_LEVEL. The buffer and the control
//! information are owned by the request's completion block until the completion, and handed
//! back with the result.

use alloc::vec::Vec;
use core::net::SocketAddr;

use wsk_sys::*;

use crate::addr::{RawAddr, require_family};
use crate::buf::Buf;
use crate::client::Feature;
use crate::completion::{BlockRef, Held};
use crate::io_buf::{IoBuf, IoBufMut, wsk_buf_of_spare};
use crate::op::Op;
use crate::op::issue::Issue;
use crate::shared::Shared;
use crate::socket::{Category, SocketCore};
use crate::{ConnectionSocket, Error, Result, SendFlags};

/// The operation of [`ConnectionSocket::connect_sending`]: yields the connect's result and
/// the buffer.
pub type ConnectSending = Op<ConnectExRequest>;
/// The operation of [`ConnectionSocket::send_with_control`]: yields the bytes sent and the
/// buffer.
pub type SendWithControl = Op<SendExRequest>;
/// The operation of [`ConnectionSocket::receive_with_control`]: yields what was received
/// and the buffer.
pub type ReceiveWithControl = Op<ReceiveExRequest>;

/// What [`ConnectionSocket::receive_with_control`] received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedWithControl {
    /// Bytes appended to the buffer; 0 when the peer closed its side gracefully.
    pub count: usize,
    /// The control information the provider returned (`CMSGHDR` records).
    pub control: Vec<u8>,
    /// The control flags (`MSG_*`) the provider returned.
    pub control_flags: u32,
}

impl ConnectionSocket {
    /// Connects the bound socket to `remote`, sending the buffer's bytes with the connection
    /// (`WskConnectEx`, Windows 10 1703; [`Error::NOT_SUPPORTED`] before). The buffer is
    /// handed back with the result. IRQL <= DISPATCH_LEVEL.
    pub fn connect_sending(&self, remote: SocketAddr, buf: Buf) -> ConnectSending {
        Op::new(ConnectExRequest {
            core: self.core().clone(),
            remote,
            buf: Some(buf),
        })
    }

    /// Sends the buffer's bytes with control information (`WskSendEx`, Windows 10 1803;
    /// [`Error::NOT_SUPPORTED`] before): `control` is copied into the request as the
    /// `CMSGHDR` records the transport reads. IRQL <= DISPATCH_LEVEL.
    pub fn send_with_control(&self, buf: Buf, control: &[u8], flags: SendFlags) -> SendWithControl {
        let control = copy(control);
        Op::new(SendExRequest {
            core: self.core().clone(),
            buf: Some(buf),
            control: Some(control),
            flags: if flags.no_delay { WSK_FLAG_NODELAY } else { 0 },
        })
    }

    /// Receives into the buffer's spare capacity, with the control information the
    /// transport returns in a buffer of `control_capacity` bytes (`WskReceiveEx`, Windows 10
    /// 1803; [`Error::NOT_SUPPORTED`] before). IRQL <= DISPATCH_LEVEL.
    pub fn receive_with_control(&self, buf: Buf, control_capacity: usize) -> ReceiveWithControl {
        let control = zeroed(control_capacity);
        Op::new(ReceiveExRequest {
            core: self.core().clone(),
            buf: Some(buf),
            control: Some(control),
        })
    }
}

fn copy(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    out.try_reserve_exact(bytes.len())
        .map_err(|_| Error::INSUFFICIENT_RESOURCES)?;
    out.extend_from_slice(bytes);
    Ok(out)
}

fn zeroed(len: usize) -> Result<Vec<u8>> {
    if len > ULONG::MAX as usize {
        return Err(Error::INVALID_BUFFER_SIZE);
    }
    let mut out = Vec::new();
    out.try_reserve_exact(len)
        .map_err(|_| Error::INSUFFICIENT_RESOURCES)?;
    out.resize(len, 0);
    Ok(out)
}

/// The extended members of a connection-like socket's table, when the system has them.
struct ExTable {
    connect_ex: PFN_WSK_CONNECT_EX,
    send_ex: PFN_WSK_SEND_EX,
    receive_ex: PFN_WSK_RECEIVE_EX,
}

/// # Safety
/// `socket` must be an open connection or stream socket, per `category`, of a provider
/// whose tables have the members `feature` gates.
unsafe fn ex_table(socket: PWSK_SOCKET, category: Category) -> ExTable {
    // SAFETY: the dispatch table of a socket is the one of its category; the members read
    // exist (the caller checked the feature).
    unsafe {
        if category == Category::Stream {
            let t = &*(*socket).Dispatch.cast::<WSK_PROVIDER_STREAM_DISPATCH>();
            ExTable {
                connect_ex: t.WskConnectEx,
                send_ex: t.WskSendEx,
                receive_ex: t.WskReceiveEx,
            }
        } else {
            let t = &*(*socket)
                .Dispatch
                .cast::<WSK_PROVIDER_CONNECTION_DISPATCH>();
            ExTable {
                connect_ex: t.WskConnectEx,
                send_ex: t.WskSendEx,
                receive_ex: t.WskReceiveEx,
            }
        }
    }
}

fn require(core: &Shared<SocketCore>, feature: Feature) -> Result<()> {
    if core.client().info().supports(feature) {
        Ok(())
    } else {
        Err(Error::NOT_SUPPORTED)
    }
}

/// `WskConnectEx`.
pub struct ConnectExRequest {
    core: Shared<SocketCore>,
    remote: SocketAddr,
    buf: Option<Buf>,
}

impl Issue for ConnectExRequest {
    type Output = (Result<()>, Buf);

    fn start(&mut self) -> Result<BlockRef> {
        require(&self.core, Feature::ConnectEx)?;
        require_family(&self.remote, self.core.family)?;
        let mut block = BlockRef::for_socket(&self.core)?;
        let buf = self.buf.take().unwrap_or_else(Buf::released);
        // SAFETY: nothing in flight on the block yet.
        unsafe {
            let scratch = block.scratch();
            scratch.remote = RawAddr::from_socket_addr(&self.remote);
            scratch.wsk_buf = buf.wsk_buf_of_data(0);
            block.held().store(Held::Buf(buf));
        }
        Ok(block)
    }

    unsafe fn issue(&mut self, block: &BlockRef, irp: PIRP) -> NTSTATUS {
        let category = self.core.category;
        // SAFETY: the address, WSK_BUF and buffer live in the block until the completion;
        // the feature was checked in `start`.
        unsafe {
            let scratch = block.scratch_ptr();
            let remote = (*scratch).remote.as_mut_ptr();
            let has_data = (*scratch).wsk_buf.Length > 0;
            let wsk_buf = if has_data {
                &raw mut (*scratch).wsk_buf
            } else {
                core::ptr::null_mut()
            };
            self.core.call(irp, |socket| {
                let connect_ex = ex_table(socket, category)
                    .connect_ex
                    .expect("gated on Windows 10 1703");
                connect_ex(socket, remote, wsk_buf, 0, irp)
            })
        }
    }

    fn finish(
        &mut self,
        block: &mut BlockRef,
        status: NTSTATUS,
        _information: usize,
    ) -> Self::Output {
        // SAFETY: done: the buffer is ours again.
        let buf = match core::mem::take(unsafe { block.held() }) {
            Held::Buf(buf) => buf,
            _ => Buf::released(),
        };
        let result =
            Error::check(status).and_then(|()| crate::events::enable_after_connect(&self.core));
        (result, buf)
    }

    fn fail(&mut self, error: Error) -> Self::Output {
        (Err(error), self.buf.take().unwrap_or_else(Buf::released))
    }
}

/// `WskSendEx`.
pub struct SendExRequest {
    core: Shared<SocketCore>,
    buf: Option<Buf>,
    control: Option<Result<Vec<u8>>>,
    flags: ULONG,
}

impl Issue for SendExRequest {
    type Output = (Result<usize>, Buf);

    fn start(&mut self) -> Result<BlockRef> {
        require(&self.core, Feature::SendReceiveEx)?;
        let control = self
            .control
            .take()
            .unwrap_or(Err(Error::INVALID_PARAMETER))?;
        if control.len() > ULONG::MAX as usize {
            return Err(Error::INVALID_BUFFER_SIZE);
        }
        if self.buf.as_ref().is_none_or(Buf::is_empty) {
            return Err(Error::INVALID_BUFFER_SIZE);
        }
        let mut block = BlockRef::for_socket(&self.core)?;
        let buf = self.buf.take().expect("checked above");
        // SAFETY: nothing in flight on the block yet.
        unsafe {
            let scratch = block.scratch();
            scratch.wsk_buf = buf.wsk_buf_of_data(0);
            scratch.control_length = control.len() as ULONG;
            block.held().store(Held::BufAndBytes(buf, control));
        }
        Ok(block)
    }

    unsafe fn issue(&mut self, block: &BlockRef, irp: PIRP) -> NTSTATUS {
        let (category, flags) = (self.core.category, self.flags);
        // SAFETY: the WSK_BUF, the buffer and the control bytes live in the block until the
        // completion; the feature was checked in `start`.
        unsafe {
            let scratch = block.scratch_ptr();
            let wsk_buf = &raw mut (*scratch).wsk_buf;
            let length = (*scratch).control_length;
            let control = match &mut *block.held_ptr() {
                Held::BufAndBytes(_, control) if length > 0 => control.as_mut_ptr().cast(),
                _ => core::ptr::null_mut(),
            };
            self.core.call(irp, |socket| {
                let send_ex = ex_table(socket, category)
                    .send_ex
                    .expect("gated on Windows 10 1803");
                send_ex(socket, wsk_buf, flags, length, control, irp)
            })
        }
    }

    fn finish(
        &mut self,
        block: &mut BlockRef,
        status: NTSTATUS,
        information: usize,
    ) -> Self::Output {
        // SAFETY: done: the buffer is ours again.
        let buf = match core::mem::take(unsafe { block.held() }) {
            Held::BufAndBytes(buf, _) => buf,
            _ => Buf::released(),
        };
        (Error::check_transfer(status, information), buf)
    }

    fn fail(&mut self, error: Error) -> Self::Output {
        (Err(error), self.buf.take().unwrap_or_else(Buf::released))
    }
}

/// `WskReceiveEx`.
pub struct ReceiveExRequest {
    core: Shared<SocketCore>,
    buf: Option<Buf>,
    control: Option<Result<Vec<u8>>>,
}

impl Issue for ReceiveExRequest {
    type Output = (Result<ReceivedWithControl>, Buf);

    fn start(&mut self) -> Result<BlockRef> {
        require(&self.core, Feature::SendReceiveEx)?;
        let control = self
            .control
            .take()
            .unwrap_or(Err(Error::INVALID_PARAMETER))?;
        let wsk_buf = match self.buf.as_ref() {
            Some(buf) if buf.spare_capacity() != 0 => wsk_buf_of_spare(buf, usize::MAX)?,
            _ => return Err(Error::INVALID_BUFFER_SIZE),
        };
        let mut block = BlockRef::for_socket(&self.core)?;
        let buf = self.buf.take().expect("checked above");
        // SAFETY: nothing in flight on the block yet.
        unsafe {
            let scratch = block.scratch();
            scratch.wsk_buf = wsk_buf;
            scratch.control_length = control.len() as ULONG;
            scratch.control_flags = 0;
            block.held().store(Held::BufAndBytes(buf, control));
        }
        Ok(block)
    }

    unsafe fn issue(&mut self, block: &BlockRef, irp: PIRP) -> NTSTATUS {
        let category = self.core.category;
        // SAFETY: as for `SendExRequest::issue`; the length and flags are written by the
        // provider into the block.
        unsafe {
            let scratch = block.scratch_ptr();
            let wsk_buf = &raw mut (*scratch).wsk_buf;
            let length = &raw mut (*scratch).control_length;
            let control_flags = &raw mut (*scratch).control_flags;
            let control = match &mut *block.held_ptr() {
                Held::BufAndBytes(_, control) if !control.is_empty() => control.as_mut_ptr().cast(),
                _ => core::ptr::null_mut(),
            };
            self.core.call(irp, |socket| {
                let receive_ex = ex_table(socket, category)
                    .receive_ex
                    .expect("gated on Windows 10 1803");
                receive_ex(socket, wsk_buf, 0, length, control, control_flags, irp)
            })
        }
    }

    fn finish(
        &mut self,
        block: &mut BlockRef,
        status: NTSTATUS,
        information: usize,
    ) -> Self::Output {
        // SAFETY: done: the buffer and control bytes are ours again; the provider wrote
        // `information` bytes at the start of the spare capacity.
        let (wanted, length, control_flags) = unsafe {
            let scratch = block.scratch();
            (
                scratch.wsk_buf.Length as usize,
                scratch.control_length as usize,
                scratch.control_flags,
            )
        };
        // SAFETY: as above.
        let (mut buf, mut control) = match core::mem::take(unsafe { block.held() }) {
            Held::BufAndBytes(buf, control) => (buf, control),
            _ => {
                return (
                    Err(Error::from_status(STATUS_UNSUCCESSFUL)),
                    Buf::released(),
                );
            }
        };
        // Counted whatever the status: a receive cancelled or failed part way still wrote
        // them (the buffer handed back with the error holds them).
        let count = information.min(wanted);
        let filled = buf.bytes_init() + count;
        // SAFETY: see above: the `count` bytes after the data were written.
        unsafe { buf.set_init(filled) };
        if let Err(error) = Error::check(status) {
            return (Err(error), buf);
        }
        control.truncate(length);
        (
            Ok(ReceivedWithControl {
                count,
                control,
                control_flags,
            }),
            buf,
        )
    }

    fn fail(&mut self, error: Error) -> Self::Output {
        (Err(error), self.buf.take().unwrap_or_else(Buf::released))
    }
}
