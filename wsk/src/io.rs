//! [`AsyncStream`]: a connection socket as a byte stream, with the `embedded-io-async` (and
//! blocking `embedded-io`) `Read` and `Write` traits, so that protocol crates written for
//! them — TLS clients, HTTP, MQTT — run over WSK. Feature `embedded-io-async`.
//!
//! # The buffer model
//!
//! A WSK receive or send owns its [`Buf`] while the provider may use it: the memory cannot
//! be the caller's `&mut [u8]`, which a dropped future would hand back while the provider
//! still writes into it. The stream therefore owns one receive and one send buffer of its
//! own, and keeps the operation that holds each one **in the stream, not in the future**:
//!
//! - `read` copies out of the receive buffer what an earlier receive left there; when it is
//!   empty, it issues a receive into it and waits for it. The copy is the price of
//!   cancellation safety and of the provider never seeing the caller's memory.
//! - `write` waits for the previous send to complete, copies up to the send buffer's
//!   capacity into it, issues the send and returns the number of bytes taken at once
//!   (write-behind); `flush` waits for that send and reports its outcome. `read` drives the
//!   send as well, so a request written but not flushed still goes out while its answer is
//!   awaited.
//!
//! # Cancellation safety
//!
//! Dropping (or `mem::forget`ting) a future of the stream never frees memory the provider
//! still uses — the buffers belong to the operations, and the operations to the stream — and
//! never loses data:
//!
//! - **read** is cancellation-safe: a read future dropped while its receive is in flight
//!   leaves the receive running, owned by the stream; the next `read` picks up its result
//!   (its bytes, end of stream, or its error). No byte is received twice or lost.
//! - **write** is cancellation-safe: it takes bytes from the caller only in the poll that
//!   returns `Ok(n)`; a write future dropped before that (waiting for the previous send)
//!   took nothing.
//! - **flush** is cancellation-safe: dropping it leaves the send in flight; the next write
//!   or flush waits for it.
//! - Bytes a `write` took are sent in order, unless the connection fails: then that failure
//!   is returned by the next `write` or `flush`, and by every one after it (the stream's
//!   outgoing bytes are no longer whole).
//! - **Dropping the stream** cancels the operations in flight and closes the socket in the
//!   background: bytes written but not flushed may not be sent. [`AsyncStream::close`]
//!   flushes, then closes and waits for the close.
//!
//! # IRQL
//!
//! The async methods may be polled at IRQL <= DISPATCH_LEVEL (in a [`crate::task`] task, for
//! instance). The blocking `embedded_io` traits wait with [`crate::task::block_on`]: IRQL <=
//! APC_LEVEL, never in a callback or task; there they fail with [`Error::IRQL_TOO_HIGH`].

use core::future::{Future, poll_fn};
use core::pin::Pin;
use core::task::{Context, Poll};

use crate::connection::{ConnectionSocket, Receive, SendAll};
use crate::{Buf, Error, ErrorKind, Result};

/// The default capacity of each of the stream's two buffers (16 KiB: a TLS record and its
/// overhead fit in one receive).
pub const DEFAULT_BUFFER_CAPACITY: usize = 16 * 1024 + 512;

/// A [`ConnectionSocket`] as a byte stream: `embedded_io_async::{Read, Write}` and the
/// blocking `embedded_io::{Read, Write}`. See the [module](self) for the buffer model and the
/// cancellation safety of each method.
///
/// ```no_run
/// use embedded_io_async::{Read, Write};
/// use wsk::ConnectionSocket;
/// use wsk::io::AsyncStream;
///
/// async fn greet(socket: ConnectionSocket) -> wsk::Result<usize> {
///     let mut stream = AsyncStream::new(socket)?;
///     stream.write_all(b"hello\n").await?;
///     stream.flush().await?;
///     let mut reply = [0u8; 64];
///     let n = stream.read(&mut reply).await?;
///     stream.close().await?;
///     Ok(n)
/// }
/// ```
///
/// The buffers are the stream's: a read cannot hand the provider a borrowed slice.
///
/// ```compile_fail,E0277
/// fn leak_into_provider(stream: &mut wsk::io::AsyncStream, mine: &mut [u8]) {
///     // A receive takes an owned buffer (`IoBufMut`: `Buf`, a slice of one, ...), never the
///     // caller's borrowed slice.
///     let _ = stream.socket().receive(mine);
/// }
/// ```
pub struct AsyncStream {
    // Dropped first: the operations in flight are cancelled (their buffers are released
    // when their completions arrive), then the socket closes in the background.
    receive: Receiving,
    send: Sending,
    socket: ConnectionSocket,
}

/// The receive side.
enum Receiving {
    /// No receive in flight: `buf[at..]` are received bytes no read has taken yet.
    Idle { buf: Buf, at: usize },
    /// A receive into the stream's buffer, issued by a read and owned by the stream.
    InFlight(Receive),
}

