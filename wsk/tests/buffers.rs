//! Buffers of any type through `wsk` on wsk-host, against std sockets on loopback: slices of a
//! buffer, a driver's own buffer type, a caller's MDL chain (sent from an offset into its first
//! MDL, received into across its MDLs), operations dropped or forgotten while the provider
//! holds each kind, no allocation per operation, and operations issued with a caller's IRP.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use wsk::irql::Irql;
use wsk::{
    Buf, ConnectionSocket, DatagramSocket, Error, IoBuf, IoBufMut, Irp, MdlChain, WskClient,
};
use wsk_host::{CompletionMode, FaultPlan, Nth, Rule, Session};
use wsk_sys::*;

mod common;
use common::{
    DEADLINE, Originator, assert_only_leaks, connected, driver, forwarded_request, start, within,
};

// ---- heap allocations of the test thread ----------------------------------------------------

/// Counts the heap allocations of each thread (to compare operations on the same thread).
struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; the counter is a plain thread-local cell.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
        // SAFETY: forwarded.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
        // SAFETY: forwarded.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn heap_allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

// ---- helpers --------------------------------------------------------------------------------

/// Reads exactly `count` bytes from the peer.
fn read_exact(peer: &mut TcpStream, count: usize) -> Vec<u8> {
    let mut data = vec![0; count];
    peer.read_exact(&mut data).unwrap();
    data
}

/// Waits until `condition` holds, or fails at the deadline.
fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "{what}: not by the deadline");
        std::thread::sleep(Duration::from_millis(1));
    }
}

// ---- a driver's own buffer type: a Vec's pages locked behind an MDL ---------------------------

/// A `Vec<u8>` whose pages are locked (`MmProbeAndLockPages`) behind an MDL the value owns:
/// what a driver writes to use its own buffer type with `wsk`.
#[derive(Debug)]
struct LockedVec {
    vec: Vec<u8>,
    mdl: PMDL,
}

impl LockedVec {
    fn new(vec: Vec<u8>) -> LockedVec {
        assert!(vec.capacity() > 0);
        // SAFETY: the vector's allocation of `capacity` bytes; no IRP.
        let mdl = unsafe {
            IoAllocateMdl(
                vec.as_ptr().cast_mut().cast(),
                vec.capacity() as ULONG,
                FALSE,
                FALSE,
                std::ptr::null_mut(),
            )
        };
        assert!(!mdl.is_null());
        // SAFETY: a fresh MDL over memory the vector owns; PASSIVE_LEVEL.
        unsafe { MmProbeAndLockPages(mdl, KernelMode, IoModifyAccess) };
        LockedVec { vec, mdl }
    }
}

impl Drop for LockedVec {
    fn drop(&mut self) {
        if !self.mdl.is_null() {
            // SAFETY: locked and allocated in `new`, owned by this value.
            unsafe {
                MmUnlockPages(self.mdl);
                IoFreeMdl(self.mdl);
            }
        }
    }
}

// SAFETY: the MDL describes the vector's whole capacity, locked, owned by this value; the
// vector's heap allocation does not move with the value; `len <= capacity`; the stand-in
// (no MDL) has capacity 0.
unsafe impl IoBuf for LockedVec {
    fn mdl(&self) -> PMDL {
        self.mdl
    }
    fn mdl_offset(&self) -> usize {
        0
    }
    fn bytes_init(&self) -> usize {
        self.vec.len()
    }
    fn bytes_total(&self) -> usize {
        if self.mdl.is_null() {
            0
        } else {
            self.vec.capacity()
        }
    }
    fn stand_in() -> LockedVec {
        LockedVec {
            vec: Vec::new(),
            mdl: std::ptr::null_mut(),
        }
    }
}

// SAFETY: the spare capacity is the vector's own, locked for write access.
unsafe impl IoBufMut for LockedVec {
    unsafe fn set_init(&mut self, count: usize) {
        if count > self.vec.len() {
            // SAFETY: the caller guarantees the bytes were written, within capacity.
            unsafe { self.vec.set_len(count) };
        }
    }
}

// SAFETY: the vector and MDL are owned; kernel memory is usable from any thread.
unsafe impl Send for LockedVec {}

// ---- a caller's MDL chain: non-paged pool pieces, each with its MDL --------------------------

const POOL_TAG: u32 = u32::from_le_bytes(*b"WskT");

/// Non-paged pool pieces, each described by an MDL built for non-paged pool, chained in
/// order: what a driver forwarding data already has. Frees everything when dropped, and
/// counts its drops.
#[derive(Debug)]
struct PoolChain {
    pieces: Vec<(NonNull<u8>, usize, PMDL)>,
    drops: Arc<AtomicUsize>,
}

// SAFETY: pool memory and MDLs are usable from any thread.
unsafe impl Send for PoolChain {}

impl PoolChain {
    fn new(sizes: &[usize], drops: &Arc<AtomicUsize>) -> PoolChain {
        let mut pieces: Vec<(NonNull<u8>, usize, PMDL)> = Vec::new();
        for &size in sizes {
            // SAFETY: a non-zero size; PASSIVE_LEVEL.
            let data = unsafe { pool::allocate_non_paged_zeroed(size as SIZE_T, POOL_TAG) };
            let data = NonNull::new(data.cast::<u8>()).unwrap();
            // SAFETY: the allocation just made; no IRP.
            let mdl = unsafe {
                IoAllocateMdl(
                    data.as_ptr().cast(),
                    size as ULONG,
                    FALSE,
                    FALSE,
                    std::ptr::null_mut(),
                )
            };
            assert!(!mdl.is_null());
            // SAFETY: the MDL describes the non-paged allocation; linked after the previous.
            unsafe {
                MmBuildMdlForNonPagedPool(mdl);
                if let Some(&(_, _, previous)) = pieces.last() {
                    (*previous).Next = mdl;
                }
            }
            pieces.push((data, size, mdl));
        }
        PoolChain {
            pieces,
            drops: Arc::clone(drops),
        }
    }

    fn first(&self) -> NonNull<MDL> {
        NonNull::new(self.pieces[0].2).unwrap()
    }

    /// Fills the pieces with consecutive bytes from `seed`.
    fn fill(&mut self, seed: u8) {
        let mut value = seed;
        for &(data, size, _) in &self.pieces {
            // SAFETY: the allocation of `size` bytes, owned and not in use.
            let bytes = unsafe { std::slice::from_raw_parts_mut(data.as_ptr(), size) };
            for byte in bytes {
                *byte = value;
                value = value.wrapping_add(1);
            }
        }
    }

