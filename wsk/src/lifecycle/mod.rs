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
//!  set timer (deadline, sleep) ──holds── a Block reference until stopped or its DPC has run
//! ```
//!
//! - A [`completion::Block`] belongs to the pool of one owner (a socket, or the client for
//!   socket creation and name resolution) for its whole life, and is freed with it; a request
//!   takes an idle one (or the pool grows), and gives it back when the last reference goes.
//! - A request's deadline ([`Op::timeout`](crate::Op::timeout)) or a sleep's delay is a
//!   `KTIMER` and `KDPC` inside its block (no allocation). The set timer holds a block
//!   reference, released by whoever stops it: the completion routine when its `KeCancelTimer`
//!   succeeds before the DPC ran, a sleep's cancel likewise, otherwise the DPC once it has
//!   run. The DPC first marks the timer expired: nothing stops it then (no `KeCancelTimer`
//!   from inside its own DPC, which Wine's kernel never returns from), and a TRUE from
//!   `KeCancelTimer` after the DPC ran (Wine's answer for an expired timer) stops nothing. A
//!   sleep is a client-level request whose IRP goes to no provider: the DPC (or the cancel
//!   that stops the timer) completes it.
//! - What a request moves in for the provider (its buffer, list, new socket or names) is
//!   held by its block ([`completion::Held`]) from `start` until the request collects it at
//!   completion, or, if the operation let go first, until the block is released after the
//!   completion routine has run. A buffer of any [`IoBuf`](crate::IoBuf) type is held by
//!   value in an inline slot of the block ([`held_buf::HeldBuf`], with the function that
//!   drops it): no allocation, and the release drops it whatever its type. A forgotten
//!   operation never releases its block, so what it holds is leaked, never freed.
//! - A block's IRP is its own, except during a request issued with a caller's IRP
//!   ([`Op::with_irp`](crate::Op::with_irp)): the caller's is installed for that request (the
//!   block's own parked beside it) and goes through arming, cancellation (a close, the
//!   teardown, a drop) and completion exactly as the block's own; collecting the request
//!   hands it back and puts the block's own back; a release of an uncollected request puts
//!   the block's own back before the block is idle again and disposes of the caller's: one
//!   the driver allocated is freed (`IoFreeIrp`); one forwarded to it is completed to its
//!   originator — by the completion routine returning `STATUS_CONTINUE_COMPLETION` when the
//!   release happens there (never a nested `IoCompleteRequest`), by `IoCompleteRequest` when
//!   the operation lets go after its completion routine ran.
//! - A socket core is referenced by its handle, the provider (from creation until the close
//!   completes), its operations (each request keeps its socket; the operation gives its block
//!   back before its request goes), a block whose operation let go before the completion
//!   routine did, retained data, and a pended inspection of a listening socket
//!   (`PendedInspection`, which holds the core's memory, never the socket: once the close is
//!   requested it makes no WSK call); a client core by the client handle, every socket core
//!   and every client-level request.
//!
//! # States and transitions
//!
//! ```text
//! request:  idle ─(caller's IRP installed)─arm→ in flight ─completion routine→ done
//!           done ─collected (buffer and caller's IRP handed back) or dropped (released:
//!                 buffer dropped, caller's IRP freed; the block's own IRP back)→ idle
//!                         │ dropped: IoCancelIrp, block kept by the in-flight reference
//!                         │ deadline: timer set before the WSK call; its DPC: IoCancelIrp,
//!                         │   and a STATUS_CANCELLED completion becomes STATUS_IO_TIMEOUT;
//!                         │   the completion routine stops the timer (or finds it expired)
//! socket:   creating ─completion (success): attached to client→ open
//!           adopted (`from_raw`: a reference stands for the provider's) ─attached→ open
//!           open ─`into_raw` (no user, no handler, no callbacks armed, no reference but the
//!                handle's and the provider's)→ detached: close claimed, unlinked, core
//!                released; the caller owns the socket's `WskCloseSocket`
//!           open ─close requested (handle drop, close(), client teardown)→ closing
//!           closing: in-flight requests cancelled, retained data revoked; WskCloseSocket
//!                    issued once the gate is empty (no provider call in progress, no
//!                    retained indication left: see `retention`)
//!           ─close completion routine: unlinked, handler dropped, provider reference
//!            released→ closed
//!           closed (or never created, or detached) ─last reference gone→ spare: reset (no
//!            client reference, no handler, close IRP reused, blocks trimmed to 4) and kept
//!            by its client, or freed when it keeps 16 already ([`spare_sockets`])
//!           spare ─the client's next socket of any kind→ creating (or adopted); freed with
//!            the client
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
//! | set a deadline or a sleep (`KeSetTimer`), stop it (`KeCancelTimer`) | <= DISPATCH_LEVEL |
//! | a deadline's or a sleep's DPC (cancels the IRP, or completes the sleep) | DISPATCH_LEVEL, inside a [`callback::CallbackScope`] |
//! | install or restore a caller's IRP; release a block: drop an uncollected buffer (any [`IoBuf`](crate::IoBuf): its `Drop` must allow it), free or complete (forwarded) an uncollected caller's IRP | <= DISPATCH_LEVEL (the release of an abandoned request runs in its completion routine) |
//! | completion routine, close completion, event callbacks, task polls | <= DISPATCH_LEVEL (usually DISPATCH_LEVEL; PASSIVE_LEVEL for an inline completion), inside a [`callback::CallbackScope`] |
//! | request close, attach or link a new socket, adopt (`from_raw`) or detach (`into_raw`) | <= DISPATCH_LEVEL |
//! | a socket's last reference: reset as a spare (its handler, if never closed, dropped there), kept or freed; a spare taken | <= DISPATCH_LEVEL (often inside the close's completion routine) |
//! | blocking waits (`Op::wait`, `Close::wait`, `block_on`, `TaskSet::wait_idle`, registration) | <= APC_LEVEL, refused inside every callback scope |
//! | client teardown | PASSIVE_LEVEL: inline when dropped there outside a callback scope, else a work item |
//! | teardown's `KeFlushQueuedDpcs` (after every request has completed) | PASSIVE_LEVEL |
//!
//! # Can this wait forever?
//!
//! Only three things wait, and each waits for something that ends by itself:
//! - a blocking wait on a request: the provider completes every IRP it is given; a dropped,
//!   closed-over or timed-out request is cancelled first; a sleep is completed by its timer's
//!   DPC, or by the cancel that stops the timer (its drop, the client's teardown);
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
//! No DPC of this crate runs after the client's teardown: every timer is set with a request
//! in flight and stopped (or found expired, its DPC then queued) by that request's
//! completion routine; the teardown returns only once every request has completed, and
//! then calls `KeFlushQueuedDpcs`, which waits for the DPCs still queued or running. A
//! forgotten (`mem::forget`) timed operation or sleep changes nothing: its request is
//! cancelled by the teardown like any other, and its completion stops its timer.
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
pub(crate) mod spare_sockets;