/// The send side.
enum Sending {
    /// No send in flight: the buffer is free.
    Idle(Buf),
    /// A send of bytes a write took.
    InFlight(SendAll),
    /// A send failed: the outgoing bytes are no longer whole, every later write and flush
    /// fails with this error.
    Failed(Error),
}

impl AsyncStream {
    /// A stream over `socket` (connected), with two buffers of
    /// [`DEFAULT_BUFFER_CAPACITY`] bytes of non-paged pool. IRQL <= DISPATCH_LEVEL.
    pub fn new(socket: ConnectionSocket) -> Result<AsyncStream> {
        AsyncStream::with_capacity(socket, DEFAULT_BUFFER_CAPACITY, DEFAULT_BUFFER_CAPACITY)
    }

    /// A stream over `socket` with a receive buffer of `receive` bytes and a send buffer of
    /// `send` bytes (each 1 to `u32::MAX`, [`Error::INVALID_BUFFER_SIZE`] otherwise): the
    /// most one receive or one write takes. IRQL <= DISPATCH_LEVEL.
    pub fn with_capacity(socket: ConnectionSocket, receive: usize, send: usize) -> Result<Self> {
        Ok(AsyncStream {
            receive: Receiving::Idle {
                buf: Buf::with_capacity(receive)?,
                at: 0,
            },
            send: Sending::Idle(Buf::with_capacity(send)?),
            socket,
        })
    }

    /// The socket, for what the stream does not do (addresses, options, `disconnect`).
    /// Issuing receives or sends on it directly interleaves their bytes with the stream's.
    pub fn socket(&self) -> &ConnectionSocket {
        &self.socket
    }

    /// Received bytes that no read has taken yet (without waiting).
    pub fn buffered(&self) -> usize {
        match &self.receive {
            Receiving::Idle { buf, at } => buf.len() - at,
            Receiving::InFlight(_) => 0,
        }
    }

    /// Reads into `dst`: the bytes already received first, else waits for a receive. Ready
    /// with the number of bytes copied, 0 at the end of the stream (or for an empty `dst`).
    /// Cancellation-safe: a receive in flight stays the stream's (see the [module](self)).
    pub fn poll_read(&mut self, cx: &mut Context<'_>, dst: &mut [u8]) -> Poll<Result<usize>> {
        if dst.is_empty() {
            return Poll::Ready(Ok(0));
        }
        // Drives the write-behind send too: a send that a task's spent budget kept from
        // starting in its write starts here, so that a request written and never flushed
        // still goes out while its answer is read. Its outcome is kept for the next write or
        // flush.
        let _ = self.poll_flush(cx);
        loop {
            match &mut self.receive {
                Receiving::Idle { buf, at } => {
                    let held = &buf[*at..];
                    if !held.is_empty() {
                        let n = held.len().min(dst.len());
                        dst[..n].copy_from_slice(&held[..n]);
                        *at += n;
                        return Poll::Ready(Ok(n));
                    }
                    let mut buf = core::mem::replace(buf, Buf::released());
                    if buf.capacity() == 0 {
                        // Never handed back by a poll; kept for a stand-in all the same.
                        buf = match Buf::with_capacity(DEFAULT_BUFFER_CAPACITY) {
                            Ok(buf) => buf,
                            Err(error) => return Poll::Ready(Err(error)),
                        };
                    }
                    buf.clear();
                    self.receive = Receiving::InFlight(self.socket.receive(buf));
                }
                Receiving::InFlight(op) => {
                    let (received, buf) = match Pin::new(op).poll(cx) {
                        Poll::Ready(output) => output,
                        Poll::Pending => return Poll::Pending,
                    };
                    self.receive = Receiving::Idle { buf, at: 0 };
                    match received {
                        // The peer closed its side: the end of the stream.
                        Ok(0) => return Poll::Ready(Ok(0)),
                        Ok(_) => {}
                        Err(error) => return Poll::Ready(Err(error)),
                    }
                }
            }
        }
    }

    /// Writes from `src`: waits for the previous send, copies up to the send buffer's
    /// capacity and issues the send. Ready with the number of bytes taken (0 only for an
    /// empty `src`), or with the failure of an earlier send. Cancellation-safe.
    pub fn poll_write(&mut self, cx: &mut Context<'_>, src: &[u8]) -> Poll<Result<usize>> {
        if src.is_empty() {
            return Poll::Ready(Ok(0));
        }
        match self.poll_flush(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other.map(|result| result.map(|()| 0)),
        }
        let Sending::Idle(buf) = &mut self.send else {
            unreachable!("a flushed stream has no send in flight");
        };
        buf.clear();
        let n = src.len().min(buf.capacity());
        if let Err(error) = buf.extend_from_slice(&src[..n]) {
            return Poll::Ready(Err(error));
        }
        let buf = core::mem::replace(buf, Buf::released());
        let mut send = self.socket.send_all(buf);
        // The first poll issues the send; it may complete at once.
        self.send = match Pin::new(&mut send).poll(cx) {
            Poll::Pending => Sending::InFlight(send),
            Poll::Ready((Ok(()), buf)) => Sending::Idle(buf),
            Poll::Ready((Err(error), _)) => {
                self.send = Sending::Failed(error);
                return Poll::Ready(Err(error));
            }
        };
        Poll::Ready(Ok(n))
    }

