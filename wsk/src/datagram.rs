//! [`DatagramSocket`]: a datagram (UDP) socket.

use core::net::SocketAddr;

use wsk_sys::*;

use crate::addr::{RawAddr, require_family};
use crate::buf::{Buf, BufList};
use crate::client::{Feature, WskClient};
use crate::completion::{BlockRef, Held};
use crate::events::{DatagramEvents, Handlers};
use crate::held_buf::HeldBuf;
use crate::io_buf::{IoBuf, IoBufMut, wsk_buf_of_datagram, wsk_buf_of_spare};
use crate::listen::{Bound, HasCore};
use crate::op::Op;
use crate::op::issue::Issue;
use crate::shared::Shared;
use crate::socket::{
    AddressRequest, Category, Close, OptionRequest, OptionValue, SocketCore, SocketHandle,
    SocketKind, WhichAddress,
};
use crate::{Error, Result};

/// A datagram socket (UDP), bound to a local address.
///
/// Datagrams go out with [`send_to`](Self::send_to) (or several at once with
/// [`send_messages`](Self::send_messages), Windows 8) and come in with
/// [`receive_from`](Self::receive_from), or through a [`DatagramEvents`] handler. Operations
/// may be issued at IRQL <= DISPATCH_LEVEL.
pub struct DatagramSocket {
    handle: SocketHandle,
}

impl SocketKind for DatagramSocket {
    const CATEGORY: Category = Category::Datagram;
    fn from_handle(handle: SocketHandle) -> Self {
        DatagramSocket { handle }
    }
    fn handle(&self) -> &SocketHandle {
        &self.handle
    }
    fn into_handle(self) -> SocketHandle {
        self.handle
    }
}

impl HasCore for DatagramSocket {
    fn socket_core(&self) -> &Shared<SocketCore> {
        &self.handle.core
    }
}

/// The operation of [`WskClient::bind_datagram`].
pub type BindDatagram = Bound<DatagramSocket>;
/// The operation of [`DatagramSocket::send_to`]: yields the bytes sent and the buffer.
pub type SendTo<B = Buf> = Op<SendToRequest<B>>;
/// The operation of [`DatagramSocket::receive_from`]: yields the bytes received, the source
/// and the buffer.
pub type ReceiveFrom<B = Buf> = Op<ReceiveFromRequest<B>>;
/// The operation of [`DatagramSocket::send_messages`].
pub type SendMessages = Op<SendMessagesRequest>;

impl DatagramSocket {
    pub(crate) fn bind(client: &WskClient, local: SocketAddr) -> BindDatagram {
        Bound::new(client.core(), local, Handlers::none())
    }

    /// Creates a datagram socket bound to `local` whose datagrams go to `events`
    /// (`WSK_EVENT_RECEIVE_FROM`), at DISPATCH_LEVEL. IRQL <= DISPATCH_LEVEL.
    pub fn bind_with_events(
        client: &WskClient,
        local: SocketAddr,
        events: impl DatagramEvents,
    ) -> BindDatagram {
        Bound::new(client.core(), local, Handlers::datagram(events))
    }

    fn core(&self) -> &Shared<SocketCore> {
        &self.handle.core
    }

    /// Sends the buffer's bytes as one datagram to `remote` (`WskSendTo`). An empty buffer
    /// sends an empty datagram (valid in UDP); the memoryless stand-in an abandoned operation
    /// hands back fails with [`Error::INVALID_BUFFER_SIZE`], an address of the other family
    /// with [`Error::ADDRESS_FAMILY_MISMATCH`].
    ///
    /// The buffer is any [`IoBuf`]: its data bytes are the datagram.
    pub fn send_to<B: IoBuf>(&self, buf: B, remote: SocketAddr) -> SendTo<B> {
        Op::new(SendToRequest {
            core: self.core().clone(),
            buf: Some(buf),
            remote,
        })
    }

    /// Sends each buffer of the list as one datagram to `remote`, in one call
    /// (`WskSendMessages`, Windows 8; [`Error::NOT_SUPPORTED`] before).
    pub fn send_messages(&self, list: BufList, remote: SocketAddr) -> SendMessages {
        Op::new(SendMessagesRequest {
            core: self.core().clone(),
            list: Some(list),
            remote,
        })
    }

