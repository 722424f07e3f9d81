//! Error paths through wsk-host's fault injection: allocation failures, resets, refused
//! connects, partial sends, inline and pending completion, delays and timeouts.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use wsk::{Buf, ErrorKind, WskClient};
use wsk_host::{CompletionMode, FaultPlan, Nth, Session};

mod common;
use common::driver;

fn peer() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    (listener, address)
}

fn drain(listener: TcpListener) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut all = Vec::new();
        let _ = stream.read_to_end(&mut all);
        all
    })
}

#[test]
fn irp_allocation_failure_is_an_error() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    session.set_faults(FaultPlan::new(1).fail_irp_allocation(Nth::Every(1)));
    let error = client
        .connect("127.0.0.1:9".parse().unwrap())
        .wait()
        .unwrap_err();
    assert_eq!(error, wsk::Error::INSUFFICIENT_RESOURCES);
    assert_eq!(
        wsk::Irp::new().unwrap_err().kind(),
        ErrorKind::InsufficientResources
    );
    session.set_faults(FaultPlan::new(1));
    drop(client);
    session.finish();
}

#[test]
fn mdl_and_pool_failures_are_errors() {
    let session = Session::start();
    session.set_faults(FaultPlan::new(2).fail_mdl_allocation(Nth::Every(1)));
    assert_eq!(
        Buf::with_capacity(64).unwrap_err(),
        wsk::Error::INSUFFICIENT_RESOURCES
    );
    assert_eq!(
        Buf::from_vec(vec![1, 2, 3]).unwrap_err(),
        wsk::Error::INSUFFICIENT_RESOURCES
    );
    session.set_faults(FaultPlan::new(2).fail_pool_allocation(Nth::Call(1)));
    assert_eq!(
        Buf::with_capacity(64).unwrap_err(),
        wsk::Error::INSUFFICIENT_RESOURCES
    );
    assert!(
        Buf::with_capacity(64).is_ok(),
        "only the first allocation fails"
    );
    session.finish();
}

#[test]
fn reset_connection_fails_the_send() {
    let session = Session::start();
    let (listener, address) = peer();
    let reader = drain(listener);
    let client = WskClient::register(driver(&session)).unwrap();
    let socket = client.connect(address).wait().unwrap();
    session.set_faults(FaultPlan::new(3).reset_connections_after(100));
    let (ok, buf) = socket.send(Buf::from_slice(&[7; 60]).unwrap()).wait();
    assert_eq!(ok.unwrap(), 60);
    let (error, _) = socket.send(buf).wait();
    assert_eq!(error.unwrap_err().kind(), ErrorKind::ConnectionReset);
    let (error, _) = socket.receive(Buf::with_capacity(8).unwrap()).wait();
    assert_eq!(error.unwrap_err().kind(), ErrorKind::ConnectionReset);
    drop((socket, client));
    let _ = reader.join();
    session.finish();
}

#[test]
fn refused_connects() {
    let session = Session::start();
    let (listener, address) = peer();
    session.set_faults(FaultPlan::new(4).refuse_connections());
    let client = WskClient::register(driver(&session)).unwrap();
    assert_eq!(
        client.connect(address).wait().unwrap_err().kind(),
        ErrorKind::ConnectionRefused
    );
    drop((client, listener));
    session.finish();
}

#[test]
fn partial_sends_and_send_all() {
    let session = Session::start();
    let (listener, address) = peer();
    let reader = drain(listener);
    let client = WskClient::register(driver(&session)).unwrap();
    let socket = client.connect(address).wait().unwrap();
    session.set_faults(FaultPlan::new(5).partial_sends(1000));
    let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
    let (sent, buf) = socket.send(Buf::from_slice(&data).unwrap()).wait();
    assert_eq!(sent.unwrap(), 1000, "one partial send");
    let (all, _) = socket.send_all(buf).wait();
    all.unwrap();
    socket.disconnect().wait().0.unwrap();
    let received = reader.join().unwrap();
    assert_eq!(received.len(), 11_000);
    assert_eq!(&received[1000..], &data[..]);
    drop((socket, client));
    session.finish();
}

