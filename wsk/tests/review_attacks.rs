//! An adversarial review through the public API: each test tries to break one promise of
//! the crate (no leak, no use after free or early hand-back, no wait where it must not, no
//! hang of unload, bad input an `Error`), in ways the other test files cover least.
//! Every wait has a deadline (`within`, `recv_timeout`).

use std::future::Future;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use wsk::irql::Irql;
use wsk::task::TaskSet;
use wsk::{
    AcceptDecision, Buf, BufList, ConnectionEvents, ConnectionSocket, DatagramEvents, Error,
    Incoming, IoBuf, Irp, ListenEvents, ListenSocket, ReceiveDecision, ReceivedData,
    ReceivedDatagrams, RetainedData, WskClient,
};
use wsk_host::{CompletionMode, FaultPlan, Session};

mod common;
use common::{DEADLINE, connected, connected_with_events, driver, eventually, start, within};

/// A session, completing requests the provider's default way (the suite runs this file in
/// every provider mode).
fn session_start() -> Session {
    Session::start()
}

/// Finishes the session; returns the findings (printed), for tests that expect some.
fn conclude(session: Session) -> Vec<String> {
    let (_, findings) = session.conclude();
    let findings: Vec<String> = findings.iter().map(ToString::to_string).collect();
    for finding in &findings {
        eprintln!("finding: {finding}");
    }
    findings
}

// ---- accepted sockets used, dropped or closed inside their own accept callback --------------

struct Consume;

impl ConnectionEvents for Consume {
    fn on_receive<'a>(&self, data: ReceivedData<'a>) -> ReceiveDecision<'a> {
        data.consume()
    }
}

/// Accepts every connection and, by turn: drops it at once, installs a handler and starts a
/// send it drops in flight, closes it (the `Close` dropped), keeps it with a handler.
struct AbuseOnAccept {
    turn: AtomicUsize,
    kept: Arc<Mutex<Vec<ConnectionSocket>>>,
}

impl ListenEvents for AbuseOnAccept {
    fn on_accept<'a>(&self, incoming: Incoming<'a>) -> AcceptDecision<'a> {
        let turn = self.turn.fetch_add(1, Ordering::SeqCst);
        match incoming.accept() {
            Ok((socket, decision)) => {
                match turn % 4 {
                    0 => drop(socket),
                    1 => {
                        let _ = socket.set_events(Consume);
                        let op = socket.send(Buf::from_slice(b"early").unwrap());
                        drop(start_or_done(op));
                        drop(socket);
                    }
                    2 => drop(socket.close()),
                    _ => {
                        let _ = socket.set_events(Consume);
                        // A request issued before the provider even knows the accept happened.
                        drop(start_or_done(socket.send(Buf::from_slice(b"hi").unwrap())));
                        self.kept.lock().unwrap().push(socket);
                    }
                }
                decision
            }
            Err((_, decision)) => decision,
        }
    }
}

/// Polls once; the operation may complete inline.
fn start_or_done<F: Future + Unpin>(mut future: F) -> Option<F> {
    let mut cx = Context::from_waker(Waker::noop());
    match Pin::new(&mut future).poll(&mut cx) {
        Poll::Pending => Some(future),
        Poll::Ready(_) => None,
    }
}

fn accepted_sockets_abused_in_on_accept(mode: CompletionMode) {
    let session = session_start();
    session.set_faults(FaultPlan::new(11).completion(mode));
    let client = WskClient::register(driver(&session)).unwrap();
    let kept = Arc::new(Mutex::new(Vec::new()));
    let listener = ListenSocket::bind_with_events(
        &client,
        "127.0.0.1:0".parse().unwrap(),
        AbuseOnAccept {
            turn: AtomicUsize::new(0),
            kept: Arc::clone(&kept),
        },
    )
    .wait()
    .unwrap();
    let address = listener.local_addr().wait().unwrap();
    let mut peers = Vec::new();
    for i in 0..16u8 {
        let mut peer = TcpStream::connect(address).unwrap();
        peer.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        // Data at once, racing the accept callback.
        let _ = peer.write_all(&[i; 100]);
        peers.push(peer);
    }
    eventually("every connection is seen", || {
        kept.lock().unwrap().len() == 4
    });
    for peer in &mut peers {
        let mut scratch = [0u8; 16];
        let _ = peer.read(&mut scratch);
    }
    drop(listener);
    let kept = std::mem::take(&mut *kept.lock().unwrap());
    drop(kept);
    within("the client's drop", move || drop(client));
    drop(peers);
    session.finish();
}

#[test]
fn accepted_sockets_dropped_closed_or_used_inside_on_accept_inline() {
    accepted_sockets_abused_in_on_accept(CompletionMode::AlwaysInline);
}

#[test]
fn accepted_sockets_dropped_closed_or_used_inside_on_accept_pending() {
    accepted_sockets_abused_in_on_accept(CompletionMode::AlwaysPending);
}

// ---- handlers that own sockets: cycles, and a handler owning its own socket ---------------

struct Owning {
    owned: Mutex<Option<ConnectionSocket>>,
    dropped: Arc<AtomicUsize>,
}

impl ConnectionEvents for Owning {
    fn on_receive<'a>(&self, data: ReceivedData<'a>) -> ReceiveDecision<'a> {
        data.consume()
    }
}

