//! `wsk-bench`: the measuring side of the instruction-count benchmark suite. Run it through
//! `cargo xtask bench` (see `xtask/src/bench.rs`), which runs it under callgrind and prints
//! the table; the binary alone does no measuring of instructions.
//!
//! - `wsk-bench count OP IMPL MODE N`: sets up one fixture (a `wsk-host` session, a raw and
//!   a safe client, loopback peers), warms up, runs `N` operations `OP` (`send`, `receive`,
//!   `send_to`, `receive_from`, `accept`, `connect`) the `IMPL` way (`raw`: `wsk-sys` as the
//!   C of the documentation, one IRP reused, a completion routine setting a KEVENT, waited
//!   for; `wsk`: `op.wait()`), with every request completing `MODE` (`inline` or `pending`:
//!   [`CompletionMode::AlwaysInline`] / [`CompletionMode::AlwaysPending`]; `delayed`: pending,
//!   and completed [`DELAY`] later, so that the waiting thread has always gone to sleep by
//!   then — as it has when a network is in between), then tears down.
//!   Run under callgrind with `N` and `2N`, the difference of the two counts divided by `N`
//!   is the cost of one operation with every set-up removed.
//! - `wsk-bench allocs [--ops N] [--check]`: allocations per operation in steady state, at
//!   1, 4, 8 and 64 operations in flight on one socket (futures polled by hand beyond 1),
//!   per completion mode and side: kernel allocations (pool blocks, IRPs, MDLs: the
//!   session's counters) and heap allocations (this binary's counting global allocator, all
//!   threads, so `wsk-host`'s own count too: the raw column shows what the emulated provider
//!   allocates by itself, which is nothing per request in steady state). `--check` fails
//!   when `wsk` allocates per operation (kernel or heap, any mode, any depth) where it is
//!   expected not to.
//!
//! - `wsk-bench echo time|count ...`: the end-to-end figure, an echo server written with
//!   `wsk` against the same one written raw, under the same load (see [`echo`]; run through
//!   `cargo xtask bench --echo`).
//!
//! - `wsk-bench drain`: the peer process of the send benchmarks (see [`Drain`]).
//!
//! Every payload of `count` and `allocs` is 4 KiB.

mod echo;
mod raw;

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::pin::Pin;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::Duration;

use wsk::{Buf, ConnectionSocket, DatagramSocket, ListenSocket, WskClient};
use wsk_host::{CompletionMode, FaultPlan, Session};
use wsk_sys::{PWSK_SOCKET, SOCKADDR_INET, WSK_FLAG_DATAGRAM_SOCKET, WSK_FLAG_LISTEN_SOCKET};

use raw::{RawBuf, RawClient, RawIo};

/// Counts every heap allocation of the process (all threads) while counting is on.
struct CountingAllocator;

static COUNTING: AtomicBool = AtomicBool::new(false);
static HEAP_ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator; the counters are atomics that do not allocate.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            HEAP_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            HEAP_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// The payload of every operation.
const SIZE: usize = 4096;
/// Receives are fed this many payloads at a time by their peer.
const BATCH: u64 = 16;
/// Operations run before counting starts (blocks cached, queues and tables grown).
const WARM_UP: u64 = 256;
/// The fault plan's seed (no draw is made: the completion mode is fixed).
const SEED: u64 = 0x5753_4b42_454e_4348;
/// The most operations in flight measured.
const MAX_DEPTH: usize = 64;
/// The depths of the allocation table.
const DEPTHS: [usize; 4] = [1, 4, 8, 64];

/// An operation measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Send,
    Receive,
    SendTo,
    ReceiveFrom,
    Accept,
    Connect,
}

const KINDS: [Kind; 6] = [
    Kind::Send,
    Kind::Receive,
    Kind::SendTo,
    Kind::ReceiveFrom,
    Kind::Accept,
    Kind::Connect,
];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Send => "send",
            Kind::Receive => "receive",
            Kind::SendTo => "send_to",
            Kind::ReceiveFrom => "receive_from",
            Kind::Accept => "accept",
            Kind::Connect => "connect",
        }
    }

    fn parse(text: &str) -> Option<Kind> {
        KINDS.into_iter().find(|k| k.name() == text)
    }

    /// Whether the operation can have several in flight on one socket here (accept and
    /// connect make a socket per operation: measured one at a time).
    fn has_depth(self) -> bool {
        !matches!(self, Kind::Accept | Kind::Connect)
    }

    /// Operations of warm-up: a connection per accept or connect leaves a local port in
    /// TIME_WAIT for a minute, and the whole suite must not run out of ephemeral ports.
    fn warm_up(self) -> u64 {
        if self.has_depth() {
            WARM_UP
        } else {
            WARM_UP / 8
        }
    }
}

