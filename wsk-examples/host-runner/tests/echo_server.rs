//! `wsk_echo_server` on IPv4 and IPv6: concurrent std clients get every byte back; the
//! third-party clients `nc` (netcat-openbsd) and `socat` do too (on Windows, which has
//! neither, a std client making their exchange); an unload with connections
//! open cancels everything and leaks nothing. A failed accept does not stop the server; it
//! fails to load when it can listen nowhere; `MaxConnections` and `IdleTimeoutMs` bound what
//! clients hold; a bad parameter is reported by name and why.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
#[cfg(unix)]
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wsk_host::{FaultPlan, Nth, RegValue, Session};
use wsk_host_runner::{Output, find, load};
use wsk_sys::{NTSTATUS, STATUS_INSUFFICIENT_RESOURCES};

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

/// The echo through command-line clients: `nc` and `socat` on Unix; on Windows, which has
/// neither, a std client making the same exchange (see [`clients_echo`]).
#[test]
fn netcat_and_socat_get_their_input_back() {
    let session = Session::start();
    let (loaded, _output, addresses) = start();
    let input = pattern(99, 64 * 1024);
    for address in &addresses {
        for (client, echoed) in clients_echo(address, &input) {
            assert_eq!(echoed.len(), input.len(), "{client} to {address}");
            assert!(echoed == input, "{client} to {address}: different bytes");
        }
    }
    assert!(loaded.unload());
    session.finish();
}

/// Sends `input` to `address` with `nc` and with `socat`, each shutting its write side down
/// at the end of the input and reading until the server closes; what each got back.
#[cfg(unix)]
fn clients_echo(address: &SocketAddr, input: &[u8]) -> Vec<(String, Vec<u8>)> {
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
    let mut echoed = Vec::new();
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
        let data = input.to_vec();
        let writer = std::thread::spawn(move || stdin.write_all(&data).unwrap());
        let result = child.wait_with_output().unwrap();
        writer.join().unwrap();
        assert!(
            result.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&result.stderr)
        );
        echoed.push((program.to_string(), result.stdout));
    }
    echoed
}

/// Windows has neither `nc` nor `socat`: the same exchange as theirs by a std client — the
/// whole input written from another thread while the echo is read, the write side shut
/// down at the end of the input, everything read until the server closes.
#[cfg(windows)]
fn clients_echo(address: &SocketAddr, input: &[u8]) -> Vec<(String, Vec<u8>)> {
    let stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut writing = stream.try_clone().unwrap();
    let data = input.to_vec();
    let writer = std::thread::spawn(move || {
        writing.write_all(&data).unwrap();
        writing.shutdown(Shutdown::Write).unwrap();
    });
    let mut echoed = Vec::new();
    (&stream).read_to_end(&mut echoed).unwrap();
    writer.join().unwrap();
    vec![("std client (half-close)".to_string(), echoed)]
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

/// Loads the server on an ephemeral port of 127.0.0.1 with `extra` parameters; returns the
/// driver, its output and its address.
fn start_v4(extra: &[(&str, RegValue)]) -> (wsk_host::LoadedDriver, Output, SocketAddr) {
    let mut output = Output::new();
    let mut parameters = vec![("Listen", RegValue::String("127.0.0.1:0".into()))];
    parameters.extend(extra.iter().cloned());
    let loaded = load(find("echo-server").unwrap(), &parameters).expect("DriverEntry succeeds");
    let line = output.wait_for("listening on 127.0.0.1:", WAIT);
    let address = line.rsplit(' ').next().unwrap().trim().parse().unwrap();
    (loaded, output, address)
}

/// Connects and echoes `ping` once; `None` when the server refused, closed or did not answer
/// within `within`.
fn try_ping(address: SocketAddr, within: Duration) -> Option<TcpStream> {
    let mut stream = TcpStream::connect_timeout(&address, within).ok()?;
    stream.set_read_timeout(Some(within)).unwrap();
    stream.write_all(b"ping").ok()?;
    let mut back = [0u8; 4];
    stream.read_exact(&mut back).ok()?;
    (&back == b"ping").then_some(stream)
}

/// Whether the server closed `stream` (end of stream or reset) within `within`.
fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(n) => n == 0,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// Issue 14, item 2: an accept that fails (here: the provider answers every accept with
/// `STATUS_INSUFFICIENT_RESOURCES`, and every IRP allocation fails, what Windows does under
/// memory pressure) is retried with backoff; once memory is back the server serves again.
/// (IRP failures alone do not make an accept fail for sure: the socket it creates may take a
/// closed socket's core, IRP included, and the listener's request its block, both without
/// allocating.)
#[test]
fn a_failed_accept_does_not_stop_the_server() {
    let session = Session::start();
    let (loaded, mut output, address) = start_v4(&[]);
    assert!(
        try_ping(address, WAIT).is_some(),
        "served before the faults"
    );
    session.set_faults(
        FaultPlan::new(1)
            .fail_irp_allocation(Nth::Every(1))
            .fail_requests("WskAccept", STATUS_INSUFFICIENT_RESOURCES),
    );
    // Connections come and fail until an accept has failed.
    let deadline = Instant::now() + WAIT;
    while !output.text().contains("accept on 127.0.0.1") {
        assert!(
            Instant::now() < deadline,
            "no accept failed under the faults; printed:\n{}",
            output.text()
        );
        let _ = try_ping(address, Duration::from_millis(200));
    }
    let line = output.wait_for("accept on 127.0.0.1", WAIT);
    assert!(line.contains("retrying in"), "{line}");
    session.set_faults(FaultPlan::new(2));
    let deadline = Instant::now() + WAIT;
    while try_ping(address, Duration::from_secs(2)).is_none() {
        assert!(
            Instant::now() < deadline,
            "the server stopped serving after a failed accept; printed:\n{}",
            output.text()
        );
    }
    assert!(loaded.unload());
    session.finish();
}

/// Issue 14, item 6: when no address can be listened on, DriverEntry fails (it used to
/// succeed and stay loaded serving nothing); one address that works is enough.
#[test]
fn driver_entry_fails_when_nothing_can_be_listened_on() {
    let session = Session::start();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_address = taken.local_addr().unwrap().to_string();
    let mut output = Output::new();
    let status = load(
        find("echo-server").unwrap(),
        &[("Listen", RegValue::String(taken_address.clone()))],
    )
    .expect_err("DriverEntry fails: the only address is in use");
    assert_ne!(status, wsk_sys::STATUS_SUCCESS);
    let line = output.wait_for("cannot listen on", WAIT);
    assert!(line.contains(&taken_address), "{line}");
    output.wait_for("no address could be listened on", WAIT);
    // One taken, one free: it loads and serves the free one.
    let loaded = load(
        find("echo-server").unwrap(),
        &[(
            "Listen",
            RegValue::String(format!("{taken_address},127.0.0.1:0")),
        )],
    )
    .expect("DriverEntry succeeds with one address listening");
    let line = output.wait_for("listening on 127.0.0.1:", WAIT);
    let address: SocketAddr = line.rsplit(' ').next().unwrap().trim().parse().unwrap();
    assert!(try_ping(address, WAIT).is_some());
    assert!(loaded.unload());
    session.finish();
}

/// Issue 14, item 10: `MaxConnections` caps the connections served; one beyond is closed at
/// once, and a slot freed is used again.
#[test]
fn connections_beyond_max_connections_are_closed() {
    let session = Session::start();
    let (loaded, mut output, address) = start_v4(&[("MaxConnections", RegValue::Dword(2))]);
    let first = try_ping(address, WAIT).expect("first served");
    let _second = try_ping(address, WAIT).expect("second served");
    let mut third = TcpStream::connect(address).unwrap();
    assert!(
        closed_by_server(&mut third, WAIT),
        "the third connection is closed"
    );
    output.wait_for("(MaxConnections)", WAIT);
    drop(first);
    let deadline = Instant::now() + WAIT;
    while try_ping(address, Duration::from_secs(1)).is_none() {
        assert!(
            Instant::now() < deadline,
            "the freed slot is not used again"
        );
    }
    assert!(loaded.unload());
    session.finish();
}

/// Issue 14, item 10: `IdleTimeoutMs` closes a connection whose peer stays silent.
#[test]
fn an_idle_connection_is_closed_after_idle_timeout_ms() {
    let session = Session::start();
    let (loaded, mut output, address) = start_v4(&[("IdleTimeoutMs", RegValue::Dword(300))]);
    let started = Instant::now();
    let mut idle = try_ping(address, WAIT).expect("served");
    assert!(closed_by_server(&mut idle, WAIT), "closed when idle");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(250),
        "closed too early: {elapsed:?}"
    );
    let line = output.wait_for("idle for 300 ms", WAIT);
    assert!(line.contains("closed after echoing 4 bytes"), "{line}");
    // A busy connection is not closed: each echo re-arms the timeout.
    let mut busy = try_ping(address, WAIT).expect("served");
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(100));
        busy.write_all(b"more").unwrap();
        let mut back = [0u8; 4];
        busy.read_exact(&mut back).unwrap();
    }
    assert!(loaded.unload());
    session.finish();
}

