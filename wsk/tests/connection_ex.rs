//! `WskConnectEx`, `WskSendEx` and `WskReceiveEx` through `wsk` on wsk-host, against std
//! sockets on loopback, and their refusal on systems without them.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use wsk::{AddressFamily, Buf, ConnectionSocket, ErrorKind, SendFlags, WskClient};
use wsk_host::{ProviderConfig, Session};

mod common;
use common::driver;

fn bound(client: &WskClient) -> ConnectionSocket {
    let socket = ConnectionSocket::create(client, AddressFamily::V4)
        .wait()
        .unwrap();
    socket
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .wait()
        .unwrap();
    socket
}

#[test]
fn connect_sending_delivers_the_first_bytes_with_the_connection() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let socket = bound(&client);
    let (result, buf) = socket
        .connect_sending(
            listener.local_addr().unwrap(),
            Buf::from_slice(b"first words").unwrap(),
        )
        .wait();
    result.unwrap();
    assert_eq!(&buf[..], b"first words", "handed back whole");
    let (mut peer, _) = listener.accept().unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = [0u8; 11];
    peer.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"first words");

    // Without data it is a plain connect.
    let plain = bound(&client);
    let (result, _) = plain
        .connect_sending(
            listener.local_addr().unwrap(),
            Buf::with_capacity(8).unwrap(),
        )
        .wait();
    result.unwrap();
    drop((buf, socket, plain));
    client.shutdown().unwrap();
    session.finish();
}

#[test]
fn send_and_receive_with_control_information() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let socket = client
        .connect(listener.local_addr().unwrap())
        .wait()
        .unwrap();
    let (mut peer, _) = listener.accept().unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();

    let (sent, buf) = socket
        .send_with_control(Buf::from_slice(b"ex").unwrap(), &[], SendFlags::default())
        .wait();
    assert_eq!(sent.unwrap(), 2);
    let mut got = [0u8; 2];
    peer.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ex");
    // Control information the transport does not take: the provider's refusal, the buffer
    // handed back.
    let (sent, buf) = socket
        .send_with_control(buf, &[0u8; 16], SendFlags::default())
        .wait();
    assert_eq!(sent.unwrap_err().kind(), ErrorKind::NotSupported);
    assert_eq!(&buf[..], b"ex");

    peer.write_all(b"back").unwrap();
    let (received, back) = socket
        .receive_with_control(Buf::with_capacity(16).unwrap(), 64)
        .wait();
    let received = received.unwrap();
    assert_eq!(received.count, 4);
    assert_eq!(&back[..], b"back");
    assert!(
        received.control.is_empty(),
        "no control information on TCP here"
    );
    drop((buf, back, socket));
    client.shutdown().unwrap();
    session.finish();
}

#[test]
fn the_extended_members_are_not_read_on_systems_without_them() {
    let session = Session::with_config(ProviderConfig {
        // Windows 10 1709: WskConnectEx, not WskSendEx / WskReceiveEx.
        os_version: (10, 0, 16299),
        ..ProviderConfig::default()
    });
    // What DriverEntry does: pool allocation as that release offers it.
    wsk_sys::pool::initialize();
    let client = WskClient::register(driver(&session)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let socket = client
        .connect(listener.local_addr().unwrap())
        .wait()
        .unwrap();
    let (sent, _) = socket
        .send_with_control(Buf::from_slice(b"x").unwrap(), &[], SendFlags::default())
        .wait();
    assert_eq!(sent.unwrap_err(), wsk::Error::NOT_SUPPORTED);
    let (received, _) = socket
        .receive_with_control(Buf::with_capacity(4).unwrap(), 0)
        .wait();
    assert_eq!(received.unwrap_err(), wsk::Error::NOT_SUPPORTED);
    drop(socket);
    client.shutdown().unwrap();
    session.finish();
}