/// Which side of the comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Impl {
    Raw,
    Wsk,
}

fn parse_mode(text: &str) -> Option<CompletionMode> {
    match text {
        "inline" => Some(CompletionMode::AlwaysInline),
        "pending" => Some(CompletionMode::AlwaysPending),
        _ => None,
    }
}

/// How long the provider waits before it completes a request in the `delayed` mode of
/// `count`: the waiting thread, which goes to sleep a few thousand instructions after it
/// issued the request (even under valgrind, well within this), always sleeps first. In the
/// `pending` mode, whether it sleeps first or finds its request complete depends on how the
/// two threads are scheduled; here the count of the code that waits does not.
const DELAY: Duration = Duration::from_micros(200);

fn mode_name(mode: CompletionMode) -> &'static str {
    match mode {
        CompletionMode::AlwaysInline => "inline",
        CompletionMode::AlwaysPending => "pending",
        CompletionMode::Mixed => "mixed",
    }
}

/// The peers of the send benchmarks: a child process (`wsk-bench drain`) that accepts one
/// connection on each of two listeners (the wsk side's, the raw side's) and reads and
/// discards everything sent to them.
///
/// A process, not threads of this one: callgrind counts every thread of the measured process,
/// and how many reads a peer makes for the same bytes depends on how it is scheduled, not on
/// the code measured (a reader thread here moved a send's count by up to 150 instructions
/// from run to run). Callgrind does not follow the child (no `--trace-children`).
struct Drain {
    child: Child,
    /// Where the wsk side connects, and where the raw side does.
    addresses: [SocketAddr; 2],
}

impl Drop for Drain {
    /// A fixture that panicked before [`Drain::finish`] leaves no process behind.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drain {
    fn spawn() -> Drain {
        let mut child = Command::new(std::env::current_exe().expect("the benchmark's path"))
            .arg("drain")
            .stdout(Stdio::piped())
            .spawn()
            .expect("the drain process starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .expect("the drain process prints its addresses");
        let addresses: Vec<SocketAddr> = line
            .split_whitespace()
            .map(|a| a.parse().expect("an address"))
            .collect();
        let [wsk, raw] = addresses[..] else {
            panic!("the drain process printed `{line}`, not two addresses");
        };
        Drain {
            child,
            addresses: [wsk, raw],
        }
    }

    /// Waits (10 s at most) for the process to end, once both connections are closed.
    fn finish(&mut self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match self
                .child
                .try_wait()
                .expect("the drain process can be waited for")
            {
                Some(status) => {
                    assert!(status.success(), "the drain process failed: {status}");
                    return;
                }
                None if std::time::Instant::now() >= deadline => {
                    let _ = self.child.kill();
                    panic!("the drain process did not end after its connections closed");
                }
                None => std::thread::sleep(std::time::Duration::from_millis(5)),
            }
        }
    }
}

/// `wsk-bench drain`: the peer process of [`Drain`]. Prints its two listening addresses on a
/// line, then reads each accepted connection to its end.
fn drain() -> Result<(), Box<dyn std::error::Error>> {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let listeners = [TcpListener::bind(loopback)?, TcpListener::bind(loopback)?];
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{} {}",
        listeners[0].local_addr()?,
        listeners[1].local_addr()?
    )?;
    out.flush()?;
    drop(out);
    let readers: Vec<JoinHandle<std::io::Result<()>>> = listeners
        .into_iter()
        .map(|listener| {
            std::thread::spawn(move || {
                let (mut peer, _) = listener.accept()?;
                let mut sink = vec![0u8; 1 << 16];
                while peer.read(&mut sink)? != 0 {}
                Ok(())
            })
        })
        .collect();
    for reader in readers {
        reader.join().map_err(|_| "a drain reader panicked")??;
    }
    Ok(())
}

/// Who provides the data receives take.
enum Feed {
    /// The measuring thread writes [`BATCH`] payloads before every [`BATCH`] receives, so
    /// that each receive finds its data there (deterministic counts).
    Batch,
    /// A thread writes as fast as it can until stopped (several receives in flight).
    Thread(Arc<AtomicBool>, JoinHandle<()>),
}

