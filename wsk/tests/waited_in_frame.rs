//! Attacks on the "waited for in one frame" path (`Op::run_to_completion`, `Issue::start_waited` /
//! `finish_waited`): an operation waited for unstarted keeps its buffer in the request while
//! the provider uses it. Each test compares it with the polled-then-waited path, or tries to
//! get the buffer back (or freed) while the provider may still write it.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wsk::irql::Irql;
use wsk::{Buf, Deadline, Error, IoBuf, IoBufMut, Irp, WskClient};
use wsk_host::{CompletionMode, FaultPlan, Session};
use wsk_sys::*;

mod common;
use common::{
    DEADLINE, bound_datagram,
    canary_buf::{Canary, Quarantine},
    connected, driver, no_violations, poll_once, within,
};

// ---- 1. waited vs polled-then-waited vs with_irp: same results -------------------------------

#[derive(Clone, Copy, Debug)]
enum How {
    Wait,
    WaitTimeout,
    PolledThenWait,
    WithIrpWait,
    TimeoutWait,
    DeadlineWait,
}

const HOWS: [How; 6] = [
    How::Wait,
    How::WaitTimeout,
    How::PolledThenWait,
    How::WithIrpWait,
    How::TimeoutWait,
    How::DeadlineWait,
];

fn run<R: wsk::Request + Send + 'static>(op: wsk::Op<R>, how: How) -> R::Output
where
    R::Output: Send + 'static,
{
    match how {
        How::Wait => op.wait(),
        How::WaitTimeout => op.wait_timeout(10_000),
        How::PolledThenWait => {
            let mut op = op;
            match poll_once(&mut op) {
                Some(output) => output,
                None => op.wait_timeout(10_000),
            }
        }
        How::WithIrpWait => {
            let (output, irp) = op.with_irp(Irp::new().unwrap()).wait_timeout(10_000);
            assert!(irp.is_some());
            output
        }
        How::TimeoutWait => op.timeout(DEADLINE).wait(),
        How::DeadlineWait => op.deadline(Deadline::after(DEADLINE)).wait(),
    }
}

#[test]
fn every_way_of_waiting_gives_the_same_receive_send_and_datagram_results() {
    for mode in [
        CompletionMode::AlwaysInline,
        CompletionMode::AlwaysPending,
        CompletionMode::Mixed,
    ] {
        let session = Session::start();
        session.set_faults(FaultPlan::new(11).completion(mode));
        let client = WskClient::register(driver(&session)).unwrap();
        let quarantine = Arc::new(Quarantine::default());
        let (socket, mut peer) = connected(&client);
        let (dsocket, dlocal, dpeer) = bound_datagram(&client, "127.0.0.1:0");
        for how in HOWS {
            // Receive into a canary with a prefix: bytes appended after it, the rest untouched.
            peer.write_all(b"hello").unwrap();
            std::thread::sleep(Duration::from_millis(5));
            let (received, buf) = run(socket.receive(Canary::new(&quarantine, b"xy", 64)), how);
            let n = received.unwrap();
            assert!((1..=5).contains(&n), "{how:?} {mode:?}: {n}");
            assert_eq!(buf.bytes_init(), 2 + n, "{how:?}");
            assert_eq!(&buf.data()[..2 + n], &b"xyhello"[..2 + n], "{how:?}");
            assert!(
                buf.spare_untouched(),
                "{how:?}: spare written beyond the count"
            );
            let mut rest = buf;
            let mut got = n;
            while got < 5 {
                let (r, b) = run(socket.receive(rest), how);
                got += r.unwrap();
                rest = b;
            }
            assert_eq!(rest.data(), b"xyhello", "{how:?}");
            drop(rest);
            // receive_exact, the bytes trickling in.
            let writer = {
                let mut peer = peer.try_clone().unwrap();
                std::thread::spawn(move || {
                    for chunk in [&b"ab"[..], b"cde", b"f"] {
                        std::thread::sleep(Duration::from_millis(3));
                        peer.write_all(chunk).unwrap();
                    }
                })
            };
            let (received, buf) = run(
                socket.receive_exact(Canary::new(&quarantine, b"", 16), 6),
                how,
            );
            writer.join().unwrap();
            assert_eq!(received, Ok(6), "{how:?}");
            assert_eq!(buf.data(), b"abcdef");
            assert!(buf.spare_untouched());
            drop(buf);
            // Send and send_all from an offset of a slice.
            let (sent, buf) = run(socket.send(Buf::from_slice(b"0123456789").unwrap()), how);
            assert_eq!(sent, Ok(10), "{how:?}");
            assert_eq!(&buf[..], b"0123456789");
            let mut got = [0u8; 10];
            peer.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"0123456789");
            // send_to then receive_from.
            let (sent, _) = run(
                dsocket.send_to(
                    Buf::from_slice(b"dgram").unwrap(),
                    dpeer.local_addr().unwrap(),
                ),
                how,
            );
            assert_eq!(sent, Ok(5));
            let mut got = [0u8; 16];
            let (count, from) = dpeer.recv_from(&mut got).unwrap();
            assert_eq!((&got[..count], from), (&b"dgram"[..], dlocal), "{how:?}");
            dpeer.send_to(b"reply!", dlocal).unwrap();
            let (received, buf) = run(
                dsocket.receive_from(Canary::new(&quarantine, b"pp", 32)),
                how,
            );
            assert_eq!(received, Ok((6, dpeer.local_addr().unwrap())), "{how:?}");
            assert_eq!(buf.data(), b"ppreply!");
            assert!(buf.spare_untouched());
            drop(buf);
            // A datagram cut to a small buffer: the count is the buffer's.
            dpeer.send_to(&[9u8; 50], dlocal).unwrap();
            let (received, buf) = run(dsocket.receive_from(Canary::new(&quarantine, b"", 8)), how);
            let (count, _) = received.unwrap_or((usize::MAX, dlocal));
            assert_eq!(buf.bytes_init(), count.min(8), "{how:?}: {received:?}");
            drop(buf);
        }
        drop((socket, dsocket, client));
        quarantine.check_and_free();
        no_violations(session);
    }
}

