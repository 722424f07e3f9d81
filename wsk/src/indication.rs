//! Data the provider indicates to event callbacks: [`ReceivedData`], [`ReceivedDatagrams`],
//! and what a callback keeps of them, [`RetainedData`].

use core::marker::PhantomData;
use core::net::SocketAddr;

use wsk_sys::*;
// With either kernel base, typed as the parameters that take them.
use wsk_sys::typed::{MdlMappingNoExecute, NormalPagePriority};

use crate::connection::ConnectionSocket;
use crate::datagram::DatagramSocket;
use crate::lifecycle::retention::{self, Retention};
use crate::shared::Shared;
use crate::socket::{BorrowedSocket, Category, SocketCore};
use crate::{Error, Result};

/// Ties a value to one event callback: `'a` is the callback's own lifetime, and the marker
/// makes it invariant, so a value made in one callback has a type no other callback (not
/// even a concurrent one of the same handler) can return.
pub(crate) type Brand<'a> = PhantomData<fn(&'a ()) -> &'a ()>;

/// The byte ranges a `WSK_BUF` describes across its MDL chain, mapped to system addresses.
///
/// # Safety
/// `buf` must describe resident memory (indicated data is, until released) that stays valid
/// for `'a`.
unsafe fn wsk_buf_chunks<'a>(buf: &'a WSK_BUF) -> impl Iterator<Item = Result<&'a [u8]>> + 'a {
    let mut mdl = buf.Mdl;
    let mut offset = buf.Offset as usize;
    let mut remaining = buf.Length as usize;
    core::iter::from_fn(move || {
        while remaining > 0 && !mdl.is_null() {
            // SAFETY: the chain is valid and resident (caller's guarantee).
            let (count, next) = unsafe { ((*mdl).ByteCount as usize, (*mdl).Next) };
            if offset >= count {
                offset -= count;
                mdl = next;
                continue;
            }
            let take = (count - offset).min(remaining);
            // SAFETY: as above; the mapping of a resident MDL is valid for its lifetime.
            let base = unsafe {
                MmGetSystemAddressForMdlSafe(mdl, NormalPagePriority | MdlMappingNoExecute)
            };
            if base.is_null() {
                remaining = 0;
                return Some(Err(Error::INSUFFICIENT_RESOURCES));
            }
            // SAFETY: `[offset, offset + take)` is inside the MDL's buffer.
            let chunk = unsafe { core::slice::from_raw_parts(base.cast::<u8>().add(offset), take) };
            offset = 0;
            remaining -= take;
            mdl = next;
            return Some(Ok(chunk));
        }
        None
    })
}

/// Copies what a `WSK_BUF` describes into `out`; returns the number of bytes copied.
///
/// # Safety
/// As for [`wsk_buf_chunks`].
unsafe fn copy_wsk_buf(buf: &WSK_BUF, out: &mut [u8]) -> Result<usize> {
    let mut copied = 0;
    // SAFETY: forwarded.
    for chunk in unsafe { wsk_buf_chunks(buf) } {
        let chunk = chunk?;
        let take = chunk.len().min(out.len() - copied);
        out[copied..copied + take].copy_from_slice(&chunk[..take]);
        copied += take;
        if copied == out.len() {
            break;
        }
    }
    Ok(copied)
}

/// What a receive callback decided; made by the methods of [`ReceivedData`] and
/// [`ReceivedDatagrams`], which are the only way to build one.
///
/// It is branded with the callback it was made in (`'a`): a handler can only return the
/// decision about the data it was given, never one saved from another callback — which,
/// with callbacks running on several processors at once, could tell the provider that data
/// it retained was consumed, or accept the wrong number of bytes.
///
/// ```compile_fail,E0521
/// use std::sync::Mutex;
/// use wsk::{ReceiveDecision, ReceivedData};
/// struct Swapper(Mutex<Option<ReceiveDecision<'static>>>);
/// impl wsk::ConnectionEvents for Swapper {
///     fn on_receive<'a>(&self, data: ReceivedData<'a>) -> ReceiveDecision<'a> {
///         // A decision cannot outlive its callback...
///         let previous = self.0.lock().unwrap().replace(data.consume());
///         // ...nor be returned from another one.
///         previous.unwrap()
///     }
/// }
/// ```
#[must_use = "return the decision from the callback"]
pub struct ReceiveDecision<'a> {
    pub(crate) status: NTSTATUS,
    pub(crate) accepted: Option<usize>,
    /// For a retained indication: where the callback learns whether the `RetainedData` was
    /// dropped before it returned.
    pub(crate) retained: Option<Shared<Retention>>,
    pub(crate) _brand: Brand<'a>,
}

