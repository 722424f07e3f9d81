//! Fourth adversarial review: `Buf` in its new shape (two addresses and two 32-bit counts, the
//! storage kind in the MDL address's low bit) and operations waited for without ever being
//! polled. Public API only.
//!
//! What is attacked:
//! - every constructor and method of `Buf` at the edges of its 32-bit counts, the vectors of
//!   `Buf::from_vec` (odd, tiny and large capacities) and their round trip through
//!   `into_vec` (the same allocation, bytes, length and capacity; freed with the layout it was
//!   allocated with), and the memoryless stand-in an operation hands back, pushed everywhere
//!   a buffer goes;
//! - vector buffers carrying real data over loopback in every completion mode and every way
//!   of waiting, sliced, mixed with pool buffers in a `BufList`, abandoned in flight,
//!   timed out, or under a client or socket dropped from another thread;
//! - waits where none may block (tasks — their first poll too, inside `spawn` at
//!   PASSIVE_LEVEL — event callbacks, wakers and buffer drops run by completion routines, a
//!   held `SpinLock`, raised IRQL);
//! - many threads waiting for sends and receives on shared and separate sockets, with
//!   partial sends and allocation failures, every byte counted;
//! - the promise of `Op::timeout` ("nothing it moved was lost"; a send already taken or data
//!   that arrived keeps its result) for a send the provider had partly written and a
//!   `receive_exact` it had partly filled when the deadline cancelled them. These two tests
//!   (`a_timed_out_send_sent_nothing`, `a_timed_out_receive_exact_loses_no_byte`) fail: the
//!   operation reports `TIMED_OUT` and the bytes moved are not counted.
//!
//! The test binary's global allocator watches the vectors handed to `Buf::from_vec`: a
//! watched allocation is not freed but poisoned and kept, so that the size it was freed with
//! can be compared with the vector's capacity, and a write after the free (by the provider)
//! shows when it is checked.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wsk::irql::Irql;
use wsk::task::TaskSet;
use wsk::{
    Buf, BufList, ConnectionEvents, DatagramEvents, DatagramSocket, Deadline, Error, IoBuf,
    ReceiveDecision, ReceivedData, ReceivedDatagrams, SpinLock, WskClient,
};
use wsk_host::{CompletionMode, FaultPlan, Nth, Session};
use wsk_sys::*;

mod common;
use common::{
    DEADLINE, assert_only_leaks, bound_datagram, completion_plans, connected,
    connected_with_events, connected_with_small_buffers, driver, eventually, no_violations,
    poll_once, within,
};

// =================================================================================================
// A global allocator that watches chosen allocations
// =================================================================================================

/// One watched allocation: its address and size, and the size it was freed with.
struct Slot {
    /// 0: unused; 1: watched, live; 2: freed (poisoned, kept); 3: being set up or released.
    state: AtomicU8,
    ptr: AtomicUsize,
    size: AtomicUsize,
    freed_size: AtomicUsize,
}

const SLOTS: usize = 1024;

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY_SLOT: Slot = Slot {
    state: AtomicU8::new(0),
    ptr: AtomicUsize::new(0),
    size: AtomicUsize::new(0),
    freed_size: AtomicUsize::new(0),
};

static TABLE: [Slot; SLOTS] = [EMPTY_SLOT; SLOTS];
/// Slots in use (a fast path for every other deallocation).
static WATCHED: AtomicUsize = AtomicUsize::new(0);

/// The poison a watched allocation is filled with when freed.
const POISON: u8 = 0xEE;
/// What the spare capacity of a watched vector is filled with.
const SPARE: u8 = 0x5A;

/// The system allocator; a watched allocation's deallocation poisons and keeps it instead.
struct Watcher;

// SAFETY: forwards to the system allocator, except that a watched block is kept (never given
// out again while watched) and freed later by `Watch`'s release with its original layout.
unsafe impl GlobalAlloc for Watcher {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded (the system's zeroed allocation maps huge blocks lazily).
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if WATCHED.load(Ordering::SeqCst) != 0 {
            for slot in &TABLE {
                if slot.state.load(Ordering::SeqCst) == 1
                    && slot.ptr.load(Ordering::SeqCst) == ptr as usize
                    && slot
                        .state
                        .compare_exchange(1, 3, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok()
                {
                    let size = slot.size.load(Ordering::SeqCst);
                    slot.freed_size.store(layout.size(), Ordering::SeqCst);
                    // SAFETY: the watched block is `size` bytes long and now ours.
                    unsafe { std::ptr::write_bytes(ptr, POISON, size.min(layout.size())) };
                    slot.state.store(2, Ordering::SeqCst);
                    return;
                }
            }
        }
        // SAFETY: forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Watcher = Watcher;

/// A watched allocation (of a vector given to `Buf::from_vec`).
struct Watch {
    slot: usize,
    ptr: usize,
    size: usize,
}

impl Watch {
    /// Watches the allocation of `vec` (capacity > 0).
    fn new(vec: &Vec<u8>) -> Watch {
        assert!(vec.capacity() > 0);
        let ptr = vec.as_ptr() as usize;
        for (i, slot) in TABLE.iter().enumerate() {
            if slot
                .state
                .compare_exchange(0, 3, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                slot.ptr.store(ptr, Ordering::SeqCst);
                slot.size.store(vec.capacity(), Ordering::SeqCst);
                slot.freed_size.store(0, Ordering::SeqCst);
                WATCHED.fetch_add(1, Ordering::SeqCst);
                slot.state.store(1, Ordering::SeqCst);
                return Watch {
                    slot: i,
                    ptr,
                    size: vec.capacity(),
                };
            }
        }
        panic!("no free watch slot");
    }

    /// Whether the allocation was freed.
    fn is_freed(&self) -> bool {
        TABLE[self.slot].state.load(Ordering::SeqCst) == 2
    }

    /// The size the allocation was freed with (`None` while live).
    fn freed_size(&self) -> Option<usize> {
        self.is_freed()
            .then(|| TABLE[self.slot].freed_size.load(Ordering::SeqCst))
    }

    /// Ends the watch. A freed allocation must have been freed with its own size and not be
    /// written since (then it is really freed); a live one is left to its owner.
    fn release(self) -> Result<(), String> {
        let slot = &TABLE[self.slot];
        let mut result = Ok(());
        if slot
            .state
            .compare_exchange(2, 3, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            let freed = slot.freed_size.load(Ordering::SeqCst);
            if freed != self.size {
                result = Err(format!(
                    "a vector of capacity {} was freed with a layout of {freed} bytes",
                    self.size
                ));
            }
            // SAFETY: the block is kept by the watch since its free: ours to read and free.
            let bytes = unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.size) };
            if let Some(at) = bytes.iter().position(|&b| b != POISON) {
                result = Err(format!(
                    "a freed vector ({} bytes) was written after its free at byte {at}: {:02x?}",
                    self.size,
                    &bytes[at..(at + 16).min(self.size)]
                ));
            }
            // SAFETY: allocated by the system allocator with this layout (a vector of u8).
            unsafe {
                System.dealloc(
                    self.ptr as *mut u8,
                    Layout::from_size_align(self.size, 1).unwrap(),
                );
            }
        } else {
            assert!(
                slot.state
                    .compare_exchange(1, 3, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok(),
                "a watch ends once"
            );
        }
        slot.ptr.store(0, Ordering::SeqCst);
        WATCHED.fetch_sub(1, Ordering::SeqCst);
        slot.state.store(0, Ordering::SeqCst);
        result
    }

    /// Waits (up to the deadline) for the allocation to be freed, then checks it as
    /// [`Watch::release`] does.
    fn freed_cleanly(self, what: &str) {
        eventually(&format!("{what}: the vector is freed"), || self.is_freed());
        if let Err(e) = self.release() {
            panic!("{what}: {e}");
        }
    }
}

/// A vector of capacity `cap` holding `prefix`, its spare capacity filled with [`SPARE`], and
/// its watch.
fn watched_vec(cap: usize, prefix: &[u8]) -> (Vec<u8>, Watch) {
    let mut vec = Vec::with_capacity(cap);
    assert_eq!(vec.capacity(), cap);
    // SAFETY: writes `cap` bytes of the vector's own spare capacity.
    unsafe { std::ptr::write_bytes(vec.as_mut_ptr(), SPARE, cap) };
    vec.extend_from_slice(prefix);
    let watch = Watch::new(&vec);
    (vec, watch)
}

/// A vector buffer of capacity `cap` holding `prefix` (spare filled with [`SPARE`]), and its
/// watch.
fn vec_buf(cap: usize, prefix: &[u8]) -> (Buf, Watch) {
    let (vec, watch) = watched_vec(cap, prefix);
    (Buf::from_vec(vec).expect("a vector buffer"), watch)
}

/// Takes a vector buffer back and checks it is the very vector: address, capacity, bytes, and
/// a spare capacity untouched beyond the data. Returns the vector.
fn check_vec_back(what: &str, buf: Buf, watch: &Watch, data: &[u8]) -> Vec<u8> {
    check_vec_back_from(what, buf, watch, data, data.len())
}

/// [`check_vec_back`], the spare capacity checked from `pristine_from` only.
fn check_vec_back_from(
    what: &str,
    buf: Buf,
    watch: &Watch,
    data: &[u8],
    pristine_from: usize,
) -> Vec<u8> {
    assert_eq!(buf.capacity(), watch.size, "{what}: {buf:?}");
    let vec = match buf.into_vec() {
        Ok(vec) => vec,
        Err(buf) => panic!("{what}: a vector buffer did not give its vector back: {buf:?}"),
    };
    assert_eq!(
        vec.as_ptr() as usize,
        watch.ptr,
        "{what}: another allocation"
    );
    assert_eq!(vec.capacity(), watch.size, "{what}: capacity");
    assert_eq!(&vec[..], data, "{what}: bytes");
    assert!(!watch.is_freed(), "{what}: the vector was freed");
    // SAFETY: the vector's own capacity, all written (filled at its creation, then data).
    let all = unsafe { std::slice::from_raw_parts(vec.as_ptr(), vec.capacity()) };
    if let Some(at) = all[pristine_from..].iter().position(|&b| b != SPARE) {
        let at = pristine_from + at;
        panic!(
            "{what}: spare capacity written at {at}: {:02x?}",
            &all[at..(at + 16).min(all.len())]
        );
    }
    vec
}

/// Drops a watched vector and checks that it was freed with its own layout.
fn drop_watched(what: &str, vec: Vec<u8>, watch: Watch) {
    drop(vec);
    watch.freed_cleanly(what);
}

// =================================================================================================
// Helpers
// =================================================================================================

/// What the MDL of a buffer describes: (address, byte count).
fn mdl_range(mdl: PMDL) -> (usize, usize) {
    assert!(!mdl.is_null());
    // SAFETY: a buffer's MDL, valid while the buffer lives.
    unsafe {
        (
            MmGetMdlVirtualAddress(mdl) as usize,
            MmGetMdlByteCount(mdl) as usize,
        )
    }
}

/// The ways of waiting for an operation never polled (and one polled first).
#[derive(Clone, Copy, Debug)]
enum How {
    Wait,
    WaitTimeout,
    TimeoutWait,
    TimeoutWaitTimeout,
    DeadlineWait,
    PolledThenWait,
}

const HOWS: [How; 6] = [
    How::Wait,
    How::WaitTimeout,
    How::TimeoutWait,
    How::TimeoutWaitTimeout,
    How::DeadlineWait,
    How::PolledThenWait,
];

/// Waits for `op` as `how` says; every way has a deadline (`Wait` runs on a thread that fails
/// the test at the deadline).
fn run<R: wsk::Request + Send + 'static>(op: wsk::Op<R>, how: How) -> R::Output
where
    R::Output: Send + 'static,
{
    match how {
        How::Wait => within("a wait", move || op.wait()),
        How::WaitTimeout => op.wait_timeout(10_000),
        How::TimeoutWait => op.timeout(DEADLINE).wait(),
        How::TimeoutWaitTimeout => op.timeout(DEADLINE).wait_timeout(10_000),
        How::DeadlineWait => op.deadline(Deadline::after(DEADLINE)).wait(),
        How::PolledThenWait => {
            let mut op = op;
            match poll_once(&mut op) {
                Some(output) => output,
                None => op.wait_timeout(10_000),
            }
        }
    }
}

/// The completion modes, with a delayed one (completions 2 ms late, pended).
fn plans(seed: u64) -> Vec<(&'static str, FaultPlan)> {
    completion_plans(seed, Duration::from_millis(2))
}

// =================================================================================================
// 1. `Buf`'s methods at the edges of its 32-bit counts
// =================================================================================================

#[test]
fn buf_methods_keep_their_contracts_at_the_edges_of_the_32_bit_counts() {
    let session = Session::start();
    // Capacities: 0 and beyond u32::MAX are refused, 1 is fine.
    for bad in [0, u32::MAX as usize + 1, usize::MAX, 1 << 40] {
        assert_eq!(
            Buf::with_capacity(bad).err(),
            Some(Error::INVALID_BUFFER_SIZE),
            "with_capacity({bad})"
        );
    }
    assert_eq!(Buf::from_slice(&[]).err(), Some(Error::INVALID_BUFFER_SIZE));
    let one = Buf::with_capacity(1).unwrap();
    assert_eq!((one.len(), one.capacity(), one.spare_capacity()), (0, 1, 1));
    assert!(one.is_empty());
    assert_eq!(mdl_range(one.mdl()).1, 1);
    drop(one);

    // truncate with a length that does not fit 32 bits: "no effect when `len` is not smaller".
    let mut buf = Buf::from_slice(b"hello, world").unwrap();
    for huge in [
        (1usize << 32) + 2,
        (1usize << 32),
        usize::MAX,
        u32::MAX as usize + 1,
    ] {
        buf.truncate(huge);
        assert_eq!(
            &buf[..],
            b"hello, world",
            "truncate({huge:#x}) changed a buffer of 12 bytes"
        );
    }
    buf.truncate(5);
    assert_eq!(&buf[..], b"hello");
    buf.truncate(5);
    assert_eq!(&buf[..], b"hello");
    drop(buf);

    // extend_from_slice with more than fits — a slice longer than 4 GiB (mapped lazily,
    // never touched) — must fail and leave the buffer as it was.
    let huge = vec![0u8; (1usize << 32) + 3];
    let mut small = Buf::with_capacity(16).unwrap();
    small.extend_from_slice(b"ab").unwrap();
    assert_eq!(
        small.extend_from_slice(&huge[..]),
        Err(Error::INVALID_BUFFER_SIZE),
        "4 GiB + 3 bytes appended to a buffer of 16"
    );
    assert_eq!(
        small.extend_from_slice(&huge[..(1usize << 32) - 1]),
        Err(Error::INVALID_BUFFER_SIZE)
    );
    assert_eq!(&small[..], b"ab", "a refused append changed the buffer");
    assert_eq!(small.len(), 2);
    drop(huge);
    // Exactly filling, then one more byte.
    small.extend_from_slice(&[7u8; 14]).unwrap();
    assert_eq!((small.len(), small.spare_capacity()), (16, 0));
    assert_eq!(
        small.extend_from_slice(b"x"),
        Err(Error::INVALID_BUFFER_SIZE)
    );
    small.extend_from_slice(&[]).unwrap();
    assert_eq!(small.spare_capacity_mut().len(), 0);

    // spare_capacity_mut + set_len, then clear.
    let mut buf = Buf::with_capacity(4097).unwrap();
    buf.extend_from_slice(b"head").unwrap();
    let spare = buf.spare_capacity_mut();
    assert_eq!(spare.len(), 4093);
    for (i, byte) in spare.iter_mut().enumerate() {
        byte.write((i % 251) as u8);
    }
    // SAFETY: every byte up to the capacity was written just above.
    unsafe { buf.set_len(4097) };
    assert_eq!(&buf[..4], b"head");
    assert!(
        buf[4..]
            .iter()
            .enumerate()
            .all(|(i, &b)| b == (i % 251) as u8)
    );
    let (address, count) = mdl_range(buf.mdl());
    assert_eq!(address, buf.as_ptr() as usize, "the MDL describes the data");
    assert_eq!(count, 4097, "the MDL describes the whole capacity");
    assert_eq!(buf.mdl() as usize % 8, 0, "the MDL's address is an MDL's");
    buf.clear();
    assert!(buf.is_empty() && buf.capacity() == 4097 && buf.spare_capacity() == 4097);
    let debug = format!("{buf:?}");
    assert!(debug.contains("4097"), "{debug}");
    drop((buf, small));
    no_violations(session);
}

// =================================================================================================
// 2. Vectors in and out of `Buf::from_vec`
// =================================================================================================

#[test]
fn vector_buffers_round_trip_the_very_vector_and_free_it_with_its_layout() {
    let session = Session::start();
    let shapes: &[(usize, usize)] = &[
        (1, 0),
        (1, 1),
        (2, 1),
        (3, 3),
        (7, 0),
        (4095, 17),
        (4096, 4096),
        (4097, 4096),
        (4097, 1),
        (8193, 5000),
        (65_537, 65_537),
        ((1 << 20) + 3, 12_345),
        ((16 << 20) + 1, (16 << 20) + 1),
    ];
    for &(cap, len) in shapes {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + cap) as u8).collect();
        let (vec, watch) = watched_vec(cap, &data);
        let buf = Buf::from_vec(vec).unwrap();
        let what = format!("capacity {cap}, length {len}");
        assert_eq!(
            (buf.len(), buf.capacity(), buf.spare_capacity()),
            (len, cap, cap - len),
            "{what}"
        );
        assert_eq!(&buf[..], &data[..], "{what}");
        assert_eq!(buf.is_empty(), len == 0);
        let mdl = buf.mdl();
        assert_eq!(
            mdl as usize % 8,
            0,
            "{what}: the MDL's address with its mark: {mdl:p}"
        );
        assert_eq!(
            mdl_range(mdl),
            (watch.ptr, cap),
            "{what}: what the MDL describes"
        );
        assert_eq!(buf.as_ptr() as usize, watch.ptr, "{what}: no copy");
        let _ = format!("{buf:?}");
        // Round trip as is.
        let vec = check_vec_back(&what, buf, &watch, &data);
        // Again, changed in between by each method.
        let mut buf = Buf::from_vec(vec).unwrap();
        buf.truncate(len / 2);
        let mut expect = data[..len / 2].to_vec();
        if buf.spare_capacity() >= 3 {
            buf.extend_from_slice(b"xyz").unwrap();
            expect.extend_from_slice(b"xyz");
        }
        let spare = buf.spare_capacity_mut();
        let extra = spare.len().min(2);
        for byte in &mut spare[..extra] {
            byte.write(b'!');
        }
        let new_len = buf.len() + extra;
        // SAFETY: the `extra` bytes after the data were written just above.
        unsafe { buf.set_len(new_len) };
        expect.extend(std::iter::repeat_n(b'!', extra));
        assert_eq!(&buf[..], &expect[..], "{what}");
        let vec = check_vec_back_from(
            &format!("{what}, changed"),
            buf,
            &watch,
            &expect,
            len.max(expect.len()),
        );
        // Cleared: an empty vector of the same capacity.
        let mut buf = Buf::from_vec(vec).unwrap();
        buf.clear();
        let vec = buf.into_vec().unwrap();
        assert_eq!((vec.len(), vec.capacity()), (0, cap), "{what}: cleared");
        // Dropped as a buffer: the vector is freed, with its own layout.
        drop(Buf::from_vec(vec).unwrap());
        watch.freed_cleanly(&what);
    }
    // Capacity 0 is refused; the vector goes with the error.
    assert_eq!(
        Buf::from_vec(Vec::new()).err(),
        Some(Error::INVALID_BUFFER_SIZE)
    );
    // Pool buffers are not vectors: handed back as they were.
    let pool = Buf::from_slice(b"pool").unwrap();
    let pool = pool.into_vec().unwrap_err();
    assert_eq!(&pool[..], b"pool");
    drop(pool);
    no_violations(session);
}

