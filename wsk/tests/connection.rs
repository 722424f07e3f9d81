//! Connection sockets through `wsk` on wsk-host, against std sockets on loopback.

use std::io::{Read, Write};
use std::net::TcpListener;

use wsk::{Buf, ConnectionSocket, ErrorKind, WskClient};
use wsk_host::Session;

mod common;
use common::{RefusingPort, driver};

fn listener(family_v6: bool) -> TcpListener {
    TcpListener::bind(if family_v6 { "[::1]:0" } else { "127.0.0.1:0" }).unwrap()
}

fn echo_peer(listener: TcpListener) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut seen = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).unwrap();
            if n == 0 {
                return seen;
            }
            seen.extend_from_slice(&chunk[..n]);
            stream.write_all(&chunk[..n]).unwrap();
        }
    })
}

fn send_and_receive(v6: bool) {
    let session = Session::start();
    let listener = listener(v6);
    let remote = listener.local_addr().unwrap();
    let peer = echo_peer(listener);
    let client = WskClient::register(driver(&session)).unwrap();
    let socket = client.connect(remote).wait().unwrap();
    assert_eq!(socket.peer_addr().wait().unwrap(), remote);
    assert_eq!(socket.local_addr().wait().unwrap().is_ipv6(), v6);
    let message = b"ping over wsk".repeat(50);
    let (sent, buf) = socket.send(Buf::from_slice(&message).unwrap()).wait();
    assert_eq!(sent.unwrap(), message.len());
    drop(buf);
    let (received, mut buf) = socket
        .receive_exact(Buf::with_capacity(message.len()).unwrap(), message.len())
        .wait();
    assert_eq!(received.unwrap(), message.len());
    assert_eq!(&buf[..], &message[..]);
    socket.disconnect().wait().0.unwrap();
    assert_eq!(peer.join().unwrap(), message);
    buf.clear();
    let (received, _) = socket.receive(buf).wait();
    assert_eq!(received.unwrap(), 0, "the peer closed");
    socket.close().wait().unwrap();
    client.shutdown().unwrap();
    session.finish();
}

#[test]
fn send_and_receive_over_ipv4() {
    send_and_receive(false);
}

#[test]
fn send_and_receive_over_ipv6() {
    send_and_receive(true);
}

#[test]
fn refused_connect_is_an_error() {
    let session = Session::start();
    let refusing = RefusingPort::new(false);
    let client = WskClient::register(driver(&session)).unwrap();
    let error = client.connect(refusing.address()).wait().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ConnectionRefused);
    drop(client);
    session.finish();
}

#[test]
fn created_bound_then_connected_socket() {
    let session = Session::start();
    let listener = listener(false);
    let remote = listener.local_addr().unwrap();
    let peer = echo_peer(listener);
    let client = WskClient::register(driver(&session)).unwrap();
    let socket = ConnectionSocket::create(&client, wsk::AddressFamily::V4)
        .wait()
        .unwrap();
    socket.set_no_delay(true).wait().unwrap();
    assert_eq!(
        socket
            .option(wsk_sys::IPPROTO_TCP, wsk_sys::TCP_NODELAY)
            .wait()
            .unwrap(),
        1
    );
    socket.bind("127.0.0.1:0".parse().unwrap()).wait().unwrap();
    socket.connect(remote).wait().unwrap();
    let (result, _) = socket
        .send_all(Buf::from_slice(b"bound first").unwrap())
        .wait();
    result.unwrap();
    socket.disconnect().wait().0.unwrap();
    assert_eq!(peer.join().unwrap(), b"bound first");
    drop(socket);
    drop(client);
    session.finish();
}