impl Drop for Owning {
    fn drop(&mut self) {
        self.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn handlers_owning_each_others_sockets_or_their_own_do_not_hang_unload() {
    let session = session_start();
    let client = WskClient::register(driver(&session)).unwrap();
    let dropped = Arc::new(AtomicUsize::new(0));
    let (a, peer_a) = connected(&client);
    let (b, peer_b) = connected(&client);
    let (c, peer_c) = connected(&client);
    // B's handler owns A; D's handler owns B; C's handler owns C itself (through a shared
    // slot filled once the handler is installed).
    let handler_b = Owning {
        owned: Mutex::new(Some(a)),
        dropped: Arc::clone(&dropped),
    };
    b.set_events(handler_b).unwrap();
    let handler_d = Owning {
        owned: Mutex::new(Some(b)),
        dropped: Arc::clone(&dropped),
    };
    let late = Arc::new(Owning {
        owned: Mutex::new(None),
        dropped: Arc::clone(&dropped),
    });
    struct Forward(Arc<Owning>);
    impl ConnectionEvents for Forward {
        fn on_receive<'a>(&self, data: ReceivedData<'a>) -> ReceiveDecision<'a> {
            self.0.on_receive(data)
        }
    }
    c.set_events(Forward(Arc::clone(&late))).unwrap();
    let (d, peer_d) = connected(&client);
    d.set_events(handler_d).unwrap();
    *late.owned.lock().unwrap() = Some(c);
    drop(late);
    // D is dropped by its handle: D closes, its handler (owning B) is dropped in D's close
    // completion, B closes, its handler (owning A) is dropped, A closes. C owns itself: only
    // the teardown can close it.
    drop(d);
    eventually("the chain D -> B -> A unwinds", || {
        dropped.load(Ordering::SeqCst) >= 2
    });
    let open = client.open_sockets();
    eprintln!("open sockets before the client's drop: {open}");
    within("the client's drop", move || drop(client));
    eventually("every handler dropped", || {
        dropped.load(Ordering::SeqCst) == 3
    });
    drop((peer_a, peer_b, peer_c, peer_d));
    session.finish();
}

// ---- a forgotten Close -------------------------------------------------------------------

#[test]
fn forgotten_close_futures_do_not_hang_unload() {
    let session = session_start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (first, _peer1) = connected(&client);
    let (second, _peer2) = connected(&client);
    // Polled (its waker registered) then forgotten; and never polled, forgotten.
    let polled = first.close();
    let polled = start_or_done(polled);
    std::mem::forget(polled);
    std::mem::forget(second.close());
    within("the client's drop", move || drop(client));
    let findings = conclude(session);
    // A forgotten Close keeps its socket's core (memory): a leak is the most it may cause.
    for finding in &findings {
        assert!(
            finding.to_lowercase().contains("leak") || finding.to_lowercase().contains("pool"),
            "only leaks may follow a forget: {finding}"
        );
    }
}

// ---- retained datagrams read on other threads while the socket closes --------------------

struct RetainAll {
    out: Mutex<Sender<RetainedData>>,
}

impl DatagramEvents for RetainAll {
    fn on_receive_from<'a>(&self, datagrams: ReceivedDatagrams<'a>) -> ReceiveDecision<'a> {
        let (retained, decision) = datagrams.retain();
        if let Ok(retained) = retained {
            let _ = self.out.lock().unwrap().send(retained);
        }
        decision
    }
}

#[test]
fn retained_datagrams_read_on_other_threads_while_the_socket_and_client_go() {
    let session = session_start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (tx, rx) = channel();
    let socket = wsk::DatagramSocket::bind_with_events(
        &client,
        "127.0.0.1:0".parse().unwrap(),
        RetainAll {
            out: Mutex::new(tx),
        },
    )
    .wait()
    .unwrap();
    let address = socket.local_addr().wait().unwrap();
    let bad = Arc::new(AtomicUsize::new(0));
    let read_ok = Arc::new(AtomicUsize::new(0));
    let closed_seen = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let bad = Arc::clone(&bad);
            let read_ok = Arc::clone(&read_ok);
            let closed_seen = Arc::clone(&closed_seen);
            (bad, read_ok, closed_seen)
        })
        .collect();
    let rx = Arc::new(Mutex::new(rx));
    let mut threads = Vec::new();
    for (bad, read_ok, closed_seen) in readers {
        let rx = Arc::clone(&rx);
        threads.push(std::thread::spawn(move || {
            let mut held: Vec<RetainedData> = Vec::new();
            let end = Instant::now() + Duration::from_secs(3);
            while Instant::now() < end {
                let next = rx.lock().unwrap().recv_timeout(Duration::from_millis(20));
                if let Ok(r) = next {
                    held.push(r);
                }
                // Read everything held, repeatedly; every datagram is 64 copies of one byte.
                for r in &held {
                    match r.view() {
                        Ok(view) => {
                            for datagram in view.datagrams() {
                                let mut bytes = Vec::new();
                                for chunk in datagram.chunks() {
                                    bytes.extend_from_slice(chunk.unwrap());
                                }
                                if bytes.len() != 64 || bytes.iter().any(|b| *b != bytes[0]) {
                                    bad.fetch_add(1, Ordering::SeqCst);
                                }
                            }
                            read_ok.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(e) => {
                            assert_eq!(e, Error::SOCKET_CLOSED);
                            closed_seen.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
                // Give some back, keep others past the close.
                if held.len() > 8 {
                    held.drain(..4);
                }
            }
            held
        }));
    }
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..300u32 {
        sender.send_to(&[(i % 251) as u8; 64], address).unwrap();
        if i == 150 {
            // The handle dropped mid-stream: the close revokes what the readers hold.
            drop(socket);
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(100));
    within("the client's drop", move || drop(client));
    let mut leftovers = Vec::new();
    for t in threads {
        leftovers.push(t.join().unwrap());
    }
    // Retained data outliving its client: reading fails, dropping releases nothing twice.
    for held in &leftovers {
        for r in held {
            assert_eq!(r.view().err(), Some(Error::SOCKET_CLOSED));
        }
    }
    drop(leftovers);
    drop(rx);
    eprintln!(
        "reads {} closed {} bad {}",
        read_ok.load(Ordering::SeqCst),
        closed_seen.load(Ordering::SeqCst),
        bad.load(Ordering::SeqCst)
    );
    assert_eq!(
        bad.load(Ordering::SeqCst),
        0,
        "a view read bytes not of its datagram"
    );
    session.finish();
}

// ---- a view held on another thread holds the client's drop until it is dropped ------------

struct RetainConnection {
    out: Mutex<Sender<RetainedData>>,
}

impl ConnectionEvents for RetainConnection {
    fn on_receive<'a>(&self, data: ReceivedData<'a>) -> ReceiveDecision<'a> {
        let (retained, decision) = data.retain();
        if let Ok(retained) = retained {
            let _ = self.out.lock().unwrap().send(retained);
        }
        decision
    }
}

#[test]
fn a_view_held_on_another_thread_holds_the_teardown_only_until_it_is_dropped() {
    let session = session_start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (tx, rx) = channel();
    let (socket, mut peer) = connected_with_events(
        &client,
        RetainConnection {
            out: Mutex::new(tx),
        },
    );
    peer.write_all(b"retained bytes").unwrap();
    let retained = rx.recv_timeout(DEADLINE).unwrap();
    let (opened, viewing) = channel();
    let (release, released) = channel::<()>();
    let reader = std::thread::spawn(move || {
        let view = retained.view().unwrap();
        let mut out = [0u8; 14];
        assert_eq!(view.copy_to(&mut out).unwrap(), 14);
        assert_eq!(&out, b"retained bytes");
        opened.send(()).unwrap();
        released.recv_timeout(DEADLINE).unwrap();
        // Still readable: the close waits for this view.
        assert_eq!(view.copy_to(&mut out).unwrap(), 14);
        assert_eq!(&out, b"retained bytes");
        drop(view);
        assert_eq!(retained.view().err(), Some(Error::SOCKET_CLOSED));
    });
    viewing.recv_timeout(DEADLINE).unwrap();
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&dropped);
    let dropper = std::thread::spawn(move || {
        drop(socket);
        drop(client);
        flag.store(true, Ordering::SeqCst);
    });
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !dropped.load(Ordering::SeqCst),
        "the teardown waits for the open view (documented)"
    );
    release.send(()).unwrap();
    eventually("the teardown ends once the view is dropped", || {
        dropped.load(Ordering::SeqCst)
    });
    dropper.join().unwrap();
    reader.join().unwrap();
    drop(peer);
    session.finish();
}

