//! A TCP echo server in raw `wsk-sys`, written as a driver writes one: a listening socket;
//! for each accepted connection one IRP, one non-paged pool buffer and its MDL, allocated
//! once and reused for the connection's whole life; a chain of completion routines —
//! receive, send back what came, receive again; on the peer's end of stream a graceful
//! disconnect, then the close — that runs at DISPATCH_LEVEL on the provider's completions,
//! with no thread per connection. A request that completes inline (in the WSK call itself)
//! is continued by the loop that issued it rather than by recursion, so the stack stays flat
//! however many completions in a row are inline.
//!
//! The std clients that load it are in [`clients`](crate::common::clients).

use std::net::SocketAddr;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use wsk_sys::*;

use super::{PoolBuffer, Registration, SyncRequest, accept, close, connection_dispatch, listen};

/// The request a connection has in flight.
#[derive(Clone, Copy, Debug)]
enum Step {
    Receive,
    /// Sending `buffer[offset..end]` back.
    Send {
        offset: usize,
        end: usize,
    },
    Disconnect,
    Close,
}

/// Who continues after a request: its issuer (the request completed inline) or its
/// completion routine (it went pending). Values of `Connection::issue`.
const ISSUING: u8 = 0;
const WAITING: u8 = 1;
const COMPLETED_INLINE: u8 = 2;

/// One accepted connection's state, shared by whoever drives it: the issuing loop, then the
/// completion routine of the request in flight. Only one of them touches the non-atomic
/// fields at a time — the one that owns the IRP at that moment.
struct Connection {
    socket: PWSK_SOCKET,
    irp: PIRP,
    buffer: PoolBuffer,
    /// The `WSK_BUF` of the request in flight (it must live until the completion).
    wsk_buf: WSK_BUF,
    in_flight: Step,
    issue: AtomicU8,
    echoed: u64,
    /// The first failure, or `STATUS_SUCCESS`.
    failure: NTSTATUS,
    /// Signalled when the close has completed; the connection is the waiter's afterwards.
    done: KEVENT,
    /// Whether `done` was seen signalled (so the connection may be freed).
    finished: bool,
}

/// What became of one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// `STATUS_SUCCESS`, or the first failure of the connection's requests.
    pub status: NTSTATUS,
    /// Bytes sent back.
    pub echoed: u64,
}

/// The raw echo server. Dropping it frees every finished connection, closes the listening
/// socket and deregisters (connections that never finished are leaked on purpose: their IRP
/// may still be in flight, and the test that left them has already failed).
pub struct EchoServer {
    connections: Vec<*mut Connection>,
    listener: PWSK_SOCKET,
    address: SocketAddr,
    request: SyncRequest,
    buffer_size: usize,
    registration: Registration,
}

// SAFETY: the sockets, IRPs and pool the server holds have no thread affinity; the
// connections' shared state is synchronized as `Connection` documents.
unsafe impl Send for EchoServer {}

impl EchoServer {
    /// Registers, and listens on `local` (port 0 picks one). Each connection gets a buffer of
    /// `buffer_size` bytes. PASSIVE_LEVEL.
    pub fn start(local: SocketAddr, buffer_size: usize) -> EchoServer {
        let registration = Registration::new();
        let mut request = SyncRequest::new().expect("an IRP for the listening socket");
        let (listener, address) = listen(&registration, &mut request, local);
        EchoServer {
            connections: Vec::new(),
            listener,
            address,
            request,
            buffer_size,
            registration,
        }
    }

    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Accepts `count` connections; each starts echoing at once. PASSIVE_LEVEL.
    pub fn accept(&mut self, count: usize) {
        for _ in 0..count {
            // SAFETY: the listening socket is open until the drop.
            let socket = unsafe { accept(self.listener, &mut self.request) }.expect("WskAccept");
            // SAFETY: a plain allocation at PASSIVE_LEVEL.
            let irp = unsafe { IoAllocateIrp(1, FALSE) };
            assert!(!irp.is_null(), "an IRP for the connection");
            let buffer = PoolBuffer::new(self.buffer_size).expect("a buffer for the connection");
            let connection = Box::into_raw(Box::new(Connection {
                socket,
                irp,
                wsk_buf: buffer.wsk_buf(0, 0),
                buffer,
                in_flight: Step::Receive,
                issue: AtomicU8::new(ISSUING),
                echoed: 0,
                failure: STATUS_SUCCESS,
                done: KEVENT::default(),
                finished: false,
            }));
            // SAFETY: the connection was just made and is not shared yet; the event is
            // initialized before any request can signal it.
            unsafe {
                KeInitializeEvent(&raw mut (*connection).done, NotificationEvent, FALSE);
                self.connections.push(connection);
                run(connection, Step::Receive);
            }
        }
    }

