//! Seeded randomized stress of `wsk` through its public API, on wsk-host.
//!
//! Each run draws, from its seed, a fault plan (completion mode, delays, IRP/MDL/pool/work
//! item allocation failures, partial sends, resets, refused connects, concurrent event
//! delivery, inline completion at the caller's IRQL), starts loopback peers (TCP echo over
//! IPv4 and IPv6, a listener that accepts and closes, one that accepts and stalls, UDP echo
//! over IPv4 and IPv6, a closed port), then runs a random sequence of steps over many
//! sockets: connects of every kind, listening and accepting (with std dialers), sends and
//! receives of every kind with byte-exact echo checks where the run allows them, datagrams,
//! disconnects, closes, drops of sockets and of operations in flight, `mem::forget` of
//! operations in flight, short `wait_timeout`s, futures on a `TaskSet` and `block_on`, event
//! handlers that consume, consume part, reject and retain (dropping what they retain inside
//! the callback, later in another callback, from the test thread or from a releaser thread),
//! name resolution, and the client dropped at random points — from the test thread, from a
//! task or from an event handler (at DISPATCH_LEVEL, through its work item) — after which its
//! sockets must fail cleanly. Every run ends with the verifier's verdict: nothing found, or,
//! for a run that forgot operations, leaks of the kinds a forgotten operation implies and
//! nothing else.
//!
//! Seeds: `DEFAULT_SEEDS`, or only `WSK_STRESS_SEED` (decimal or `0x` hex) when set.
//! `WSK_STRESS_OPS` sets the number of steps per run. A failing run prints its seed; a run
//! that exceeds `RUN_LIMIT` aborts the process with its seed and step (a hang fails loudly).

use std::future::Future;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wsk::task::{TaskSet, block_on};
use wsk::{
    AcceptDecision, AddressFamily, Buf, BufList, ConnectionEvents, ConnectionSocket,
    DatagramEvents, DatagramSocket, Error, ErrorKind, Incoming, ListenEvents, ListenSocket,
    ReceiveDecision, ReceivedData, ReceivedDatagrams, ResolveHints, RetainedData, SendFlags,
    WskClient,
};
use wsk_host::{CompletionMode, FaultPlan, Nth, Rule, Session};

mod common;
use common::{RefusingPort, driver};

/// The seeds CI runs.
const DEFAULT_SEEDS: [u64; 6] = [
    // Mixed completion, concurrent events, inline completion at the caller's IRQL, no
    // faults: byte-exact echo checks throughout.
    0x7b,
    // Mixed; IRP, MDL, pool and work item allocation failures; partial sends; forgets.
    0x89,
    // Always pending; partial sends; connections reset; concurrent events; forgets.
    0x70,
    // Always pending, delayed completions, refused connects, inline at caller IRQL; forgets.
    0x92, // Always inline, delayed completions, IRP and pool failures, partial sends.
    0x9b, // Always inline, four event threads, inline at the caller's IRQL, no faults.
    0x6b,
];
/// Steps per run unless `WSK_STRESS_OPS` says otherwise.
const DEFAULT_OPS: usize = 2000;
/// A run taking longer than this aborts the process.
const RUN_LIMIT: Duration = Duration::from_secs(60);
/// Most connection sockets alive at once.
const MAX_CONNS: usize = 14;

// ---- randomness -----------------------------------------------------------------------------

const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GAMMA);
        mix(self.0)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// In `lo..hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }
}

/// splitmix64 shared between threads (event handlers, tasks).
fn shared_next(state: &AtomicU64) -> u64 {
    mix(state
        .fetch_add(GAMMA, Ordering::Relaxed)
        .wrapping_add(GAMMA))
}

fn seeds() -> Vec<u64> {
    match std::env::var("WSK_STRESS_SEED") {
        Ok(text) => {
            let text = text.trim();
            let seed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
                Some(hex) => u64::from_str_radix(&hex.replace('_', ""), 16),
                None => text.replace('_', "").parse(),
            };
            vec![seed.unwrap_or_else(|e| panic!("WSK_STRESS_SEED={text}: {e}"))]
        }
        Err(_) => DEFAULT_SEEDS.to_vec(),
    }
}

fn ops() -> usize {
    std::env::var("WSK_STRESS_OPS")
        .ok()
        .map(|t| t.trim().parse().expect("WSK_STRESS_OPS is a number"))
        .unwrap_or(DEFAULT_OPS)
}

// ---- helpers ------------------------------------------------------------------------------

/// Polls once with a no-op waker: `Err(future)` while it is in flight.
fn poll_once<F: Future + Unpin>(mut future: F) -> Result<F::Output, F> {
    let mut cx = Context::from_waker(Waker::noop());
    match Pin::new(&mut future).poll(&mut cx) {
        Poll::Ready(output) => Ok(output),
        Poll::Pending => Err(future),
    }
}

fn pattern(salt: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (mix(salt ^ (i as u64 / 8)) >> ((i % 8) * 8)) as u8)
        .collect()
}

fn loopback(v6: bool) -> SocketAddr {
    if v6 {
        "[::1]:0".parse().unwrap()
    } else {
        "127.0.0.1:0".parse().unwrap()
    }
}

/// Timer threads of `Deadline`s still holding a waker.
static TIMERS: AtomicUsize = AtomicUsize::new(0);

/// A future that gives up (`None`) at a deadline, woken by a timer thread — so that
/// `block_on` and tasks have deadlines too. Dropping it drops the inner operation (which
/// cancels it) and releases the timer's waker at once.
struct Deadline<F> {
    inner: F,
    at: Instant,
    timer: Option<Arc<(Mutex<Option<Waker>>, Condvar)>>,
}

impl<F> Deadline<F> {
    fn new(inner: F, ms: u64) -> Deadline<F> {
        Deadline {
            inner,
            at: Instant::now() + Duration::from_millis(ms),
            timer: None,
        }
    }
}

impl<F: Future + Unpin> Future for Deadline<F> {
    type Output = Option<F::Output>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Poll::Ready(output) = Pin::new(&mut this.inner).poll(cx) {
            return Poll::Ready(Some(output));
        }
        if Instant::now() >= this.at {
            return Poll::Ready(None);
        }
        match &this.timer {
            Some(timer) => {
                let mut slot = timer.0.lock().unwrap();
                if slot.is_some() {
                    *slot = Some(cx.waker().clone());
                }
            }
            None => {
                let timer = Arc::new((Mutex::new(Some(cx.waker().clone())), Condvar::new()));
                this.timer = Some(Arc::clone(&timer));
                let at = this.at;
                TIMERS.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    let mut slot = timer.0.lock().unwrap();
                    loop {
                        let now = Instant::now();
                        if slot.is_none() || now >= at {
                            break;
                        }
                        slot = timer.1.wait_timeout(slot, at - now).unwrap().0;
                    }
                    let waker = slot.take();
                    drop(slot);
                    if let Some(waker) = waker {
                        waker.wake();
                    }
                    TIMERS.fetch_sub(1, Ordering::SeqCst);
                });
            }
        }
        Poll::Pending
    }
}

impl<F> Drop for Deadline<F> {
    fn drop(&mut self) {
        if let Some(timer) = &self.timer {
            timer.0.lock().unwrap().take();
            timer.1.notify_all();
        }
    }
}

// ---- peers --------------------------------------------------------------------------------

struct Peers {
    stop: Arc<AtomicBool>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
    echo4: SocketAddr,
    echo6: SocketAddr,
    closer: SocketAddr,
    staller: SocketAddr,
    udp4: SocketAddr,
    udp6: SocketAddr,
    /// Refuses every connection while the run lasts (see `RefusingPort`).
    _refusing: RefusingPort,
    refused: SocketAddr,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum PeerKind {
    Echo,
    Closer,
    Staller,
    Dialer,
}

impl Peers {
    fn start() -> Peers {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = Arc::new(Mutex::new(Vec::new()));
        let spawn_listener = |v6: bool, kind: PeerKind| -> SocketAddr {
            let listener = TcpListener::bind(loopback(v6)).unwrap();
            let address = listener.local_addr().unwrap();
            let (stop, list) = (Arc::clone(&stop), Arc::clone(&threads));
            let handle = std::thread::spawn(move || {
                let mut held = Vec::new();
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    match kind {
                        PeerKind::Echo => {
                            let stop = Arc::clone(&stop);
                            let echo = std::thread::spawn(move || echo_stream(stream, &stop));
                            list.lock().unwrap().push(echo);
                        }
                        PeerKind::Closer => drop(stream),
                        _ => held.push(stream),
                    }
                }
            });
            threads.lock().unwrap().push(handle);
            address
        };
        let echo4 = spawn_listener(false, PeerKind::Echo);
        let echo6 = spawn_listener(true, PeerKind::Echo);
        let closer = spawn_listener(false, PeerKind::Closer);
        let staller = spawn_listener(false, PeerKind::Staller);
        let spawn_udp = |v6: bool| -> SocketAddr {
            let socket = UdpSocket::bind(loopback(v6)).unwrap();
            socket
                .set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            let address = socket.local_addr().unwrap();
            let stop = Arc::clone(&stop);
            let handle = std::thread::spawn(move || {
                let mut datagram = vec![0u8; 65536];
                while !stop.load(Ordering::SeqCst) {
                    if let Ok((n, from)) = socket.recv_from(&mut datagram) {
                        let _ = socket.send_to(&datagram[..n], from);
                    }
                }
            });
            threads.lock().unwrap().push(handle);
            address
        };
        let udp4 = spawn_udp(false);
        let udp6 = spawn_udp(true);
        let refusing = RefusingPort::new(false);
        let refused = refusing.address();
        Peers {
            stop,
            threads,
            echo4,
            echo6,
            closer,
            staller,
            udp4,
            udp6,
            _refusing: refusing,
            refused,
        }
    }

