//! [`ConnectionSocket`]: a connection-oriented (TCP) socket.

use core::future::Future;
use core::net::SocketAddr;
use core::pin::Pin;
use core::task::{Context, Poll};

use wsk_sys::*;

use crate::addr::{AddressFamily, RawAddr, require_family};
use crate::buf::{Buf, BufList};
use crate::client::{ClientCore, WskClient};
use crate::completion::{BlockRef, Held};
use crate::events::{ConnectionEvents, Handlers};
use crate::held_buf::HeldBuf;
use crate::io_buf::{IoBuf, IoBufMut, wsk_buf_of_data, wsk_buf_of_spare};
use crate::op::Op;
use crate::op::issue::Issue;
use crate::shared::Shared;
use crate::socket::{
    AddressRequest, BindRequest, Category, Close, CreateRequest, NewSocket, OptionRequest,
    OptionValue, SocketCore, SocketHandle, SocketKind, WhichAddress, context_of,
};
use crate::{Error, Result};

/// A connection-oriented socket (TCP), connected or about to be.
///
/// Made by [`WskClient::connect`] (`WskSocketConnect`: create, bind and connect in one
/// call), by [`ConnectionSocket::create`] then [`bind`](Self::bind) and
/// [`connect`](Self::connect) (to set options first), or by accepting on a
/// [`ListenSocket`](crate::ListenSocket).
///
/// Sends and receives take a buffer by value and hand it back with the result: a [`Buf`],
/// or any [`IoBuf`] ([`IoBufMut`] to receive) — a [`Slice`](crate::Slice) of one, a
/// caller's [`MdlChain`](crate::MdlChain), a type of the driver's own. Every
/// operation may be issued at IRQL <= DISPATCH_LEVEL; several may be in flight at once (a
/// send and a receive, typically). Dropping the socket closes it in the background;
/// [`close`](Self::close) lets you wait for the close.
pub struct ConnectionSocket {
    handle: SocketHandle,
}

impl SocketKind for ConnectionSocket {
    const CATEGORY: Category = Category::Connection;
    fn from_handle(handle: SocketHandle) -> Self {
        ConnectionSocket { handle }
    }
    fn handle(&self) -> &SocketHandle {
        &self.handle
    }
    fn into_handle(self) -> SocketHandle {
        self.handle
    }
}

/// Flags of a send.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendFlags {
    /// Send at once, without Nagle delay (`WSK_FLAG_NODELAY`).
    pub no_delay: bool,
}

impl SendFlags {
    fn raw(self) -> ULONG {
        if self.no_delay { WSK_FLAG_NODELAY } else { 0 }
    }
}

/// The operation of [`WskClient::connect`] and [`ConnectionSocket::connect_with_events`].
pub type Connect = Op<SocketConnectRequest>;
/// The operation of [`ConnectionSocket::create`].
pub type CreateConnection = Op<CreateRequest<ConnectionSocket>>;
/// The operation of [`ConnectionSocket::send`]: yields the bytes sent and the buffer.
pub type Send<B = Buf> = Op<SendRequest<B>>;
/// The operation of [`ConnectionSocket::send_vectored`]: yields the bytes sent and the list.
pub type SendVectored = Op<SendListRequest>;
/// The operation of [`ConnectionSocket::receive`]: yields the bytes received and the buffer.
pub type Receive<B = Buf> = Op<ReceiveRequest<B>>;
/// The operation of [`ConnectionSocket::disconnect`] and [`ConnectionSocket::abort`].
pub type Disconnect = Op<DisconnectRequest>;
/// The operation of [`ConnectionSocket::local_addr`] and [`ConnectionSocket::peer_addr`].
pub type Address = Op<AddressRequest>;
/// The operation of [`ConnectionSocket::bind`].
pub type Bind = Op<BindRequest>;
/// The operation of [`ConnectionSocket::connect`].
pub type ConnectTo = Op<ConnectRequest>;

impl ConnectionSocket {
    pub(crate) fn socket_connect(
        client: &WskClient,
        remote: SocketAddr,
        local: SocketAddr,
    ) -> Connect {
        Op::new(SocketConnectRequest::new(
            client.core(),
            remote,
            local,
            Handlers::none(),
        ))
    }

    /// Connects to `remote` in one call (`WskSocketConnect`) with event callbacks: `events`
    /// is told of received data and disconnection at DISPATCH_LEVEL (see
    /// [`ConnectionEvents`]). IRQL <= DISPATCH_LEVEL.
    pub fn connect_with_events(
        client: &WskClient,
        remote: SocketAddr,
        events: impl ConnectionEvents,
    ) -> Connect {
        let handlers = Handlers::connection(events);
        let local = AddressFamily::of(&remote).unspecified();
        Op::new(SocketConnectRequest::new(
            client.core(),
            remote,
            local,
            handlers,
        ))
    }

