//! The promise attacked through the public API: each test here breaks (or broke) one way safe
//! code could leak, use memory the provider still reads, wait where it must not, or hang
//! unload, and checks that it no longer can — ending, like every test, with the verifier
//! reporting nothing (or exactly the leaks a deliberate `mem::forget` implies).

use std::future::Future;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};
use std::task::{Context, Waker};
use std::time::Duration;

use wsk::irql::Irql;
use wsk::task::TaskSet;
use wsk::{
    Buf, BufList, ConnectionEvents, ConnectionSocket, Error, ReceiveDecision, ReceivedData,
    RetainedData, WskClient,
};
use wsk_host::{CompletionMode, FaultPlan, Rule, Session};

mod common;
use common::{connected, connected_with_events, driver, start};

const DEADLINE: Duration = Duration::from_secs(20);

/// Runs `f` on a thread of its own and fails the test if it does not return in time (a hang
/// fails loudly instead of stalling the suite).
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, result) = channel();
    std::thread::spawn(move || {
        let _ = done.send(f());
    });
    result
        .recv_timeout(DEADLINE)
        .unwrap_or_else(|_| panic!("{what}: did not return within {DEADLINE:?}"))
}

// ---- hole 2: no wait in a completion routine, a task or a handler, whatever the IRQL ------

#[test]
fn no_wait_inside_a_task_even_at_passive_level_after_a_passive_inline_completion() {
    let session = Session::start();
    // Windows runs an inline completion at the caller's IRQL: PASSIVE_LEVEL here.
    session.set_faults(
        FaultPlan::new(2)
            .completion(CompletionMode::AlwaysInline)
            .inline_completion_at_caller_irql(true),
    );
    let client = Arc::new(WskClient::register(driver(&session)).unwrap());
    let (socket, mut peer) = connected(&client);
    let socket = Arc::new(socket);
    peer.write_all(b"ping").unwrap();
    let tasks = TaskSet::new(driver(&session)).unwrap();
    let (report, seen) = channel();
    {
        let socket = Arc::clone(&socket);
        tasks
            .spawn(async move {
                // The first poll runs in the spawning thread, at its PASSIVE_LEVEL: still a
                // task, so a blocking wait is refused.
                let first_poll = Irql::current();
                let (waited_first, _) = socket.send(Buf::from_slice(b"x").unwrap()).wait();
                let (received, _) = socket.receive(Buf::with_capacity(16).unwrap()).await;
                // Woken from the completion routine, at PASSIVE_LEVEL when it ran inline:
                // the wait is refused there too.
                let (waited_after, _) = socket.send(Buf::from_slice(b"y").unwrap()).wait();
                let _ = report.send((first_poll, waited_first.err(), received, waited_after.err()));
            })
            .unwrap();
    }
    let (first_poll, waited_first, received, waited_after) = seen.recv_timeout(DEADLINE).unwrap();
    assert_eq!(first_poll, Irql::PASSIVE);
    assert_eq!(waited_first, Some(Error::IRQL_TOO_HIGH));
    assert_eq!(received.unwrap(), 4);
    assert_eq!(waited_after, Some(Error::IRQL_TOO_HIGH));
    // Outside the task, the same thread may wait again.
    let (sent, _) = socket.send(Buf::from_slice(b"z").unwrap()).wait();
    assert_eq!(sent.unwrap(), 1);
    drop(tasks);
    drop(socket);
    drop(client);
    session.finish();
}