    /// A std client of a wsk listener: connects `count` times, writes, reads a little.
    fn dial(&self, address: SocketAddr, count: usize, pause_ms: u64) {
        let stop = Arc::clone(&self.stop);
        let handle = std::thread::spawn(move || {
            for _ in 0..count {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_secs(1))
                else {
                    continue;
                };
                let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
                let _ = stream.set_write_timeout(Some(Duration::from_millis(500)));
                let _ = stream.write_all(b"dial");
                let mut reply = [0u8; 256];
                let _ = stream.read(&mut reply);
                std::thread::sleep(Duration::from_millis(pause_ms));
                let _ = stream.shutdown(Shutdown::Both);
            }
        });
        self.threads.lock().unwrap().push(handle);
    }

    fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for address in [self.echo4, self.echo6, self.closer, self.staller] {
            let _ = TcpStream::connect_timeout(&address, Duration::from_secs(1));
        }
        loop {
            let next = self.threads.lock().unwrap().pop();
            match next {
                Some(handle) => handle.join().expect("a peer thread panicked"),
                None => break,
            }
        }
    }
}

fn echo_stream(mut stream: TcpStream, stop: &AtomicBool) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let mut chunk = vec![0u8; 16384];
    while !stop.load(Ordering::SeqCst) {
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => {
                if stream.write_all(&chunk[..n]).is_err() {
                    return;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

// ---- state shared with handlers and tasks -------------------------------------------------

#[derive(Default)]
struct Stats {
    indications: AtomicUsize,
    retained: AtomicUsize,
    released_in_callback: AtomicUsize,
    replies: AtomicUsize,
    accepted_in_callback: AtomicUsize,
    disconnects: AtomicUsize,
    client_drops_at_dispatch: AtomicUsize,
    irql_checks: AtomicUsize,
    task_echoes: AtomicUsize,
}

struct Shared {
    rng: AtomicU64,
    /// The client and its generation.
    client: Mutex<Option<(u64, WskClient)>>,
    /// The next handler or task to see it drops the client (at DISPATCH_LEVEL).
    drop_client_armed: AtomicBool,
    retaining: AtomicBool,
    retained: Mutex<Vec<RetainedData>>,
    accepted: Mutex<Vec<ConnectionSocket>>,
    tasks: Mutex<Weak<TaskSet>>,
    anomalies: Mutex<Vec<String>>,
    stats: Stats,
}

impl Shared {
    fn next(&self) -> u64 {
        shared_next(&self.rng)
    }

    fn anomaly(&self, text: String) {
        eprintln!("stress: anomaly: {text}");
        self.anomalies.lock().unwrap().push(text);
    }

    /// At DISPATCH_LEVEL (a handler or a task): drops the client if armed.
    fn maybe_drop_client(&self) {
        if !self.drop_client_armed.swap(false, Ordering::SeqCst) {
            return;
        }
        let taken = match self.client.try_lock() {
            Ok(mut slot) => slot.take(),
            Err(_) => {
                self.drop_client_armed.store(true, Ordering::SeqCst);
                return;
            }
        };
        if let Some((_, client)) = taken {
            // Above PASSIVE_LEVEL: the teardown goes to the client's work item.
            drop(client);
            self.stats
                .client_drops_at_dispatch
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Drops one indication retained earlier (from a callback: at DISPATCH_LEVEL).
    fn release_one(&self) {
        let taken = self.retained.lock().unwrap().pop();
        drop(taken);
    }

    fn keep(&self, retained: RetainedData) {
        self.stats.retained.fetch_add(1, Ordering::Relaxed);
        self.retained.lock().unwrap().push(retained);
    }

    /// Spawns `future` on the run's task set, if it is alive.
    fn spawn(&self, future: impl Future<Output = ()> + Send + 'static) {
        let tasks = self.tasks.lock().unwrap().upgrade();
        if let Some(tasks) = tasks {
            let _ = tasks.spawn(future);
        }
    }

    /// Inside a callback or task: blocking waits refuse with IRQL_TOO_HIGH.
    fn check_irql_refusals(&self, socket_op: impl FnOnce() -> wsk::Result<SocketAddr>) {
        self.stats.irql_checks.fetch_add(1, Ordering::Relaxed);
        match socket_op() {
            Err(e) if e == Error::IRQL_TOO_HIGH => {}
            other => self.anomaly(format!(
                "a wait at DISPATCH_LEVEL returned {other:?}, not IRQL_TOO_HIGH"
            )),
        }
        match block_on(async {}) {
            Err(e) if e == Error::IRQL_TOO_HIGH => {}
            other => self.anomaly(format!(
                "block_on at DISPATCH_LEVEL returned {other:?}, not IRQL_TOO_HIGH"
            )),
        }
    }
}

struct ConnHandler {
    shared: Arc<Shared>,
}

impl ConnectionEvents for ConnHandler {
    fn on_receive<'a>(&self, data: ReceivedData<'a>) -> ReceiveDecision<'a> {
        let s = &self.shared;
        s.stats.indications.fetch_add(1, Ordering::Relaxed);
        let r = s.next();
        if r % 4 == 0 {
            let mut bytes = vec![0u8; data.len()];
            match data.copy_to(&mut bytes) {
                Ok(n) if n == data.len() => {}
                Ok(n) => s.anomaly(format!("copy_to copied {n} of {} bytes", data.len())),
                Err(_) => {}
            }
            let total: usize = data.chunks().map(|c| c.map_or(0, <[u8]>::len)).sum();
            if total != data.len() {
                s.anomaly(format!("chunks hold {total} of {} bytes", data.len()));
            }
        }
        if r % 16 == 1 && s.stats.replies.fetch_add(1, Ordering::Relaxed) < 40 {
            if let Ok(buf) = Buf::from_slice(b"reply from a handler") {
                let send = data.socket().send(buf);
                s.spawn(async move {
                    let _ = send.await;
                });
            }
        }
        if r % 32 == 2 {
            let socket = data.socket();
            s.check_irql_refusals(|| socket.local_addr().wait());
        }
        if r % 8 == 3 {
            s.release_one();
        }
        s.maybe_drop_client();
        match (r >> 16) % 10 {
            0..=3 => data.consume(),
            4 | 5 => {
                let count = (r >> 32) as usize % (data.len() + 1);
                data.consume_part(count)
            }
            6 => data.reject(),
            7 => {
                let (retained, decision) = data.retain();
                if retained.is_ok() {
                    s.stats.released_in_callback.fetch_add(1, Ordering::Relaxed);
                }
                drop(retained);
                decision
            }
            _ if s.retaining.load(Ordering::SeqCst) => {
                let (retained, decision) = data.retain();
                if let Ok(retained) = retained {
                    let copied: usize = retained.view().map_or(0, |view| {
                        view.chunks().map(|c| c.map_or(0, <[u8]>::len)).sum()
                    });
                    if copied != retained.len() {
                        s.anomaly(format!(
                            "retained chunks hold {copied} of {} bytes",
                            retained.len()
                        ));
                    }
                    s.keep(retained);
                }
                decision
            }
            _ => data.consume(),
        }
    }

    fn on_disconnect(&self, _abortive: bool) {
        self.shared
            .stats
            .disconnects
            .fetch_add(1, Ordering::Relaxed);
        self.shared.maybe_drop_client();
    }
}

struct DgramHandler {
    shared: Arc<Shared>,
}

impl DatagramEvents for DgramHandler {
    fn on_receive_from<'a>(&self, datagrams: ReceivedDatagrams<'a>) -> ReceiveDecision<'a> {
        let s = &self.shared;
        s.stats.indications.fetch_add(1, Ordering::Relaxed);
        let r = s.next();
        let mut source = None;
        for datagram in datagrams.iter() {
            let mut bytes = vec![0u8; datagram.len()];
            if let Ok(n) = datagram.copy_to(&mut bytes) {
                if n != datagram.len() {
                    s.anomaly(format!("datagram copy_to {n} of {}", datagram.len()));
                }
            }
            match datagram.source() {
                Ok(from) if from.ip().is_loopback() => source = Some(from),
                Ok(from) => s.anomaly(format!("a datagram from {from}")),
                Err(_) => {}
            }
        }
        if let Some(to) = source {
            if r % 8 == 1 && s.stats.replies.fetch_add(1, Ordering::Relaxed) < 40 {
                if let Ok(buf) = Buf::from_slice(b"datagram reply") {
                    let send = datagrams.socket().send_to(buf, to);
                    s.spawn(async move {
                        let _ = send.await;
                    });
                }
            }
        }
        if r % 8 == 2 {
            s.release_one();
        }
        s.maybe_drop_client();
        match (r >> 16) % 6 {
            0 | 1 => datagrams.consume(),
            2 => datagrams.reject(),
            3 => {
                let (retained, decision) = datagrams.retain();
                drop(retained);
                decision
            }
            _ if s.retaining.load(Ordering::SeqCst) => {
                let (retained, decision) = datagrams.retain();
                if let Ok(retained) = retained {
                    let total: usize = retained
                        .view()
                        .map_or(0, |view| view.datagrams().map(|d| d.len()).sum());
                    if total != retained.len() {
                        s.anomaly(format!("retained datagrams {total} of {}", retained.len()));
                    }
                    s.keep(retained);
                }
                decision
            }
            _ => datagrams.consume(),
        }
    }
}

struct ListenHandler {
    shared: Arc<Shared>,
}

impl ListenEvents for ListenHandler {
    fn on_accept<'a>(&self, incoming: Incoming<'a>) -> AcceptDecision<'a> {
        let s = &self.shared;
        let r = s.next();
        match (incoming.local_addr(), incoming.peer_addr()) {
            (Ok(local), Ok(peer)) if local.ip().is_loopback() && peer.ip().is_loopback() => {}
            other => s.anomaly(format!("incoming addresses {other:?}")),
        }
        s.maybe_drop_client();
        if r % 4 == 0 {
            return incoming.reject();
        }
        match incoming.accept() {
            Ok((socket, decision)) => {
                s.stats.accepted_in_callback.fetch_add(1, Ordering::Relaxed);
                if r % 4 == 1 {
                    // Dropped at DISPATCH_LEVEL: closed in the background.
                    drop(socket);
                } else {
                    if r % 8 == 2 {
                        let _ = socket.set_events(ConnHandler {
                            shared: Arc::clone(s),
                        });
                    }
                    s.accepted.lock().unwrap().push(socket);
                }
                decision
            }
            Err((_, decision)) => decision,
        }
    }
}