/// Ends a watch without reading the block (too large to check byte by byte), freeing it if it
/// was freed; returns the size it was freed with.
fn release_unchecked(watch: Watch) -> Option<usize> {
    let slot = &TABLE[watch.slot];
    let freed = watch.freed_size();
    let from = if freed.is_some() { 2 } else { 1 };
    assert!(
        slot.state
            .compare_exchange(from, 3, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    );
    if freed.is_some() {
        // SAFETY: the kept block, allocated with this layout.
        unsafe {
            System.dealloc(
                watch.ptr as *mut u8,
                Layout::from_size_align(watch.size, 1).unwrap(),
            );
        }
    }
    slot.ptr.store(0, Ordering::SeqCst);
    WATCHED.fetch_sub(1, Ordering::SeqCst);
    slot.state.store(0, Ordering::SeqCst);
    freed
}

#[test]
fn vectors_beyond_and_at_the_32_bit_limit() {
    let session = Session::start();
    // A capacity beyond u32::MAX (mapped lazily, never touched): refused, and the vector is
    // freed with its layout — not leaked, not kept.
    let mut vec: Vec<u8> = Vec::with_capacity(u32::MAX as usize + 1);
    vec.extend_from_slice(b"big");
    let watch = Watch::new(&vec);
    assert_eq!(
        Buf::from_vec(vec).err(),
        Some(Error::INVALID_BUFFER_SIZE),
        "a vector of 4 GiB"
    );
    assert_eq!(
        release_unchecked(watch),
        Some(u32::MAX as usize + 1),
        "the refused vector is freed with its layout"
    );
    // Exactly u32::MAX: taken (or refused cleanly), and given back whole.
    let mut vec: Vec<u8> = Vec::with_capacity(u32::MAX as usize);
    vec.extend_from_slice(b"edge");
    let watch = Watch::new(&vec);
    match Buf::from_vec(vec) {
        Ok(buf) => {
            assert_eq!((buf.len(), buf.capacity()), (4, u32::MAX as usize));
            assert_eq!(mdl_range(buf.mdl()), (watch.ptr, u32::MAX as usize));
            let vec = buf.into_vec().unwrap();
            assert_eq!(
                (vec.as_ptr() as usize, vec.len(), vec.capacity()),
                (watch.ptr, 4, u32::MAX as usize)
            );
            assert_eq!(&vec[..], b"edge");
            drop(vec);
        }
        Err(e) => eprintln!("a vector of u32::MAX bytes refused: {e:?}"),
    }
    assert_eq!(release_unchecked(watch), Some(u32::MAX as usize));
    no_violations(session);
}

// =================================================================================================
// 3. The memoryless stand-in, everywhere a buffer goes
// =================================================================================================

/// A stand-in as an operation hands it back: a receive polled into flight, then waited for at
/// DISPATCH_LEVEL (refused, cancelled, its vector released at the completion).
fn stand_in_from_a_refused_wait(socket: &wsk::ConnectionSocket) -> (Buf, Watch) {
    let (buf, watch) = vec_buf(64, b"");
    let mut op = socket.receive(buf);
    assert!(poll_once(&mut op).is_none(), "the receive is in flight");
    let (result, stand_in) = {
        let _raised = wsk_host::irql::raise(Irql::DISPATCH.0);
        op.wait()
    };
    assert_eq!(result, Err(Error::IRQL_TOO_HIGH));
    (stand_in, watch)
}

fn check_stand_in(what: &str, buf: &Buf) {
    assert_eq!(
        (buf.len(), buf.capacity(), buf.spare_capacity()),
        (0, 0, 0),
        "{what}: {buf:?}"
    );
    assert!(buf.mdl().is_null(), "{what}: a stand-in's MDL is null");
    assert!(buf.is_empty());
    assert!(buf[..].is_empty());
}

#[test]
fn the_stand_in_buffer_is_refused_everywhere_and_handed_back() {
    for (mode, plan) in plans(300) {
        let session = Session::start();
        let client = WskClient::register(driver(&session)).unwrap();
        let (socket, mut peer) = connected(&client);
        let (dsocket, dlocal, dpeer) = bound_datagram(&client, "127.0.0.1:0");
        session.set_faults(plan);
        let (mut stand_in, released) = stand_in_from_a_refused_wait(&socket);
        check_stand_in(mode, &stand_in);
        released.freed_cleanly(&format!("{mode}: the cancelled receive's vector"));
        // Its methods.
        let _ = format!("{stand_in:?}");
        assert_eq!(stand_in.spare_capacity_mut().len(), 0);
        stand_in.truncate(0);
        stand_in.truncate(usize::MAX);
        stand_in.clear();
        assert_eq!(stand_in.extend_from_slice(&[]), Ok(()));
        assert_eq!(
            stand_in.extend_from_slice(b"x"),
            Err(Error::INVALID_BUFFER_SIZE)
        );
        // SAFETY: 0 <= capacity, nothing to initialise.
        unsafe { stand_in.set_len(0) };
        let stand_in = stand_in.into_vec().expect_err("a stand-in is no vector");
        check_stand_in(mode, &stand_in);
        drop(stand_in);
        let bytes_before = session.report().bytes_sent;
        let mut real_bytes_sent = 0;
        let fresh = || <Buf as IoBuf>::stand_in();
        // Every operation, every way of waiting: refused, the stand-in back.
        for how in HOWS {
            let what = format!("{mode} {how:?}");
            let (r, b) = run(socket.send(fresh()), how);
            assert!(r.is_err(), "{what}: send of a stand-in: {r:?}");
            check_stand_in(&what, &b);
            let (r, b) = run(socket.receive(fresh()), how);
            assert!(r.is_err(), "{what}: receive into a stand-in: {r:?}");
            check_stand_in(&what, &b);
            let (r, b) = run(socket.receive_exact(fresh(), 4), how);
            assert!(r.is_err(), "{what}: receive_exact into a stand-in: {r:?}");
            check_stand_in(&what, &b);
            let (r, b) = run(dsocket.send_to(fresh(), dpeer.local_addr().unwrap()), how);
            assert!(r.is_err(), "{what}: send_to of a stand-in: {r:?}");
            check_stand_in(&what, &b);
            let (r, b) = run(dsocket.receive_from(fresh()), how);
            assert!(r.is_err(), "{what}: receive_from into a stand-in: {r:?}");
            check_stand_in(&what, &b);
            // Its slices: the whole (empty) range is a valid slice; operations refuse it.
            let slice = fresh().slice(..).map_err(|(e, _)| e).unwrap();
            let (r, b) = run(socket.receive(slice), how);
            assert!(
                r.is_err(),
                "{what}: receive into a slice of a stand-in: {r:?}"
            );
            check_stand_in(&what, &b.into_inner());
            let slice = fresh().slice(0..0).map_err(|(e, _)| e).unwrap();
            let (r, b) = run(socket.send(slice), how);
            assert!(r.is_err(), "{what}: send of a slice of a stand-in: {r:?}");
            check_stand_in(&what, &b.into_inner());
            assert!(fresh().slice(0..1).is_err());
            // With a caller's IRP: the IRP comes back too.
            let (output, irp) = socket
                .send(fresh())
                .with_irp(wsk::Irp::new().unwrap())
                .wait_timeout(10_000);
            assert!(output.0.is_err() && irp.is_some(), "{what}");
            check_stand_in(&what, &output.1);
        }
        let (r, b) = within("send_all", {
            let op = socket.send_all(fresh());
            move || op.wait()
        });
        assert!(r.is_err(), "{mode}: send_all of a stand-in: {r:?}");
        check_stand_in(mode, &b);
        // Pushed into a list: refused, the list unchanged.
        let mut list = BufList::new();
        list.push(Buf::from_slice(b"one").unwrap()).unwrap();
        assert_eq!(list.push(fresh()), Err(Error::INVALID_BUFFER_SIZE));
        assert_eq!((list.bufs().len(), list.total_len()), (1, 3));
        // Swapped into a list in place of a real buffer: the list sends what it has, or
        // refuses; never reads the stand-in's MDL.
        let (tail, tail_watch) = vec_buf(9, b"tail");
        list.push(tail).unwrap();
        let old = std::mem::replace(&mut list.bufs_mut()[0], fresh());
        assert_eq!(&old[..], b"one");
        drop(old);
        let (r, list) = socket
            .send_vectored(list)
            .timeout(DEADLINE)
            .wait_timeout(10_000);
        match r {
            Ok(n) => {
                assert_eq!(n, 4, "{mode}: only the real buffer's bytes");
                real_bytes_sent += 4;
                let mut got = [0u8; 4];
                peer.read_exact(&mut got).unwrap();
                assert_eq!(&got, b"tail");
            }
            Err(e) => eprintln!("{mode}: a list holding a stand-in refused: {e:?}"),
        }
        let (r, mut list) = dsocket
            .send_messages(list, dpeer.local_addr().unwrap())
            .timeout(DEADLINE)
            .wait_timeout(10_000);
        match r {
            Ok(_) => {
                real_bytes_sent += 4;
                let mut got = [0u8; 16];
                let (n, from) = dpeer.recv_from(&mut got).unwrap();
                assert_eq!((&got[..n], from), (&b"tail"[..], dlocal), "{mode}");
            }
            Err(e) => eprintln!("{mode}: messages with a stand-in refused: {e:?}"),
        }
        // Every buffer a stand-in now.
        let tail = std::mem::replace(&mut list.bufs_mut()[1], fresh());
        let (r, list) = socket
            .send_vectored(list)
            .timeout(DEADLINE)
            .wait_timeout(10_000);
        assert!(r.is_err(), "{mode}: a list of stand-ins sent: {r:?}");
        let (r, list) = dsocket
            .send_messages(list, dpeer.local_addr().unwrap())
            .timeout(DEADLINE)
            .wait_timeout(10_000);
        assert!(
            r.is_err() || r == Ok(0),
            "{mode}: stand-ins sent as datagrams: {r:?}"
        );
        for b in list.into_bufs() {
            check_stand_in(mode, &b);
        }
        let tail = check_vec_back(mode, tail, &tail_watch, b"tail");
        drop_watched(mode, tail, tail_watch);
        // A graceful disconnect carrying a stand-in: sent as a plain disconnect or refused,
        // never read.
        let (r, back) = socket
            .disconnect_with(fresh())
            .timeout(DEADLINE)
            .wait_timeout(10_000);
        if let Some(back) = back {
            check_stand_in(mode, &back);
        }
        eprintln!("{mode}: disconnect_with(stand-in): {r:?}");
        assert_eq!(
            session.report().bytes_sent,
            bytes_before + real_bytes_sent,
            "{mode}: only the list's real bytes reached the provider"
        );
        drop((socket, dsocket));
        within("client drop", move || drop(client));
        no_violations(session);
    }
}

// =================================================================================================
// 4. Vector buffers carrying data, in every completion mode and every way of waiting
// =================================================================================================

/// Receives into `buf` (waited as `how`) until it holds `total` bytes.
fn receive_until(
    socket: &wsk::ConnectionSocket,
    mut buf: Buf,
    total: usize,
    how: How,
    what: &str,
) -> Buf {
    let end = Instant::now() + DEADLINE;
    while buf.len() < total {
        assert!(Instant::now() < end, "{what}: stuck at {} bytes", buf.len());
        let before = buf.len();
        let (r, back) = run(socket.receive(buf), how);
        let n = r.unwrap_or_else(|e| panic!("{what}: receive failed: {e:?}"));
        assert!(n > 0, "{what}: the peer does not close");
        assert_eq!(
            back.len(),
            before + n,
            "{what}: the count is the bytes appended"
        );
        buf = back;
    }
    buf
}

#[test]
fn vector_buffers_carry_data_in_every_completion_mode_and_every_way_of_waiting() {
    for (mode, plan) in plans(400) {
        let session = Session::start();
        let client = WskClient::register(driver(&session)).unwrap();
        let (socket, mut peer) = connected(&client);
        let (dsocket, dlocal, dpeer) = bound_datagram(&client, "127.0.0.1:0");
        let (dsocket6, dlocal6, dpeer6) = bound_datagram(&client, "[::1]:0");
        session.set_faults(plan);
        for how in HOWS {
            let what = format!("{mode} {how:?}");
            // A send from a vector of odd capacity: the bytes arrive, the vector comes back.
            let (buf, watch) = vec_buf(13, b"odd-vector!");
            let (r, buf) = run(socket.send(buf), how);
            assert_eq!(r, Ok(11), "{what}: send");
            let mut got = [0u8; 11];
            peer.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"odd-vector!", "{what}");
            let vec = check_vec_back(&what, buf, &watch, b"odd-vector!");
            drop_watched(&what, vec, watch);
            // A send of capacity 1.
            let (buf, watch) = vec_buf(1, b"1");
            let (r, buf) = run(socket.send(buf), how);
            assert_eq!(r, Ok(1), "{what}: send of one byte");
            peer.read_exact(&mut got[..1]).unwrap();
            assert_eq!(got[0], b'1');
            let vec = check_vec_back(&what, buf, &watch, b"1");
            drop_watched(&what, vec, watch);
            // A receive after a prefix: the bytes land in the vector after it.
            peer.write_all(b"abcdefgh").unwrap();
            std::thread::sleep(Duration::from_millis(3));
            let (buf, watch) = vec_buf(37, b"pre");
            let buf = receive_until(&socket, buf, 11, how, &what);
            let vec = check_vec_back(&what, buf, &watch, b"preabcdefgh");
            drop_watched(&what, vec, watch);
            // A receive into capacity 1, twice.
            peer.write_all(b"XY").unwrap();
            let (buf, watch) = vec_buf(1, b"");
            let buf = receive_until(&socket, buf, 1, how, &what);
            let vec = check_vec_back(&what, buf, &watch, b"X");
            drop_watched(&what, vec, watch);
            let (buf, watch) = vec_buf(1, b"");
            let buf = receive_until(&socket, buf, 1, how, &what);
            let vec = check_vec_back(&what, buf, &watch, b"Y");
            drop_watched(&what, vec, watch);
            // receive_exact, the bytes trickling in.
            let writer = {
                let mut peer = peer.try_clone().unwrap();
                std::thread::spawn(move || {
                    for chunk in [&b"12"[..], b"345", b"6"] {
                        std::thread::sleep(Duration::from_millis(2));
                        peer.write_all(chunk).unwrap();
                    }
                })
            };
            let (buf, watch) = vec_buf(4099, b"");
            let (r, buf) = run(socket.receive_exact(buf, 6), how);
            writer.join().unwrap();
            assert_eq!(r, Ok(6), "{what}: receive_exact");
            let vec = check_vec_back(&what, buf, &watch, b"123456");
            drop_watched(&what, vec, watch);
            // Slices of a vector buffer: a send of a range, a receive into a range.
            let (buf, watch) = vec_buf(32, b"0123456789");
            let slice = buf.slice(2..7).map_err(|(e, _)| e).unwrap();
            let (r, slice) = run(socket.send(slice), how);
            assert_eq!(r, Ok(5), "{what}: send of a slice");
            peer.read_exact(&mut got[..5]).unwrap();
            assert_eq!(&got[..5], b"23456", "{what}: the slice's bytes");
            let buf = slice.into_inner();
            peer.write_all(b"WXYZQ").unwrap();
            std::thread::sleep(Duration::from_millis(3));
            let mut buf = buf;
            while buf.len() < 14 {
                let slice = buf.slice(10..14).map_err(|(e, _)| e).unwrap();
                let (r, slice) = run(socket.receive(slice), how);
                assert!(
                    r.is_ok_and(|n| n > 0),
                    "{what}: receive into a slice: {r:?}"
                );
                buf = slice.into_inner();
            }
            let vec = check_vec_back(&what, buf, &watch, b"0123456789WXYZ");
            drop_watched(&what, vec, watch);
            let (buf, watch) = vec_buf(3, b"");
            let buf = receive_until(&socket, buf, 1, how, &what);
            let vec = check_vec_back(&what, buf, &watch, b"Q");
            drop_watched(&what, vec, watch);
            // Datagrams, over IPv4 and IPv6: the source address and the bytes.
            for (dsocket, dlocal, dpeer) in
                [(&dsocket, dlocal, &dpeer), (&dsocket6, dlocal6, &dpeer6)]
            {
                let (buf, watch) = vec_buf(7, b"dgram");
                let (r, buf) = run(dsocket.send_to(buf, dpeer.local_addr().unwrap()), how);
                assert_eq!(r, Ok(5), "{what}: send_to");
                let mut d = [0u8; 16];
                let (n, from) = dpeer.recv_from(&mut d).unwrap();
                assert_eq!((&d[..n], from), (&b"dgram"[..], dlocal), "{what}");
                let vec = check_vec_back(&what, buf, &watch, b"dgram");
                drop_watched(&what, vec, watch);
                dpeer.send_to(b"reply!", dlocal).unwrap();
                let (buf, watch) = vec_buf(4097, b"pp");
                let (r, buf) = run(dsocket.receive_from(buf), how);
                assert_eq!(
                    r,
                    Ok((6, dpeer.local_addr().unwrap())),
                    "{what}: receive_from"
                );
                let vec = check_vec_back(&what, buf, &watch, b"ppreply!");
                drop_watched(&what, vec, watch);
                // A datagram cut to a vector of capacity 1.
                dpeer.send_to(b"long datagram", dlocal).unwrap();
                let (buf, watch) = vec_buf(1, b"");
                let (r, buf) = run(dsocket.receive_from(buf), how);
                let count = buf.len();
                assert_eq!(count, 1, "{what}: {r:?}");
                let vec = check_vec_back(&what, buf, &watch, b"l");
                drop_watched(&what, vec, watch);
                // A datagram into a slice of a vector buffer.
                dpeer.send_to(b"sl", dlocal).unwrap();
                let (buf, watch) = vec_buf(16, b"ab");
                let slice = buf.slice(2..6).map_err(|(e, _)| e).unwrap();
                let (r, slice) = run(dsocket.receive_from(slice), how);
                assert_eq!(r, Ok((2, dpeer.local_addr().unwrap())), "{what}");
                let vec = check_vec_back(&what, slice.into_inner(), &watch, b"absl");
                drop_watched(&what, vec, watch);
            }
        }
        drop((socket, dsocket, dsocket6));
        within("client drop", move || drop(client));
        no_violations(session);
    }
}

