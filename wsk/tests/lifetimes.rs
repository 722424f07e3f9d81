//! Ownership under every order of drops: operations dropped in flight (their IRPs are
//! cancelled, their buffers released when the completion arrives), sockets dropped with
//! operations pending, the client dropped with sockets open, IRQL rules — all ending with the
//! verifier reporting zero leaks.

use std::future::Future;
use std::io::Read;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::pin::Pin;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use wsk::{Buf, DatagramSocket, Error, ErrorKind, WskClient};
use wsk_host::{FaultPlan, Session};

mod common;
use common::driver;

/// Polls a future once with a no-op waker: the operation is issued and left in flight.
fn start<F: Future + Unpin>(mut future: F) -> F {
    let mut cx = Context::from_waker(Waker::noop());
    assert!(
        Pin::new(&mut future).poll(&mut cx).is_pending(),
        "the operation should be in flight"
    );
    future
}

fn connected(client: &WskClient) -> (wsk::ConnectionSocket, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let socket = client
        .connect(listener.local_addr().unwrap())
        .wait()
        .unwrap();
    (socket, listener.accept().unwrap().0)
}

#[test]
fn dropping_a_pending_receive_cancels_it() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, _peer) = connected(&client);
    drop(start(socket.receive(Buf::with_capacity(64).unwrap())));
    drop(start(
        socket.receive_exact(Buf::with_capacity(64).unwrap(), 64),
    ));
    // The socket still works afterwards.
    let (sent, _) = socket.send(Buf::from_slice(b"still fine").unwrap()).wait();
    assert_eq!(sent.unwrap(), 10);
    drop((socket, client));
    assert!(session.finish().cancelled >= 2);
}

#[test]
fn dropping_a_pending_accept_cancels_it() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let listener = client.listen("[::1]:0".parse().unwrap()).wait().unwrap();
    drop(start(listener.accept()));
    drop((listener, client));
    session.finish();
}

#[test]
fn dropping_a_pending_connect_closes_the_socket_it_creates() {
    let session = Session::start();
    session.set_faults(FaultPlan::new(11).delay_completions(Duration::from_millis(50)));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let client = WskClient::register(driver(&session)).unwrap();
    let mut connect = start(client.connect(listener.local_addr().unwrap()));
    // The connect goes through its steps (create, bind, connect), each completion held back by
    // the fault plan; the peer sees the connection before the last completion arrives.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut peer = loop {
        match listener.accept() {
            Ok((peer, _)) => break peer,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(
                    Instant::now() < deadline,
                    "the connection never reached the listener"
                );
                let mut cx = Context::from_waker(Waker::noop());
                assert!(Pin::new(&mut connect).poll(&mut cx).is_pending());
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    // Dropped before the completion arrives: the socket it brings is closed for us.
    drop(connect);
    peer.set_nonblocking(false).unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert_eq!(
        peer.read(&mut byte).unwrap(),
        0,
        "the orphaned connection is closed"
    );
    drop(client);
    session.finish();
}

#[test]
fn dropping_connects_at_any_stage_leaves_nothing_behind() {
    let session = Session::start();
    session.set_faults(FaultPlan::new(13).delay_completions(Duration::from_millis(5)));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = WskClient::register(driver(&session)).unwrap();
    for polls in 0..8 {
        let mut connect = client.connect(listener.local_addr().unwrap());
        for _ in 0..polls {
            let mut cx = Context::from_waker(Waker::noop());
            if Pin::new(&mut connect).poll(&mut cx).is_ready() {
                break;
            }
            std::thread::sleep(Duration::from_millis(3));
        }
        drop(connect);
    }
    drop(client);
    session.finish();
}

#[test]
fn dropping_a_pending_send_releases_its_buffer_at_completion() {
    let session = Session::start();
    session.set_faults(FaultPlan::new(12).delay_completions(Duration::from_millis(30)));
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, _peer) = connected(&client);
    drop(start(socket.send(Buf::from_slice(&[1; 100]).unwrap())));
    drop((socket, client));
    session.finish();
}

#[test]
fn dropping_a_pending_receive_from_cancels_it() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let socket = DatagramSocket::create_bound(&client);
    drop(start(socket.receive_from(Buf::with_capacity(64).unwrap())));
    drop((socket, client));
    session.finish();
}

trait CreateBound {
    fn create_bound(client: &WskClient) -> DatagramSocket;
}