    /// Connects to `remote` from `local` in one call (`WskSocketConnect`). IRQL <=
    /// DISPATCH_LEVEL.
    pub fn connect_from(client: &WskClient, local: SocketAddr, remote: SocketAddr) -> Connect {
        Op::new(SocketConnectRequest::new(
            client.core(),
            remote,
            local,
            Handlers::none(),
        ))
    }

    /// Creates an unbound, unconnected socket of `family` (`WskSocket`): set options, then
    /// [`bind`](Self::bind) and [`connect`](Self::connect). IRQL <= DISPATCH_LEVEL.
    pub fn create(client: &WskClient, family: AddressFamily) -> CreateConnection {
        Op::new(CreateRequest::new(client.core(), family, Handlers::none()))
    }

    /// Binds the socket to a local address (`WskBind`); port 0 picks one. IRQL <=
    /// DISPATCH_LEVEL.
    pub fn bind(&self, local: SocketAddr) -> Bind {
        Op::new(BindRequest {
            core: self.core().clone(),
            address: local,
        })
    }

    /// Connects the bound socket to `remote` (`WskConnect`). IRQL <= DISPATCH_LEVEL.
    pub fn connect(&self, remote: SocketAddr) -> ConnectTo {
        Op::new(ConnectRequest {
            core: self.core().clone(),
            remote,
        })
    }

    pub(crate) fn core(&self) -> &Shared<SocketCore> {
        &self.handle.core
    }

    /// The provider's socket (`PWSK_SOCKET`), for calls this crate does not wrap. Null if
    /// the socket is closed.
    ///
    /// The pointer stays valid until the socket is closed (by [`close`](Self::close) or
    /// drop); calling through it is `unsafe` and must not overlap a close, nor leave a
    /// request in flight when the socket is dropped.
    pub fn as_raw(&self) -> PWSK_SOCKET {
        match self.handle.core.enter() {
            // SAFETY: the guard is held for the read.
            Ok(_guard) => unsafe { self.handle.core.raw() },
            Err(_) => core::ptr::null_mut(),
        }
    }

    pub(crate) fn from_core(core: Shared<SocketCore>) -> ConnectionSocket {
        ConnectionSocket {
            handle: SocketHandle { core },
        }
    }

    /// Sends the buffer's bytes (`WskSend`). Yields the number of bytes sent (all of them
    /// unless the connection fails: WSK completes a send when all its data is sent) and gives
    /// the buffer back. An empty buffer fails with [`Error::INVALID_BUFFER_SIZE`].
    ///
    /// The buffer is any [`IoBuf`]: its data bytes ([`IoBuf::bytes_init`]) are sent.
    pub fn send<B: IoBuf>(&self, buf: B) -> Send<B> {
        self.send_with(buf, SendFlags::default())
    }

    /// Sends with flags; see [`send`](Self::send).
    pub fn send_with<B: IoBuf>(&self, buf: B, flags: SendFlags) -> Send<B> {
        send(self.core(), buf, flags)
    }

    /// Sends all of the buffer's bytes, issuing further sends if one is partial. Yields the
    /// buffer back. A failure yields the error, not how many bytes left before it: the peer
    /// then holds a prefix of the buffer of unknown length. To keep the count, loop on
    /// [`send`](Self::send) over a [`slice`](IoBuf::slice) of what is left.
    pub fn send_all<B: IoBuf>(&self, buf: B) -> SendAll<B> {
        SendAll {
            core: self.core().clone(),
            op: Some(send(self.core(), buf, SendFlags::default())),
            sent: 0,
        }
    }

    /// Sends the held bytes of every buffer of the list as one stream of bytes, in one call
    /// over an MDL chain. Yields the bytes sent and the list.
    pub fn send_vectored(&self, list: BufList) -> SendVectored {
        Op::new(SendListRequest {
            core: self.core().clone(),
            list: Some(list),
            flags: 0,
        })
    }

    /// Receives into the buffer's spare capacity (`WskReceive`), appending to what it
    /// holds. Yields the number of bytes received — 0 when the peer closed its side
    /// gracefully — and gives the buffer back. A buffer without spare capacity fails with
    /// [`Error::INVALID_BUFFER_SIZE`].
    ///
    /// The buffer is any [`IoBufMut`]: the provider writes after its data bytes, up to its
    /// [`bytes_total`](IoBuf::bytes_total).
    pub fn receive<B: IoBufMut>(&self, buf: B) -> Receive<B> {
        receive(self.core(), buf, usize::MAX, 0)
    }