// =================================================================================================
// 5. Lists of pool and vector buffers
// =================================================================================================

#[test]
fn lists_of_pool_and_vector_buffers_send_every_byte_and_give_the_vectors_back() {
    for (round, (mode, plan)) in plans(500).into_iter().enumerate() {
        let session = Session::start();
        let client = WskClient::register(driver(&session)).unwrap();
        let (socket, mut peer) = connected(&client);
        let (dsocket, dlocal, dpeer) = bound_datagram(&client, "127.0.0.1:0");
        session.set_faults(plan);
        let how = HOWS[round % HOWS.len()];
        let what = format!("{mode} {how:?}");
        let (b, b_watch) = vec_buf(1, b"b");
        let (empty, empty_watch) = vec_buf(4097, b"");
        let (de, de_watch) = vec_buf(3, b"de");
        let mut list = BufList::new();
        let mut alpha = Buf::with_capacity(8).unwrap();
        alpha.extend_from_slice(b"alpha").unwrap();
        list.push(alpha).unwrap();
        list.push(b).unwrap();
        list.push(empty).unwrap();
        list.push(Buf::from_slice(b"gamma").unwrap()).unwrap();
        list.push(de).unwrap();
        assert_eq!(list.total_len(), 13);
        for pass in 0..3 {
            let (r, back) = run(socket.send_vectored(list), how);
            assert_eq!(r, Ok(13), "{what} pass {pass}");
            let mut got = [0u8; 13];
            peer.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"alphabgammade", "{what} pass {pass}");
            list = back;
        }
        // As datagrams: one per buffer holding bytes.
        let (r, back) = run(
            dsocket.send_messages(list, dpeer.local_addr().unwrap()),
            how,
        );
        eprintln!("{what}: send_messages: {r:?}");
        assert!(r.is_ok(), "{what}: {r:?}");
        list = back;
        let mut got = Vec::new();
        dpeer
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut d = [0u8; 64];
        while let Ok((n, from)) = dpeer.recv_from(&mut d) {
            assert_eq!(from, dlocal);
            got.push(d[..n].to_vec());
        }
        dpeer.set_read_timeout(Some(DEADLINE)).unwrap();
        let non_empty: Vec<Vec<u8>> = got.iter().filter(|d| !d.is_empty()).cloned().collect();
        assert_eq!(
            non_empty,
            vec![
                b"alpha".to_vec(),
                b"b".to_vec(),
                b"gamma".to_vec(),
                b"de".to_vec()
            ],
            "{what}: the datagrams"
        );
        // Buffers replaced and changed in place, between sends.
        let (big, big_watch) = vec_buf(100, &[b'B'; 100]);
        let b = std::mem::replace(&mut list.bufs_mut()[1], big);
        let vec = check_vec_back(&what, b, &b_watch, b"b");
        drop_watched(&what, vec, b_watch);
        list.bufs_mut()[2].extend_from_slice(b"now").unwrap();
        list.bufs_mut()[4].truncate(1);
        let mut expected = b"alpha".to_vec();
        expected.extend_from_slice(&[b'B'; 100]);
        expected.extend_from_slice(b"nowgammad");
        let (r, back) = run(socket.send_vectored(list), how);
        assert_eq!(r, Ok(expected.len()), "{what}: after the changes");
        let mut got = vec![0u8; expected.len()];
        peer.read_exact(&mut got).unwrap();
        assert!(
            got == expected,
            "{what}: {:?}",
            String::from_utf8_lossy(&got)
        );
        // A smaller pool buffer in place of the large vector.
        let mut list = back;
        let big = std::mem::replace(&mut list.bufs_mut()[1], Buf::from_slice(b"s").unwrap());
        let vec = check_vec_back(&what, big, &big_watch, &[b'B'; 100]);
        drop_watched(&what, vec, big_watch);
        let (r, list) = run(socket.send_vectored(list), how);
        assert_eq!(r, Ok(15), "{what}");
        let mut got = [0u8; 15];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"alphasnowgammad", "{what}");
        // The vectors come back whole.
        let mut bufs = list.into_bufs();
        let de = bufs.pop().unwrap();
        let vec = check_vec_back_from(&what, de, &de_watch, b"d", 2);
        drop_watched(&what, vec, de_watch);
        let empty = bufs.remove(2);
        let vec = check_vec_back(&what, empty, &empty_watch, b"now");
        drop_watched(&what, vec, empty_watch);
        drop(bufs);
        drop((socket, dsocket));
        within("client drop", move || drop(client));
        no_violations(session);
    }
}

#[test]
fn lists_of_vector_buffers_under_mdl_allocation_failures_leak_nothing() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, mut peer) = connected(&client);
    let mut watches = Vec::new();
    let mut sent = Vec::new();
    for every in [2u64, 3, 4, 5, 7] {
        session.set_faults(FaultPlan::new(every).fail_mdl_allocation(Nth::Every(every)));
        let mut list = BufList::new();
        let mut expected = Vec::new();
        for i in 0..12usize {
            let data = vec![b'a' + i as u8; 1 + i * 3];
            let vec = {
                let mut v = Vec::with_capacity(2 + i * 5);
                v.extend_from_slice(&data);
                v
            };
            let watch = Watch::new(&vec);
            let buf = match Buf::from_vec(vec) {
                Ok(buf) => buf,
                Err(e) => {
                    assert_eq!(e, Error::INSUFFICIENT_RESOURCES);
                    watch.freed_cleanly("a vector refused for want of an MDL");
                    continue;
                }
            };
            let before = list.bufs().len();
            let ptr = buf.as_ptr() as usize;
            match list.push(buf) {
                Ok(()) => {
                    expected.extend_from_slice(&data);
                    watches.push(watch);
                }
                Err(e) => {
                    assert_eq!(e, Error::INSUFFICIENT_RESOURCES);
                    assert_eq!(list.bufs().len(), before, "a failed push changed the list");
                    // The buffer went with the failed push: its vector is freed.
                    watch.freed_cleanly("a buffer whose push failed");
                    let _ = ptr;
                }
            }
        }
        // A buffer replaced by a larger vector: the send needs a new partial MDL, which
        // may fail; the list comes back whole, and sends once memory is back.
        if !list.bufs().is_empty() {
            let (larger, watch) = loop {
                let (vec, watch) = watched_vec(50, &[b'Z'; 40]);
                match Buf::from_vec(vec) {
                    Ok(buf) => break (buf, watch),
                    Err(e) => {
                        assert_eq!(e, Error::INSUFFICIENT_RESOURCES);
                        watch.freed_cleanly("a vector refused for want of an MDL");
                    }
                }
            };
            let replaced = std::mem::replace(&mut list.bufs_mut()[0], larger);
            let removed = replaced.len();
            drop(replaced);
            expected.splice(0..removed, [b'Z'; 40]);
            watches.push(watch);
        }
        let (r, mut list) = socket
            .send_vectored(list)
            .timeout(DEADLINE)
            .wait_timeout(10_000);
        match r {
            Ok(n) => {
                assert_eq!(n, expected.len());
                sent.extend_from_slice(&expected);
            }
            Err(e) if expected.is_empty() => assert_eq!(e, Error::INVALID_BUFFER_SIZE),
            Err(e) => {
                assert_eq!(e, Error::INSUFFICIENT_RESOURCES);
                session.set_faults(FaultPlan::new(every));
                let (r, back) = socket
                    .send_vectored(list)
                    .timeout(DEADLINE)
                    .wait_timeout(10_000);
                assert_eq!(r, Ok(expected.len()), "the list refused once, sent again");
                sent.extend_from_slice(&expected);
                list = back;
            }
        }
        eprintln!("every {every}: {} buffers, {r:?}", list.bufs().len());
        drop(list);
    }
    session.set_faults(FaultPlan::new(1));
    let mut got = vec![0u8; sent.len()];
    peer.read_exact(&mut got).unwrap();
    assert!(got == sent);
    for watch in watches {
        watch.freed_cleanly("a vector of a dropped list");
    }
    drop(socket);
    within("client drop", move || drop(client));
    no_violations(session);
}