    /// The bytes of all pieces, in chain order.
    fn bytes(&self) -> Vec<u8> {
        let mut all = Vec::new();
        for &(data, size, _) in &self.pieces {
            // SAFETY: the allocation of `size` bytes, owned and not written meanwhile.
            all.extend_from_slice(unsafe { std::slice::from_raw_parts(data.as_ptr(), size) });
        }
        all
    }
}

impl Drop for PoolChain {
    fn drop(&mut self) {
        for &(data, _, mdl) in &self.pieces {
            // SAFETY: allocated in `new`, owned, no longer used by anyone.
            unsafe {
                IoFreeMdl(mdl);
                ExFreePoolWithTag(data.as_ptr().cast(), POOL_TAG);
            }
        }
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

/// An MDL chain over pieces of 10, 20 and 30 bytes, from offset 3 of the first, 50 bytes long
/// (it ends 4 bytes before the end of the third).
fn three_piece_chain(drops: &Arc<AtomicUsize>) -> MdlChain<PoolChain> {
    let mut pieces = PoolChain::new(&[10, 20, 30], drops);
    pieces.fill(100);
    let first = pieces.first();
    // SAFETY: the chain's MDLs describe non-paged pool that `pieces` owns and frees only
    // when dropped, which the chain does only when it is dropped itself.
    unsafe { MdlChain::from_raw(first, 3, 50, pieces) }.unwrap()
}

// ---- slices ---------------------------------------------------------------------------------

#[test]
fn a_slice_sends_only_its_range_and_hands_the_whole_buffer_back() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, mut peer) = connected(&client);
    let buf = Buf::from_slice(b"0123456789abcdef").unwrap();
    let slice = buf.slice(4..10).unwrap();
    assert_eq!(&slice[..], b"456789");
    let (sent, slice) = socket.send(slice).wait();
    assert_eq!(sent.unwrap(), 6);
    assert_eq!(read_exact(&mut peer, 6), b"456789");
    let buf = slice.into_inner();
    assert_eq!(&buf[..], b"0123456789abcdef", "the whole buffer, untouched");
    // A slice of a slice, sent to the end with send_all.
    let inner = buf.slice(2..).unwrap().slice(10..).unwrap();
    let (sent, inner) = socket.send_all(inner).wait();
    sent.unwrap();
    assert_eq!(read_exact(&mut peer, 4), b"cdef");
    assert_eq!(inner.into_inner().into_inner().len(), 16);
    drop((socket, client));
    session.finish();
}

#[test]
fn a_receive_into_a_slice_fills_its_range_and_extends_the_buffer() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, mut peer) = connected(&client);
    let mut buf = Buf::with_capacity(32).unwrap();
    buf.extend_from_slice(b"head").unwrap();
    // From the end of the data to byte 12: eight bytes at most.
    peer.write_all(b"ABCDEFGHIJKL").unwrap();
    let (received, slice) = socket.receive_exact(buf.slice(4..12).unwrap(), 8).wait();
    assert_eq!(received.unwrap(), 8);
    assert_eq!(&slice[..], b"ABCDEFGH");
    let buf = slice.into_inner();
    assert_eq!(&buf[..], b"headABCDEFGH");
    // A slice starting inside the data: the receive appends after the data, within the
    // range's end.
    let (received, slice) = socket.receive(buf.slice(2..14).unwrap()).wait();
    assert_eq!(
        received.unwrap(),
        2,
        "room for two bytes before the range's end"
    );
    let buf = slice.into_inner();
    assert_eq!(&buf[..], b"headABCDEFGHIJ");
    assert_eq!(buf.capacity(), 32);
    drop((buf, socket, client));
    session.finish();
}

#[test]
fn a_slice_out_of_range_or_after_a_gap_is_refused_with_the_buffer_back() {
    let session = Session::start();
    let mut buf = Buf::with_capacity(16).unwrap();
    buf.extend_from_slice(b"data").unwrap();
    let (error, buf) = buf.slice(0..17).unwrap_err();
    assert_eq!(error, Error::INVALID_BUFFER_SIZE);
    // Starting after the data would leave unwritten bytes between it and what a receive
    // writes.
    let (error, buf) = buf.slice(5..8).unwrap_err();
    assert_eq!(error, Error::INVALID_BUFFER_SIZE);
    #[allow(clippy::reversed_empty_ranges)]
    let (error, buf) = buf.slice(3..2).unwrap_err();
    assert_eq!(error, Error::INVALID_BUFFER_SIZE);
    assert_eq!(&buf[..], b"data");
    // An empty range is a valid slice, and an operation refuses it.
    let empty = buf.slice(4..4).unwrap();
    assert_eq!(empty.bytes_total(), 0);
    drop(empty);
    session.finish();
}

// ---- a driver's own type --------------------------------------------------------------------

#[test]
fn a_drivers_own_buffer_type_sends_and_receives() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, mut peer) = connected(&client);
    let (sent, own) = socket.send(LockedVec::new(b"locked vec".to_vec())).wait();
    assert_eq!(sent.unwrap(), 10);
    assert_eq!(read_exact(&mut peer, 10), b"locked vec");
    let mut vec = own.vec.clone();
    drop(own);
    vec.clear();
    vec.reserve(64);
    peer.write_all(b"into the vec").unwrap();
    let (received, own) = socket.receive_exact(LockedVec::new(vec), 12).wait();
    assert_eq!(received.unwrap(), 12);
    assert_eq!(&own.vec[..], b"into the vec");
    // And a slice of it.
    let (sent, slice) = socket.send(own.slice(5..8).unwrap()).wait();
    assert_eq!(sent.unwrap(), 3);
    assert_eq!(read_exact(&mut peer, 3), b"the");
    drop(slice);
    drop((socket, client));
    session.finish();
}

// ---- MDL chains -----------------------------------------------------------------------------

#[test]
fn an_mdl_chain_of_three_sends_from_an_offset_into_the_first() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, mut peer) = connected(&client);
    let drops = Arc::new(AtomicUsize::new(0));
    let chain = three_piece_chain(&drops);
    let expected: Vec<u8> = chain.owner().unwrap().bytes()[3..53].to_vec();
    let (sent, chain) = socket.send(chain).wait();
    assert_eq!(sent.unwrap(), 50);
    assert_eq!(read_exact(&mut peer, 50), expected);
    // A slice of the chain: ten bytes from the middle of the second MDL into the third.
    let (sent, slice) = socket.send(chain.slice(20..30).unwrap()).wait();
    assert_eq!(sent.unwrap(), 10);
    assert_eq!(read_exact(&mut peer, 10), &expected[20..30]);
    assert_eq!(
        drops.load(Ordering::SeqCst),
        0,
        "the owner lives with the chain"
    );
    let owner = slice.into_inner().into_owner().unwrap();
    drop(owner);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    drop((socket, client));
    session.finish();
}