// ---- 2. timeouts: the buffer back, untouched, and later data never written into it ------------

#[test]
fn a_timed_out_waited_receive_hands_back_a_buffer_the_provider_no_longer_writes() {
    for mode in [CompletionMode::AlwaysPending, CompletionMode::Mixed] {
        let session = Session::start();
        session.set_faults(FaultPlan::new(12).completion(mode));
        let client = WskClient::register(driver(&session)).unwrap();
        let quarantine = Arc::new(Quarantine::default());
        let (socket, mut peer) = connected(&client);
        let (dsocket, dlocal, dpeer) = bound_datagram(&client, "127.0.0.1:0");
        let mut kept = Vec::new();
        for (i, how) in [0u8, 1, 2, 3, 4].into_iter().enumerate() {
            let buf = Canary::new(&quarantine, b"q", 64);
            let op = socket.receive(buf);
            let started = Instant::now();
            let (received, buf) = match how {
                0 => op.wait_timeout(30),
                1 => op.timeout(Duration::from_millis(30)).wait(),
                2 => op
                    .deadline(Deadline::after(Duration::from_millis(30)))
                    .wait(),
                3 => op.with_irp(Irp::new().unwrap()).wait_timeout(30).0,
                _ => {
                    op.timeout(Duration::from_millis(30))
                        .with_irp(Irp::new().unwrap())
                        .wait()
                        .0
                }
            };
            assert!(started.elapsed() < DEADLINE);
            assert_eq!(received, Err(Error::TIMED_OUT), "{how}");
            assert_eq!(buf.data(), b"q");
            assert!(buf.spare_untouched());
            // Keep half, drop half: then the peer sends.
            if i % 2 == 0 {
                kept.push(buf);
            } else {
                drop(buf);
            }
            let (received, buf) = socket
                .receive(Canary::new(&quarantine, b"", 64))
                .wait_timeout(30);
            assert_eq!(received, Err(Error::TIMED_OUT));
            drop(buf);
        }
        peer.write_all(b"late data").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        for buf in &kept {
            assert!(
                buf.spare_untouched(),
                "a timed-out buffer was written after it came back"
            );
        }
        let (received, buf) = socket
            .receive(Canary::new(&quarantine, b"", 64))
            .wait_timeout(5_000);
        assert_eq!(received, Ok(9));
        assert_eq!(buf.data(), b"late data");
        drop(buf);
        // Datagrams too.
        for how in 0..3 {
            let op = dsocket.receive_from(Canary::new(&quarantine, b"", 64));
            let (received, buf) = match how {
                0 => op.wait_timeout(20),
                1 => op.timeout(Duration::from_millis(20)).wait(),
                _ => op.with_irp(Irp::new().unwrap()).wait_timeout(20).0,
            };
            assert_eq!(received, Err(Error::TIMED_OUT));
            assert!(buf.spare_untouched() && buf.bytes_init() == 0);
            kept.push(buf);
        }
        dpeer.send_to(b"late dgram", dlocal).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        for buf in &kept {
            assert!(
                buf.spare_untouched(),
                "a timed-out buffer was written after it came back"
            );
        }
        let (received, buf) = dsocket
            .receive_from(Canary::new(&quarantine, b"", 64))
            .wait_timeout(5_000);
        assert_eq!(received, Ok((10, dpeer.local_addr().unwrap())));
        assert_eq!(buf.data(), b"late dgram");
        drop((buf, kept));
        drop((socket, dsocket, client));
        assert!(quarantine.check_and_free() > 10);
        no_violations(session);
    }
}

