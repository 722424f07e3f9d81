//! Socket options through `wsk` on wsk-host: every typed option set, then read back through
//! the provider (which reads the host socket's own value); the byte forms; refusals.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

use wsk::{
    AddressFamily, ConnectionSocket, ErrorKind, ListenSocket, SocketOptions, StreamSocket,
    WskClient,
};
use wsk_host::Session;
use wsk_sys::{
    IPPROTO_TCP, SO_RCVBUF, SO_WSK_EVENT_CALLBACK, SO_WSK_SECURITY, SOL_SOCKET, TCP_NODELAY,
};

mod common;
use common::driver;

fn connected(client: &WskClient, v6: bool) -> (ConnectionSocket, TcpListener) {
    let listener = TcpListener::bind(if v6 { "[::1]:0" } else { "127.0.0.1:0" }).unwrap();
    let socket = client
        .connect(listener.local_addr().unwrap())
        .wait()
        .unwrap();
    (socket, listener)
}

#[test]
fn connection_options_read_back_what_was_set() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, _listener) = connected(&client, false);

    for value in [true, false] {
        socket.set_no_delay(value).wait().unwrap();
        assert_eq!(SocketOptions::no_delay(&socket).wait().unwrap(), value);
        SocketOptions::set_keep_alive(&socket, value)
            .wait()
            .unwrap();
        assert_eq!(socket.keep_alive().wait().unwrap(), value);
    }
    SocketOptions::set_keep_alive_time(&socket, 77)
        .wait()
        .unwrap();
    assert_eq!(socket.keep_alive_time().wait().unwrap(), 77);
    SocketOptions::set_keep_alive_interval(&socket, 9)
        .wait()
        .unwrap();
    assert_eq!(socket.keep_alive_interval().wait().unwrap(), 9);
    socket.set_keep_alive_retries(4).wait().unwrap();
    assert_eq!(socket.keep_alive_retries().wait().unwrap(), 4);

    SocketOptions::set_linger(&socket, Some(7)).wait().unwrap();
    assert_eq!(socket.linger().wait().unwrap(), Some(7));
    SocketOptions::set_linger(&socket, None).wait().unwrap();
    assert_eq!(socket.linger().wait().unwrap(), None);

    // The host may round buffer sizes up (Linux doubles them): at least what was asked.
    SocketOptions::set_send_buffer_size(&socket, 32_768)
        .wait()
        .unwrap();
    let send = socket.send_buffer_size().wait().unwrap();
    assert!(send >= 32_768, "send buffer {send}");
    SocketOptions::set_receive_buffer_size(&socket, 40_960)
        .wait()
        .unwrap();
    let receive = socket.receive_buffer_size().wait().unwrap();
    assert!(receive >= 40_960, "receive buffer {receive}");
    assert_ne!(send, receive, "each size is its own option");

    socket.set_ttl(17).wait().unwrap();
    assert_eq!(socket.ttl().wait().unwrap(), 17);
    socket.set_tos(0x10).wait().unwrap();
    assert_eq!(socket.tos().wait().unwrap(), 0x10);

    drop(socket);
    client.shutdown().unwrap();
    session.finish();
}

#[test]
fn ipv6_options_read_back_what_was_set() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, _listener) = connected(&client, true);
    socket.set_unicast_hops_v6(9).wait().unwrap();
    assert_eq!(socket.unicast_hops_v6().wait().unwrap(), 9);

    let listen = ListenSocket::create(&client, AddressFamily::V6)
        .wait()
        .unwrap();
    for value in [true, false] {
        SocketOptions::set_only_v6(&listen, value).wait().unwrap();
        assert_eq!(listen.only_v6().wait().unwrap(), value);
    }
    drop((socket, listen));
    client.shutdown().unwrap();
    session.finish();
}

#[test]
fn listen_and_stream_socket_address_options() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let listen = ListenSocket::create(&client, AddressFamily::V4)
        .wait()
        .unwrap();
    SocketOptions::set_reuse_address(&listen, true)
        .wait()
        .unwrap();
    assert!(listen.reuse_address().wait().unwrap());
    assert!(!listen.exclusive_address_use().wait().unwrap());
    SocketOptions::set_reuse_address(&listen, false)
        .wait()
        .unwrap();
    SocketOptions::set_exclusive_address_use(&listen, true)
        .wait()
        .unwrap();
    assert!(listen.exclusive_address_use().wait().unwrap());
    assert!(!listen.reuse_address().wait().unwrap());

    let stream = StreamSocket::create(&client, AddressFamily::V4)
        .wait()
        .unwrap();
    stream.set_reuse_address(true).wait().unwrap();
    assert!(stream.reuse_address().wait().unwrap());
    drop((listen, stream));
    client.shutdown().unwrap();
    session.finish();
}

