//! Attacks on the public API as a hostile but realistic driver would make them, on wsk-host
//! with real loopback sockets: operations dropped or forgotten with every buffer kind, a
//! deadline and a caller's IRP; the client and the socket dropped in every order under them;
//! deadlines of zero, already passed and `Duration::MAX`; empty slices; blocking waits inside
//! event callbacks and tasks; raw sockets given up after conditional accept was asked for by
//! bytes; pended inspections waited for in their callback, forgotten or kept by the handler;
//! an `AsyncStream` whose client goes first; running out of memory on the new paths. After
//! each, the verifier must report no leak and no broken rule, and the session must end.

use std::cell::Cell;
use std::future::Future;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::ops::Bound;
use std::pin::{Pin, pin};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use wsk::task::TaskSet;
use wsk::{
    AcceptDecision, AddressFamily, Buf, ConnectionSocket, Deadline, Error, Incoming,
    InspectDecision, Inspection, IoBuf, Irp, ListenSocket, MdlChain, NameInfoFlags,
    PendedInspection, SocketOptions, Timers, WskClient,
};
use wsk_host::{FaultPlan, Nth, Session};
use wsk_sys::*;

mod common;
use common::{
    DEADLINE, FailingAllocator, Originator, assert_only_leaks, connected, driver,
    fail_nth_heap_allocation, forwarded_request, start, within,
};

// ---- heap allocations that fail on demand -----------------------------------------------------

#[global_allocator]
static ALLOCATOR: FailingAllocator = FailingAllocator;

// ---- helpers --------------------------------------------------------------------------------

/// Polls the future once.
fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    Pin::new(future).poll(&mut Context::from_waker(Waker::noop()))
}

/// Waits until `condition` holds, or fails at the deadline.
fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "{what}: not by the deadline");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Drives `future` with a no-op waker until it is ready, failing at the deadline.
fn drive<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Poll::Ready(output) = future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            return output;
        }
        assert!(Instant::now() < deadline, "not done by the deadline");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[derive(Debug)]
/// Owns a `Buf` whose MDL an [`MdlChain`] describes; counts its drops.
struct BufOwner {
    _buf: Buf,
    drops: Arc<AtomicUsize>,
}

impl Drop for BufOwner {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

/// An empty MDL chain of `len` bytes over a fresh `Buf`, which its owner keeps alive.
fn buf_chain(len: usize, drops: &Arc<AtomicUsize>) -> MdlChain<Box<BufOwner>> {
    let buf = Buf::with_capacity(len).unwrap();
    let first = NonNull::new(buf.mdl()).unwrap();
    let owner = Box::new(BufOwner {
        _buf: buf,
        drops: Arc::clone(drops),
    });
    // SAFETY: the MDL describes the buffer's non-paged pool (built for it by `Buf`), which
    // the owner keeps until the chain drops it.
    let mut chain = unsafe { MdlChain::from_raw(first, 0, len, owner) }.unwrap();
    chain.clear();
    chain
}

// ---- deadlines: zero, already passed, Duration::MAX -------------------------------------------

#[test]
fn deadlines_of_zero_passed_and_max() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, mut peer) = connected(&client);
    // Duration::MAX: saturates, stays pending (not a deadline in the past, not "none").
    let far = Deadline::after(Duration::MAX);
    assert!(!far.has_passed());
    assert!(far.remaining() > Duration::from_secs(3600));
    let mut op = start(
        socket
            .receive(Buf::with_capacity(8).unwrap())
            .timeout(Duration::MAX),
    );
    let mut until = start(socket.receive(Buf::with_capacity(8).unwrap()).deadline(far));
    let mut sleep = start(client.sleep(Duration::MAX));
    let mut sleep_until = start(client.sleep_until(far));
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        poll_once(&mut op).is_pending(),
        "a timeout of Duration::MAX fired"
    );
    assert!(poll_once(&mut until).is_pending(), "a far deadline fired");
    assert!(
        poll_once(&mut sleep).is_pending(),
        "a sleep of Duration::MAX ended"
    );
    assert!(
        poll_once(&mut sleep_until).is_pending(),
        "a far sleep ended"
    );
    drop((op, until, sleep, sleep_until));
    // Zero and already passed: a silent peer times out at once, the buffer back.
    let passed = Deadline::after(Duration::ZERO);
    std::thread::sleep(Duration::from_millis(2));
    assert!(passed.has_passed());
    assert_eq!(passed.remaining(), Duration::ZERO);
    for (result, buf) in [
        socket
            .receive(Buf::with_capacity(8).unwrap())
            .timeout(Duration::ZERO)
            .wait(),
        socket
            .receive(Buf::with_capacity(8).unwrap())
            .deadline(passed)
            .wait(),
        drive(
            socket
                .receive(Buf::with_capacity(8).unwrap())
                .timeout(Duration::ZERO),
        ),
    ] {
        assert_eq!(result.unwrap_err(), Error::TIMED_OUT);
        assert_eq!(buf.capacity(), 8);
    }
    // With data at hand, a zero deadline gets it, or times out and leaves it to the next.
    peer.write_all(b"here").unwrap();
    let mut got = Vec::new();
    let give_up = Instant::now() + DEADLINE;
    while got.len() < 4 {
        assert!(Instant::now() < give_up, "the bytes never came");
        let (result, buf) = socket
            .receive(Buf::with_capacity(8).unwrap())
            .deadline(passed)
            .wait();
        match result {
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(error) => assert_eq!(error, Error::TIMED_OUT),
        }
    }
    assert_eq!(got, b"here");
    assert_eq!(client.sleep(Duration::ZERO).wait(), Ok(()));
    assert_eq!(client.sleep_until(passed).wait(), Ok(()));
    drop(socket);
    within("the teardown", move || drop(client));
    session.finish();
}

// ---- a deadline and a caller's IRP together, in both orders -----------------------------------

#[test]
fn a_deadline_and_a_callers_irp_in_both_orders() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, _peer) = connected(&client);
    let irp = Irp::new().unwrap();
    let raw = irp.as_ptr();
    let ((result, buf), irp) = socket
        .receive(Buf::with_capacity(8).unwrap())
        .timeout(Duration::from_millis(20))
        .with_irp(irp)
        .wait();
    assert_eq!(result.unwrap_err(), Error::TIMED_OUT);
    assert_eq!(buf.capacity(), 8);
    let irp = irp.expect("the IRP comes back");
    assert_eq!(irp.as_ptr(), raw);
    let ((result, buf), irp) = socket
        .receive(buf)
        .with_irp(irp)
        .timeout(Duration::from_millis(20))
        .wait();
    assert_eq!(result.unwrap_err(), Error::TIMED_OUT);
    let irp = irp.expect("the IRP comes back");
    assert_eq!(irp.as_ptr(), raw);
    // A forwarded IRP with a deadline, dropped in flight: completed to its originator once.
    let originator = Arc::new(Originator::default());
    let forwarded = forwarded_request(&originator);
    // SAFETY: the request was just "dispatched" to this driver.
    let forwarded_irp = unsafe { Irp::from_forwarded(forwarded) }.unwrap();
    let op = start(
        socket
            .receive(buf)
            .with_irp(forwarded_irp)
            .timeout(Duration::from_secs(3600)),
    );
    drop(op);
    eventually("the forwarded IRP reaches its originator", || {
        originator.completions.load(Ordering::SeqCst) == 1
    });
    assert_eq!(originator.status.load(Ordering::SeqCst), STATUS_CANCELLED);
    originator.free();
    drop((irp, socket));
    within("the teardown", move || drop(client));
    session.finish();
}

// ---- with_irp on an operation already issued, and twice ----------------------------------------