// ---- 3. racing short timeouts against arriving data: no byte lost, duplicated or misplaced ----

#[test]
fn racing_waited_timeouts_against_arriving_bytes_loses_nothing() {
    for (seed, mode) in [
        (21, CompletionMode::Mixed),
        (22, CompletionMode::AlwaysPending),
        (23, CompletionMode::AlwaysInline),
    ] {
        let session = Session::start();
        session.set_faults(FaultPlan::new(seed).completion(mode));
        let client = WskClient::register(driver(&session)).unwrap();
        let quarantine = Arc::new(Quarantine::default());
        let (socket, peer) = connected(&client);
        const TOTAL: usize = 20_000;
        let expected: Vec<u8> = (0..TOTAL).map(|i| (i % 251) as u8).collect();
        let writer = {
            let mut peer = peer.try_clone().unwrap();
            let expected = expected.clone();
            std::thread::spawn(move || {
                for (k, chunk) in expected.chunks(37).enumerate() {
                    peer.write_all(chunk).unwrap();
                    if k % 7 == 0 {
                        std::thread::sleep(Duration::from_micros(300));
                    }
                }
            })
        };
        let mut got = Vec::with_capacity(TOTAL);
        let mut round = 0u32;
        let end = Instant::now() + Duration::from_secs(30);
        let mut timeouts = 0;
        while got.len() < TOTAL {
            assert!(Instant::now() < end, "stuck at {} bytes", got.len());
            round += 1;
            let buf = Canary::new(&quarantine, b"", 1 + (round as usize * 13) % 97);
            let op = socket.receive(buf);
            let (received, buf) = match round % 4 {
                0 => op.wait_timeout(round % 2),
                1 => op
                    .timeout(Duration::from_micros(u64::from(round % 700)))
                    .wait(),
                2 => op.with_irp(Irp::new().unwrap()).wait_timeout(round % 3).0,
                _ => op
                    .deadline(Deadline::after(Duration::from_micros(200)))
                    .wait(),
            };
            match received {
                Ok(n) => {
                    assert!(n > 0, "the peer does not close");
                    assert_eq!(buf.bytes_init(), n);
                    assert!(buf.spare_untouched(), "written beyond the count");
                    got.extend_from_slice(buf.data());
                }
                Err(e) => {
                    assert_eq!(e, Error::TIMED_OUT);
                    assert_eq!(buf.bytes_init(), 0);
                    assert!(
                        buf.spare_untouched(),
                        "a timed-out receive wrote its buffer"
                    );
                    timeouts += 1;
                }
            }
            drop(buf);
            if round % 64 == 0 {
                quarantine.check_and_free();
            }
        }
        writer.join().unwrap();
        assert!(got == expected, "bytes lost, duplicated or misplaced");
        eprintln!("{mode:?}: {round} rounds, {timeouts} timeouts");
        drop((socket, peer, client));
        quarantine.check_and_free();
        no_violations(session);
    }
}

