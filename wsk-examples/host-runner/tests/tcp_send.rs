//! `wsk_tcp_send` and its raw twin `wsk_tcp_send_raw`, with the same tests: the message
//! arrives whole at a std listener over IPv4 and IPv6, also when sends are partial; bad
//! parameters fail `DriverEntry` cleanly; a refused connection is reported; an unload while
//! the connect is in flight cancels it; nothing leaks.

use std::io::Read;
use std::net::TcpListener;
use std::time::Duration;

use wsk_host::{FaultPlan, RegValue, Session};
use wsk_host_runner::{Output, find, load};

const WAIT: Duration = Duration::from_secs(10);

/// Both drivers: the safe one and its raw twin.
const DRIVERS: [&str; 2] = ["wsk_tcp_send", "wsk_tcp_send_raw"];

fn send_to(name: &str, listener: &TcpListener, message: &str) -> Vec<u8> {
    let mut output = Output::new();
    let driver = find(name).unwrap();
    let loaded = load(
        driver,
        &[
            (
                "Server",
                RegValue::String(listener.local_addr().unwrap().to_string()),
            ),
            ("Message", RegValue::String(message.into())),
        ],
    )
    .expect("DriverEntry succeeds");
    let (mut peer, _) = listener.accept().unwrap();
    peer.set_read_timeout(Some(WAIT)).unwrap();
    let mut received = Vec::new();
    peer.read_to_end(&mut received).unwrap();
    let line = output.wait_for(&format!("{name}: sent"), WAIT);
    assert!(
        line.contains(&format!("sent {} bytes", message.len())),
        "{line}"
    );
    assert!(loaded.unload());
    received
}

#[test]
fn the_message_arrives_whole_over_ipv4_and_ipv6() {
    for name in DRIVERS {
        for address in ["127.0.0.1:0", "[::1]:0"] {
            let session = Session::start();
            let listener = TcpListener::bind(address).unwrap();
            let message = "GET / HTTP/1.0\r\n\r\n".repeat(100);
            assert_eq!(
                send_to(name, &listener, &message),
                message.as_bytes(),
                "{name}"
            );
            let report = session.finish();
            assert_eq!(report.bytes_sent, message.len() as u64);
        }
    }
}

#[test]
fn partial_sends_and_pending_completions_still_deliver_everything() {
    for name in DRIVERS {
        let session = Session::start();
        session.set_faults(
            FaultPlan::new(3)
                .partial_sends(7)
                .delay_completions(Duration::from_millis(1)),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let message = "0123456789abcdef".repeat(64);
        assert_eq!(
            send_to(name, &listener, &message),
            message.as_bytes(),
            "{name}"
        );
        session.finish();
    }
}

#[test]
fn a_bad_server_parameter_fails_driver_entry() {
    for name in DRIVERS {
        let session = Session::start();
        let driver = find(name).unwrap();
        for bad in ["not an address", "127.0.0.1", "[::1]:99999"] {
            let status = load(driver, &[("Server", RegValue::String(bad.into()))]).unwrap_err();
            assert_eq!(status, wsk_sys::STATUS_INVALID_PARAMETER, "{name}: {bad}");
        }
        // A REG_DWORD where a string belongs.
        let status = load(driver, &[("Server", RegValue::Dword(7))]).unwrap_err();
        assert_eq!(status, wsk_sys::STATUS_OBJECT_TYPE_MISMATCH, "{name}");
        session.finish();
    }
}

#[test]
fn a_refused_connection_is_reported_and_leaks_nothing() {
    for name in DRIVERS {
        let session = Session::start();
        session.set_faults(FaultPlan::new(4).refuse_connections());
        let mut output = Output::new();
        let loaded = load(
            find(name).unwrap(),
            &[("Server", RegValue::String("127.0.0.1:9".into()))],
        )
        .unwrap();
        let line = output.wait_for("failed", WAIT);
        // STATUS_CONNECTION_REFUSED, by name or by value.
        assert!(
            line.contains("CONNECTION_REFUSED") || line.contains("0xC0000236"),
            "{line}"
        );
        assert!(loaded.unload());
        session.finish();
    }
}

#[test]
fn unloading_while_the_connect_is_in_flight_cancels_it() {
    let session = Session::start();
    session.set_faults(FaultPlan::new(5).delay_completions(Duration::from_millis(200)));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut output = Output::new();
    let loaded = load(
        find("tcp-send").unwrap(),
        &[(
            "Server",
            RegValue::String(listener.local_addr().unwrap().to_string()),
        )],
    )
    .unwrap();
    assert!(loaded.unload());
    output.wait_for("wsk_tcp_send: unloaded", WAIT);
    assert!(!output.text().contains("sent "), "{}", output.text());
    session.finish();
}
