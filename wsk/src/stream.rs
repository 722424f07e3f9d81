//! [`StreamSocket`]: a stream socket (Windows 10 1703), which becomes either a listener or a
//! connection.

use core::net::SocketAddr;

use wsk_sys::*;

use crate::addr::AddressFamily;
use crate::client::{Feature, WskClient};
use crate::completion::BlockRef;
use crate::connection::ConnectionSocket;
use crate::events::Handlers;
use crate::listen::AcceptRequest;
use crate::op::Op;
use crate::op::issue::Issue;
use crate::shared::Shared;
use crate::socket::{
    AddressRequest, BindRequest, Category, Close, CreateRequest, SocketCore, SocketHandle,
    SocketKind, WhichAddress,
};
use crate::{Error, Result};

/// A stream socket (`WSK_FLAG_STREAM_SOCKET`, Windows 10 1703 and later): created unbound,
/// then either [`listen`](Self::listen)s or [`connect`](Self::into_connection)s — the
/// single-socket-type model of user-mode sockets.
///
/// On older systems [`StreamSocket::create`] fails with [`Error::NOT_SUPPORTED`] without
/// reading the provider's stream table; use a [`ListenSocket`](crate::ListenSocket) or a
/// [`ConnectionSocket`] there.
pub struct StreamSocket {
    handle: SocketHandle,
}

impl SocketKind for StreamSocket {
    const CATEGORY: Category = Category::Stream;
    fn from_handle(handle: SocketHandle) -> Self {
        StreamSocket { handle }
    }
    fn handle(&self) -> &SocketHandle {
        &self.handle
    }
    fn into_handle(self) -> SocketHandle {
        self.handle
    }
}

/// The operation of [`StreamSocket::create`].
pub type CreateStream = Op<StreamCreateRequest>;

impl StreamSocket {
    /// Creates an unbound stream socket (`WskSocket`). IRQL <= DISPATCH_LEVEL.
    pub fn create(client: &WskClient, family: AddressFamily) -> CreateStream {
        Op::new(StreamCreateRequest {
            supported: client.supports(Feature::StreamSockets),
            inner: CreateRequest::new(client.core(), family, Handlers::none()),
        })
    }

    fn core(&self) -> &Shared<SocketCore> {
        &self.handle.core
    }

    /// Binds the socket to a local address (`WskBind`).
    pub fn bind(&self, local: SocketAddr) -> Op<BindRequest> {
        Op::new(BindRequest {
            core: self.core().clone(),
            address: local,
        })
    }

    /// Starts listening (`WskListen`); then [`accept`](Self::accept) connections.
    pub fn listen(&self) -> Op<ListenRequest> {
        Op::new(ListenRequest {
            core: self.core().clone(),
        })
    }

    /// Accepts the next incoming connection of a listening stream socket (`WskAccept`).
    pub fn accept(&self) -> Op<AcceptRequest> {
        Op::new(AcceptRequest {
            listener: self.core().clone(),
            core: None,
        })
    }

    /// The local address (`WskGetLocalAddress`).
    pub fn local_addr(&self) -> Op<AddressRequest> {
        Op::new(AddressRequest {
            core: self.core().clone(),
            which: WhichAddress::Local,
        })
    }

    /// Commits the (bound) socket to being a connection: connect it with
    /// [`ConnectionSocket::connect`], then use it as any connection. Its requests go through
    /// the provider's stream table.
    #[must_use]
    pub fn into_connection(self) -> ConnectionSocket {
        let handle = core::mem::ManuallyDrop::new(self.handle);
        // SAFETY: the handle is not dropped; its core is moved out once.
        ConnectionSocket::from_core(unsafe { core::ptr::read(&handle.core) })
    }

    /// Closes the socket; see [`Close`].
    pub fn close(self) -> Close {
        self.handle.close()
    }
}

impl core::fmt::Debug for StreamSocket {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StreamSocket")
            .field("family", &self.core().family)
            .finish()
    }
}

/// `WskSocket` for a stream socket, refused on systems without stream sockets.
pub struct StreamCreateRequest {
    supported: bool,
    inner: CreateRequest<StreamSocket>,
}

impl Issue for StreamCreateRequest {
    type Output = Result<StreamSocket>;

    fn start(&mut self) -> Result<BlockRef> {
        if !self.supported {
            return Err(Error::NOT_SUPPORTED);
        }
        self.inner.start()
    }

    unsafe fn issue(&mut self, block: &BlockRef, irp: PIRP) -> NTSTATUS {
        // SAFETY: forwarded.
        unsafe { self.inner.issue(block, irp) }
    }

    fn finish(
        &mut self,
        block: &mut BlockRef,
        status: NTSTATUS,
        information: usize,
    ) -> Self::Output {
        self.inner.finish(block, status, information)
    }

    fn fail(&mut self, error: Error) -> Self::Output {
        Err(error)
    }
}

/// `WskListen`.
pub struct ListenRequest {
    core: Shared<SocketCore>,
}

impl Issue for ListenRequest {
    type Output = Result<()>;

    fn start(&mut self) -> Result<BlockRef> {
        BlockRef::for_socket(&self.core)
    }

    unsafe fn issue(&mut self, _block: &BlockRef, irp: PIRP) -> NTSTATUS {
        // SAFETY: a stream socket's dispatch table is the stream table (gated at creation).
        unsafe {
            self.core.call(irp, |socket| {
                let table = &*(*socket).Dispatch.cast::<WSK_PROVIDER_STREAM_DISPATCH>();
                table.WskListen.expect("stream sockets have WskListen")(socket, irp)
            })
        }
    }

    fn finish(
        &mut self,
        _block: &mut BlockRef,
        status: NTSTATUS,
        _information: usize,
    ) -> Self::Output {
        Error::check(status)
    }

    fn fail(&mut self, error: Error) -> Self::Output {
        Err(error)
    }
}
