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
//! # What cannot go wrong, and what enforces it
//!
//! Safe code using this crate cannot break these promises; each is enforced as said, and
//! each has tests that try to break it (`tests/soundness.rs`, `tests/lifetimes.rs`,
//! `tests/stress.rs`, the `compile_fail` examples in these docs, Miri over the machinery).
//!
//! | promise | enforced by |
//! |---|---|
//! | no memory the provider may read or write is freed or touched before the completion | ownership: [`Buf`]/[`BufList`], and any [`IoBuf`] ([`Slice`], [`MdlChain`] and the caller's MDLs' owner, a driver's own type), are moved into the operation and handed back with its result, as is a caller's [`Irp`] ([`Op::with_irp`]); the completion block that holds them is reference-counted, and the in-flight IRP holds a reference until its completion routine has run, whatever is dropped when; an operation waited for before it was ever polled keeps them in the waiting frame, which returns only after the completion and aborts rather than unwind before it |
//! | indicated data is read only while the provider lends it | lifetimes: slices from [`ReceivedData`]/[`ReceivedDatagrams`] borrow them and end when the decision is made; [`RetainedData`] is read through views that the indications cannot be released under; closing the socket revokes it (released at once, or when its views are dropped); one dropped inside its own callback turns the decision into a consumption instead of releasing early |
//! | a callback returns only its own decision | branding: [`ReceiveDecision<'a>`], [`AcceptDecision<'a>`] and [`InspectDecision<'a>`] carry the invariant lifetime of their callback |
//! | no wait at DISPATCH_LEVEL or inside a callback | every blocking wait checks the IRQL and fails with [`Error::IRQL_TOO_HIGH`]; completion routines, event callbacks and task polls run in a callback scope where every wait refuses the same way, whatever the IRQL the provider called them at (PASSIVE_LEVEL for an inline completion); a [`SpinLockGuard`] is `!Send`, so no spawned task holds one across an `.await`, and a thread's spin locks are counted per processor, so releasing them in any order lowers the IRQL only with the last |
//! | no runaway stack or reentrancy in the executor | a task is polled inline only in the completion routine of its own request (and first in `spawn`), never nested more than four polls deep on one stack (counted per processor at DISPATCH_LEVEL, per thread below) nor under a [`SpinLock`] of this crate; woken any other way it is continued by its set's work item, which alone then holds it (a wake-up racing the set's drop queues nothing freed); a run ends after [`task::RUN_BUDGET`] operations or re-polls |
//! | no IRP, MDL, pool block, socket or registration leaks | every IRP lives in a completion block owned by a socket or the client and freed with it; sockets close when dropped; the client's teardown cancels its requests, closes its sockets, frees uncollected results, releases the NPI and deregisters, once |
//! | unload does not hang | the teardown waits only for requests it has cancelled and closes it has issued (a close revokes the socket's retained data, and waits only for a [`RetainedView`] open at that moment); its handler is dropped when the close completes, so what a handler owns cannot keep its socket alive; dropped above PASSIVE_LEVEL it runs in a work item of the driver (`IoQueueWorkItemEx`), which keeps the driver loaded until it is done |
//!
//! Allocation failure (IRPs, MDLs, pool, the heap) is an [`Error`], never a crash, and leaves
//! nothing allocated behind.
//!
//! ## What `mem::forget` can do
//!
//! Forgetting is safe, and leaks are what it can cause — never a use after free or a wait
//! at DISPATCH_LEVEL:
//! - a forgotten operation leaks the buffers it holds (an [`MdlChain`]'s owner is never
//!   dropped, so the memory stays valid), a caller's IRP it was issued with (a forwarded one
//!   is never completed: its originator waits for good), and its socket's memory — the
//!   operation keeps the socket's core, so the core and **every completion block of its
//!   pool** (an IRP and its memory each, reserved ones included: see `reserve_requests`) are
//!   never freed; a client-level operation (a connect, a resolution) keeps the client's core
//!   and pool the same way. It is cancelled and completed by the teardown like any other, so
//!   it does not delay unload;
//! - a forgotten socket is never closed by its handle; the client's teardown closes it;
//! - a forgotten [`RetainedData`] leaks its bookkeeping and keeps its socket's memory (the
//!   core, its IRPs) allocated; the close still revokes the indications, so nothing waits;
//! - a forgotten [`RetainedView`] **pins its retained data, and so its socket**: a view
//!   guarantees the indications stay readable, so the socket's close waits for it, and with
//!   it the client's teardown and the driver's unload — for good. Keep views short-lived;
//!   never forget one;
//! - a forgotten [`PendedInspection`] leaks its bookkeeping and keeps its listener's memory
//!   allocated; its connection stays undecided until the listener closes (which resets it);
//!   nothing waits for it. Dropped — or its decision's operation dropped before it is issued
//!   — it rejects the connection;
//! - a forgotten [`SpinLockGuard`] leaves its lock held and the IRQL raised on that processor;
//! - a forgotten `Close` (the operation of `close()`) keeps its socket's core — the close
//!   IRP and every completion block of its pool — allocated for good, like any forgotten
//!   operation; the socket is closed all the same, and nothing waits for it;
//! - a forgotten [`task::TaskSet`] leaks its work item and its tasks' bookkeeping; its tasks
//!   are cancelled by the teardown of the requests they wait for, and nothing waits for them;
//! - a forgotten [`WskClient`] stays registered: `WskDeregister` never runs.
//!
//! ## Ownership in practice
//!
//! - **IRPs** ([`Irp`]) are allocated per socket (or per client, for its own requests) and
//!   reused (`IoReuseIrp`): steady-state sends and receives allocate nothing, whatever the
//!   number of requests in flight (`reserve_requests` allocates them up front). A closed
//!   socket's core, with its close IRP and a few of its blocks, goes back to its client for
//!   the next socket, so accepting or connecting allocates nothing of this crate's either
//!   once warmed up; the spares are freed with the client. Every IRP completes through one
//!   completion routine, which returns `STATUS_MORE_PROCESSING_REQUIRED`. A driver that owns an IRP — allocated, or a
//!   request forwarded to it ([`Irp::from_forwarded`]) — issues any operation with it through
//!   [`Op::with_irp`], and gets it back, completed, with the result.
//! - **Buffers** are [`Buf`] by default, or any [`IoBuf`] / [`IoBufMut`]: a [`Slice`] of a
//!   buffer (`buf.slice(range)`), memory the driver already has behind its own MDL chain
//!   ([`MdlChain`], whose owner value keeps it alive), or a type of the driver's own. No copy
//!   and no allocation per operation: the buffer is held inside the completion block.
//! - **Dropping an operation** in flight cancels its IRP (`IoCancelIrp`); its IRP and buffers
//!   are released when the completion arrives, never before. A socket being created or
//!   accepted joins its client when the creation completes, so it is closed even if the
//!   operation is never collected.
//! - **Sockets** close when dropped (in the background), or with `close()` when you want to
//!   wait. Closing cancels the socket's requests in flight; no WSK call is made on a socket
//!   after its close is issued, and no event callback runs after the close completes.
//! - **The client** ([`WskClient`]) needs the driver object ([`DriverObject`]) for the work
//!   item of a teardown deferred from above PASSIVE_LEVEL.
//!
//! The lifecycle machinery — who holds what, what runs at which IRQL, what waits for what —
//! is documented in one place, the crate's `lifecycle` module (see its source).
//!
//! # IRQL
//!
//! Each item documents the highest IRQL it may be used at. Operations may be issued at
//! DISPATCH_LEVEL; waiting ([`Op::wait`], [`Close::wait`], [`task::block_on`],
//! [`task::TaskSet::wait_idle`]) and registration need PASSIVE_LEVEL or APC_LEVEL and fail
//! with [`Error::IRQL_TOO_HIGH`] above it, rather than bug-checking. Event handlers
//! ([`ConnectionEvents`], [`ListenEvents`], [`DatagramEvents`]), completion routines and
//! tasks run at IRQL <= DISPATCH_LEVEL (usually DISPATCH_LEVEL), and never wait: inside
//! them every blocking wait fails with [`Error::IRQL_TOO_HIGH`] whatever the IRQL.
//!
//! # Versions
//!
//! Provider dispatch tables belong to the provider; members newer than the running system
//! (name resolution before Windows 7, `WskSendMessages` before Windows 8, stream sockets and
//! `WskConnectEx` before Windows 10 1703, `WskSendEx` and `WskReceiveEx` before Windows 10 1803)
//! are never read: the operations that need them fail
//! with [`Error::NOT_SUPPORTED`]. See [`WskClient::supports`].
//!
//! # Options, controls and raw sockets
//!
//! [`SocketOptions`] gives every socket kind its options (typed, or as bytes of any size) and
//! any `WskControlSocket` request; the `SIO_WSK_*` controls with a payload are methods of the
//! kinds they apply to. [`WskClient::transports`], [`WskClient::transport_list_change`] and
//! [`WskClient::control_client`] reach `WskControlClient`; [`WskClient::name_of`],
//! `WskGetNameInfo`. Conditional accept goes through [`ListenEvents::on_inspect`].
//!
//! To mix with C components, every kind has `as_raw` (lends the `PWSK_SOCKET`), `unsafe
//! from_raw` (adopts a socket created through the same client into its socket list, so the
//! teardown closes it) and `unsafe into_raw` (gives an idle socket up: the caller then owns its
//! close, which must come before the client is dropped, or `WskDeregister` waits for good).
//! The crate README maps every WSK function to the API that reaches it.
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
mod caller_irp;
mod client_control;
mod connection;
mod connection_ex;
mod control;
mod datagram;
mod deadline;
mod dns;
mod error;
mod events;
mod heap;
mod indication;
mod inspect;
#[cfg(feature = "embedded-io-async")]
#[cfg_attr(docsrs, doc(cfg(feature = "embedded-io-async")))]
pub mod io;
mod io_buf;
mod irp;
pub mod irql;
mod lifecycle;
mod listen;
mod mdl_chain;
mod per_processor;
mod per_thread;
mod raw_socket;
mod reservation;
mod stream;
mod sync;
pub mod task;
mod timer;

