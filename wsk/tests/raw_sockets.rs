//! Raw sockets in and out: `as_raw`, `from_raw`, `into_raw` through the public API, with the
//! client dropped in every order and sockets forgotten.

use std::future::Future;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::task::{Context, Waker};

use wsk::{AddressFamily, Buf, ConnectionSocket, DatagramSocket, ErrorKind, WskClient};
use wsk_host::{FaultPlan, Nth, Rule, Session};
use wsk_sys::*;

mod common;
use common::driver;

fn peer() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    (listener, address)
}

unsafe extern "system" fn signal(_device: PDEVICE_OBJECT, _irp: PIRP, event: PVOID) -> NTSTATUS {
    // SAFETY: the event the test waits on, alive until then.
    unsafe { KeSetEvent(event.cast(), IO_NO_INCREMENT.into(), FALSE) };
    STATUS_MORE_PROCESSING_REQUIRED
}

/// Closes a raw socket the way a C component would: WskCloseSocket with an IRP of its own.
fn close_raw(socket: PWSK_SOCKET) -> NTSTATUS {
    let irp = wsk::Irp::new().unwrap();
    let mut event = KEVENT::default();
    // SAFETY: a fresh IRP and an event on this stack frame, waited for before both go; the
    // socket is open and owned by the caller.
    unsafe {
        KeInitializeEvent(&mut event, NotificationEvent, FALSE);
        IoSetCompletionRoutine(
            irp.as_ptr(),
            Some(signal),
            (&raw mut event).cast(),
            true,
            true,
            true,
        );
        let basic = (*socket).Dispatch.cast::<WSK_PROVIDER_BASIC_DISPATCH>();
        let close = (*basic).WskCloseSocket.unwrap();
        close(socket, irp.as_ptr());
        KeWaitForSingleObject(
            (&raw mut event).cast(),
            Executive,
            KernelMode,
            FALSE,
            std::ptr::null_mut(),
        );
    }
    irp.status()
}

fn echo_once(socket: &ConnectionSocket, listener: &TcpListener) {
    let (mut peer, _) = listener.accept().unwrap();
    peer.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let (sent, _) = socket.send(Buf::from_slice(b"raw").unwrap()).wait();
    assert_eq!(sent.unwrap(), 3);
    let mut got = [0u8; 3];
    peer.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"raw");
    peer.write_all(b"back").unwrap();
    let (received, buf) = socket
        .receive_exact(Buf::with_capacity(4).unwrap(), 4)
        .wait();
    received.unwrap();
    assert_eq!(&buf[..], b"back");
}

struct Quiet;
impl wsk::ConnectionEvents for Quiet {
    fn on_receive<'a>(&self, data: wsk::ReceivedData<'a>) -> wsk::ReceiveDecision<'a> {
        data.consume()
    }
}

#[test]
fn into_raw_then_from_raw_is_the_same_working_socket() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (listener, remote) = peer();
    let socket = client.connect(remote).wait().unwrap();
    let before = socket.as_raw();
    assert!(!before.is_null());
    // SAFETY: the socket is adopted back (and so closed) before the client goes.
    let raw = unsafe { socket.into_raw() }.map_err(|(e, _)| e).unwrap();
    assert_eq!(raw, before);
    assert_eq!(client.open_sockets(), 0, "given up: no longer the client's");
    // SAFETY: the connection socket just given up, created through this client, owned by
    // nobody else, nothing in flight.
    let socket = unsafe { ConnectionSocket::from_raw(&client, raw, AddressFamily::V4) }.unwrap();
    assert_eq!(client.open_sockets(), 1);
    echo_once(&socket, &listener);
    socket.close().wait().unwrap();
    client.shutdown().unwrap();
    session.finish();
}

#[test]
fn a_socket_given_up_is_closed_by_its_new_owner_and_the_client_unloads() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let datagram = client
        .bind_datagram(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .wait()
        .unwrap();
    // SAFETY: closed below, before the client goes; no static event callbacks.
    let raw = unsafe { datagram.into_raw() }.map_err(|(e, _)| e).unwrap();
    assert_eq!(close_raw(raw), STATUS_SUCCESS);
    drop(client);
    session.finish();
}