// ---- the test thread's sockets and operations ----------------------------------------------

struct Conn {
    sock: ConnectionSocket,
    peer: PeerKind,
    generation: u64,
    /// Nothing happened to it that could desynchronise an echo.
    clean: bool,
    events: bool,
}

struct Dgram {
    sock: DatagramSocket,
    v6: bool,
    events: bool,
}

struct Listener {
    sock: ListenSocket,
    generation: u64,
    events: bool,
}

/// An operation left in flight.
enum Held {
    Receive(wsk::ops::Receive),
    Send(wsk::ops::Send),
    ReceiveFrom(wsk::ops::ReceiveFrom),
    Accept(wsk::ops::Accept),
    Connect(wsk::ops::Connect),
    Resolve(wsk::ops::Resolve),
}

impl Held {
    fn name(&self) -> &'static str {
        match self {
            Held::Receive(_) => "receive",
            Held::Send(_) => "send",
            Held::ReceiveFrom(_) => "receive_from",
            Held::Accept(_) => "accept",
            Held::Connect(_) => "connect",
            Held::Resolve(_) => "resolve",
        }
    }

    fn wait_timeout(self, ms: u32) -> bool {
        match self {
            Held::Receive(op) => op.wait_timeout(ms).0.is_ok(),
            Held::Send(op) => op.wait_timeout(ms).0.is_ok(),
            Held::ReceiveFrom(op) => op.wait_timeout(ms).0.is_ok(),
            Held::Accept(op) => op.wait_timeout(ms).is_ok(),
            Held::Connect(op) => op.wait_timeout(ms).is_ok(),
            Held::Resolve(op) => op.wait_timeout(ms).is_ok(),
        }
    }

    fn forget(self) {
        match self {
            Held::Receive(op) => std::mem::forget(op),
            Held::Send(op) => std::mem::forget(op),
            Held::ReceiveFrom(op) => std::mem::forget(op),
            Held::Accept(op) => std::mem::forget(op),
            Held::Connect(op) => std::mem::forget(op),
            Held::Resolve(op) => std::mem::forget(op),
        }
    }
}

/// What the seed drew for a run.
#[derive(Debug)]
struct RunPlan {
    completion: CompletionMode,
    delay_ms: Option<u64>,
    irp_failures: f64,
    mdl_failures: f64,
    pool_failures: f64,
    work_item_failures: f64,
    partial_sends: Option<usize>,
    reset_after: Option<u64>,
    refuse: bool,
    concurrent_events: Option<usize>,
    passive_inline: Option<bool>,
    forget: bool,
}

impl RunPlan {
    fn draw(rng: &mut Rng) -> RunPlan {
        let modes_from_env = std::env::var_os("WSK_HOST_MODES").is_some();
        let failing = rng.chance(40);
        let probability = |rng: &mut Rng, percent| {
            if failing && rng.chance(percent) {
                rng.range(1, 40) as f64 / 1000.0
            } else {
                0.0
            }
        };
        RunPlan {
            completion: match rng.below(3) {
                0 => CompletionMode::Mixed,
                1 => CompletionMode::AlwaysInline,
                _ => CompletionMode::AlwaysPending,
            },
            delay_ms: rng.chance(20).then(|| rng.range(1, 3)),
            irp_failures: probability(rng, 60),
            mdl_failures: probability(rng, 50),
            pool_failures: probability(rng, 50),
            work_item_failures: if failing && rng.chance(30) { 0.3 } else { 0.0 },
            partial_sends: rng.chance(35).then(|| rng.range(1, 3000) as usize),
            reset_after: rng.chance(12).then(|| rng.range(500, 60_000)),
            refuse: rng.chance(8),
            concurrent_events: (!modes_from_env).then(|| {
                if rng.chance(50) {
                    rng.range(2, 5) as usize
                } else {
                    1
                }
            }),
            passive_inline: (!modes_from_env).then(|| rng.chance(50)),
            forget: rng.chance(35),
        }
    }

    fn faulty(&self) -> bool {
        self.irp_failures > 0.0
            || self.mdl_failures > 0.0
            || self.pool_failures > 0.0
            || self.reset_after.is_some()
            || self.refuse
    }

    fn fault_plan(&self, seed: u64) -> FaultPlan {
        let nth = |p: f64| {
            if p > 0.0 {
                Nth::Probability(p)
            } else {
                Nth::Never
            }
        };
        let mut plan = FaultPlan::new(seed)
            .completion(self.completion)
            .fail_irp_allocation(nth(self.irp_failures))
            .fail_mdl_allocation(nth(self.mdl_failures))
            .fail_pool_allocation(nth(self.pool_failures))
            .fail_work_item_allocation(nth(self.work_item_failures));
        if let Some(ms) = self.delay_ms {
            plan = plan.delay_completions(Duration::from_millis(ms));
        }
        if let Some(bytes) = self.partial_sends {
            plan = plan.partial_sends(bytes);
        }
        if let Some(bytes) = self.reset_after {
            plan = plan.reset_connections_after(bytes);
        }
        if self.refuse {
            plan = plan.refuse_connections();
        }
        if let Some(threads) = self.concurrent_events {
            plan = plan.concurrent_events(threads);
        }
        if let Some(at_caller) = self.passive_inline {
            plan = plan.inline_completion_at_caller_irql(at_caller);
        }
        plan
    }
}

// ---- watchdog -----------------------------------------------------------------------------

