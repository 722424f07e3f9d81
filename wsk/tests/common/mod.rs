//! What the test binaries of `wsk` share. Each binary uses a part of it.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicUsize, Ordering};
use std::time::Duration;

use wsk_host::Session;
use wsk_sys::*;

pub mod canary_buf;

/// The provider's completion modes, each a fault plan seeded from `seed`: always inline,
/// inline at the caller's IRQL, always pending, mixed, and delayed by `delay` (pended).
pub fn completion_plans(seed: u64, delay: Duration) -> Vec<(&'static str, wsk_host::FaultPlan)> {
    use wsk_host::{CompletionMode, FaultPlan};
    vec![
        (
            "inline",
            FaultPlan::new(seed).completion(CompletionMode::AlwaysInline),
        ),
        (
            "inline at the caller's IRQL",
            FaultPlan::new(seed + 1)
                .completion(CompletionMode::AlwaysInline)
                .inline_completion_at_caller_irql(true),
        ),
        (
            "pending",
            FaultPlan::new(seed + 2).completion(CompletionMode::AlwaysPending),
        ),
        (
            "mixed",
            FaultPlan::new(seed + 3).completion(CompletionMode::Mixed),
        ),
        ("delayed", FaultPlan::new(seed + 4).delay_completions(delay)),
    ]
}

/// [`connected`], with 4 KiB socket buffers on both sides (the socket's send buffer, the
/// peer's receive buffer): a peer that does not read soon stops a send part way.
pub fn connected_with_small_buffers(
    client: &wsk::WskClient,
) -> (wsk::ConnectionSocket, std::net::TcpStream) {
    let (socket, peer) = connected(client);
    socket
        .set_send_buffer_size(4096)
        .timeout(DEADLINE)
        .wait()
        .unwrap();
    socket2::SockRef::from(&peer)
        .set_recv_buffer_size(4096)
        .unwrap();
    (socket, peer)
}

/// Ends the session, asserting that the verifier found nothing at all.
pub fn no_violations(session: Session) {
    let (_, violations) = session.conclude();
    assert!(violations.is_empty(), "violations: {violations:#?}");
}

/// A datagram socket bound at `at` (`"127.0.0.1:0"`, `"[::1]:0"`), its address, and a peer
/// bound on the same loopback address that reads within [`DEADLINE`].
pub fn bound_datagram(
    client: &wsk::WskClient,
    at: &str,
) -> (
    wsk::DatagramSocket,
    std::net::SocketAddr,
    std::net::UdpSocket,
) {
    let socket = client.bind_datagram(at.parse().unwrap()).wait().unwrap();
    let local = socket.local_addr().timeout(DEADLINE).wait().unwrap();
    let peer = std::net::UdpSocket::bind(std::net::SocketAddr::new(local.ip(), 0)).unwrap();
    peer.set_read_timeout(Some(DEADLINE)).unwrap();
    (socket, local, peer)
}