    /// Receives one datagram into the buffer's spare capacity (`WskReceiveFrom`). Yields its
    /// length and source; a datagram longer than the spare capacity is truncated.
    ///
    /// The buffer is any [`IoBufMut`]: the datagram is written after its data bytes.
    pub fn receive_from<B: IoBufMut>(&self, buf: B) -> ReceiveFrom<B> {
        Op::new(ReceiveFromRequest {
            core: self.core().clone(),
            buf: Some(buf),
        })
    }

    /// The local address (`WskGetLocalAddress`).
    pub fn local_addr(&self) -> Op<AddressRequest> {
        Op::new(AddressRequest {
            core: self.core().clone(),
            which: WhichAddress::Local,
        })
    }

    /// Allows sending to broadcast addresses (`SO_BROADCAST`).
    pub fn set_broadcast(&self, broadcast: bool) -> crate::SetOption {
        Op::new(OptionRequest {
            core: self.core().clone(),
            level: SOL_SOCKET,
            name: SO_BROADCAST,
            value: Some(OptionValue::Ulong(broadcast.into())),
        })
    }

    /// Closes the socket; see [`Close`].
    pub fn close(self) -> Close {
        self.handle.close()
    }
}

impl core::fmt::Debug for DatagramSocket {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DatagramSocket")
            .field("family", &self.core().family)
            .finish()
    }
}

/// # Safety
/// `socket` must be an open datagram socket.
unsafe fn table(socket: PWSK_SOCKET) -> &'static WSK_PROVIDER_DATAGRAM_DISPATCH {
    // SAFETY: a datagram socket's dispatch table is the provider's static datagram table.
    unsafe { &*(*socket).Dispatch.cast::<WSK_PROVIDER_DATAGRAM_DISPATCH>() }
}

/// `WskSendTo`.
pub struct SendToRequest<B = Buf> {
    core: Shared<SocketCore>,
    buf: Option<B>,
    remote: SocketAddr,
}

impl<B: IoBuf> SendToRequest<B> {
    /// Takes the block and describes the datagram and its destination to the provider;
    /// `HOLD`: the block holds the buffer until the completion (else the request keeps it:
    /// see `Issue::start_waited`).
    #[inline(always)]
    fn begin<const HOLD: bool>(&mut self) -> Result<BlockRef> {
        require_family(&self.remote, self.core.family)?;
        let wsk_buf = match self.buf.as_ref() {
            Some(buf) => wsk_buf_of_datagram(buf)?,
            None => return Err(Error::INVALID_BUFFER_SIZE),
        };
        let mut block = BlockRef::for_socket(&self.core)?;
        // SAFETY: nothing in flight on the block yet.
        unsafe {
            let scratch = block.scratch();
            scratch.wsk_buf = wsk_buf;
            scratch.remote = RawAddr::from_socket_addr(&self.remote);
        }
        if HOLD {
            let buf = self.buf.take().expect("checked above");
            // SAFETY: as above.
            unsafe { block.held().store(Held::Io(HeldBuf::new(buf))) };
        }
        Ok(block)
    }
}

impl<B: IoBuf> Issue for SendToRequest<B> {
    type Output = (Result<usize>, B);

    fn start(&mut self) -> Result<BlockRef> {
        self.begin::<true>()
    }

    const COMPLETES_IN_FRAME: bool = true;

    fn start_waited(&mut self) -> Result<BlockRef> {
        self.begin::<false>()
    }

    #[inline]
    unsafe fn issue(&mut self, block: &BlockRef, irp: PIRP) -> NTSTATUS {
        // SAFETY: forwarded.
        unsafe { issue_send_to(&self.core, block, irp) }
    }

    fn finish(
        &mut self,
        block: &mut BlockRef,
        status: NTSTATUS,
        information: usize,
    ) -> Self::Output {
        // SAFETY: done: the buffer is ours again, stored as a `B` by `start`.
        let buf = unsafe { block.held().take_io::<B>() }.expect("a send holds its buffer");
        (Error::check(status).map(|()| information), buf)
    }

    fn finish_waited(
        &mut self,
        _: &mut BlockRef,
        status: NTSTATUS,
        information: usize,
    ) -> Self::Output {
        let buf = self.buf.take().expect("a send waited for keeps its buffer");
        (Error::check(status).map(|()| information), buf)
    }

    fn fail(&mut self, error: Error) -> Self::Output {
        (Err(error), self.buf.take().unwrap_or_else(B::stand_in))
    }
}

