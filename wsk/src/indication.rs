//! Data the provider indicates to event callbacks: [`ReceivedData`], [`ReceivedDatagrams`],
//! and what a callback keeps of them, [`RetainedData`].

use core::marker::PhantomData;
use core::net::SocketAddr;

use wsk_sys::*;

use crate::shared::Shared;
use crate::socket::{Category, SocketCore};
use crate::{Error, Result};

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
#[derive(Debug)]
#[must_use = "return the decision from the callback"]
pub struct ReceiveDecision {
    pub(crate) status: NTSTATUS,
    pub(crate) accepted: Option<usize>,
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
pub struct ReceivedData<'a> {
    pub(crate) core: &'a SocketCore,
    pub(crate) indication: PWSK_DATA_INDICATION,
    pub(crate) len: usize,
    pub(crate) flags: ULONG,
    pub(crate) _provider: PhantomData<&'a WSK_DATA_INDICATION>,
}

impl<'a> ReceivedData<'a> {
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

    /// The data, as contiguous chunks in order.
    pub fn chunks(&self) -> impl Iterator<Item = Result<&'a [u8]>> + '_ {
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
    pub fn consume(self) -> ReceiveDecision {
        ReceiveDecision {
            status: STATUS_SUCCESS,
            accepted: None,
        }
    }

    /// The first `count` bytes were taken; the provider keeps the rest.
    pub fn consume_part(self, count: usize) -> ReceiveDecision {
        ReceiveDecision {
            status: STATUS_SUCCESS,
            accepted: Some(count.min(self.len)),
        }
    }

    /// None of the data was taken (`STATUS_DATA_NOT_ACCEPTED`).
    pub fn reject(self) -> ReceiveDecision {
        ReceiveDecision {
            status: STATUS_DATA_NOT_ACCEPTED,
            accepted: None,
        }
    }

    /// Keeps the indicated buffers without copying (`STATUS_PENDING`). Fails (and the data is
    /// rejected) when the socket is being closed or memory is short.
    pub fn retain(self) -> (Result<RetainedData>, ReceiveDecision) {
        match RetainedData::new(
            self.core,
            self.indication.cast(),
            self.len,
            Category::Connection,
        ) {
            Ok(retained) => (
                Ok(retained),
                ReceiveDecision {
                    status: STATUS_PENDING,
                    accepted: None,
                },
            ),
            Err(error) => (
                Err(error),
                ReceiveDecision {
                    status: STATUS_DATA_NOT_ACCEPTED,
                    accepted: None,
                },
            ),
        }
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
        if self.indication.RemoteAddress.is_null() {
            return Err(Error::from_status(STATUS_INVALID_ADDRESS));
        }
        // SAFETY: the provider gives a socket address of the socket's family.
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
pub struct ReceivedDatagrams<'a> {
    pub(crate) core: &'a SocketCore,
    pub(crate) indication: PWSK_DATAGRAM_INDICATION,
    pub(crate) _provider: PhantomData<&'a WSK_DATAGRAM_INDICATION>,
}

impl<'a> ReceivedDatagrams<'a> {
    /// The datagrams, in order.
    pub fn iter(&self) -> impl Iterator<Item = Datagram<'a>> + '_ {
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
    pub fn consume(self) -> ReceiveDecision {
        ReceiveDecision {
            status: STATUS_SUCCESS,
            accepted: None,
        }
    }

    /// The datagrams were not taken (`STATUS_DATA_NOT_ACCEPTED`).
    pub fn reject(self) -> ReceiveDecision {
        ReceiveDecision {
            status: STATUS_DATA_NOT_ACCEPTED,
            accepted: None,
        }
    }

    /// Keeps the indicated datagrams without copying (`STATUS_PENDING`); they go back to
    /// the provider when the [`RetainedData`] is dropped.
    pub fn retain(self) -> (Result<RetainedData>, ReceiveDecision) {
        let len = self.iter().map(|d| d.len()).sum();
        match RetainedData::new(self.core, self.indication.cast(), len, Category::Datagram) {
            Ok(retained) => (
                Ok(retained),
                ReceiveDecision {
                    status: STATUS_PENDING,
                    accepted: None,
                },
            ),
            Err(error) => (
                Err(error),
                ReceiveDecision {
                    status: STATUS_DATA_NOT_ACCEPTED,
                    accepted: None,
                },
            ),
        }
    }
}

/// Indicated data a callback kept ([`ReceivedData::retain`], [`ReceivedDatagrams::retain`]).
///
/// It holds the socket open: the socket's close is deferred until every retained
/// indication has been dropped, which gives the buffers back to the provider (`WskRelease`,
/// callable at DISPATCH_LEVEL). Drop it promptly: the provider may run short of buffers.
pub struct RetainedData {
    core: Shared<SocketCore>,
    indication: PVOID,
    len: usize,
    category: Category,
}

// SAFETY: the indications are provider memory valid on any thread until released; the core
// reference is `Send + Sync`.
unsafe impl Send for RetainedData {}
// SAFETY: shared references only read the data.
unsafe impl Sync for RetainedData {}

impl RetainedData {
    fn new(
        core: &SocketCore,
        indication: PVOID,
        len: usize,
        category: Category,
    ) -> Result<RetainedData> {
        core.hold()?;
        // SAFETY: inside an event callback the provider holds the socket context.
        let core = unsafe { Shared::clone_from_raw(core::ptr::from_ref(core)) };
        Ok(RetainedData {
            core,
            indication,
            len,
            category,
        })
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

    /// The retained bytes of a connection, as contiguous chunks in order (datagrams: see
    /// [`RetainedData::datagrams`]).
    pub fn chunks(&self) -> impl Iterator<Item = Result<&[u8]>> + '_ {
        let next = if self.category == Category::Datagram {
            core::ptr::null_mut()
        } else {
            self.indication.cast()
        };
        DataIndications {
            next,
            _life: PhantomData,
        }
        .flat_map(|buf| {
            // SAFETY: retained indications stay valid until released on drop.
            unsafe { wsk_buf_chunks(buf) }
        })
    }

    /// The retained datagrams (empty for connection data).
    pub fn datagrams(&self) -> impl Iterator<Item = Datagram<'_>> + '_ {
        let mut next: PWSK_DATAGRAM_INDICATION = if self.category == Category::Datagram {
            self.indication.cast()
        } else {
            core::ptr::null_mut()
        };
        core::iter::from_fn(move || {
            // SAFETY: retained indications stay valid until released on drop.
            let current = unsafe { next.as_ref()? };
            next = current.Next;
            Some(Datagram {
                indication: current,
            })
        })
    }
}

impl Drop for RetainedData {
    fn drop(&mut self) {
        // SAFETY: the hold taken in `new` keeps the socket open, so the provider's release
        // function may be called; the indications were retained from this socket.
        unsafe {
            let socket = self.core.raw();
            if self.category == Category::Datagram {
                let table = &*(*socket).Dispatch.cast::<WSK_PROVIDER_DATAGRAM_DISPATCH>();
                if let Some(release) = table.WskRelease {
                    let _ = release(socket, self.indication.cast());
                }
            } else if let Some(release) =
                crate::connection::table_of(socket, self.core.category).release
            {
                let _ = release(socket, self.indication.cast());
            }
        }
        self.core.release_hold();
    }
}

impl core::fmt::Debug for RetainedData {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RetainedData")
            .field("len", &self.len)
            .finish()
    }
}