// =================================================================================================
// 6. Vector buffers abandoned in flight, timed out, forgotten
// =================================================================================================

#[test]
fn vector_buffers_abandoned_in_flight_are_freed_only_after_their_completion() {
    for (mode, plan) in [
        (
            "delayed",
            FaultPlan::new(600).delay_completions(Duration::from_millis(200)),
        ),
        (
            "pending",
            FaultPlan::new(601).completion(CompletionMode::AlwaysPending),
        ),
        ("mixed", FaultPlan::new(602)),
    ] {
        let session = Session::start();
        let client = WskClient::register(driver(&session)).unwrap();
        let (socket, mut peer) = connected(&client);
        let (dsocket, dlocal, dpeer) = bound_datagram(&client, "127.0.0.1:0");
        session.set_faults(plan);
        // A receive and a receive_from dropped in flight: their vectors outlive the drop.
        let (buf, watch) = vec_buf(4096, b"r");
        let mut op = socket.receive(buf);
        assert!(
            poll_once(&mut op).is_none(),
            "{mode}: the receive is in flight"
        );
        let (dbuf, dwatch) = vec_buf(4096, b"");
        let mut dop = dsocket.receive_from(dbuf);
        assert!(
            poll_once(&mut dop).is_none(),
            "{mode}: the receive_from is in flight"
        );
        drop(op);
        drop(dop);
        if mode == "delayed" {
            assert!(
                !watch.is_freed() && !dwatch.is_freed(),
                "{mode}: a vector freed before the cancelled request completed"
            );
        }
        eventually(&format!("{mode}: the abandoned vectors are freed"), || {
            watch.is_freed() && dwatch.is_freed()
        });
        // Then the peers send: nothing may land in the freed vectors.
        peer.write_all(b"after the drop").unwrap();
        dpeer.send_to(b"after the drop", dlocal).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let (buf, w) = vec_buf(64, b"");
        let buf = receive_until(&socket, buf, 14, How::WaitTimeout, mode);
        let vec = check_vec_back(mode, buf, &w, b"after the drop");
        drop_watched(mode, vec, w);
        let (dbuf, w) = vec_buf(64, b"");
        let (r, dbuf) = dsocket.receive_from(dbuf).wait_timeout(10_000);
        assert_eq!(r, Ok((14, dpeer.local_addr().unwrap())), "{mode}");
        let vec = check_vec_back(mode, dbuf, &w, b"after the drop");
        drop_watched(mode, vec, w);
        if let Err(e) = watch.release() {
            panic!("{mode}: the dropped receive's vector: {e}");
        }
        if let Err(e) = dwatch.release() {
            panic!("{mode}: the dropped receive_from's vector: {e}");
        }

        // Waited receives timing out, every way: the very vector back, never written after.
        let mut kept = Vec::new();
        for how in 0..5 {
            let (buf, watch) = vec_buf(64, b"q");
            let op = socket.receive(buf);
            let started = Instant::now();
            let (r, buf) = match how {
                0 => op.wait_timeout(30),
                1 => op.timeout(Duration::from_millis(30)).wait(),
                2 => op
                    .deadline(Deadline::after(Duration::from_millis(30)))
                    .wait(),
                3 => op.timeout(Duration::from_millis(30)).wait_timeout(10_000),
                _ => op.timeout(DEADLINE).wait_timeout(30),
            };
            assert!(started.elapsed() < DEADLINE);
            assert_eq!(r, Err(Error::TIMED_OUT), "{mode} {how}");
            let vec = check_vec_back(&format!("{mode} {how}"), buf, &watch, b"q");
            kept.push((vec, watch));
            let (dbuf, dwatch) = vec_buf(64, b"");
            let op = dsocket.receive_from(dbuf);
            let (r, dbuf) = match how {
                0 => op.wait_timeout(20),
                1 => op.timeout(Duration::from_millis(20)).wait(),
                _ => op
                    .deadline(Deadline::after(Duration::from_millis(20)))
                    .wait(),
            };
            assert_eq!(r, Err(Error::TIMED_OUT), "{mode} {how}");
            let vec = check_vec_back(&format!("{mode} {how}"), dbuf, &dwatch, b"");
            kept.push((vec, dwatch));
        }
        peer.write_all(b"late data").unwrap();
        dpeer.send_to(b"late dgram", dlocal).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        for (i, (vec, watch)) in kept.into_iter().enumerate() {
            let data = vec.clone();
            // Re-checked: still the vector, still untouched beyond its data.
            let vec = check_vec_back(
                &format!("{mode}: timed-out vector {i} after late data"),
                Buf::from_vec(vec).unwrap(),
                &watch,
                &data,
            );
            drop_watched(mode, vec, watch);
        }
        let (buf, w) = vec_buf(64, b"");
        let buf = receive_until(&socket, buf, 9, How::WaitTimeout, mode);
        let vec = check_vec_back(mode, buf, &w, b"late data");
        drop_watched(mode, vec, w);
        let (dbuf, w) = vec_buf(64, b"");
        let (r, dbuf) = dsocket.receive_from(dbuf).wait_timeout(10_000);
        assert_eq!(r, Ok((10, dpeer.local_addr().unwrap())), "{mode}");
        let vec = check_vec_back(mode, dbuf, &w, b"late dgram");
        drop_watched(mode, vec, w);

        // A large send dropped while the peer does not read: the vector stays until the
        // send completes (or is cancelled), then is freed with its layout.
        let big: Vec<u8> = (0..(8usize << 20)).map(|i| (i % 253) as u8).collect();
        let watch = Watch::new(&big);
        let mut op = socket.send(Buf::from_vec(big).unwrap());
        let in_flight = poll_once(&mut op).is_none();
        drop(op);
        if in_flight && mode == "delayed" {
            assert!(
                !watch.is_freed(),
                "{mode}: the send's vector freed in flight"
            );
        }
        // Drain what the peer got, until the vector is freed.
        peer.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let mut drained = 0usize;
        let mut sink = vec![0u8; 1 << 16];
        let end = Instant::now() + DEADLINE;
        while !watch.is_freed() {
            assert!(
                Instant::now() < end,
                "{mode}: the dropped send's vector never freed"
            );
            if let Ok(n) = peer.read(&mut sink) {
                for (k, &b) in sink[..n].iter().enumerate() {
                    assert_eq!(
                        b,
                        ((drained + k) % 253) as u8,
                        "{mode}: byte {}",
                        drained + k
                    );
                }
                drained += n;
            }
        }
        // And after: nothing read from the freed vector (its poison) reaches the peer.
        let quiet_until = Instant::now() + Duration::from_millis(200);
        while Instant::now() < quiet_until {
            if let Ok(n) = peer.read(&mut sink) {
                for (k, &b) in sink[..n].iter().enumerate() {
                    assert_eq!(
                        b,
                        ((drained + k) % 253) as u8,
                        "{mode}: byte {} sent after the vector was freed",
                        drained + k
                    );
                }
                drained += n;
            }
        }
        peer.set_read_timeout(Some(DEADLINE)).unwrap();
        if let Err(e) = watch.release() {
            panic!("{mode}: the dropped send's vector: {e}");
        }
        eprintln!(
            "{mode}: {drained} bytes of the dropped send arrived before its vector was freed"
        );
        drop((socket, dsocket));
        within("client drop", move || drop(client));
        no_violations(session);
    }
}

#[test]
fn a_forgotten_operation_never_frees_its_vector() {
    let session = Session::start();
    session.set_faults(FaultPlan::new(610).completion(CompletionMode::AlwaysPending));
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, mut peer) = connected(&client);
    let (buf, watch) = vec_buf(64, b"f");
    let mut op = socket.receive(buf);
    assert!(poll_once(&mut op).is_none());
    std::mem::forget(op);
    within("client drop with a forgotten receive", move || {
        drop((socket, client))
    });
    let _ = peer.write_all(b"into the forgotten receive");
    std::thread::sleep(Duration::from_millis(50));
    let (_, findings) = session.conclude();
    assert!(
        !watch.is_freed(),
        "the vector of a forgotten operation was freed"
    );
    assert_only_leaks(&findings);
    // The leaked vector stays leaked; only the watch ends.
    watch.release().unwrap();
}

// =================================================================================================
// 7. The socket or the client going away under threads blocked in waits
// =================================================================================================

type Waited = (std::result::Result<usize, Error>, Buf);

#[test]
fn sockets_or_the_client_going_from_another_thread_end_blocked_waits_with_the_vectors_back() {
    for what in 0..4u64 {
        for (mode, plan) in [
            (
                "pending",
                FaultPlan::new(700 + what).completion(CompletionMode::AlwaysPending),
            ),
            ("mixed", FaultPlan::new(710 + what)),
            (
                "delayed",
                FaultPlan::new(720 + what).delay_completions(Duration::from_millis(30)),
            ),
        ] {
            let label = format!("case {what} {mode}");
            let session = Session::start();
            let client = WskClient::register(driver(&session)).unwrap();
            let (socket, _peer) = connected(&client);
            let (dsocket, _dlocal, _dpeer) = bound_datagram(&client, "127.0.0.1:0");
            // A second connection whose peer never reads: a large send blocks on it.
            let (ssocket, _speer) = connected(&client);
            session.set_faults(plan);
            let (r1, w1) = vec_buf(64, b"v1");
            let (r2, w2) = vec_buf(1, b"");
            let (d1, wd) = vec_buf(4097, b"d");
            let big: Vec<u8> = (0..(32usize << 20)).map(|i| (i % 251) as u8).collect();
            let wbig = Watch::new(&big);
            let big = Buf::from_vec(big).unwrap();
            let mut pool = Buf::with_capacity(64).unwrap();
            pool.extend_from_slice(b"pool").unwrap();
            let started = Arc::new(AtomicUsize::new(0));
            let spawn = |f: Box<dyn FnOnce() -> Waited + Send>| {
                let started = Arc::clone(&started);
                std::thread::spawn(move || {
                    started.fetch_add(1, Ordering::SeqCst);
                    let t = Instant::now();
                    let out = f();
                    (out, t.elapsed())
                })
            };
            let op1 = socket.receive(r1);
            let op2 = socket.receive(r2);
            let op3 = socket.receive(pool);
            let dop = dsocket.receive_from(d1);
            let sop = ssocket.send(big);
            let waiters = vec![
                spawn(Box::new(move || op1.wait())),
                spawn(Box::new(move || op2.timeout(DEADLINE * 3).wait())),
                spawn(Box::new(move || op3.wait_timeout(30_000))),
                spawn(Box::new(move || {
                    let (r, b) = dop.wait();
                    (r.map(|(n, _)| n), b)
                })),
                spawn(Box::new(move || {
                    sop.deadline(Deadline::after(DEADLINE * 3)).wait()
                })),
            ];
            while started.load(Ordering::SeqCst) < waiters.len() {
                std::thread::yield_now();
            }
            std::thread::sleep(Duration::from_millis(60));
            let kept = match what {
                0 => {
                    let (c, d, s) = (socket.close(), dsocket.close(), ssocket.close());
                    let _ = within("closes", move || (c.wait(), d.wait(), s.wait()));
                    Some(client)
                }
                1 => {
                    within("socket drops on another thread", move || {
                        drop((socket, dsocket, ssocket))
                    });
                    Some(client)
                }
                2 => {
                    within("client drop on another thread", move || {
                        drop((client, socket, dsocket, ssocket))
                    });
                    None
                }
                _ => {
                    // The client alone, its sockets still held here.
                    within("client drop on another thread", move || drop(client));
                    let results: Vec<_> = waiters;
                    let outs = collect_waiters(&label, results);
                    drop((socket, dsocket, ssocket));
                    check_gone_waiters(&label, outs, [&w1, &w2, &wd, &wbig]);
                    finish_gone(&label, session, [w1, w2, wd, wbig]);
                    continue;
                }
            };
            let outs = collect_waiters(&label, waiters);
            check_gone_waiters(&label, outs, [&w1, &w2, &wd, &wbig]);
            if let Some(client) = kept {
                within("client drop", move || drop(client));
            }
            finish_gone(&label, session, [w1, w2, wd, wbig]);
        }
    }
}

fn collect_waiters(
    label: &str,
    waiters: Vec<std::thread::JoinHandle<(Waited, Duration)>>,
) -> Vec<(Waited, Duration)> {
    waiters
        .into_iter()
        .map(|w| {
            within(&format!("{label}: a blocked waiter"), move || {
                w.join().unwrap()
            })
        })
        .collect()
}