// ---- the executor: wake-ups run tasks on the waker's stack ---------------------------------

/// A one-shot gate: `open` wakes whoever waits.
#[derive(Default)]
struct Gate {
    open: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Gate {
    fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
        let waker = self.waker.lock().unwrap().take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn wait(self: &Arc<Self>) -> impl Future<Output = ()> + Send + 'static {
        let gate = Arc::clone(self);
        std::future::poll_fn(move |cx| {
            if gate.open.load(Ordering::SeqCst) {
                return Poll::Ready(());
            }
            *gate.waker.lock().unwrap() = Some(cx.waker().clone());
            if gate.open.load(Ordering::SeqCst) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }
}

thread_local! {
    /// How many task bodies run nested on this thread right now.
    static NESTED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// A pipeline of tasks, each waiting for its gate and then opening the next one's (a chain
/// of channels between tasks, say). Were a wake-up to poll the woken task on the waker's
/// stack, opening the first gate would run every task of the chain nested inside the
/// previous one's poll, the stack growing with the chain's length — a kernel stack is 12–24
/// KiB (and a DPC's, where completion routines wake tasks, the processor's DPC stack): a few
/// dozen tasks would be a double fault. A wake-up from anywhere but a completion routine of
/// the crate hands the task to the set's work item: no task body runs inside another's.
#[test]
fn a_chain_of_wake_ups_never_nests_task_polls() {
    let session = session_start();
    const TASKS: usize = 200;
    let gates: Vec<Arc<Gate>> = (0..=TASKS).map(|_| Arc::new(Gate::default())).collect();
    let deepest = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let tasks = TaskSet::new(driver(&session)).unwrap();
    for i in 0..TASKS {
        let mine = gates[i].wait();
        let next = Arc::clone(&gates[i + 1]);
        let deepest = Arc::clone(&deepest);
        let finished = Arc::clone(&finished);
        tasks
            .spawn(async move {
                mine.await;
                let depth = NESTED.with(|n| {
                    n.set(n.get() + 1);
                    n.get()
                });
                deepest.fetch_max(depth, Ordering::SeqCst);
                next.open();
                NESTED.with(|n| n.set(n.get() - 1));
                finished.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
    }
    let first = Arc::clone(&gates[0]);
    std::thread::spawn(move || first.open()).join().unwrap();
    eventually("every task of the chain finished", || {
        finished.load(Ordering::SeqCst) == TASKS
    });
    drop(tasks);
    session.finish();
    assert_eq!(
        deepest.load(Ordering::SeqCst),
        1,
        "a task's body ran nested inside another's"
    );
}

/// A task woken by code that holds a lock must not run inside that lock, on the waker's
/// stack: a task that then takes the same lock (a channel's own lock, say) would spin on it
/// for good, at DISPATCH_LEVEL when the lock is a `SpinLock`. Detected here with `try_lock`
/// instead of deadlocking the test.
#[test]
fn a_task_woken_under_a_lock_never_runs_inside_it() {
    let session = session_start();
    let channel_lock = Arc::new(Mutex::new(Vec::<u32>::new()));
    let waker_slot: Arc<Mutex<Option<Waker>>> = Arc::new(Mutex::new(None));
    let reentered = Arc::new(AtomicBool::new(false));
    let tasks = TaskSet::new(driver(&session)).unwrap();
    {
        let channel_lock = Arc::clone(&channel_lock);
        let waker_slot = Arc::clone(&waker_slot);
        let reentered = Arc::clone(&reentered);
        tasks
            .spawn(async move {
                std::future::poll_fn(|cx| {
                    match channel_lock.try_lock() {
                        Ok(mut queue) => {
                            if queue.pop().is_some() {
                                return Poll::Ready(());
                            }
                        }
                        Err(_) => {
                            // The waker is holding the channel's lock: a real channel would
                            // deadlock here.
                            reentered.store(true, Ordering::SeqCst);
                            return Poll::Ready(());
                        }
                    }
                    *waker_slot.lock().unwrap() = Some(cx.waker().clone());
                    Poll::Pending
                })
                .await;
            })
            .unwrap();
    }
    {
        // A sender that wakes under its lock (common in channel implementations).
        let mut queue = channel_lock.lock().unwrap();
        queue.push(1);
        if let Some(waker) = waker_slot.lock().unwrap().take() {
            waker.wake();
        }
    }
    eventually("the task finished", || tasks.is_empty());
    drop(tasks);
    session.finish();
    assert!(
        !reentered.load(Ordering::SeqCst),
        "the woken task ran inside the waker's critical section"
    );
}

// ---- a task continued by the work item: still refuses to wait; its set dropped there --------

#[test]
fn a_task_continued_in_the_work_item_still_refuses_waits_and_may_drop_its_set() {
    let session = session_start();
    session.set_faults(FaultPlan::new(3).completion(CompletionMode::AlwaysInline));
    let client = Arc::new(WskClient::register(driver(&session)).unwrap());
    let (socket, mut peer) = connected(&client);
    let socket = Arc::new(socket);
    let set_slot: Arc<Mutex<Option<TaskSet>>> =
        Arc::new(Mutex::new(Some(TaskSet::new(driver(&session)).unwrap())));
    let (report, seen) = channel();
    {
        let socket = Arc::clone(&socket);
        let slot = Arc::clone(&set_slot);
        let guard = set_slot.lock().unwrap();
        guard
            .as_ref()
            .unwrap()
            .spawn(async move {
                // More inline-completing sends than one run's budget: the task continues
                // in the set's work item at PASSIVE_LEVEL.
                for _ in 0..(wsk::task::RUN_BUDGET as usize * 2) {
                    let (sent, _) = socket.send(Buf::from_slice(b"x").unwrap()).await;
                    sent.unwrap();
                }
                let irql = Irql::current();
                let (waited, _) = socket.send(Buf::from_slice(b"y").unwrap()).wait();
                let blocked = wsk::task::block_on(async {}).err();
                // The set dropped from inside its own task, in its work item.
                let set = slot.lock().unwrap().take();
                drop(set);
                let _ = report.send((irql, waited.err(), blocked));
            })
            .unwrap();
    }
    let (irql, waited, blocked) = seen.recv_timeout(DEADLINE).unwrap();
    eprintln!("continued at {irql:?}");
    assert_eq!(waited, Some(Error::IRQL_TOO_HIGH));
    assert_eq!(blocked, Some(Error::IRQL_TOO_HIGH));
    let mut got = vec![0u8; 64];
    let mut total = 0;
    peer.set_read_timeout(Some(DEADLINE)).unwrap();
    while total < wsk::task::RUN_BUDGET as usize * 2 {
        total += peer.read(&mut got).unwrap();
    }
    drop(socket);
    let Ok(client) = Arc::try_unwrap(client) else {
        panic!("only reference")
    };
    within("the client's drop", move || drop(client));
    session.finish();
}

/// A TaskSet dropped from the test thread while its task waits in the work item's queue.
#[test]
fn a_task_set_dropped_while_its_task_is_deferred_to_the_work_item() {
    let session = session_start();
    session.set_faults(FaultPlan::new(4).completion(CompletionMode::AlwaysInline));
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, _peer) = connected(&client);
    let socket = Arc::new(socket);
    for round in 0..20 {
        let tasks = TaskSet::new(driver(&session)).unwrap();
        let socket = Arc::clone(&socket);
        tasks
            .spawn(async move {
                for _ in 0..(wsk::task::RUN_BUDGET as usize + 1 + round) {
                    let (sent, _) = socket.send(Buf::from_slice(b"z").unwrap()).await;
                    if sent.is_err() {
                        return;
                    }
                }
            })
            .unwrap();
        within("the set's drop", move || drop(tasks));
    }
    drop(socket);
    within("the client's drop", move || drop(client));
    session.finish();
}

/// A forgotten TaskSet whose task waits on a receive: the teardown must still end.
#[test]
fn a_forgotten_task_set_with_a_waiting_task_does_not_hang_unload() {
    let session = session_start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, _peer) = connected(&client);
    let tasks = TaskSet::new(driver(&session)).unwrap();
    let (done, finished) = channel();
    tasks
        .spawn(async move {
            let (received, _) = socket.receive(Buf::with_capacity(16).unwrap()).await;
            let _ = done.send(received.err());
        })
        .unwrap();
    std::mem::forget(tasks);
    within("the client's drop", move || drop(client));
    assert!(finished.recv_timeout(DEADLINE).unwrap().is_some());
    let findings = conclude(session);
    eprintln!("{} findings after forgetting a TaskSet", findings.len());
}

// ---- buffer lists and slices ---------------------------------------------------------------

#[test]
fn buffer_lists_without_bytes_are_refused_and_handed_back() {
    let session = session_start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, _peer) = connected(&client);
    // No buffer at all.
    let (sent, list) = socket.send_vectored(BufList::new()).wait();
    eprintln!("empty list: {sent:?}");
    assert!(sent.is_err());
    assert!(list.bufs().is_empty());
    // Buffers with capacity but no bytes.
    let mut list = BufList::new();
    for _ in 0..3 {
        list.push(Buf::with_capacity(32).unwrap()).unwrap();
    }
    let (sent, list) = socket.send_vectored(list).wait();
    eprintln!("list of empty buffers: {sent:?}");
    assert!(sent.is_err());
    assert_eq!(list.bufs().len(), 3);
    // The stand-in refused by push.
    let mut list = list;
    let stand_in = <Buf as IoBuf>::stand_in();
    assert_eq!(list.push(stand_in), Err(Error::INVALID_BUFFER_SIZE));
    // A datagram list of empty buffers: empty datagrams are valid; check it does not crash.
    let udp = client
        .bind_datagram("127.0.0.1:0".parse().unwrap())
        .wait()
        .unwrap();
    let target = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (sent, list) = udp.send_messages(list, target.local_addr().unwrap()).wait();
    eprintln!("datagram list of empty buffers: {sent:?}");
    drop(list);
    // Replacing a buffer of the list by a larger one, then by the stand-in.
    let mut list = BufList::new();
    list.push(Buf::from_slice(b"ab").unwrap()).unwrap();
    list.bufs_mut()[0] = Buf::from_slice(&[7u8; 5000]).unwrap();
    let (sent, mut list) = socket.send_vectored(list).wait();
    assert_eq!(sent.unwrap(), 5000);
    list.bufs_mut()[0] = <Buf as IoBuf>::stand_in();
    let (sent, list) = socket.send_vectored(list).wait();
    eprintln!("list holding the stand-in: {sent:?}");
    assert!(sent.is_err());
    drop(list);
    drop((socket, udp, client));
    session.finish();
}

#[test]
fn nested_slices_send_and_receive_their_ranges() {
    let session = session_start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, mut peer) = connected(&client);
    let mut buf = Buf::with_capacity(64).unwrap();
    buf.extend_from_slice(b"head").unwrap();
    let outer = buf.slice(2..40).unwrap();
    assert_eq!(outer.bytes_init(), 2);
    let inner = outer.slice(2..10).unwrap();
    assert_eq!(inner.bytes_init(), 0);
    assert_eq!(inner.bytes_total(), 8);
    peer.write_all(b"0123456789abcdef").unwrap();
    let (received, inner) = socket.receive_exact(inner, 8).wait();
    assert_eq!(received.unwrap(), 8);
    let buf = inner.into_inner().into_inner();
    assert_eq!(&buf[..], b"head01234567");
    // Send a nested range: bytes 3..9 of the data.
    let inner = buf.slice(1..12).unwrap().slice(2..8).unwrap();
    let (sent, inner) = socket.send(inner).wait();
    assert_eq!(sent.unwrap(), 6);
    let mut got = [0u8; 6];
    peer.set_read_timeout(Some(DEADLINE)).unwrap();
    peer.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"d01234");
    // Out-of-range and inverted ranges are errors with the buffer back, never panics.
    let buf = inner.into_inner().into_inner();
    #[allow(clippy::reversed_empty_ranges)]
    let (error, buf) = buf.slice(10..5).unwrap_err();
    assert_eq!(error, Error::INVALID_BUFFER_SIZE);
    let (error, buf) = buf.slice(..=usize::MAX).unwrap_err();
    assert_eq!(error, Error::INVALID_BUFFER_SIZE);
    let (error, buf) = buf
        .slice((
            std::ops::Bound::Excluded(usize::MAX),
            std::ops::Bound::Unbounded,
        ))
        .unwrap_err();
    assert_eq!(error, Error::INVALID_BUFFER_SIZE);
    // receive_exact of absurd counts.
    let (received, buf) = socket.receive_exact(buf, usize::MAX).wait();
    assert_eq!(received.unwrap_err(), Error::INVALID_BUFFER_SIZE);
    let (received, buf) = socket.receive_exact(buf, 0).wait();
    assert_eq!(received.unwrap_err(), Error::INVALID_BUFFER_SIZE);
    // A receive into a slice whose range has no spare room.
    let full = buf.slice(0..4).unwrap();
    let (received, full) = socket.receive(full).wait();
    assert_eq!(received.unwrap_err(), Error::INVALID_BUFFER_SIZE);
    drop(full);
    // send_all of an empty buffer.
    let (sent, _) = socket.send_all(Buf::with_capacity(8).unwrap()).wait();
    assert!(sent.is_err());
    drop((socket, client, peer));
    session.finish();
}