/// Counts its drops (a task's future dropped: finished or cancelled).
pub struct DropCount(pub Arc<AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Asserts that the verifier found nothing but memory left allocated (IRPs, MDLs, pool): what
/// a test that forgets or leaks on purpose (`mem::forget`, a value kept past the session)
/// expects, where anything else — a wait at DISPATCH_LEVEL, a use after free — is a break.
pub fn assert_only_leaks(findings: &[wsk_host::Violation]) {
    for finding in findings {
        assert!(
            matches!(
                finding.rule,
                wsk_host::Rule::IrpLeaked | wsk_host::Rule::MdlLeaked | wsk_host::Rule::PoolLeaked
            ),
            "unexpected finding: {finding:?}"
        );
    }
}

/// The session's driver object, as `DriverEntry` would have received it.
pub fn driver(session: &Session) -> wsk::DriverObject {
    // SAFETY: the session's own driver object, valid until the session ends.
    unsafe { wsk::DriverObject::from_raw(session.driver_object()) }
        .expect("a session has a driver object")
}

/// What the originator of a forwarded request saw when it came back up.
#[derive(Default)]
pub struct Originator {
    /// How many times the request was completed to it.
    pub completions: AtomicUsize,
    /// The status it came back with.
    pub status: AtomicI32,
    /// The information it came back with.
    pub information: AtomicUsize,
    /// The IRP, once it came back.
    pub irp: AtomicPtr<IRP>,
}

impl Originator {
    /// Frees the request once it came back (the originator's to free).
    pub fn free(&self) {
        let irp = self.irp.swap(std::ptr::null_mut(), Ordering::SeqCst);
        assert!(!irp.is_null(), "the request came back");
        // SAFETY: completed to the originator, which owns it again.
        unsafe { IoFreeIrp(irp) };
    }
}

/// The originator's completion routine, at the stack location above the driver's: records the
/// result and takes the IRP back (the originator frees it).
unsafe extern "system" fn originator_done(
    _device: PDEVICE_OBJECT,
    irp: PIRP,
    context: PVOID,
) -> NTSTATUS {
    // SAFETY: the context is the test's `Originator`, alive until the IRP is freed; the IRP
    // is being completed to this routine.
    unsafe {
        let originator = &*context.cast::<Originator>();
        originator
            .status
            .store((*irp).IoStatus.u.Status, Ordering::SeqCst);
        originator
            .information
            .store((*irp).IoStatus.Information as usize, Ordering::SeqCst);
        originator.irp.store(irp, Ordering::SeqCst);
        originator.completions.fetch_add(1, Ordering::SeqCst);
    }
    STATUS_MORE_PROCESSING_REQUIRED
}

/// A request as the driver's dispatch routine receives it: an IRP with a location for its
/// originator's completion routine, one for the driver (current) and one below it.
pub fn forwarded_request(originator: &Arc<Originator>) -> NonNull<IRP> {
    // SAFETY: no preconditions beyond the IRQL (PASSIVE_LEVEL).
    let irp = unsafe { IoAllocateIrp(3, FALSE) };
    assert!(!irp.is_null());
    // SAFETY: a fresh IRP; the completion routine goes in the location the driver's will be,
    // then the driver's location becomes current, as when the request is dispatched to it.
    unsafe {
        IoSetCompletionRoutine(
            irp,
            Some(originator_done),
            Arc::as_ptr(originator).cast_mut().cast(),
            true,
            true,
            true,
        );
        IoSetNextIrpStackLocation(irp);
    }
    NonNull::new(irp).unwrap()
}

// ---- heap allocations that fail on demand -----------------------------------------------------

/// The system allocator, except that the calling thread's `n`-th allocation from now fails
/// when armed with [`fail_nth_heap_allocation`]. A test binary installs it with
/// `#[global_allocator] static ALLOCATOR: FailingAllocator = FailingAllocator;`.
pub struct FailingAllocator;

thread_local! {
    static COUNTDOWN: Cell<usize> = const { Cell::new(0) };
}

/// Whether this thread's armed failure is still to come (no allocation failed yet).
pub fn heap_failure_armed() -> bool {
    COUNTDOWN.with(Cell::get) != 0
}

/// Makes this thread's `n`-th heap allocation from now (1-based) fail; 0 disarms.
pub fn fail_nth_heap_allocation(n: usize) {
    COUNTDOWN.with(|c| c.set(n));
}

// SAFETY: forwards to the system allocator, or returns null (an allowed answer).
unsafe impl GlobalAlloc for FailingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let fail = COUNTDOWN
            .try_with(|c| match c.get() {
                0 => false,
                1 => {
                    c.set(0);
                    true
                }
                n => {
                    c.set(n - 1);
                    false
                }
            })
            .unwrap_or(false);
        if fail {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// A loopback port that refuses every connection for as long as this lives: a TCP socket bound
/// to it that never listens.
///
/// A port taken from a listener that was then dropped is free again: the system may give it
/// to any socket bound to port 0 meanwhile — even to the connecting socket itself, which then
/// connects to itself (a TCP simultaneous open) instead of being refused. A bound socket
/// keeps the port out of reach of every other bind (it does not set `SO_REUSEADDR`), and a
/// connection to a bound socket that does not listen is reset: refused.
pub struct RefusingPort {
    socket: socket2::Socket,
}

impl RefusingPort {
    /// A port of the loopback address of IPv4 (`v6` false) or IPv6 (`v6` true).
    pub fn new(v6: bool) -> RefusingPort {
        use socket2::{Domain, Socket, Type};
        let (domain, address) = if v6 {
            (
                Domain::IPV6,
                std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0)),
            )
        } else {
            (
                Domain::IPV4,
                std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0)),
            )
        };
        let socket = Socket::new(domain, Type::STREAM, None).expect("a TCP socket");
        socket.bind(&address.into()).expect("a loopback port");
        RefusingPort { socket }
    }

    /// The address of the port.
    pub fn address(&self) -> std::net::SocketAddr {
        self.socket
            .local_addr()
            .expect("a bound socket has an address")
            .as_socket()
            .expect("an IP address")
    }
}