fn check_gone_waiters(label: &str, outs: Vec<(Waited, Duration)>, watches: [&Watch; 4]) {
    let mut outs = outs.into_iter();
    let expected: [(&[u8], &Watch); 2] = [(b"v1", watches[0]), (b"", watches[1])];
    for (prefix, watch) in expected {
        let ((r, buf), took) = outs.next().unwrap();
        assert!(r.is_err(), "{label}: a receive went on: {r:?}");
        assert!(
            took < DEADLINE,
            "{label}: the wait ended only at its timeout"
        );
        assert_ne!(r, Err(Error::TIMED_OUT), "{label}");
        let vec = check_vec_back(label, buf, watch, prefix);
        drop(vec);
    }
    let ((r, pool), took) = outs.next().unwrap();
    assert!(
        r.is_err() && took < DEADLINE,
        "{label}: the pool receive: {r:?}"
    );
    assert_eq!((&pool[..], pool.capacity()), (&b"pool"[..], 64), "{label}");
    drop(pool);
    let ((r, buf), took) = outs.next().unwrap();
    assert!(
        r.is_err() && took < DEADLINE,
        "{label}: the receive_from: {r:?}"
    );
    let vec = check_vec_back(label, buf, watches[2], b"d");
    drop(vec);
    let ((r, buf), took) = outs.next().unwrap();
    assert!(
        took < DEADLINE,
        "{label}: the send's wait ended only at its timeout"
    );
    if let Ok(n) = r {
        assert!(
            n < 32 << 20,
            "{label}: a send to a peer that never reads completed"
        );
    }
    assert_ne!(r, Err(Error::TIMED_OUT), "{label}");
    assert_eq!(
        buf.capacity(),
        watches[3].size,
        "{label}: the send's vector"
    );
    let vec = buf.into_vec().expect("the send's vector");
    assert_eq!(
        (vec.as_ptr() as usize, vec.len()),
        (watches[3].ptr, 32 << 20),
        "{label}"
    );
    assert!(vec.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
    drop(vec);
}

fn finish_gone(label: &str, session: Session, watches: [Watch; 4]) {
    for watch in watches {
        watch.freed_cleanly(label);
    }
    let (_, violations) = session.conclude();
    assert!(violations.is_empty(), "{label}: {violations:#?}");
}

// =================================================================================================
// 8. Waited operations refused before the provider: the vector itself comes back
// =================================================================================================

#[test]
fn waited_operations_refused_before_the_provider_hand_back_the_vector_itself() {
    for (mode, plan) in plans(800) {
        let session = Session::start();
        let client = WskClient::register(driver(&session)).unwrap();
        let (socket, mut peer) = connected(&client);
        let (dsocket, dlocal, dpeer) = bound_datagram(&client, "127.0.0.1:0");
        session.set_faults(plan);
        let to = dpeer.local_addr().unwrap();
        let before = session.report();
        for how in HOWS {
            let what = format!("{mode} {how:?}");
            // No room to receive into.
            let (buf, w) = vec_buf(3, b"ful");
            let (r, buf) = run(socket.receive(buf), how);
            assert_eq!(r, Err(Error::INVALID_BUFFER_SIZE), "{what}: a full vector");
            let vec = check_vec_back(&what, buf, &w, b"ful");
            drop_watched(&what, vec, w);
            let (buf, w) = vec_buf(1, b"x");
            let (r, buf) = run(dsocket.receive_from(buf), how);
            assert!(r.is_err(), "{what}: receive_from into a full vector: {r:?}");
            let vec = check_vec_back(&what, buf, &w, b"x");
            drop_watched(&what, vec, w);
            // Nothing to send.
            let (buf, w) = vec_buf(10, b"");
            let (r, buf) = run(socket.send(buf), how);
            assert_eq!(
                r,
                Err(Error::INVALID_BUFFER_SIZE),
                "{what}: an empty vector"
            );
            let vec = check_vec_back(&what, buf, &w, b"");
            drop_watched(&what, vec, w);
            // More to receive exactly than fits.
            let (buf, w) = vec_buf(4, b"a");
            let (r, buf) = run(socket.receive_exact(buf, 4), how);
            assert!(
                r.is_err(),
                "{what}: receive_exact beyond the capacity: {r:?}"
            );
            let vec = check_vec_back(&what, buf, &w, b"a");
            drop_watched(&what, vec, w);
            // A slice out of range is refused with the buffer.
            let (buf, w) = vec_buf(8, b"ab");
            let (e, buf) = buf.slice(3..5).expect_err("a slice after a gap");
            assert_eq!(e, Error::INVALID_BUFFER_SIZE);
            let (e, buf) = buf.slice(0..9).expect_err("a slice beyond the capacity");
            assert_eq!(e, Error::INVALID_BUFFER_SIZE);
            let vec = check_vec_back(&what, buf, &w, b"ab");
            drop_watched(&what, vec, w);
        }
        // At DISPATCH_LEVEL (raised, and under a spin lock): refused at once, never issued.
        let lock = SpinLock::new(0u32);
        for raised in [true, false] {
            let mut outs: Vec<(String, Waited, Watch, &[u8])> = Vec::new();
            // Made at PASSIVE_LEVEL: `from_vec` needs APC_LEVEL at most.
            let mut made: Vec<(Buf, Watch)> =
                [&b"r"[..], b"t", b"u", b"send", b"dgram", b"", b"irp", b"iv"]
                    .iter()
                    .map(|p| vec_buf(16, p))
                    .collect();
            made.reverse();
            let (refused_vec, refused_watch) = watched_vec(8, b"v");
            let irp = wsk::Irp::new().unwrap();
            {
                let _raised = raised.then(|| wsk_host::irql::raise(Irql::DISPATCH.0));
                let _guard = (!raised).then(|| lock.lock());
                assert!(Irql::current() >= Irql::DISPATCH);
                let (b, w) = made.pop().unwrap();
                outs.push(("receive wait".into(), socket.receive(b).wait(), w, b"r"));
                let (b, w) = made.pop().unwrap();
                outs.push((
                    "receive wait_timeout".into(),
                    socket.receive(b).wait_timeout(5_000),
                    w,
                    b"t",
                ));
                let (b, w) = made.pop().unwrap();
                outs.push((
                    "receive timeout().wait()".into(),
                    socket.receive(b).timeout(DEADLINE).wait(),
                    w,
                    b"u",
                ));
                let (b, w) = made.pop().unwrap();
                outs.push(("send".into(), socket.send(b).wait(), w, b"send"));
                let (b, w) = made.pop().unwrap();
                outs.push((
                    "send_to".into(),
                    dsocket.send_to(b, to).wait_timeout(5_000),
                    w,
                    b"dgram",
                ));
                let (b, w) = made.pop().unwrap();
                let (r, b) = dsocket
                    .receive_from(b)
                    .deadline(Deadline::after(DEADLINE))
                    .wait();
                outs.push(("receive_from".into(), (r.map(|(n, _)| n), b), w, b""));
                let (b, w) = made.pop().unwrap();
                let ((r, b), irp) = socket.receive(b).with_irp(irp).wait_timeout(5_000);
                assert!(irp.is_some(), "{mode}: the caller's IRP back");
                outs.push(("receive with_irp".into(), (r, b), w, b"irp"));
                // from_vec needs APC_LEVEL at most: refused, the vector freed.
                assert_eq!(Buf::from_vec(refused_vec).err(), Some(Error::IRQL_TOO_HIGH));
                assert_eq!(
                    refused_watch.freed_size(),
                    Some(8),
                    "{mode}: the refused vector is freed"
                );
                // into_vec is allowed at DISPATCH_LEVEL.
                let (b, w) = made.pop().unwrap();
                let v = b.into_vec().unwrap();
                assert_eq!(&v[..], b"iv");
                drop(v);
                assert_eq!(w.freed_size(), Some(16));
                assert!(w.release().is_ok());
            }
            assert!(refused_watch.release().is_ok());
            for (name, (r, buf), w, prefix) in outs {
                let what = format!("{mode} {name} (raised: {raised})");
                assert_eq!(r, Err(Error::IRQL_TOO_HIGH), "{what}");
                let vec = check_vec_back(&what, buf, &w, prefix);
                drop_watched(&what, vec, w);
            }
        }
        // The socket closed (or the client dropped) after the operation was made, before
        // its wait.
        let (b, w) = vec_buf(16, b"c");
        let op = socket.receive(b);
        let (db, dw) = vec_buf(16, b"d");
        let dop = dsocket.receive_from(db);
        within("close", move || socket.close().wait()).unwrap();
        let (r, buf) = op.wait_timeout(10_000);
        assert!(r.is_err(), "{mode}: a receive on a closed socket: {r:?}");
        let vec = check_vec_back(mode, buf, &w, b"c");
        drop_watched(mode, vec, w);
        let (b, w) = vec_buf(16, b"e");
        let sop = dsocket.send_to(b, to);
        within("client drop", move || drop(client));
        let (r, buf) = dop.timeout(DEADLINE).wait();
        assert!(
            r.is_err(),
            "{mode}: a receive_from after the client's drop: {r:?}"
        );
        let vec = check_vec_back(mode, buf, &dw, b"d");
        drop_watched(mode, vec, dw);
        let (r, buf) = sop.wait();
        assert!(
            r.is_err(),
            "{mode}: a send_to after the client's drop: {r:?}"
        );
        let vec = check_vec_back(mode, buf, &w, b"e");
        drop_watched(mode, vec, w);
        drop(dsocket);
        let after = session.report();
        assert_eq!(
            (after.bytes_sent, after.bytes_received),
            (before.bytes_sent, before.bytes_received),
            "{mode}: a refused operation reached the provider"
        );
        let mut rest = Vec::new();
        peer.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let _ = peer.read_to_end(&mut rest);
        assert!(rest.is_empty(), "{mode}: the peer got {rest:?}");
        let _ = dlocal;
        no_violations(session);
    }
}

// =================================================================================================
// 9. Waits where no wait may block: tasks (their first poll too), callbacks, wakers, drops
// =================================================================================================

/// What a wait attempted where none may block gave: where, its result, how long it took, the
/// IRQL there, and whether the buffer that came back is the one given (same address and
/// capacity).
#[derive(Debug)]
struct Attempt {
    place: String,
    result: std::result::Result<(), Error>,
    took: Duration,
    irql: u8,
    same_buffer: bool,
}

#[derive(Default)]
struct Attempts(Mutex<Vec<Attempt>>);

impl Attempts {
    /// Runs `wait` (which returns its result and whether its buffer came back) and records it.
    fn attempt(&self, place: &str, wait: impl FnOnce() -> (std::result::Result<(), Error>, bool)) {
        let irql = Irql::current().0;
        let t = Instant::now();
        let (result, same_buffer) = wait();
        self.0.lock().unwrap().push(Attempt {
            place: place.to_string(),
            result,
            took: t.elapsed(),
            irql,
            same_buffer,
        });
    }

    /// Every attempt was refused with `IRQL_TOO_HIGH` at once, its buffer given back.
    fn check_all_refused(&self, what: &str, at_least: usize) {
        let attempts = self.0.lock().unwrap();
        assert!(
            attempts.len() >= at_least,
            "{what}: only {} attempts: {attempts:#?}",
            attempts.len()
        );
        for a in attempts.iter() {
            assert!(
                a.result == Err(Error::IRQL_TOO_HIGH) && a.took < Duration::from_millis(500),
                "{what}: a wait in {} was not refused at once: {a:#?}",
                a.place
            );
            assert!(
                a.same_buffer,
                "{what}: the buffer did not come back: {a:#?}"
            );
        }
    }
}

/// A waited receive into `buf` on `socket` (no data comes): refused, or it blocks ~1 s.
fn attempt_receive(
    attempts: &Attempts,
    place: &str,
    socket: &wsk::ConnectionSocket,
    buf: Buf,
    how: u32,
) -> Buf {
    let (ptr, cap) = (buf.as_ptr() as usize, buf.capacity());
    let mut back = None;
    attempts.attempt(place, || {
        let op = socket.receive(buf);
        let (r, b) = match how % 4 {
            0 => op.wait_timeout(1_000),
            1 => op.timeout(Duration::from_millis(1_000)).wait(),
            2 => op
                .deadline(Deadline::after(Duration::from_millis(1_000)))
                .wait(),
            _ => op.timeout(Duration::from_millis(1_000)).wait_timeout(1_000),
        };
        let same = b.as_ptr() as usize == ptr && b.capacity() == cap;
        back = Some(b);
        (r.map(|_| ()), same)
    });
    back.unwrap()
}

#[test]
fn waits_in_a_tasks_first_poll_inside_spawn_at_passive_level_are_refused() {
    for (mode, plan) in plans(900) {
        let session = Session::start();
        let client = WskClient::register(driver(&session)).unwrap();
        let (socket, mut peer) = connected(&client);
        let (dsocket, dlocal, dpeer) = bound_datagram(&client, "127.0.0.1:0");
        session.set_faults(plan);
        let socket = Arc::new(socket);
        let dsocket = Arc::new(dsocket);
        let tasks = TaskSet::new(driver(&session)).unwrap();
        let attempts = Arc::new(Attempts::default());
        let (mut bufs, watches): (Vec<Buf>, Vec<Watch>) =
            (0..13).map(|i| vec_buf(32 + i, b"k")).unzip();
        let back: Arc<Mutex<Vec<Buf>>> = Arc::default();
        let done = Arc::new(AtomicBool::new(false));
        let to = dpeer.local_addr().unwrap();
        {
            let (socket, dsocket, attempts, back, done) = (
                Arc::clone(&socket),
                Arc::clone(&dsocket),
                Arc::clone(&attempts),
                Arc::clone(&back),
                Arc::clone(&done),
            );
            let mut mine: Vec<Buf> = std::mem::take(&mut bufs);
            let started = Instant::now();
            tasks
                .spawn(async move {
                    // The first poll: inside `spawn`, on the test's thread, at PASSIVE_LEVEL.
                    for how in 0..4 {
                        let b = mine.pop().unwrap();
                        let b = attempt_receive(&attempts, "first poll: receive", &socket, b, how);
                        back.lock().unwrap().push(b);
                    }
                    let b = mine.pop().unwrap();
                    let (ptr, mut out) = (b.as_ptr() as usize, None);
                    attempts.attempt("first poll: send", || {
                        let (r, b) = socket.send(b).wait_timeout(1_000);
                        let same = b.as_ptr() as usize == ptr;
                        out = Some(b);
                        (r.map(|_| ()), same)
                    });
                    back.lock().unwrap().push(out.take().unwrap());
                    let b = mine.pop().unwrap();
                    let ptr = b.as_ptr() as usize;
                    attempts.attempt("first poll: send_to", || {
                        let (r, b) = dsocket.send_to(b, to).wait();
                        let same = b.as_ptr() as usize == ptr;
                        out = Some(b);
                        (r.map(|_| ()), same)
                    });
                    back.lock().unwrap().push(out.take().unwrap());
                    let b = mine.pop().unwrap();
                    let ptr = b.as_ptr() as usize;
                    attempts.attempt("first poll: receive_from", || {
                        let (r, b) = dsocket.receive_from(b).wait_timeout(1_000);
                        let same = b.as_ptr() as usize == ptr;
                        out = Some(b);
                        (r.map(|_| ()), same)
                    });
                    back.lock().unwrap().push(out.take().unwrap());
                    let b = mine.pop().unwrap();
                    let ptr = b.as_ptr() as usize;
                    attempts.attempt("first poll: send_all", || {
                        let (r, b) = socket.send_all(b).wait();
                        let same = b.as_ptr() as usize == ptr;
                        out = Some(b);
                        (r, same)
                    });
                    back.lock().unwrap().push(out.take().unwrap());
                    attempts.attempt("first poll: block_on", || {
                        let r = wsk::task::block_on(async {});
                        (r, true)
                    });
                    // Then after an await: in the completion routine of the receive.
                    let b = mine.pop().unwrap();
                    let (r, b) = socket.receive(b).await;
                    attempts.attempt("the awaited receive (not a wait)", || {
                        (r.map(|_| ()).and(Err(Error::IRQL_TOO_HIGH)), true)
                    });
                    back.lock().unwrap().push(b);
                    for how in 0..4 {
                        let b = mine.pop().unwrap();
                        let b =
                            attempt_receive(&attempts, "after an await: receive", &socket, b, how);
                        back.lock().unwrap().push(b);
                    }
                    done.store(true, Ordering::SeqCst);
                })
                .unwrap();
            let took = started.elapsed();
            assert!(
                took < Duration::from_millis(900),
                "{mode}: spawn blocked {took:?}: a wait in the task's first poll blocked"
            );
        }
        peer.write_all(b"go").unwrap();
        eventually(&format!("{mode}: the task ends"), || {
            done.load(Ordering::SeqCst)
        });
        eventually("the set is idle", || tasks.is_empty());
        attempts.check_all_refused(mode, 14);
        assert!(
            attempts.0.lock().unwrap()[..9].iter().all(|a| a.irql == 0),
            "{mode}: the first poll ran at PASSIVE_LEVEL"
        );
        let back = std::mem::take(&mut *back.lock().unwrap());
        assert_eq!(back.len(), 13);
        for (buf, watch) in back.into_iter().zip(watches.into_iter().rev()) {
            let data: &[u8] = if buf.len() == 3 { b"kgo" } else { b"k" };
            let vec = check_vec_back(mode, buf, &watch, data);
            drop_watched(mode, vec, watch);
        }
        // Nothing was sent by the refused sends.
        let mut d = [0u8; 8];
        dpeer
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        assert!(
            dpeer.recv_from(&mut d).is_err(),
            "{mode}: a refused send_to sent"
        );
        let _ = dlocal;
        drop(tasks);
        drop((socket, dsocket));
        within("client drop", move || drop(client));
        no_violations(session);
    }
}

/// A handler that tries every wait inside its callbacks, with prepared vector buffers.
struct WaitingHandler {
    attempts: Arc<Attempts>,
    bufs: Mutex<Vec<Buf>>,
    back: Arc<Mutex<Vec<Buf>>>,
    peer: SocketAddr,
    refused_vec: Mutex<Option<(Vec<u8>, Watch)>>,
    from_vec: FromVecSeen,
}

/// What `Buf::from_vec` gave inside a callback, and the vector's watch.
type FromVecSeen = Arc<Mutex<Option<(std::result::Result<(), Error>, Watch)>>>;

impl WaitingHandler {
    fn take(&self) -> Option<Buf> {
        self.bufs.lock().unwrap().pop()
    }

    fn keep(&self, buf: Buf) {
        self.back.lock().unwrap().push(buf);
    }

    fn try_from_vec(&self) {
        if let Some((vec, watch)) = self.refused_vec.lock().unwrap().take() {
            let r = Buf::from_vec(vec).map(|b| self.keep(b));
            *self.from_vec.lock().unwrap() = Some((r, watch));
        }
    }
}

impl ConnectionEvents for WaitingHandler {
    fn on_receive<'a>(&self, data: ReceivedData<'a>) -> ReceiveDecision<'a> {
        self.try_from_vec();
        let socket = data.socket();
        for how in 0..4 {
            if let Some(b) = self.take() {
                let b = attempt_receive(&self.attempts, "on_receive: receive", socket, b, how);
                self.keep(b);
            }
        }
        if let Some(b) = self.take() {
            let (ptr, mut out) = (b.as_ptr() as usize, None);
            self.attempts.attempt("on_receive: send", || {
                let (r, b) = socket.send(b).wait_timeout(1_000);
                let same = b.as_ptr() as usize == ptr;
                out = Some(b);
                (r.map(|_| ()), same)
            });
            self.keep(out.unwrap());
        }
        data.consume()
    }
}

