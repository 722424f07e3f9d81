//! `wsk_echo_server` on IPv4 and IPv6: concurrent std clients get every byte back; the
//! third-party clients `nc` (netcat-openbsd) and `socat` do too; an unload with connections
//! open cancels everything and leaks nothing.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use wsk_host::{RegValue, Session};
use wsk_host_runner::{Output, find, load};

const WAIT: Duration = Duration::from_secs(20);

/// Loads the server on an ephemeral port of 127.0.0.1 and of ::1; returns the driver and
/// the two addresses it printed.
fn start() -> (wsk_host::LoadedDriver, Output, Vec<SocketAddr>) {
    let mut output = Output::new();
    let loaded = load(
        find("echo-server").unwrap(),
        &[("Listen", RegValue::String("127.0.0.1:0, [::1]:0".into()))],
    )
    .expect("DriverEntry succeeds");
    let mut addresses = Vec::new();
    for family in ["listening on 127.0.0.1:", "listening on [::1]:"] {
        let line = output.wait_for(family, WAIT);
        let address = line.rsplit(' ').next().unwrap().trim();
        addresses.push(address.parse().unwrap());
    }
    (loaded, output, addresses)
}

/// Sends `data` from one thread while reading the echo in another; returns what came back.
fn round_trip(address: SocketAddr, data: Vec<u8>) -> Vec<u8> {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        writer.write_all(&data).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut echoed = Vec::new();
    stream.read_to_end(&mut echoed).unwrap();
    sender.join().unwrap();
    echoed
}

fn pattern(seed: u32, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}

#[test]
fn concurrent_std_clients_get_every_byte_back_over_ipv4_and_ipv6() {
    let session = Session::start();
    let (loaded, mut output, addresses) = start();
    let clients: Vec<_> = (0..8u32)
        .map(|i| {
            let address = addresses[i as usize % 2];
            std::thread::spawn(move || {
                let data = pattern(i, 256 * 1024 + i as usize * 1000);
                assert_eq!(
                    round_trip(address, data.clone()),
                    data,
                    "client {i} to {address}"
                );
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    output.wait_for("closed after echoing", WAIT);
    assert!(loaded.unload());
    let report = session.finish();
    assert_eq!(report.sockets_created, report.sockets_closed);
}

#[test]
fn netcat_and_socat_get_their_input_back() {
    let session = Session::start();
    let (loaded, _output, addresses) = start();
    let input = pattern(99, 64 * 1024);
    for address in &addresses {
        let host = address.ip().to_string();
        let port = address.port().to_string();
        let socat_address = if address.is_ipv4() {
            format!("TCP4:{host}:{port}")
        } else {
            format!("TCP6:[{host}]:{port}")
        };
        let clients: [(&str, Vec<String>); 2] = [
            // -N: shut the connection's write side down at the end of the input, then read
            // until the server closes.
            ("nc", vec!["-N".into(), host.clone(), port.clone()]),
            (
                "socat",
                vec!["-t".into(), "10".into(), "-".into(), socat_address],
            ),
        ];
        for (program, args) in clients {
            let mut child = Command::new(program)
                .args(&args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("{program} must be installed (cargo xtask test installs it): {e}")
                });
            let mut stdin = child.stdin.take().unwrap();
            let data = input.clone();
            let writer = std::thread::spawn(move || stdin.write_all(&data).unwrap());
            let result = child.wait_with_output().unwrap();
            writer.join().unwrap();
            assert!(
                result.status.success(),
                "{program} {args:?}: {}",
                String::from_utf8_lossy(&result.stderr)
            );
            assert_eq!(result.stdout.len(), input.len(), "{program} to {address}");
            assert!(
                result.stdout == input,
                "{program} to {address}: different bytes"
            );
        }
    }
    assert!(loaded.unload());
    session.finish();
}

#[test]
fn unloading_with_connections_open_closes_them_and_leaks_nothing() {
    let session = Session::start();
    let (loaded, mut output, addresses) = start();
    let mut idle: Vec<TcpStream> = addresses
        .iter()
        .map(|a| TcpStream::connect(a).unwrap())
        .collect();
    // Make sure the connections are being served (a receive is pending on each).
    for stream in &mut idle {
        stream.write_all(b"ping").unwrap();
        let mut back = [0u8; 4];
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"ping");
    }
    // The server re-posts each receive after its echo completes, and an accept after each
    // connection: wait for all four before unloading.
    assert!(
        session.wait_for_queued_requests(4, WAIT),
        "2 accepts and 2 receives pending"
    );
    assert!(loaded.unload());
    output.wait_for("wsk_echo_server: unloaded", WAIT);
    for stream in &mut idle {
        let mut byte = [0u8; 1];
        // Closed by the server: end of stream or a reset.
        match stream.read(&mut byte) {
            Ok(n) => assert_eq!(n, 0),
            Err(e) => assert_ne!(e.kind(), std::io::ErrorKind::WouldBlock, "still open"),
        }
    }
    let report = session.finish();
    assert!(
        report.cancelled >= 4,
        "2 accepts and 2 receives cancelled: {report:?}"
    );
}

#[test]
fn a_bad_listen_parameter_fails_driver_entry() {
    let session = Session::start();
    for bad in ["", "localhost:7", "127.0.0.1:7,", "[::1]"] {
        let status = load(
            find("echo-server").unwrap(),
            &[("Listen", RegValue::String(bad.into()))],
        )
        .unwrap_err();
        assert_eq!(status, wsk_sys::STATUS_INVALID_PARAMETER, "`{bad}`");
    }
    session.finish();
}