#[test]
fn an_adopted_socket_is_closed_by_the_teardown_even_forgotten() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (_listener, remote) = peer();
    let first = client.connect(remote).wait().unwrap();
    let second = client.connect(remote).wait().unwrap();
    // SAFETY: adopted back at once.
    let (a, b) = unsafe {
        (
            first.into_raw().map_err(|(e, _)| e).unwrap(),
            second.into_raw().map_err(|(e, _)| e).unwrap(),
        )
    };
    // SAFETY: connection sockets just given up, of this client, idle.
    let (first, second) = unsafe {
        (
            ConnectionSocket::from_raw(&client, a, AddressFamily::V4).unwrap(),
            ConnectionSocket::from_raw(&client, b, AddressFamily::V4).unwrap(),
        )
    };
    std::mem::forget(first);
    // Dropping the client while adopted sockets are out (one forgotten, one held) closes
    // both; the held handle then finds its socket closed.
    drop(client);
    let (sent, _) = second.send(Buf::from_slice(b"x").unwrap()).wait();
    assert_eq!(sent.unwrap_err().kind(), ErrorKind::SocketClosed);
    assert!(second.as_raw().is_null());
    drop(second);
    let (_, findings) = session.conclude();
    // Exactly what the forgotten handle owned: its socket's core (the close IRP) and the
    // memory behind it; no socket or registration stays open.
    for finding in &findings {
        assert!(
            matches!(finding.rule, Rule::IrpLeaked | Rule::PoolLeaked),
            "unexpected finding: {finding:?}"
        );
    }
    assert!(findings.iter().any(|f| f.rule == Rule::IrpLeaked));
}

#[test]
fn into_raw_is_refused_while_the_crate_still_uses_the_socket() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (listener, remote) = peer();

    // A request in flight.
    let socket = client.connect(remote).wait().unwrap();
    let mut receive = Box::pin(socket.receive(Buf::with_capacity(16).unwrap()));
    let mut cx = Context::from_waker(Waker::noop());
    assert!(receive.as_mut().poll(&mut cx).is_pending());
    // SAFETY: refused, so nothing is given up.
    let (error, socket) = unsafe { socket.into_raw() }.unwrap_err();
    assert_eq!(error.status(), STATUS_INVALID_DEVICE_STATE);
    // Dropped, the request is cancelled; once its completion ran, the socket can go.
    drop(receive);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut socket = socket;
    let raw = loop {
        // SAFETY: closed below, before the client goes.
        match unsafe { socket.into_raw() } {
            Ok(raw) => break raw,
            Err((_, back)) if std::time::Instant::now() < deadline => {
                socket = back;
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err((error, _)) => panic!("still refused: {error}"),
        }
    };
    assert_eq!(close_raw(raw), STATUS_SUCCESS);

    // A handler installed.
    let socket = ConnectionSocket::connect_with_events(&client, remote, Quiet)
        .wait()
        .unwrap();
    // SAFETY: refused, so nothing is given up.
    let (error, socket) = unsafe { socket.into_raw() }.unwrap_err();
    assert_eq!(error.status(), STATUS_INVALID_DEVICE_STATE);
    assert!(!socket.as_raw().is_null(), "handed back whole");
    drop(socket);

    // Conditional accept asked for, without a handler: the provider calls the socket's
    // inspect callback with its core as context, so the core is never given up.
    let listen = wsk::ListenSocket::create(&client, AddressFamily::V4)
        .wait()
        .unwrap();
    wsk::SocketOptions::set_conditional_accept(&listen, true)
        .wait()
        .unwrap();
    // SAFETY: refused; were it not, the socket given up is closed at once.
    let (error, listen) = match unsafe { listen.into_raw() } {
        Err(refused) => refused,
        Ok(raw) => {
            close_raw(raw);
            panic!("a socket with conditional accept was given up");
        }
    };
    assert_eq!(error.status(), STATUS_INVALID_DEVICE_STATE);
    listen
        .bind_to("127.0.0.1:0".parse().unwrap())
        .wait()
        .unwrap();
    // Its connections are inspected by this crate, which rejects them (no handler).
    let address = listen.local_addr().wait().unwrap();
    let mut rejected = std::net::TcpStream::connect(address).unwrap();
    rejected
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert!(rejected.read(&mut byte).is_err(), "reset");
    drop((listen, listener));
    client.shutdown().unwrap();
    session.finish();
}