#[test]
fn racing_waited_timeouts_against_arriving_datagrams_loses_nothing() {
    let session = Session::start();
    session.set_faults(FaultPlan::new(31));
    let client = WskClient::register(driver(&session)).unwrap();
    let quarantine = Arc::new(Quarantine::default());
    let (socket, local, peer) = bound_datagram(&client, "127.0.0.1:0");
    let peer_addr = peer.local_addr().unwrap();
    const COUNT: u32 = 400;
    let writer = std::thread::spawn(move || {
        for i in 0..COUNT {
            let len = 1 + (i as usize % 40);
            let mut d = vec![(i % 256) as u8; len];
            d[0] = (i >> 8) as u8;
            peer.send_to(&d, local).unwrap();
            std::thread::sleep(Duration::from_micros(200 + u64::from(i % 5) * 100));
        }
        peer
    });
    let mut next = 0u32;
    let mut round = 0u32;
    let end = Instant::now() + Duration::from_secs(30);
    while next < COUNT {
        assert!(Instant::now() < end, "stuck at datagram {next}");
        round += 1;
        let op = socket.receive_from(Canary::new(&quarantine, b"", 64));
        let (received, buf) = match round % 3 {
            0 => op.wait_timeout(round % 2),
            1 => op
                .timeout(Duration::from_micros(u64::from(round % 500)))
                .wait(),
            _ => op.with_irp(Irp::new().unwrap()).wait_timeout(1).0,
        };
        match received {
            Ok((n, from)) => {
                assert_eq!(from, peer_addr);
                let len = 1 + (next as usize % 40);
                assert_eq!(n, len, "datagram {next}");
                assert_eq!(buf.bytes_init(), n);
                let data = buf.data();
                assert_eq!(data[0], (next >> 8) as u8);
                assert!(data[1..].iter().all(|&b| b == (next % 256) as u8));
                assert!(buf.spare_untouched());
                next += 1;
            }
            Err(e) => {
                assert_eq!(e, Error::TIMED_OUT);
                assert!(buf.bytes_init() == 0 && buf.spare_untouched());
            }
        }
    }
    let _peer = writer.join().unwrap();
    drop((socket, client));
    quarantine.check_and_free();
    no_violations(session);
}

// ---- 4. the socket closed, dropped, or the client dropped while a thread waits --------------

#[test]
fn closing_or_dropping_the_socket_or_client_under_a_blocked_waiter() {
    for what in 0..4 {
        for mode in [CompletionMode::Mixed, CompletionMode::AlwaysPending] {
            let session = Session::start();
            session.set_faults(
                FaultPlan::new(40 + what)
                    .completion(mode)
                    .delay_completions(Duration::from_millis(30)),
            );
            let client = WskClient::register(driver(&session)).unwrap();
            let quarantine = Arc::new(Quarantine::default());
            let (socket, _peer) = connected(&client);
            let (dsocket, _dlocal, _dpeer) = bound_datagram(&client, "127.0.0.1:0");
            let receive = socket.receive(Canary::new(&quarantine, b"r", 64));
            let receive_from = dsocket.receive_from(Canary::new(&quarantine, b"", 64));
            let started = Arc::new(AtomicUsize::new(0));
            let waiter = {
                let started = Arc::clone(&started);
                std::thread::spawn(move || {
                    started.fetch_add(1, Ordering::SeqCst);
                    // No timeout: only the close ends it.
                    receive.wait()
                })
            };
            let dwaiter = {
                let started = Arc::clone(&started);
                std::thread::spawn(move || {
                    started.fetch_add(1, Ordering::SeqCst);
                    receive_from.wait()
                })
            };
            while started.load(Ordering::SeqCst) < 2 {
                std::thread::yield_now();
            }
            std::thread::sleep(Duration::from_millis(40));
            let client = match what {
                0 => {
                    let c = socket.close();
                    let d = dsocket.close();
                    let _ = within("close", move || (c.wait(), d.wait()));
                    Some(client)
                }
                1 => {
                    drop((socket, dsocket));
                    Some(client)
                }
                2 => {
                    within("client drop", move || drop((client, socket, dsocket)));
                    None
                }
                _ => {
                    // From another thread, while the waiters block.
                    within("drops elsewhere", move || drop((socket, dsocket)));
                    Some(client)
                }
            };
            let (received, buf) = within("the waiter", move || waiter.join().unwrap());
            assert!(received.is_err(), "{what}: {received:?}");
            assert_eq!(buf.data(), b"r");
            assert!(buf.spare_untouched());
            assert_eq!(buf.bytes_total(), 64, "the buffer itself, not a stand-in");
            drop(buf);
            let (received, buf) = within("the datagram waiter", move || dwaiter.join().unwrap());
            assert!(received.is_err(), "{what}: {received:?}");
            assert_eq!(buf.bytes_total(), 64);
            drop(buf);
            drop(client);
            quarantine.check_and_free();
            no_violations(session);
        }
    }
}

// ---- 5. refused waits hand back the buffer itself ---------------------------------------------