// ---- caller IRPs carried across sockets and closes -------------------------------------------

#[test]
fn a_callers_irp_cancelled_by_a_close_serves_another_socket() {
    let session = session_start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (first, _peer1) = connected(&client);
    let (second, mut peer2) = connected(&client);
    let op = start(
        first
            .receive(Buf::with_capacity(16).unwrap())
            .with_irp(Irp::new().unwrap()),
    );
    let close = first.close();
    let ((received, buf), irp) = within("the cancelled receive", move || op.wait());
    assert!(received.is_err());
    assert_eq!(buf.capacity(), 16);
    close.wait().unwrap();
    let irp = irp.expect("handed back");
    eprintln!("after the close: cancelled {}", irp.is_cancelled());
    // Given to another socket (IoReuseIrp clears the cancel flag).
    peer2.write_all(b"next").unwrap();
    let ((received, buf), irp) = second.receive(buf).with_irp(irp).wait();
    assert_eq!(received.unwrap(), 4);
    assert_eq!(&buf[..], b"next");
    drop(buf);
    let irp = irp.unwrap();
    // An allocated IRP cannot be completed; it comes back.
    let irp = irp.complete(0, 0).unwrap_err();
    // Given to a client-level request, then the client dropped with it in flight.
    let change = start(client.transport_list_change().with_irp(irp));
    within("the client's drop", move || drop(client));
    let (changed, irp) = within("the transport list change", move || change.wait());
    assert!(changed.is_err());
    assert!(irp.is_some());
    drop(irp);
    drop(second);
    session.finish();
}