#[test]
fn with_irp_on_an_issued_operation_and_twice() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, mut peer) = connected(&client);
    // Issued with the socket's IRP, then given a caller's: it stays in flight and the
    // caller's IRP comes back untouched.
    let op = start(socket.receive(Buf::with_capacity(8).unwrap()));
    let irp = Irp::new().unwrap();
    let raw = irp.as_ptr();
    let mut op = op.with_irp(irp).timeout(Duration::from_millis(1));
    std::thread::sleep(Duration::from_millis(30));
    assert!(
        poll_once(&mut op).is_pending(),
        "a late deadline has no effect"
    );
    peer.write_all(b"abc").unwrap();
    let ((received, buf), irp) = within("the issued receive", move || op.wait());
    assert_eq!(received.unwrap(), 3);
    assert_eq!(&buf[..], b"abc");
    assert_eq!(irp.expect("handed back as given").as_ptr(), raw);
    drop(buf);
    drop(socket);
    within("the teardown", move || drop(client));
    session.finish();
}

// ---- a deadline racing the completion: no byte lost, no stale cancellation --------------------

#[test]
fn a_deadline_racing_its_completion_loses_nothing_and_cancels_nothing_else() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, mut peer) = connected(&client);
    let rounds = 150;
    let writer = std::thread::spawn(move || {
        for i in 0..rounds {
            // Around the deadline of the receive below.
            std::thread::sleep(Duration::from_micros(200 + (i % 7) * 150));
            peer.write_all(&[i as u8]).unwrap();
        }
        peer
    });
    let give_up = Instant::now() + DEADLINE;
    let mut got = Vec::new();
    let (mut timed_out, mut buf) = (0, Buf::with_capacity(1).unwrap());
    while got.len() < rounds as usize {
        assert!(Instant::now() < give_up, "the bytes never came");
        buf.clear();
        let (result, back) = socket
            .receive(buf)
            .timeout(Duration::from_micros(500))
            .wait();
        buf = back;
        match result {
            Ok(n) => {
                assert_eq!(n, 1);
                got.push(buf[0]);
            }
            Err(error) => {
                assert_eq!(error, Error::TIMED_OUT);
                timed_out += 1;
                // The next request reuses the block: a stale timer must not cancel it.
                buf.clear();
                let (result, back) = socket.receive_exact(buf, 1).wait_timeout(10_000);
                buf = back;
                assert_eq!(result, Ok(1), "a request after a timed-out one");
                got.push(buf[0]);
            }
        }
    }
    let expected: Vec<u8> = (0..rounds).map(|i| i as u8).collect();
    assert_eq!(got, expected, "every byte once, in order");
    drop(writer.join().unwrap());
    eprintln!("{timed_out} of {rounds} receives timed out");
    drop((buf, socket));
    within("the teardown", move || drop(client));
    session.finish();
}

// ---- everything in flight at once, the client or the socket dropped first ---------------------

/// Puts in flight on `socket`: receives into a slice (with a deadline), into an MDL chain
/// (with a caller's IRP and a deadline), into a buffer with a forwarded IRP, a sleep and a
/// transport-list change notification.
#[allow(clippy::type_complexity)]
fn everything_in_flight(
    client: &WskClient,
    socket: &ConnectionSocket,
    drops: &Arc<AtomicUsize>,
    originator: &Arc<Originator>,
) -> Vec<Box<dyn FnOnce() + Send>> {
    let slice = start(
        socket
            .receive(
                {
                    let mut buf = Buf::with_capacity(64).unwrap();
                    buf.extend_from_slice(b"head").unwrap();
                    buf
                }
                .slice(4..32)
                .unwrap(),
            )
            .deadline(Deadline::after(Duration::from_secs(3600))),
    );
    let chain = start(
        socket
            .receive(buf_chain(32, drops))
            .with_irp(Irp::new().unwrap())
            .timeout(Duration::from_secs(3600)),
    );
    // SAFETY: the request was just "dispatched" to this driver.
    let forwarded = unsafe { Irp::from_forwarded(forwarded_request(originator)) }.unwrap();
    let forwarded_op = start(
        socket
            .receive(Buf::with_capacity(8).unwrap())
            .with_irp(forwarded),
    );
    let sleep = start(client.sleep(Duration::from_secs(3600)));
    let change = start(client.transport_list_change());
    vec![
        Box::new(move || {
            let (result, slice) = slice.wait();
            assert!(result.is_err());
            assert_eq!(slice.into_inner().capacity(), 64);
        }),
        Box::new(move || {
            let ((result, chain), irp) = chain.wait();
            assert!(result.is_err());
            assert_eq!(chain.len(), 32);
            assert!(irp.is_some());
        }),
        Box::new(move || {
            let ((result, _), irp) = forwarded_op.wait();
            assert!(result.is_err());
            irp.expect("the forwarded IRP comes back")
                .complete(STATUS_CANCELLED, 0)
                .unwrap();
        }),
        Box::new(move || assert!(sleep.wait().is_err())),
        Box::new(move || assert!(change.wait().is_err())),
    ]
}

#[test]
fn everything_in_flight_with_the_client_dropped_first() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, _peer) = connected(&client);
    let drops = Arc::new(AtomicUsize::new(0));
    let originator = Arc::new(Originator::default());
    let ops = everything_in_flight(&client, &socket, &drops, &originator);
    within("the client's drop", move || drop(client));
    within("the operations", move || {
        for op in ops {
            op();
        }
    });
    assert_eq!(
        socket.local_addr().wait().unwrap_err(),
        Error::SOCKET_CLOSED
    );
    drop(socket);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    assert_eq!(originator.completions.load(Ordering::SeqCst), 1);
    originator.free();
    session.finish();
}

#[test]
fn everything_in_flight_with_the_socket_then_the_client_dropped_and_ops_dropped_last() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, _peer) = connected(&client);
    let drops = Arc::new(AtomicUsize::new(0));
    let originator = Arc::new(Originator::default());
    let ops = everything_in_flight(&client, &socket, &drops, &originator);
    drop(socket);
    within("the client's drop", move || drop(client));
    drop(ops);
    eventually("the chain's owner is released", || {
        drops.load(Ordering::SeqCst) == 1
    });
    eventually("the forwarded IRP is completed", || {
        originator.completions.load(Ordering::SeqCst) == 1
    });
    originator.free();
    session.finish();
}

#[test]
fn everything_in_flight_forgotten_then_the_client_dropped() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, _peer) = connected(&client);
    let drops = Arc::new(AtomicUsize::new(0));
    let originator = Arc::new(Originator::default());
    std::mem::forget(everything_in_flight(&client, &socket, &drops, &originator));
    std::mem::forget(socket);
    within("the client's drop", move || drop(client));
    let (_, findings) = session.conclude();
    assert_eq!(
        drops.load(Ordering::SeqCst),
        0,
        "never freed under the provider"
    );
    assert_only_leaks(&findings);
}

// ---- blocking waits inside event callbacks: refused, never hanging ----------------------------