fn echo_round_trips(mode: CompletionMode) -> wsk_host::Report {
    let session = Session::start();
    session.set_faults(FaultPlan::new(6).completion(mode));
    let (listener, address) = peer();
    let echo = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut chunk = [0u8; 512];
        loop {
            let n = stream.read(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            stream.write_all(&chunk[..n]).unwrap();
        }
    });
    let client = WskClient::register(driver(&session)).unwrap();
    let socket = client.connect(address).wait().unwrap();
    let mut buf = Buf::with_capacity(512).unwrap();
    for round in 0..20u8 {
        buf.clear();
        buf.extend_from_slice(&[round; 100]).unwrap();
        let (sent, back) = socket.send(buf).wait();
        assert_eq!(sent.unwrap(), 100);
        let mut back = back;
        back.clear();
        let (received, back) = socket.receive_exact(back, 100).wait();
        received.unwrap();
        assert!(back.iter().all(|&b| b == round));
        buf = back;
    }
    socket.disconnect().wait().0.unwrap();
    echo.join().unwrap();
    drop((buf, socket, client));
    session.finish()
}

#[test]
fn pending_completions() {
    let report = echo_round_trips(CompletionMode::AlwaysPending);
    assert_eq!(report.completed_inline, 0);
    assert!(report.completed_pending >= 40);
}

#[test]
fn inline_completions() {
    let report = echo_round_trips(CompletionMode::AlwaysInline);
    assert!(report.completed_inline >= 20, "{report:?}");
}

#[test]
fn mixed_completions_exercise_both_paths() {
    let report = echo_round_trips(CompletionMode::Mixed);
    assert!(
        report.completed_inline > 0 && report.completed_pending > 0,
        "{report:?}"
    );
}

#[test]
fn a_timed_out_wait_cancels_the_operation() {
    let session = Session::start();
    let (listener, address) = peer();
    let client = WskClient::register(driver(&session)).unwrap();
    let socket = client.connect(address).wait().unwrap();
    let (_peer, _) = listener.accept().unwrap();
    let (result, buf) = socket
        .receive(Buf::with_capacity(16).unwrap())
        .wait_timeout(50);
    assert_eq!(result.unwrap_err(), wsk::Error::TIMED_OUT);
    assert_eq!(buf.len(), 0);
    drop((buf, socket, client));
    assert!(session.finish().cancelled >= 1);
}

#[test]
fn delayed_completions_still_complete() {
    let session = Session::start();
    session.set_faults(FaultPlan::new(7).delay_completions(Duration::from_millis(20)));
    let (listener, address) = peer();
    let acceptor = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.write_all(b"slow").unwrap();
        stream
    });
    let client = WskClient::register(driver(&session)).unwrap();
    let socket = client.connect(address).wait().unwrap();
    let (received, buf) = socket
        .receive_exact(Buf::with_capacity(4).unwrap(), 4)
        .wait();
    received.unwrap();
    assert_eq!(&buf[..], b"slow");
    drop((buf, socket, client, acceptor.join().unwrap()));
    session.finish();
}

#[test]
fn peer_closing_early_fails_receive_exact() {
    let session = Session::start();
    let (listener, address) = peer();
    let acceptor = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.write_all(b"short").unwrap();
    });
    let client = WskClient::register(driver(&session)).unwrap();
    let socket = client.connect(address).wait().unwrap();
    acceptor.join().unwrap();
    let (result, buf) = socket
        .receive_exact(Buf::with_capacity(64).unwrap(), 64)
        .wait();
    assert_eq!(result.unwrap_err().kind(), ErrorKind::Disconnected);
    assert_eq!(&buf[..], b"short", "what arrived is kept");
    drop((buf, socket, client));
    session.finish();
}

#[test]
fn abort_resets_the_peer() {
    let session = Session::start();
    let (listener, address) = peer();
    let client = WskClient::register(driver(&session)).unwrap();
    let socket = client.connect(address).wait().unwrap();
    let (mut peer_stream, _) = listener.accept().unwrap();
    socket.abort().wait().0.unwrap();
    let mut byte = [0u8; 1];
    let outcome = peer_stream.read(&mut byte);
    assert!(
        matches!(&outcome, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset)
            || matches!(outcome, Ok(0)),
        "{outcome:?}"
    );
    let (result, _) = socket.send(Buf::from_slice(b"x").unwrap()).wait();
    assert!(result.is_err());
    drop((socket, client));
    session.finish();
}

#[test]
fn non_loopback_destinations_are_refused_by_the_host() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let error = client
        .connect("192.0.2.1:80".parse().unwrap())
        .wait()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidAddress);
    drop(client);
    session.finish();
}

#[test]
fn stream_peer_connections_reach_the_std_side() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let listener = client
        .listen("127.0.0.1:0".parse().unwrap())
        .wait()
        .unwrap();
    let address = listener.local_addr().wait().unwrap();
    let std_side = std::thread::spawn(move || TcpStream::connect(address).unwrap());
    let (connection, _) = listener.accept().wait().unwrap();
    drop((std_side.join().unwrap(), connection, listener, client));
    session.finish();
}