/// The sockets of one operation kind, on both sides.
enum Sockets {
    Stream {
        wsk: ConnectionSocket,
        raw: PWSK_SOCKET,
        /// The peers (accepted std sockets) of the wsk and raw sockets, for receive.
        peers: Option<(TcpStream, TcpStream)>,
        /// The peers of send.
        drain: Option<Drain>,
    },
    Datagram {
        wsk: DatagramSocket,
        raw: PWSK_SOCKET,
        /// Where the sockets send to (send_to), or what sends to them (receive_from).
        peer: UdpSocket,
        /// The peer's address.
        target: SocketAddr,
        wsk_address: SocketAddr,
        raw_address: SocketAddr,
    },
    Listen {
        wsk: ListenSocket,
        raw: PWSK_SOCKET,
        wsk_address: SocketAddr,
        raw_address: SocketAddr,
    },
    Connect {
        listener: TcpListener,
        address: SocketAddr,
    },
}

/// One fixture: a client per side, the sockets of one kind, buffers and IRPs for
/// [`MAX_DEPTH`] operations in flight.
struct Fixture<'s> {
    session: &'s Session,
    kind: Kind,
    client: WskClient,
    raw_client: RawClient,
    sockets: Sockets,
    feed: Feed,
    io: Vec<RawIo>,
    raw_bufs: Vec<RawBuf>,
    bufs: Vec<Option<Buf>>,
    /// A target or source address per slot (send_to, receive_from, accept).
    addresses: Vec<SOCKADDR_INET>,
    scratch: Vec<SOCKADDR_INET>,
    /// What the measuring thread writes to feed [`BATCH`] receives.
    chunk: Vec<u8>,
}