/// Parameters, the status DriverEntry returns for them, the lines it prints.
type Case = (Vec<(&'static str, RegValue)>, NTSTATUS, Vec<String>);

/// Issue 14, item 7: a parameter error names the parameter and says why.
#[test]
fn parameter_errors_name_the_parameter_and_why() {
    let session = Session::start();
    let cases: Vec<Case> = vec![
        (
            vec![("Listen", RegValue::String("1".repeat(5000)))],
            wsk_sys::STATUS_INVALID_PARAMETER,
            vec!["parameter Listen: its value is 10002 bytes, over the 4096-byte limit".into()],
        ),
        (
            vec![("Listen", RegValue::Dword(7007))],
            wsk_sys::STATUS_OBJECT_TYPE_MISMATCH,
            vec!["parameter Listen: it is a REG_DWORD value, expected a REG_SZ".into()],
        ),
        (
            vec![(
                "Listen",
                RegValue::String("127.0.0.1:7, localhost:7".into()),
            )],
            wsk_sys::STATUS_INVALID_PARAMETER,
            vec!["parameter Listen: item `localhost:7` is not an IP address with a port".into()],
        ),
        (
            vec![
                ("Listen", RegValue::String("127.0.0.1:0".into())),
                ("MaxConnections", RegValue::String("many".into())),
            ],
            wsk_sys::STATUS_OBJECT_TYPE_MISMATCH,
            vec!["parameter MaxConnections: it is a REG_SZ value, expected a REG_DWORD".into()],
        ),
        (
            vec![
                ("Listen", RegValue::String("127.0.0.1:0".into())),
                ("MaxConnections", RegValue::Dword(0)),
            ],
            wsk_sys::STATUS_INVALID_PARAMETER,
            vec!["parameter MaxConnections: 0 is out of range (expected 1 to 1000000)".into()],
        ),
    ];
    // The values stay in the session's registry from one load to the next: each case sets
    // every value it depends on.
    for (parameters, expected, lines) in cases {
        let mut output = Output::new();
        let status = load(find("echo-server").unwrap(), &parameters).unwrap_err();
        assert_eq!(status, expected, "{parameters:?}");
        for line in lines {
            output.wait_for(&line, WAIT);
        }
    }
    session.finish();
}