/// Tries every blocking wait of the new API inside its callbacks, and keeps a sleep and a
/// timed receive with a caller's IRP started there.
/// What each attempt inside a callback gave.
type Attempts = Arc<Mutex<Vec<(&'static str, Result<(), Error>)>>>;

struct Waiter {
    client: Arc<WskClient>,
    timers: Timers,
    results: Attempts,
    kept: Mutex<Vec<Box<dyn std::any::Any + Send>>>,
}

impl Waiter {
    fn record(&self, what: &'static str, result: Result<(), Error>) {
        self.results.lock().unwrap().push((what, result));
    }
}

impl wsk::ConnectionEvents for Waiter {
    fn on_receive<'a>(&self, data: wsk::ReceivedData<'a>) -> wsk::ReceiveDecision<'a> {
        if !self.results.lock().unwrap().is_empty() {
            return data.consume();
        }
        let socket = data.socket();
        self.record("sleep", self.timers.sleep(Duration::from_millis(1)).wait());
        self.record(
            "sleep_until",
            self.client
                .sleep_until(Deadline::after(Duration::from_millis(1)))
                .wait(),
        );
        self.record(
            "block_on(sleep)",
            wsk::task::block_on(self.timers.sleep(Duration::from_millis(1))).and_then(|r| r),
        );
        let (sent, _) = socket
            .send(Buf::from_slice(b"x").unwrap())
            .timeout(Duration::from_secs(1))
            .wait();
        self.record("timed send", sent.map(drop));
        let ((received, _), irp) = socket
            .receive(Buf::with_capacity(4).unwrap().slice(..).unwrap())
            .with_irp(Irp::new().unwrap())
            .deadline(Deadline::after(Duration::from_secs(1)))
            .wait();
        assert!(irp.is_some(), "not issued: the IRP comes back");
        self.record("receive with an IRP", received.map(drop));
        self.record(
            "ideal_send_backlog",
            socket.ideal_send_backlog().wait().map(drop),
        );
        self.record(
            "option_bytes",
            socket
                .option_bytes(SOL_SOCKET, SO_RCVBUF, 4)
                .wait()
                .map(drop),
        );
        self.record("transports", self.client.transports().map(drop));
        self.record(
            "name_of",
            self.client
                .name_of("127.0.0.1:80".parse().unwrap(), NameInfoFlags::default())
                .wait()
                .map(drop),
        );
        let mut name_of = self
            .client
            .name_of("127.0.0.1:80".parse().unwrap(), NameInfoFlags::default());
        match poll_once(&mut name_of) {
            Poll::Ready(result) => self.record("name_of polled", result.map(drop)),
            Poll::Pending => self.record("name_of polled", Ok(())),
        }
        // Started here and kept by the handler, dropped with it when the socket closes.
        let mut sleep = self.timers.sleep(Duration::from_secs(3600));
        let _ = poll_once(&mut sleep);
        let mut receive = socket
            .receive(buf_chain(8, &Arc::new(AtomicUsize::new(0))))
            .with_irp(Irp::new().unwrap())
            .timeout(Duration::from_secs(3600));
        let _ = poll_once(&mut receive);
        let mut kept = self.kept.lock().unwrap();
        kept.push(Box::new(sleep));
        kept.push(Box::new(receive));
        drop(kept);
        self.record("done", Err(Error::IRQL_TOO_HIGH));
        data.consume()
    }

    fn on_send_backlog(&self, _ideal_bytes: usize) {
        let result = self.timers.sleep(Duration::from_millis(1)).wait();
        if result != Err(Error::IRQL_TOO_HIGH) {
            self.record("sleep in on_send_backlog", result);
        }
    }
}

#[test]
fn blocking_waits_inside_event_callbacks_are_refused() {
    let session = Session::start();
    let client = Arc::new(WskClient::register(driver(&session)).unwrap());
    let results = Arc::new(Mutex::new(Vec::new()));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let socket = ConnectionSocket::connect_with_events(
        &client,
        listener.local_addr().unwrap(),
        Waiter {
            client: Arc::clone(&client),
            timers: client.timers(),
            results: Arc::clone(&results),
            kept: Mutex::new(Vec::new()),
        },
    )
    .wait()
    .unwrap();
    let (mut peer, _) = listener.accept().unwrap();
    peer.write_all(b"go").unwrap();
    eventually("the callback's attempts", || {
        results
            .lock()
            .unwrap()
            .last()
            .is_some_and(|(what, _)| *what == "done")
    });
    for (what, result) in results.lock().unwrap().iter() {
        assert_eq!(
            *result,
            Err(Error::IRQL_TOO_HIGH),
            "{what} inside a callback"
        );
    }
    drop(socket);
    // The handler holds a reference to the client: the last one goes when the close
    // completes (in its completion routine), whichever comes first.
    within("the client's drop", move || drop(client));
    assert!(session.wait_for_work_items(DEADLINE));
    session.finish();
}

// ---- the client shut down or dropped inside a task ---------------------------------------------

#[test]
fn the_client_shut_down_or_dropped_inside_a_task_does_not_wait_there() {
    for shut_down in [true, false] {
        let session = Session::start();
        // The close the teardown issues completes 300 ms late: a teardown waiting inside the
        // task would hold `spawn` that long.
        session.set_faults(FaultPlan::new(21).delay_completions(Duration::from_millis(300)));
        let client = WskClient::register(driver(&session)).unwrap();
        let (socket, _peer) = connected(&client);
        let receive = start(socket.receive(Buf::with_capacity(8).unwrap()));
        let tasks = TaskSet::new(driver(&session)).unwrap();
        let outcome = Arc::new(Mutex::new(None));
        let seen = Arc::clone(&outcome);
        let began = Instant::now();
        tasks
            .spawn(async move {
                let result = if shut_down {
                    client.shutdown()
                } else {
                    drop(client);
                    Ok(())
                };
                *seen.lock().unwrap() = Some(result);
            })
            .unwrap();
        let took = began.elapsed();
        let result = outcome
            .lock()
            .unwrap()
            .take()
            .expect("the task ran at once");
        if shut_down {
            assert_eq!(result, Err(Error::IRQL_TOO_HIGH), "shutdown inside a task");
        }
        assert!(
            took < Duration::from_millis(250),
            "the teardown waited inside the task ({took:?}, shutdown: {shut_down})"
        );
        let (result, _) = within("the receive", move || receive.wait());
        assert!(result.is_err());
        drop(socket);
        assert!(session.wait_for_work_items(DEADLINE));
        drop(tasks);
        session.finish();
    }
}

// ---- conditional accept asked for by bytes -----------------------------------------------------

unsafe extern "system" fn signal(_device: PDEVICE_OBJECT, _irp: PIRP, event: PVOID) -> NTSTATUS {
    // SAFETY: the event the test waits on, alive until then.
    unsafe { KeSetEvent(event.cast(), IO_NO_INCREMENT.into(), FALSE) };
    STATUS_MORE_PROCESSING_REQUIRED
}

/// Closes a raw socket the way a C component would: WskCloseSocket with an IRP of its own.
fn close_raw(socket: PWSK_SOCKET) -> NTSTATUS {
    let irp = Irp::new().unwrap();
    let mut event = KEVENT::default();
    // SAFETY: a fresh IRP and an event on this stack frame, waited for before both go; the
    // socket is open and owned by the caller.
    unsafe {
        KeInitializeEvent(&mut event, NotificationEvent, FALSE);
        IoSetCompletionRoutine(
            irp.as_ptr(),
            Some(signal),
            (&raw mut event).cast(),
            true,
            true,
            true,
        );
        let basic = (*socket).Dispatch.cast::<WSK_PROVIDER_BASIC_DISPATCH>();
        let close = (*basic).WskCloseSocket.unwrap();
        close(socket, irp.as_ptr());
        let mut timeout = LARGE_INTEGER {
            QuadPart: -(DEADLINE.as_nanos() as i64 / 100),
        };
        assert_eq!(
            KeWaitForSingleObject(
                (&raw mut event).cast(),
                Executive,
                KernelMode,
                FALSE,
                &mut timeout,
            ),
            STATUS_SUCCESS
        );
    }
    irp.status()
}

#[test]
fn conditional_accept_asked_for_by_bytes_keeps_the_socket_from_being_given_up() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let listener = ListenSocket::create(&client, AddressFamily::V4)
        .wait()
        .unwrap();
    listener
        .set_option_bytes(SOL_SOCKET, SO_CONDITIONAL_ACCEPT, &1u32.to_ne_bytes())
        .wait()
        .unwrap();
    assert!(listener.conditional_accept().wait().unwrap());
    // SAFETY: if given up, the socket is closed below before the client goes.
    match unsafe { listener.into_raw() } {
        Ok(raw) => {
            assert_eq!(close_raw(raw), STATUS_SUCCESS);
            panic!("a socket with conditional accept asked for (by bytes) was given up");
        }
        Err((error, listener)) => {
            assert_eq!(error.status(), STATUS_INVALID_DEVICE_STATE);
            drop(listener);
        }
    }
    within("the teardown", move || drop(client));
    session.finish();
}