/// Waits from every callback the provider may call at PASSIVE_LEVEL: an inline completion
/// at PASSIVE_LEVEL wakes a `block_on` waker and a handler-free task; neither may block.
#[test]
fn close_wait_block_on_and_task_waits_are_refused_inside_a_task() {
    let session = Session::start();
    let client = Arc::new(WskClient::register(driver(&session)).unwrap());
    let tasks = Arc::new(TaskSet::new(driver(&session)).unwrap());
    let (report, seen) = channel();
    let (socket, _peer) = connected(&client);
    {
        let tasks_inner = Arc::clone(&tasks);
        tasks
            .spawn(async move {
                let nested = wsk::task::block_on(async { 1 }).err();
                let idle = tasks_inner.wait_idle().err();
                let closed = socket.close().wait().err();
                let _ = report.send((nested, idle, closed));
            })
            .unwrap();
    }
    let (nested, idle, closed) = seen.recv_timeout(DEADLINE).unwrap();
    assert_eq!(nested, Some(Error::IRQL_TOO_HIGH));
    assert_eq!(idle, Some(Error::IRQL_TOO_HIGH));
    assert_eq!(closed, Some(Error::IRQL_TOO_HIGH));
    drop(tasks);
    drop(client);
    session.finish();
}

// ---- holes 1 and 2: spin-lock guards ------------------------------------------------------

#[test]
fn spin_lock_guards_dropped_out_of_order_keep_the_irql_raised_until_the_last() {
    let session = Session::start();
    let a = wsk::SpinLock::new(1u32);
    let b = wsk::SpinLock::new(2u32);
    let outer = a.lock();
    let inner = b.lock();
    drop(outer);
    // Lock `b` is still held: the IRQL must stay at DISPATCH_LEVEL, and waits stay refused.
    assert_eq!(Irql::current(), Irql::DISPATCH);
    assert_eq!(
        wsk::task::block_on(async { 0 }).unwrap_err(),
        Error::IRQL_TOO_HIGH
    );
    assert_eq!(*inner, 2);
    drop(inner);
    assert_eq!(Irql::current(), Irql::PASSIVE);
    // And in order, nested three deep, the same.
    let (x, y, z) = (a.lock(), b.lock(), wsk::SpinLock::new(3u32));
    let zg = z.lock();
    drop(y);
    drop(zg);
    assert_eq!(Irql::current(), Irql::DISPATCH);
    drop(x);
    assert_eq!(Irql::current(), Irql::PASSIVE);
    session.finish();
}

// ---- hole 3: a replaced buffer gets a partial MDL of its own size -------------------------

#[test]
fn a_buffer_replaced_in_a_list_gets_a_partial_mdl_that_fits() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, mut peer) = connected(&client);
    let mut list = BufList::new();
    list.push(Buf::from_slice(b"ab").unwrap()).unwrap();
    list.push(Buf::from_slice(b"cd").unwrap()).unwrap();
    let (sent, mut list) = socket.send_vectored(list).wait();
    assert_eq!(sent.unwrap(), 4);
    // Three pages where one was: the old partial MDL is too small for it.
    let big = vec![0x5a_u8; 3 * 4096 + 100];
    list.bufs_mut()[1] = Buf::from_slice(&big).unwrap();
    let (sent, list) = socket.send_vectored(list).wait();
    assert_eq!(sent.unwrap(), 2 + big.len());
    drop(list);
    let mut got = vec![0u8; 4 + 2 + big.len()];
    peer.set_read_timeout(Some(DEADLINE)).unwrap();
    peer.read_exact(&mut got).unwrap();
    assert_eq!(&got[..6], b"abcdab");
    assert!(got[6..].iter().all(|&b| b == 0x5a));
    drop((socket, client));
    session.finish();
}

// ---- hole 4: retained data dropped inside its own callback ---------------------------------

struct RetainAndDrop {
    retained_then_dropped: AtomicUsize,
}

impl ConnectionEvents for RetainAndDrop {
    fn on_receive<'a>(&self, data: ReceivedData<'a>) -> ReceiveDecision<'a> {
        let (retained, decision) = data.retain();
        // Released before the callback has returned STATUS_PENDING: the data must count as
        // consumed, with no WskRelease during the callback.
        drop(retained.unwrap());
        self.retained_then_dropped.fetch_add(1, Ordering::SeqCst);
        decision
    }
}