struct Watchdog {
    done: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    fn start(seed: u64, progress: Arc<Mutex<String>>) -> Watchdog {
        let done = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = Arc::clone(&done);
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + RUN_LIMIT;
            let mut finished = flag.0.lock().unwrap();
            while !*finished {
                let now = Instant::now();
                if now >= deadline {
                    eprintln!(
                        "stress: seed {seed:#x} HUNG: still running after {RUN_LIMIT:?}, at {}; \
                         replay with WSK_STRESS_SEED={seed:#x} cargo test -p wsk --test stress",
                        progress.lock().map(|p| p.clone()).unwrap_or_default()
                    );
                    std::process::abort();
                }
                finished = flag.1.wait_timeout(finished, deadline - now).unwrap().0;
            }
        });
        Watchdog {
            done,
            thread: Some(thread),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        *self.done.0.lock().unwrap() = true;
        self.done.1.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Prints the seed of a run that panics.
struct Replay(u64);

impl Drop for Replay {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "stress: seed {:#x} FAILED; replay with WSK_STRESS_SEED={:#x} cargo test -p wsk \
                 --test stress",
                self.0, self.0
            );
        }
    }
}

// ---- the run ------------------------------------------------------------------------------

struct Run {
    seed: u64,
    rng: Rng,
    plan: RunPlan,
    shared: Arc<Shared>,
    peers: Peers,
    session_driver: wsk::DriverObject,
    generation: u64,
    clients_registered: usize,
    max_clients: usize,
    conns: Vec<Conn>,
    dgrams: Vec<Dgram>,
    listeners: Vec<Listener>,
    held: Vec<(u64, Held)>,
    tasks: Option<Arc<TaskSet>>,
    forgotten: Vec<&'static str>,
    progress: Arc<Mutex<String>>,
    counts: std::collections::BTreeMap<&'static str, usize>,
    echo_checks: usize,
}

impl Run {
    /// The client of the current generation (re-registering one now and then when gone).
    fn client_generation(&mut self) -> Option<u64> {
        if let Some((generation, _)) = self.shared.client.lock().unwrap().as_ref() {
            return Some(*generation);
        }
        if self.clients_registered >= self.max_clients || !self.rng.chance(80) {
            return None;
        }
        for _ in 0..10 {
            match WskClient::register(self.session_driver) {
                Ok(client) => {
                    self.generation += 1;
                    self.clients_registered += 1;
                    *self.shared.client.lock().unwrap() = Some((self.generation, client));
                    return Some(self.generation);
                }
                Err(e) => assert!(
                    self.plan.faulty() || self.plan.work_item_failures > 0.0,
                    "register failed without faults: {e:?}"
                ),
            }
        }
        None
    }

    /// Makes something with the client (without calling the provider under the lock).
    fn with_client<T>(&mut self, f: impl FnOnce(&WskClient) -> T) -> Option<(u64, T)> {
        self.client_generation()?;
        let slot = self.shared.client.lock().unwrap();
        slot.as_ref()
            .map(|(generation, client)| (*generation, f(client)))
    }

    fn client_alive(&self, generation: u64) -> bool {
        matches!(self.shared.client.lock().unwrap().as_ref(), Some((g, _)) if *g == generation)
    }

    fn strict(&self, conn: &Conn) -> bool {
        !self.plan.faulty()
            && conn.clean
            && conn.peer == PeerKind::Echo
            && !conn.events
            && self.client_alive(conn.generation)
    }

    /// A failure that a strict check may not see: fails the run unless the client went
    /// away meanwhile (dropped by a handler or a task).
    fn strict_failure(&self, generation: u64, what: String) {
        if self.client_alive(generation) && !self.plan.faulty() {
            panic!("seed {:#x}: {what}", self.seed);
        }
    }