    /// Receives exactly `count` more bytes (`WSK_FLAG_WAITALL`), appending them to the
    /// buffer. Fails with [`ErrorKind::Disconnected`](crate::ErrorKind::Disconnected) if the
    /// peer closes first (the bytes that did arrive are in the buffer), and with
    /// [`Error::INVALID_BUFFER_SIZE`] if `count` is 0 or exceeds the spare capacity.
    pub fn receive_exact<B: IoBufMut>(&self, buf: B, count: usize) -> Receive<B> {
        if count == 0 || count > buf.bytes_total() - buf.bytes_init() {
            return Op::new(ReceiveRequest::invalid(self.core(), buf));
        }
        receive(self.core(), buf, count, WSK_FLAG_WAITALL)
    }

    /// Closes the sending side gracefully (`WskDisconnect`, FIN); the peer's data can still
    /// be received.
    pub fn disconnect(&self) -> Disconnect {
        Op::new(DisconnectRequest {
            core: self.core().clone(),
            buf: None,
            flags: 0,
        })
    }

    /// Sends the buffer's bytes, then closes the sending side gracefully, in one call.
    ///
    /// It yields no count: when it fails — a deadline included — after part of the bytes
    /// left, the error does not say how many, and the sending side holds a prefix of the
    /// buffer of unknown length (the buffer itself is handed back unchanged). Such a
    /// connection can only be aborted ([`abort`](Self::abort)) or closed. To keep the count,
    /// [`send`](Self::send) the bytes first, then [`disconnect`](Self::disconnect).
    pub fn disconnect_with(&self, buf: Buf) -> Disconnect {
        Op::new(DisconnectRequest {
            core: self.core().clone(),
            buf: Some(buf),
            flags: 0,
        })
    }

    /// Aborts the connection (`WskDisconnect` with `WSK_FLAG_ABORTIVE`, a reset).
    pub fn abort(&self) -> Disconnect {
        Op::new(DisconnectRequest {
            core: self.core().clone(),
            buf: None,
            flags: WSK_FLAG_ABORTIVE,
        })
    }

    /// The local address (`WskGetLocalAddress`).
    pub fn local_addr(&self) -> Address {
        Op::new(AddressRequest {
            core: self.core().clone(),
            which: WhichAddress::Local,
        })
    }

    /// The remote address (`WskGetRemoteAddress`).
    pub fn peer_addr(&self) -> Address {
        Op::new(AddressRequest {
            core: self.core().clone(),
            which: WhichAddress::Remote,
        })
    }

    /// Disables (`true`) or enables the Nagle algorithm (`TCP_NODELAY`).
    pub fn set_no_delay(&self, no_delay: bool) -> crate::SetOption {
        self.set_option(
            IPPROTO_TCP,
            TCP_NODELAY,
            OptionValue::Ulong(no_delay.into()),
        )
    }

    /// Enables or disables keep-alive probes (`SO_KEEPALIVE`).
    pub fn set_keep_alive(&self, keep_alive: bool) -> crate::SetOption {
        self.set_option(
            SOL_SOCKET,
            SO_KEEPALIVE,
            OptionValue::Ulong(keep_alive.into()),
        )
    }

    /// Idle time before keep-alive probes start, in seconds (`TCP_KEEPALIVE`).
    pub fn set_keep_alive_idle(&self, seconds: u32) -> crate::SetOption {
        self.set_option(IPPROTO_TCP, TCP_KEEPALIVE, OptionValue::Ulong(seconds))
    }

    /// Interval between keep-alive probes, in seconds (`TCP_KEEPINTVL`).
    pub fn set_keep_alive_interval(&self, seconds: u32) -> crate::SetOption {
        self.set_option(IPPROTO_TCP, TCP_KEEPINTVL, OptionValue::Ulong(seconds))
    }

    /// Lingering on close (`SO_LINGER`): `Some(seconds)` to linger, `None` not to.
    pub fn set_linger(&self, linger: Option<u16>) -> crate::SetOption {
        let value = OptionValue::Linger {
            enabled: linger.is_some(),
            seconds: linger.unwrap_or(0),
        };
        self.set_option(SOL_SOCKET, SO_LINGER, value)
    }

