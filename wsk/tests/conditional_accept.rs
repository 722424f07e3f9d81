//! Conditional accept on wsk-host: inspections accepted, rejected (the peer sees a reset),
//! pended and completed later, abandoned at close, dropped undecided, and the client dropped
//! with one out.

use std::io::{ErrorKind as IoErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wsk::{
    AcceptDecision, AddressFamily, Buf, ConnectionSocket, ErrorKind, Incoming, InspectDecision,
    InspectId, Inspection, ListenSocket, PendedInspection, SocketOptions, WskClient,
};
use wsk_host::Session;

mod common;
use common::driver;

#[derive(Clone, Copy)]
enum Policy {
    Accept,
    Reject,
    Pend,
    /// Pends, then decides before the callback returns (drops or completes the pended
    /// inspection from the callback itself).
    PendThenDrop,
    PendThenAccept,
}

#[derive(Default)]
struct Seen {
    inspected: Vec<(InspectId, SocketAddr)>,
    pended: Vec<PendedInspection>,
    accepted: Vec<ConnectionSocket>,
    aborted: Vec<InspectId>,
}

struct Inspector {
    policy: Policy,
    seen: Arc<Mutex<Seen>>,
}

impl wsk::ListenEvents for Inspector {
    fn on_accept<'a>(&self, incoming: Incoming<'a>) -> AcceptDecision<'a> {
        match incoming.accept() {
            Ok((socket, decision)) => {
                self.seen.lock().unwrap().accepted.push(socket);
                decision
            }
            Err((_, decision)) => decision,
        }
    }

    fn on_inspect_abort(&self, id: InspectId) {
        self.seen.lock().unwrap().aborted.push(id);
    }

    fn on_inspect<'a>(&self, inspection: Inspection<'a>) -> InspectDecision<'a> {
        let mut seen = self.seen.lock().unwrap();
        seen.inspected
            .push((inspection.id(), inspection.peer_addr().unwrap()));
        match self.policy {
            Policy::Accept => inspection.accept(),
            Policy::Reject => inspection.reject(),
            Policy::Pend => {
                let (pended, decision) = inspection.pend();
                seen.pended.push(pended.unwrap());
                decision
            }
            Policy::PendThenDrop => {
                let (pended, decision) = inspection.pend();
                drop(pended.unwrap());
                decision
            }
            Policy::PendThenAccept => {
                let (pended, decision) = inspection.pend();
                // Polled here, inside the callback, as a task spawned here would be.
                let mut accept = Box::pin(pended.unwrap().accept());
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                assert!(matches!(
                    std::future::Future::poll(accept.as_mut(), &mut cx),
                    std::task::Poll::Ready(Ok(()))
                ));
                decision
            }
        }
    }
}

fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn conditional_listener(
    client: &WskClient,
    policy: Policy,
) -> (ListenSocket, SocketAddr, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let listener = ListenSocket::create_with_events(
        client,
        AddressFamily::V4,
        Inspector {
            policy,
            seen: seen.clone(),
        },
    )
    .wait()
    .unwrap();
    listener.set_conditional_accept(true).wait().unwrap();
    assert!(listener.conditional_accept().wait().unwrap());
    listener
        .bind_to("127.0.0.1:0".parse().unwrap())
        .wait()
        .unwrap();
    let local = listener.local_addr().wait().unwrap();
    (listener, local, seen)
}

/// Whether the peer's connection was reset (reading it fails with a reset, or ends).
fn peer_sees_reset(peer: &mut TcpStream) -> bool {
    peer.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut byte = [0u8; 1];
    match peer.read(&mut byte) {
        Err(error) => error.kind() == IoErrorKind::ConnectionReset,
        // Data or a graceful end: not a reset.
        Ok(_count) => false,
    }
}

#[test]
fn an_accepted_inspection_is_accepted_with_its_inspect_id() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (listener, local, seen) = conditional_listener(&client, Policy::Accept);
    let mut peer = TcpStream::connect(local).unwrap();
    until("the accept", || seen.lock().unwrap().accepted.len() == 1);
    let (id, from) = seen.lock().unwrap().inspected[0];
    assert_eq!(from, peer.local_addr().unwrap());
    let socket = seen.lock().unwrap().accepted.pop().unwrap();
    assert_eq!(socket.inspect_id().wait().unwrap(), id);
    peer.write_all(b"hi").unwrap();
    let (received, buf) = socket
        .receive_exact(Buf::with_capacity(2).unwrap(), 2)
        .wait();
    received.unwrap();
    assert_eq!(&buf[..], b"hi");
    drop((buf, socket, listener));
    client.shutdown().unwrap();
    session.finish();
}

#[test]
fn a_rejected_inspection_resets_the_peer() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (listener, local, seen) = conditional_listener(&client, Policy::Reject);
    let mut peer = TcpStream::connect(local).unwrap();
    assert!(peer_sees_reset(&mut peer));
    assert_eq!(seen.lock().unwrap().inspected.len(), 1);
    assert!(seen.lock().unwrap().accepted.is_empty());
    drop(listener);
    client.shutdown().unwrap();
    session.finish();
}