#[test]
fn a_wait_refused_at_raised_irql_hands_back_the_buffer_itself_and_issues_nothing() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let quarantine = Arc::new(Quarantine::default());
    let (socket, mut peer) = connected(&client);
    let lock = wsk::SpinLock::new(());
    let before = session.report();
    let outputs = {
        let _guard = lock.lock();
        assert!(Irql::current() >= Irql::DISPATCH);
        let a = socket.receive(Canary::new(&quarantine, b"a", 8)).wait();
        let b = socket
            .receive(Canary::new(&quarantine, b"b", 8))
            .wait_timeout(5);
        let c = socket
            .receive(Canary::new(&quarantine, b"c", 8))
            .with_irp(Irp::new().unwrap())
            .wait();
        let d = socket.send(Buf::from_slice(b"no").unwrap()).wait();
        (a, b, c, d)
    };
    let (a, b, (c, irp), d) = outputs;
    assert_eq!(a.0, Err(Error::IRQL_TOO_HIGH));
    assert_eq!(a.1.data(), b"a");
    assert_eq!(b.0, Err(Error::IRQL_TOO_HIGH));
    assert_eq!(b.1.data(), b"b");
    assert_eq!(c.0, Err(Error::IRQL_TOO_HIGH));
    assert_eq!(c.1.data(), b"c");
    assert!(irp.is_some());
    assert_eq!(d.0, Err(Error::IRQL_TOO_HIGH));
    assert_eq!(&d.1[..], b"no");
    // Nothing reached the provider: the next bytes go to the next receive.
    peer.write_all(b"z").unwrap();
    let (r, buf) = socket
        .receive(Canary::new(&quarantine, b"", 8))
        .wait_timeout(5_000);
    assert_eq!(r, Ok(1));
    assert_eq!(buf.data(), b"z");
    let _ = before;
    drop((a, b, c, d, irp, buf, socket, client));
    quarantine.check_and_free();
    no_violations(session);
}

// ---- 6. panicking buffer methods: any unwinding path with the IRP in flight ------------------

/// A canary whose IoBuf methods panic on the `n`th call overall (counted per value).
struct Bomb {
    inner: Canary,
    calls: std::cell::Cell<usize>,
    at: usize,
}

// SAFETY: as the canary's.
unsafe impl Send for Bomb {}

impl Bomb {
    fn tick(&self) {
        let n = self.calls.get() + 1;
        self.calls.set(n);
        if n == self.at {
            panic!("bomb at call {n}");
        }
    }
}

// SAFETY: forwards to the canary (a panic changes none of its promises).
unsafe impl IoBuf for Bomb {
    fn mdl(&self) -> PMDL {
        self.tick();
        self.inner.mdl()
    }
    fn mdl_offset(&self) -> usize {
        self.tick();
        self.inner.mdl_offset()
    }
    fn bytes_init(&self) -> usize {
        self.tick();
        self.inner.bytes_init()
    }
    fn bytes_total(&self) -> usize {
        self.tick();
        self.inner.bytes_total()
    }
    fn stand_in() -> Bomb {
        Bomb {
            inner: Canary::stand_in(),
            calls: std::cell::Cell::new(0),
            at: 0,
        }
    }
}

// SAFETY: forwards.
unsafe impl IoBufMut for Bomb {
    unsafe fn set_init(&mut self, count: usize) {
        self.tick();
        // SAFETY: forwarded.
        unsafe { self.inner.set_init(count) }
    }
}

#[test]
fn buffer_methods_panicking_at_every_call_of_a_waited_operation_free_nothing_in_use() {
    let session = Session::start();
    session.set_faults(FaultPlan::new(51).delay_completions(Duration::from_millis(5)));
    let client = WskClient::register(driver(&session)).unwrap();
    let quarantine = Arc::new(Quarantine::default());
    let (socket, mut peer) = connected(&client);
    let (dsocket, dlocal, dpeer) = bound_datagram(&client, "127.0.0.1:0");
    let mut panics = 0;
    for at in 1..12 {
        for kind in 0..4 {
            let bomb = Bomb {
                inner: Canary::new(&quarantine, b"s", 32),
                calls: std::cell::Cell::new(0),
                at,
            };
            if kind == 0 {
                peer.write_all(b"xyz").unwrap();
            }
            if kind == 2 {
                dpeer.send_to(b"dgram", dlocal).unwrap();
            }
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match kind {
                0 => {
                    let (r, b) = socket.receive(bomb).wait_timeout(2_000);
                    (r.map(|_| ()), b.inner.bytes_init())
                }
                1 => {
                    let (r, b) = socket.send(bomb).wait_timeout(2_000);
                    (r.map(|_| ()), b.inner.bytes_init())
                }
                2 => {
                    let (r, b) = dsocket.receive_from(bomb).wait_timeout(2_000);
                    (r.map(|_| ()), b.inner.bytes_init())
                }
                _ => {
                    let (r, b) = dsocket
                        .send_to(bomb, dpeer.local_addr().unwrap())
                        .wait_timeout(2_000);
                    (r.map(|_| ()), b.inner.bytes_init())
                }
            }));
            if r.is_err() {
                panics += 1;
            }
            // Drain what the peer got / left, so the streams stay in step.
            std::thread::sleep(Duration::from_millis(10));
            if kind == 0 {
                // Whatever the bomb did not take.
                let (_, b) = socket
                    .receive(Canary::new(&quarantine, b"", 64))
                    .wait_timeout(20);
                drop(b);
            }
            if kind == 2 {
                let (_, b) = dsocket
                    .receive_from(Canary::new(&quarantine, b"", 64))
                    .wait_timeout(20);
                drop(b);
            }
        }
        quarantine.check_and_free();
    }
    eprintln!("{panics} panics");
    drop((socket, dsocket, client, peer, dpeer));
    quarantine.check_and_free();
    no_violations(session);
}