#[test]
fn retained_data_dropped_in_its_callback_is_consumed_not_released_early() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let events = Arc::new(RetainAndDrop {
        retained_then_dropped: AtomicUsize::new(0),
    });
    struct Shared(Arc<RetainAndDrop>);
    impl ConnectionEvents for Shared {
        fn on_receive<'a>(&self, data: ReceivedData<'a>) -> ReceiveDecision<'a> {
            self.0.on_receive(data)
        }
    }
    let (socket, mut peer) = connected_with_events(&client, Shared(Arc::clone(&events)));
    for _ in 0..5 {
        peer.write_all(b"retained").unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let deadline = std::time::Instant::now() + DEADLINE;
    while events.retained_then_dropped.load(Ordering::SeqCst) == 0 {
        assert!(std::time::Instant::now() < deadline, "no data indicated");
        std::thread::sleep(Duration::from_millis(5));
    }
    socket.close().wait().unwrap();
    drop(client);
    session.finish();
}

// ---- hole 5: a task holding retained data while it waits on the socket ---------------------

struct Keeper {
    retained: Sender<RetainedData>,
}

impl ConnectionEvents for Keeper {
    fn on_receive<'a>(&self, data: ReceivedData<'a>) -> ReceiveDecision<'a> {
        let (retained, decision) = data.retain();
        if let Ok(retained) = retained {
            let _ = self.retained.send(retained);
        }
        decision
    }
}

#[test]
fn dropping_the_client_wakes_a_task_that_holds_retained_data_and_waits_on_the_socket() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (retained_tx, retained_rx) = channel();
    let (socket, mut peer) = connected_with_events(
        &client,
        Keeper {
            retained: retained_tx,
        },
    );
    peer.write_all(b"held").unwrap();
    let retained = retained_rx.recv_timeout(DEADLINE).unwrap();
    let tasks = TaskSet::new(driver(&session)).unwrap();
    let (ended_tx, ended) = channel();
    let receive = socket.receive(Buf::with_capacity(8).unwrap());
    tasks
        .spawn(async move {
            // Holds the retained data until its receive completes, which it only does when
            // the socket is closed — by the client's teardown below.
            let (result, _) = receive.await;
            drop(retained);
            let _ = ended_tx.send(result.err());
        })
        .unwrap();
    // The client's teardown closes the socket: the close cancels the receive at once (it
    // cannot issue WskCloseSocket while the indication is retained), the task wakes and lets
    // the indication go, and the close proceeds.
    within(
        "client drop with retained data held by a waiting task",
        move || {
            drop(socket);
            drop(client);
        },
    );
    assert!(ended.recv_timeout(DEADLINE).unwrap().is_some());
    drop(tasks);
    drop(peer);
    session.finish();
}

struct KeepInHandler {
    kept: Mutex<Vec<RetainedData>>,
    seen: Sender<()>,
}

impl ConnectionEvents for KeepInHandler {
    fn on_receive<'a>(&self, data: ReceivedData<'a>) -> ReceiveDecision<'a> {
        let (retained, decision) = data.retain();
        if let Ok(retained) = retained {
            self.kept.lock().unwrap().push(retained);
        }
        let _ = self.seen.send(());
        decision
    }
}

#[test]
fn a_handler_keeping_retained_data_does_not_hold_the_close() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (seen_tx, seen) = channel();
    let (socket, mut peer) = connected_with_events(
        &client,
        KeepInHandler {
            kept: Mutex::new(Vec::new()),
            seen: seen_tx,
        },
    );
    peer.write_all(b"kept by the handler").unwrap();
    seen.recv_timeout(DEADLINE).unwrap();
    // The close revokes the retained indication; the handler, dropped when the close
    // completes, drops a RetainedData that has nothing left to release.
    within(
        "drop of the socket and client, the handler keeping data",
        move || {
            drop(socket);
            drop(client);
        },
    );
    drop(peer);
    session.finish();
}