impl DatagramEvents for WaitingHandler {
    fn on_receive_from<'a>(&self, datagrams: ReceivedDatagrams<'a>) -> ReceiveDecision<'a> {
        self.try_from_vec();
        let socket = datagrams.socket();
        if let Some(b) = self.take() {
            let (ptr, mut out) = (b.as_ptr() as usize, None);
            self.attempts.attempt("on_receive_from: send_to", || {
                let (r, b) = socket
                    .send_to(b, self.peer)
                    .timeout(Duration::from_secs(1))
                    .wait();
                let same = b.as_ptr() as usize == ptr;
                out = Some(b);
                (r.map(|_| ()), same)
            });
            self.keep(out.unwrap());
        }
        if let Some(b) = self.take() {
            let (ptr, mut out) = (b.as_ptr() as usize, None);
            self.attempts.attempt("on_receive_from: receive_from", || {
                let (r, b) = socket.receive_from(b).wait_timeout(1_000);
                let same = b.as_ptr() as usize == ptr;
                out = Some(b);
                (r.map(|_| ()), same)
            });
            self.keep(out.unwrap());
        }
        datagrams.consume()
    }
}

#[test]
fn waits_inside_event_callbacks_are_refused_and_give_the_vectors_back() {
    for (mode, plan) in [
        ("default", FaultPlan::new(950)),
        (
            "concurrent events",
            FaultPlan::new(951).concurrent_events(3),
        ),
        (
            "inline at the caller's IRQL",
            FaultPlan::new(952)
                .completion(CompletionMode::AlwaysInline)
                .inline_completion_at_caller_irql(true),
        ),
    ] {
        let session = Session::start();
        session.set_faults(plan);
        let client = WskClient::register(driver(&session)).unwrap();
        let attempts = Arc::new(Attempts::default());
        let back: Arc<Mutex<Vec<Buf>>> = Arc::default();
        let mut watches = Vec::new();
        let mut handler = |count: usize, base: usize, peer: SocketAddr| {
            let (bufs, w): (Vec<Buf>, Vec<Watch>) =
                (0..count).map(|i| vec_buf(base + i, b"h")).unzip();
            watches.extend(w);
            let refused = watched_vec(8, b"fv");
            let from_vec = Arc::new(Mutex::new(None));
            (
                WaitingHandler {
                    attempts: Arc::clone(&attempts),
                    bufs: Mutex::new(bufs),
                    back: Arc::clone(&back),
                    peer,
                    refused_vec: Mutex::new(Some(refused)),
                    from_vec: Arc::clone(&from_vec),
                },
                from_vec,
            )
        };
        let dpeer = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (ch, ch_from_vec) = handler(5, 16, dpeer.local_addr().unwrap());
        let (dh, dh_from_vec) = handler(2, 32, dpeer.local_addr().unwrap());
        let (socket, mut peer) = connected_with_events(&client, ch);
        let dsocket = DatagramSocket::bind_with_events(&client, "127.0.0.1:0".parse().unwrap(), dh)
            .wait()
            .unwrap();
        let dlocal = dsocket.local_addr().timeout(DEADLINE).wait().unwrap();
        peer.write_all(b"wake the handler").unwrap();
        dpeer.send_to(b"wake the handler", dlocal).unwrap();
        eventually(&format!("{mode}: the callbacks ran"), || {
            back.lock().unwrap().len() == 7
        });
        attempts.check_all_refused(mode, 7);
        for (name, from_vec) in [
            ("on_receive", ch_from_vec),
            ("on_receive_from", dh_from_vec),
        ] {
            let (r, watch) = from_vec.lock().unwrap().take().expect("the callback ran");
            let irql_of_callback = attempts.0.lock().unwrap()[0].irql;
            if irql_of_callback >= Irql::DISPATCH.0 {
                assert_eq!(
                    r,
                    Err(Error::IRQL_TOO_HIGH),
                    "{mode}: from_vec in {name} at DISPATCH_LEVEL"
                );
                watch.freed_cleanly(&format!("{mode}: the vector refused in {name}"));
            } else {
                watches.push(watch);
            }
        }
        // Nothing was sent by the refused send_to.
        dpeer
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let mut d = [0u8; 32];
        assert!(
            dpeer.recv_from(&mut d).is_err(),
            "{mode}: a refused send_to sent"
        );
        let back = std::mem::take(&mut *back.lock().unwrap());
        for buf in back {
            let at = watches
                .iter()
                .position(|w| w.ptr == buf.as_ptr() as usize)
                .expect("a buffer given to the handler");
            let watch = watches.swap_remove(at);
            let data = if buf.len() == 2 { &b"fv"[..] } else { b"h" };
            let vec = check_vec_back(mode, buf, &watch, data);
            drop_watched(mode, vec, watch);
        }
        assert!(watches.is_empty(), "{mode}: buffers not given back");
        drop((socket, dsocket));
        within("client drop", move || drop(client));
        no_violations(session);
    }
}

/// Whether the calling code runs inside an IRP's completion or an event callback: on a thread
/// of the emulated provider (which runs nothing else; a backtrace there would take longer than
/// the DPC watchdog allows), or with the emulated kernel's `IofCompleteRequest` on the stack
/// (an inline completion, at the caller's IRQL).
fn inside_a_completion() -> bool {
    let name = std::thread::current().name().unwrap_or("").to_string();
    if name.starts_with("wsk-host-provider") || name.starts_with("wsk-host-delivery") {
        return true;
    }
    std::backtrace::Backtrace::force_capture()
        .to_string()
        .contains("IofCompleteRequest")
}

/// What a probe (a waker, a buffer's drop) tries: a waited receive on `socket`.
struct Probe {
    socket: Arc<wsk::ConnectionSocket>,
    bufs: Mutex<Vec<Buf>>,
    back: Mutex<Vec<Buf>>,
    attempts: Attempts,
    /// Calls seen outside any completion (not checked).
    elsewhere: AtomicUsize,
}

impl Probe {
    fn new(socket: &Arc<wsk::ConnectionSocket>, count: usize) -> (Arc<Probe>, Vec<Watch>) {
        let (bufs, watches): (Vec<Buf>, Vec<Watch>) =
            (0..count).map(|i| vec_buf(8 + i, b"p")).unzip();
        (
            Arc::new(Probe {
                socket: Arc::clone(socket),
                bufs: Mutex::new(bufs),
                back: Mutex::default(),
                attempts: Attempts::default(),
                elsewhere: AtomicUsize::new(0),
            }),
            watches,
        )
    }

    fn fire(&self, place: &str) {
        if !inside_a_completion() {
            self.elsewhere.fetch_add(1, Ordering::SeqCst);
            return;
        }
        let Some(buf) = self.bufs.lock().unwrap().pop() else {
            return;
        };
        let back = attempt_receive(&self.attempts, place, &self.socket, buf, 0);
        self.back.lock().unwrap().push(back);
    }

    /// Checks the attempts and the buffers, and frees them.
    fn finish(&self, what: &str, watches: Vec<Watch>) -> usize {
        let count = self.attempts.0.lock().unwrap().len();
        self.attempts.check_all_refused(what, 0);
        let mut all: Vec<Buf> = std::mem::take(&mut *self.back.lock().unwrap());
        all.append(&mut self.bufs.lock().unwrap());
        assert_eq!(all.len(), watches.len(), "{what}: buffers lost");
        let mut watches = watches;
        for buf in all {
            let at = watches
                .iter()
                .position(|w| w.ptr == buf.as_ptr() as usize)
                .expect("a probe's buffer");
            let watch = watches.swap_remove(at);
            let vec = check_vec_back(what, buf, &watch, b"p");
            drop_watched(what, vec, watch);
        }
        count
    }
}

impl std::task::Wake for Probe {
    fn wake(self: Arc<Self>) {
        self.fire("a waker");
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fire("a waker (by reference)");
    }
}

/// A vector buffer whose drop fires a probe (when it has one).
struct ProbeBuf {
    buf: Buf,
    probe: Option<Arc<Probe>>,
}

impl Drop for ProbeBuf {
    fn drop(&mut self) {
        if let Some(probe) = self.probe.take() {
            probe.fire("a buffer's drop");
        }
    }
}

// SAFETY: forwards to the `Buf` it holds, which keeps its promises; the probe changes none.
unsafe impl IoBuf for ProbeBuf {
    fn mdl(&self) -> PMDL {
        self.buf.mdl()
    }
    fn mdl_offset(&self) -> usize {
        0
    }
    fn bytes_init(&self) -> usize {
        self.buf.len()
    }
    fn bytes_total(&self) -> usize {
        self.buf.capacity()
    }
    fn stand_in() -> ProbeBuf {
        ProbeBuf {
            buf: <Buf as IoBuf>::stand_in(),
            probe: None,
        }
    }
}

// SAFETY: forwards.
unsafe impl wsk::IoBufMut for ProbeBuf {
    unsafe fn set_init(&mut self, count: usize) {
        if let Some(probe) = &self.probe {
            probe.fire("a buffer's set_init");
        }
        // SAFETY: forwarded with the caller's promise.
        unsafe { wsk::IoBufMut::set_init(&mut self.buf, count) }
    }
}

#[test]
fn wakers_and_buffer_drops_run_by_completions_cannot_wait() {
    for (mode, plan) in [
        (
            "inline at the caller's IRQL",
            FaultPlan::new(960)
                .completion(CompletionMode::AlwaysInline)
                .inline_completion_at_caller_irql(true),
        ),
        (
            "pending",
            FaultPlan::new(961).completion(CompletionMode::AlwaysPending),
        ),
        (
            "delayed",
            FaultPlan::new(962).delay_completions(Duration::from_millis(20)),
        ),
    ] {
        let session = Session::start();
        let client = WskClient::register(driver(&session)).unwrap();
        let (socket, mut peer) = connected(&client);
        let (quiet, _quiet_peer) = connected(&client);
        session.set_faults(plan);
        let quiet = Arc::new(quiet);
        let (probe, watches) = Probe::new(&quiet, 40);
        let waker = std::task::Waker::from(Arc::clone(&probe));
        let mut cx = std::task::Context::from_waker(&waker);
        let mut polled = |op: &mut (dyn std::future::Future<Output = Waited> + Unpin)| {
            std::pin::Pin::new(op).poll(&mut cx)
        };
        for round in 0..6 {
            // A send polled with the probing waker (inline: completed inside the poll).
            let (b, w) = vec_buf(16, b"sent!");
            let mut op = socket.send(b);
            let out = loop {
                if let std::task::Poll::Ready(out) = polled(&mut op) {
                    break out;
                }
                std::thread::sleep(Duration::from_millis(1));
            };
            assert_eq!(out.0, Ok(5), "{mode} {round}");
            let vec = check_vec_back(mode, out.1, &w, b"sent!");
            drop_watched(mode, vec, w);
            let mut got = [0u8; 5];
            peer.read_exact(&mut got).unwrap();
            // A receive polled with the probing waker, then data.
            let (b, w) = vec_buf(16, b"");
            let mut op = socket.receive(b);
            let first = polled(&mut op);
            assert!(first.is_pending(), "{mode}: no data yet");
            peer.write_all(b"data").unwrap();
            let end = Instant::now() + DEADLINE;
            let out = loop {
                assert!(Instant::now() < end, "{mode}: the receive never completed");
                if let std::task::Poll::Ready(out) = polled(&mut op) {
                    break out;
                }
                std::thread::sleep(Duration::from_millis(1));
            };
            assert_eq!(out.0, Ok(4), "{mode} {round}");
            let vec = check_vec_back(mode, out.1, &w, b"data");
            drop_watched(mode, vec, w);
            // Receives into probing buffers, waited for and polled, data already there
            // (inline) or not: wherever `set_init` is called from a completion routine, a
            // wait inside it is refused.
            for polled_first in [false, true] {
                let (b, w) = vec_buf(16, b"");
                let op = socket.receive(ProbeBuf {
                    buf: b,
                    probe: Some(Arc::clone(&probe)),
                });
                let (r, mut back) = if polled_first {
                    let mut op = op;
                    assert!(poll_once(&mut op).is_none(), "{mode}: no data yet");
                    peer.write_all(b"xyz").unwrap();
                    op.wait_timeout(10_000)
                } else {
                    peer.write_all(b"xyz").unwrap();
                    std::thread::sleep(Duration::from_millis(5));
                    op.wait_timeout(10_000)
                };
                back.probe = None;
                let buf = std::mem::replace(&mut back.buf, <Buf as IoBuf>::stand_in());
                let buf = receive_until(&socket, buf, 3, How::WaitTimeout, mode);
                assert!(r.is_ok(), "{mode}: {r:?}");
                let vec = check_vec_back(mode, buf, &w, b"xyz");
                drop_watched(mode, vec, w);
            }
            // A receive into a probing buffer, abandoned in flight: its drop runs in the
            // cancelled request's completion.
            let (b, w) = vec_buf(16, b"");
            let mut op = socket.receive(ProbeBuf {
                buf: b,
                probe: Some(Arc::clone(&probe)),
            });
            assert!(poll_once(&mut op).is_none(), "{mode}: in flight");
            // Dropped: cancelled. The buffer is dropped by the completion routine, or by the
            // drop itself when the cancelled request completed at once (not a completion
            // routine then: a wait there may block, and is not checked).
            drop(op);
            eventually(&format!("{mode}: the abandoned buffer is freed"), || {
                w.is_freed()
            });
            w.freed_cleanly(mode);
        }
        drop(waker);
        let fired_inside = probe.finish(mode, watches);
        eprintln!(
            "{mode}: {fired_inside} probes inside completions, {} elsewhere",
            probe.elsewhere.load(Ordering::SeqCst)
        );
        assert!(
            fired_inside >= 6,
            "{mode}: too few probes ran inside completions to check anything"
        );
        drop((socket, quiet, probe));
        within("client drop", move || drop(client));
        no_violations(session);
    }
}

// =================================================================================================
// 10. Many threads waiting on shared and separate sockets, with faults: every byte counted
// =================================================================================================