// ---- pended inspections: waited for in their callback, forgotten, kept by the handler ----------

#[derive(Clone, Copy, PartialEq)]
enum Pend {
    /// Pends and waits for the completion inside the callback.
    WaitInCallback,
    /// Pends and keeps the pended inspection in the handler.
    KeepInHandler,
    /// Pends and moves it into a task that sleeps first.
    GiveToTask,
    /// Pends and forgets it.
    Forget,
}

struct Pender {
    policy: Pend,
    timers: Timers,
    tasks: Arc<TaskSet>,
    kept: Arc<Mutex<Vec<PendedInspection>>>,
    accepted: Arc<Mutex<Vec<ConnectionSocket>>>,
    waited: Arc<Mutex<Vec<Result<(), Error>>>>,
}

impl wsk::ListenEvents for Pender {
    fn on_accept<'a>(&self, incoming: Incoming<'a>) -> AcceptDecision<'a> {
        match incoming.accept() {
            Ok((socket, decision)) => {
                self.accepted.lock().unwrap().push(socket);
                decision
            }
            Err((_, decision)) => decision,
        }
    }

    fn on_inspect<'a>(&self, inspection: Inspection<'a>) -> InspectDecision<'a> {
        let (pended, decision) = inspection.pend();
        let pended = match pended {
            Ok(pended) => pended,
            Err(error) => {
                // Out of memory: rejected instead.
                self.waited.lock().unwrap().push(Err(error));
                return decision;
            }
        };
        match self.policy {
            Pend::WaitInCallback => {
                let result = pended.accept().wait();
                self.waited.lock().unwrap().push(result);
            }
            Pend::KeepInHandler => self.kept.lock().unwrap().push(pended),
            Pend::GiveToTask => {
                let sleep = self.timers.sleep(Duration::from_secs(3600));
                self.tasks
                    .spawn(async move {
                        let _ = sleep.await;
                        let _ = pended.accept().await;
                    })
                    .unwrap();
            }
            Pend::Forget => std::mem::forget(pended),
        }
        decision
    }
}

/// What a conditional-accept listener of these tests shares with the test.
struct Pending {
    listener: ListenSocket,
    local: SocketAddr,
    accepted: Arc<Mutex<Vec<ConnectionSocket>>>,
    waited: Arc<Mutex<Vec<Result<(), Error>>>>,
    kept: Arc<Mutex<Vec<PendedInspection>>>,
}

/// A conditional-accept listener pending every inspection per `policy`.
fn pending_listener(client: &WskClient, policy: Pend, tasks: &Arc<TaskSet>) -> Pending {
    let kept = Arc::new(Mutex::new(Vec::new()));
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let waited = Arc::new(Mutex::new(Vec::new()));
    let listener = ListenSocket::create_with_events(
        client,
        AddressFamily::V4,
        Pender {
            policy,
            timers: client.timers(),
            tasks: Arc::clone(tasks),
            kept: Arc::clone(&kept),
            accepted: Arc::clone(&accepted),
            waited: Arc::clone(&waited),
        },
    )
    .wait()
    .unwrap();
    listener.set_conditional_accept(true).wait().unwrap();
    listener
        .bind_to("127.0.0.1:0".parse().unwrap())
        .wait()
        .unwrap();
    let local = listener.local_addr().wait().unwrap();
    Pending {
        listener,
        local,
        accepted,
        waited,
        kept,
    }
}

#[test]
fn a_pended_inspection_waited_for_inside_its_callback_is_refused() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let tasks = Arc::new(TaskSet::new(driver(&session)).unwrap());
    let Pending {
        listener,
        local,
        accepted,
        waited,
        ..
    } = pending_listener(&client, Pend::WaitInCallback, &tasks);
    let peer = TcpStream::connect(local).unwrap();
    eventually("the inspection", || !waited.lock().unwrap().is_empty());
    assert_eq!(waited.lock().unwrap()[0], Err(Error::IRQL_TOO_HIGH));
    // The refused decision is not lost: dropped unissued, it rejects the connection (the
    // callback's answer, here).
    assert!(
        refused(peer),
        "the connection is neither accepted nor refused"
    );
    accepted.lock().unwrap().clear();
    drop(listener);
    drop(tasks);
    within("the teardown", move || drop(client));
    session.finish();
}

#[test]
fn pended_inspections_kept_by_the_handler_or_a_sleeping_task_past_the_client() {
    for policy in [Pend::KeepInHandler, Pend::GiveToTask] {
        let session = Session::start();
        let client = WskClient::register(driver(&session)).unwrap();
        let tasks = Arc::new(TaskSet::new(driver(&session)).unwrap());
        let Pending {
            listener,
            local,
            accepted,
            kept,
            ..
        } = pending_listener(&client, policy, &tasks);
        let _peers: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(local).unwrap()).collect();
        if policy == Pend::GiveToTask {
            eventually("the tasks", || tasks.len() == 3);
        } else {
            std::thread::sleep(Duration::from_millis(50));
        }
        // The client first (which closes the listener), then the listener's handle.
        within("the teardown", move || drop(client));
        // Kept past the client's teardown, dropped (rejecting) after it.
        drop(kept);
        drop(listener);
        // The tasks' sleeps were cancelled by the teardown; their completions fail. The
        // handler's reference to the set goes with the listener's close completion, which
        // may come from the provider's thread a moment after.
        eventually("the handler's drop", || Arc::strong_count(&tasks) == 1);
        let tasks = Arc::into_inner(tasks).unwrap();
        within("the tasks", move || {
            tasks.wait_idle().unwrap();
            drop(tasks);
        });
        // A task woken by the teardown's cancellation of its sleep may have accepted its
        // connection before the listener's close: that socket was closed by the teardown.
        for socket in accepted.lock().unwrap().drain(..) {
            assert_eq!(
                socket.local_addr().wait().unwrap_err(),
                Error::SOCKET_CLOSED
            );
        }
        session.finish();
    }
}

#[test]
fn a_forgotten_pended_inspection_does_not_hold_the_teardown() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let tasks = Arc::new(TaskSet::new(driver(&session)).unwrap());
    let Pending {
        listener, local, ..
    } = pending_listener(&client, Pend::Forget, &tasks);
    let _peer = TcpStream::connect(local).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    drop(listener);
    drop(tasks);
    within("the teardown", move || drop(client));
    let (_, findings) = session.conclude();
    // The listener's memory (its core and IRPs) stays allocated.
    assert_only_leaks(&findings);
}

// ---- raw sockets: given up and adopted again, right after timed operations ---------------------

#[test]
fn given_up_and_adopted_again_right_after_timed_operations() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (mut socket, mut peer) = connected(&client);
    let writer = std::thread::spawn(move || {
        for i in 0..60u8 {
            std::thread::sleep(Duration::from_micros(300 + u64::from(i % 5) * 100));
            peer.write_all(&[i]).unwrap();
        }
        peer
    });
    let mut given_up = 0;
    let mut got = 0;
    while got < 60 {
        let (result, _) = socket
            .receive(Buf::with_capacity(64).unwrap())
            .timeout(Duration::from_micros(400))
            .wait_timeout(10_000);
        match result {
            Ok(n) => got += n,
            Err(error) => assert_eq!(error, Error::TIMED_OUT),
        }
        // Idle now: given up and adopted again, at once.
        // SAFETY: adopted back (and so closed) before the client goes.
        match unsafe { socket.into_raw() } {
            Ok(raw) => {
                given_up += 1;
                // SAFETY: the connection socket just given up, created through this
                // client, owned by nobody else, nothing in flight.
                socket =
                    unsafe { ConnectionSocket::from_raw(&client, raw, AddressFamily::V4) }.unwrap();
            }
            Err((error, back)) => {
                assert_eq!(error.status(), STATUS_INVALID_DEVICE_STATE);
                socket = back;
            }
        }
    }
    assert!(given_up > 0);
    let _peer = writer.join().unwrap();
    // An adopted socket with a timed receive in flight, the client dropped first.
    let op = start(
        socket
            .receive(Buf::with_capacity(8).unwrap())
            .timeout(Duration::from_secs(3600)),
    );
    within("the teardown", move || drop(client));
    let (result, buf) = within("the receive", move || op.wait());
    assert!(result.is_err());
    drop((buf, socket));
    session.finish();
}