impl CreateBound for DatagramSocket {
    fn create_bound(client: &WskClient) -> DatagramSocket {
        client
            .bind_datagram("127.0.0.1:0".parse().unwrap())
            .wait()
            .unwrap()
    }
}

#[test]
fn dropping_a_pending_resolution_frees_its_result() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    // Polled once: in flight, or (the resolution runs on a thread of its own) already
    // complete with a result list nobody collects; dropped either way.
    let mut resolve = client.resolve("localhost", 80);
    let mut cx = Context::from_waker(Waker::noop());
    let _ = Pin::new(&mut resolve).poll(&mut cx);
    drop(resolve);
    drop(client);
    session.finish();
}

#[test]
fn dropping_a_socket_with_operations_in_flight() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, _peer) = connected(&client);
    let receive = start(socket.receive(Buf::with_capacity(64).unwrap()));
    drop(socket);
    // The receive completes as cancelled once the close cancels it; its buffer comes back.
    let (result, buf) = wsk::task::block_on(receive).unwrap();
    assert_eq!(result.unwrap_err().kind(), ErrorKind::Cancelled);
    drop((buf, client));
    session.finish();
}

#[test]
fn dropping_the_client_closes_open_sockets() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, _peer) = connected(&client);
    let datagram = client
        .bind_datagram("[::1]:0".parse().unwrap())
        .wait()
        .unwrap();
    assert_eq!(client.open_sockets(), 2);
    client.shutdown().unwrap();
    // The handles outlive the client: their operations fail cleanly.
    let (result, _) = socket.send(Buf::from_slice(b"late").unwrap()).wait();
    assert_eq!(result.unwrap_err(), Error::SOCKET_CLOSED);
    let (result, _) = datagram
        .send_to(
            Buf::from_slice(b"late").unwrap(),
            "[::1]:9".parse().unwrap(),
        )
        .wait();
    assert_eq!(result.unwrap_err(), Error::SOCKET_CLOSED);
    drop((socket, datagram));
    session.finish();
}

#[test]
fn operations_complete_in_any_drop_order() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let socket = client
        .bind_datagram("127.0.0.1:0".parse().unwrap())
        .wait()
        .unwrap();
    let pending: Vec<_> = (0..4)
        .map(|_| start(socket.receive_from(Buf::with_capacity(32).unwrap())))
        .collect();
    peer.send_to(b"one", socket.local_addr().wait().unwrap())
        .unwrap();
    drop(client);
    drop(pending);
    drop(socket);
    session.finish();
}

#[test]
fn waiting_above_apc_level_is_an_error_not_a_bug_check() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, _peer) = connected(&client);
    {
        let _dispatch = wsk_host::irql::raise(wsk_sys::DISPATCH_LEVEL);
        let (result, _) = socket.receive(Buf::with_capacity(8).unwrap()).wait();
        assert_eq!(result.unwrap_err(), Error::IRQL_TOO_HIGH);
        assert_eq!(
            WskClient::register(driver(&session)).unwrap_err(),
            Error::IRQL_TOO_HIGH
        );
        assert_eq!(Buf::from_vec(vec![1]).unwrap_err(), Error::IRQL_TOO_HIGH);
        assert!(
            Buf::with_capacity(8).is_ok(),
            "non-paged buffers are fine at DISPATCH_LEVEL"
        );
        assert_eq!(
            client.resolve("localhost", 1).wait().unwrap_err(),
            Error::IRQL_TOO_HIGH
        );
    }
    drop((socket, client));
    session.finish();
}

#[test]
fn zero_capacity_and_oversized_buffers_are_refused() {
    let session = Session::start();
    assert_eq!(
        Buf::with_capacity(0).unwrap_err(),
        Error::INVALID_BUFFER_SIZE
    );
    assert_eq!(
        Buf::from_vec(Vec::new()).unwrap_err(),
        Error::INVALID_BUFFER_SIZE
    );
    assert_eq!(
        Buf::with_capacity(u32::MAX as usize + 1).unwrap_err(),
        Error::INVALID_BUFFER_SIZE
    );
    let mut buf = Buf::with_capacity(4).unwrap();
    assert_eq!(
        buf.extend_from_slice(b"toolong").unwrap_err(),
        Error::INVALID_BUFFER_SIZE
    );
    buf.extend_from_slice(b"ok").unwrap();
    let vec_buf = Buf::from_vec(b"vec".to_vec()).unwrap();
    assert_eq!(vec_buf.into_vec().unwrap(), b"vec");
    assert!(buf.into_vec().is_err(), "pool buffers are not vectors");
    session.finish();
}
