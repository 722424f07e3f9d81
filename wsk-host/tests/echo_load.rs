//! Load: 64 concurrent connections, 1 MiB each, through an echo server written in raw
//! `wsk-sys` (completion-routine chains, one IRP and one buffer per connection), over
//! loopback on IPv4 and IPv6. Every byte comes back in order, every connection ends with a
//! graceful disconnect and a close, and the session ends with nothing leaked. Bounded in
//! time: every wait has a deadline. Throughput is measured by `cargo bench -p wsk-host`,
//! not here.

mod common;

use std::time::Duration;

use common::clients::Clients;
use common::echo::{EchoServer, Outcome};
use wsk_host::{CompletionMode, FaultPlan, Session};
use wsk_sys::STATUS_SUCCESS;

const CONNECTIONS: usize = 64;
const BYTES: usize = 1024 * 1024;
const DEADLINE: Duration = Duration::from_secs(120);

/// Runs the load against a raw echo server on `local`; returns the session's report.
fn echo_load(local: &str, faults: Option<FaultPlan>) -> wsk_host::Report {
    let session = Session::start();
    if let Some(plan) = faults {
        session.set_faults(plan);
    }
    let mut server = EchoServer::start(local.parse().unwrap(), 16 * 1024);
    let clients = Clients::start(server.address(), CONNECTIONS, BYTES, DEADLINE);
    server.accept(CONNECTIONS);
    let outcomes = server.wait(DEADLINE);
    assert_eq!(clients.join(), (CONNECTIONS * BYTES) as u64);
    let expected = Outcome {
        status: STATUS_SUCCESS,
        echoed: BYTES as u64,
    };
    for (index, outcome) in outcomes.iter().enumerate() {
        assert_eq!(*outcome, expected, "connection {index}");
    }
    drop(server);
    let report = session.finish();
    // One IRP per connection plus the listener's, whatever the number of requests.
    assert_eq!(report.irps_allocated, CONNECTIONS as u64 + 1, "{report:?}");
    assert_eq!(report.bytes_received, (CONNECTIONS * BYTES) as u64);
    assert_eq!(report.bytes_sent, (CONNECTIONS * BYTES) as u64);
    report
}

#[test]
fn sixty_four_connections_of_a_mebibyte_echo_byte_exact_over_ipv4() {
    echo_load("127.0.0.1:0", None);
}

#[test]
fn sixty_four_connections_of_a_mebibyte_echo_byte_exact_over_ipv6() {
    echo_load("[::1]:0", None);
}

#[test]
fn the_load_survives_partial_sends_and_mixed_inline_and_pending_completions() {
    let report = echo_load(
        "127.0.0.1:0",
        Some(
            FaultPlan::new(0x5eed)
                .partial_sends(1000)
                .completion(CompletionMode::Mixed),
        ),
    );
    assert!(
        report.completed_inline > 0 && report.completed_pending > 0,
        "{report:?}"
    );
}