impl<'s> Fixture<'s> {
    fn new(
        session: &'s Session,
        kind: Kind,
        mode: CompletionMode,
        depth: usize,
        delay: Option<Duration>,
    ) -> Self {
        let plan = FaultPlan::new(SEED).completion(mode);
        session.set_faults(match delay {
            Some(delay) => plan.delay_completions(delay),
            None => plan,
        });
        // SAFETY: the session's own driver object, valid until the session ends.
        let driver = unsafe { wsk::DriverObject::from_raw(session.driver_object()) }
            .expect("a session has a driver object");
        let client = WskClient::register(driver).unwrap();
        let raw_client = RawClient::register();
        let mut io: Vec<RawIo> = (0..MAX_DEPTH).map(|_| RawIo::new()).collect();
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut feed = Feed::Batch;
        let sockets = match kind {
            Kind::Send => {
                let drain = Drain::spawn();
                let mut remote = SOCKADDR_INET::from(drain.addresses[1]);
                let wsk = client.connect(drain.addresses[0]).wait().unwrap();
                let raw = raw_client.connect(&mut io[0], &mut remote);
                Sockets::Stream {
                    wsk,
                    raw,
                    peers: None,
                    drain: Some(drain),
                }
            }
            Kind::Receive => {
                let (wsk_listener, raw_listener) = (
                    TcpListener::bind(loopback).unwrap(),
                    TcpListener::bind(loopback).unwrap(),
                );
                let mut remote = SOCKADDR_INET::from(raw_listener.local_addr().unwrap());
                let wsk = client
                    .connect(wsk_listener.local_addr().unwrap())
                    .wait()
                    .unwrap();
                let raw = raw_client.connect(&mut io[0], &mut remote);
                let mut peers = None;
                {
                    let wsk_peer = wsk_listener.accept().unwrap().0;
                    let raw_peer = raw_listener.accept().unwrap().0;
                    if depth > 1 {
                        let stop = Arc::new(AtomicBool::new(false));
                        let stopped = Arc::clone(&stop);
                        let writer = std::thread::spawn(move || {
                            let payload = vec![0x5au8; SIZE * BATCH as usize];
                            let (mut a, mut b) = (wsk_peer, raw_peer);
                            // Non-blocking: the side not being measured reads nothing.
                            a.set_nonblocking(true).unwrap();
                            b.set_nonblocking(true).unwrap();
                            while !stopped.load(Ordering::Relaxed) {
                                for peer in [&mut a, &mut b] {
                                    let _ = peer.write(&payload);
                                }
                                std::thread::yield_now();
                            }
                        });
                        feed = Feed::Thread(stop, writer);
                    } else {
                        peers = Some((wsk_peer, raw_peer));
                    }
                }
                Sockets::Stream {
                    wsk,
                    raw,
                    peers,
                    drain: None,
                }
            }
            Kind::SendTo | Kind::ReceiveFrom => {
                let wsk = client.bind_datagram(loopback).wait().unwrap();
                let wsk_address = wsk.local_addr().wait().unwrap();
                let raw = raw_client.bound_socket(&mut io[0], WSK_FLAG_DATAGRAM_SOCKET, loopback);
                // SAFETY: a bound datagram socket; the IRP is not in flight.
                let raw_address = unsafe { raw::local_address(raw, &mut io[0], true) };
                let peer = UdpSocket::bind(loopback).unwrap();
                if kind == Kind::ReceiveFrom && depth > 1 {
                    let stop = Arc::new(AtomicBool::new(false));
                    let stopped = Arc::clone(&stop);
                    let sender = peer.try_clone().unwrap();
                    let writer = std::thread::spawn(move || {
                        let payload = vec![0x5au8; SIZE];
                        while !stopped.load(Ordering::Relaxed) {
                            for _ in 0..8 {
                                let _ = sender.send_to(&payload, wsk_address);
                                let _ = sender.send_to(&payload, raw_address);
                            }
                            std::thread::yield_now();
                        }
                    });
                    feed = Feed::Thread(stop, writer);
                }
                let target = peer.local_addr().unwrap();
                Sockets::Datagram {
                    wsk,
                    raw,
                    peer,
                    target,
                    wsk_address,
                    raw_address,
                }
            }
            Kind::Accept => {
                let wsk = client.listen(loopback).wait().unwrap();
                let wsk_address = wsk.local_addr().wait().unwrap();
                let raw = raw_client.bound_socket(&mut io[0], WSK_FLAG_LISTEN_SOCKET, loopback);
                // SAFETY: a bound listening socket; the IRP is not in flight.
                let raw_address = unsafe { raw::local_address(raw, &mut io[0], false) };
                Sockets::Listen {
                    wsk,
                    raw,
                    wsk_address,
                    raw_address,
                }
            }
            Kind::Connect => {
                let listener = TcpListener::bind(loopback).unwrap();
                let address = listener.local_addr().unwrap();
                Sockets::Connect { listener, address }
            }
        };
        let target = match &sockets {
            Sockets::Datagram { peer, .. } => SOCKADDR_INET::from(peer.local_addr().unwrap()),
            Sockets::Connect { address, .. } => SOCKADDR_INET::from(*address),
            _ => SOCKADDR_INET::default(),
        };
        let receive = matches!(kind, Kind::Receive | Kind::ReceiveFrom);
        let bufs = (0..MAX_DEPTH)
            .map(|_| {
                Some(if receive {
                    Buf::with_capacity(SIZE).unwrap()
                } else {
                    Buf::from_slice(&[0x5a; SIZE]).unwrap()
                })
            })
            .collect();
        Fixture {
            session,
            kind,
            client,
            raw_client,
            sockets,
            feed,
            io,
            raw_bufs: (0..MAX_DEPTH).map(|_| RawBuf::new(SIZE)).collect(),
            bufs,
            addresses: vec![target; MAX_DEPTH],
            scratch: vec![SOCKADDR_INET::default(); MAX_DEPTH],
            chunk: vec![0x5a; SIZE * BATCH as usize],
        }
    }

    /// Feeds the next [`BATCH`] receives of `side` when operation `i` starts a batch.
    #[inline(always)]
    fn feed(&mut self, side: Impl, i: u64) {
        if i % BATCH != 0 || !matches!(self.feed, Feed::Batch) {
            return;
        }
        match &mut self.sockets {
            Sockets::Stream {
                peers: Some((wsk_peer, raw_peer)),
                ..
            } => {
                let peer = if side == Impl::Wsk {
                    wsk_peer
                } else {
                    raw_peer
                };
                peer.write_all(&self.chunk).unwrap();
            }
            Sockets::Datagram {
                peer,
                wsk_address,
                raw_address,
                ..
            } if self.kind == Kind::ReceiveFrom => {
                let to = if side == Impl::Wsk {
                    *wsk_address
                } else {
                    *raw_address
                };
                for _ in 0..BATCH {
                    peer.send_to(&self.chunk[..SIZE], to).unwrap();
                }
            }
            _ => {}
        }
    }