impl core::fmt::Debug for ReceiveDecision<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReceiveDecision")
            .field("status", &self.status)
            .field("accepted", &self.accepted)
            .field("retained", &self.retained.is_some())
            .finish()
    }
}

impl<'a> ReceiveDecision<'a> {
    fn new(status: NTSTATUS, accepted: Option<usize>) -> ReceiveDecision<'a> {
        ReceiveDecision {
            status,
            accepted,
            retained: None,
            _brand: PhantomData,
        }
    }

    /// The status to return to the provider, once the handler has returned: a retention
    /// whose `RetainedData` was already dropped (or revoked by a close) becomes a plain
    /// consumption, since the indications may not be released before the callback has
    /// returned `STATUS_PENDING` (the provider then keeps its memory).
    pub(crate) fn settle(&self, core: &SocketCore) -> NTSTATUS {
        match &self.retained {
            Some(retention) if !retention::settle(core, retention) => STATUS_SUCCESS,
            _ => self.status,
        }
    }
}

/// Data received on a connection socket, indicated to
/// [`ConnectionEvents::on_receive`](crate::ConnectionEvents::on_receive) at DISPATCH_LEVEL.
///
/// The memory belongs to the provider. Decide with one of: [`consume`](Self::consume)
/// (taken), [`consume_part`](Self::consume_part) (the provider keeps the rest for the next
/// [`receive`](crate::ConnectionSocket::receive); no more indications until then),
/// [`reject`](Self::reject) (`STATUS_DATA_NOT_ACCEPTED`: likewise) or
/// [`retain`](Self::retain) (keep the indications without copying; they go back to the
/// provider, with `WskRelease`, when the [`RetainedData`] is dropped).
///
/// The data can be read only while the `ReceivedData` exists: the slices [`chunks`]
/// returns borrow it, so they end before the decision is made.
///
/// ```compile_fail,E0505
/// fn keep<'a>(data: wsk::ReceivedData<'a>) -> (&'a [u8], wsk::ReceiveDecision<'a>) {
///     let first = data.chunks().next().unwrap().unwrap();
///     (first, data.consume()) // the data may be gone once the decision is made
/// }
/// ```
///
/// [`chunks`]: Self::chunks
pub struct ReceivedData<'a> {
    pub(crate) core: &'a SocketCore,
    pub(crate) socket: BorrowedSocket<ConnectionSocket>,
    pub(crate) indication: PWSK_DATA_INDICATION,
    pub(crate) len: usize,
    pub(crate) flags: ULONG,
    pub(crate) _brand: Brand<'a>,
}

impl<'a> ReceivedData<'a> {
    /// The socket the data arrived on, to issue requests on it (a reply, a receive, a
    /// close of the connection through [`ConnectionSocket::disconnect`]) without the handler
    /// owning it — a handler that owned its own socket would keep it open forever.
    #[must_use]
    pub fn socket(&self) -> &ConnectionSocket {
        self.socket.get()
    }

    /// Number of bytes indicated.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no byte was indicated.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the data ends a message (for TCP, the push bit was set;
    /// `WSK_FLAG_ENTIRE_MESSAGE`).
    #[must_use]
    pub fn ends_message(&self) -> bool {
        self.flags & WSK_FLAG_ENTIRE_MESSAGE != 0
    }