use lifecycle::{client, completion, held_buf, op, shared, socket};

pub use addr::AddressFamily;
pub use buf::{BUF_POOL_TAG, Buf, BufList};
pub use client::{DriverObject, Feature, ProviderInfo, RegisterOptions, WskClient};
pub use client_control::{NameInfo, NameInfoFlags, Transport};
pub use connection::{ConnectionSocket, SendAll, SendFlags};
pub use connection_ex::ReceivedWithControl;
pub use control::{Control, ControlKind, SocketOptions};
pub use datagram::DatagramSocket;
pub use deadline::Deadline;
pub use dns::ResolveHints;
pub use error::{Error, ErrorKind, Result};
pub use events::{AcceptDecision, ConnectionEvents, DatagramEvents, Incoming, ListenEvents};
pub use indication::{
    Datagram, ReceiveDecision, ReceivedData, ReceivedDatagrams, RetainedData, RetainedView,
};
pub use inspect::{InspectDecision, InspectId, Inspection, PendedInspection};
pub use io_buf::{IoBuf, IoBufMut, Slice};
pub use irp::Irp;
pub use listen::{Bound, ListenSocket};
pub use mdl_chain::{Access, MdlChain, ReadAccess, WriteAccess};
pub use op::{Op, Request};
pub use reservation::MAX_RESERVED_REQUESTS;
pub use socket::{Close, SetOption};
pub use stream::StreamSocket;
pub use sync::{SpinLock, SpinLockGuard};
pub use timer::{Sleep, Timers};