    /// Reserves on the wsk side what `depth` requests in flight use — the raw side made its
    /// [`MAX_DEPTH`] IRPs up front — so that no block is grown while counting: blocks on the
    /// socket (or, for connect, on the client). Two per request: each is reissued as soon as
    /// it completes, when the completion routine of the last one may not have let its block
    /// go yet (see `reserve_requests`).
    fn reserve(&self, depth: usize) {
        let blocks = 2 * depth;
        match &self.sockets {
            Sockets::Stream { wsk, .. } => wsk.reserve_requests(blocks),
            Sockets::Datagram { wsk, .. } => wsk.reserve_requests(blocks),
            Sockets::Listen { wsk, .. } => wsk.reserve_requests(blocks),
            Sockets::Connect { .. } => self.client.reserve_requests(blocks),
        }
        .expect("reserve the blocks of the operations in flight");
    }

    /// Runs `count` operations one at a time, waited for.
    fn run(&mut self, side: Impl, count: u64) {
        match side {
            Impl::Raw => self.run_raw(count),
            Impl::Wsk => self.run_wsk(count),
        }
    }

    #[inline(never)]
    fn run_raw(&mut self, count: u64) {
        for i in 0..count {
            self.feed(Impl::Raw, i);
            let io = &mut self.io[0];
            let buf = &self.raw_bufs[0];
            // SAFETY: each request is waited for before the slot is reused; sockets,
            // buffers and addresses live as long as the fixture.
            unsafe {
                match &mut self.sockets {
                    Sockets::Stream { raw, .. } if self.kind == Kind::Send => {
                        raw::issue_send(*raw, io, buf);
                        assert_eq!(io.wait_ok(), SIZE);
                    }
                    Sockets::Stream { raw, .. } => {
                        raw::issue_receive(*raw, io, buf);
                        assert!(io.wait_ok() > 0);
                    }
                    Sockets::Datagram { raw, .. } if self.kind == Kind::SendTo => {
                        raw::issue_send_to(*raw, io, buf, &mut self.addresses[0]);
                        assert_eq!(io.wait_ok(), SIZE);
                    }
                    Sockets::Datagram { raw, .. } => {
                        raw::issue_receive_from(*raw, io, buf, &mut self.scratch[0]);
                        assert_eq!(io.wait_ok(), SIZE);
                    }
                    Sockets::Listen {
                        raw, raw_address, ..
                    } => {
                        let peer = TcpStream::connect(*raw_address).unwrap();
                        let (local, remote) = self.scratch.split_at_mut(1);
                        let socket = raw::accept(*raw, io, &mut local[0], &mut remote[0]);
                        raw::close(socket, io);
                        drop(peer);
                    }
                    Sockets::Connect { listener, .. } => {
                        let socket = self.raw_client.connect(io, &mut self.addresses[0]);
                        raw::close(socket, io);
                        drop(listener.accept().unwrap());
                    }
                }
            }
        }
    }

    #[inline(never)]
    fn run_wsk(&mut self, count: u64) {
        // The buffer is the loop's, as in a user's loop: moved into each operation and back
        // (the raw side lends its buffer to each request).
        let mut buf = self.bufs[0].take().expect("the first slot's buffer");
        for i in 0..count {
            self.feed(Impl::Wsk, i);
            match &self.sockets {
                Sockets::Stream { wsk, .. } if self.kind == Kind::Send => {
                    let (sent, back) = wsk.send(buf).wait();
                    assert_eq!(sent.unwrap(), SIZE);
                    buf = back;
                }
                Sockets::Stream { wsk, .. } => {
                    buf.clear();
                    let (received, back) = wsk.receive(buf).wait();
                    assert!(received.unwrap() > 0);
                    buf = back;
                }
                Sockets::Datagram { wsk, target, .. } if self.kind == Kind::SendTo => {
                    let (sent, back) = wsk.send_to(buf, *target).wait();
                    assert_eq!(sent.unwrap(), SIZE);
                    buf = back;
                }
                Sockets::Datagram { wsk, .. } => {
                    buf.clear();
                    let (received, back) = wsk.receive_from(buf).wait();
                    assert_eq!(received.unwrap().0, SIZE);
                    buf = back;
                }
                Sockets::Listen {
                    wsk, wsk_address, ..
                } => {
                    let peer = TcpStream::connect(*wsk_address).unwrap();
                    let (socket, _) = wsk.accept().wait().unwrap();
                    socket.close().wait().unwrap();
                    drop(peer);
                }
                Sockets::Connect { listener, address } => {
                    let socket = self.client.connect(*address).wait().unwrap();
                    socket.close().wait().unwrap();
                    drop(listener.accept().unwrap());
                }
            }
        }
        self.bufs[0] = Some(buf);
    }