    fn buf(&mut self, len: usize) -> Option<Buf> {
        let data = pattern(self.rng.next(), len.max(1));
        match Buf::from_slice(&data) {
            Ok(buf) => Some(buf),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::InsufficientResources, "{e:?}");
                assert!(self.plan.faulty(), "Buf allocation failed without faults");
                None
            }
        }
    }

    fn empty_buf(&mut self, capacity: usize) -> Option<Buf> {
        match Buf::with_capacity(capacity.max(1)) {
            Ok(buf) => Some(buf),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::InsufficientResources, "{e:?}");
                assert!(self.plan.faulty(), "Buf allocation failed without faults");
                None
            }
        }
    }

    fn adopt_accepted(&mut self) {
        let accepted: Vec<ConnectionSocket> =
            std::mem::take(&mut *self.shared.accepted.lock().unwrap());
        for sock in accepted {
            // Of whichever client its listener belonged to: generation 0 matches none.
            self.conns.push(Conn {
                sock,
                peer: PeerKind::Dialer,
                generation: 0,
                clean: false,
                events: true,
            });
        }
    }

    fn step(&mut self, index: usize) {
        self.adopt_accepted();
        while self.conns.len() > MAX_CONNS {
            let victim = self.rng.index(self.conns.len());
            drop(self.conns.swap_remove(victim));
        }
        if self.held.len() > 12 {
            let victim = self.rng.index(self.held.len());
            drop(self.held.swap_remove(victim));
        }
        let choice = self.rng.below(100);
        let step_started = Instant::now();
        let name = match choice {
            0..=11 => self.connect(),
            12..=29 => self.echo_round_trip(),
            30..=33 => self.timed_receive(),
            34..=37 => self.listen(),
            38..=41 => self.accept(),
            42..=48 => self.datagram(),
            49..=51 => self.disconnect(),
            52..=55 => self.close_or_drop(),
            56..=62 => self.start_and_hold(),
            63..=67 => self.settle_held(),
            68..=73 => self.task(),
            74..=77 => self.block_on_step(),
            78..=80 => self.resolve(),
            81..=82 => self.options_and_addresses(),
            83..=85 => self.drop_retained(),
            86 => self.drop_client_now(),
            87 => self.arm_client_drop(),
            88 => self.drop_task_set(),
            _ => self.send_any(),
        };
        *self.counts.entry(name).or_default() += 1;
        if step_started.elapsed() > Duration::from_secs(1) {
            eprintln!(
                "stress: seed {:#x} step {index} ({name}) took {:.1?}",
                self.seed,
                step_started.elapsed()
            );
        }
        *self.progress.lock().unwrap() = format!("step {index} ({name})");
        let anomalies = std::mem::take(&mut *self.shared.anomalies.lock().unwrap());
        assert!(
            anomalies.is_empty(),
            "seed {:#x} step {index} ({name}): {anomalies:#?}",
            self.seed
        );
    }

    fn echo_address(&mut self) -> (SocketAddr, bool) {
        if self.rng.chance(30) {
            (self.peers.echo6, true)
        } else {
            (self.peers.echo4, false)
        }
    }

    fn connect(&mut self) -> &'static str {
        let (target, peer) = match self.rng.below(10) {
            0 => (self.peers.closer, PeerKind::Closer),
            1 => (self.peers.staller, PeerKind::Staller),
            2 => (self.peers.refused, PeerKind::Closer),
            _ => (self.echo_address().0, PeerKind::Echo),
        };
        let refused = target == self.peers.refused;
        let how = self.rng.below(4);
        let events = how == 1;
        let shared = Arc::clone(&self.shared);
        let v6 = target.is_ipv6();
        let result = match how {
            0 | 1 => {
                let Some((generation, op)) = self.with_client(|client| {
                    if events {
                        ConnectionSocket::connect_with_events(
                            client,
                            target,
                            ConnHandler { shared },
                        )
                    } else {
                        client.connect(target)
                    }
                }) else {
                    return "connect (no client)";
                };
                (generation, op.wait_timeout(5000))
            }
            2 => {
                let local = loopback(v6);
                let Some((generation, op)) = self
                    .with_client(|client| ConnectionSocket::connect_from(client, local, target))
                else {
                    return "connect (no client)";
                };
                (generation, op.wait_timeout(5000))
            }
            _ => {
                let family = if v6 {
                    AddressFamily::V6
                } else {
                    AddressFamily::V4
                };
                let Some((generation, op)) =
                    self.with_client(|client| ConnectionSocket::create(client, family))
                else {
                    return "connect (no client)";
                };
                let steps = op.wait_timeout(5000).and_then(|sock| {
                    sock.bind(loopback(v6)).wait_timeout(5000)?;
                    sock.connect(target).wait_timeout(5000)?;
                    Ok(sock)
                });
                (generation, steps)
            }
        };
        let (generation, result) = result;
        match result {
            Ok(sock) => {
                if refused {
                    self.strict_failure(generation, "a connect to a closed port succeeded".into());
                }
                if self.plan.refuse && self.client_alive(generation) {
                    panic!(
                        "seed {:#x}: a connect succeeded with refused connects",
                        self.seed
                    );
                }
                self.conns.push(Conn {
                    sock,
                    peer,
                    generation,
                    clean: true,
                    events,
                });
            }
            Err(e) => {
                if !refused && !(peer == PeerKind::Closer) {
                    self.strict_failure(generation, format!("connect to {target}: {e:?}"));
                }
            }
        }
        "connect"
    }

    /// A socket for an operation that may spoil its echo: clean echo sockets are spared
    /// most of the time, so that the byte-exact checks keep running.
    fn pick_spoilable(&mut self) -> Option<usize> {
        if self.rng.chance(70) {
            if let Some(i) = self.pick_conn(|c| !(c.clean && c.peer == PeerKind::Echo)) {
                return Some(i);
            }
        }
        self.pick_conn(|_| true)
    }

    fn pick_conn(&mut self, filter: impl Fn(&Conn) -> bool) -> Option<usize> {
        let candidates: Vec<usize> = (0..self.conns.len())
            .filter(|&i| filter(&self.conns[i]))
            .collect();
        (!candidates.is_empty()).then(|| candidates[self.rng.index(candidates.len())])
    }

    fn echo_round_trip(&mut self) -> &'static str {
        let Some(i) = self.pick_conn(|c| c.peer == PeerKind::Echo) else {
            return self.connect();
        };
        let strict = self.strict(&self.conns[i]);
        // A socket that is not clean may have lost or lent its echo: no need to wait long.
        let patience: u32 = if strict { 5000 } else { 300 };
        let generation = self.conns[i].generation;
        let len = self.rng.range(1, 6000) as usize;
        let salt = self.rng.next();
        let data = pattern(salt, len);
        let variant = self.rng.below(4);
        let sent: Result<usize, String> = match variant {
            // send_all, as a future under block_on with a deadline.
            0 => {
                let Ok(buf) = Buf::from_slice(&data) else {
                    return "echo (no memory)";
                };
                let send = self.conns[i].sock.send_all(buf);
                match block_on(Deadline::new(send, patience.into())) {
                    Ok(Some((Ok(()), buf))) => {
                        assert_eq!(&buf[..], &data[..], "send_all hands the buffer back");
                        Ok(len)
                    }
                    other => Err(format!("send_all: {:?}", other.map(|o| o.map(|r| r.0)))),
                }
            }
            // One send (partial sends are allowed), with or without NODELAY.
            1 => {
                let Ok(buf) = Buf::from_slice(&data) else {
                    return "echo (no memory)";
                };
                let flags = SendFlags {
                    no_delay: self.rng.chance(50),
                };
                match self.conns[i]
                    .sock
                    .send_with(buf, flags)
                    .wait_timeout(patience)
                {
                    (Ok(n), _) if n > 0 && n <= len => Ok(n),
                    (other, _) => Err(format!("send: {other:?}")),
                }
            }
            // A vectored send of up to four pieces.
            2 => {
                let mut list = BufList::new();
                let pieces = self.rng.range(1, 5) as usize;
                let mut offset = 0;
                for p in 0..pieces {
                    let end = if p + 1 == pieces {
                        len
                    } else {
                        (offset + len / pieces).min(len)
                    };
                    if end > offset {
                        let Ok(buf) = Buf::from_slice(&data[offset..end]) else {
                            return "echo (no memory)";
                        };
                        if list.push(buf).is_err() {
                            return "echo (no memory)";
                        }
                    }
                    offset = end;
                }
                match self.conns[i]
                    .sock
                    .send_vectored(list)
                    .wait_timeout(patience)
                {
                    (Ok(n), list) if n > 0 && n <= len => {
                        assert_eq!(list.total_len(), len, "the list comes back whole");
                        Ok(n)
                    }
                    (other, _) => Err(format!("send_vectored: {other:?}")),
                }
            }
            // send_all, waited for.
            _ => {
                let Ok(buf) = Buf::from_slice(&data) else {
                    return "echo (no memory)";
                };
                let send = self.conns[i].sock.send_all(buf);
                let output = if strict {
                    Some(send.wait())
                } else {
                    block_on(Deadline::new(send, 300)).ok().flatten()
                };
                match output {
                    Some((Ok(()), _)) => Ok(len),
                    other => Err(format!("send_all: {:?}", other.map(|o| o.0))),
                }
            }
        };
        let sent = match sent {
            Ok(n) => n,
            Err(what) => {
                self.conns[i].clean = false;
                if strict {
                    self.strict_failure(generation, format!("echo send failed: {what}"));
                }
                return "echo";
            }
        };
        if self.conns[i].events {
            return "echo (events)";
        }
        let Ok(buf) = Buf::with_capacity(sent + self.rng.below(64) as usize) else {
            self.conns[i].clean = false;
            return "echo (no memory)";
        };
        let receive = self.conns[i].sock.receive_exact(buf, sent);
        let (result, buf) = if self.rng.chance(30) {
            match block_on(Deadline::new(receive, patience.into())) {
                Ok(Some(output)) => output,
                _ => {
                    self.conns[i].clean = false;
                    if strict {
                        self.strict_failure(generation, "echo receive timed out".into());
                    }
                    return "echo";
                }
            }
        } else {
            receive.wait_timeout(patience)
        };
        match result {
            Ok(n) if n == sent => {
                if strict {
                    assert_eq!(
                        &buf[..],
                        &data[..sent],
                        "seed {:#x}: the echo differs",
                        self.seed
                    );
                    self.echo_checks += 1;
                }
            }
            other => {
                self.conns[i].clean = false;
                if strict {
                    self.strict_failure(generation, format!("echo receive: {other:?}"));
                }
            }
        }
        "echo"
    }

    fn timed_receive(&mut self) -> &'static str {
        let Some(i) = self.pick_spoilable() else {
            return "timed receive (none)";
        };
        let Some(buf) = self.empty_buf(512) else {
            return "timed receive (no memory)";
        };
        let ms = self.rng.range(1, 25) as u32;
        let conn = &self.conns[i];
        // A stalled peer sends nothing: on a connection nothing else happened to, the
        // receive can only time out.
        let strict = !self.plan.faulty()
            && conn.peer == PeerKind::Staller
            && conn.clean
            && !conn.events
            && self.client_alive(conn.generation);
        let (result, _) = self.conns[i].sock.receive(buf).wait_timeout(ms);
        match result {
            Err(e) if e.kind() == ErrorKind::TimedOut => {}
            other => {
                self.conns[i].clean = false;
                if strict {
                    self.strict_failure(
                        self.conns[i].generation,
                        format!("a receive from a stalled peer returned {other:?}"),
                    );
                }
            }
        }
        if self.conns[i].peer != PeerKind::Staller {
            self.conns[i].clean = false;
        }
        "timed receive"
    }

    fn listen(&mut self) -> &'static str {
        if self.listeners.len() >= 4 {
            let victim = self.rng.index(self.listeners.len());
            drop(self.listeners.swap_remove(victim));
        }
        let v6 = self.rng.chance(40);
        let how = self.rng.below(3);
        let shared = Arc::clone(&self.shared);
        let result = match how {
            0 => {
                let Some((generation, op)) = self.with_client(|c| c.listen(loopback(v6))) else {
                    return "listen (no client)";
                };
                (generation, block_on(Deadline::new(op, 5000)))
            }
            1 => {
                let Some((generation, op)) = self.with_client(|c| {
                    ListenSocket::bind_with_events(c, loopback(v6), ListenHandler { shared })
                }) else {
                    return "listen (no client)";
                };
                (generation, block_on(Deadline::new(op, 5000)))
            }
            _ => {
                let family = if v6 {
                    AddressFamily::V6
                } else {
                    AddressFamily::V4
                };
                let Some((generation, op)) = self.with_client(|c| ListenSocket::create(c, family))
                else {
                    return "listen (no client)";
                };
                let made = op.wait_timeout(5000).and_then(|sock| {
                    sock.set_reuse_address(true).wait_timeout(5000)?;
                    sock.bind_to(loopback(v6)).wait_timeout(5000)?;
                    Ok(sock)
                });
                (generation, Ok(Some(made)))
            }
        };
        let (generation, result) = result;
        let sock = match result {
            Ok(Some(Ok(sock))) => sock,
            other => {
                self.strict_failure(
                    generation,
                    format!("listen: {:?}", other.map(|o| o.map(|r| r.err()))),
                );
                return "listen";
            }
        };
        match sock.local_addr().wait_timeout(5000) {
            Ok(address) => {
                assert!(address.ip().is_loopback() && address.port() != 0);
                let count = self.rng.below(4) as usize;
                let pause = self.rng.below(30);
                self.peers.dial(address, count, pause);
            }
            Err(e) => self.strict_failure(generation, format!("listener local_addr: {e:?}")),
        }
        self.listeners.push(Listener {
            sock,
            generation,
            events: how == 1,
        });
        "listen"
    }

    fn accept(&mut self) -> &'static str {
        let candidates: Vec<usize> = (0..self.listeners.len())
            .filter(|&i| !self.listeners[i].events)
            .collect();
        if candidates.is_empty() {
            return self.listen();
        }
        let i = candidates[self.rng.index(candidates.len())];
        let ms = self.rng.range(5, 300) as u32;
        if let Ok((sock, peer)) = self.listeners[i].sock.accept().wait_timeout(ms) {
            assert!(peer.ip().is_loopback(), "accepted from {peer}");
            let events = self.rng.chance(30)
                && sock
                    .set_events(ConnHandler {
                        shared: Arc::clone(&self.shared),
                    })
                    .is_ok();
            self.conns.push(Conn {
                sock,
                peer: PeerKind::Dialer,
                generation: self.listeners[i].generation,
                clean: false,
                events,
            });
        }
        "accept"
    }

    fn datagram(&mut self) -> &'static str {
        if self.dgrams.is_empty() || (self.dgrams.len() < 4 && self.rng.chance(25)) {
            let v6 = self.rng.chance(40);
            let events = self.rng.chance(40);
            let shared = Arc::clone(&self.shared);
            let Some((generation, op)) = self.with_client(|c| {
                if events {
                    DatagramSocket::bind_with_events(c, loopback(v6), DgramHandler { shared })
                } else {
                    c.bind_datagram(loopback(v6))
                }
            }) else {
                return "datagram (no client)";
            };
            match block_on(Deadline::new(op, 5000)) {
                Ok(Some(Ok(sock))) => self.dgrams.push(Dgram { sock, v6, events }),
                other => {
                    self.strict_failure(
                        generation,
                        format!("bind_datagram: {:?}", other.map(|o| o.map(|r| r.err()))),
                    );
                    return "datagram bind";
                }
            }
        }
        let i = self.rng.index(self.dgrams.len());
        let to = if self.dgrams[i].v6 {
            self.peers.udp6
        } else {
            self.peers.udp4
        };
        let len = self.rng.range(1, 1400) as usize;
        match self.rng.below(3) {
            0 => {
                let Some(buf) = self.buf(len) else {
                    return "datagram (no memory)";
                };
                let _ = self.dgrams[i].sock.send_to(buf, to).wait_timeout(5000);
            }
            1 => {
                let mut list = BufList::new();
                for _ in 0..self.rng.range(1, 4) {
                    let Some(buf) = self.buf(len) else {
                        return "datagram (no memory)";
                    };
                    if list.push(buf).is_err() {
                        return "datagram (no memory)";
                    }
                }
                let _ = self.dgrams[i]
                    .sock
                    .send_messages(list, to)
                    .wait_timeout(5000);
            }
            _ => {}
        }
        if !self.dgrams[i].events || self.rng.chance(20) {
            let Some(buf) = self.empty_buf(2048) else {
                return "datagram (no memory)";
            };
            let ms = self.rng.range(1, 100) as u32;
            if let (Ok((n, from)), buf) = self.dgrams[i].sock.receive_from(buf).wait_timeout(ms) {
                assert!(from.ip().is_loopback(), "a datagram from {from}");
                assert_eq!(n, buf.len());
            }
        }
        "datagram"
    }

    fn disconnect(&mut self) -> &'static str {
        let Some(i) = self.pick_spoilable() else {
            return "disconnect (none)";
        };
        self.conns[i].clean = false;
        let op = match self.rng.below(3) {
            0 => self.conns[i].sock.abort(),
            1 => match self.buf(32) {
                Some(buf) => self.conns[i].sock.disconnect_with(buf),
                None => return "disconnect (no memory)",
            },
            _ => self.conns[i].sock.disconnect(),
        };
        let _ = op.wait_timeout(3000);
        "disconnect"
    }

    fn close_or_drop(&mut self) -> &'static str {
        let what = self.rng.below(6);
        match what {
            0 | 1 if !self.conns.is_empty() => {
                let conn = self.conns.swap_remove(self.rng.index(self.conns.len()));
                if what == 0 {
                    // Released by the releaser thread if it holds retained data.
                    let _ = conn.sock.close().wait();
                    "close connection"
                } else {
                    drop(conn);
                    "drop connection"
                }
            }
            2 if !self.dgrams.is_empty() => {
                let dgram = self.dgrams.swap_remove(self.rng.index(self.dgrams.len()));
                if self.rng.chance(50) {
                    let _ = dgram.sock.close().wait();
                    "close datagram"
                } else {
                    "drop datagram"
                }
            }
            3 if !self.listeners.is_empty() => {
                let listener = self
                    .listeners
                    .swap_remove(self.rng.index(self.listeners.len()));
                if self.rng.chance(50) {
                    let _ = listener.sock.close().wait();
                    "close listener"
                } else {
                    "drop listener"
                }
            }
            4 if self.plan.forget
                && self.forgotten.len() < 3
                && !self.forgotten.contains(&"connection socket")
                && !self.conns.is_empty()
                && self.rng.chance(20) =>
            {
                // A forgotten handle: the client's teardown closes its socket.
                let conn = self.conns.swap_remove(self.rng.index(self.conns.len()));
                self.forgotten.push("connection socket");
                std::mem::forget(conn);
                "forget connection socket"
            }
            _ => {
                // A close polled once (as a future) then dropped: the close proceeds.
                if self.conns.is_empty() {
                    return "close (none)";
                }
                let conn = self.conns.swap_remove(self.rng.index(self.conns.len()));
                drop(poll_once(conn.sock.close()));
                "close polled and dropped"
            }
        }
    }

    /// Issues an operation, polls it once, then drops it at once or keeps it in flight.
    fn start_and_hold(&mut self) -> &'static str {
        let held = match self.rng.below(7) {
            0 | 1 => {
                let Some(i) = self.pick_spoilable() else {
                    return "hold (none)";
                };
                self.conns[i].clean = false;
                let Some(buf) = self.empty_buf(256) else {
                    return "hold (no memory)";
                };
                let op = if self.rng.chance(50) {
                    self.conns[i].sock.receive(buf)
                } else {
                    self.conns[i].sock.receive_exact(buf, 200)
                };
                poll_once(op).err().map(Held::Receive)
            }
            2 => {
                let Some(i) = self.pick_spoilable() else {
                    return "hold (none)";
                };
                self.conns[i].clean = false;
                let len = self.rng.range(1, 200_000) as usize;
                let Some(buf) = self.buf(len) else {
                    return "hold (no memory)";
                };
                poll_once(self.conns[i].sock.send(buf))
                    .err()
                    .map(Held::Send)
            }
            3 if !self.dgrams.is_empty() => {
                let i = self.rng.index(self.dgrams.len());
                let Some(buf) = self.empty_buf(512) else {
                    return "hold (no memory)";
                };
                poll_once(self.dgrams[i].sock.receive_from(buf))
                    .err()
                    .map(Held::ReceiveFrom)
            }
            4 if !self.listeners.is_empty() => {
                let i = self.rng.index(self.listeners.len());
                poll_once(self.listeners[i].sock.accept())
                    .err()
                    .map(Held::Accept)
            }
            5 => {
                let target = if self.rng.chance(50) {
                    self.peers.staller
                } else {
                    self.echo_address().0
                };
                let Some((_, op)) = self.with_client(|c| c.connect(target)) else {
                    return "hold (no client)";
                };
                poll_once(op).err().map(Held::Connect)
            }
            _ => {
                let Some((_, op)) = self.with_client(|c| c.resolve("localhost", 7)) else {
                    return "hold (no client)";
                };
                poll_once(op).err().map(Held::Resolve)
            }
        };
        let Some(held) = held else {
            return "hold (completed at once)";
        };
        if self.rng.chance(40) {
            drop(held);
            "poll once and drop"
        } else {
            self.held.push((self.generation, held));
            "poll once and hold"
        }
    }

    fn settle_held(&mut self) -> &'static str {
        if self.held.is_empty() {
            return self.start_and_hold();
        }
        let (_, held) = self.held.swap_remove(self.rng.index(self.held.len()));
        match self.rng.below(10) {
            0 if self.plan.forget && self.forgotten.len() < 3 => {
                self.forgotten.push(held.name());
                held.forget();
                "forget in flight"
            }
            1..=4 => {
                let ms = self.rng.range(1, 30) as u32;
                let _ = held.wait_timeout(ms);
                "wait_timeout in flight"
            }
            _ => {
                drop(held);
                "drop in flight"
            }
        }
    }

    fn ensure_tasks(&mut self) -> Option<Arc<TaskSet>> {
        if self.tasks.is_none() {
            match TaskSet::new(self.session_driver) {
                Ok(tasks) => {
                    let tasks = Arc::new(tasks);
                    *self.shared.tasks.lock().unwrap() = Arc::downgrade(&tasks);
                    self.tasks = Some(tasks);
                }
                Err(e) => {
                    assert!(self.plan.faulty(), "TaskSet::new: {e:?}");
                    return None;
                }
            }
        }
        self.tasks.clone()
    }

    fn task(&mut self) -> &'static str {
        let Some(tasks) = self.ensure_tasks() else {
            return "task (no memory)";
        };
        let shared = Arc::clone(&self.shared);
        let spawned = match self.rng.below(6) {
            // An echo task that owns its socket and drops it (at DISPATCH_LEVEL) when done.
            0 | 1 => {
                let Some(i) = self.pick_conn(|c| c.peer == PeerKind::Echo && !c.events) else {
                    return "task (none)";
                };
                let conn = self.conns.swap_remove(i);
                let strict = self.strict(&conn);
                let generation = conn.generation;
                let rounds = self.rng.range(1, 5);
                let salt = self.rng.next();
                let check_shared = Arc::clone(&shared);
                let faulty = self.plan.faulty();
                tasks.spawn(async move {
                    let sock = conn.sock;
                    for round in 0..rounds {
                        let data = pattern(salt ^ round, 100 + round as usize * 37);
                        let Ok(buf) = Buf::from_slice(&data) else {
                            return;
                        };
                        let (sent, _) = sock.send_all(buf).await;
                        let Ok(back) = Buf::with_capacity(data.len()) else {
                            return;
                        };
                        let (received, back) = sock.receive_exact(back, data.len()).await;
                        let alive = matches!(
                            check_shared.client.try_lock().as_deref(),
                            Ok(Some((g, _))) if *g == generation
                        );
                        match (sent, received) {
                            (Ok(()), Ok(_)) if back[..] == data[..] => {
                                check_shared
                                    .stats
                                    .task_echoes
                                    .fetch_add(1, Ordering::Relaxed);
                            }
                            (sent, received) => {
                                if strict && alive && !faulty {
                                    check_shared
                                        .anomaly(format!("task echo: {sent:?} {received:?}"));
                                }
                                return;
                            }
                        }
                    }
                    check_shared.maybe_drop_client();
                    drop(sock);
                })
            }
            // A receive on any socket, with a deadline woken from a timer thread.
            2 => {
                let Some(i) = self.pick_spoilable() else {
                    return "task (none)";
                };
                self.conns[i].clean = false;
                let Some(buf) = self.empty_buf(128) else {
                    return "task (no memory)";
                };
                let receive = self.conns[i].sock.receive(buf);
                let ms = self.rng.range(1, 60);
                tasks.spawn(async move {
                    let _ = Deadline::new(receive, ms).await;
                    shared.maybe_drop_client();
                })
            }
            // Blocking waits refuse inside a task.
            3 => {
                let Some(i) = self.pick_conn(|_| true) else {
                    return "task (none)";
                };
                let address = self.conns[i].sock.local_addr();
                let accept = self.listeners.first().map(|l| l.sock.accept());
                let wait_tasks = Arc::downgrade(&tasks);
                tasks.spawn(async move {
                    shared.check_irql_refusals(|| address.wait());
                    if let Some(accept) = accept {
                        match accept.wait() {
                            Err(e) if e == Error::IRQL_TOO_HIGH => {}
                            other => shared.anomaly(format!(
                                "accept().wait() in a task: {:?}",
                                other.map(|_| ())
                            )),
                        }
                    }
                    if let Some(tasks) = wait_tasks.upgrade() {
                        if tasks.wait_idle() != Err(Error::IRQL_TOO_HIGH) {
                            shared.anomaly("TaskSet::wait_idle in a task did not refuse".into());
                        }
                    }
                })
            }
            // A datagram round trip as a task.
            4 if !self.dgrams.is_empty() => {
                let i = self.rng.index(self.dgrams.len());
                let to = if self.dgrams[i].v6 {
                    self.peers.udp6
                } else {
                    self.peers.udp4
                };
                let Some(buf) = self.buf(64) else {
                    return "task (no memory)";
                };
                let send = self.dgrams[i].sock.send_to(buf, to);
                let Some(back) = self.empty_buf(64) else {
                    return "task (no memory)";
                };
                let receive = self.dgrams[i].sock.receive_from(back);
                tasks.spawn(async move {
                    let _ = send.await;
                    let _ = Deadline::new(receive, 50).await;
                })
            }
            // A connect as a task; the socket is dropped at DISPATCH_LEVEL.
            _ => {
                let target = self.echo_address().0;
                let Some((_, connect)) = self.with_client(|c| c.connect(target)) else {
                    return "task (no client)";
                };
                tasks.spawn(async move {
                    if let Ok(sock) = connect.await {
                        if let Ok(buf) = Buf::from_slice(b"from a task") {
                            let _ = sock.send(buf).await;
                        }
                        shared.maybe_drop_client();
                        drop(sock);
                    }
                })
            }
        };
        if let Err(e) = spawned {
            assert!(self.plan.faulty(), "spawn: {e:?}");
        }
        "task"
    }

    fn block_on_step(&mut self) -> &'static str {
        let Some(i) = self.pick_spoilable() else {
            return "block_on (none)";
        };
        let Some(buf) = self.empty_buf(64) else {
            return "block_on (no memory)";
        };
        self.conns[i].clean = false;
        let ms = self.rng.range(1, 40);
        match block_on(Deadline::new(self.conns[i].sock.receive(buf), ms)) {
            Ok(_) => {}
            Err(e) => assert_eq!(e.kind(), ErrorKind::InsufficientResources, "{e:?}"),
        }
        "block_on"
    }

    fn resolve(&mut self) -> &'static str {
        let port = self.rng.range(1, 65535) as u16;
        let (host, hints, expect): (&str, ResolveHints, Option<SocketAddr>) =
            match self.rng.below(3) {
                0 => ("localhost", ResolveHints::default(), None),
                1 => (
                    "127.0.0.1",
                    ResolveHints {
                        family: Some(AddressFamily::V4),
                        numeric_host: true,
                    },
                    Some(SocketAddr::from(([127, 0, 0, 1], port))),
                ),
                _ => (
                    "::1",
                    ResolveHints {
                        family: Some(AddressFamily::V6),
                        numeric_host: true,
                    },
                    Some(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port))),
                ),
            };
        let Some((generation, op)) = self.with_client(|c| c.resolve_with(host, port, hints)) else {
            return "resolve (no client)";
        };
        match op.wait_timeout(5000) {
            Ok(addresses) => {
                assert!(!addresses.is_empty(), "{host} resolved to nothing");
                for address in &addresses {
                    assert!(address.ip().is_loopback(), "{host} resolved to {address}");
                    assert_eq!(address.port(), port);
                }
                if let Some(expect) = expect {
                    assert_eq!(addresses, [expect], "{host}");
                }
            }
            Err(e) => self.strict_failure(generation, format!("resolve {host}: {e:?}")),
        }
        "resolve"
    }

    fn options_and_addresses(&mut self) -> &'static str {
        let Some(i) = self.pick_conn(|_| true) else {
            return "options (none)";
        };
        let generation = self.conns[i].generation;
        let sock = &self.conns[i].sock;
        let results = [
            sock.set_no_delay(true).wait_timeout(2000).map(|_| ()),
            sock.set_keep_alive(true).wait_timeout(2000).map(|_| ()),
            sock.local_addr()
                .wait_timeout(2000)
                .map(|a| assert!(a.ip().is_loopback())),
            sock.peer_addr()
                .wait_timeout(2000)
                .map(|a| assert!(a.ip().is_loopback())),
        ];
        if self.conns[i].clean && self.conns[i].peer == PeerKind::Echo {
            for result in results {
                if let Err(e) = result {
                    self.strict_failure(generation, format!("an option or address: {e:?}"));
                }
            }
        }
        "options"
    }

    fn drop_retained(&mut self) -> &'static str {
        let taken: Vec<RetainedData> = {
            let mut retained = self.shared.retained.lock().unwrap();
            let keep = self.rng.index(retained.len() + 1);
            retained.split_off(keep)
        };
        drop(taken);
        "drop retained"
    }

    fn drop_client_now(&mut self) -> &'static str {
        let taken = self.shared.client.lock().unwrap().take();
        let Some((generation, client)) = taken else {
            return "drop client (none)";
        };
        if self.rng.chance(50) {
            drop(client);
        } else {
            client.shutdown().expect("shutdown at PASSIVE_LEVEL");
        }
        // The teardown ran here: every socket of that client is closed, and its handles
        // fail cleanly.
        for conn in self.conns.iter_mut().filter(|c| c.generation == generation) {
            conn.clean = false;
        }
        let olds: Vec<usize> = (0..self.conns.len())
            .filter(|&i| self.conns[i].generation == generation)
            .take(3)
            .collect();
        for i in olds {
            let Ok(buf) = Buf::from_slice(b"late") else {
                continue;
            };
            let (result, _) = self.conns[i].sock.send(buf).wait_timeout(2000);
            assert!(
                result.is_err(),
                "seed {:#x}: a send on a socket of a dropped client succeeded",
                self.seed
            );
            let Ok(buf) = Buf::with_capacity(8) else {
                continue;
            };
            let (result, _) = self.conns[i].sock.receive(buf).wait_timeout(2000);
            assert!(
                result.is_err(),
                "a receive after the client's teardown succeeded"
            );
        }
        "drop client"
    }

    fn arm_client_drop(&mut self) -> &'static str {
        self.shared.drop_client_armed.store(true, Ordering::SeqCst);
        "arm client drop at DISPATCH_LEVEL"
    }

    fn drop_task_set(&mut self) -> &'static str {
        let Some(tasks) = self.tasks.take() else {
            return "drop task set (none)";
        };
        if self.rng.chance(50) {
            tasks.cancel_all();
        }
        drop(tasks);
        "drop task set"
    }

    fn send_any(&mut self) -> &'static str {
        let Some(i) = self.pick_spoilable() else {
            return self.connect();
        };
        self.conns[i].clean = false;
        let len = self.rng.range(1, 4000) as usize;
        let Some(buf) = self.buf(len) else {
            return "send (no memory)";
        };
        let _ = self.conns[i].sock.send(buf).wait_timeout(200);
        "send"
    }
}