    /// Size of the send buffer, in bytes (`SO_SNDBUF`).
    pub fn set_send_buffer_size(&self, bytes: u32) -> crate::SetOption {
        self.set_option(SOL_SOCKET, SO_SNDBUF, OptionValue::Ulong(bytes))
    }

    /// Size of the receive buffer, in bytes (`SO_RCVBUF`).
    pub fn set_receive_buffer_size(&self, bytes: u32) -> crate::SetOption {
        self.set_option(SOL_SOCKET, SO_RCVBUF, OptionValue::Ulong(bytes))
    }

    /// Reads a 4-byte socket option (for example `IPPROTO_TCP`, `TCP_NODELAY`).
    pub fn option(&self, level: u32, name: u32) -> crate::SetOption {
        Op::new(OptionRequest {
            core: self.core().clone(),
            level,
            name,
            value: None,
        })
    }

    /// Sets a 4-byte socket option (`WskControlSocket`, `WskSetOption`).
    pub fn set_option_u32(&self, level: u32, name: u32, value: u32) -> crate::SetOption {
        self.set_option(level, name, OptionValue::Ulong(value))
    }

    fn set_option(&self, level: ULONG, name: ULONG, value: OptionValue) -> crate::SetOption {
        Op::new(OptionRequest {
            core: self.core().clone(),
            level,
            name,
            value: Some(value),
        })
    }

    /// Hands the connection's events to `events` (`SO_WSK_EVENT_CALLBACK`): received data
    /// and disconnection are indicated at DISPATCH_LEVEL from now on (a pending receive
    /// still takes data first). Once per socket (`STATUS_INVALID_DEVICE_STATE` for a second
    /// handler); the socket must be connected. IRQL <= DISPATCH_LEVEL.
    pub fn set_events(&self, events: impl ConnectionEvents) -> Result<()> {
        crate::events::set_events(self.core(), Handlers::connection(events))
    }

    /// Closes the socket (`WskCloseSocket`); see [`Close`].
    pub fn close(self) -> Close {
        self.handle.close()
    }
}

impl core::fmt::Debug for ConnectionSocket {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ConnectionSocket")
            .field("family", &self.core().family)
            .finish()
    }
}

// ---- requests -------------------------------------------------------------------------------

pub(crate) fn send<B: IoBuf>(core: &Shared<SocketCore>, buf: B, flags: SendFlags) -> Send<B> {
    Op::new(SendRequest {
        core: core.clone(),
        buf: Some(buf),
        offset: 0,
        flags: flags.raw(),
    })
}

pub(crate) fn receive<B: IoBufMut>(
    core: &Shared<SocketCore>,
    buf: B,
    max: usize,
    flags: ULONG,
) -> Receive<B> {
    Op::new(ReceiveRequest {
        core: core.clone(),
        buf: Some(buf),
        max,
        flags,
        invalid: false,
    })
}

/// Calls a member of the connection (or stream) dispatch table of a socket.
///
/// # Safety
/// `socket` must be an open connection or stream socket, per `category`.
unsafe fn connection_table(socket: PWSK_SOCKET, category: Category) -> ConnectionTable {
    // SAFETY: the dispatch table of a socket is the one of its category.
    unsafe {
        if category == Category::Stream {
            let table = &*(*socket).Dispatch.cast::<WSK_PROVIDER_STREAM_DISPATCH>();
            ConnectionTable {
                send: table.WskSend,
                receive: table.WskReceive,
                disconnect: table.WskDisconnect,
                connect: table.WskConnect,
            }
        } else {
            let table = &*(*socket)
                .Dispatch
                .cast::<WSK_PROVIDER_CONNECTION_DISPATCH>();
            ConnectionTable {
                send: table.WskSend,
                receive: table.WskReceive,
                disconnect: table.WskDisconnect,
                connect: table.WskConnect,
            }
        }
    }
}

/// The members connection and stream sockets share, from either table.
pub(crate) struct ConnectionTable {
    pub(crate) send: PFN_WSK_SEND,
    pub(crate) receive: PFN_WSK_RECEIVE,
    pub(crate) disconnect: PFN_WSK_DISCONNECT,
    pub(crate) connect: PFN_WSK_CONNECT,
}

/// The shared members of a connection-like socket.
///
/// # Safety
/// As for `connection_table`.
pub(crate) unsafe fn table_of(socket: PWSK_SOCKET, category: Category) -> ConnectionTable {
    // SAFETY: forwarded.
    unsafe { connection_table(socket, category) }
}

/// `WskSend` of a buffer's data bytes from `offset`.
pub struct SendRequest<B = Buf> {
    core: Shared<SocketCore>,
    buf: Option<B>,
    offset: usize,
    flags: ULONG,
}