/// A buffer for the stress: a watched vector (odd capacity) or pool, holding `data`; retried
/// while memory is short (injected failures).
fn stress_buf(data: &[u8], cap: usize, vector: bool) -> (Buf, Option<Watch>) {
    loop {
        if vector {
            let (vec, watch) = watched_vec(cap, data);
            match Buf::from_vec(vec) {
                Ok(buf) => return (buf, Some(watch)),
                Err(e) => {
                    assert_eq!(e, Error::INSUFFICIENT_RESOURCES);
                    watch.freed_cleanly("a vector refused for want of an MDL");
                }
            }
        } else {
            match Buf::with_capacity(cap) {
                Ok(mut buf) => {
                    buf.extend_from_slice(data).unwrap();
                    return (buf, None);
                }
                Err(e) => assert_eq!(e, Error::INSUFFICIENT_RESOURCES),
            }
        }
    }
}

/// Gives a stress buffer back: checks it is the very buffer holding `data`, frees it.
fn stress_done(what: &str, buf: Buf, watch: Option<Watch>, data: &[u8]) {
    match watch {
        Some(watch) => {
            let vec = check_vec_back(what, buf, &watch, data);
            drop_watched(what, vec, watch);
        }
        None => {
            assert_eq!(&buf[..], data, "{what}: a pool buffer's bytes");
            drop(buf);
        }
    }
}

/// Waits for `op` one of several ways, each with a deadline.
fn stress_wait<R: wsk::Request>(op: wsk::Op<R>, i: usize) -> R::Output {
    match i % 4 {
        0 => op.wait_timeout(20_000),
        1 => op.timeout(DEADLINE * 2).wait(),
        2 => op.deadline(Deadline::after(DEADLINE * 2)).wait(),
        _ => op.timeout(DEADLINE * 2).wait_timeout(20_000),
    }
}

/// Sends `chunks` chunks of bytes `value(chunk)` over `socket`, each waited for, partial
/// sends continued from a slice; returns how many bytes of each value it sent.
fn stress_sender(
    socket: &wsk::ConnectionSocket,
    seed: usize,
    chunks: usize,
    value: impl Fn(usize) -> u8,
) -> [u64; 256] {
    let mut counts = [0u64; 256];
    for c in 0..chunks {
        let len = 1 + (seed * 31 + c * 977) % 3000;
        let data = vec![value(c); len];
        let cap = len + (c % 3) * 7;
        let (mut buf, watch) = stress_buf(&data, cap, (seed + c) % 2 == 0);
        let mut sent = 0;
        let mut tries = 0;
        while sent < len {
            tries += 1;
            assert!(tries < 10_000, "a send never went through");
            let slice = buf.slice(sent..).map_err(|(e, _)| e).unwrap();
            let (r, slice) = stress_wait(socket.send(slice), c + tries);
            buf = slice.into_inner();
            match r {
                Ok(n) => {
                    assert!(n > 0 && sent + n <= len, "sent {n} of {}", len - sent);
                    sent += n;
                }
                Err(Error::INSUFFICIENT_RESOURCES) => {}
                Err(e) => panic!("a send failed: {e:?}"),
            }
        }
        counts[usize::from(value(c))] += len as u64;
        stress_done("a sent buffer", buf, watch, &data);
    }
    counts
}

/// Receives on `socket` until `total` bytes were received by every receiver together
/// (`received`), counting each value.
fn stress_receiver(
    socket: &wsk::ConnectionSocket,
    seed: usize,
    total: u64,
    received: &AtomicUsize,
) -> [u64; 256] {
    let mut counts = [0u64; 256];
    let end = Instant::now() + Duration::from_secs(90);
    let mut i = seed;
    while (received.load(Ordering::SeqCst) as u64) < total {
        assert!(
            Instant::now() < end,
            "stuck at {} of {total} bytes",
            received.load(Ordering::SeqCst)
        );
        i += 1;
        let cap = 1 + (i * 53) % 2049;
        let (buf, watch) = stress_buf(&[], cap, i % 2 == 0);
        let op = socket.receive(buf);
        let (r, buf) = if i % 3 == 0 {
            op.wait_timeout((i % 5) as u32)
        } else {
            op.timeout(Duration::from_millis(20)).wait()
        };
        match r {
            Ok(n) => {
                assert!(n > 0, "the peer does not close");
                assert_eq!(buf.len(), n);
                for &b in &buf[..] {
                    counts[usize::from(b)] += 1;
                }
                received.fetch_add(n, Ordering::SeqCst);
                let data = buf.to_vec();
                stress_done("a received buffer", buf, watch, &data);
            }
            Err(Error::TIMED_OUT | Error::INSUFFICIENT_RESOURCES) => {
                stress_done("a buffer of a receive that failed", buf, watch, &[]);
            }
            Err(e) => panic!("a receive failed: {e:?}"),
        }
    }
    counts
}

/// Echoes everything `peer` receives until `stop`.
fn echo(peer: std::net::TcpStream, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut peer = peer;
        peer.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let mut buf = vec![0u8; 1 << 16];
        while !stop.load(Ordering::SeqCst) {
            match peer.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => peer.write_all(&buf[..n]).unwrap(),
                Err(_) => {}
            }
        }
    })
}

#[test]
fn many_threads_waiting_on_shared_and_separate_sockets_lose_no_byte_under_faults() {
    for (mode, completion, delay) in [
        ("mixed", CompletionMode::Mixed, None),
        ("pending", CompletionMode::AlwaysPending, None),
        ("inline", CompletionMode::AlwaysInline, None),
        (
            "delayed",
            CompletionMode::Mixed,
            Some(Duration::from_micros(300)),
        ),
    ] {
        let session = Session::start();
        let client = WskClient::register(driver(&session)).unwrap();
        let (a, a_peer) = connected(&client);
        let (b, b_peer) = connected(&client);
        let (d, dlocal, dpeer) = bound_datagram(&client, "127.0.0.1:0");
        let dpeer_addr = dpeer.local_addr().unwrap();
        let mut plan = FaultPlan::new(1000).completion(completion);
        if let Some(delay) = delay {
            plan = plan.delay_completions(delay);
        }
        session.set_faults(
            plan.partial_sends(777)
                .fail_irp_allocation(Nth::Probability(0.02))
                .fail_mdl_allocation(Nth::Probability(0.02))
                .fail_pool_allocation(Nth::Probability(0.01)),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let echoes = [
            echo(a_peer, Arc::clone(&stop)),
            echo(b_peer, Arc::clone(&stop)),
        ];
        // The datagram peer echoes too.
        let dpeer_thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                dpeer
                    .set_read_timeout(Some(Duration::from_millis(20)))
                    .unwrap();
                let mut d = [0u8; 128];
                while !stop.load(Ordering::SeqCst) {
                    if let Ok((n, from)) = dpeer.recv_from(&mut d) {
                        assert_eq!(from, dlocal);
                        dpeer.send_to(&d[..n], from).unwrap();
                    }
                }
            })
        };
        let (a, b, d) = (Arc::new(a), Arc::new(b), Arc::new(d));
        const CHUNKS: usize = 250;
        // Connection A: three senders and three receivers on the one socket; B: one each.
        let mut senders = Vec::new();
        let mut expected_total = [0u64; 2];
        for (k, socket, count) in [(0usize, &a, 3usize), (1, &b, 1)] {
            for t in 0..count {
                let socket = Arc::clone(socket);
                let seed = k * 10 + t;
                for c in 0..CHUNKS {
                    expected_total[k] += (1 + (seed * 31 + c * 977) % 3000) as u64;
                }
                senders.push((
                    k,
                    std::thread::spawn(move || {
                        stress_sender(&socket, seed, CHUNKS, |c| (seed * 50 + c % 50) as u8)
                    }),
                ));
            }
        }
        let received = [Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0))];
        let mut receivers = Vec::new();
        for (k, socket, count) in [(0usize, &a, 3usize), (1, &b, 1)] {
            for t in 0..count {
                let socket = Arc::clone(socket);
                let received = Arc::clone(&received[k]);
                let total = expected_total[k];
                receivers.push((
                    k,
                    std::thread::spawn(move || {
                        stress_receiver(&socket, t * 7 + k, total, &received)
                    }),
                ));
            }
        }
        // Datagrams: two senders and two receivers on one socket.
        const DATAGRAMS: usize = 400;
        let dgram_received: Arc<Mutex<Vec<(u8, u16)>>> = Arc::default();
        let mut dthreads = Vec::new();
        for s in 0..2u8 {
            let d = Arc::clone(&d);
            dthreads.push(std::thread::spawn(move || {
                for seq in 0..DATAGRAMS as u16 {
                    let len = 4 + usize::from(seq) % 60;
                    let mut data = vec![s ^ (seq as u8); len];
                    data[0] = s;
                    data[1..3].copy_from_slice(&seq.to_le_bytes());
                    let (mut buf, watch) =
                        stress_buf(&data, len + usize::from(seq % 3), seq % 2 == 0);
                    let mut tries = 0;
                    loop {
                        tries += 1;
                        assert!(tries < 10_000);
                        let (r, back) = stress_wait(d.send_to(buf, dpeer_addr), usize::from(seq));
                        buf = back;
                        match r {
                            Ok(n) => {
                                assert_eq!(n, len);
                                break;
                            }
                            Err(Error::INSUFFICIENT_RESOURCES) => {}
                            Err(e) => panic!("a send_to failed: {e:?}"),
                        }
                    }
                    stress_done("a sent datagram's buffer", buf, watch, &data);
                    if seq % 16 == 0 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }));
        }
        for r in 0..2usize {
            let d = Arc::clone(&d);
            let got = Arc::clone(&dgram_received);
            dthreads.push(std::thread::spawn(move || {
                let end = Instant::now() + Duration::from_secs(90);
                let mut i = r;
                while got.lock().unwrap().len() < 2 * DATAGRAMS {
                    assert!(
                        Instant::now() < end,
                        "datagrams lost: {} arrived",
                        got.lock().unwrap().len()
                    );
                    i += 1;
                    let (buf, watch) = stress_buf(&[], 64 + i % 5, i % 2 == 1);
                    let op = d.receive_from(buf);
                    let (res, buf) = if i % 2 == 0 {
                        op.wait_timeout(10)
                    } else {
                        op.timeout(Duration::from_millis(15)).wait()
                    };
                    match res {
                        Ok((n, from)) => {
                            assert_eq!(from, dpeer_addr);
                            assert_eq!(buf.len(), n);
                            let s = buf[0];
                            let seq = u16::from_le_bytes([buf[1], buf[2]]);
                            assert_eq!(n, 4 + usize::from(seq) % 60, "datagram {s}/{seq}");
                            assert!(
                                buf[3..].iter().all(|&x| x == s ^ (seq as u8)),
                                "datagram {s}/{seq}"
                            );
                            got.lock().unwrap().push((s, seq));
                            let data = buf.to_vec();
                            stress_done("a received datagram's buffer", buf, watch, &data);
                        }
                        Err(Error::TIMED_OUT | Error::INSUFFICIENT_RESOURCES) => {
                            stress_done("a buffer of a receive_from that failed", buf, watch, &[]);
                        }
                        Err(e) => panic!("a receive_from failed: {e:?}"),
                    }
                }
            }));
        }
        let mut sent = [[0u64; 256]; 2];
        for (k, t) in senders {
            let counts = within(&format!("{mode}: a sender"), move || t.join().unwrap());
            for v in 0..256 {
                sent[k][v] += counts[v];
            }
        }
        let mut got = [[0u64; 256]; 2];
        for (k, t) in receivers {
            let counts = std::thread::spawn(move || t.join())
                .join()
                .unwrap()
                .unwrap_or_else(|e| std::panic::resume_unwind(e));
            for v in 0..256 {
                got[k][v] += counts[v];
            }
        }
        for t in dthreads {
            t.join().unwrap();
        }
        stop.store(true, Ordering::SeqCst);
        for e in echoes {
            e.join().unwrap();
        }
        dpeer_thread.join().unwrap();
        for k in 0..2 {
            assert_eq!(sent[k].iter().sum::<u64>(), expected_total[k]);
            assert!(
                sent[k] == got[k],
                "{mode}: connection {k}: bytes lost or duplicated: {} sent, {} received",
                sent[k].iter().sum::<u64>(),
                got[k].iter().sum::<u64>()
            );
        }
        let mut dgrams = dgram_received.lock().unwrap().clone();
        dgrams.sort_unstable();
        dgrams.dedup();
        assert_eq!(dgrams.len(), 2 * DATAGRAMS, "{mode}: datagrams duplicated");
        session.set_faults(FaultPlan::new(1));
        let report = session.report();
        eprintln!(
            "{mode}: {:?} bytes echoed, {} datagrams; {} inline and {} pending completions, {} \
             cancelled",
            expected_total,
            dgrams.len(),
            report.completed_inline,
            report.completed_pending,
            report.cancelled
        );
        drop((a, b, d));
        within("client drop", move || drop(client));
        no_violations(session);
    }
}

// =================================================================================================
// 11. Edge deadlines, waits after completion, multi-step waits under a closing peer or client
// =================================================================================================