#[test]
fn a_struct_dropping_its_client_before_its_retained_data_does_not_hang() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (retained_tx, retained_rx) = channel();
    let (socket, mut peer) = connected_with_events(
        &client,
        Keeper {
            retained: retained_tx,
        },
    );
    peer.write_all(b"pending").unwrap();
    let retained = retained_rx.recv_timeout(DEADLINE).unwrap();
    // Reading works while the socket is open...
    let mut bytes = [0u8; 7];
    assert_eq!(retained.view().unwrap().copy_to(&mut bytes).unwrap(), 7);
    assert_eq!(&bytes, b"pending");
    struct DriverState {
        _client: WskClient,
        _socket: ConnectionSocket,
        pending: Vec<RetainedData>,
    }
    let state = DriverState {
        _client: client,
        _socket: socket,
        pending: vec![retained],
    };
    // Fields drop in order: the client first, with the retained data still alive.
    let (after_tx, after) = channel();
    within(
        "drop of { client, socket, retained data } in field order",
        move || {
            let DriverState {
                _client,
                _socket,
                pending,
            } = state;
            drop(_client);
            // ...and fails once the close revoked it.
            let _ = after_tx.send(pending[0].view().err());
            drop(_socket);
            drop(pending);
        },
    );
    assert_eq!(
        after.recv_timeout(DEADLINE).unwrap(),
        Some(Error::SOCKET_CLOSED)
    );
    drop(peer);
    session.finish();
}

/// Retains, hands the data out, and returns only when told to.
struct HandOut {
    out: Mutex<Sender<RetainedData>>,
    go_on: Mutex<std::sync::mpsc::Receiver<()>>,
}

impl ConnectionEvents for HandOut {
    fn on_receive<'a>(&self, data: ReceivedData<'a>) -> ReceiveDecision<'a> {
        let (retained, decision) = data.retain();
        if let Ok(retained) = retained {
            let _ = self.out.lock().unwrap().send(retained);
            let _ = self
                .go_on
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(5));
        }
        decision
    }
}

#[test]
fn a_view_opened_during_the_callback_survives_a_close_requested_before_it_returns() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (out_tx, out) = channel();
    let (go_tx, go_on) = channel();
    let (socket, mut peer) = connected_with_events(
        &client,
        HandOut {
            out: Mutex::new(out_tx),
            go_on: Mutex::new(go_on),
        },
    );
    let sent: Vec<u8> = (0..4000u32).map(|i| (i % 251) as u8).collect();
    peer.write_all(&sent).unwrap();
    let retained = out.recv_timeout(DEADLINE).unwrap();
    let (opened_tx, opened) = channel();
    let (again_tx, again) = channel::<()>();
    let expected = sent.clone();
    let reader = std::thread::spawn(move || {
        let view = retained.view().unwrap();
        let mut first = vec![0u8; retained.len()];
        let count = view.copy_to(&mut first).unwrap();
        let _ = opened_tx.send(count);
        let _ = again.recv_timeout(DEADLINE);
        // The callback has returned meanwhile, and the close was requested: the view still
        // reads the same bytes (the indication is released only when it closes).
        let mut second = vec![0u8; retained.len()];
        view.copy_to(&mut second).unwrap();
        drop(view);
        let after = retained.view().err();
        (first[..count] == expected[..count], second == first, after)
    });
    assert!(opened.recv_timeout(DEADLINE).unwrap() > 0);
    let close = socket.close();
    go_tx.send(()).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    again_tx.send(()).unwrap();
    let (first_ok, second_same, after) = reader.join().unwrap();
    assert!(first_ok, "the view read what the peer sent");
    assert!(second_same, "the view read freed memory");
    assert_eq!(after, Some(Error::SOCKET_CLOSED));
    within("the close, once the view is gone", move || close.wait()).unwrap();
    drop(client);
    drop(peer);
    session.finish();
}

// ---- hole 6: client-level requests the client never cancelled ------------------------------

#[test]
fn a_driver_struct_with_a_pending_connect_drops_in_field_order() {
    let session = Session::start();
    session.set_faults(FaultPlan::new(6).delay_completions(Duration::from_millis(200)));
    // A listener that never accepts: the connect stays in flight.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    // Dropped field by field, in declaration order: the client first, with the connect
    // still in flight.
    struct Driver {
        _client: WskClient,
        _pending: Option<wsk::ops::Connect>,
    }
    let client = WskClient::register(driver(&session)).unwrap();
    let pending = start(client.connect(listener.local_addr().unwrap()));
    let driver_state = Driver {
        _client: client,
        _pending: Some(pending),
    };
    within("drop of { client, pending connect }", move || {
        drop(driver_state)
    });
    drop(listener);
    session.finish();
}