#[test]
fn datagram_options_read_back_what_was_set() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let socket = client
        .bind_datagram(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .wait()
        .unwrap();
    for value in [true, false] {
        SocketOptions::set_broadcast(&socket, value).wait().unwrap();
        assert_eq!(socket.broadcast().wait().unwrap(), value);
        socket.set_multicast_loop_v4(value).wait().unwrap();
        assert_eq!(socket.multicast_loop_v4().wait().unwrap(), value);
    }
    socket.set_multicast_ttl_v4(5).wait().unwrap();
    assert_eq!(socket.multicast_ttl_v4().wait().unwrap(), 5);

    // Leaving a group never joined is the transport's error, not a silent success.
    let group = Ipv4Addr::new(239, 255, 42, 99);
    let error = socket
        .leave_multicast_v4(group, Ipv4Addr::LOCALHOST)
        .wait()
        .unwrap_err();
    assert_ne!(error.kind(), ErrorKind::NotSupported, "{error}");
    drop(socket);
    client.shutdown().unwrap();
    session.finish();
}

#[test]
fn multicast_join_and_leave_reach_the_transport() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let socket = client
        .bind_datagram(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))
        .wait()
        .unwrap();
    let group = Ipv4Addr::new(239, 255, 42, 98);
    match socket
        .join_multicast_v4(group, Ipv4Addr::UNSPECIFIED)
        .wait()
    {
        Ok(()) => {
            socket
                .leave_multicast_v4(group, Ipv4Addr::UNSPECIFIED)
                .wait()
                .unwrap();
            // Left: leaving again fails.
            assert!(
                socket
                    .leave_multicast_v4(group, Ipv4Addr::UNSPECIFIED)
                    .wait()
                    .is_err()
            );
        }
        // A machine without a multicast route refuses the join itself; what matters here
        // is that the request reached the transport (not a refusal of this crate's).
        Err(error) => assert_ne!(error.kind(), ErrorKind::NotSupported, "{error}"),
    }
    drop(socket);
    client.shutdown().unwrap();
    session.finish();
}

#[test]
fn option_bytes_report_the_output_length_and_the_size_needed() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, _listener) = connected(&client, false);

    socket
        .set_option_bytes(IPPROTO_TCP, TCP_NODELAY, &1u32.to_ne_bytes())
        .wait()
        .unwrap();
    let bytes = socket
        .option_bytes(IPPROTO_TCP, TCP_NODELAY, 64)
        .wait()
        .unwrap();
    assert_eq!(
        bytes.len(),
        4,
        "the output length is the option's, not the buffer's"
    );
    assert_eq!(u32::from_ne_bytes(bytes[..4].try_into().unwrap()), 1);

    let error = socket
        .option_bytes(SOL_SOCKET, SO_RCVBUF, 2)
        .wait()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidBufferSize);
    assert_eq!(error.needed_size(), Some(4), "{error}");
    assert!(error.to_string().contains("4 bytes needed"), "{error}");

    // A set with too short a value is the provider's error.
    let error = socket
        .set_option_bytes(IPPROTO_TCP, TCP_NODELAY, &[1])
        .wait()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidParameter);

    // Options carrying pointers never go through the safe byte forms.
    let error = socket
        .set_option_bytes(SOL_SOCKET, SO_WSK_EVENT_CALLBACK, &[0; 16])
        .wait()
        .unwrap_err();
    assert_eq!(error, wsk::Error::INVALID_PARAMETER);
    drop(socket);
    client.shutdown().unwrap();
    session.finish();
}

#[test]
fn options_of_a_closed_socket_fail_cleanly() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, _listener) = connected(&client, false);
    let pending = socket.keep_alive();
    socket.close().wait().unwrap();
    assert_eq!(pending.wait().unwrap_err().kind(), ErrorKind::SocketClosed);
    client.shutdown().unwrap();
    session.finish();
}