#[test]
fn edge_deadlines_and_waits_after_completion_neither_panic_nor_lose_the_vector() {
    for (mode, plan) in plans(1100) {
        let session = Session::start();
        let client = WskClient::register(driver(&session)).unwrap();
        let (socket, mut peer) = connected(&client);
        session.set_faults(plan);
        // Extreme timeouts and deadlines: no panic, no overflow; nothing arrives, so each
        // times out (by the wait's own timeout when the request's is huge).
        type Wait = fn(wsk::ops::Receive) -> Waited;
        let cases: [(&str, Wait); 8] = [
            ("timeout(MAX) + wait_timeout(20)", |op| {
                op.timeout(Duration::MAX).wait_timeout(20)
            }),
            ("timeout(ZERO).wait()", |op| {
                op.timeout(Duration::ZERO).wait()
            }),
            ("timeout(1 ns).wait()", |op| {
                op.timeout(Duration::from_nanos(1)).wait()
            }),
            ("timeout(u64::MAX ns) + wait_timeout(20)", |op| {
                op.timeout(Duration::from_nanos(u64::MAX)).wait_timeout(20)
            }),
            ("deadline(after(MAX)) + wait_timeout(20)", |op| {
                op.deadline(Deadline::after(Duration::MAX)).wait_timeout(20)
            }),
            ("deadline passed", |op| {
                let d = Deadline::after(Duration::ZERO);
                std::thread::sleep(Duration::from_millis(2));
                op.deadline(d).wait()
            }),
            ("wait_timeout(0)", |op| op.wait_timeout(0)),
            ("timeout(ZERO) + wait_timeout(u32::MAX)", |op| {
                op.timeout(Duration::ZERO).wait_timeout(u32::MAX)
            }),
        ];
        for (name, wait) in cases {
            let what = format!("{mode} {name}");
            let (buf, watch) = vec_buf(32, b"e");
            let started = Instant::now();
            let op = socket.receive(buf);
            let (r, buf) = within(&what, move || wait(op));
            assert!(started.elapsed() < DEADLINE, "{what}");
            assert_eq!(r, Err(Error::TIMED_OUT), "{what}");
            let vec = check_vec_back(&what, buf, &watch, b"e");
            drop_watched(&what, vec, watch);
        }
        // A deadline already passed with data at hand: the data, not a time-out.
        peer.write_all(b"at hand").unwrap();
        std::thread::sleep(Duration::from_millis(10));
        let (buf, watch) = vec_buf(32, b"");
        let d = Deadline::after(Duration::ZERO);
        let (r, buf) = socket.receive(buf).deadline(d).wait();
        match r {
            Ok(n) => {
                let data = b"at hand"[..n].to_vec();
                let vec = check_vec_back(mode, buf, &watch, &data);
                drop_watched(mode, vec, watch);
                if n < 7 {
                    let (b2, w2) = vec_buf(32, b"");
                    let b2 = receive_until(&socket, b2, 7 - n, How::WaitTimeout, mode);
                    let vec = check_vec_back(mode, b2, &w2, &b"at hand"[n..]);
                    drop_watched(mode, vec, w2);
                }
            }
            Err(e) => {
                assert_eq!(e, Error::TIMED_OUT, "{mode}");
                let vec = check_vec_back(mode, buf, &watch, b"");
                drop_watched(mode, vec, watch);
                let (b2, w2) = vec_buf(32, b"");
                let b2 = receive_until(&socket, b2, 7, How::WaitTimeout, mode);
                let vec = check_vec_back(mode, b2, &w2, b"at hand");
                drop_watched(mode, vec, w2);
            }
        }
        // Polled to completion, then waited for: an error and a stand-in, never the buffer
        // a second time.
        peer.write_all(b"once").unwrap();
        let (buf, watch) = vec_buf(32, b"");
        let mut op = socket.receive(buf);
        let end = Instant::now() + DEADLINE;
        let (r, buf) = loop {
            assert!(Instant::now() < end);
            if let Some(out) = poll_once(&mut op) {
                break out;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        assert!(r.is_ok());
        let (again, stand_in) = op.wait_timeout(1_000);
        assert!(again.is_err(), "{mode}: waited after its output: {again:?}");
        assert_eq!(
            (stand_in.capacity(), stand_in.mdl()),
            (0, std::ptr::null_mut())
        );
        let buf = receive_until(&socket, buf, 4, How::WaitTimeout, mode);
        let vec = check_vec_back(mode, buf, &watch, b"once");
        drop_watched(mode, vec, watch);
        // receive_exact with the peer closing half-way: ends (an error or short), the bytes
        // that came in the vector.
        peer.write_all(b"half").unwrap();
        peer.shutdown(std::net::Shutdown::Write).unwrap();
        let (buf, watch) = vec_buf(64, b"");
        let (r, buf) = within(&format!("{mode}: receive_exact"), {
            let op = socket.receive_exact(buf, 20);
            move || op.wait()
        });
        assert_ne!(r, Ok(20), "{mode}: 20 bytes from a peer that sent 4");
        let vec = check_vec_back(mode, buf, &watch, b"half");
        drop_watched(mode, vec, watch);
        drop(socket);
        // A sleep and a receive_exact blocked while the client goes from another thread.
        let (socket, _peer2) = connected(&client);
        let sleep = client.sleep(Duration::from_secs(60));
        let (buf, watch) = vec_buf(64, b"x");
        let exact = socket.receive_exact(buf, 10);
        let sleeper = std::thread::spawn(move || {
            let t = Instant::now();
            (sleep.wait(), t.elapsed())
        });
        let exacter = std::thread::spawn(move || {
            let t = Instant::now();
            (exact.wait(), t.elapsed())
        });
        std::thread::sleep(Duration::from_millis(50));
        within("client drop", move || drop(client));
        let (slept, took) = within("the sleeper", move || sleeper.join().unwrap());
        assert!(
            slept.is_err() && took < DEADLINE,
            "{mode}: {slept:?} after {took:?}"
        );
        let ((r, buf), took) = within("receive_exact", move || exacter.join().unwrap());
        assert!(
            r.is_err() && took < DEADLINE,
            "{mode}: {r:?} after {took:?}"
        );
        let vec = check_vec_back(mode, buf, &watch, b"x");
        drop_watched(mode, vec, watch);
        drop(socket);
        no_violations(session);
    }
}

// =================================================================================================
// 12. Tiny timeouts racing completions: every byte once, in order; nothing written after
// =================================================================================================

#[test]
fn tiny_waited_timeouts_racing_completions_keep_the_stream_exact_in_both_directions() {
    for (mode, plan) in [
        ("mixed", FaultPlan::new(1200)),
        (
            "pending",
            FaultPlan::new(1201).completion(CompletionMode::AlwaysPending),
        ),
        (
            "delayed",
            FaultPlan::new(1202).delay_completions(Duration::from_micros(150)),
        ),
    ] {
        let session = Session::start();
        let client = WskClient::register(driver(&session)).unwrap();
        let (socket, peer) = connected(&client);
        session.set_faults(plan);
        const TOTAL: usize = 300_000;
        let pattern = |i: usize| ((i * 7 + i / 251) % 256) as u8;
        // The peer writes the pattern in bursts and reads what the socket sends, slowly
        // (so that sends pend), checking it is the pattern, every byte once, in order.
        let writer = {
            let mut peer = peer.try_clone().unwrap();
            std::thread::spawn(move || {
                let data: Vec<u8> = (0..TOTAL).map(pattern).collect();
                for (k, chunk) in data.chunks(4093).enumerate() {
                    peer.write_all(chunk).unwrap();
                    if k % 4 == 0 {
                        std::thread::sleep(Duration::from_micros(500));
                    }
                }
            })
        };
        let reader = {
            let mut peer = peer;
            std::thread::spawn(move || {
                let mut got = 0usize;
                let mut buf = vec![0u8; 1500];
                while got < TOTAL {
                    let n = peer.read(&mut buf).unwrap();
                    assert!(n > 0, "the socket closed early at {got}");
                    for (k, &b) in buf[..n].iter().enumerate() {
                        assert_eq!(b, pattern(got + k), "byte {} the peer read", got + k);
                    }
                    got += n;
                    std::thread::sleep(Duration::from_micros(100));
                }
            })
        };
        let socket = Arc::new(socket);
        // Sending: each chunk from a vector or pool buffer, waited with a tiny timeout;
        // a time-out sent nothing (by the docs), so the same bytes go again.
        let sender = {
            let socket = Arc::clone(&socket);
            std::thread::spawn(move || {
                let data: Vec<u8> = (0..TOTAL).map(pattern).collect();
                let mut at = 0usize;
                let mut i = 0usize;
                let mut timeouts = 0;
                let end = Instant::now() + Duration::from_secs(60);
                while at < TOTAL {
                    assert!(Instant::now() < end, "sending stuck at {at}");
                    i += 1;
                    let len = (1 + i * 389 % 9000).min(TOTAL - at);
                    let chunk = &data[at..at + len];
                    let (buf, watch) = stress_buf(chunk, len + i % 5, i % 2 == 0);
                    let op = socket.send(buf);
                    let (r, buf) = match i % 3 {
                        0 => op.wait_timeout((i % 2) as u32),
                        1 => op.timeout(Duration::from_micros((i % 400) as u64)).wait(),
                        _ => op
                            .deadline(Deadline::after(Duration::from_micros(100)))
                            .wait(),
                    };
                    match r {
                        Ok(n) => {
                            assert!(n <= len);
                            at += n;
                        }
                        Err(Error::TIMED_OUT) => timeouts += 1,
                        Err(e) => panic!("a send failed: {e:?}"),
                    }
                    stress_done("a sent buffer", buf, watch, chunk);
                }
                timeouts
            })
        };
        // Receiving: tiny timeouts; the buffers of timed-out receives are freed at once and
        // checked for late writes at the end.
        let mut got = Vec::with_capacity(TOTAL);
        let mut freed: Vec<Watch> = Vec::new();
        let mut i = 0usize;
        let mut timeouts = 0;
        let end = Instant::now() + Duration::from_secs(60);
        while got.len() < TOTAL {
            assert!(
                Instant::now() < end,
                "{mode}: receiving stuck at {}",
                got.len()
            );
            i += 1;
            let (buf, watch) = stress_buf(&[], 1 + i * 613 % 5000, i % 3 != 0);
            let op = socket.receive(buf);
            let (r, buf) = match i % 3 {
                0 => op.wait_timeout((i % 2) as u32),
                1 => op.timeout(Duration::from_micros((i % 300) as u64)).wait(),
                _ => op
                    .deadline(Deadline::after(Duration::from_micros(80)))
                    .wait(),
            };
            match r {
                Ok(n) => {
                    assert_eq!(buf.len(), n);
                    got.extend_from_slice(&buf);
                }
                Err(e) => {
                    assert_eq!(e, Error::TIMED_OUT, "{mode}");
                    assert!(
                        buf.is_empty(),
                        "{mode}: a timed-out receive wrote its buffer"
                    );
                    timeouts += 1;
                }
            }
            match watch {
                Some(watch) => {
                    drop(buf.into_vec().expect("the vector back"));
                    freed.push(watch);
                }
                None => drop(buf),
            }
            if freed.len() >= 300 {
                std::thread::sleep(Duration::from_millis(5));
                for w in freed.drain(..) {
                    if let Err(e) = w.release() {
                        panic!("{mode}: {e}");
                    }
                }
            }
        }
        if let Some(at) = (0..TOTAL).find(|&k| got[k] != pattern(k)) {
            panic!("{mode}: the received stream differs at byte {at}");
        }
        let send_timeouts = within("the sender", move || sender.join().unwrap());
        within("the peer's writer", move || writer.join().unwrap());
        within("the peer's reader", move || reader.join().unwrap());
        std::thread::sleep(Duration::from_millis(20));
        for w in freed {
            if let Err(e) = w.release() {
                panic!("{mode}: {e}");
            }
        }
        eprintln!("{mode}: {timeouts} receive and {send_timeouts} send time-outs");
        drop(socket);
        within("client drop", move || drop(client));
        no_violations(session);
    }
}

/// A send waited for with a deadline, on a connection whose peer reads slowly through small
/// buffers: the provider writes part of the buffer, then the deadline cancels the rest. The
/// docs: "the request was cancelled at the deadline and the provider completed it as
/// cancelled; nothing it moved was lost. If the provider completed it another way — data
/// that arrived as the timer fired, a send already taken — that result is returned
/// instead". A send that returns `TIMED_OUT` must then have sent nothing — otherwise a caller
/// that sends the same bytes again (nothing was lost, so nothing is missing) duplicates them.
#[test]
fn a_timed_out_send_sent_nothing() {
    for (mode, plan) in [
        ("mixed", FaultPlan::new(1250)),
        (
            "pending",
            FaultPlan::new(1251).completion(CompletionMode::AlwaysPending),
        ),
    ] {
        let session = Session::start();
        let client = WskClient::register(driver(&session)).unwrap();
        let (socket, peer) = connected_with_small_buffers(&client);
        session.set_faults(plan);
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let stop = Arc::clone(&stop);
            let mut peer = peer;
            peer.set_read_timeout(Some(Duration::from_millis(5)))
                .unwrap();
            std::thread::spawn(move || {
                let mut total = 0usize;
                let mut buf = [0u8; 512];
                while !stop.load(Ordering::SeqCst) {
                    if let Ok(n) = peer.read(&mut buf) {
                        total += n;
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
                total
            })
        };
        let mut reported = 0usize;
        let mut partial_timeouts = Vec::new();
        for i in 0..40usize {
            let (buf, watch) = vec_buf(64 << 10, &vec![b'x'; 64 << 10]);
            let before = session.report().bytes_sent;
            let op = socket.send(buf);
            let (r, buf) = if i % 2 == 0 {
                op.timeout(Duration::from_millis(3)).wait()
            } else {
                op.wait_timeout(3)
            };
            let moved = (session.report().bytes_sent - before) as usize;
            match r {
                Ok(n) => reported += n,
                Err(Error::TIMED_OUT) => {
                    if moved > 0 {
                        partial_timeouts.push(moved);
                    }
                }
                Err(e) => panic!("{mode}: {e:?}"),
            }
            let vec = check_vec_back(mode, buf, &watch, &[b'x'; 64 << 10]);
            drop_watched(mode, vec, watch);
        }
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::SeqCst);
        let peer_got = within("the reader", move || reader.join().unwrap());
        drop(socket);
        within("client drop", move || drop(client));
        no_violations(session);
        eprintln!(
            "{mode}: {reported} bytes reported sent, the peer read {peer_got}; sends timed out \
             after writing {partial_timeouts:?} bytes"
        );
        assert!(
            partial_timeouts.is_empty(),
            "{mode}: {} sends returned TIMED_OUT after the provider had written part of them \
             ({partial_timeouts:?} bytes): the count is lost, {reported} bytes reported sent \
             while the peer received {peer_got}",
            partial_timeouts.len()
        );
    }
}

/// The receive side of the same promise: `receive_exact` waited for with a deadline while
/// only part of the bytes came. Timed out or not, no byte that came may be lost: those the
/// buffer holds when it comes back, and those still to be received, together are the stream.
#[test]
fn a_timed_out_receive_exact_loses_no_byte() {
    for (mode, plan) in plans(1260) {
        let session = Session::start();
        let client = WskClient::register(driver(&session)).unwrap();
        let (socket, mut peer) = connected(&client);
        session.set_faults(plan);
        let mut stream = Vec::new();
        for (i, how) in HOWS.into_iter().enumerate() {
            let what = format!("{mode} {how:?}");
            let sent: Vec<u8> = (0..10).map(|k| (i * 10 + k) as u8).collect();
            peer.write_all(&sent).unwrap();
            std::thread::sleep(Duration::from_millis(5));
            let (buf, watch) = vec_buf(100, b"");
            let op = socket.receive_exact(buf, 100);
            let (r, buf) = match how {
                How::Wait | How::WaitTimeout | How::PolledThenWait => op.wait_timeout(30),
                How::TimeoutWait | How::TimeoutWaitTimeout => {
                    op.timeout(Duration::from_millis(30)).wait()
                }
                How::DeadlineWait => op
                    .deadline(Deadline::after(Duration::from_millis(30)))
                    .wait(),
            };
            assert!(
                r.is_err(),
                "{what}: 100 bytes from a peer that sent 10: {r:?}"
            );
            let held = buf.to_vec();
            stream.extend_from_slice(&held);
            // Not checked as spare capacity: bytes written there but not counted are what
            // this test is about (reported below as lost).
            let vec = check_vec_back_from(&what, buf, &watch, &held, 100);
            // SAFETY: the vector's capacity, all written (filled at its creation).
            let all = unsafe { std::slice::from_raw_parts(vec.as_ptr(), vec.capacity()) };
            let uncounted = all[held.len()..]
                .iter()
                .take_while(|&&b| b != SPARE)
                .count();
            drop_watched(&what, vec, watch);
            // What the buffer did not hold must still come.
            if held.len() < 10 {
                let (buf, watch) = vec_buf(100, b"");
                let op = socket.receive(buf);
                let (r, buf) = op.wait_timeout(200);
                if r.is_ok() {
                    stream.extend_from_slice(&buf);
                }
                let data = buf.to_vec();
                let vec = check_vec_back(&what, buf, &watch, &data);
                drop_watched(&what, vec, watch);
            }
            let expected: Vec<u8> = (0..(i + 1) * 10).map(|k| k as u8).collect();
            assert!(
                stream == expected,
                "{what}: bytes lost by a timed-out receive_exact ({r:?}, {} bytes held, {uncounted} \
                 more written into the buffer's spare capacity without being counted): the \
                 stream has {} bytes, ends {:?}; {} were sent",
                held.len(),
                stream.len(),
                &stream[stream.len().saturating_sub(12)..],
                expected.len()
            );
        }
        drop(socket);
        within("client drop", move || drop(client));
        no_violations(session);
    }
}