    /// The data, as contiguous chunks in order, borrowed from the `ReceivedData`.
    pub fn chunks(&self) -> impl Iterator<Item = Result<&[u8]>> + '_ {
        DataIndications {
            next: self.indication,
            _life: PhantomData,
        }
        .flat_map(|buf| {
            // SAFETY: indicated data is resident and valid during the callback.
            unsafe { wsk_buf_chunks(buf) }
        })
    }

    /// Copies up to `out.len()` bytes of the data into `out`; returns how many.
    pub fn copy_to(&self, out: &mut [u8]) -> Result<usize> {
        let mut copied = 0;
        for chunk in self.chunks() {
            let chunk = chunk?;
            let take = chunk.len().min(out.len() - copied);
            out[copied..copied + take].copy_from_slice(&chunk[..take]);
            copied += take;
            if copied == out.len() {
                break;
            }
        }
        Ok(copied)
    }

    /// All the data was taken.
    pub fn consume(self) -> ReceiveDecision<'a> {
        ReceiveDecision::new(STATUS_SUCCESS, None)
    }

    /// The first `count` bytes were taken; the provider keeps the rest.
    pub fn consume_part(self, count: usize) -> ReceiveDecision<'a> {
        ReceiveDecision::new(STATUS_SUCCESS, Some(count.min(self.len)))
    }

    /// None of the data was taken (`STATUS_DATA_NOT_ACCEPTED`).
    pub fn reject(self) -> ReceiveDecision<'a> {
        ReceiveDecision::new(STATUS_DATA_NOT_ACCEPTED, None)
    }

    /// Keeps the indicated buffers without copying (`STATUS_PENDING`). Fails (and the data is
    /// rejected) when the socket is being closed or memory is short. Dropping the
    /// [`RetainedData`] before the callback returns is allowed: the data then counts as
    /// consumed.
    pub fn retain(self) -> (Result<RetainedData>, ReceiveDecision<'a>) {
        retain(
            self.core,
            self.indication.cast(),
            self.len,
            Category::Connection,
        )
    }
}

/// Retains an indication: the `RetainedData` and the decision that goes with it.
fn retain<'a>(
    core: &SocketCore,
    indication: PVOID,
    len: usize,
    category: Category,
) -> (Result<RetainedData>, ReceiveDecision<'a>) {
    match RetainedData::new(core, indication, len, category) {
        Ok((retained, retention)) => {
            let mut decision = ReceiveDecision::new(STATUS_PENDING, None);
            decision.retained = Some(retention);
            (Ok(retained), decision)
        }
        Err(error) => (
            Err(error),
            ReceiveDecision::new(STATUS_DATA_NOT_ACCEPTED, None),
        ),
    }
}

struct DataIndications<'a> {
    next: PWSK_DATA_INDICATION,
    _life: PhantomData<&'a WSK_DATA_INDICATION>,
}

impl<'a> Iterator for DataIndications<'a> {
    type Item = &'a WSK_BUF;
    fn next(&mut self) -> Option<&'a WSK_BUF> {
        // SAFETY: indications are valid while the callback runs or they are retained ('a).
        let current = unsafe { self.next.as_ref()? };
        self.next = current.Next;
        Some(&current.Buffer)
    }
}

/// One datagram of [`ReceivedDatagrams`].
pub struct Datagram<'a> {
    indication: &'a WSK_DATAGRAM_INDICATION,
}

impl<'a> Datagram<'a> {
    /// The address the datagram came from.
    pub fn source(&self) -> Result<SocketAddr> {
        // SAFETY: the provider gives null or a socket address of the socket's family.
        unsafe { crate::addr::from_sockaddr(self.indication.RemoteAddress) }
    }

    /// Length of the datagram in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.indication.Buffer.Length as usize
    }

    /// Whether the datagram is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The datagram's bytes, as contiguous chunks in order.
    pub fn chunks(&self) -> impl Iterator<Item = Result<&'a [u8]>> + 'a {
        // `'a` is a borrow of the `ReceivedDatagrams` (or `RetainedData`) the datagram came
        // from, not the callback's lifetime: the chunks end with that borrow.
        // SAFETY: indicated data is resident and valid for 'a.
        unsafe { wsk_buf_chunks(&self.indication.Buffer) }
    }

    /// Copies up to `out.len()` bytes of the datagram into `out`; returns how many.
    pub fn copy_to(&self, out: &mut [u8]) -> Result<usize> {
        // SAFETY: as above.
        unsafe { copy_wsk_buf(&self.indication.Buffer, out) }
    }
}

