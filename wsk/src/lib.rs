//! Safe Rust for the Windows **Winsock Kernel** (WSK): TCP and UDP from kernel-mode drivers,
//! without the IRP / completion routine / MDL bookkeeping — and without the ways it goes
//! wrong.
//!
//! # From `cargo add wsk` to a working send
//!
//! A driver crate is `#![no_std]` with `alloc` (it needs a global allocator over non-paged
//! pool and a panic handler, for instance from `wdk-alloc` and `wdk-panic`). Add the crate:
//!
//! ```text
//! cargo add wsk
//! ```
//!
//! Microsoft's "Sending Data over a Connection-Oriented Socket" example allocates an IRP,
//! sets a completion routine, calls `Dispatch->WskSend`, and in the routine reads the status,
//! frees the IRP and returns `STATUS_MORE_PROCESSING_REQUIRED`. Here it is, including the
//! registration and the connection it takes for granted:
//!
//! ```no_run
//! use core::net::SocketAddr;
//! use wsk::{Buf, DriverObject, WskClient};
//!
//! /// Sends `message` to `remote`; returns the number of bytes sent. PASSIVE_LEVEL.
//! /// `driver` is the driver object `DriverEntry` was given
//! /// (`unsafe { DriverObject::from_raw(driver) }`).
//! fn send_message(driver: DriverObject, remote: SocketAddr, message: &[u8]) -> wsk::Result<usize> {
//!     // WskRegister + WskCaptureProviderNPI; released and deregistered when dropped (from a
//!     // work item of `driver`'s, if that happens above PASSIVE_LEVEL).
//!     let client = WskClient::register(driver)?;
//!     // WskSocketConnect: create, bind and connect in one call.
//!     let socket = client.connect(remote).wait()?;
//!     // A non-paged buffer and its MDL (built with MmBuildMdlForNonPagedPool).
//!     let buf = Buf::from_slice(message)?;
//!     // The send: an IRP from the socket's cache, our completion routine, WskSend. The
//!     // buffer is owned by the operation while the provider may read it, and handed back.
//!     let (sent, buf) = socket.send(buf).wait();
//!     let sent = sent?;
//!     // Reuse `buf` for the next send, or drop it.
//!     drop(buf);
//!     // WskCloseSocket, waiting for its completion.
//!     socket.close().wait()?;
//!     Ok(sent)
//! }
//! ```
//!
//! `wait()` blocks the calling thread (PASSIVE_LEVEL or APC_LEVEL). Every operation is also a
//! `Future`, for code that must not block or runs at DISPATCH_LEVEL: [`task::TaskSet`] runs
//! futures by polling them in the completion routines that wake them, with no thread of its
//! own — the way C WSK drivers chain work — and [`task::block_on`] runs one at PASSIVE_LEVEL.
//!
//! ```no_run
//! use wsk::{Buf, ConnectionSocket, task::TaskSet};
//!
//! /// Echoes everything received on `socket` until the peer closes.
//! async fn echo(socket: ConnectionSocket) -> wsk::Result<()> {
//!     let mut buf = Buf::with_capacity(4096)?;
//!     loop {
//!         buf.clear();
//!         let (received, back) = socket.receive(buf).await;
//!         if received? == 0 {
//!             return Ok(());
//!         }
//!         let (sent, back) = socket.send_all(back).await;
//!         sent?;
//!         buf = back;
//!     }
//! }
//!
//! fn spawn_echo(tasks: &TaskSet, socket: ConnectionSocket) -> wsk::Result<()> {
//!     tasks.spawn(async move {
//!         let _ = echo(socket).await;
//!     })
//! }
//! ```
//!
//! # Ownership: what cannot go wrong
//!
//! - **Buffers** ([`Buf`], [`BufList`]) are moved into an operation and handed back with its
//!   result: no code can read, write or free memory the provider may still access.
//! - **IRPs** ([`Irp`]) are allocated once per socket and reused (`IoReuseIrp`): steady-state
//!   sends and receives allocate nothing. Allocation failure is an [`Error`], never a crash.
//!   Every IRP completes through one completion routine, which returns
//!   `STATUS_MORE_PROCESSING_REQUIRED`.
//! - **Dropping an operation** in flight cancels its IRP (`IoCancelIrp`); its IRP and buffers
//!   are released when the completion arrives, never before. A socket being created when its
//!   operation is dropped is closed when the creation completes.
//! - **Sockets** close when dropped (in the background), or with `close()` when you want to
//!   wait. No WSK call is ever made on a socket after its close is issued, and no event
//!   callback runs after the close completes.
//! - **The client** ([`WskClient`]) closes the sockets still open when it is dropped, waits for
//!   them, releases the provider NPI once and deregisters once, so `WskDeregister` cannot hang
//!   the driver's unload.
//!
//! # IRQL
//!
//! Each item documents the highest IRQL it may be used at. Operations may be issued at
//! DISPATCH_LEVEL; waiting ([`Op::wait`]), registration and shutdown of the client, and name
//! resolution need PASSIVE_LEVEL and fail with [`Error::IRQL_TOO_HIGH`] above it, rather than
//! bug-checking. Event handlers ([`ConnectionEvents`], [`ListenEvents`], [`DatagramEvents`])
//! run at DISPATCH_LEVEL.
//!
//! # Versions
//!
//! Provider dispatch tables belong to the provider; members newer than the running system
//! (name resolution before Windows 7, `WskSendMessages` before Windows 8, stream sockets and the
//! `Ex` functions before Windows 10 1703) are never read: the operations that need them fail
//! with [`Error::NOT_SUPPORTED`]. See [`WskClient::supports`].
//!
//! # Testing without Windows
//!
//! The `host` feature builds the crate for user mode against `wsk-host`, an implementation of
//! the kernel and WSK exports over real sockets with Driver-Verifier-like checks: the same
//! driver code runs in `cargo test` on Linux, macOS or Windows.
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]
// The request trait `op::issue::Issue` is sealed (its module is private): its methods, which
// name crate-private types, cannot be reached from outside the crate.
#![allow(private_interfaces, private_bounds)]