impl<B: IoBuf> SendRequest<B> {
    /// Takes the block and describes the buffer to the provider; `HOLD`: the block holds the
    /// buffer until the completion (else the request keeps it: see `Issue::start_waited`).
    #[inline(always)]
    fn begin<const HOLD: bool>(&mut self) -> Result<BlockRef> {
        let buf = self.buf.as_ref().expect("a send starts once");
        let wsk_buf = wsk_buf_of_data(buf, self.offset)?;
        let mut block = BlockRef::for_socket(&self.core)?;
        // SAFETY: nothing in flight on the block yet.
        unsafe { block.scratch().wsk_buf = wsk_buf };
        if HOLD {
            let buf = self.buf.take().expect("checked above");
            // SAFETY: as above.
            unsafe { block.held().store(Held::Io(HeldBuf::new(buf))) };
        }
        Ok(block)
    }
}

impl<B: IoBuf> Issue for SendRequest<B> {
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
        unsafe {
            issue_transfer(
                &self.core,
                Direction::Send,
                self.flags,
                &raw mut (*block.scratch_ptr()).wsk_buf,
                irp,
            )
        }
    }

    fn finish(
        &mut self,
        block: &mut BlockRef,
        status: NTSTATUS,
        information: usize,
    ) -> Self::Output {
        // SAFETY: done: the buffer is ours again, stored as a `B` by `start`.
        let buf = unsafe { block.held().take_io::<B>() }.expect("a send holds its buffer");
        (Error::check_transfer(status, information), buf)
    }

    fn finish_waited(
        &mut self,
        _: &mut BlockRef,
        status: NTSTATUS,
        information: usize,
    ) -> Self::Output {
        let buf = self.buf.take().expect("a send waited for keeps its buffer");
        (Error::check_transfer(status, information), buf)
    }

    fn fail(&mut self, error: Error) -> Self::Output {
        (Err(error), self.buf.take().unwrap_or_else(B::stand_in))
    }
}

/// Which way a connection's buffer request moves its bytes.
#[derive(Clone, Copy)]
enum Direction {
    /// `WskSend`.
    Send,
    /// `WskReceive`.
    Receive,
}

/// `WskSend` or `WskReceive` of `wsk_buf`: the part of a request that does not depend on
/// the buffer type. Inlined into the request's issue, with the socket's gate: a waited
/// request's whole path is then one function, with no call but the kernel's and the
/// provider's. It takes the socket's core itself, and the `WSK_BUF` by address, so that
/// nothing of the request's own memory has its address taken (its fields can then live in
/// registers).
///
/// # Safety
/// As for [`Issue::issue`]: `irp` was just armed on the block whose scratch `wsk_buf` is, and
/// that `WSK_BUF` and the memory it describes live until the completion.
#[inline]
unsafe fn issue_transfer(
    core: &SocketCore,
    direction: Direction,
    flags: ULONG,
    wsk_buf: *mut WSK_BUF,
    irp: PIRP,
) -> NTSTATUS {
    let category = core.category;
    // SAFETY: the WSK_BUF and the buffer live until the completion (the caller's contract).
    unsafe {
        core.call(irp, |socket| {
            let table = table_of(socket, category);
            let transfer = match direction {
                Direction::Send => table.send.expect("connection sockets have WskSend"),
                Direction::Receive => table.receive.expect("connection sockets have WskReceive"),
            };
            transfer(socket, wsk_buf, flags, irp)
        })
    }
}

/// `WskSend` of a [`BufList`] as an MDL chain.
pub struct SendListRequest {
    core: Shared<SocketCore>,
    list: Option<BufList>,
    flags: ULONG,
}

impl Issue for SendListRequest {
    type Output = (Result<usize>, BufList);

    fn start(&mut self) -> Result<BlockRef> {
        let list = self.list.as_mut().expect("a send starts once");
        let wsk_buf = list.chain()?.ok_or(Error::INVALID_BUFFER_SIZE)?;
        let mut block = BlockRef::for_socket(&self.core)?;
        let list = self.list.take().expect("checked above");
        // SAFETY: nothing in flight on the block yet.
        unsafe {
            block.scratch().wsk_buf = wsk_buf;
            block.held().store(Held::List(list));
        }
        Ok(block)
    }