// ---- name resolution collected after the client went ---------------------------------------

#[test]
fn a_resolution_collected_after_the_clients_drop() {
    let session = session_start();
    let client = WskClient::register(driver(&session)).unwrap();
    let mut ops = Vec::new();
    for _ in 0..4 {
        let mut op = client.resolve("localhost", 80);
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(&mut op).poll(&mut cx) {
            Poll::Pending => ops.push(op),
            Poll::Ready(result) => eprintln!("resolved at once: {result:?}"),
        }
    }
    within("the client's drop", move || drop(client));
    for op in ops {
        let result = within("the resolution", move || op.wait());
        eprintln!("collected after the client: {result:?}");
    }
    session.finish();
}

#[test]
fn resolutions_collected_in_a_task_then_more_then_the_client_dropped() {
    let session = session_start();
    let client = Arc::new(WskClient::register(driver(&session)).unwrap());
    let tasks = TaskSet::new(driver(&session)).unwrap();
    let (tx, rx) = channel();
    for _ in 0..3 {
        let client = Arc::clone(&client);
        let tx = tx.clone();
        tasks
            .spawn(async move {
                let first = client.resolve("localhost", 1).await;
                // Woken at DISPATCH_LEVEL (usually): a second resolution is refused there
                // (PASSIVE_LEVEL only), never a crash.
                let second = client.resolve("localhost", 2).await;
                let _ = tx.send((first.is_ok(), second.err()));
            })
            .unwrap();
    }
    for _ in 0..3 {
        let (first, second) = rx.recv_timeout(DEADLINE).unwrap();
        eprintln!("in a task: first ok {first}, second {second:?}");
    }
    // At PASSIVE_LEVEL: frees a list left by a collection at DISPATCH_LEVEL.
    let addresses = client.resolve("localhost", 3).wait().unwrap();
    assert!(!addresses.is_empty());
    drop(tasks);
    let client = Arc::try_unwrap(client).ok().unwrap();
    within("the client's drop", move || drop(client));
    session.finish();
}