    /// Waits (until `timeout` has passed, in all) for every accepted connection to be
    /// closed; returns what became of each. Panics if one does not finish in time.
    /// PASSIVE_LEVEL.
    pub fn wait(&mut self, timeout: Duration) -> Vec<Outcome> {
        let deadline = Instant::now() + timeout;
        let mut outcomes = Vec::with_capacity(self.connections.len());
        for (index, &connection) in self.connections.iter().enumerate() {
            let left = deadline.saturating_duration_since(Instant::now());
            // Relative timeouts are negative, in 100 ns units.
            let mut relative = LARGE_INTEGER {
                QuadPart: -i64::try_from(left.as_nanos() / 100).unwrap_or(i64::MAX),
            };
            // SAFETY: the connection is alive (freed only by the drop); waiting on its event
            // at PASSIVE_LEVEL.
            let status = unsafe {
                KeWaitForSingleObject(
                    (&raw mut (*connection).done).cast(),
                    Executive,
                    KernelMode,
                    FALSE,
                    &mut relative,
                )
            };
            assert_eq!(
                status, STATUS_SUCCESS,
                "connection {index} did not finish within {timeout:?}"
            );
            // SAFETY: after `done`, the connection's chain has ended: it is the waiter's.
            unsafe {
                (*connection).finished = true;
                outcomes.push(Outcome {
                    status: (*connection).failure,
                    echoed: (*connection).echoed,
                });
            }
        }
        outcomes
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        for &connection in &self.connections {
            // SAFETY: a finished connection is no one else's: its socket is closed, its IRP
            // completed. Unfinished ones are left alone (see the type's documentation).
            unsafe {
                if (*connection).finished {
                    IoFreeIrp((*connection).irp);
                    drop(Box::from_raw(connection));
                }
            }
        }
        // SAFETY: the listening socket is open and has no request in flight.
        let status = unsafe { close(self.listener, &mut self.request) };
        if !std::thread::panicking() {
            assert_eq!(status, STATUS_SUCCESS, "WskCloseSocket of the listener");
        }
    }
}

