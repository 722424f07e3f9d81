//! Listening and datagram sockets through `wsk` on wsk-host, IPv4 and IPv6.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};

use wsk::{AddressFamily, Buf, BufList, DatagramSocket, ErrorKind, ListenSocket, WskClient};
use wsk_host::Session;

mod common;
use common::driver;

fn loopback(v6: bool) -> SocketAddr {
    if v6 {
        "[::1]:0".parse().unwrap()
    } else {
        "127.0.0.1:0".parse().unwrap()
    }
}

fn accept_connections(v6: bool) {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let listener = client.listen(loopback(v6)).wait().unwrap();
    let address = listener.local_addr().wait().unwrap();
    assert_ne!(address.port(), 0);
    let peers: Vec<_> = (0..3)
        .map(|i| {
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(address).unwrap();
                stream.write_all(format!("client {i}").as_bytes()).unwrap();
                stream.shutdown(std::net::Shutdown::Write).unwrap();
                let mut reply = String::new();
                stream.read_to_string(&mut reply).unwrap();
                reply
            })
        })
        .collect();
    for _ in 0..3 {
        let (connection, peer) = listener.accept().wait().unwrap();
        assert_eq!(peer.is_ipv6(), v6);
        assert_eq!(connection.peer_addr().wait().unwrap(), peer);
        let mut buf = Buf::with_capacity(64).unwrap();
        loop {
            let (received, back) = connection.receive(buf).wait();
            buf = back;
            if received.unwrap() == 0 {
                break;
            }
        }
        let mut reply = b"hello ".to_vec();
        reply.extend_from_slice(&buf);
        let (sent, _) = connection.send_all(Buf::from_vec(reply).unwrap()).wait();
        sent.unwrap();
        connection.close().wait().unwrap();
    }
    let mut replies: Vec<String> = peers.into_iter().map(|p| p.join().unwrap()).collect();
    replies.sort();
    assert_eq!(
        replies,
        ["hello client 0", "hello client 1", "hello client 2"]
    );
    listener.close().wait().unwrap();
    client.shutdown().unwrap();
    session.finish();
}

#[test]
fn accepts_connections_over_ipv4() {
    accept_connections(false);
}

#[test]
fn accepts_connections_over_ipv6() {
    accept_connections(true);
}

#[test]
fn address_in_use_is_an_error() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let first = client.listen(loopback(false)).wait().unwrap();
    let taken = first.local_addr().wait().unwrap();
    let error = client.listen(taken).wait().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::AddressInUse);
    drop(first);
    drop(client);
    session.finish();
}

#[test]
fn options_before_binding() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let listener = ListenSocket::create(&client, AddressFamily::V6)
        .wait()
        .unwrap();
    listener.set_only_v6(true).wait().unwrap();
    listener.set_reuse_address(true).wait().unwrap();
    listener.bind_to(loopback(true)).wait().unwrap();
    let address = listener.local_addr().wait().unwrap();
    let connect = std::thread::spawn(move || TcpStream::connect(address).unwrap());
    let (connection, _) = listener.accept().wait().unwrap();
    drop(connect.join().unwrap());
    drop((connection, listener, client));
    session.finish();
}

fn datagrams(v6: bool) {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let socket = client.bind_datagram(loopback(v6)).wait().unwrap();
    let address = socket.local_addr().wait().unwrap();
    let peer = UdpSocket::bind(loopback(v6)).unwrap();
    let peer_address = peer.local_addr().unwrap();

    let (sent, _) = socket
        .send_to(Buf::from_slice(b"datagram one").unwrap(), peer_address)
        .wait();
    assert_eq!(sent.unwrap(), 12);
    let mut received = [0u8; 64];
    let (count, from) = peer.recv_from(&mut received).unwrap();
    assert_eq!(&received[..count], b"datagram one");
    assert_eq!(from, address);

    peer.send_to(b"reply", address).unwrap();
    let (result, buf) = socket.receive_from(Buf::with_capacity(64).unwrap()).wait();
    let (count, source) = result.unwrap();
    assert_eq!((count, source), (5, peer_address));
    assert_eq!(&buf[..], b"reply");
    drop(buf);

    let mut list = BufList::new();
    for text in [&b"first"[..], b"second", b"third"] {
        list.push(Buf::from_slice(text).unwrap()).unwrap();
    }
    let (sent, list) = socket.send_messages(list, peer_address).wait();
    assert_eq!(sent.unwrap(), 16);
    assert_eq!(list.bufs().len(), 3, "the list comes back");
    drop(list);
    for expected in [&b"first"[..], b"second", b"third"] {
        let (count, _) = peer.recv_from(&mut received).unwrap();
        assert_eq!(&received[..count], expected);
    }

    let wrong_family = if v6 {
        "127.0.0.1:9".parse().unwrap()
    } else {
        "[::1]:9".parse().unwrap()
    };
    let (error, _) = socket
        .send_to(Buf::from_slice(b"x").unwrap(), wrong_family)
        .wait();
    assert_eq!(error.unwrap_err(), wsk::Error::ADDRESS_FAMILY_MISMATCH);
    socket.set_broadcast(true).wait().unwrap();
    socket.close().wait().unwrap();
    drop(client);
    session.finish();
}

#[test]
fn datagrams_over_ipv4() {
    datagrams(false);
}

#[test]
fn datagrams_over_ipv6() {
    datagrams(true);
}

#[test]
fn an_empty_buffer_sends_an_empty_datagram() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let socket = DatagramSocket::bind_with_events(&client, loopback(false), NoEvents)
        .wait()
        .unwrap();
    let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut empty = Buf::with_capacity(8).unwrap();
    empty.clear();
    let (sent, back) = socket.send_to(empty, peer.local_addr().unwrap()).wait();
    assert_eq!(sent.unwrap(), 0, "a zero-length datagram is valid in UDP");
    assert_eq!(back.capacity(), 8, "the buffer comes back");
    let mut datagram = [0u8; 8];
    let (len, _) = peer.recv_from(&mut datagram).unwrap();
    assert_eq!(len, 0);
    drop((back, socket, client));
    session.finish();
}

struct NoEvents;

impl wsk::DatagramEvents for NoEvents {
    fn on_receive_from<'a>(
        &self,
        datagrams: wsk::ReceivedDatagrams<'a>,
    ) -> wsk::ReceiveDecision<'a> {
        datagrams.consume()
    }
}