    unsafe fn issue(&mut self, block: &BlockRef, irp: PIRP) -> NTSTATUS {
        let (category, flags) = (self.core.category, self.flags);
        // SAFETY: the WSK_BUF and the list's MDLs live in the block until the completion.
        unsafe {
            let wsk_buf = &raw mut (*block.scratch_ptr()).wsk_buf;
            self.core.call(irp, |socket| {
                let send = table_of(socket, category)
                    .send
                    .expect("connection sockets have WskSend");
                send(socket, wsk_buf, flags, irp)
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
            _ => unreachable!("a vectored send holds its list"),
        };
        (Error::check_transfer(status, information), list)
    }

    fn fail(&mut self, error: Error) -> Self::Output {
        (Err(error), self.list.take().unwrap_or_default())
    }
}

/// `WskReceive` into a buffer's spare capacity.
pub struct ReceiveRequest<B = Buf> {
    core: Shared<SocketCore>,
    buf: Option<B>,
    max: usize,
    flags: ULONG,
    invalid: bool,
}

impl<B: IoBufMut> ReceiveRequest<B> {
    fn invalid(core: &Shared<SocketCore>, buf: B) -> ReceiveRequest<B> {
        ReceiveRequest {
            core: core.clone(),
            buf: Some(buf),
            max: 0,
            flags: 0,
            invalid: true,
        }
    }
}

impl<B: IoBufMut> ReceiveRequest<B> {
    /// Takes the block and describes the buffer's spare capacity to the provider; `HOLD`:
    /// the block holds the buffer until the completion (else the request keeps it: see
    /// `Issue::start_waited`).
    #[inline(always)]
    fn begin<const HOLD: bool>(&mut self) -> Result<BlockRef> {
        let buf = self.buf.as_ref().expect("a receive starts once");
        if self.invalid {
            return Err(Error::INVALID_BUFFER_SIZE);
        }
        let wsk_buf = wsk_buf_of_spare(buf, self.max)?;
        let mut block = BlockRef::for_socket(&self.core)?;
        // SAFETY: nothing in flight on the block yet.
        unsafe { block.scratch().wsk_buf = wsk_buf };
        if HOLD {
            let buf = self.buf.take().expect("checked above");
            // SAFETY: as above.
            unsafe { block.held().store(Held::Io(HeldBuf::new(buf))) };
        }
        Ok(block)
    }

    /// The output, once the completion has arrived, with the buffer back in hand.
    #[inline(always)]
    fn end(
        &mut self,
        block: &mut BlockRef,
        mut buf: B,
        status: NTSTATUS,
        information: usize,
    ) -> (Result<usize>, B) {
        // SAFETY: done: the provider wrote `information` bytes at the start of the buffer's
        // spare capacity (the WSK_BUF described exactly that range).
        let wanted = unsafe { block.scratch().wsk_buf.Length as usize };
        // Counted whatever the status: a receive cancelled (a deadline) or failed part way
        // still wrote them, and they are gone from the stream.
        let received = information.min(wanted);
        let filled = buf.bytes_init() + received;
        // SAFETY: see above: the bytes after the data, up to `wanted`, were written.
        unsafe { buf.set_init(filled) };
        let result = if self.flags & WSK_FLAG_WAITALL == 0 {
            // Bytes that arrived before a failure are the result, as for a send.
            Error::check_transfer(status, received)
        } else {
            // A receive that had to fill its whole range fails short of it, with the bytes it
            // got in the buffer.
            Error::check(status).and_then(|()| {
                if received < wanted {
                    Err(Error::from_status(STATUS_GRACEFUL_DISCONNECT))
                } else {
                    Ok(received)
                }
            })
        };
        (result, buf)
    }
}

impl<B: IoBufMut> Issue for ReceiveRequest<B> {
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
        unsafe {
            issue_transfer(
                &self.core,
                Direction::Receive,
                self.flags,
                &raw mut (*block.scratch_ptr()).wsk_buf,
                irp,
            )
        }
    }

    fn finish(
        &mut self,
        block: &mut BlockRef,
        status: NTSTATUS,
        information: usize,
    ) -> Self::Output {
        // SAFETY: done: the buffer is ours again, stored as a `B` by `start`.
        let buf = unsafe { block.held().take_io::<B>() }.expect("a receive holds its buffer");
        self.end(block, buf, status, information)
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
        self.end(block, buf, status, information)
    }

    fn fail(&mut self, error: Error) -> Self::Output {
        (Err(error), self.buf.take().unwrap_or_else(B::stand_in))
    }
}

/// `WskDisconnect`, graceful (optionally with a final buffer) or abortive.
pub struct DisconnectRequest {
    core: Shared<SocketCore>,
    buf: Option<Buf>,
    flags: ULONG,
}

impl Issue for DisconnectRequest {
    type Output = (Result<()>, Option<Buf>);