    /// Waits for the send in flight, if any. Ready with its outcome (or with the failure of
    /// an earlier send). Cancellation-safe.
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        match &mut self.send {
            Sending::Idle(_) => Poll::Ready(Ok(())),
            Sending::Failed(error) => Poll::Ready(Err(*error)),
            Sending::InFlight(send) => match Pin::new(send).poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready((Ok(()), buf)) => {
                    self.send = Sending::Idle(buf);
                    Poll::Ready(Ok(()))
                }
                Poll::Ready((Err(error), _)) => {
                    self.send = Sending::Failed(error);
                    Poll::Ready(Err(error))
                }
            },
        }
    }

    /// Flushes, then closes the socket (`WskCloseSocket`) and waits for the close. The
    /// socket is closed even if the flush fails; the flush's failure is returned first.
    pub async fn close(mut self) -> Result<()> {
        let flushed = poll_fn(|cx| self.poll_flush(cx)).await;
        let AsyncStream {
            receive,
            send,
            socket,
        } = self;
        drop((receive, send));
        let closed = socket.close().await;
        flushed.and(closed)
    }
}

impl core::fmt::Debug for AsyncStream {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let sending = match &self.send {
            Sending::Idle(_) => "idle",
            Sending::InFlight(_) => "in flight",
            Sending::Failed(_) => "failed",
        };
        f.debug_struct("AsyncStream")
            .field("socket", &self.socket)
            .field("receiving", &matches!(self.receive, Receiving::InFlight(_)))
            .field("buffered", &self.buffered())
            .field("sending", &sending)
            .finish()
    }
}

/// The `embedded_io` class of an error, from its [`ErrorKind`].
impl embedded_io::Error for Error {
    fn kind(&self) -> embedded_io::ErrorKind {
        use embedded_io::ErrorKind as Io;
        match Error::kind(self) {
            ErrorKind::InsufficientResources => Io::OutOfMemory,
            ErrorKind::Cancelled => Io::Interrupted,
            ErrorKind::ConnectionRefused => Io::ConnectionRefused,
            ErrorKind::ConnectionReset => Io::ConnectionReset,
            ErrorKind::ConnectionAborted => Io::ConnectionAborted,
            ErrorKind::Disconnected => Io::BrokenPipe,
            ErrorKind::AddressInUse => Io::AddrInUse,
            ErrorKind::InvalidAddress => Io::AddrNotAvailable,
            ErrorKind::TimedOut => Io::TimedOut,
            ErrorKind::InvalidBufferSize | ErrorKind::InvalidParameter => Io::InvalidInput,
            ErrorKind::SocketClosed => Io::NotConnected,
            ErrorKind::NotSupported => Io::Unsupported,
            ErrorKind::NotFound => Io::NotFound,
            ErrorKind::AccessDenied => Io::PermissionDenied,
            _ => Io::Other,
        }
    }
}

impl embedded_io::ErrorType for AsyncStream {
    type Error = Error;
}

impl embedded_io_async::Read for AsyncStream {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        poll_fn(|cx| self.poll_read(cx, buf)).await
    }
}

impl embedded_io_async::Write for AsyncStream {
    async fn write(&mut self, buf: &[u8]) -> Result<usize> {
        poll_fn(|cx| self.poll_write(cx, buf)).await
    }

    async fn flush(&mut self) -> Result<()> {
        poll_fn(|cx| self.poll_flush(cx)).await
    }
}

/// Blocking reads: [`crate::task::block_on`], IRQL <= APC_LEVEL.
impl embedded_io::Read for AsyncStream {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        crate::task::block_on(poll_fn(|cx| self.poll_read(cx, buf)))?
    }
}

/// Blocking writes: [`crate::task::block_on`], IRQL <= APC_LEVEL.
impl embedded_io::Write for AsyncStream {
    fn write(&mut self, buf: &[u8]) -> Result<usize> {
        crate::task::block_on(poll_fn(|cx| self.poll_write(cx, buf)))?
    }

    fn flush(&mut self) -> Result<()> {
        crate::task::block_on(poll_fn(|cx| self.poll_flush(cx)))?
    }
}