#[test]
fn a_completed_but_uncollected_connect_does_not_hold_the_client() {
    let session = Session::start();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = WskClient::register(driver(&session)).unwrap();
    // Completions held back a little: the first poll surely finds the connect in flight.
    session.set_faults(
        FaultPlan::new(7)
            .completion(CompletionMode::AlwaysPending)
            .delay_completions(Duration::from_millis(30)),
    );
    // Polled once: issued, and perhaps completed at once; either way not collected.
    let mut connect = client.connect(listener.local_addr().unwrap());
    let mut cx = Context::from_waker(Waker::noop());
    let first = Pin::new(&mut connect).poll(&mut cx);
    assert!(
        first.is_pending(),
        "the connect is collected only after the drop"
    );
    let (_peer, _) = listener.accept().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    // The connect has completed (or will): the client's teardown closes its socket even
    // though the operation is still alive and never collected before the drop.
    within("client drop with an uncollected connect", move || {
        drop(client)
    });
    // Collected after the teardown: the socket is already closed.
    if let std::task::Poll::Ready(Ok(socket)) = Pin::new(&mut connect).poll(&mut cx) {
        let (sent, _) = socket.send(Buf::from_slice(b"late").unwrap()).wait();
        assert_eq!(sent.unwrap_err(), Error::SOCKET_CLOSED);
    }
    drop(connect);
    session.finish();
}

#[test]
fn a_forgotten_resolution_does_not_hang_unload() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let resolve = start(client.resolve("127.0.0.1", 80));
    std::mem::forget(resolve);
    within("client drop with a forgotten resolution", move || {
        drop(client)
    });
    let (_, findings) = session.conclude();
    // Exactly what the forgotten operation owned: its completion block (an IRP) and the
    // memory behind it; no socket, registration or address list stays open.
    for finding in &findings {
        assert!(
            matches!(finding.rule, Rule::IrpLeaked | Rule::PoolLeaked),
            "unexpected finding: {finding:?}"
        );
    }
    assert!(findings.iter().any(|f| f.rule == Rule::IrpLeaked));
}

// ---- hole 7: a completed but uncollected accept -----------------------------------------

#[test]
fn a_completed_uncollected_accept_is_closed_by_the_teardown() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let listener = client
        .listen("127.0.0.1:0".parse().unwrap())
        .wait()
        .unwrap();
    let address = listener.local_addr().wait().unwrap();
    let accept = start(listener.accept());
    let _peer = TcpStream::connect(address).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    listener.close().wait().unwrap();
    within("client drop with an uncollected accept", move || {
        drop(client);
        drop(accept);
    });
    session.finish();
}

// ---- hole 8: the client dropped at DISPATCH_LEVEL ------------------------------------------

#[test]
fn a_client_dropped_in_a_task_is_torn_down_by_a_work_item() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, mut peer) = connected(&client);
    let tasks = TaskSet::new(driver(&session)).unwrap();
    let (dropped_tx, dropped) = channel();
    let receive = socket.receive(Buf::with_capacity(8).unwrap());
    tasks
        .spawn(async move {
            let _ = receive.await;
            // Owned by the task, dropped in the completion routine at DISPATCH_LEVEL.
            drop(socket);
            drop(client);
            let _ = dropped_tx.send(Irql::current());
        })
        .unwrap();
    peer.write_all(b"go").unwrap();
    assert_eq!(dropped.recv_timeout(DEADLINE).unwrap(), Irql::DISPATCH);
    drop(tasks);
    // The session's end waits for the work item, then checks the registration is gone.
    let report = session.finish();
    assert_eq!(report.work_items_run, 1);
}

// ---- hole 9 and 12: handlers dropped at DISPATCH_LEVEL, replying through their socket -----