/// `WskSendTo` of the `WSK_BUF` and address in the block's scratch fields: the part of a
/// request that does not depend on the buffer type (inlined into each request's issue, whose
/// caller waits for it).
///
/// # Safety
/// As for [`Issue::issue`]: `irp` was just armed on `block`, whose scratch fields and held
/// buffer live until the completion.
#[inline]
unsafe fn issue_send_to(core: &Shared<SocketCore>, block: &BlockRef, irp: PIRP) -> NTSTATUS {
    // SAFETY: the WSK_BUF, address and buffer live in the block until the completion.
    unsafe {
        let scratch = block.scratch_ptr();
        let (wsk_buf, remote) = (&raw mut (*scratch).wsk_buf, (*scratch).remote.as_mut_ptr());
        core.call(irp, |socket| {
            let send_to = table(socket)
                .WskSendTo
                .expect("datagram sockets have WskSendTo");
            send_to(socket, wsk_buf, 0, remote, 0, core::ptr::null_mut(), irp)
        })
    }
}

/// `WskReceiveFrom` into the `WSK_BUF` in the block's scratch fields: the part of a request
/// that does not depend on the buffer type (inlined, as [`issue_send_to`]).
///
/// # Safety
/// As for [`Issue::issue`]: `irp` was just armed on `block`, whose scratch fields and held
/// buffer live until the completion.
#[inline]
unsafe fn issue_receive_from(core: &Shared<SocketCore>, block: &BlockRef, irp: PIRP) -> NTSTATUS {
    // SAFETY: the WSK_BUF, address and buffer live in the block until the completion.
    unsafe {
        let scratch = block.scratch_ptr();
        let (wsk_buf, remote) = (&raw mut (*scratch).wsk_buf, (*scratch).remote.as_mut_ptr());
        core.call(irp, |socket| {
            let receive = table(socket)
                .WskReceiveFrom
                .expect("datagram sockets have WskReceiveFrom");
            receive(
                socket,
                wsk_buf,
                0,
                remote,
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                irp,
            )
        })
    }
}

/// What a completed receive-from yields, from the block's scratch fields (the part that
/// does not depend on the buffer type): the bytes written into the buffer (0 on failure),
/// and the result.
#[inline]
fn receive_from_result(
    block: &mut BlockRef,
    status: NTSTATUS,
    information: usize,
) -> (usize, Result<(usize, SocketAddr)>) {
    // SAFETY: done: the request's scratch fields are ours again.
    let scratch = unsafe { block.scratch() };
    let (wanted, remote) = (scratch.wsk_buf.Length as usize, scratch.remote);
    if let Err(error) = Error::check(status) {
        return (0, Err(error));
    }
    let received = information.min(wanted);
    (
        received,
        remote.to_socket_addr().map(|from| (received, from)),
    )
}

/// `WskSendMessages`.
pub struct SendMessagesRequest {
    core: Shared<SocketCore>,
    list: Option<BufList>,
    remote: SocketAddr,
}

impl Issue for SendMessagesRequest {
    type Output = (Result<usize>, BufList);

    fn start(&mut self) -> Result<BlockRef> {
        if !self.core.client().info().supports(Feature::SendMessages) {
            return Err(Error::NOT_SUPPORTED);
        }
        require_family(&self.remote, self.core.family)?;
        let list = self.list.as_mut().expect("a send starts once");
        if list.datagram_list().is_none() {
            return Err(Error::INVALID_BUFFER_SIZE);
        }
        let mut block = BlockRef::for_socket(&self.core)?;
        let list = self.list.take().expect("checked above");
        // SAFETY: nothing in flight on the block yet.
        unsafe {
            block.scratch().remote = RawAddr::from_socket_addr(&self.remote);
            block.held().store(Held::List(list));
        }
        Ok(block)
    }

    unsafe fn issue(&mut self, block: &BlockRef, irp: PIRP) -> NTSTATUS {
        // SAFETY: the list (with its nodes) and the address live in the block until the
        // completion; the list's nodes were built in `start` and are not moved (the list's
        // vectors are owned by the block's `Held`).
        unsafe {
            let remote = (*block.scratch_ptr()).remote.as_mut_ptr();
            let head = match &mut *block.held_ptr() {
                Held::List(list) => list.datagram_list().unwrap_or(core::ptr::null_mut()),
                _ => core::ptr::null_mut(),
            };
            self.core.call(irp, |socket| {
                let send = table(socket).WskSendMessages.expect("gated on Windows 8");
                send(socket, head, 0, remote, 0, core::ptr::null_mut(), irp)
            })
        }
    }