/// The request types behind each [`Op`]: name them to store an operation in a struct.
pub mod ops {
    pub use crate::caller_irp::WithIrp;
    pub use crate::client_control::{
        NameInfoRequest, NameOf, TransportChangeRequest, TransportListChange,
    };
    pub use crate::connection::{
        Address, Bind, Connect, ConnectRequest, ConnectTo, CreateConnection, Disconnect,
        DisconnectRequest, Receive, ReceiveRequest, Send, SendListRequest, SendRequest,
        SendVectored, SocketConnectRequest,
    };
    pub use crate::connection_ex::{
        ConnectExRequest, ConnectSending, ReceiveExRequest, ReceiveWithControl, SendExRequest,
        SendWithControl,
    };
    pub use crate::control::ControlRequest;
    pub use crate::datagram::{
        BindDatagram, ReceiveFrom, ReceiveFromRequest, SendMessages, SendMessagesRequest, SendTo,
        SendToRequest,
    };
    pub use crate::dns::{Resolve, ResolveRequest};
    pub use crate::inspect::{InspectComplete, InspectCompleteRequest};
    pub use crate::listen::{Accept, AcceptRequest, Listen};
    pub use crate::socket::{AddressRequest, BindRequest, CreateRequest, OptionRequest};
    pub use crate::stream::{CreateStream, ListenRequest, StreamCreateRequest};
    pub use crate::timer::SleepRequest;
}