struct Replier {
    tasks: Arc<TaskSet>,
    replied: Arc<AtomicBool>,
}

impl ConnectionEvents for Replier {
    fn on_receive<'a>(&self, data: ReceivedData<'a>) -> ReceiveDecision<'a> {
        let mut bytes = [0u8; 64];
        let count = data.copy_to(&mut bytes).unwrap();
        // The handler reaches its socket without owning it: no cycle, nothing leaks.
        let reply = data
            .socket()
            .send(Buf::from_slice(&bytes[..count]).unwrap());
        let replied = Arc::clone(&self.replied);
        let _ = self.tasks.spawn(async move {
            let (sent, _) = reply.await;
            replied.store(sent.is_ok(), Ordering::SeqCst);
        });
        data.consume()
    }
}

#[test]
fn a_handler_replies_through_its_socket_and_is_dropped_with_the_last_task_set() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let tasks = Arc::new(TaskSet::new(driver(&session)).unwrap());
    let replied = Arc::new(AtomicBool::new(false));
    let (socket, mut peer) = connected_with_events(
        &client,
        Replier {
            tasks: Arc::clone(&tasks),
            replied: Arc::clone(&replied),
        },
    );
    // The handler now holds the last reference to the task set: it is dropped with the
    // handler, when the close completes.
    drop(tasks);
    peer.set_read_timeout(Some(DEADLINE)).unwrap();
    peer.write_all(b"echo me").unwrap();
    let mut back = [0u8; 7];
    peer.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"echo me");
    within(
        "close with the handler owning the last task set",
        move || {
            socket.close().wait().unwrap();
            drop(client);
        },
    );
    assert!(replied.load(Ordering::SeqCst));
    session.finish();
}

struct StoreOp {
    ops: Mutex<Vec<wsk::Op<wsk::ops::SendRequest>>>,
    seen: Sender<()>,
}

impl ConnectionEvents for StoreOp {
    fn on_receive<'a>(&self, data: ReceivedData<'a>) -> ReceiveDecision<'a> {
        // An operation on the handler's own socket, kept by the handler (a cycle through the
        // socket, unless the handler goes when the socket closes).
        let mut op = data.socket().send(Buf::from_slice(b"reply").unwrap());
        let mut cx = Context::from_waker(Waker::noop());
        let _ = Pin::new(&mut op).poll(&mut cx);
        self.ops.lock().unwrap().push(op);
        let _ = self.seen.send(());
        data.consume()
    }
}

#[test]
fn a_handler_keeping_an_operation_on_its_own_socket_leaks_nothing() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (seen_tx, seen) = channel();
    let (socket, mut peer) = connected_with_events(
        &client,
        StoreOp {
            ops: Mutex::new(Vec::new()),
            seen: seen_tx,
        },
    );
    peer.write_all(b"go").unwrap();
    seen.recv_timeout(DEADLINE).unwrap();
    within("drop with an operation kept by the handler", move || {
        drop(socket);
        drop(client);
    });
    drop(peer);
    session.finish();
}

#[test]
fn polling_or_waiting_for_a_finished_operation_does_not_panic() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, _peer) = connected(&client);
    let mut send = socket.send(Buf::from_slice(b"once").unwrap());
    let mut cx = Context::from_waker(Waker::noop());
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        if let std::task::Poll::Ready((sent, _)) = Pin::new(&mut send).poll(&mut cx) {
            assert_eq!(sent.unwrap(), 4);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the send never completed"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(Pin::new(&mut send).poll(&mut cx).is_pending());
    let (again, stand_in) = send.wait();
    assert!(again.is_err());
    assert_eq!(stand_in.capacity(), 0);
    let mut all = socket.send_all(Buf::from_slice(b"all").unwrap());
    loop {
        if Pin::new(&mut all).poll(&mut cx).is_ready() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "send_all never completed"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(Pin::new(&mut all).poll(&mut cx).is_pending());
    drop((all, socket, client));
    session.finish();
}

// ---- hole 10: wait above APC_LEVEL on an operation already in flight ------------------------

#[test]
fn waiting_at_dispatch_level_on_an_operation_in_flight_cancels_it_and_reports() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, _peer) = connected(&client);
    let receive = start(socket.receive(Buf::with_capacity(64).unwrap()));
    let (result, stand_in) = {
        let _raised = wsk_host::irql::raise(Irql::DISPATCH.0);
        receive.wait()
    };
    assert_eq!(result.unwrap_err(), Error::IRQL_TOO_HIGH);
    assert_eq!(stand_in.capacity(), 0, "the buffer stays with the provider");
    assert!(stand_in.mdl().is_null());
    drop((socket, client));
    assert!(session.finish().cancelled >= 1);
}