// ---- a socket closed from inside its own callbacks ----------------------------------------

/// Disconnects (gracefully, then abortively) its own socket from inside its receive
/// callback, and issues a receive there it keeps.
struct SelfCloser {
    kept: Mutex<Vec<wsk::ops::Receive<Buf>>>,
    seen: AtomicUsize,
}

impl ConnectionEvents for SelfCloser {
    fn on_receive<'a>(&self, data: ReceivedData<'a>) -> ReceiveDecision<'a> {
        let n = self.seen.fetch_add(1, Ordering::SeqCst);
        let socket = data.socket();
        if n == 0 {
            drop(start_or_done(socket.disconnect()));
            if let Some(op) = start_or_done(socket.receive(Buf::with_capacity(8).unwrap())) {
                self.kept.lock().unwrap().push(op);
            }
        } else {
            drop(start_or_done(socket.abort()));
        }
        data.consume()
    }

    fn on_disconnect(&self, _abortive: bool) {}
}

#[test]
fn a_socket_disconnected_and_aborted_from_inside_its_own_callback() {
    let session = session_start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, mut peer) = connected_with_events(
        &client,
        SelfCloser {
            kept: Mutex::new(Vec::new()),
            seen: AtomicUsize::new(0),
        },
    );
    peer.write_all(b"one").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let _ = peer.write_all(b"two");
    std::thread::sleep(Duration::from_millis(50));
    let _ = peer.write_all(b"three");
    std::thread::sleep(Duration::from_millis(50));
    drop(socket);
    within("the client's drop", move || drop(client));
    drop(peer);
    session.finish();
}

// ---- spawned from an event callback, a task outliving the handler and the client -------------

struct SpawnOnReceive {
    tasks: Arc<TaskSet>,
    other: Arc<ConnectionSocket>,
    spawned: Arc<AtomicUsize>,
}

impl ConnectionEvents for SpawnOnReceive {
    fn on_receive<'a>(&self, data: ReceivedData<'a>) -> ReceiveDecision<'a> {
        let (retained, decision) = data.retain();
        if let Ok(retained) = retained {
            let other = Arc::clone(&self.other);
            let spawned = Arc::clone(&self.spawned);
            let result = self.tasks.spawn(async move {
                // Forward the retained bytes to the other socket, then wait on it for good.
                let mut buf = Buf::with_capacity(retained.len().max(1)).unwrap();
                if let Ok(view) = retained.view() {
                    let mut tmp = vec![0u8; retained.len()];
                    let n = view.copy_to(&mut tmp).unwrap();
                    drop(view);
                    buf.extend_from_slice(&tmp[..n]).unwrap();
                }
                let _ = other.send(buf).await;
                let _ = other.receive(Buf::with_capacity(8).unwrap()).await;
                drop(retained);
                spawned.fetch_add(1, Ordering::SeqCst);
            });
            assert!(result.is_ok());
        }
        decision
    }
}