// ---- AsyncStream: reads dropped, the client and the stream dropped in every order ---------------

#[cfg(feature = "embedded-io-async")]
mod stream {
    use super::*;
    use embedded_io_async::{Read as _, Write as _};
    use wsk::io::AsyncStream;

    fn new_stream(client: &WskClient) -> (AsyncStream, TcpStream) {
        let (socket, peer) = connected(client);
        (AsyncStream::with_capacity(socket, 64, 64).unwrap(), peer)
    }

    #[test]
    fn a_read_dropped_in_flight_then_the_client_then_the_stream() {
        let session = Session::start();
        let client = WskClient::register(driver(&session)).unwrap();
        let (mut stream, _peer) = new_stream(&client);
        {
            let mut dst = [0u8; 8];
            let mut read = pin!(stream.read(&mut dst));
            assert!(
                read.as_mut()
                    .poll(&mut Context::from_waker(Waker::noop()))
                    .is_pending()
            );
        }
        within("the teardown", move || drop(client));
        let mut dst = [0u8; 8];
        assert!(drive(stream.read(&mut dst)).is_err(), "the socket is gone");
        // Taken (write-behind) or refused at once; the flush reports the failure.
        let _ = drive(stream.write(b"late"));
        assert!(drive(stream.flush()).is_err());
        drop(stream);
        session.finish();
    }

    #[test]
    fn a_read_and_a_write_in_flight_then_the_stream_then_the_client() {
        let session = Session::start();
        session.set_faults(FaultPlan::new(8).delay_completions(Duration::from_millis(50)));
        let client = WskClient::register(driver(&session)).unwrap();
        let (mut stream, _peer) = new_stream(&client);
        assert_eq!(drive(stream.write(b"behind")).unwrap(), 6);
        {
            let mut dst = [0u8; 8];
            let mut read = pin!(stream.read(&mut dst));
            assert!(
                read.as_mut()
                    .poll(&mut Context::from_waker(Waker::noop()))
                    .is_pending()
            );
        }
        drop(stream);
        within("the teardown", move || drop(client));
        session.finish();
    }

    #[test]
    fn a_close_dropped_in_flight_and_a_stream_forgotten() {
        let session = Session::start();
        session.set_faults(FaultPlan::new(8).delay_completions(Duration::from_millis(50)));
        let client = WskClient::register(driver(&session)).unwrap();
        let (mut stream, _peer) = new_stream(&client);
        assert_eq!(drive(stream.write(b"x")).unwrap(), 1);
        {
            let mut close = pin!(stream.close());
            assert!(
                close
                    .as_mut()
                    .poll(&mut Context::from_waker(Waker::noop()))
                    .is_pending()
            );
        }
        let (mut forgotten, _peer) = new_stream(&client);
        {
            let mut dst = [0u8; 8];
            let mut read = pin!(forgotten.read(&mut dst));
            assert!(
                read.as_mut()
                    .poll(&mut Context::from_waker(Waker::noop()))
                    .is_pending()
            );
        }
        std::mem::forget(forgotten);
        within("the teardown", move || drop(client));
        let (_, findings) = session.conclude();
        assert_only_leaks(&findings);
    }

    #[test]
    fn blocking_stream_io_inside_a_task_is_refused() {
        let session = Session::start();
        let client = WskClient::register(driver(&session)).unwrap();
        let (stream, _peer) = new_stream(&client);
        let tasks = TaskSet::new(driver(&session)).unwrap();
        let outcome = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&outcome);
        tasks
            .spawn(async move {
                let mut stream = stream;
                let mut dst = [0u8; 4];
                let read = embedded_io::Read::read(&mut stream, &mut dst).map(drop);
                let write = embedded_io::Write::write(&mut stream, b"x").map(drop);
                let flush = embedded_io::Write::flush(&mut stream);
                seen.lock().unwrap().extend([read, write, flush]);
            })
            .unwrap();
        eventually("the task", || outcome.lock().unwrap().len() == 3);
        for result in outcome.lock().unwrap().iter() {
            assert_eq!(*result, Err(Error::IRQL_TOO_HIGH));
        }
        within("the tasks", move || drop(tasks));
        within("the teardown", move || drop(client));
        session.finish();
    }
}

// ---- options of absurd sizes, and pointer options refused --------------------------------------

#[test]
fn options_of_absurd_sizes_are_errors() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, _peer) = connected(&client);
    for capacity in [0, usize::MAX, u32::MAX as usize + 1, usize::MAX / 2] {
        let result = socket.option_bytes(SOL_SOCKET, SO_RCVBUF, capacity).wait();
        assert!(result.is_err(), "capacity {capacity}: {result:?}");
    }
    let needed = socket
        .option_bytes(SOL_SOCKET, SO_RCVBUF, 1)
        .wait()
        .unwrap_err();
    assert_eq!(needed.kind(), wsk::ErrorKind::InvalidBufferSize);
    assert!(
        socket
            .set_option_bytes(SOL_SOCKET, SO_RCVBUF, &[])
            .wait()
            .is_err()
    );
    for name in [SO_WSK_EVENT_CALLBACK, SO_WSK_SECURITY] {
        assert_eq!(
            socket
                .set_option_bytes(SOL_SOCKET, name, &[0u8; 64])
                .wait()
                .unwrap_err(),
            Error::INVALID_PARAMETER
        );
    }
    // A control with a deadline, a caller's IRP, dropped and forgotten in flight.
    let (value, irp) = socket
        .option_bytes(SOL_SOCKET, SO_RCVBUF, 4)
        .timeout(Duration::ZERO)
        .with_irp(Irp::new().unwrap())
        .wait();
    assert!(irp.is_some());
    assert!(value.is_ok() || value == Err(Error::TIMED_OUT));
    drop(irp);
    drop(start(
        client
            .transport_list_change()
            .timeout(Duration::from_secs(3600)),
    ));
    let (changed, irp) = client
        .transport_list_change()
        .with_irp(Irp::new().unwrap())
        .timeout(Duration::from_millis(10))
        .wait();
    assert_eq!(changed, Err(Error::TIMED_OUT));
    assert!(irp.is_some());
    drop(irp);
    drop(socket);
    within("the teardown", move || drop(client));
    session.finish();
}

// ---- slices of empty buffers, empty ranges, nested slices --------------------------------------