    /// Runs `count` operations with `depth` in flight on one socket (`depth` > 1: send,
    /// receive, send_to and receive_from only).
    fn run_depth(&mut self, side: Impl, depth: usize, count: u64) {
        if depth == 1 {
            return self.run(side, count);
        }
        assert!(self.kind.has_depth() && depth <= MAX_DEPTH);
        match side {
            Impl::Raw => self.raw_depth(depth, count),
            Impl::Wsk => self.wsk_depth(depth, count),
        }
    }

    fn raw_depth(&mut self, depth: usize, count: u64) {
        let (socket, kind) = match &self.sockets {
            Sockets::Stream { raw, .. } | Sockets::Datagram { raw, .. } => (*raw, self.kind),
            _ => unreachable!(),
        };
        let issue = |slot: usize, io: &mut RawIo, bufs: &[RawBuf], a: &mut [SOCKADDR_INET]| {
            // SAFETY: the slot's IRP is not in flight; its buffer and address live as long
            // as the fixture, which waits for every request it issued.
            unsafe {
                match kind {
                    Kind::Send => raw::issue_send(socket, io, &bufs[slot]),
                    Kind::Receive => raw::issue_receive(socket, io, &bufs[slot]),
                    Kind::SendTo => raw::issue_send_to(socket, io, &bufs[slot], &mut a[slot]),
                    Kind::ReceiveFrom => {
                        raw::issue_receive_from(socket, io, &bufs[slot], &mut a[slot]);
                    }
                    Kind::Accept | Kind::Connect => unreachable!(),
                }
            }
        };
        let addresses = if kind == Kind::SendTo {
            &mut self.addresses
        } else {
            &mut self.scratch
        };
        let mut issued = 0;
        for slot in 0..depth {
            issue(slot, &mut self.io[slot], &self.raw_bufs, addresses);
            issued += 1;
        }
        let mut completed = 0;
        while completed < count {
            for slot in 0..depth {
                if completed == count {
                    break;
                }
                let io = &mut self.io[slot];
                if issued == completed {
                    break;
                }
                io.wait_ok();
                completed += 1;
                if issued < count {
                    issue(slot, io, &self.raw_bufs, addresses);
                    issued += 1;
                }
            }
        }
    }

    fn wsk_depth(&mut self, depth: usize, count: u64) {
        let Fixture { sockets, bufs, .. } = self;
        match sockets {
            Sockets::Stream { wsk, .. } if self.kind == Kind::Send => poll_depth(
                depth,
                count,
                bufs,
                |buf| wsk.send(buf),
                |(sent, back)| {
                    assert_eq!(sent.unwrap(), SIZE);
                    back
                },
            ),
            Sockets::Stream { wsk, .. } => poll_depth(
                depth,
                count,
                bufs,
                |mut buf| {
                    buf.clear();
                    wsk.receive(buf)
                },
                |(received, back)| {
                    assert!(received.unwrap() > 0);
                    back
                },
            ),
            Sockets::Datagram { wsk, target, .. } if self.kind == Kind::SendTo => {
                let to = *target;
                poll_depth(
                    depth,
                    count,
                    bufs,
                    |buf| wsk.send_to(buf, to),
                    |(sent, back)| {
                        assert_eq!(sent.unwrap(), SIZE);
                        back
                    },
                );
            }
            Sockets::Datagram { wsk, .. } => poll_depth(
                depth,
                count,
                bufs,
                |mut buf| {
                    buf.clear();
                    wsk.receive_from(buf)
                },
                |(received, back)| {
                    assert_eq!(received.unwrap().0, SIZE);
                    back
                },
            ),
            _ => unreachable!(),
        }
    }

    /// Closes everything (each side's sockets with its own API) and stops the peers.
    fn close(self) {
        let Fixture {
            session: _,
            kind: _,
            client,
            raw_client,
            sockets,
            feed,
            mut io,
            raw_bufs,
            bufs,
            ..
        } = self;
        if let Feed::Thread(stop, writer) = feed {
            stop.store(true, Ordering::Relaxed);
            writer.join().unwrap();
        }
        let mut drain = None;
        match sockets {
            Sockets::Stream {
                wsk, raw, drain: d, ..
            } => {
                wsk.close().wait().unwrap();
                // SAFETY: nothing in flight; not used afterwards.
                unsafe { raw::close(raw, &mut io[0]) };
                drain = d;
            }
            Sockets::Datagram { wsk, raw, .. } => {
                wsk.close().wait().unwrap();
                // SAFETY: as above.
                unsafe { raw::close(raw, &mut io[0]) };
            }
            Sockets::Listen { wsk, raw, .. } => {
                wsk.close().wait().unwrap();
                // SAFETY: as above.
                unsafe { raw::close(raw, &mut io[0]) };
            }
            Sockets::Connect { .. } => {}
        }
        if let Some(mut drain) = drain {
            drain.finish();
        }
        drop((io, raw_bufs, bufs, raw_client));
        client.shutdown().unwrap();
    }
}