#[test]
fn tasks_spawned_in_callbacks_holding_retained_data_and_the_set_owned_by_the_handler() {
    let session = session_start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (other, mut other_peer) = connected(&client);
    let other = Arc::new(other);
    let spawned = Arc::new(AtomicUsize::new(0));
    let tasks = Arc::new(TaskSet::new(driver(&session)).unwrap());
    let (socket, mut peer) = connected_with_events(
        &client,
        SpawnOnReceive {
            tasks: Arc::clone(&tasks),
            other: Arc::clone(&other),
            spawned: Arc::clone(&spawned),
        },
    );
    // The handler now holds the last TaskSet reference and one to the other socket.
    drop(tasks);
    drop(other);
    for _ in 0..5 {
        peer.write_all(b"forward me").unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut got = [0u8; 50];
    other_peer.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut total = 0;
    while total < 50 {
        total += other_peer.read(&mut got[total..]).unwrap();
    }
    assert_eq!(&got[..10], b"forward me");
    // The client goes first: it closes both sockets; the handler (with the set, whose tasks
    // hold retained data of the closing socket and wait on the other) is dropped in the
    // close's completion routine.
    within("the client's drop", move || drop(client));
    drop(socket);
    drop((peer, other_peer));
    session.finish();
    eprintln!("tasks that finished: {}", spawned.load(Ordering::SeqCst));
}

// ---- timers handles outliving the client ----------------------------------------------------

#[test]
fn sleeps_from_a_timers_handle_after_the_client_went() {
    let session = session_start();
    let client = WskClient::register(driver(&session)).unwrap();
    let timers = client.timers();
    // One in flight across the teardown, one started after it, one in a task after it.
    let long = start(timers.sleep(Duration::from_secs(3600)));
    within("the client's drop", move || drop(client));
    assert!(within("the long sleep", move || long.wait()).is_err());
    let after = timers.sleep(Duration::from_millis(1)).wait();
    eprintln!("a sleep after the teardown: {after:?}");
    assert!(after.is_err());
    let tasks = TaskSet::new(driver(&session)).unwrap();
    let (tx, rx) = channel();
    let handle = timers.clone();
    tasks
        .spawn(async move {
            let _ = tx.send(handle.sleep(Duration::ZERO).await);
        })
        .unwrap();
    assert!(rx.recv_timeout(DEADLINE).unwrap().is_err());
    drop(tasks);
    drop(timers);
    session.finish();
}

// ---- a stream socket committed to a connection after it listened -------------------------

#[test]
fn a_listening_stream_socket_used_as_a_connection_fails_cleanly() {
    let session = session_start();
    let client = WskClient::register(driver(&session)).unwrap();
    let stream = match wsk::StreamSocket::create(&client, wsk::AddressFamily::V4).wait() {
        Ok(stream) => stream,
        Err(error) => {
            eprintln!("no stream sockets: {error:?}");
            drop(client);
            session.finish();
            return;
        }
    };
    stream.bind("127.0.0.1:0".parse().unwrap()).wait().unwrap();
    stream.listen().wait().unwrap();
    let address = stream.local_addr().wait().unwrap();
    // An accept in flight when it is turned into a "connection".
    let accept = start(stream.accept());
    let connection = stream.into_connection();
    let received = Arc::new(AtomicUsize::new(0));
    struct Count(Arc<AtomicUsize>);
    impl ConnectionEvents for Count {
        fn on_receive<'a>(&self, data: ReceivedData<'a>) -> ReceiveDecision<'a> {
            self.0.fetch_add(data.len(), Ordering::SeqCst);
            data.consume()
        }
    }
    let events = connection.set_events(Count(Arc::clone(&received)));
    eprintln!("events on a listening stream socket: {events:?}");
    let (sent, _) = connection.send(Buf::from_slice(b"x").unwrap()).wait();
    eprintln!("send on a listening stream socket: {sent:?}");
    let (got, _) = connection
        .receive(Buf::with_capacity(8).unwrap())
        .timeout(Duration::from_millis(50))
        .wait();
    eprintln!("receive on a listening stream socket: {got:?}");
    eprintln!("disconnect: {:?}", connection.disconnect().wait());
    eprintln!("peer address: {:?}", connection.peer_addr().wait());
    // A peer arrives: the accept in flight takes it, or the listener's events.
    let mut peer = TcpStream::connect(address).unwrap();
    let _ = peer.write_all(b"hello");
    let accepted = within("the accept", move || accept.wait());
    eprintln!("accept: {:?}", accepted.as_ref().map(|_| ()));
    drop(accepted);
    drop(connection);
    within("the client's drop", move || drop(client));
    drop(peer);
    session.finish();
}

// ---- consume_part(0) and other edge decisions ---------------------------------------------

struct Partial {
    keep: usize,
    seen: Mutex<Sender<usize>>,
}

impl ConnectionEvents for Partial {
    fn on_receive<'a>(&self, data: ReceivedData<'a>) -> ReceiveDecision<'a> {
        let _ = self.seen.lock().unwrap().send(data.len());
        // More than indicated is clamped.
        if self.keep == usize::MAX {
            data.consume_part(usize::MAX)
        } else {
            data.consume_part(self.keep)
        }
    }
}

#[test]
fn consume_part_of_nothing_or_of_more_than_indicated() {
    for keep in [0usize, usize::MAX] {
        let session = session_start();
        let client = WskClient::register(driver(&session)).unwrap();
        let (tx, rx) = channel();
        let (socket, mut peer) = connected_with_events(
            &client,
            Partial {
                keep,
                seen: Mutex::new(tx),
            },
        );
        peer.write_all(b"hello").unwrap();
        assert_eq!(rx.recv_timeout(DEADLINE).unwrap(), 5);
        if keep == 0 {
            // Nothing taken: the next receive gets it all.
            let (received, buf) = socket
                .receive(Buf::with_capacity(16).unwrap())
                .timeout(DEADLINE)
                .wait();
            assert_eq!(received.unwrap(), 5);
            assert_eq!(&buf[..], b"hello");
        } else {
            // All taken: a receive gets only what comes next.
            peer.write_all(b"more").unwrap();
            let mut total = Vec::new();
            let end = Instant::now() + Duration::from_millis(300);
            while Instant::now() < end {
                if let Ok(n) = rx.recv_timeout(Duration::from_millis(20)) {
                    total.push(n);
                }
            }
            eprintln!("indications after consume_part(MAX): {total:?}");
        }
        drop((socket, peer));
        within("the client's drop", move || drop(client));
        session.finish();
    }
}

// ---- many buffers in one list ----------------------------------------------------------------