/// How long a test waits for anything (a peer, a completion, a thread) before it fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Runs `f` on another thread, failing if it does not return by the deadline (a hang fails).
pub fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(f());
    });
    result
        .recv_timeout(DEADLINE)
        .unwrap_or_else(|_| panic!("{what}: still running at the deadline"))
}

/// Polls a future once with a no-op waker: the operation must then be in flight (issued, not
/// complete); returns it.
pub fn start<F: std::future::Future + Unpin>(mut future: F) -> F {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(
        std::pin::Pin::new(&mut future).poll(&mut cx).is_pending(),
        "the operation should be in flight"
    );
    future
}

/// A connection of `client` to a listener on 127.0.0.1, and its peer; the connect, and the
/// peer's reads and writes, fail at the deadline.
pub fn connected(client: &wsk::WskClient) -> (wsk::ConnectionSocket, std::net::TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let socket = client
        .connect(listener.local_addr().unwrap())
        .timeout(DEADLINE)
        .wait()
        .unwrap();
    let (peer, _) = listener.accept().unwrap();
    peer.set_read_timeout(Some(DEADLINE)).unwrap();
    peer.set_write_timeout(Some(DEADLINE)).unwrap();
    (socket, peer)
}

/// A connection socket with event handlers, connected to a listener on 127.0.0.1, and its
/// peer; the connect, and the peer's reads and writes, fail at the deadline.
pub fn connected_with_events(
    client: &wsk::WskClient,
    events: impl wsk::ConnectionEvents,
) -> (wsk::ConnectionSocket, std::net::TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let socket =
        wsk::ConnectionSocket::connect_with_events(client, listener.local_addr().unwrap(), events)
            .timeout(DEADLINE)
            .wait()
            .unwrap();
    let (peer, _) = listener.accept().unwrap();
    peer.set_read_timeout(Some(DEADLINE)).unwrap();
    peer.set_write_timeout(Some(DEADLINE)).unwrap();
    (socket, peer)
}

/// Waits until `condition` holds, failing the test at the deadline.
pub fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let end = std::time::Instant::now() + DEADLINE;
    while !condition() {
        assert!(
            std::time::Instant::now() < end,
            "{what}: not by the deadline"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Polls once with a no-op waker: the output if it is ready.
pub fn poll_once<F: std::future::Future + Unpin>(future: &mut F) -> Option<F::Output> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::Pin::new(future).poll(&mut cx) {
        std::task::Poll::Ready(output) => Some(output),
        std::task::Poll::Pending => None,
    }
}

/// `yield_now`: wakes itself and returns pending once (what every executor's `yield_now`
/// does).
pub struct YieldNow(bool);

impl std::future::Future for YieldNow {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

/// See [`YieldNow`].
pub fn yield_now() -> YieldNow {
    YieldNow(false)
}
