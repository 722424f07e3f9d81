//! The lifecycle of everything this crate hands to the provider: the client, its sockets, the
//! requests in flight on them, their completions, and the teardown that ends them. Socket
//! kinds and operations (`connection`, `listen`, `datagram`, `stream`, `dns`, `events`) are
//! thin users of it: they fill a request, issue it, and read its result.
//!
//! # Who holds what
//!
//! ```text
//!  WskClient ──owns──> ClientCore <──refs── SocketCore <──refs── Op (BlockRef) ──> Block
//!     │                 │  BlockPool (client requests)   │  BlockPool (socket requests)
//!     │                 │  socket list, request count    │  Gate (provider calls, retentions)
//!     │                 └  work item (teardown)          └  close IRP, handler
//!     └─ drop: teardown (PASSIVE) or work item (above)
//!  provider ──holds── a SocketCore reference (the socket context) until WskCloseSocket completes
//!  in-flight IRP ──holds── a Block reference until its completion routine has run
//! ```
//!
//! - A [`completion::Block`] belongs to the pool of one owner (a socket, or the client for
//!   socket creation and name resolution) for its whole life, and is freed with it; a request
//!   takes an idle one (or the pool grows), and gives it back when the last reference goes.
//! - A socket core is referenced by its handle, the provider (from creation until the close
//!   completes), its operations (each request keeps its socket; the operation gives its block
//!   back before its request goes), a block whose operation let go before the completion
//!   routine did, and retained data; a client core by the client handle, every socket core
//!   and every client-level request.
//!
//! # States and transitions
//!
//! ```text
//! request:  idle ─arm→ in flight ─completion routine→ done ─collected or dropped→ idle
//!                         │ dropped: IoCancelIrp, block kept by the in-flight reference
//! socket:   creating ─completion (success): attached to client→ open
//!           open ─close requested (handle drop, close(), client teardown)→ closing
//!           closing: in-flight requests cancelled, retained data revoked; WskCloseSocket
//!                    issued once the gate is empty (no provider call in progress, no
//!                    retained indication left: see `retention`)
//!           ─close completion routine: unlinked, handler dropped, provider reference
//!            released→ closed
//! client:   registered ─teardown→ shutting down: no new socket or request; client
//!           requests cancelled; every socket closed ─all closes and requests over→
//!           NPI released, deregistered, work item freed
//! ```
//!
//! # IRQL of each transition
//!
//! | transition | IRQL |
//! |---|---|
//! | arm and issue a request, drop it (cancel) | <= DISPATCH_LEVEL |
//! | completion routine, close completion, event callbacks, task polls | <= DISPATCH_LEVEL (usually DISPATCH_LEVEL; PASSIVE_LEVEL for an inline completion), inside a [`callback::CallbackScope`] |
//! | request close, attach or link a new socket | <= DISPATCH_LEVEL |
//! | blocking waits (`Op::wait`, `Close::wait`, `block_on`, `TaskSet::wait_idle`, registration) | <= APC_LEVEL, refused inside every callback scope |
//! | client teardown | PASSIVE_LEVEL: inline when dropped there outside a callback scope, else a work item |
//!
//! # Can this wait forever?
//!
//! Only three things wait, and each waits for something that ends by itself:
//! - a blocking wait on a request: the provider completes every IRP it is given; a dropped,
//!   closed-over or timed-out request is cancelled first;
//! - the client teardown: it cancels every client request and closes every socket, whose
//!   requests are cancelled by the close request, and whose retained indications it revokes;
//!   a close is issued as soon as no provider call is in progress (a bounded call) and every
//!   revoked indication is released — at once, or when the
//!   [`RetainedView`](crate::RetainedView) open on it is dropped. An open view is the one
//!   thing of the user's the teardown waits for (a forgotten one pins its socket, because
//!   WSK cannot close a socket whose indications are not released);
//! - `TaskSet::wait_idle`/drop: cancelled tasks drop their futures at once; a task being
//!   polled finishes its poll.
//!
//! Nothing waits inside a callback scope: every wait of this crate refuses there with
//! [`Error::IRQL_TOO_HIGH`](crate::Error::IRQL_TOO_HIGH), whatever the IRQL — so no callback
//! blocks the provider's thread, or the issuing thread of an inline completion, or waits for
//! itself (a task dropping its own `TaskSet`).

pub(crate) mod callback;
pub(crate) mod client;
pub(crate) mod completion;
pub(crate) mod held_buf;
pub(crate) mod op;
pub(crate) mod retention;
pub(crate) mod shared;
pub(crate) mod socket;