#[test]
fn a_list_of_thousands_of_buffers_is_sent_whole_or_refused() {
    let session = session_start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, mut peer) = connected(&client);
    let mut list = BufList::new();
    for i in 0..2000u32 {
        list.push(Buf::from_slice(&[(i % 251) as u8; 3]).unwrap())
            .unwrap();
    }
    let reader = std::thread::spawn(move || {
        let mut got = vec![0u8; 6000];
        peer.set_read_timeout(Some(DEADLINE)).unwrap();
        peer.read_exact(&mut got).unwrap();
        got
    });
    let (sent, list) = socket.send_vectored(list).wait();
    assert_eq!(sent.unwrap(), 6000);
    let got = reader.join().unwrap();
    for (i, chunk) in got.chunks(3).enumerate() {
        assert_eq!(chunk, &[(i % 251) as u8; 3]);
    }
    let udp = client
        .bind_datagram("127.0.0.1:0".parse().unwrap())
        .wait()
        .unwrap();
    let target = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (sent, list) = udp.send_messages(list, target.local_addr().unwrap()).wait();
    eprintln!("2000 datagrams in one call: {sent:?}");
    drop(list);
    drop((socket, udp));
    within("the client's drop", move || drop(client));
    session.finish();
}

// ---- spin-lock guards dropped out of order when the per-thread table is full -----------------

/// `SpinLock::lock` promises that "dropping an outer guard before an inner one never lowers
/// the IRQL while a lock is still held". The promise rests on a per-thread record, from a
/// table of 64: with 64 other threads holding spin locks (64 processors, each in a DPC or
/// holding a lock — a machine with more than 64 logical processors), a 65th thread's guards
/// have no record, and the outer guard's drop lowers the IRQL to PASSIVE_LEVEL while the
/// inner lock is still held; the inner guard's drop then "releases to DISPATCH_LEVEL" from
/// PASSIVE_LEVEL.
#[test]
fn guards_dropped_out_of_order_while_64_other_threads_hold_spin_locks() {
    let session = session_start();
    const HOLDERS: usize = 64;
    let locks: Arc<Vec<wsk::SpinLock<u32>>> =
        Arc::new((0..HOLDERS).map(|_| wsk::SpinLock::new(0)).collect());
    let holding = Arc::new(std::sync::Barrier::new(HOLDERS + 1));
    let release = Arc::new(AtomicBool::new(false));
    let holders: Vec<_> = (0..HOLDERS)
        .map(|i| {
            let locks = Arc::clone(&locks);
            let holding = Arc::clone(&holding);
            let release = Arc::clone(&release);
            std::thread::spawn(move || {
                let guard = locks[i].lock();
                holding.wait();
                while !release.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                drop(guard);
            })
        })
        .collect();
    holding.wait();
    let outer = wsk::SpinLock::new(0u32);
    let inner = wsk::SpinLock::new(0u32);
    let before = Irql::current();
    let outer_guard = outer.lock();
    let inner_guard = inner.lock();
    drop(outer_guard);
    let while_inner_held = Irql::current();
    // A blocking wait would now be allowed while a spin lock is held.
    let wait_allowed = wsk::task::block_on(async {}).is_ok();
    drop(inner_guard);
    let after = Irql::current();
    if after != before {
        // Every lock is released, yet the thread was left at DISPATCH_LEVEL: put it back
        // so that the rest of the test runs as it would have.
        // SAFETY: the test thread raised nothing else; back to where it was.
        unsafe { wsk_sys::KeLowerIrql(before.0) };
    }
    release.store(true, Ordering::SeqCst);
    for holder in holders {
        holder.join().unwrap();
    }
    let findings = conclude(session);
    eprintln!(
        "before {before:?}, with the inner lock still held {while_inner_held:?} \
         (wait allowed: {wait_allowed}), after {after:?}"
    );
    assert!(findings.is_empty(), "{findings:?}");
    assert_eq!(
        while_inner_held,
        Irql::DISPATCH,
        "the IRQL was lowered while a spin lock is still held"
    );
    assert!(
        !wait_allowed,
        "a blocking wait was allowed while holding a spin lock"
    );
    assert_eq!(
        after, before,
        "every lock released, the IRQL was left raised"
    );
}

// ---- data retained on a stream socket's connection, released through the stream table ------

#[test]
fn data_retained_on_a_stream_connection_outlives_its_close_and_client() {
    let session = session_start();
    let client = WskClient::register(driver(&session)).unwrap();
    let stream = match wsk::StreamSocket::create(&client, wsk::AddressFamily::V4).wait() {
        Ok(stream) => stream,
        Err(error) => {
            eprintln!("no stream sockets: {error:?}");
            drop(client);
            session.finish();
            return;
        }
    };
    stream.bind("127.0.0.1:0".parse().unwrap()).wait().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let connection = stream.into_connection();
    connection
        .connect(listener.local_addr().unwrap())
        .wait()
        .unwrap();
    let (mut peer, _) = listener.accept().unwrap();
    let (tx, rx) = channel();
    connection
        .set_events(RetainConnection {
            out: Mutex::new(tx),
        })
        .unwrap();
    let mut kept = Vec::new();
    for i in 0..4u8 {
        peer.write_all(&[i; 10]).unwrap();
        kept.push(rx.recv_timeout(DEADLINE).unwrap());
    }
    // Some given back while open, a view open across the handle's drop on another thread.
    drop(kept.remove(0));
    let last = kept.pop().unwrap();
    let viewer = std::thread::spawn(move || {
        let view = last.view().unwrap();
        let mut out = [0u8; 10];
        let n = view.copy_to(&mut out).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(&out[..n], &[3u8; 10][..n]);
        drop(view);
        last
    });
    std::thread::sleep(Duration::from_millis(20));
    drop(connection);
    let last = viewer.join().unwrap();
    within("the client's drop", move || drop(client));
    for retained in kept.iter().chain(std::iter::once(&last)) {
        assert_eq!(retained.view().err(), Some(Error::SOCKET_CLOSED));
    }
    drop((kept, last, peer));
    session.finish();
}