#[test]
fn options_set_through_wsk_reach_the_host_socket() {
    // Read back on the host socket itself, not through the provider's WskGetOption.
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, _listener) = connected(&client, false);
    let raw = socket.as_raw();
    socket.set_no_delay(true).wait().unwrap();
    socket.set_ttl(23).wait().unwrap();
    socket.set_tos(0x20).wait().unwrap();
    SocketOptions::set_keep_alive(&socket, true).wait().unwrap();
    socket.set_keep_alive_retries(6).wait().unwrap();
    SocketOptions::set_linger(&socket, Some(3)).wait().unwrap();
    let seen = session
        .with_host_socket(raw, |s| {
            (
                s.tcp_nodelay().unwrap(),
                s.ttl_v4().unwrap(),
                s.tos_v4().unwrap(),
                s.keepalive().unwrap(),
                s.tcp_keepalive_retries().unwrap(),
                s.linger().unwrap(),
            )
        })
        .expect("an open socket");
    assert_eq!(
        seen,
        (
            true,
            23,
            0x20,
            true,
            6,
            Some(std::time::Duration::from_secs(3))
        )
    );

    let datagram = client
        .bind_datagram(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .wait()
        .unwrap();
    datagram.set_multicast_ttl_v4(9).wait().unwrap();
    datagram.set_multicast_loop_v4(false).wait().unwrap();
    let seen = session
        .with_host_socket(datagram.as_raw(), |s| {
            (
                s.multicast_ttl_v4().unwrap(),
                s.multicast_loop_v4().unwrap(),
            )
        })
        .unwrap();
    assert_eq!(seen, (9, false));
    drop((socket, datagram));
    client.shutdown().unwrap();
    session.finish();
}

#[test]
fn option_requests_in_flight_dropped_forgotten_and_outlived_by_the_client() {
    use std::future::Future;
    use std::task::{Context, Waker};
    use wsk_host::{FaultPlan, Rule};

    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, _listener) = connected(&client, false);
    session.set_faults(FaultPlan::new(3).delay_completions(std::time::Duration::from_millis(100)));
    let mut cx = Context::from_waker(Waker::noop());

    // Dropped in flight: its buffer stays with the block until the completion.
    let mut dropped = Box::pin(socket.option_bytes(SOL_SOCKET, SO_RCVBUF, 4096));
    assert!(dropped.as_mut().poll(&mut cx).is_pending());
    drop(dropped);

    // Waited for: completes after the delay with the value.
    assert!(socket.receive_buffer_size().wait().unwrap() > 0);

    // Forgotten in flight, and the client dropped with one in flight: the teardown waits
    // for the completions (the provider completes every IRP), nothing hangs.
    let mut forgotten = Box::pin(socket.keep_alive());
    assert!(forgotten.as_mut().poll(&mut cx).is_pending());
    std::mem::forget(forgotten);
    let mut outlived = Box::pin(SocketOptions::set_linger(&socket, Some(1)));
    assert!(outlived.as_mut().poll(&mut cx).is_pending());
    drop(socket);
    drop(client);
    drop(outlived);
    let (_, findings) = session.conclude();
    // Exactly what the forgotten operation owned: its completion block (an IRP) and the
    // memory behind it.
    for finding in &findings {
        assert!(
            matches!(finding.rule, Rule::IrpLeaked | Rule::PoolLeaked),
            "unexpected finding: {finding:?}"
        );
    }
    assert!(findings.iter().any(|f| f.rule == Rule::IrpLeaked));
}

#[test]
fn the_four_byte_option_forms_refuse_options_whose_value_is_a_pointer() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (socket, _listener) = connected(&client, false);
    // A security descriptor or the event callbacks are pointers: a 4-byte value from safe
    // code would hand the provider a truncated one.
    for name in [SO_WSK_SECURITY, SO_WSK_EVENT_CALLBACK] {
        assert_eq!(
            socket.set_option_u32(SOL_SOCKET, name, 0x1234).wait(),
            Err(wsk::Error::INVALID_PARAMETER)
        );
        assert_eq!(
            socket.option(SOL_SOCKET, name).wait(),
            Err(wsk::Error::INVALID_PARAMETER)
        );
    }
    drop(socket);
    drop(client);
    session.finish();
}
