//! Ownership under every order of drops: operations dropped in flight (their IRPs are
//! cancelled, their buffers released when the completion arrives), sockets dropped with
//! operations pending, the client dropped with sockets open, IRQL rules — all ending with the
//! verifier reporting zero leaks.

use std::future::Future;
use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::pin::Pin;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use wsk::{Buf, DatagramSocket, Error, ErrorKind, WskClient};
use wsk_host::{FaultPlan, Session};

mod common;
use common::{connected, driver, start};

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

// ---- a closed socket's core reused by the next socket ----------------------------------------

/// Counts the data it is given, and its own drop.
struct Counting {
    received: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    dropped: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl wsk::ConnectionEvents for Counting {
    fn on_receive<'a>(&self, data: wsk::ReceivedData<'a>) -> wsk::ReceiveDecision<'a> {
        self.received
            .fetch_add(data.len(), std::sync::atomic::Ordering::SeqCst);
        data.consume()
    }
}

impl Drop for Counting {
    fn drop(&mut self) {
        self.dropped
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn a_socket_reusing_a_closed_ones_core_inherits_nothing_of_it() {
    use std::io::Write;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let (received, dropped) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let old = wsk::ConnectionSocket::connect_with_events(
        &client,
        address,
        Counting {
            received: Arc::clone(&received),
            dropped: Arc::clone(&dropped),
        },
    )
    .wait()
    .unwrap();
    let (mut old_peer, _) = listener.accept().unwrap();
    old_peer.write_all(b"to the old socket").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while received.load(Ordering::SeqCst) < 17 {
        assert!(Instant::now() < deadline, "the old handler got its data");
        std::thread::sleep(Duration::from_millis(1));
    }
    old.close().wait().unwrap();
    // The close completed and the handle is gone: the handler is dropped, the core kept.
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        1,
        "the handler goes with the close"
    );

    // The next socket takes the old core: no IRP allocated for its state (its connect's
    // block is the client's, warm from the first connect).
    let before = session.report().irps_allocated;
    let new = client.connect(address).wait().unwrap();
    assert_eq!(
        session.report().irps_allocated - before,
        0,
        "the closed socket's core (and close IRP) reused"
    );
    let (mut new_peer, _) = listener.accept().unwrap();
    // It is a socket of its own: open (not closed like the one before), without the old
    // handler (its data goes to a receive, not to the handler), at another address.
    new_peer.write_all(b"to the new socket").unwrap();
    let (got, buf) = new
        .receive(Buf::with_capacity(64).unwrap())
        .wait_timeout(10_000);
    assert_eq!(got.unwrap(), 17);
    assert_eq!(&buf[..], b"to the new socket");
    assert_eq!(
        received.load(Ordering::SeqCst),
        17,
        "nothing reached the old handler"
    );
    assert_eq!(client.open_sockets(), 1);
    // Its close is its own: the reused close IRP and event work again.
    new.close().wait().unwrap();
    assert_eq!(client.open_sockets(), 0);
    drop((old_peer, new_peer, buf));
    // The spare is freed with the client: the verifier finds nothing leaked.
    drop(client);
    session.finish();
}