// ---- 7. send_all under partial sends, waited --------------------------------------------------

#[test]
fn send_all_waited_under_partial_sends_sends_every_byte_once() {
    let session = Session::start();
    session.set_faults(FaultPlan::new(61).partial_sends(7));
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, mut peer) = connected(&client);
    let data: Vec<u8> = (0..1000u32).map(|i| (i % 253) as u8).collect();
    let (r, buf) = socket.send_all(Buf::from_slice(&data).unwrap()).wait();
    r.unwrap();
    assert_eq!(&buf[..], &data[..]);
    let mut got = vec![0u8; 1000];
    peer.read_exact(&mut got).unwrap();
    assert!(got == data);
    // A slice from an offset: only its bytes, once.
    let slice = Buf::from_slice(&data).unwrap().slice(100..300).unwrap();
    let (r, _) = socket.send_all(slice).wait();
    r.unwrap();
    let mut got = vec![0u8; 200];
    peer.read_exact(&mut got).unwrap();
    assert!(got[..] == data[100..300]);
    drop((buf, socket, client));
    no_violations(session);
}

// ---- 8. many threads waiting on one socket at once ----------------------------------------------

#[test]
fn many_threads_waiting_on_one_socket_each_get_their_own_bytes() {
    let session = Session::start();
    session.set_faults(FaultPlan::new(71));
    let client = WskClient::register(driver(&session)).unwrap();
    let quarantine = Arc::new(Quarantine::default());
    let (socket, mut peer) = connected(&client);
    let socket = Arc::new(socket);
    let total = Arc::new(Mutex::new(Vec::<u8>::new()));
    let stop = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();
    for t in 0..4 {
        let socket = Arc::clone(&socket);
        let total = Arc::clone(&total);
        let stop = Arc::clone(&stop);
        let quarantine = Arc::clone(&quarantine);
        threads.push(std::thread::spawn(move || {
            let mut i = 0u32;
            while stop.load(Ordering::SeqCst) == 0 {
                i += 1;
                let (r, buf) = socket
                    .receive(Canary::new(&quarantine, b"", 1 + (t * 7 + i as usize) % 23))
                    .wait_timeout(i % 3);
                match r {
                    Ok(n) => {
                        assert!(buf.spare_untouched());
                        assert_eq!(buf.bytes_init(), n);
                        total.lock().unwrap().extend_from_slice(buf.data());
                    }
                    Err(e) => {
                        assert_eq!(e, Error::TIMED_OUT);
                        assert!(buf.spare_untouched() && buf.bytes_init() == 0);
                    }
                }
            }
        }));
    }
    // Every byte value once per 256: count them at the end.
    let data: Vec<u8> = (0..256 * 40).map(|i| (i % 256) as u8).collect();
    for chunk in data.chunks(61) {
        peer.write_all(chunk).unwrap();
        std::thread::sleep(Duration::from_micros(200));
    }
    let end = Instant::now() + Duration::from_secs(20);
    while total.lock().unwrap().len() < data.len() {
        assert!(
            Instant::now() < end,
            "{} of {}",
            total.lock().unwrap().len(),
            data.len()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(1, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    let mut counts = [0usize; 256];
    for &b in total.lock().unwrap().iter() {
        counts[b as usize] += 1;
    }
    assert!(
        counts.iter().all(|&c| c == 40),
        "bytes lost or duplicated: {counts:?}"
    );
    drop(socket);
    drop(client);
    quarantine.check_and_free();
    no_violations(session);
}