#[test]
fn an_mdl_chain_receives_across_its_mdls() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, mut peer) = connected(&client);
    let drops = Arc::new(AtomicUsize::new(0));
    let mut chain = three_piece_chain(&drops);
    chain.clear();
    let incoming: Vec<u8> = (0..50).map(|i| b'a' + (i % 26) as u8).collect();
    peer.write_all(&incoming).unwrap();
    let (received, chain) = socket.receive_exact(chain, 50).wait();
    assert_eq!(received.unwrap(), 50);
    assert_eq!(chain.filled(), 50);
    let bytes = chain.owner().unwrap().bytes();
    assert_eq!(
        &bytes[3..53],
        &incoming[..],
        "written across the three MDLs"
    );
    assert_eq!(&bytes[..3], &[100, 101, 102], "nothing before the offset");
    assert_eq!(
        &bytes[53..],
        &[153, 154, 155, 156, 157, 158, 159],
        "nothing after the end"
    );
    // A full chain has no room: refused, handed back.
    let (result, chain) = socket.receive(chain).wait();
    assert_eq!(result.unwrap_err(), Error::INVALID_BUFFER_SIZE);
    drop(chain);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    drop((socket, client));
    session.finish();
}

#[test]
fn an_mdl_chain_beyond_its_mdls_is_refused_with_its_owner() {
    let session = Session::start();
    let drops = Arc::new(AtomicUsize::new(0));
    let pieces = PoolChain::new(&[10, 20], &drops);
    let first = pieces.first();
    // SAFETY: as in `three_piece_chain`.
    let (error, pieces) = unsafe { MdlChain::from_raw(first, 5, 26, pieces) }.unwrap_err();
    assert_eq!(error, Error::INVALID_BUFFER_SIZE);
    // SAFETY: as above.
    let (error, pieces) = unsafe { MdlChain::from_raw(first, 0, 0, pieces) }.unwrap_err();
    assert_eq!(error, Error::INVALID_BUFFER_SIZE);
    // SAFETY: as above: exactly the chain's 30 bytes.
    let chain = unsafe { MdlChain::from_raw(first, 5, 25, pieces) }.unwrap();
    assert_eq!((chain.offset(), chain.len(), chain.filled()), (5, 25, 25));
    drop(chain);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    session.finish();
}

/// A buffer type that breaks its contract on purpose: it claims more bytes than its MDL
/// describes. The provider must not walk past the chain: wsk-host's verifier reports it.
struct Overclaiming(Buf);

// SAFETY: deliberately broken (`bytes_init` exceeds what the MDL describes), to test that the
// provider's verifier catches it; the provider refuses the buffer without touching it.
unsafe impl IoBuf for Overclaiming {
    fn mdl(&self) -> PMDL {
        self.0.mdl()
    }
    fn mdl_offset(&self) -> usize {
        0
    }
    fn bytes_init(&self) -> usize {
        self.0.capacity() + 8
    }
    fn bytes_total(&self) -> usize {
        self.0.capacity() + 8
    }
    fn stand_in() -> Overclaiming {
        Overclaiming(Buf::stand_in())
    }
}

#[test]
fn the_verifier_reports_a_wsk_buf_beyond_its_mdl_chain() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, _peer) = connected(&client);
    let (sent, _) = socket
        .send(Overclaiming(Buf::from_slice(b"sixteen bytes...").unwrap()))
        .wait();
    assert_eq!(sent.unwrap_err().status(), STATUS_INVALID_PARAMETER);
    let violations = session.take_violations();
    assert!(
        violations
            .iter()
            .any(|v| v.rule == Rule::InvalidParameter && v.details.contains("exceeds")),
        "{violations:?}"
    );
    drop((socket, client));
    session.finish();
}

// ---- datagrams ------------------------------------------------------------------------------

/// A client of `session`, a datagram socket bound to loopback, its address, and a host peer.
fn bound_datagram(session: &Session) -> (WskClient, DatagramSocket, SocketAddr, UdpSocket) {
    let client = WskClient::register(driver(session)).unwrap();
    let socket = client
        .bind_datagram("127.0.0.1:0".parse().unwrap())
        .wait()
        .unwrap();
    let local = socket.local_addr().wait().unwrap();
    (
        client,
        socket,
        local,
        UdpSocket::bind("127.0.0.1:0").unwrap(),
    )
}

#[test]
fn datagrams_from_a_slice_and_into_an_mdl_chain() {
    let session = Session::start();
    let (client, socket, local, peer) = bound_datagram(&session);
    peer.set_read_timeout(Some(DEADLINE)).unwrap();
    let buf = Buf::from_slice(b"xxdatagramyy").unwrap();
    let (sent, slice) = socket
        .send_to(buf.slice(2..10).unwrap(), peer.local_addr().unwrap())
        .wait();
    assert_eq!(sent.unwrap(), 8);
    let mut got = [0u8; 32];
    let (n, _) = peer.recv_from(&mut got).unwrap();
    assert_eq!(&got[..n], b"datagram");
    drop(slice);
    let drops = Arc::new(AtomicUsize::new(0));
    let mut chain = three_piece_chain(&drops);
    chain.clear();
    peer.send_to(&[7u8; 40], local).unwrap();
    let (received, chain) = DatagramSocket::receive_from(&socket, chain).wait();
    let (count, from) = received.unwrap();
    assert_eq!((count, from), (40, peer.local_addr().unwrap()));
    assert_eq!(&chain.owner().unwrap().bytes()[3..43], &[7u8; 40][..]);
    drop(chain);
    drop((socket, client));
    session.finish();
}