extern crate alloc;

/// The crate README, whose example is compiled as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

mod addr;
mod buf;
mod connection;
mod datagram;
mod dns;
mod error;
mod events;
mod heap;
mod indication;
mod irp;
pub mod irql;
mod lifecycle;
mod listen;
mod stream;
mod sync;
pub mod task;

use lifecycle::{client, completion, op, shared, socket};

pub use addr::AddressFamily;
pub use buf::{BUF_POOL_TAG, Buf, BufList};
pub use client::{DriverObject, Feature, ProviderInfo, RegisterOptions, WskClient};
pub use connection::{ConnectionSocket, SendAll, SendFlags};
pub use datagram::DatagramSocket;
pub use dns::ResolveHints;
pub use error::{Error, ErrorKind, Result};
pub use events::{AcceptDecision, ConnectionEvents, DatagramEvents, Incoming, ListenEvents};
pub use indication::{Datagram, ReceiveDecision, ReceivedData, ReceivedDatagrams, RetainedData};
pub use irp::Irp;
pub use listen::{Bound, ListenSocket};
pub use op::{Op, Request};
pub use socket::{Close, SetOption};
pub use stream::StreamSocket;
pub use sync::{SpinLock, SpinLockGuard};

/// The request types behind each [`Op`]: name them to store an operation in a struct.
pub mod ops {
    pub use crate::connection::{
        Address, Bind, Connect, ConnectRequest, ConnectTo, CreateConnection, Disconnect,
        DisconnectRequest, Receive, ReceiveRequest, Send, SendListRequest, SendRequest,
        SendVectored, SocketConnectRequest,
    };
    pub use crate::datagram::{
        BindDatagram, ReceiveFrom, ReceiveFromRequest, SendMessages, SendMessagesRequest, SendTo,
        SendToRequest,
    };
    pub use crate::dns::{Resolve, ResolveRequest};
    pub use crate::listen::{Accept, AcceptRequest, Listen};
    pub use crate::socket::{AddressRequest, BindRequest, CreateRequest, OptionRequest};
    pub use crate::stream::{CreateStream, ListenRequest, StreamCreateRequest};
}
