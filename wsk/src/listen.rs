//! [`ListenSocket`]: a listening socket, and the create-then-bind operation shared with
//! datagram sockets.

use core::future::Future;
use core::net::SocketAddr;
use core::pin::Pin;
use core::task::{Context, Poll};

use wsk_sys::*;

use crate::addr::{AddressFamily, RawAddr};
use crate::client::{ClientCore, WskClient};
use crate::completion::{BlockRef, Held};
use crate::connection::ConnectionSocket;
use crate::events::{Handlers, ListenEvents};
use crate::op::Op;
use crate::op::issue::Issue;
use crate::shared::Shared;
use crate::socket::{
    AddressRequest, BindRequest, Category, Close, CreateRequest, NewSocket, OptionRequest,
    OptionValue, SocketCore, SocketHandle, SocketKind, WhichAddress, context_of,
};
use crate::{Error, Result};

/// A listening socket: bound to a local address, it accepts incoming connections.
///
/// In WSK a listening socket listens as soon as it is bound; the transport keeps the queue
/// of connections not yet accepted (WSK has no backlog parameter). Accept them one by one
/// with [`accept`](Self::accept), or have them handed to a [`ListenEvents`] handler as they
/// arrive ([`ListenSocket::bind_with_events`]). Operations may be issued at IRQL <=
/// DISPATCH_LEVEL.
pub struct ListenSocket {
    handle: SocketHandle,
}

impl SocketKind for ListenSocket {
    const CATEGORY: Category = Category::Listen;
    fn from_handle(handle: SocketHandle) -> Self {
        ListenSocket { handle }
    }
    fn handle(&self) -> &SocketHandle {
        &self.handle
    }
    fn into_handle(self) -> SocketHandle {
        self.handle
    }
}

/// The operation of [`WskClient::listen`] and [`ListenSocket::bind_with_events`].
pub type Listen = Bound<ListenSocket>;
/// The operation of [`ListenSocket::accept`]: yields the connection and its peer address.
pub type Accept = Op<AcceptRequest>;

impl ListenSocket {
    pub(crate) fn bind(client: &WskClient, local: SocketAddr) -> Listen {
        Bound::new(client.core(), local, Handlers::none())
    }

    /// Creates a listening socket bound to `local` whose incoming connections go to
    /// `events` (`WSK_EVENT_ACCEPT`), at DISPATCH_LEVEL. IRQL <= DISPATCH_LEVEL.
    pub fn bind_with_events(
        client: &WskClient,
        local: SocketAddr,
        events: impl ListenEvents,
    ) -> Listen {
        Bound::new(client.core(), local, Handlers::listen(events))
    }

    /// Creates an unbound listening socket (`WskSocket`), to set options such as
    /// [`set_exclusive_address_use`](Self::set_exclusive_address_use) before
    /// [`bind`](Self::bind_to). IRQL <= DISPATCH_LEVEL.
    pub fn create(client: &WskClient, family: AddressFamily) -> Op<CreateRequest<ListenSocket>> {
        Op::new(CreateRequest::new(client.core(), family, Handlers::none()))
    }

    /// Creates an unbound listening socket whose incoming connections go to `events`
    /// (`WskSocket`): set options first — [`set_conditional_accept`] to have `events`
    /// inspect each connection ([`ListenEvents::on_inspect`]) — then
    /// [`bind_to`](Self::bind_to), which enables the events. IRQL <= DISPATCH_LEVEL.
    ///
    /// [`set_conditional_accept`]: crate::SocketOptions::set_conditional_accept
    pub fn create_with_events(
        client: &WskClient,
        family: AddressFamily,
        events: impl ListenEvents,
    ) -> Op<CreateRequest<ListenSocket>> {
        Op::new(CreateRequest::new(
            client.core(),
            family,
            Handlers::listen(events),
        ))
    }

    /// Binds the socket, which starts listening (`WskBind`); the events of a handler given
    /// at creation are enabled once bound. IRQL <= DISPATCH_LEVEL.
    pub fn bind_to(&self, local: SocketAddr) -> Op<BindRequest> {
        Op::new(BindRequest {
            core: self.handle.core.clone(),
            address: local,
        })
    }

    /// Accepts the next incoming connection (`WskAccept`).
    pub fn accept(&self) -> Accept {
        Op::new(AcceptRequest {
            listener: self.handle.core.clone(),
            core: None,
        })
    }

    /// The local address (`WskGetLocalAddress`); useful after binding to port 0.
    pub fn local_addr(&self) -> Op<AddressRequest> {
        Op::new(AddressRequest {
            core: self.handle.core.clone(),
            which: WhichAddress::Local,
        })
    }

    /// Allows binding an address already in use (`SO_REUSEADDR`); set before binding.
    pub fn set_reuse_address(&self, reuse: bool) -> crate::SetOption {
        self.set(SOL_SOCKET, SO_REUSEADDR, reuse)
    }

    /// Binds the address exclusively (`SO_EXCLUSIVEADDRUSE`); set before binding.
    pub fn set_exclusive_address_use(&self, exclusive: bool) -> crate::SetOption {
        self.set(SOL_SOCKET, SO_EXCLUSIVEADDRUSE, exclusive)
    }

    /// Restricts an IPv6 socket to IPv6 (`IPV6_V6ONLY`); set before binding.
    pub fn set_only_v6(&self, only_v6: bool) -> crate::SetOption {
        self.set(IPPROTO_IPV6, IPV6_V6ONLY, only_v6)
    }

    fn set(&self, level: ULONG, name: ULONG, value: bool) -> crate::SetOption {
        Op::new(OptionRequest {
            core: self.handle.core.clone(),
            level,
            name,
            value: Some(OptionValue::Ulong(value.into())),
        })
    }