/// Keeps `depth` futures in flight, polled round-robin with a no-op waker (no executor, no
/// allocation), until `count` have completed; each completed one hands its buffer to the
/// next.
fn poll_depth<F: Future + Unpin>(
    depth: usize,
    count: u64,
    bufs: &mut [Option<Buf>],
    mut start: impl FnMut(Buf) -> F,
    mut done: impl FnMut(F::Output) -> Buf,
) {
    let mut slots: [Option<F>; MAX_DEPTH] = std::array::from_fn(|_| None);
    let mut cx = Context::from_waker(Waker::noop());
    let mut issued = 0;
    for (slot, buf) in slots.iter_mut().zip(bufs.iter_mut()).take(depth) {
        *slot = Some(start(buf.take().unwrap()));
        issued += 1;
    }
    let mut completed = 0;
    while completed < count {
        for (slot, buf) in slots.iter_mut().zip(bufs.iter_mut()).take(depth) {
            let Some(op) = slot else { continue };
            if let Poll::Ready(output) = Pin::new(op).poll(&mut cx) {
                completed += 1;
                let back = done(output);
                if issued < count {
                    *slot = Some(start(back));
                    issued += 1;
                } else {
                    *slot = None;
                    *buf = Some(back);
                }
            }
        }
    }
}

/// Allocations during `f`: (kernel: pool blocks + IRPs + MDLs, heap: all threads).
fn allocations(session: &Session, f: impl FnOnce()) -> (u64, u64) {
    let before = session.report();
    HEAP_ALLOCATIONS.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    f();
    COUNTING.store(false, Ordering::SeqCst);
    let after = session.report();
    let kernel = (after.pool_allocations - before.pool_allocations)
        + (after.irps_allocated - before.irps_allocated)
        + (after.mdls_allocated - before.mdls_allocated);
    (kernel, HEAP_ALLOCATIONS.load(Ordering::SeqCst))
}

/// Runs `f` on a fresh fixture in its own session, then closes it and checks the session.
fn with_fixture<T>(
    kind: Kind,
    mode: CompletionMode,
    depth: usize,
    f: impl FnOnce(&mut Fixture) -> T,
) -> T {
    with_delayed_fixture(kind, mode, depth, None, f)
}

/// [`with_fixture`], completions delayed by `delay` if given.
fn with_delayed_fixture<T>(
    kind: Kind,
    mode: CompletionMode,
    depth: usize,
    delay: Option<Duration>,
    f: impl FnOnce(&mut Fixture) -> T,
) -> T {
    let session = Session::start();
    let mut fixture = Fixture::new(&session, kind, mode, depth, delay);
    let result = f(&mut fixture);
    fixture.close();
    session.finish();
    result
}

/// Heap allocations in a whole steady-state run that are growth rather than per operation:
/// wsk-host's tables (of IRPs, of events) double, and reach any length in a few allocations.
/// One allocation per operation shows as the run's length (hundreds or more), one every
/// eighth operation as 60 in the reduced run.
const GROWTH: usize = 16;