fn run_seed(seed: u64, steps: usize) {
    let _replay = Replay(seed);
    let started = Instant::now();
    let progress = Arc::new(Mutex::new(String::from("setup")));
    let _watchdog = Watchdog::start(seed, Arc::clone(&progress));
    let mut rng = Rng(seed);
    let plan = RunPlan::draw(&mut rng);
    eprintln!("stress: seed {seed:#x}: {plan:?}");
    let session = Session::start();
    session.set_faults(plan.fault_plan(seed));
    let shared = Arc::new(Shared {
        rng: AtomicU64::new(mix(seed ^ 0x4841_4e44)),
        client: Mutex::new(None),
        drop_client_armed: AtomicBool::new(false),
        retaining: AtomicBool::new(true),
        retained: Mutex::new(Vec::new()),
        accepted: Mutex::new(Vec::new()),
        tasks: Mutex::new(Weak::new()),
        anomalies: Mutex::new(Vec::new()),
        stats: Stats::default(),
    });
    // Drops retained indications now and then, so that closes and client teardowns that
    // wait for them proceed.
    let releaser_stop = Arc::new(AtomicBool::new(false));
    let releaser = {
        let (shared, stop) = (Arc::clone(&shared), Arc::clone(&releaser_stop));
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(8));
                let taken = std::mem::take(&mut *shared.retained.lock().unwrap());
                drop(taken);
            }
        })
    };
    let mut run = Run {
        seed,
        rng,
        plan,
        shared: Arc::clone(&shared),
        peers: Peers::start(),
        session_driver: driver(&session),
        generation: 0,
        clients_registered: 0,
        max_clients: 2 + steps / 60,
        conns: Vec::new(),
        dgrams: Vec::new(),
        listeners: Vec::new(),
        held: Vec::new(),
        tasks: None,
        forgotten: Vec::new(),
        progress: Arc::clone(&progress),
        counts: Default::default(),
        echo_checks: 0,
    };
    // The first client, registered for sure (retrying through allocation failures).
    run.clients_registered = 0;
    for _ in 0..50 {
        if run.client_generation().is_some() {
            break;
        }
    }
    for index in 0..steps {
        run.step(index);
    }

    // The end: everything dropped in a random order, then the client, then the checks.
    *progress.lock().unwrap() = "teardown".into();
    shared.retaining.store(false, Ordering::SeqCst);
    let order = run.rng.below(3);
    let held = std::mem::take(&mut run.held);
    let conns = std::mem::take(&mut run.conns);
    let dgrams = std::mem::take(&mut run.dgrams);
    let listeners = std::mem::take(&mut run.listeners);
    let tasks = run.tasks.take();
    *shared.tasks.lock().unwrap() = Weak::new();
    if order == 0 {
        // The client first: its teardown closes everything still open.
        let client = shared.client.lock().unwrap().take();
        drop(client);
    }
    drop(held);
    if let Some(tasks) = tasks {
        tasks.cancel_all();
        drop(tasks);
    }
    for conn in conns {
        if run.rng.chance(20) {
            let _ = conn.sock.close().wait();
        }
    }
    drop((dgrams, listeners));
    let client = shared.client.lock().unwrap().take();
    if order == 1 {
        if let Some((_, client)) = client {
            let _ = client.shutdown();
        }
    } else {
        drop(client);
    }
    *progress.lock().unwrap() = "waiting for work items".into();
    assert!(
        session.wait_for_work_items(Duration::from_secs(30)),
        "seed {seed:#x}: the client's teardown work item did not finish"
    );
    let accepted = std::mem::take(&mut *shared.accepted.lock().unwrap());
    drop(accepted);
    releaser_stop.store(true, Ordering::SeqCst);
    releaser.join().unwrap();
    drop(std::mem::take(&mut *shared.retained.lock().unwrap()));
    let timer_deadline = Instant::now() + Duration::from_secs(5);
    while TIMERS.load(Ordering::SeqCst) > 0 && Instant::now() < timer_deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    let Run {
        peers,
        forgotten,
        counts,
        echo_checks,
        ..
    } = run;
    *progress.lock().unwrap() = "stopping peers".into();
    peers.stop();
    let anomalies = std::mem::take(&mut *shared.anomalies.lock().unwrap());
    assert!(anomalies.is_empty(), "seed {seed:#x}: {anomalies:#?}");
    *progress.lock().unwrap() = "verifier".into();
    let report = if forgotten.is_empty() {
        session.finish()
    } else {
        let (report, findings) = session.conclude();
        let unexpected: Vec<_> = findings
            .iter()
            .filter(|v| !matches!(v.rule, Rule::IrpLeaked | Rule::MdlLeaked | Rule::PoolLeaked))
            .collect();
        assert!(
            unexpected.is_empty(),
            "seed {seed:#x}: forgotten operations {forgotten:?} may only leak memory, IRPs and \
             MDLs; the verifier found:\n{findings:#?}"
        );
        eprintln!(
            "stress: seed {seed:#x}: forgot {forgotten:?}; leaks reported: {:?}",
            findings.iter().map(|v| v.rule).collect::<Vec<_>>()
        );
        report
    };
    let s = &shared.stats;
    eprintln!(
        "stress: seed {seed:#x} passed in {:.1?}: {steps} steps, {echo_checks} echo checks, \
         {} task echoes, {} indications ({} retained, {} released in callback), {} disconnects, \
         {} accepted in callbacks, {} replies, {} client drops at DISPATCH_LEVEL, {} IRQL \
         checks, {} sockets; inline {} pending {} cancelled {} events {}\n  steps: {counts:?}",
        started.elapsed(),
        s.task_echoes.load(Ordering::Relaxed),
        s.indications.load(Ordering::Relaxed),
        s.retained.load(Ordering::Relaxed),
        s.released_in_callback.load(Ordering::Relaxed),
        s.disconnects.load(Ordering::Relaxed),
        s.accepted_in_callback.load(Ordering::Relaxed),
        s.replies.load(Ordering::Relaxed),
        s.client_drops_at_dispatch.load(Ordering::Relaxed),
        s.irql_checks.load(Ordering::Relaxed),
        report.sockets_created,
        report.completed_inline,
        report.completed_pending,
        report.cancelled,
        report.events_delivered,
    );
}

#[test]
fn seeded_stress() {
    let steps = ops();
    for seed in seeds() {
        run_seed(seed, steps);
    }
}