/// Datagrams received on a datagram socket, indicated to
/// [`DatagramEvents::on_receive_from`](crate::DatagramEvents::on_receive_from) at
/// DISPATCH_LEVEL. Decide with [`consume`](Self::consume), [`reject`](Self::reject) or
/// [`retain`](Self::retain).
///
/// ```compile_fail,E0505
/// fn keep<'a>(datagrams: wsk::ReceivedDatagrams<'a>) -> (usize, wsk::ReceiveDecision<'a>) {
///     let first = datagrams.iter().next().unwrap();
///     let decision = datagrams.consume(); // the datagrams may be gone now
///     (first.len(), decision)
/// }
/// ```
pub struct ReceivedDatagrams<'a> {
    pub(crate) core: &'a SocketCore,
    pub(crate) socket: BorrowedSocket<DatagramSocket>,
    pub(crate) indication: PWSK_DATAGRAM_INDICATION,
    pub(crate) _brand: Brand<'a>,
}

impl<'a> ReceivedDatagrams<'a> {
    /// The socket the datagrams arrived on, to issue requests on it (a reply with
    /// [`DatagramSocket::send_to`]) without the handler owning it.
    #[must_use]
    pub fn socket(&self) -> &DatagramSocket {
        self.socket.get()
    }

    /// The datagrams, in order, borrowed from the `ReceivedDatagrams`.
    pub fn iter(&self) -> impl Iterator<Item = Datagram<'_>> + '_ {
        let mut next = self.indication;
        core::iter::from_fn(move || {
            // SAFETY: indications are valid while the callback runs ('a).
            let current = unsafe { next.as_ref()? };
            next = current.Next;
            Some(Datagram {
                indication: current,
            })
        })
    }

    /// The datagrams were taken.
    pub fn consume(self) -> ReceiveDecision<'a> {
        ReceiveDecision::new(STATUS_SUCCESS, None)
    }

    /// The datagrams were not taken (`STATUS_DATA_NOT_ACCEPTED`).
    pub fn reject(self) -> ReceiveDecision<'a> {
        ReceiveDecision::new(STATUS_DATA_NOT_ACCEPTED, None)
    }

    /// Keeps the indicated datagrams without copying (`STATUS_PENDING`); they go back to
    /// the provider when the [`RetainedData`] is dropped (dropped before the callback
    /// returns, they count as consumed).
    pub fn retain(self) -> (Result<RetainedData>, ReceiveDecision<'a>) {
        let len = self.iter().map(|d| d.len()).sum();
        retain(self.core, self.indication.cast(), len, Category::Datagram)
    }
}

/// Indicated data a callback kept ([`ReceivedData::retain`], [`ReceivedDatagrams::retain`]).
///
/// The indications stay the provider's memory, lent to this value: read them through a
/// [`RetainedView`] ([`RetainedData::view`]), and drop the value to give them back
/// (`WskRelease`, callable at DISPATCH_LEVEL). Drop it promptly: the provider may run short
/// of buffers.
///
/// WSK cannot close a socket whose indications are not released, so **closing the socket
/// revokes them**: when its handle is dropped, `close()` is called or the client shuts down,
/// the indications are released at once — or as soon as the views open on them are dropped
/// — and `view()` fails with [`Error::SOCKET_CLOSED`] afterwards. Nothing that holds a
/// `RetainedData` (a handler, a task, a struct dropped in field order) can keep the close,
/// and the client's teardown, waiting; only a view held across it by the thread that waits
/// for the close would (a self-deadlock, as with any lock).
pub struct RetainedData {
    core: Shared<SocketCore>,
    retention: Shared<Retention>,
    len: usize,
    category: Category,
}

// SAFETY: the indications are provider memory valid on any thread until released; access to
// them goes through the retention protocol (views), and the references are `Send + Sync`.
unsafe impl Send for RetainedData {}
// SAFETY: shared references only open views, which are synchronised by the protocol.
unsafe impl Sync for RetainedData {}

