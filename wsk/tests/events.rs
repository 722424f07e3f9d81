//! Event-callback mode through `wsk` on wsk-host: receive (consumed, partly consumed,
//! rejected, retained), disconnect, accept and receive-from events.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wsk::{
    AcceptDecision, Buf, ConnectionEvents, ConnectionSocket, DatagramEvents, DatagramSocket,
    Incoming, ListenEvents, ListenSocket, ReceiveDecision, ReceivedData, ReceivedDatagrams,
    RetainedData, WskClient,
};
use wsk_host::Session;

mod common;
use common::driver;

#[derive(Clone, Copy)]
enum Policy {
    Consume,
    ConsumePart(usize),
    Reject,
    Retain,
}

struct Recorder {
    policy: Policy,
    data: Sender<Vec<u8>>,
    disconnects: Sender<bool>,
    retained: Arc<Mutex<Vec<RetainedData>>>,
}

impl ConnectionEvents for Recorder {
    fn on_receive<'a>(&self, data: ReceivedData<'a>) -> ReceiveDecision<'a> {
        let mut bytes = vec![0u8; data.len()];
        assert_eq!(data.copy_to(&mut bytes).unwrap(), data.len());
        assert_eq!(
            data.chunks().map(|c| c.unwrap().len()).sum::<usize>(),
            data.len()
        );
        match self.policy {
            Policy::Consume => {
                self.data.send(bytes).unwrap();
                data.consume()
            }
            Policy::ConsumePart(count) => {
                let count = count.min(bytes.len());
                self.data.send(bytes[..count].to_vec()).unwrap();
                data.consume_part(count)
            }
            Policy::Reject => data.reject(),
            Policy::Retain => {
                let (retained, decision) = data.retain();
                let retained = retained.unwrap();
                let copied: Vec<u8> = retained
                    .view()
                    .unwrap()
                    .chunks()
                    .flat_map(|c| c.unwrap().to_vec())
                    .collect();
                self.retained.lock().unwrap().push(retained);
                self.data.send(copied).unwrap();
                decision
            }
        }
    }

    fn on_disconnect(&self, abortive: bool) {
        let _ = self.disconnects.send(abortive);
    }
}

fn connected_pair(client: &WskClient, events: Recorder) -> (ConnectionSocket, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let socket = ConnectionSocket::connect_with_events(client, address, events)
        .wait()
        .unwrap();
    let (peer, _) = listener.accept().unwrap();
    (socket, peer)
}

/// A recorder and its outputs: the data indicated, the disconnects (abortive or not), the
/// indications retained.
type Recording = (
    Recorder,
    std::sync::mpsc::Receiver<Vec<u8>>,
    std::sync::mpsc::Receiver<bool>,
    Arc<Mutex<Vec<RetainedData>>>,
);

fn recorder(policy: Policy) -> Recording {
    let (data, data_rx) = channel();
    let (disconnects, disconnect_rx) = channel();
    let retained = Arc::new(Mutex::new(Vec::new()));
    (
        Recorder {
            policy,
            data,
            disconnects,
            retained: Arc::clone(&retained),
        },
        data_rx,
        disconnect_rx,
        retained,
    )
}

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn received_data_is_indicated_then_disconnect() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (events, data, disconnects, _) = recorder(Policy::Consume);
    let (socket, mut peer) = connected_pair(&client, events);
    peer.write_all(b"event data").unwrap();
    let mut seen = Vec::new();
    while seen.len() < 10 {
        seen.extend(data.recv_timeout(WAIT).unwrap());
    }
    assert_eq!(seen, b"event data");
    drop(peer);
    assert!(
        !disconnects.recv_timeout(WAIT).unwrap(),
        "a graceful disconnect"
    );
    socket.close().wait().unwrap();
    drop(client);
    assert!(session.finish().events_delivered >= 2);
}

#[test]
fn partly_consumed_data_waits_for_a_receive() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (events, data, _, _) = recorder(Policy::ConsumePart(3));
    let (socket, mut peer) = connected_pair(&client, events);
    peer.write_all(b"abcdefgh").unwrap();
    assert_eq!(data.recv_timeout(WAIT).unwrap(), b"abc");
    // The rest stays with the provider until the client receives it.
    let (received, buf) = socket.receive(Buf::with_capacity(64).unwrap()).wait();
    assert_eq!(received.unwrap(), 5);
    assert_eq!(&buf[..], b"defgh");
    drop((buf, socket, client, peer));
    session.finish();
}

#[test]
fn rejected_data_goes_to_the_next_receive() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (events, data, _, _) = recorder(Policy::Reject);
    let (socket, mut peer) = connected_pair(&client, events);
    peer.write_all(b"not now").unwrap();
    let (received, buf) = socket
        .receive_exact(Buf::with_capacity(64).unwrap(), 7)
        .wait();
    received.unwrap();
    assert_eq!(&buf[..], b"not now");
    assert!(data.try_recv().is_err());
    drop((buf, socket, client, peer));
    session.finish();
}