    fn start(&mut self) -> Result<BlockRef> {
        if self.buf.as_ref().is_some_and(|b| b.is_empty()) {
            return Err(Error::INVALID_BUFFER_SIZE);
        }
        let mut block = BlockRef::for_socket(&self.core)?;
        if let Some(buf) = self.buf.take() {
            // SAFETY: nothing in flight on the block yet.
            unsafe {
                block.scratch().wsk_buf = buf.wsk_buf_of_data(0);
                block.held().store(Held::Buf(buf));
            }
        }
        Ok(block)
    }

    unsafe fn issue(&mut self, block: &BlockRef, irp: PIRP) -> NTSTATUS {
        let (category, flags) = (self.core.category, self.flags);
        // SAFETY: the WSK_BUF (when used) and its buffer live in the block until completion.
        unsafe {
            let has_buf = matches!(*block.held_ptr(), Held::Buf(_));
            let wsk_buf = if has_buf {
                &raw mut (*block.scratch_ptr()).wsk_buf
            } else {
                core::ptr::null_mut()
            };
            self.core.call(irp, |socket| {
                let disconnect = table_of(socket, category)
                    .disconnect
                    .expect("connection sockets have WskDisconnect");
                disconnect(socket, wsk_buf, flags, irp)
            })
        }
    }

    fn finish(
        &mut self,
        block: &mut BlockRef,
        status: NTSTATUS,
        _information: usize,
    ) -> Self::Output {
        // SAFETY: done: the buffer, if any, is ours again.
        let buf = match core::mem::take(unsafe { block.held() }) {
            Held::Buf(buf) => Some(buf),
            _ => None,
        };
        (Error::check(status), buf)
    }

    fn fail(&mut self, error: Error) -> Self::Output {
        (Err(error), self.buf.take())
    }
}

/// `WskConnect` of a bound socket.
pub struct ConnectRequest {
    core: Shared<SocketCore>,
    remote: SocketAddr,
}

impl Issue for ConnectRequest {
    type Output = Result<()>;

    fn start(&mut self) -> Result<BlockRef> {
        require_family(&self.remote, self.core.family)?;
        let mut block = BlockRef::for_socket(&self.core)?;
        // SAFETY: nothing in flight on the block yet.
        unsafe { block.scratch().remote = RawAddr::from_socket_addr(&self.remote) };
        Ok(block)
    }

    unsafe fn issue(&mut self, block: &BlockRef, irp: PIRP) -> NTSTATUS {
        let category = self.core.category;
        // SAFETY: the address lives in the block until the completion.
        unsafe {
            let remote = (*block.scratch_ptr()).remote.as_mut_ptr();
            self.core.call(irp, |socket| {
                let connect = table_of(socket, category)
                    .connect
                    .expect("connection sockets have WskConnect");
                connect(socket, remote, 0, irp)
            })
        }
    }

    fn finish(
        &mut self,
        block: &mut BlockRef,
        status: NTSTATUS,
        _information: usize,
    ) -> Self::Output {
        Error::check(status)?;
        // Event callbacks of a connection socket can only be enabled once it is connected.
        let _ = block;
        crate::events::enable_after_connect(&self.core)
    }

    fn fail(&mut self, error: Error) -> Self::Output {
        Err(error)
    }
}

/// `WskSocketConnect`: creates, binds and connects in one call.
pub struct SocketConnectRequest {
    client: Shared<ClientCore>,
    remote: SocketAddr,
    local: SocketAddr,
    handlers: Option<Handlers>,
    core: Option<Shared<SocketCore>>,
}

impl SocketConnectRequest {
    fn new(
        client: &Shared<ClientCore>,
        remote: SocketAddr,
        local: SocketAddr,
        handlers: Handlers,
    ) -> Self {
        SocketConnectRequest {
            client: client.clone(),
            remote,
            local,
            handlers: Some(handlers),
            core: None,
        }
    }
}

impl Issue for SocketConnectRequest {
    type Output = Result<ConnectionSocket>;

    fn start(&mut self) -> Result<BlockRef> {
        let family = AddressFamily::of(&self.remote);
        require_family(&self.local, family)?;
        let handlers = self.handlers.take().unwrap_or_else(Handlers::none);
        let core = SocketCore::new(&self.client, Category::Connection, family, handlers)?;
        let mut block = BlockRef::for_client(&self.client)?;
        // SAFETY: nothing in flight on the block yet.
        unsafe {
            let scratch = block.scratch();
            scratch.local = RawAddr::from_socket_addr(&self.local);
            scratch.remote = RawAddr::from_socket_addr(&self.remote);
            block
                .held()
                .store(Held::NewSocket(NewSocket::new(core.clone())));
        }
        self.core = Some(core);
        Ok(block)
    }