fn allocs(args: &[String]) -> Result<(), String> {
    let mut ops = 2_000u64;
    let mut check = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--ops" => {
                ops = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .ok_or("--ops takes a number")?;
            }
            "--check" => check = true,
            other => return Err(format!("allocs: unknown option `{other}`")),
        }
    }
    let mut failures = Vec::new();
    println!(
        "allocations per operation in steady state ({ops} operations after {WARM_UP} of warm-up;"
    );
    println!(
        "kernel = pool + IRP + MDL; heap = all threads, wsk-host's provider included: raw = its own):"
    );
    println!(
        "{:<13} {:<8} {:>5}  {:>11} {:>11}  {:>11} {:>11}",
        "operation", "mode", "depth", "raw kernel", "raw heap", "wsk kernel", "wsk heap"
    );
    for kind in KINDS {
        for mode in [CompletionMode::AlwaysInline, CompletionMode::AlwaysPending] {
            let depths: &[usize] = if kind.has_depth() { &DEPTHS } else { &[1] };
            for &depth in depths {
                let mut row = [(0u64, 0u64); 2];
                for (i, side) in [Impl::Raw, Impl::Wsk].into_iter().enumerate() {
                    let ops = if kind.has_depth() {
                        ops
                    } else {
                        ops.div_ceil(8)
                    };
                    row[i] = with_fixture(kind, mode, depth, |f| {
                        if side == Impl::Wsk {
                            f.reserve(depth);
                        }
                        f.run_depth(side, depth, kind.warm_up());
                        let session = f.session;
                        allocations(session, || f.run_depth(side, depth, ops))
                    });
                }
                let ops = if kind.has_depth() {
                    ops
                } else {
                    ops.div_ceil(8)
                };
                let per = |n: u64| n as f64 / ops as f64;
                println!(
                    "{:<13} {:<8} {:>5}  {:>11.3} {:>11.3}  {:>11.3} {:>11.3}",
                    kind.name(),
                    mode_name(mode),
                    depth,
                    per(row[0].0),
                    per(row[0].1),
                    per(row[1].0),
                    per(row[1].1)
                );
                // Kernel allocations are counted exactly. Heap allocations are counted on
                // every thread, wsk-host's provider included, which allocates nothing per
                // request in steady state (the raw column), so wsk's own are the excess over
                // the raw code, in every mode and at every depth. The wsk side reserved its
                // blocks for `depth` requests (two each) before the warm-up (as the raw side made its
                // IRPs), so no block is grown while counting: any kernel excess is per
                // operation. A table that doubles allocates a few times in a run (GROWTH);
                // more heap is per operation. Accept and connect make a socket per
                // operation: the provider's allocation for it is in both columns, and wsk's
                // socket state comes from its client's spare sockets (the cores of the
                // sockets closed before), so it is excess only if that reuse fails.
                let kernel_excess = row[1].0 as f64 - row[0].0 as f64;
                let heap_excess = row[1].1 as f64 - row[0].1 as f64;
                let heap_excess = if heap_excess <= GROWTH as f64 {
                    0.0
                } else {
                    heap_excess
                };
                let mut what = Vec::new();
                if kernel_excess > 0.0 {
                    what.push(format!("{:.3} kernel", kernel_excess / ops as f64));
                }
                if heap_excess > 0.0 {
                    what.push(format!("{:.3} heap", heap_excess / ops as f64));
                }
                if !what.is_empty() {
                    let what = format!(
                        "{} {} depth {depth}: wsk makes {} allocations/op more than raw",
                        kind.name(),
                        mode_name(mode),
                        what.join(" + ")
                    );
                    failures.push(what);
                }
            }
        }
    }
    if check && !failures.is_empty() {
        return Err(format!(
            "wsk allocates per operation in steady state:\n  {}",
            failures.join("\n  ")
        ));
    }
    for failure in &failures {
        println!("  wsk allocates: {failure}");
    }
    Ok(())
}

fn count(args: &[String]) -> Result<(), String> {
    let usage = "count OP raw|wsk inline|pending|delayed N";
    let [op, side, mode, n] = args else {
        return Err(usage.into());
    };
    let kind = Kind::parse(op).ok_or(usage)?;
    let side = match side.as_str() {
        "raw" => Impl::Raw,
        "wsk" => Impl::Wsk,
        _ => return Err(usage.into()),
    };
    let (mode, delay) = match mode.as_str() {
        "delayed" => (CompletionMode::AlwaysPending, Some(DELAY)),
        mode => (parse_mode(mode).ok_or(usage)?, None),
    };
    let n: u64 = n.parse().map_err(|_| usage)?;
    with_delayed_fixture(kind, mode, 1, delay, |f| {
        f.run(side, kind.warm_up());
        f.run(side, n);
    });
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("count") => count(&args[1..]),
        Some("allocs") => allocs(&args[1..]),
        Some("echo") => echo::command(&args[1..]),
        Some("drain") => drain().map_err(|e| format!("drain: {e}")),
        _ => Err("usage: wsk-bench count OP raw|wsk inline|pending N | allocs [--ops N] [--check] | echo time|count ... | drain\n(run through `cargo xtask bench`, `cargo xtask bench --echo`)".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wsk-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