#[test]
fn an_adopted_socket_takes_no_handler_of_this_crate() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let datagram = client
        .bind_datagram(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .wait()
        .unwrap();
    let local = datagram.local_addr().wait().unwrap();
    // SAFETY: adopted back at once.
    let raw = unsafe { datagram.into_raw() }.map_err(|(e, _)| e).unwrap();
    // SAFETY: the datagram socket just given up, of this client, idle.
    let datagram = unsafe { DatagramSocket::from_raw(&client, raw, AddressFamily::V4) }.unwrap();
    assert_eq!(datagram.local_addr().wait().unwrap(), local);
    // SAFETY: a null pointer is refused before anything is done with it.
    let error =
        unsafe { DatagramSocket::from_raw(&client, std::ptr::null_mut(), AddressFamily::V4) }
            .unwrap_err();
    assert_eq!(error, wsk::Error::INVALID_PARAMETER);

    // The provider calls an adopted socket's creator's callbacks: a handler of this crate
    // would never run, so none is taken.
    let (_listener, remote) = peer();
    let connection = client.connect(remote).wait().unwrap();
    // SAFETY: adopted back at once.
    let raw = unsafe { connection.into_raw() }
        .map_err(|(e, _)| e)
        .unwrap();
    // SAFETY: the connection socket just given up, of this client, idle.
    let connection =
        unsafe { ConnectionSocket::from_raw(&client, raw, AddressFamily::V4) }.unwrap();
    let error = connection.set_events(Quiet).unwrap_err();
    assert_eq!(error.status(), STATUS_INVALID_DEVICE_STATE);
    drop((datagram, connection));
    client.shutdown().unwrap();
    session.finish();
}

#[test]
fn out_of_irps_a_raw_socket_stays_the_callers_and_options_fail_cleanly() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (_listener, remote) = peer();
    let socket = client.connect(remote).wait().unwrap();
    // SAFETY: adopted back below.
    let raw = unsafe { socket.into_raw() }.map_err(|(e, _)| e).unwrap();
    // The given-up socket's core went back to the client, for its next socket: a socket
    // made now takes it, so that the adoption below needs a core of its own.
    let next = client.connect(remote).wait().unwrap();

    session.set_faults(FaultPlan::new(7).fail_irp_allocation(Nth::Every(1)));
    // The core's close IRP cannot be had: nothing is adopted.
    // SAFETY: the connection socket just given up, of this client, idle.
    let error = unsafe { ConnectionSocket::from_raw(&client, raw, AddressFamily::V4) }.unwrap_err();
    assert_eq!(error, wsk::Error::INSUFFICIENT_RESOURCES);
    assert_eq!(client.open_sockets(), 1, "still the caller's");
    session.set_faults(FaultPlan::new(7));

    // SAFETY: as above; the failed attempt changed nothing.
    let socket = unsafe { ConnectionSocket::from_raw(&client, raw, AddressFamily::V4) }.unwrap();
    session.set_faults(FaultPlan::new(7).fail_irp_allocation(Nth::Every(1)));
    // A request that needs a new IRP fails with the error, not a crash.
    // The adopted socket has no idle IRP yet: every request needs a new one.
    let results = [
        wsk::SocketOptions::keep_alive(&socket).wait().err(),
        wsk::SocketOptions::option_bytes(&socket, 0xffff, 0x1001, 64)
            .wait()
            .err(),
    ];
    session.set_faults(FaultPlan::new(7));
    assert_eq!(results, [Some(wsk::Error::INSUFFICIENT_RESOURCES); 2]);
    wsk::SocketOptions::keep_alive(&socket).wait().unwrap();
    drop((socket, next));
    client.shutdown().unwrap();
    session.finish();
}

#[test]
fn a_socket_given_up_and_closed_late_holds_the_deregistration_until_its_close() {
    // What into_raw's safety contract is about: the client's teardown cannot close a socket
    // given up, so WskDeregister waits for its owner's close (the verifier reports the
    // wait), and ends as soon as it comes.
    let session = Session::with_config(wsk_host::ProviderConfig {
        deregister_wait_report: std::time::Duration::from_millis(200),
        ..wsk_host::ProviderConfig::default()
    });
    let client = WskClient::register(driver(&session)).unwrap();
    let datagram = client
        .bind_datagram(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .wait()
        .unwrap();
    // SAFETY: closed below while the teardown waits (the test breaks the contract's order
    // on purpose, to see what it protects against).
    let raw = unsafe { datagram.into_raw() }.map_err(|(e, _)| e).unwrap();
    let raw_address = raw as usize;
    let teardown = std::thread::spawn(move || drop(client));
    std::thread::sleep(std::time::Duration::from_millis(600));
    assert!(
        !teardown.is_finished(),
        "WskDeregister waits for the socket"
    );
    assert_eq!(close_raw(raw_address as PWSK_SOCKET), STATUS_SUCCESS);
    teardown.join().unwrap();
    let (_, findings) = session.conclude();
    assert!(
        findings
            .iter()
            .all(|f| f.rule == Rule::DeregisterWithOpenSockets),
        "{findings:?}"
    );
    assert!(!findings.is_empty(), "the wait is reported");
}