/// Receives `datagram` into the window `offset..offset + len` of a chain of pool pieces of
/// `sizes` bytes (filled with a pattern first); returns the count, the pieces' bytes after,
/// and the bytes the provider says it delivered.
fn datagram_into_window(
    sizes: &[usize],
    offset: usize,
    len: usize,
    datagram: &[u8],
) -> (usize, Vec<u8>, u64) {
    let session = Session::start();
    let (client, socket, local, peer) = bound_datagram(&session);
    let drops = Arc::new(AtomicUsize::new(0));
    let mut pieces = PoolChain::new(sizes, &drops);
    pieces.fill(0xa0);
    let first = pieces.first();
    // SAFETY: the pieces' MDLs describe their non-paged memory, which the chain owns.
    let mut chain = unsafe { MdlChain::from_raw(first, offset, len, pieces) }.unwrap();
    chain.clear();
    peer.send_to(datagram, local).unwrap();
    let before = session.report().bytes_received;
    let (received, chain) = DatagramSocket::receive_from(&socket, chain)
        .timeout(DEADLINE)
        .wait();
    let delivered = session.report().bytes_received - before;
    let (count, from) = received.unwrap();
    assert_eq!(from, peer.local_addr().unwrap());
    assert_eq!(chain.bytes_init(), count);
    let bytes = chain.into_owner().unwrap().bytes();
    drop((socket, client));
    session.finish();
    (count, bytes, delivered)
}

/// A datagram longer than the receive's buffer is cut to it, whether the buffer lies in one
/// range of its chain (received where it lies) or across two (received through a copy): the
/// same count, the same bytes, nothing written outside the window, the same bytes counted as
/// delivered. An empty datagram into one range receives nothing.
#[test]
fn a_datagram_is_cut_to_a_window_of_an_mdl_chain_in_one_range_or_across_two() {
    let datagram: Vec<u8> = (0..100u8).collect();
    let expected = |offset: usize| {
        let mut bytes: Vec<u8> = (0..60u8).map(|i| 0xa0u8.wrapping_add(i)).collect();
        bytes[offset..offset + 8].copy_from_slice(&datagram[..8]);
        bytes
    };
    // 8 bytes at 12: inside the second piece (10, 20, 30 bytes).
    let one_range = datagram_into_window(&[10, 20, 30], 12, 8, &datagram);
    // 8 bytes at 6: 4 in the first piece, 4 in the second.
    let two_ranges = datagram_into_window(&[10, 20, 30], 6, 8, &datagram);
    assert_eq!(one_range, (8, expected(12), 8));
    assert_eq!(two_ranges, (8, expected(6), 8));
    let (count, _, delivered) = datagram_into_window(&[10], 0, 10, &[]);
    assert_eq!((count, delivered), (0, 0));
}

// ---- operations dropped or forgotten in flight ----------------------------------------------

#[test]
fn an_operation_dropped_in_flight_keeps_each_buffer_kind_until_its_completion() {
    let session = Session::start();
    // Completions (the cancellation's too) arrive 200 ms late: long enough to see that the
    // buffers outlive the dropped operations.
    session.set_faults(FaultPlan::new(3).delay_completions(Duration::from_millis(200)));
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, _peer) = connected(&client);
    let drops = Arc::new(AtomicUsize::new(0));
    let mut chain = three_piece_chain(&drops);
    chain.clear();
    let slice = start(socket.receive(Buf::with_capacity(64).unwrap().slice(0..32).unwrap()));
    let own = start(socket.receive(LockedVec::new(Vec::with_capacity(64))));
    let chained = start(socket.receive(chain));
    drop(slice);
    drop(own);
    drop(chained);
    assert_eq!(
        drops.load(Ordering::SeqCst),
        0,
        "the chain's owner is dropped only when the completion arrives"
    );
    eventually("the dropped chain's owner is released", || {
        drops.load(Ordering::SeqCst) == 1
    });
    drop((socket, client));
    let report = session.finish();
    assert!(report.cancelled >= 3);
}

#[test]
fn waiting_above_apc_level_hands_back_a_stand_in_of_each_kind() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, _peer) = connected(&client);
    let drops = Arc::new(AtomicUsize::new(0));
    let mut chain = three_piece_chain(&drops);
    chain.clear();
    let chained = start(socket.receive(chain));
    let slice = start(socket.receive(Buf::with_capacity(8).unwrap().slice(..).unwrap()));
    let ((chain_result, stand_in), (slice_result, slice_stand_in)) = {
        let _raised = wsk_host::irql::raise(Irql::DISPATCH.0);
        (chained.wait(), slice.wait())
    };
    assert_eq!(chain_result.unwrap_err(), Error::IRQL_TOO_HIGH);
    assert!(stand_in.owner().is_none() && stand_in.first_mdl().is_null());
    assert_eq!(slice_result.unwrap_err(), Error::IRQL_TOO_HIGH);
    assert_eq!(slice_stand_in.into_inner().capacity(), 0);
    eventually("the cancelled chain's owner is released", || {
        drops.load(Ordering::SeqCst) == 1
    });
    drop((socket, client));
    session.finish();
}

#[test]
fn a_forgotten_operation_leaks_each_buffer_kind_and_frees_nothing_early() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, _peer) = connected(&client);
    let drops = Arc::new(AtomicUsize::new(0));
    let mut chain = three_piece_chain(&drops);
    chain.clear();
    std::mem::forget(start(
        socket.receive(Buf::with_capacity(64).unwrap().slice(..).unwrap()),
    ));
    std::mem::forget(start(
        socket.receive(LockedVec::new(Vec::with_capacity(64))),
    ));
    std::mem::forget(start(socket.receive(chain)));
    std::mem::forget(start(
        socket
            .receive(Buf::with_capacity(16).unwrap())
            .with_irp(Irp::new().unwrap()),
    ));
    within("client drop with forgotten operations", move || {
        drop((socket, client));
    });
    let (_, findings) = session.conclude();
    // The memory stays allocated: leaked, never freed under the provider.
    assert_eq!(
        drops.load(Ordering::SeqCst),
        0,
        "the chain's owner is never dropped"
    );
    assert_only_leaks(&findings);
    for rule in [Rule::IrpLeaked, Rule::MdlLeaked, Rule::PoolLeaked] {
        assert!(findings.iter().any(|f| f.rule == rule), "no {rule:?}");
    }
}

// ---- no allocation per operation ------------------------------------------------------------

/// Kernel and heap allocations of `rounds` sends made by `send` (after a warm-up), on this
/// thread, with inline completion.
fn allocations_per_send(
    session: &Session,
    rounds: usize,
    mut send: impl FnMut() -> usize,
) -> (u64, u64) {
    for _ in 0..16 {
        send();
    }
    let before = session.report();
    let heap_before = heap_allocations();
    for _ in 0..rounds {
        send();
    }
    let heap = heap_allocations() - heap_before;
    let after = session.report();
    let kernel = (after.irps_allocated - before.irps_allocated)
        + (after.mdls_allocated - before.mdls_allocated)
        + (after.pool_allocations - before.pool_allocations);
    (kernel, heap)
}