impl RetainedData {
    fn new(
        core: &SocketCore,
        indication: PVOID,
        len: usize,
        category: Category,
    ) -> Result<(RetainedData, Shared<Retention>)> {
        let retention = retention::retain(core, indication)?;
        let retained = RetainedData {
            core: core.to_shared(),
            retention: retention.clone(),
            len,
            category,
        };
        Ok((retained, retention))
    }

    /// Total bytes retained.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no byte is retained.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Opens the retained bytes for reading; fails with [`Error::SOCKET_CLOSED`] once the
    /// socket's close revoked them. While a view is open, a revocation waits for it (so keep
    /// views short, and never hold one across a wait for the socket's close).
    pub fn view(&self) -> Result<RetainedView<'_>> {
        retention::begin_read(&self.core, &self.retention)?;
        Ok(RetainedView {
            data: self,
            _not_send: PhantomData,
        })
    }
}

/// Read access to a [`RetainedData`]'s bytes ([`RetainedData::view`]); the slices it gives
/// borrow it, and end before the indications can be given back.
///
/// ```compile_fail,E0505
/// fn keep(retained: wsk::RetainedData) -> usize {
///     let view = retained.view().unwrap();
///     let first = view.chunks().next().unwrap().unwrap();
///     drop(view); // the data may be revoked once the view is gone
///     first.len()
/// }
/// ```
///
/// A view is not `Send`: a task cannot hold one across an `.await` (which could keep the
/// socket's close waiting for as long as the task waits).
///
/// ```compile_fail
/// fn spawn_holding_view(tasks: &wsk::task::TaskSet, retained: wsk::RetainedData) {
///     let _ = tasks.spawn(async move {
///         let view = retained.view().unwrap();
///         core::future::ready(()).await;
///         drop(view);
///     });
/// }
/// ```
pub struct RetainedView<'a> {
    data: &'a RetainedData,
    _not_send: PhantomData<*mut ()>,
}

impl RetainedView<'_> {
    /// The retained bytes of a connection, as contiguous chunks in order (datagrams: see
    /// [`RetainedView::datagrams`]).
    pub fn chunks(&self) -> impl Iterator<Item = Result<&[u8]>> + '_ {
        let next = if self.data.category == Category::Datagram {
            core::ptr::null_mut()
        } else {
            self.data.retention.indication().cast()
        };
        DataIndications {
            next,
            _life: PhantomData,
        }
        .flat_map(|buf| {
            // SAFETY: the open view keeps the indications from being released.
            unsafe { wsk_buf_chunks(buf) }
        })
    }

    /// The retained datagrams (empty for connection data).
    pub fn datagrams(&self) -> impl Iterator<Item = Datagram<'_>> + '_ {
        let mut next: PWSK_DATAGRAM_INDICATION = if self.data.category == Category::Datagram {
            self.data.retention.indication().cast()
        } else {
            core::ptr::null_mut()
        };
        core::iter::from_fn(move || {
            // SAFETY: the open view keeps the indications from being released.
            let current = unsafe { next.as_ref()? };
            next = current.Next;
            Some(Datagram {
                indication: current,
            })
        })
    }

    /// Copies up to `out.len()` bytes of the retained connection data into `out`; returns
    /// how many.
    pub fn copy_to(&self, out: &mut [u8]) -> Result<usize> {
        let mut copied = 0;
        for chunk in self.chunks() {
            let chunk = chunk?;
            let take = chunk.len().min(out.len() - copied);
            out[copied..copied + take].copy_from_slice(&chunk[..take]);
            copied += take;
            if copied == out.len() {
                break;
            }
        }
        Ok(copied)
    }
}

impl Drop for RetainedView<'_> {
    fn drop(&mut self) {
        retention::end_read(&self.data.core, &self.data.retention);
    }
}

impl Drop for RetainedData {
    fn drop(&mut self) {
        retention::drop_retained(&self.core, &self.retention);
    }
}

impl core::fmt::Debug for RetainedData {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RetainedData")
            .field("len", &self.len)
            .finish()
    }
}