    unsafe fn issue(&mut self, block: &BlockRef, irp: PIRP) -> NTSTATUS {
        let core = self.core.as_ref().expect("started");
        let context = context_of(core);
        let dispatch = Handlers::client_dispatch_for(Category::Connection)
            .cast::<WSK_CLIENT_CONNECTION_DISPATCH>();
        // SAFETY: the addresses live in the block until the completion; the NPI is captured
        // (the request references a client core made from a live handle).
        unsafe {
            let scratch = block.scratch_ptr();
            let socket_connect = self
                .client
                .dispatch()
                .WskSocketConnect
                .expect("WskSocketConnect is in every provider");
            socket_connect(
                self.client.npi().Client,
                SOCK_STREAM,
                IPPROTO_TCP,
                (*scratch).local.as_mut_ptr(),
                (*scratch).remote.as_mut_ptr(),
                0,
                context,
                dispatch,
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                irp,
            )
        }
    }

    fn finish(
        &mut self,
        block: &mut BlockRef,
        status: NTSTATUS,
        information: usize,
    ) -> Self::Output {
        let _ = information;
        self.core = None;
        // SAFETY: done: exclusive access; the request collects the socket.
        let handle = match unsafe { core::mem::take(block.held()) } {
            Held::NewSocket(socket) => socket.into_handle(status)?,
            _ => return Err(Error::from_status(STATUS_UNSUCCESSFUL)),
        };
        crate::events::enable_after_connect(&handle.core)?;
        Ok(ConnectionSocket { handle })
    }

    fn fail(&mut self, error: Error) -> Self::Output {
        Err(error)
    }
}

/// [`ConnectionSocket::send_all`]: sends until every byte of the buffer is sent.
#[must_use = "an operation does nothing until it is awaited or waited for"]
pub struct SendAll<B: IoBuf = Buf> {
    core: Shared<SocketCore>,
    op: Option<Send<B>>,
    sent: usize,
}

impl<B: IoBuf> SendAll<B> {
    /// Runs the sends to completion, blocking the calling thread. IRQL <= APC_LEVEL.
    pub fn wait(mut self) -> (Result<()>, B) {
        loop {
            let Some(op) = self.op.take() else {
                // Waited for after it was polled to completion: the buffer was handed out.
                return (
                    Err(Error::from_status(STATUS_INVALID_DEVICE_REQUEST)),
                    B::stand_in(),
                );
            };
            let (result, buf) = op.wait();
            match self.step(result, buf) {
                Ok(done) => return done,
                Err(next) => self.op = Some(next),
            }
        }
    }

    /// Either the final output, or the next send.
    fn step(
        &mut self,
        result: Result<usize>,
        buf: B,
    ) -> core::result::Result<(Result<()>, B), Send<B>> {
        match result {
            Err(error) => Ok((Err(error), buf)),
            Ok(0) => Ok((Err(Error::from_status(STATUS_CONNECTION_ABORTED)), buf)),
            Ok(count) => {
                self.sent += count;
                if self.sent >= buf.bytes_init() {
                    Ok((Ok(()), buf))
                } else {
                    Err(Op::new(SendRequest {
                        core: self.core.clone(),
                        buf: Some(buf),
                        offset: self.sent,
                        flags: 0,
                    }))
                }
            }
        }
    }
}

impl<B: IoBuf> Future for SendAll<B> {
    type Output = (Result<()>, B);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            // Polled again after it finished: it stays pending (never a panic).
            let Some(op) = this.op.as_mut() else {
                return Poll::Pending;
            };
            let (result, buf) = match Pin::new(op).poll(cx) {
                Poll::Ready(output) => output,
                Poll::Pending => return Poll::Pending,
            };
            this.op = None;
            match this.step(result, buf) {
                Ok(done) => return Poll::Ready(done),
                Err(next) => this.op = Some(next),
            }
        }
    }
}

impl<B: IoBuf> core::fmt::Debug for SendAll<B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SendAll").field("sent", &self.sent).finish()
    }
}

impl WskClient {
    /// Connects to `remote` in one call (`WskSocketConnect`), from any local address:
    /// see [`ConnectionSocket`].
    pub fn connect(&self, remote: SocketAddr) -> Connect {
        ConnectionSocket::socket_connect(self, remote, AddressFamily::of(&remote).unspecified())
    }
}