#[test]
fn slices_chains_and_caller_irps_allocate_nothing_per_operation() {
    let session = Session::start();
    session.set_faults(FaultPlan::new(5).completion(CompletionMode::AlwaysInline));
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, mut peer) = connected(&client);
    let drain = std::thread::spawn(move || {
        let mut sink = [0u8; 4096];
        while peer.read(&mut sink).is_ok_and(|n| n > 0) {}
    });
    const ROUNDS: usize = 200;
    let mut buf = Some(Buf::from_slice(&[1u8; 50]).unwrap());
    let (buf_kernel, buf_heap) = allocations_per_send(&session, ROUNDS, || {
        let (sent, back) = socket.send(buf.take().unwrap()).wait();
        buf = Some(back);
        sent.unwrap()
    });
    let mut slice = Some(Buf::from_slice(&[2u8; 64]).unwrap().slice(7..57).unwrap());
    let (slice_kernel, slice_heap) = allocations_per_send(&session, ROUNDS, || {
        let (sent, back) = socket.send(slice.take().unwrap()).wait();
        slice = Some(back);
        sent.unwrap()
    });
    let drops = Arc::new(AtomicUsize::new(0));
    let mut chain = Some(three_piece_chain(&drops));
    let (chain_kernel, chain_heap) = allocations_per_send(&session, ROUNDS, || {
        let (sent, back) = socket.send(chain.take().unwrap()).wait();
        chain = Some(back);
        sent.unwrap()
    });
    let mut irp = Some(Irp::new().unwrap());
    let (irp_kernel, irp_heap) = allocations_per_send(&session, ROUNDS, || {
        let ((sent, back), caller_irp) = socket
            .send(buf.take().unwrap())
            .with_irp(irp.take().unwrap())
            .wait();
        buf = Some(back);
        irp = caller_irp;
        sent.unwrap()
    });
    // Every send carried 50 bytes; the provider's own heap use (it runs inline, on this
    // thread) is the same for each, so any difference would be the new types'.
    assert_eq!(
        (slice_kernel, chain_kernel, irp_kernel),
        (0, 0, 0),
        "kernel allocations"
    );
    assert_eq!(buf_kernel, 0);
    assert_eq!(slice_heap, buf_heap, "a slice costs no heap allocation");
    assert_eq!(
        chain_heap, buf_heap,
        "an MDL chain costs no heap allocation"
    );
    assert_eq!(
        irp_heap, buf_heap,
        "a caller's IRP costs no heap allocation"
    );
    drop((buf, slice, chain, irp));
    socket.disconnect().wait().0.unwrap();
    drop((socket, client));
    drain.join().unwrap();
    session.finish();
}

// ---- reserved requests ----------------------------------------------------------------------

/// Kernel allocations (IRPs, MDLs, pool blocks) the session counted so far.
fn kernel_allocations(session: &Session) -> u64 {
    let report = session.report();
    report.irps_allocated + report.mdls_allocated + report.pool_allocations
}

/// Starts a receive into each of `bufs` on `socket` at once (none can complete: the peer
/// sends nothing), into `ops` (with room for them); returns the (kernel, heap) allocations
/// starting them cost.
fn receives_in_flight(
    session: &Session,
    socket: &ConnectionSocket,
    bufs: &mut Vec<Buf>,
    ops: &mut Vec<wsk::Op<wsk::ops::ReceiveRequest>>,
) -> (u64, u64) {
    let kernel = kernel_allocations(session);
    let heap = heap_allocations();
    ops.extend(bufs.drain(..).map(|buf| start(socket.receive(buf))));
    (
        kernel_allocations(session) - kernel,
        heap_allocations() - heap,
    )
}

const DEPTH: usize = 8;

#[test]
fn reserved_requests_in_flight_allocate_nothing() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (unreserved, _peer) = connected(&client);
    let (reserved, _reserved_peer) = connected(&client);
    let bufs = || -> Vec<Buf> {
        (0..DEPTH)
            .map(|_| Buf::with_capacity(64).unwrap())
            .collect()
    };
    let mut ops = Vec::with_capacity(DEPTH);

    // Without a reservation, the first 8 receives in flight at once grow the pool, one block
    // (an IRP, a heap box) each: this is what a reservation moves to set-up time, and what
    // shows this test can fail.
    let (kernel, heap) = receives_in_flight(&session, &unreserved, &mut bufs(), &mut ops);
    assert_eq!(kernel, DEPTH as u64, "an unreserved socket grows its pool");
    assert!(heap >= DEPTH as u64, "{heap} heap allocations");
    // Dropped in flight: cancelled, each buffer released when its completion arrives.
    ops.clear();

    let before = kernel_allocations(&session);
    reserved.reserve_requests(DEPTH).unwrap();
    assert_eq!(
        kernel_allocations(&session) - before,
        DEPTH as u64,
        "one IRP per block reserved"
    );
    // Reserving what is there costs nothing.
    let before = (kernel_allocations(&session), heap_allocations());
    reserved.reserve_requests(DEPTH).unwrap();
    reserved.reserve_requests(1).unwrap();
    reserved.reserve_requests(0).unwrap();
    assert_eq!(
        (kernel_allocations(&session), heap_allocations()),
        before,
        "a reservation already met allocates nothing"
    );

    // The first 8 in flight take the reserved blocks: no IRP, and fewer heap allocations
    // than blocks (what is left is the provider's, which runs on this thread and sizes its
    // queue of pending receives on first use).
    let (kernel, heap) = receives_in_flight(&session, &reserved, &mut bufs(), &mut ops);
    assert_eq!(kernel, 0, "reserved receives in flight allocate no block");
    assert!(heap < DEPTH as u64, "{heap} heap allocations");
    // Dropped in flight, then again: the blocks come back to the pool when the cancelled
    // requests complete, and serve the next round — which allocates nothing at all.
    let cancelled = session.report().cancelled;
    ops.clear();
    eventually("the cancelled receives complete", || {
        session.report().cancelled >= cancelled + DEPTH as u64
    });
    let mut next = bufs();
    let allocations = receives_in_flight(&session, &reserved, &mut next, &mut ops);
    assert_eq!(allocations, (0, 0), "the reserved blocks are reused");
    ops.clear();

    // Beyond the limit: refused, nothing allocated.
    let before = kernel_allocations(&session);
    assert_eq!(
        reserved.reserve_requests(wsk::MAX_RESERVED_REQUESTS + 1),
        Err(Error::INVALID_PARAMETER)
    );
    assert_eq!(kernel_allocations(&session), before);
    drop((unreserved, reserved, client));
    session.finish();
}