#[test]
fn retained_data_is_released_when_dropped() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (events, data, _, retained) = recorder(Policy::Retain);
    let (socket, mut peer) = connected_pair(&client, events);
    peer.write_all(b"keep me").unwrap();
    assert_eq!(data.recv_timeout(WAIT).unwrap(), b"keep me");
    let held = retained.lock().unwrap().pop().unwrap();
    assert_eq!(held.len(), 7);
    // Closing with retained data defers the close until it is released.
    let close = socket.close();
    std::thread::sleep(Duration::from_millis(50));
    drop(held);
    close.wait().unwrap();
    drop((client, peer));
    session.finish();
}

#[test]
fn events_can_be_set_on_an_accepted_connection() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let listener = client.listen("[::1]:0".parse().unwrap()).wait().unwrap();
    let address = listener.local_addr().wait().unwrap();
    let mut peer = TcpStream::connect(address).unwrap();
    let (connection, _) = listener.accept().wait().unwrap();
    let (events, data, _, _) = recorder(Policy::Consume);
    connection.set_events(events).unwrap();
    let (second, _, _, _) = recorder(Policy::Consume);
    assert!(
        connection.set_events(second).is_err(),
        "one handler per socket"
    );
    peer.write_all(b"late events").unwrap();
    let mut seen = Vec::new();
    while seen.len() < 11 {
        seen.extend(data.recv_timeout(WAIT).unwrap());
    }
    drop((connection, listener, client, peer));
    session.finish();
}

struct EchoOnAccept {
    accepted: Sender<(ConnectionSocket, SocketAddr)>,
}

impl ListenEvents for EchoOnAccept {
    fn on_accept<'a>(&self, incoming: Incoming<'a>) -> AcceptDecision<'a> {
        let peer = incoming.peer_addr().unwrap();
        assert!(incoming.local_addr().unwrap().ip().is_loopback());
        match incoming.accept() {
            Ok((socket, decision)) => {
                self.accepted.send((socket, peer)).unwrap();
                decision
            }
            Err((_, decision)) => decision,
        }
    }
}

struct RejectAll;

impl ListenEvents for RejectAll {
    fn on_accept<'a>(&self, incoming: Incoming<'a>) -> AcceptDecision<'a> {
        incoming.reject()
    }
}

#[test]
fn accept_events_hand_over_connections() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (accepted, connections) = channel();
    let listener = ListenSocket::bind_with_events(
        &client,
        "127.0.0.1:0".parse().unwrap(),
        EchoOnAccept { accepted },
    )
    .wait()
    .unwrap();
    let address = listener.local_addr().wait().unwrap();
    let mut peer = TcpStream::connect(address).unwrap();
    let (connection, from) = connections.recv_timeout(WAIT).unwrap();
    assert_eq!(from, peer.local_addr().unwrap());
    let (sent, _) = connection
        .send_all(Buf::from_slice(b"welcome").unwrap())
        .wait();
    sent.unwrap();
    let mut greeting = [0u8; 7];
    peer.read_exact(&mut greeting).unwrap();
    assert_eq!(&greeting, b"welcome");
    drop((connection, listener, client, peer));
    session.finish();
}

#[test]
fn rejected_connections_are_closed() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let listener =
        ListenSocket::bind_with_events(&client, "127.0.0.1:0".parse().unwrap(), RejectAll)
            .wait()
            .unwrap();
    let address = listener.local_addr().wait().unwrap();
    let mut peer = TcpStream::connect(address).unwrap();
    peer.set_read_timeout(Some(WAIT)).unwrap();
    let mut byte = [0u8; 1];
    assert!(
        matches!(peer.read(&mut byte), Ok(0) | Err(_)),
        "the refused connection ends"
    );
    drop((listener, client));
    session.finish();
}

struct Datagrams {
    seen: Sender<(Vec<u8>, SocketAddr)>,
}

impl DatagramEvents for Datagrams {
    fn on_receive_from<'a>(&self, datagrams: ReceivedDatagrams<'a>) -> ReceiveDecision<'a> {
        for datagram in datagrams.iter() {
            let mut bytes = vec![0u8; datagram.len()];
            datagram.copy_to(&mut bytes).unwrap();
            self.seen.send((bytes, datagram.source().unwrap())).unwrap();
        }
        datagrams.consume()
    }
}

#[test]
fn receive_from_events_over_ipv6() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (seen, rx) = channel();
    let socket =
        DatagramSocket::bind_with_events(&client, "[::1]:0".parse().unwrap(), Datagrams { seen })
            .wait()
            .unwrap();
    let address = socket.local_addr().wait().unwrap();
    let peer = UdpSocket::bind("[::1]:0").unwrap();
    peer.send_to(b"udp event", address).unwrap();
    let (bytes, from) = rx.recv_timeout(WAIT).unwrap();
    assert_eq!(
        (bytes.as_slice(), from),
        (&b"udp event"[..], peer.local_addr().unwrap())
    );
    drop((socket, client));
    session.finish();
}