    /// Closes the socket; see [`Close`].
    pub fn close(self) -> Close {
        self.handle.close()
    }

    pub(crate) fn core(&self) -> &Shared<SocketCore> {
        &self.handle.core
    }
}

impl core::fmt::Debug for ListenSocket {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ListenSocket")
            .field("family", &self.handle.core.family)
            .finish()
    }
}

/// `WskAccept` on a listening (or stream) socket.
pub struct AcceptRequest {
    pub(crate) listener: Shared<SocketCore>,
    pub(crate) core: Option<Shared<SocketCore>>,
}

impl Issue for AcceptRequest {
    type Output = Result<(ConnectionSocket, SocketAddr)>;

    fn start(&mut self) -> Result<BlockRef> {
        let core = SocketCore::new(
            self.listener.client(),
            Category::Connection,
            self.listener.family,
            Handlers::none(),
        )?;
        let mut block = BlockRef::for_socket(&self.listener)?;
        // SAFETY: nothing in flight on the block yet.
        unsafe {
            let scratch = block.scratch();
            scratch.local = RawAddr::empty();
            scratch.remote = RawAddr::empty();
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
        let category = self.listener.category;
        // SAFETY: the addresses live in the block until the completion; the dispatch table
        // is the listener's category's.
        unsafe {
            let scratch = block.scratch_ptr();
            let (local, remote) = (
                (*scratch).local.as_mut_ptr(),
                (*scratch).remote.as_mut_ptr(),
            );
            self.listener.call(irp, |socket| {
                let accept = if category == Category::Stream {
                    (*(*socket).Dispatch.cast::<WSK_PROVIDER_STREAM_DISPATCH>()).WskAccept
                } else {
                    (*(*socket).Dispatch.cast::<WSK_PROVIDER_LISTEN_DISPATCH>()).WskAccept
                };
                accept.expect("listening sockets have WskAccept")(
                    socket, 0, context, dispatch, local, remote, irp,
                )
            })
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
        let (held, remote) = unsafe { (core::mem::take(block.held()), block.scratch().remote) };
        let handle = match held {
            Held::NewSocket(socket) => socket.into_handle(status)?,
            _ => return Err(Error::from_status(STATUS_UNSUCCESSFUL)),
        };
        let socket = ConnectionSocket::from_core(handle_core(handle));
        Ok((socket, remote.to_socket_addr()?))
    }

    fn fail(&mut self, error: Error) -> Self::Output {
        Err(error)
    }
}

fn handle_core(handle: SocketHandle) -> Shared<SocketCore> {
    let handle = core::mem::ManuallyDrop::new(handle);
    // SAFETY: the handle is not dropped; its core is moved out once.
    unsafe { core::ptr::read(&handle.core) }
}

/// Creating a socket and binding it, as one operation; then enabling the events of a
/// handler given at creation. Yields the bound socket.
#[must_use = "an operation does nothing until it is awaited or waited for"]
pub struct Bound<K: SocketKind> {
    create: Option<Op<CreateRequest<K>>>,
    bind: Option<(K, Op<BindRequest>)>,
    local: SocketAddr,
}

/// Access to the core of a socket kind, for [`Bound`].
pub(crate) trait HasCore {
    fn socket_core(&self) -> &Shared<SocketCore>;
}

impl HasCore for ListenSocket {
    fn socket_core(&self) -> &Shared<SocketCore> {
        self.core()
    }
}

impl<K: SocketKind + HasCore> Bound<K> {
    pub(crate) fn new(
        client: &Shared<ClientCore>,
        local: SocketAddr,
        handlers: Handlers,
    ) -> Bound<K> {
        let family = AddressFamily::of(&local);
        Bound {
            create: Some(Op::new(CreateRequest::new(client, family, handlers))),
            bind: None,
            local,
        }
    }

    /// Runs the operation to completion, blocking the calling thread. IRQL <= APC_LEVEL.
    pub fn wait(mut self) -> Result<K> {
        if let Some(create) = self.create.take() {
            let socket = create.wait()?;
            let bind = Op::new(BindRequest {
                core: socket.socket_core().clone(),
                address: self.local,
            });
            self.bind = Some((socket, bind));
        }
        let (socket, bind) = self.bind.take().expect("waited for after it finished");
        // The bind enables the events of a handler given at creation.
        bind.wait()?;
        Ok(socket)
    }
}

impl<K: SocketKind + HasCore> Future for Bound<K> {
    type Output = Result<K>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<K>> {
        // SAFETY: no field is structurally pinned (the operations are `Unpin`).
        let this = unsafe { self.get_unchecked_mut() };
        if let Some(create) = this.create.as_mut() {
            let socket = match Pin::new(create).poll(cx) {
                Poll::Ready(result) => result,
                Poll::Pending => return Poll::Pending,
            };
            this.create = None;
            let socket = match socket {
                Ok(socket) => socket,
                Err(error) => return Poll::Ready(Err(error)),
            };
            let bind = Op::new(BindRequest {
                core: socket.socket_core().clone(),
                address: this.local,
            });
            this.bind = Some((socket, bind));
        }
        let (_, bind) = this.bind.as_mut().expect("polled after it finished");
        match Pin::new(bind).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(result) => {
                let (socket, _) = this.bind.take().expect("present");
                Poll::Ready(result.map(|()| socket))
            }
        }
    }
}

impl<K: SocketKind> core::fmt::Debug for Bound<K> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Bound").field("local", &self.local).finish()
    }
}

impl WskClient {
    /// Creates a listening socket bound to `local`: see [`ListenSocket`].
    pub fn listen(&self, local: SocketAddr) -> Listen {
        ListenSocket::bind(self, local)
    }
}