    fn finish(
        &mut self,
        block: &mut BlockRef,
        status: NTSTATUS,
        information: usize,
    ) -> Self::Output {
        // SAFETY: done: the list is ours again.
        let list = match core::mem::take(unsafe { block.held() }) {
            Held::List(list) => list,
            _ => unreachable!("a send holds its list"),
        };
        (Error::check(status).map(|()| information), list)
    }

    fn fail(&mut self, error: Error) -> Self::Output {
        (Err(error), self.list.take().unwrap_or_default())
    }
}

/// `WskReceiveFrom`.
pub struct ReceiveFromRequest<B = Buf> {
    core: Shared<SocketCore>,
    buf: Option<B>,
}

impl<B: IoBufMut> ReceiveFromRequest<B> {
    /// Takes the block and describes the buffer's spare capacity to the provider; `HOLD`:
    /// the block holds the buffer until the completion (else the request keeps it: see
    /// `Issue::start_waited`).
    #[inline(always)]
    fn begin<const HOLD: bool>(&mut self) -> Result<BlockRef> {
        let wsk_buf = match self.buf.as_ref() {
            Some(buf) => wsk_buf_of_spare(buf, usize::MAX)?,
            None => return Err(Error::INVALID_BUFFER_SIZE),
        };
        let mut block = BlockRef::for_socket(&self.core)?;
        // SAFETY: nothing in flight on the block yet.
        unsafe {
            let scratch = block.scratch();
            scratch.wsk_buf = wsk_buf;
            scratch.remote = RawAddr::empty();
            scratch.control_length = 0;
            scratch.control_flags = 0;
        }
        if HOLD {
            let buf = self.buf.take().expect("checked above");
            // SAFETY: as above.
            unsafe { block.held().store(Held::Io(HeldBuf::new(buf))) };
        }
        Ok(block)
    }
}

/// The output of a datagram receive, once the completion has arrived, with the buffer back in
/// hand.
#[inline(always)]
fn received_datagram<B: IoBufMut>(
    block: &mut BlockRef,
    mut buf: B,
    status: NTSTATUS,
    information: usize,
) -> (Result<(usize, SocketAddr)>, B) {
    let (received, result) = receive_from_result(block, status, information);
    let filled = buf.bytes_init() + received;
    // SAFETY: the provider wrote `received` bytes at the start of the spare capacity the
    // WSK_BUF described.
    unsafe { buf.set_init(filled) };
    (result, buf)
}

impl<B: IoBufMut> Issue for ReceiveFromRequest<B> {
    type Output = (Result<(usize, SocketAddr)>, B);

    fn start(&mut self) -> Result<BlockRef> {
        self.begin::<true>()
    }

    const COMPLETES_IN_FRAME: bool = true;

    fn start_waited(&mut self) -> Result<BlockRef> {
        self.begin::<false>()
    }

    #[inline]
    unsafe fn issue(&mut self, block: &BlockRef, irp: PIRP) -> NTSTATUS {
        // SAFETY: forwarded.
        unsafe { issue_receive_from(&self.core, block, irp) }
    }

    fn finish(
        &mut self,
        block: &mut BlockRef,
        status: NTSTATUS,
        information: usize,
    ) -> Self::Output {
        // SAFETY: done: the buffer is ours again, stored as a `B` by `start`.
        let buf = unsafe { block.held().take_io::<B>() }.expect("a receive holds its buffer");
        received_datagram(block, buf, status, information)
    }

    fn finish_waited(
        &mut self,
        block: &mut BlockRef,
        status: NTSTATUS,
        information: usize,
    ) -> Self::Output {
        let buf = self
            .buf
            .take()
            .expect("a receive waited for keeps its buffer");
        received_datagram(block, buf, status, information)
    }

    fn fail(&mut self, error: Error) -> Self::Output {
        (Err(error), self.buf.take().unwrap_or_else(B::stand_in))
    }
}

impl WskClient {
    /// Creates a datagram socket bound to `local`: see [`DatagramSocket`].
    pub fn bind_datagram(&self, local: SocketAddr) -> BindDatagram {
        DatagramSocket::bind(self, local)
    }
}