/// Issues `next` and every request after it whose predecessor completed inline; returns
/// once a request is pending (its completion routine continues) or the chain has ended.
///
/// # Safety
/// `connection` is a live connection whose IRP the caller owns (nothing in flight).
/// Any IRQL up to DISPATCH_LEVEL.
unsafe fn run(connection: *mut Connection, mut next: Step) {
    loop {
        // SAFETY: the caller owns the IRP, so nothing else touches the connection until the
        // request below is issued; the `WSK_BUF` is kept in the connection until completion.
        unsafe {
            let irp = (*connection).irp;
            let socket = (*connection).socket;
            (*connection).in_flight = next;
            IoReuseIrp(irp, STATUS_UNSUCCESSFUL);
            IoSetCompletionRoutine(irp, Some(completed), connection.cast(), true, true, true);
            (*connection).issue.store(ISSUING, Ordering::Release);
            let dispatch = connection_dispatch(socket);
            let wsk_buf = &raw mut (*connection).wsk_buf;
            match next {
                Step::Receive => {
                    *wsk_buf = (*connection)
                        .buffer
                        .wsk_buf(0, (*connection).buffer.as_slice().len());
                    (dispatch.WskReceive.unwrap())(socket, wsk_buf, 0, irp);
                }
                Step::Send { offset, end } => {
                    *wsk_buf = (*connection).buffer.wsk_buf(offset, end - offset);
                    (dispatch.WskSend.unwrap())(socket, wsk_buf, 0, irp);
                }
                Step::Disconnect => {
                    (dispatch.WskDisconnect.unwrap())(socket, null_mut(), 0, irp);
                }
                Step::Close => {
                    (dispatch.Basic.WskCloseSocket.unwrap())(socket, irp);
                }
            }
        }
        // SAFETY: `issue` is atomic and the connection is alive: it is freed only after its
        // chain ends, which needs this loop or the completion routine to get past here.
        let issue = unsafe { &(*connection).issue };
        if issue
            .compare_exchange(ISSUING, WAITING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            // Pending: the completion routine continues the chain.
            return;
        }
        // SAFETY: completed inline: the completion routine left the IRP to this loop.
        match unsafe { after(connection) } {
            Some(step) => next = step,
            None => return,
        }
    }
}

/// The completion routine of every request of a connection (DISPATCH_LEVEL when it comes
/// from the provider's thread).
unsafe extern "system" fn completed(
    _device: PDEVICE_OBJECT,
    _irp: PIRP,
    context: PVOID,
) -> NTSTATUS {
    let connection = context.cast::<Connection>();
    // SAFETY: the context is the live connection whose IRP this is.
    let issue = unsafe { &(*connection).issue };
    if issue
        .compare_exchange(
            ISSUING,
            COMPLETED_INLINE,
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .is_err()
    {
        // The issuer has returned: this routine owns the IRP and continues the chain.
        // SAFETY: the request is complete and its IRP this routine's.
        unsafe {
            if let Some(step) = after(connection) {
                run(connection, step);
            }
        }
    }
    // The IRP is the driver's: the I/O manager must not touch it again.
    STATUS_MORE_PROCESSING_REQUIRED
}

/// Reads the result of the request in flight; returns the next step, or `None` once the
/// close has completed (then `done` is signalled and the connection must not be touched).
///
/// # Safety
/// The request in flight has completed and the caller owns the IRP.
unsafe fn after(connection: *mut Connection) -> Option<Step> {
    // SAFETY: the caller owns the completed IRP and so the connection's fields.
    unsafe {
        let irp = (*connection).irp;
        let status = (*irp).IoStatus.u.Status;
        let information = (*irp).IoStatus.Information as usize;
        let failed = |connection: *mut Connection| {
            if (*connection).failure == STATUS_SUCCESS {
                (*connection).failure = status;
            }
            Some(Step::Close)
        };
        match (*connection).in_flight {
            Step::Receive if !NT_SUCCESS(status) => failed(connection),
            // The peer's end of stream: everything it sent has been echoed.
            Step::Receive if information == 0 => Some(Step::Disconnect),
            Step::Receive => Some(Step::Send {
                offset: 0,
                end: information,
            }),
            Step::Send { .. } if !NT_SUCCESS(status) => failed(connection),
            // A successful send moves at least a byte; anything else would loop forever.
            Step::Send { .. } if information == 0 => {
                (*connection).failure = STATUS_UNSUCCESSFUL;
                Some(Step::Close)
            }
            Step::Send { offset, end } => {
                (*connection).echoed += information as u64;
                let offset = offset + information;
                if offset < end {
                    Some(Step::Send { offset, end })
                } else {
                    Some(Step::Receive)
                }
            }
            Step::Disconnect if !NT_SUCCESS(status) => failed(connection),
            Step::Disconnect => Some(Step::Close),
            Step::Close => {
                KeSetEvent(&raw mut (*connection).done, 0, FALSE);
                None
            }
        }
    }
}