#[test]
fn a_reservation_that_runs_out_of_irps_fails_cleanly_and_keeps_what_it_got() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, _peer) = connected(&client);
    // The third IRP the reservation allocates fails.
    session.set_faults(FaultPlan::new(3).fail_irp_allocation(Nth::Call(3)));
    let before = kernel_allocations(&session);
    assert_eq!(
        socket.reserve_requests(DEPTH),
        Err(Error::INSUFFICIENT_RESOURCES)
    );
    assert_eq!(kernel_allocations(&session) - before, 2, "two blocks added");
    session.set_faults(FaultPlan::new(3));
    // The two stay; the rest is added by the next reservation.
    let before = kernel_allocations(&session);
    socket.reserve_requests(DEPTH).unwrap();
    assert_eq!(kernel_allocations(&session) - before, DEPTH as u64 - 2);
    // Everything is freed with the socket and client: the verifier reports no leak.
    drop((socket, client));
    session.finish();
}

#[test]
fn a_client_reservation_serves_socket_creation() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let connect_irps = |client: &WskClient| {
        let before = session.report().irps_allocated;
        let socket = client.connect(address).wait().unwrap();
        let irps = session.report().irps_allocated - before;
        drop(listener.accept().unwrap());
        socket.close().wait().unwrap();
        irps
    };
    // A connect on a fresh client: its block in the client's pool and the new socket's
    // close IRP.
    let fresh = connect_irps(&client);
    let other = WskClient::register(driver(&session)).unwrap();
    other.reserve_requests(1).unwrap();
    let reserved = connect_irps(&other);
    assert_eq!(fresh, 2);
    assert_eq!(reserved, 1, "the connect took the reserved block");
    drop((client, other));
    session.finish();
}

#[test]
fn a_closed_socket_refuses_a_reservation_and_allocates_nothing() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, _peer) = connected(&client);
    let (other, _other_peer) = connected(&client);
    // The client's teardown closes both; their handles outlive it.
    client.shutdown().unwrap();
    let before = kernel_allocations(&session);
    assert_eq!(socket.reserve_requests(DEPTH), Err(Error::SOCKET_CLOSED));
    assert_eq!(other.reserve_requests(1), Err(Error::SOCKET_CLOSED));
    assert_eq!(kernel_allocations(&session), before);
    drop((socket, other));
    session.finish();
}

#[test]
fn reserved_accepts_allocate_nothing_once_the_client_has_spare_sockets() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let listener = client
        .listen("127.0.0.1:0".parse().unwrap())
        .wait()
        .unwrap();
    let reserved = client
        .listen("127.0.0.1:0".parse().unwrap())
        .wait()
        .unwrap();
    reserved.reserve_requests(DEPTH).unwrap();
    let accepts_in_flight = |listener: &wsk::ListenSocket| {
        let before = session.report();
        let ops: Vec<_> = (0..DEPTH)
            .map(|_| Box::pin(start(Box::pin(listener.accept()))))
            .collect();
        let after = session.report();
        (ops, after.irps_allocated - before.irps_allocated)
    };
    // On a fresh client: a block (an IRP) each but the one its bind left, and the core of
    // the socket each will create, with the IRP reserved for its close.
    let (ops, irps) = accepts_in_flight(&listener);
    assert_eq!(irps, 2 * DEPTH as u64 - 1);
    // Dropped in flight: cancelled; the sockets they were to create go back to the client
    // as spares once the cancelled requests complete.
    let cancelled = session.report().cancelled;
    drop(ops);
    eventually("the cancelled accepts complete", || {
        session.report().cancelled >= cancelled + DEPTH as u64
    });
    // A listener that reserved its blocks, on a client with spare sockets: nothing.
    let (ops, irps) = accepts_in_flight(&reserved);
    assert_eq!(irps, 0, "blocks reserved, sockets' cores reused");
    drop(ops);
    drop((listener, reserved, client));
    session.finish();
}

#[test]
fn every_socket_kind_reserves_and_its_requests_in_flight_then_allocate_no_block() {
    let session = Session::start();
    // Every IRP allocation fails from the reservations on: a request that needed a block
    // would fail to start (`start` asserts it is in flight).
    let (client, datagram, _, _peer) = bound_datagram(&session);
    let listener = client
        .listen("127.0.0.1:0".parse().unwrap())
        .wait()
        .unwrap();
    let stream = wsk::StreamSocket::create(&client, wsk::AddressFamily::V4)
        .wait()
        .unwrap();
    stream.bind("127.0.0.1:0".parse().unwrap()).wait().unwrap();
    stream.listen().wait().unwrap();
    let (connection, _connection_peer) = connected(&client);
    datagram.reserve_requests(DEPTH).unwrap();
    listener.reserve_requests(DEPTH).unwrap();
    stream.reserve_requests(DEPTH).unwrap();
    connection.reserve_requests(DEPTH).unwrap();
    // The sockets the accepts will create take spare cores: 8 sockets open at once, closed.
    let open: Vec<_> = (0..DEPTH).map(|_| connected(&client)).collect();
    for (socket, _peer) in open {
        socket.close().wait().unwrap();
    }
    session.set_faults(FaultPlan::new(4).fail_irp_allocation(Nth::Every(1)));
    let before = kernel_allocations(&session);
    let receives_from: Vec<_> = (0..DEPTH)
        .map(|_| {
            Box::pin(start(
                datagram.receive_from(Buf::with_capacity(64).unwrap()),
            ))
        })
        .collect();
    let receives: Vec<_> = (0..DEPTH)
        .map(|_| Box::pin(start(connection.receive(Buf::with_capacity(64).unwrap()))))
        .collect();
    let accepts: Vec<_> = (0..DEPTH / 2)
        .map(|_| Box::pin(start(listener.accept())))
        .collect();
    let stream_accepts: Vec<_> = (0..DEPTH / 2)
        .map(|_| Box::pin(start(stream.accept())))
        .collect();
    let irps = session.report().irps_allocated;
    assert_eq!(
        kernel_allocations(&session) - before,
        // The buffers' MDLs and pool blocks, made above; no IRP.
        2 * 2 * DEPTH as u64,
        "only the buffers allocated"
    );
    drop((receives_from, receives, accepts, stream_accepts));
    session.set_faults(FaultPlan::new(4));
    assert_eq!(session.report().irps_allocated, irps);
    drop((datagram, listener, stream, connection, client));
    session.finish();
}

