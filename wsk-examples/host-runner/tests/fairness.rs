//! The provider is fair: one client that keeps a socket busy (a TCP client that sends and
//! reads as fast as it can, a UDP flood) does not starve the other sockets of the same driver.
//! Each test measures what a polite client sees while the hog runs and prints the figures.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wsk_host::{RegValue, Session};
use wsk_host_runner::peers::{polite_tcp, tcp_hog};
use wsk_host_runner::{Output, find, load};

const WAIT: Duration = Duration::from_secs(20);
/// How long a polite client waits for one echo before the test fails.
const ECHO_DEADLINE: Duration = Duration::from_secs(5);
/// The p99 echo latency a polite client must see while the hog runs (generous: a loaded CI
/// machine; a starved client sees none at all).
const P99_LIMIT: Duration = Duration::from_millis(500);

/// The addresses a driver printed (`listening on ADDRESS`), one per prefix.
fn addresses(output: &mut Output, prefixes: &[&str]) -> Vec<SocketAddr> {
    prefixes
        .iter()
        .map(|prefix| {
            let line = output.wait_for(prefix, WAIT);
            line.rsplit(' ').next().unwrap().trim().parse().unwrap()
        })
        .collect()
}

/// The 99th percentile of `samples` (sorted in place).
fn p99(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[(samples.len() * 99 / 100).min(samples.len() - 1)]
}

#[test]
fn a_hog_does_not_starve_polite_echo_clients() {
    let session = Session::start();
    let mut output = Output::new();
    let loaded = load(
        find("echo-server").unwrap(),
        &[("Listen", RegValue::String("127.0.0.1:0".into()))],
    )
    .expect("DriverEntry succeeds");
    let address = addresses(&mut output, &["listening on 127.0.0.1:"])[0];
    let stop = Arc::new(AtomicBool::new(false));
    let hog = tcp_hog(address, Arc::clone(&stop), |_| {});
    // Let the hog saturate the server first.
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let polite: Vec<_> = (0..3)
        .map(|_| std::thread::spawn(move || polite_tcp(address, 200, |_| {})))
        .collect();
    let mut latencies: Vec<Duration> = polite
        .into_iter()
        .flat_map(|client| client.join().unwrap())
        .collect();
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let hogged = hog.join().unwrap();
    let p99 = p99(&mut latencies);
    eprintln!(
        "fairness: 3 polite clients x 200 echoes in {elapsed:.2?} while a hog had {} MB \
         echoed: p99 {p99:.2?}, max {:.2?}",
        hogged / 1_000_000,
        latencies.last().unwrap()
    );
    assert!(
        p99 <= P99_LIMIT,
        "p99 echo latency {p99:?} over {P99_LIMIT:?}"
    );
    assert!(hogged > 0, "the hog was served too");
    assert!(loaded.unload());
    output.wait_for("wsk_echo_server: unloaded", WAIT);
    session.finish();
}

#[test]
fn an_ipv4_udp_flood_does_not_stop_the_ipv6_socket() {
    let session = Session::start();
    let mut output = Output::new();
    let loaded = load(
        find("udp-echo").unwrap(),
        &[("Listen", RegValue::String("127.0.0.1:0,[::1]:0".into()))],
    )
    .expect("DriverEntry succeeds");
    let servers = addresses(
        &mut output,
        &["listening on 127.0.0.1:", "listening on [::1]:"],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let flood_stop = Arc::clone(&stop);
    let v4 = servers[0];
    let flood = std::thread::spawn(move || {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        let datagram = [0u8; 512];
        let mut sent = 0u64;
        let mut buf = [0u8; 2048];
        while !flood_stop.load(Ordering::Relaxed) {
            if socket.send_to(&datagram, v4).is_ok() {
                sent += 1;
            }
            // Drain the echoes so that the flood's own receive buffer never fills.
            while socket.recv_from(&mut buf).is_ok() {}
        }
        sent
    });
    std::thread::sleep(Duration::from_millis(300));
    let socket = UdpSocket::bind("[::1]:0").unwrap();
    socket.set_read_timeout(Some(ECHO_DEADLINE)).unwrap();
    let mut latencies = Vec::new();
    let mut buf = [0u8; 64];
    for round in 0..100u32 {
        let message = round.to_le_bytes();
        let started = Instant::now();
        socket.send_to(&message, servers[1]).unwrap();
        let (n, _) = socket.recv_from(&mut buf).unwrap_or_else(|e| {
            panic!("round {round}: no IPv6 echo within {ECHO_DEADLINE:?} during the flood: {e}")
        });
        assert_eq!(&buf[..n], &message);
        latencies.push(started.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    let flooded = flood.join().unwrap();
    let p99 = p99(&mut latencies);
    eprintln!(
        "fairness: 100 IPv6 echoes during an IPv4 flood of {flooded} datagrams: p99 {p99:.2?}"
    );
    assert!(
        p99 <= P99_LIMIT,
        "p99 IPv6 echo latency {p99:?} over {P99_LIMIT:?}"
    );
    assert!(loaded.unload());
    output.wait_for("wsk_udp_echo: unloaded", WAIT);
    session.finish();
}
