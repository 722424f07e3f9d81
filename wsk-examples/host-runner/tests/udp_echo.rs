//! `wsk_udp_echo` on IPv4 and IPv6: every datagram comes back to its sender, whole, from the
//! address it was sent to; an unload cancels the pending receives and leaks nothing; it
//! fails to load when it can bind nothing.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use wsk_host::{RegValue, Session};
use wsk_host_runner::{Output, find, load};

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn datagrams_come_back_whole_over_ipv4_and_ipv6() {
    let session = Session::start();
    let mut output = Output::new();
    let loaded = load(
        find("udp-echo").unwrap(),
        &[("Listen", RegValue::String("127.0.0.1:0,[::1]:0".into()))],
    )
    .expect("DriverEntry succeeds");
    let mut servers: Vec<SocketAddr> = Vec::new();
    for family in ["listening on 127.0.0.1:", "listening on [::1]:"] {
        let line = output.wait_for(family, WAIT);
        servers.push(line.rsplit(' ').next().unwrap().trim().parse().unwrap());
    }
    for server in &servers {
        let local = if server.is_ipv4() {
            "127.0.0.1:0"
        } else {
            "[::1]:0"
        };
        let socket = UdpSocket::bind(local).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        for size in [1usize, 100, 1400, 8000, 65_000] {
            let datagram: Vec<u8> = (0..size).map(|i| (i * 7 + size) as u8).collect();
            socket.send_to(&datagram, server).unwrap();
            let mut back = vec![0u8; 65_536];
            let (n, from) = socket.recv_from(&mut back).unwrap();
            assert_eq!(
                from, *server,
                "the echo comes from the address it was sent to"
            );
            assert_eq!(
                &back[..n],
                &datagram[..],
                "{size}-byte datagram via {server}"
            );
        }
    }
    // Two clients at once: each gets its own datagrams.
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    for socket in [&a, &b] {
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
    }
    a.send_to(b"from a", servers[0]).unwrap();
    b.send_to(b"from b", servers[0]).unwrap();
    let mut buf = [0u8; 16];
    let n = a.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"from a");
    let n = b.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"from b");

    // The driver re-posts each socket's receive after its echo completes: wait for both
    // before unloading, so the unload has two pending receives to cancel.
    assert!(
        session.wait_for_queued_requests(2, WAIT),
        "both sockets have a receive pending"
    );
    assert!(loaded.unload());
    output.wait_for("wsk_udp_echo: unloaded", WAIT);
    let report = session.finish();
    assert!(
        report.cancelled >= 2,
        "the two pending receives were cancelled"
    );
}

/// Issue 14, item 6: when no address can be bound, DriverEntry fails (it used to succeed
/// and stay loaded serving nothing); one address that works is enough.
#[test]
fn driver_entry_fails_when_no_address_can_be_bound() {
    let session = Session::start();
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let taken_address = taken.local_addr().unwrap().to_string();
    let mut output = Output::new();
    let status = load(
        find("udp-echo").unwrap(),
        &[("Listen", RegValue::String(taken_address.clone()))],
    )
    .expect_err("DriverEntry fails: the only address is in use");
    assert_ne!(status, wsk_sys::STATUS_SUCCESS);
    let line = output.wait_for("cannot bind", WAIT);
    assert!(line.contains(&taken_address), "{line}");
    output.wait_for("no address could be bound", WAIT);
    // One taken, one free: it loads, reports the taken one and serves the free one.
    let loaded = load(
        find("udp-echo").unwrap(),
        &[(
            "Listen",
            RegValue::String(format!("{taken_address},127.0.0.1:0")),
        )],
    )
    .expect("DriverEntry succeeds with one address bound");
    let line = output.wait_for("listening on 127.0.0.1:", WAIT);
    let server: SocketAddr = line.rsplit(' ').next().unwrap().trim().parse().unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    client.send_to(b"still here", server).unwrap();
    let mut back = [0u8; 16];
    let n = client.recv(&mut back).unwrap();
    assert_eq!(&back[..n], b"still here");
    assert!(loaded.unload());
    session.finish();
}

/// Issue 14, item 9: a zero-length datagram is valid and comes back, like any other.
#[test]
fn zero_length_datagrams_are_echoed() {
    let session = Session::start();
    let mut output = Output::new();
    let loaded = load(
        find("udp-echo").unwrap(),
        &[("Listen", RegValue::String("127.0.0.1:0".into()))],
    )
    .expect("DriverEntry succeeds");
    let line = output.wait_for("listening on 127.0.0.1:", WAIT);
    let server: SocketAddr = line.rsplit(' ').next().unwrap().trim().parse().unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    for _ in 0..3 {
        client.send_to(b"", server).unwrap();
        let mut back = [0u8; 16];
        let (n, from) = client
            .recv_from(&mut back)
            .expect("the empty datagram comes back");
        assert_eq!((n, from), (0, server));
    }
    client.send_to(b"after", server).unwrap();
    let mut back = [0u8; 16];
    let n = client.recv(&mut back).unwrap();
    assert_eq!(&back[..n], b"after");
    assert!(loaded.unload());
    session.finish();
}