// ---- caller-owned IRPs ----------------------------------------------------------------------

#[test]
fn a_caller_irp_round_trips_and_is_reused() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, mut peer) = connected(&client);
    let irp = Irp::new().unwrap();
    let raw = irp.as_ptr();
    let ((sent, sent_buf), irp) = socket
        .send(Buf::from_slice(b"with my irp").unwrap())
        .with_irp(irp)
        .wait();
    assert_eq!(sent.unwrap(), 11);
    let irp = irp.expect("the IRP comes back");
    assert_eq!(irp.as_ptr(), raw, "the caller's own IRP");
    assert_eq!(irp.status(), STATUS_SUCCESS);
    assert_eq!(irp.information(), 11);
    assert_eq!(read_exact(&mut peer, 11), b"with my irp");
    // Reused as is, for a receive of another kind of buffer, then awaited as a future.
    peer.write_all(b"back").unwrap();
    let drops = Arc::new(AtomicUsize::new(0));
    let mut chain = three_piece_chain(&drops);
    chain.clear();
    let ((received, chain), irp) =
        wsk::task::block_on(socket.receive_exact(chain, 4).with_irp(irp)).unwrap();
    assert_eq!(received.unwrap(), 4);
    assert_eq!(&chain.owner().unwrap().bytes()[3..7], b"back");
    let irp = irp.unwrap();
    assert_eq!(irp.as_ptr(), raw);
    assert_eq!(irp.information(), 4);
    // A request refused before it reaches the provider hands the IRP back too.
    let ((refused, _), irp) = socket
        .send(Buf::with_capacity(4).unwrap())
        .with_irp(irp)
        .wait();
    assert_eq!(refused.unwrap_err(), Error::INVALID_BUFFER_SIZE);
    assert_eq!(irp.unwrap().as_ptr(), raw);
    // Any request: an address query with a caller's IRP.
    let (local, irp) = socket.local_addr().with_irp(Irp::new().unwrap()).wait();
    assert!(local.unwrap().ip().is_loopback());
    assert!(irp.is_some());
    drop((chain, sent_buf, irp));
    drop((socket, client));
    session.finish();
}

#[test]
fn a_caller_irp_operation_dropped_in_flight_frees_the_irp_at_its_completion() {
    let session = Session::start();
    session.set_faults(FaultPlan::new(9).delay_completions(Duration::from_millis(100)));
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, _peer) = connected(&client);
    let before = session.report();
    let op = start(
        socket
            .receive(Buf::with_capacity(16).unwrap())
            .with_irp(Irp::new().unwrap()),
    );
    drop(op);
    eventually("the caller's IRP is freed", || {
        let now = session.report();
        now.irps_freed > before.irps_freed
    });
    // The socket's own IRP went back to its block: the next request reuses it.
    let (result, _) = socket.send(Buf::from_slice(b"x").unwrap()).wait();
    result.unwrap();
    drop((socket, client));
    session.finish();
}

#[test]
fn dropping_the_client_with_a_caller_irp_operation_in_flight() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, _peer) = connected(&client);
    let op = start(
        socket
            .receive(Buf::with_capacity(16).unwrap())
            .with_irp(Irp::new().unwrap()),
    );
    let op = within(
        "client and socket drop with a caller IRP in flight",
        move || {
            drop((socket, client));
            op
        },
    );
    let ((result, buf), irp) = within("the cancelled operation", move || op.wait());
    assert!(result.is_err(), "cancelled by the teardown");
    assert_eq!(buf.capacity(), 16, "the buffer comes back");
    let irp = irp.expect("the IRP comes back");
    assert_ne!(irp.status(), STATUS_SUCCESS);
    drop((irp, buf));
    session.finish();
}

// ---- forwarded IRPs -------------------------------------------------------------------------

#[test]
fn a_forwarded_irp_carries_requests_and_is_completed_to_its_originator() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, mut peer) = connected(&client);
    let originator = Arc::new(Originator::default());
    let raw = forwarded_request(&originator);
    // SAFETY: the request was just "dispatched" to this driver, which hands it on.
    let irp = unsafe { Irp::from_forwarded(raw) }.unwrap();
    assert!(irp.is_forwarded());
    let ((sent, sent_buf), irp) = socket
        .send(Buf::from_slice(b"forwarded").unwrap())
        .with_irp(irp)
        .wait();
    assert_eq!(sent.unwrap(), 9);
    let irp = irp.expect("the forwarded IRP comes back");
    assert_eq!((irp.status(), irp.information()), (STATUS_SUCCESS, 9));
    assert_eq!(read_exact(&mut peer, 9), b"forwarded");
    assert_eq!(originator.completions.load(Ordering::SeqCst), 0, "not yet");
    // Reused for a receive.
    peer.write_all(b"reply").unwrap();
    let ((received, reply), irp) = socket
        .receive_exact(Buf::with_capacity(8).unwrap(), 5)
        .with_irp(irp)
        .wait();
    assert_eq!(received.unwrap(), 5);
    assert_eq!(&reply[..], b"reply");
    irp.unwrap().complete(STATUS_SUCCESS, 5).unwrap();
    assert_eq!(originator.completions.load(Ordering::SeqCst), 1);
    assert_eq!(originator.status.load(Ordering::SeqCst), STATUS_SUCCESS);
    assert_eq!(originator.information.load(Ordering::SeqCst), 5);
    // SAFETY: completed to the originator, which owns it again.
    unsafe { IoFreeIrp(raw.as_ptr()) };
    // An IRP this driver allocated has no originator to complete to: handed back.
    let own = Irp::new().unwrap().complete(STATUS_SUCCESS, 0).unwrap_err();
    assert!(!own.is_forwarded());
    // A request with no stack location left below the driver's is refused.
    // SAFETY: no preconditions beyond the IRQL (PASSIVE_LEVEL).
    let last = unsafe { IoAllocateIrp(1, FALSE) };
    // SAFETY: a fresh IRP, "dispatched" to the driver at its only location.
    unsafe { IoSetNextIrpStackLocation(last) };
    // SAFETY: as above.
    let refused = unsafe { Irp::from_forwarded(NonNull::new(last).unwrap()) };
    assert_eq!(refused.unwrap_err(), Error::INVALID_PARAMETER);
    // SAFETY: never completed or handed on; the test allocated it.
    unsafe { IoFreeIrp(last) };
    drop((own, sent_buf, reply, socket, client));
    session.finish();
}