#[test]
fn empty_slices_and_ranges_are_refused_with_the_buffer_back() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, mut peer) = connected(&client);
    let empty = Buf::with_capacity(8).unwrap();
    // A zero-length range: made, but no operation takes it.
    let zero = empty.slice(0..0).unwrap();
    let (sent, zero) = socket.send(zero).wait();
    assert_eq!(sent.unwrap_err(), Error::INVALID_BUFFER_SIZE);
    let (received, zero) = socket.receive(zero).wait();
    assert_eq!(received.unwrap_err(), Error::INVALID_BUFFER_SIZE);
    let (received, zero) = socket.receive_exact(zero, 1).wait();
    assert_eq!(received.unwrap_err(), Error::INVALID_BUFFER_SIZE);
    let empty = zero.into_inner();
    // Past the data, reversed, overflowing: refused, the buffer back whole.
    #[allow(clippy::reversed_empty_ranges)]
    let empty = empty.slice(5..3).unwrap_err().1;
    let empty = empty.slice(1..8).unwrap_err().1;
    let empty = empty
        .slice((Bound::Excluded(usize::MAX), Bound::Unbounded))
        .unwrap_err()
        .1;
    let empty = empty.slice(..=usize::MAX).unwrap_err().1;
    let empty = empty.slice(0..9).unwrap_err().1;
    assert_eq!(empty.capacity(), 8);
    drop(empty);
    // A slice of a slice, and of the memoryless stand-in.
    let buf = Buf::from_slice(b"0123456789").unwrap();
    let nested = buf.slice(2..9).unwrap().slice(1..4).unwrap();
    let (sent, nested) = socket.send(nested).wait();
    assert_eq!(sent.unwrap(), 3);
    let mut three = [0u8; 3];
    peer.read_exact(&mut three).unwrap();
    assert_eq!(&three, b"345");
    assert_eq!(nested.into_inner().into_inner().len(), 10);
    let stand_in = <Buf as IoBuf>::stand_in().slice(..).unwrap();
    let (sent, _) = socket.send(stand_in).wait();
    assert_eq!(sent.unwrap_err(), Error::INVALID_BUFFER_SIZE);
    let (sent, _) = socket.send(<MdlChain as IoBuf>::stand_in()).wait();
    assert_eq!(sent.unwrap_err(), Error::INVALID_BUFFER_SIZE);
    // An empty datagram from an empty slice, and into an empty one.
    let datagrams = client
        .bind_datagram("127.0.0.1:0".parse().unwrap())
        .wait()
        .unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(DEADLINE)).unwrap();
    let (sent, _) = datagrams
        .send_to(
            Buf::with_capacity(4).unwrap().slice(0..0).unwrap(),
            udp.local_addr().unwrap(),
        )
        .wait();
    if sent.is_ok() {
        let mut nothing = [0u8; 4];
        assert_eq!(udp.recv(&mut nothing).unwrap(), 0);
    }
    let (received, _) = datagrams
        .receive_from(Buf::with_capacity(4).unwrap().slice(0..0).unwrap())
        .wait();
    assert!(received.is_err());
    drop((datagrams, socket));
    within("the teardown", move || drop(client));
    session.finish();
}

// ---- out of memory on every new path ------------------------------------------------------------

/// Runs every new path once; any of them may fail (memory is short), none may panic, leak
/// or hang. `arm` is called before each call, `disarm` after it.
fn new_paths(session: &Session, client: &WskClient, arm: &dyn Fn(), disarm: &dyn Fn()) {
    let (socket, mut peer) = connected(client);
    let (other, _other_peer) = connected(client);
    let tasks = Arc::new(TaskSet::new(driver(session)).unwrap());
    let pending = pending_listener(client, Pend::KeepInHandler, &tasks);
    let timers = client.timers();
    peer.write_all(b"data").unwrap();
    macro_rules! step {
        ($e:expr) => {{
            arm();
            let output = $e;
            disarm();
            output
        }};
    }
    let _ = step!(client.sleep(Duration::from_millis(1)).wait());
    let _ = step!(timers.sleep_until(Deadline::after(Duration::ZERO)).wait());
    let irp = step!(Irp::new()).ok();
    let buf = step!(Buf::with_capacity(8)).ok();
    if let (Some(irp), Some(buf)) = (irp, buf) {
        let slice = buf.slice(..).unwrap();
        let _ = step!(
            socket
                .receive(slice)
                .timeout(Duration::from_millis(1))
                .with_irp(irp)
                .wait()
        );
    }
    let drops = Arc::new(AtomicUsize::new(0));
    if let Ok(buf) = step!(Buf::with_capacity(8)) {
        let first = NonNull::new(buf.mdl()).unwrap();
        let owner = Box::new(BufOwner {
            _buf: buf,
            drops: Arc::clone(&drops),
        });
        // SAFETY: the MDL describes the buffer's non-paged pool, which the owner keeps
        // until the chain drops it.
        let mut chain = unsafe { MdlChain::from_raw(first, 0, 8, owner) }.unwrap();
        chain.clear();
        let _ = step!(
            socket
                .receive(chain)
                .deadline(Deadline::after(Duration::from_millis(1)))
                .wait()
        );
    }
    let _ = step!(socket.option_bytes(SOL_SOCKET, SO_RCVBUF, 4).wait());
    let _ = step!(
        socket
            .set_option_bytes(SOL_SOCKET, SO_RCVBUF, &65536u32.to_ne_bytes())
            .wait()
    );
    let _ = step!(socket.ideal_send_backlog().wait());
    let _ = step!(client.transports());
    {
        let _ = step!(
            client
                .name_of(
                    "127.0.0.1:80".parse().unwrap(),
                    NameInfoFlags {
                        numeric_host: true,
                        numeric_service: true,
                        ..NameInfoFlags::default()
                    },
                )
                .wait()
        );
    }
    let _ = step!(
        client
            .transport_list_change()
            .timeout(Duration::from_millis(1))
            .wait()
    );
    // Given up and adopted again: on failure the raw socket is still ours, closed by hand.
    // SAFETY: adopted back or closed here, before the client goes.
    match step!(unsafe { other.into_raw() }) {
        Ok(raw) => {
            // SAFETY: the connection socket just given up, created through this client,
            // owned by nobody else, nothing in flight.
            match step!(unsafe { ConnectionSocket::from_raw(client, raw, AddressFamily::V4) }) {
                Ok(adopted) => drop(adopted),
                Err(error) => {
                    assert_eq!(error, Error::INSUFFICIENT_RESOURCES);
                    assert_eq!(close_raw(raw), STATUS_SUCCESS);
                }
            }
        }
        Err((_, other)) => drop(other),
    }
    // An inspection pended (or rejected for want of memory), then decided.
    let connecting = TcpStream::connect(pending.local).unwrap();
    let give_up = Instant::now() + DEADLINE;
    while pending.kept.lock().unwrap().is_empty() && pending.waited.lock().unwrap().is_empty() {
        assert!(Instant::now() < give_up, "no inspection");
        std::thread::sleep(Duration::from_millis(1));
    }
    if let Some(pended) = pending.kept.lock().unwrap().pop() {
        // Not completed while its callback may still be returning: that race is a finding
        // of its own (`WskInspectComplete` can reach the provider before the pend does).
        std::thread::sleep(Duration::from_millis(20));
        let _ = step!(pended.reject().wait());
    }
    drop(connecting);
    let stream = step!(wsk::io::AsyncStream::new(socket));
    drop(stream);
    let _ = step!(tasks.spawn(async {}));
    let _ = pending.listener.close().wait();
    pending.accepted.lock().unwrap().clear();
    eventually("the listener's handler is dropped", || {
        Arc::strong_count(&tasks) == 1
    });
    let tasks = Arc::into_inner(tasks).unwrap();
    tasks.wait_idle().unwrap();
    drop(tasks);
}