// ---- no endless run at DISPATCH_LEVEL (DPC watchdog) --------------------------------------

#[test]
fn a_task_whose_requests_all_complete_inline_continues_from_a_work_item() {
    let session = Session::start();
    session.set_faults(FaultPlan::new(14).completion(CompletionMode::AlwaysInline));
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, peer) = connected(&client);
    const SENDS: usize = 1000;
    // The peer drains everything, so every send completes inline.
    let drain = std::thread::spawn(move || {
        let mut peer = peer;
        let mut total = 0;
        let mut chunk = [0u8; 4096];
        peer.set_read_timeout(Some(DEADLINE)).unwrap();
        while total < SENDS {
            match peer.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
        total
    });
    let tasks = TaskSet::new(driver(&session)).unwrap();
    let (done_tx, done) = channel();
    tasks
        .spawn(async move {
            let mut buf = Buf::from_slice(b"x").unwrap();
            for _ in 0..SENDS {
                let (sent, back) = socket.send(buf).await;
                assert_eq!(sent.unwrap(), 1);
                buf = back;
            }
            let _ = done_tx.send(());
        })
        .unwrap();
    done.recv_timeout(DEADLINE).unwrap();
    assert_eq!(drain.join().unwrap(), SENDS);
    drop(tasks);
    drop(client);
    let report = session.finish();
    // The task started at most RUN_BUDGET requests per run, then went on from the set's
    // work item.
    assert!(
        report.work_items_run as usize >= SENDS / (wsk::task::RUN_BUDGET as usize + 1) - 1,
        "work items run: {}",
        report.work_items_run
    );
}

// ---- hole 13: a task set dropped inside one of its own tasks ------------------------------

/// A future that is pending until [`Trigger::fire`] wakes it.
#[derive(Clone, Default)]
struct Trigger {
    state: Arc<Mutex<(bool, Option<Waker>)>>,
}

impl Trigger {
    fn fire(&self) {
        let waker = {
            let mut state = self.state.lock().unwrap();
            state.0 = true;
            state.1.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    async fn fired(&self) {
        std::future::poll_fn(|cx| {
            let mut state = self.state.lock().unwrap();
            if state.0 {
                std::task::Poll::Ready(())
            } else {
                state.1 = Some(cx.waker().clone());
                std::task::Poll::Pending
            }
        })
        .await
    }
}

#[test]
fn a_task_set_dropped_inside_its_own_task_does_not_wait_for_itself() {
    let session = Session::start();
    let holder: Arc<Mutex<Option<TaskSet>>> = Arc::new(Mutex::new(None));
    let trigger = Trigger::default();
    let (done_tx, done) = channel();
    let tasks = TaskSet::new(driver(&session)).unwrap();
    {
        let holder = Arc::clone(&holder);
        let trigger = trigger.clone();
        tasks
            .spawn(async move {
                trigger.fired().await;
                // The last owner of the set is this task: dropping the set here cancels its
                // tasks — this one included — and must not wait for them.
                let set = holder.lock().unwrap().take();
                drop(set);
                let _ = done_tx.send(());
            })
            .unwrap();
    }
    *holder.lock().unwrap() = Some(tasks);
    within("a task set dropped inside its own task", move || {
        trigger.fire()
    });
    done.recv_timeout(DEADLINE).unwrap();
    assert!(holder.lock().unwrap().is_none());
    session.finish();
}