#[test]
fn a_forwarded_irp_abandoned_in_flight_goes_back_to_its_originator_with_the_result() {
    let session = Session::start();
    session.set_faults(FaultPlan::new(11).delay_completions(Duration::from_millis(100)));
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, mut peer) = connected(&client);
    // Dropped before its completion: the completion routine lets the completion go on up.
    let cancelled = Arc::new(Originator::default());
    let raw = forwarded_request(&cancelled);
    // SAFETY: as in the test above.
    let irp = unsafe { Irp::from_forwarded(raw) }.unwrap();
    let op = start(
        socket
            .receive(Buf::with_capacity(16).unwrap())
            .with_irp(irp),
    );
    drop(op);
    assert_eq!(cancelled.completions.load(Ordering::SeqCst), 0);
    eventually("the abandoned request reaches its originator", || {
        cancelled.completions.load(Ordering::SeqCst) == 1
    });
    assert_eq!(cancelled.status.load(Ordering::SeqCst), STATUS_CANCELLED);
    // SAFETY: completed to the originator.
    unsafe { IoFreeIrp(raw.as_ptr()) };
    // Dropped around its completion (before or after the routine ran): completed to the
    // originator once, with the provider's result, either way.
    let received = Arc::new(Originator::default());
    let raw = forwarded_request(&received);
    // SAFETY: as above.
    let irp = unsafe { Irp::from_forwarded(raw) }.unwrap();
    let op = start(
        socket
            .receive(Buf::with_capacity(16).unwrap())
            .with_irp(irp),
    );
    let before = session.report().bytes_received;
    peer.write_all(b"data").unwrap();
    eventually("the provider takes the data", || {
        session.report().bytes_received >= before + 4
    });
    drop(op);
    eventually("the request reaches its originator", || {
        received.completions.load(Ordering::SeqCst) == 1
    });
    assert_eq!(received.status.load(Ordering::SeqCst), STATUS_SUCCESS);
    assert_eq!(received.information.load(Ordering::SeqCst), 4);
    // SAFETY: completed to the originator.
    unsafe { IoFreeIrp(raw.as_ptr()) };
    drop((socket, client));
    session.finish();
}

// ---- from a task, and out of memory ---------------------------------------------------------

#[test]
fn slices_chains_and_caller_irps_from_a_task_at_dispatch_level() {
    let session = Session::start();
    // Every completion from the provider's thread: the task goes on from completion routines,
    // at DISPATCH_LEVEL.
    session.set_faults(FaultPlan::new(4).completion(CompletionMode::AlwaysPending));
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, mut peer) = connected(&client);
    let tasks = wsk::task::TaskSet::new(driver(&session)).unwrap();
    let drops = Arc::new(AtomicUsize::new(0));
    let mut chain = three_piece_chain(&drops);
    chain.clear();
    let (done, outcome) = std::sync::mpsc::channel();
    tasks
        .spawn(async move {
            let buf = Buf::from_slice(b"0123456789").unwrap();
            let irp = Irp::new().unwrap();
            let ((sent, slice), irp) = socket.send(buf.slice(2..6).unwrap()).with_irp(irp).await;
            let irp = irp.expect("the IRP comes back");
            let ((received, chain), irp) = socket.receive_exact(chain, 4).with_irp(irp).await;
            let bytes = chain.owner().map(PoolChain::bytes).unwrap_or_default();
            let irql = Irql::current();
            let _ = done.send((
                sent,
                received,
                bytes,
                irp.is_some(),
                slice.into_inner().len(),
                irql,
            ));
            // Everything is dropped here, at DISPATCH_LEVEL: the chain's owner frees its
            // pool and MDLs, the buffer its own, the IRP is freed.
            drop((chain, irp, socket));
        })
        .unwrap();
    assert_eq!(read_exact(&mut peer, 4), b"2345");
    peer.write_all(b"wxyz").unwrap();
    let (sent, received, bytes, irp_back, whole, irql) = outcome.recv_timeout(DEADLINE).unwrap();
    assert_eq!(
        irql,
        Irql::DISPATCH,
        "the task went on from a completion routine"
    );
    assert_eq!(sent.unwrap(), 4);
    assert_eq!(received.unwrap(), 4);
    assert_eq!(&bytes[3..7], b"wxyz");
    assert!(irp_back);
    assert_eq!(whole, 10);
    tasks.wait_idle().unwrap();
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    drop((tasks, client));
    session.finish();
}

#[test]
fn out_of_irps_an_operation_hands_back_the_callers_irp_and_buffer() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, mut peer) = connected(&client);
    let drops = Arc::new(AtomicUsize::new(0));
    let chain = three_piece_chain(&drops);
    let irp = Irp::new().unwrap();
    // The socket has no completion block yet: its first request must allocate one (with an
    // IRP of its own), which fails.
    session.set_faults(FaultPlan::new(2).fail_irp_allocation(wsk_host::Nth::Every(1)));
    let ((result, slice), irp) = socket
        .send(chain.slice(0..10).unwrap())
        .with_irp(irp)
        .wait();
    assert_eq!(result.unwrap_err(), Error::INSUFFICIENT_RESOURCES);
    let irp = irp.expect("the IRP comes back");
    let chain = slice.into_inner();
    assert_eq!(chain.len(), 50, "the whole chain comes back");
    // With memory again, the same values go out.
    session.set_faults(FaultPlan::new(2));
    let ((result, chain), irp) = socket.send(chain).with_irp(irp).wait();
    assert_eq!(result.unwrap(), 50);
    assert_eq!(read_exact(&mut peer, 50).len(), 50);
    drop((chain, irp, socket, client));
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    session.finish();
}

#[test]
fn a_read_only_chain_is_sent() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, mut peer) = connected(&client);
    let drops = Arc::new(AtomicUsize::new(0));
    let mut pieces = PoolChain::new(&[10, 20, 30], &drops);
    pieces.fill(7);
    let expected = pieces.bytes()[3..53].to_vec();
    let first = pieces.first();
    // SAFETY: the chain's MDLs describe non-paged pool that `pieces` owns and frees only
    // when dropped, which the chain does only when it is dropped itself; only read here.
    let chain = unsafe { MdlChain::from_raw_read_only(first, 3, 50, pieces) }.unwrap();
    let (sent, chain) = socket.send(chain).wait();
    assert_eq!(sent.unwrap(), 50);
    assert_eq!(read_exact(&mut peer, 50), expected);
    drop(chain.into_owner().unwrap());
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    drop((socket, client));
    session.finish();
}