#[test]
fn out_of_pool_irps_or_mdls_on_every_new_path() {
    type Plan = fn(Nth) -> FaultPlan;
    let plans: [(&str, Plan); 3] = [
        ("pool", |n| FaultPlan::new(1).fail_pool_allocation(n)),
        ("IRP", |n| FaultPlan::new(1).fail_irp_allocation(n)),
        ("MDL", |n| FaultPlan::new(1).fail_mdl_allocation(n)),
    ];
    for (what, plan) in plans {
        for n in 1..=24 {
            let session = Session::start();
            let client = WskClient::register(driver(&session)).unwrap();
            let arm = || session.set_faults(plan(Nth::Call(1)));
            let disarm = || session.set_faults(FaultPlan::new(1));
            new_paths(&session, &client, &arm, &disarm);
            // And the n-th allocation from the first path on, wherever it falls.
            let armed = Cell::new(false);
            let arm_once = || {
                if !armed.replace(true) {
                    session.set_faults(plan(Nth::Call(n)));
                }
            };
            new_paths(&session, &client, &arm_once, &|| {});
            session.set_faults(FaultPlan::new(1));
            within("the teardown", move || drop(client));
            let (_, findings) = session.conclude();
            assert!(findings.is_empty(), "{what} #{n}: {findings:?}");
        }
    }
}

/// The new paths whose own heap allocations are made before anything reaches wsk-host
/// (whose kernel exports abort when the heap fails them): building the requests, a task. Each may fail, none may abort or leak.
fn heap_paths(session: &Session, client: &WskClient, n: usize) {
    let (socket, _peer) = connected(client);
    let tasks = TaskSet::new(driver(session)).unwrap();
    macro_rules! step {
        ($e:expr) => {{
            fail_nth_heap_allocation(n);
            let output = $e;
            fail_nth_heap_allocation(0);
            output
        }};
    }
    let get = step!(socket.option_bytes(SOL_SOCKET, SO_RCVBUF, 4));
    let _ = get.wait();
    let set = step!(socket.set_option_bytes(SOL_SOCKET, SO_RCVBUF, &65536u32.to_ne_bytes()));
    let _ = set.wait();
    let timers = step!(client.timers());
    let sleep = step!(timers.sleep(Duration::from_millis(1)));
    let _ = sleep.wait();
    let change = step!(
        client
            .transport_list_change()
            .timeout(Duration::from_millis(1))
    );
    let _ = change.wait();
    let name_of = step!(client.name_of("127.0.0.1:80".parse().unwrap(), NameInfoFlags::default()));
    drop(name_of);
    let _ = step!(tasks.spawn(async {}));
    drop(socket);
    tasks.wait_idle().unwrap();
}

#[test]
fn out_of_heap_on_every_new_path() {
    for n in 1..=4 {
        let session = Session::start();
        let client = WskClient::register(driver(&session)).unwrap();
        heap_paths(&session, &client, n);
        within("the teardown", move || drop(client));
        session.finish();
    }
}

// ---- an MDL chain whose owner panics when dropped ------------------------------------------------

/// Owns a `Buf` described by an MDL chain, and panics when dropped (its buffer is still freed:
/// fields are dropped while the panic unwinds).
#[derive(Debug)]
struct PanickingOwner {
    _buf: Buf,
}

impl Drop for PanickingOwner {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("the owner's drop panics");
        }
    }
}

fn panicking_chain(len: usize) -> MdlChain<Box<PanickingOwner>> {
    let buf = Buf::with_capacity(len).unwrap();
    let first = NonNull::new(buf.mdl()).unwrap();
    // SAFETY: the MDL describes the buffer's non-paged pool, which the owner keeps until the
    // chain drops it.
    let mut chain =
        unsafe { MdlChain::from_raw(first, 0, len, Box::new(PanickingOwner { _buf: buf })) }
            .unwrap();
    chain.clear();
    chain
}

#[test]
fn an_mdl_chain_owner_panicking_in_the_users_thread_breaks_nothing() {
    let session = Session::start();
    session.set_faults(FaultPlan::new(5).completion(wsk_host::CompletionMode::AlwaysPending));
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, mut peer) = connected(&client);
    // Dropped before it was issued.
    let op = socket
        .receive(panicking_chain(8))
        .timeout(Duration::from_secs(1));
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(op)));
    assert!(unwound.is_err());
    // Completed but never collected: dropped after its completion arrived.
    let op = start(
        socket
            .receive(panicking_chain(8))
            .with_irp(Irp::new().unwrap()),
    );
    let before = session.report().completed_pending;
    peer.write_all(b"abcd").unwrap();
    eventually("the completion", || {
        session.report().completed_pending > before
    });
    std::thread::sleep(Duration::from_millis(20));
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(op)));
    assert!(unwound.is_err());
    // The socket still works, and the teardown does not hang.
    peer.write_all(b"efgh").unwrap();
    let (received, buf) = within("a receive after the panics", {
        let socket_ref = socket.receive_exact(Buf::with_capacity(4).unwrap(), 4);
        move || socket_ref.wait()
    });
    assert_eq!(received, Ok(4));
    drop(buf);
    drop(socket);
    within("the teardown", move || drop(client));
    session.finish();
}

// ---- a caller's IRP and a deadline on client-level, listen and datagram requests ----------------

#[test]
fn callers_irps_and_deadlines_on_every_kind_of_request() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    // A connect with a caller's IRP dropped in flight: the socket it creates is the client's.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let remote = listener.local_addr().unwrap();
    for _ in 0..8 {
        let mut connect = client.connect(remote).with_irp(Irp::new().unwrap());
        let _ = poll_once(&mut connect);
        drop(connect);
    }
    // A forwarded IRP on a connect abandoned in flight: completed to its originator once.
    let originator = Arc::new(Originator::default());
    // SAFETY: the request was just "dispatched" to this driver.
    let forwarded = unsafe { Irp::from_forwarded(forwarded_request(&originator)) }.unwrap();
    let mut connect = client.connect(remote).with_irp(forwarded);
    let _ = poll_once(&mut connect);
    drop(connect);
    eventually("the forwarded connect reaches its originator", || {
        originator.completions.load(Ordering::SeqCst) == 1
    });
    originator.free();
    // Client-level requests with a caller's IRP and a deadline.
    let (names, irp) = client
        .name_of(
            "127.0.0.1:80".parse().unwrap(),
            NameInfoFlags {
                numeric_host: true,
                numeric_service: true,
                ..NameInfoFlags::default()
            },
        )
        .with_irp(Irp::new().unwrap())
        .timeout(Duration::from_secs(5))
        .wait();
    assert_eq!(names.unwrap().host, "127.0.0.1");
    assert!(irp.is_some());
    let (addresses, irp) = client
        .resolve("127.0.0.1", 80)
        .timeout(Duration::ZERO)
        .with_irp(irp.unwrap())
        .wait();
    assert!(addresses.is_ok() || addresses.unwrap_err() == Error::TIMED_OUT);
    // An accept and a datagram receive that time out, their IRPs back.
    let listening = client
        .listen("127.0.0.1:0".parse().unwrap())
        .wait()
        .unwrap();
    let (accepted, irp) = listening
        .accept()
        .with_irp(irp.unwrap())
        .timeout(Duration::from_millis(10))
        .wait();
    assert_eq!(accepted.unwrap_err(), Error::TIMED_OUT);
    let datagrams = client
        .bind_datagram("127.0.0.1:0".parse().unwrap())
        .wait()
        .unwrap();
    let originator = Arc::new(Originator::default());
    // SAFETY: as above.
    let forwarded = unsafe { Irp::from_forwarded(forwarded_request(&originator)) }.unwrap();
    let ((received, buf), forwarded) = datagrams
        .receive_from(Buf::with_capacity(16).unwrap().slice(..).unwrap())
        .with_irp(forwarded)
        .timeout(Duration::from_millis(10))
        .wait();
    assert_eq!(received.unwrap_err(), Error::TIMED_OUT);
    assert_eq!(buf.into_inner().capacity(), 16);
    forwarded
        .expect("the forwarded IRP comes back")
        .complete(STATUS_IO_TIMEOUT, 0)
        .unwrap();
    assert_eq!(originator.completions.load(Ordering::SeqCst), 1);
    assert_eq!(originator.status.load(Ordering::SeqCst), STATUS_IO_TIMEOUT);
    originator.free();
    // A sleep polled and waited for after it ended: pending, then an error, never a panic.
    let mut sleep = client.sleep(Duration::ZERO);
    let give_up = Instant::now() + DEADLINE;
    while poll_once(&mut sleep).is_pending() {
        assert!(Instant::now() < give_up, "a zero sleep never ended");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(poll_once(&mut sleep).is_pending());
    assert!(sleep.wait().is_err());
    drop((irp, listening, datagrams));
    within("the teardown", move || drop(client));
    drop(listener);
    session.finish();
}