#[test]
fn a_pended_inspection_is_completed_later() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (listener, local, seen) = conditional_listener(&client, Policy::Pend);
    let mut first = TcpStream::connect(local).unwrap();
    let mut second = TcpStream::connect(local).unwrap();
    until("two inspections", || seen.lock().unwrap().pended.len() == 2);
    std::thread::sleep(Duration::from_millis(20));
    assert!(
        seen.lock().unwrap().accepted.is_empty(),
        "pended: not accepted yet"
    );
    let (a, b) = {
        let mut seen = seen.lock().unwrap();
        let b = seen.pended.pop().unwrap();
        (seen.pended.pop().unwrap(), b)
    };
    let first_is_a = seen.lock().unwrap().inspected[0].0 == a.id();
    assert!(first_is_a);
    // Which inspection is which peer's: by its address (a provider delivering events on
    // several threads may inspect the second connection first).
    let first_peer = first.local_addr().unwrap();
    let peer_of = |id: InspectId| {
        let seen = seen.lock().unwrap();
        seen.inspected.iter().find(|(i, _)| *i == id).unwrap().1
    };
    let (firsts, seconds) = if peer_of(a.id()) == first_peer {
        (a, b)
    } else {
        (b, a)
    };
    assert_eq!(peer_of(firsts.id()), first_peer);
    assert_eq!(peer_of(seconds.id()), second.local_addr().unwrap());
    firsts.accept().wait().unwrap();
    seconds.reject().wait().unwrap();
    until("the accept", || seen.lock().unwrap().accepted.len() == 1);
    assert!(peer_sees_reset(&mut second));
    let socket = seen.lock().unwrap().accepted.pop().unwrap();
    first.write_all(b"ok").unwrap();
    let (received, _) = socket
        .receive_exact(Buf::with_capacity(2).unwrap(), 2)
        .wait();
    received.unwrap();
    drop((socket, listener));
    client.shutdown().unwrap();
    session.finish();
}

#[test]
fn a_pended_inspection_dropped_undecided_rejects_its_connection() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (listener, local, seen) = conditional_listener(&client, Policy::Pend);
    let mut peer = TcpStream::connect(local).unwrap();
    until("the inspection", || seen.lock().unwrap().pended.len() == 1);
    let pended = seen.lock().unwrap().pended.pop().unwrap();
    drop(pended);
    assert!(peer_sees_reset(&mut peer));
    drop(listener);
    client.shutdown().unwrap();
    session.finish();
}

#[test]
fn a_pended_inspection_does_not_outlive_its_listener() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (listener, local, seen) = conditional_listener(&client, Policy::Pend);
    let mut peer = TcpStream::connect(local).unwrap();
    until("the inspection", || seen.lock().unwrap().pended.len() == 1);
    let pended = seen.lock().unwrap().pended.pop().unwrap();
    let kept = {
        let _ = TcpStream::connect(local).unwrap();
        until("the second inspection", || {
            seen.lock().unwrap().pended.len() == 1
        });
        seen.lock().unwrap().pended.pop().unwrap()
    };
    listener.close().wait().unwrap();
    // The close abandoned the connections: completing now makes no WSK call.
    assert_eq!(
        pended.accept().wait().unwrap_err(),
        wsk::Error::SOCKET_CLOSED
    );
    assert!(peer_sees_reset(&mut peer));
    // Dropped after the close: nothing is issued either (the verifier would see a call on
    // a closed socket).
    drop(kept);
    client.shutdown().unwrap();
    session.finish();
}

#[test]
fn the_client_drops_with_a_pended_inspection_out() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (listener, local, seen) = conditional_listener(&client, Policy::Pend);
    let _peer = TcpStream::connect(local).unwrap();
    until("the inspection", || seen.lock().unwrap().pended.len() == 1);
    let pended = seen.lock().unwrap().pended.pop().unwrap();
    drop(listener);
    let teardown = std::thread::spawn(move || drop(client));
    teardown.join().unwrap();
    assert_eq!(
        pended.reject().wait().unwrap_err().kind(),
        ErrorKind::SocketClosed
    );
    session.finish();
}

#[test]
fn a_peer_gone_during_a_pended_inspection_aborts_it() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (listener, local, seen) = conditional_listener(&client, Policy::Pend);
    let peer = TcpStream::connect(local).unwrap();
    until("the inspection", || seen.lock().unwrap().pended.len() == 1);
    let pended = seen.lock().unwrap().pended.pop().unwrap();
    drop(peer);
    until("the abort", || !seen.lock().unwrap().aborted.is_empty());
    assert_eq!(seen.lock().unwrap().aborted, [pended.id()]);
    // Its inspect ID is no longer valid: completing makes no WSK call.
    assert_eq!(
        pended.accept().wait().unwrap_err().kind(),
        ErrorKind::ConnectionAborted
    );
    drop(listener);
    client.shutdown().unwrap();
    session.finish();
}

#[test]
fn a_pended_inspection_decided_inside_its_callback_answers_the_callback() {
    // No WskInspectComplete before the provider has the pend (the host's verifier reports
    // one): the decision becomes the callback's answer.
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (dropping, local, seen) = conditional_listener(&client, Policy::PendThenDrop);
    let mut peer = TcpStream::connect(local).unwrap();
    assert!(peer_sees_reset(&mut peer));
    assert!(seen.lock().unwrap().accepted.is_empty());

    let (accepting, local, seen) = conditional_listener(&client, Policy::PendThenAccept);
    let _peer = TcpStream::connect(local).unwrap();
    until("the accept", || seen.lock().unwrap().accepted.len() == 1);
    drop((dropping, accepting));
    seen.lock().unwrap().accepted.clear();
    client.shutdown().unwrap();
    session.finish();
}