// ---- decisions that never reach the provider, IRPs given twice, lists out of memory ------------

/// Whether the peer's connection is refused (reset or closed) within the deadline.
fn refused(mut peer: TcpStream) -> bool {
    peer.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut byte = [0u8; 1];
    match peer.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(error) => !matches!(
            error.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn a_decision_dropped_before_it_is_issued_still_rejects() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let tasks = Arc::new(TaskSet::new(driver(&session)).unwrap());
    let Pending {
        listener,
        local,
        accepted,
        kept,
        ..
    } = pending_listener(&client, Pend::KeepInHandler, &tasks);
    for accept in [false, true] {
        let peer = TcpStream::connect(local).unwrap();
        eventually("the inspection", || !kept.lock().unwrap().is_empty());
        let pended = kept.lock().unwrap().pop().unwrap();
        // The decision's operation dropped unpolled: the inspection is rejected, not left
        // undecided until the listener closes.
        if accept {
            drop(pended.accept());
        } else {
            drop(pended.reject());
        }
        assert!(
            refused(peer),
            "the connection is neither accepted nor refused"
        );
        assert!(accepted.lock().unwrap().is_empty());
    }
    drop(listener);
    drop(tasks);
    within("the teardown", move || drop(client));
    session.finish();
}

#[test]
fn an_operation_given_two_irps_uses_the_first_and_hands_back_both() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, mut peer) = connected(&client);
    let socket = Arc::new(socket);
    for round in 0..3 {
        let (first, second) = (Irp::new().unwrap(), Irp::new().unwrap());
        let (first_raw, second_raw) = (first.as_ptr(), second.as_ptr());
        let sender = Arc::clone(&socket);
        let (((sent, buf), used), unused) = within("a send given two IRPs", move || {
            let buf = Buf::from_slice(b"twice").unwrap();
            sender.send(buf).with_irp(first).with_irp(second).wait()
        });
        assert_eq!(sent.unwrap(), 5, "round {round}");
        drop(buf);
        assert_eq!(used.expect("the first, used").as_ptr(), first_raw);
        assert_eq!(unused.expect("the second, unused").as_ptr(), second_raw);
        let mut echo = [0u8; 5];
        peer.set_read_timeout(Some(DEADLINE)).unwrap();
        peer.read_exact(&mut echo).unwrap();
        assert_eq!(&echo, b"twice");
    }
    drop(socket);
    within("the teardown", move || drop(client));
    session.finish();
}

#[test]
fn the_transport_list_out_of_heap_is_an_error() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let _ = client.transports().unwrap();
    for n in 1..=4 {
        fail_nth_heap_allocation(n);
        let result = client.transports();
        fail_nth_heap_allocation(0);
        assert!(
            result.is_ok() || result == Err(Error::INSUFFICIENT_RESOURCES),
            "{result:?}"
        );
    }
    within("the teardown", move || drop(client));
    session.finish();
}

#[test]
fn pended_inspections_completed_as_their_callbacks_return() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let tasks = Arc::new(TaskSet::new(driver(&session)).unwrap());
    let Pending {
        listener,
        local,
        kept,
        ..
    } = pending_listener(&client, Pend::KeepInHandler, &tasks);
    // Each decision is made the moment the handler has stored the inspection: often before
    // the callback's `WskInspectPend` has reached the provider.
    for _ in 0..200 {
        let peer = TcpStream::connect(local).unwrap();
        let pended = {
            let started = Instant::now();
            loop {
                if let Some(pended) = kept.lock().unwrap().pop() {
                    break pended;
                }
                assert!(started.elapsed() < DEADLINE, "no inspection");
                std::hint::spin_loop();
            }
        };
        within("the rejection", move || pended.reject().wait()).unwrap();
        assert!(
            refused(peer),
            "the connection is neither accepted nor refused"
        );
    }
    drop(listener);
    drop(tasks);
    within("the teardown", move || drop(client));
    session.finish();
}

#[test]
fn a_deadline_racing_the_completion_of_a_request_on_a_callers_irp_never_cancels_it_after_it_is_freed()
 {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, mut peer) = connected(&client);
    let rounds = 300;
    let writer = std::thread::spawn(move || {
        for i in 0..rounds {
            std::thread::sleep(Duration::from_micros(100 + (i % 5) * 100));
            peer.write_all(&[i as u8]).unwrap();
        }
        peer
    });
    let give_up = Instant::now() + DEADLINE;
    let mut got = Vec::new();
    let mut buf = Buf::with_capacity(1).unwrap();
    while got.len() < rounds as usize {
        assert!(Instant::now() < give_up, "the bytes never came");
        buf.clear();
        // The deadline's DPC cancels the caller's IRP while the completion hands it back;
        // the IRP is freed at once (wsk-host quarantines it: a late IoCancelIrp on it is a
        // use-after-free bug check).
        let ((result, back), irp) = socket
            .receive(buf)
            .with_irp(Irp::new().unwrap())
            .timeout(Duration::from_micros(300))
            .wait();
        drop(irp);
        buf = back;
        match result {
            Ok(n) => {
                assert_eq!(n, 1);
                got.push(buf[0]);
            }
            Err(error) => {
                assert_eq!(error, Error::TIMED_OUT);
                buf.clear();
                let (result, back) = socket.receive_exact(buf, 1).wait_timeout(10_000);
                buf = back;
                assert_eq!(result, Ok(1), "a request after a timed-out one");
                got.push(buf[0]);
            }
        }
    }
    let expected: Vec<u8> = (0..rounds).map(|i| i as u8).collect();
    assert_eq!(got, expected, "every byte once, in order");
    drop(writer.join().unwrap());
    drop((buf, socket));
    within("the teardown", move || drop(client));
    session.finish();
}

#[test]
fn a_forwarded_irp_whose_request_timed_out_is_not_reused() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, mut peer) = connected(&client);
    let originator = Arc::new(Originator::default());
    // SAFETY: a request as the dispatch routine receives it, owned by this test until it is
    // completed to its originator.
    let forwarded = unsafe { Irp::from_forwarded(forwarded_request(&originator)) }.unwrap();
    // Bounded by its own deadline.
    let ((result, buf), irp) = socket
        .receive(Buf::with_capacity(4).unwrap())
        .with_irp(forwarded)
        .timeout(Duration::from_millis(10))
        .wait();
    assert_eq!(result, Err(Error::TIMED_OUT));
    let irp = irp.expect("handed back");
    assert!(irp.is_cancelled());
    // Given again: refused before the provider (its cancel flag stays: not the driver's to
    // clear), handed back, and the data waits for the next receive.
    peer.write_all(b"late").unwrap();
    let ((result, buf), irp) = socket.receive(buf).with_irp(irp).wait_timeout(10_000);
    assert_eq!(result, Err(Error::CANCELLED));
    let irp = irp.expect("handed back unused");
    let (received, buf) = socket.receive_exact(buf, 4).wait_timeout(10_000);
    assert_eq!(received, Ok(4));
    assert_eq!(&buf[..], b"late");
    // Completed to its originator, which frees it.
    irp.complete(STATUS_CANCELLED, 0).unwrap();
    eventually("the originator", || {
        originator.completions.load(Ordering::SeqCst) == 1
    });
    originator.free();
    drop((buf, socket));
    within("the teardown", move || drop(client));
    session.finish();
}
