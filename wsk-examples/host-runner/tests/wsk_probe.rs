//! `wsk_probe`: on wsk-host every row passes and nothing leaks; the table parses; a failed
//! operation fails its row only; a provider with Wine's gaps (requests returned
//! `STATUS_NOT_IMPLEMENTED` without being completed, no datagram or stream sockets) gets
//! `not completed` rows, and `DriverEntry` and the unload still end, leaking only what those
//! requests hold; a client-level request abandoned by the provider does not hang the
//! teardown either; bad parameters fail `DriverEntry`.

use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use wsk_host::{FaultPlan, Nth, RegValue, Rule, Session};
use wsk_host_runner::probe_table::{Api, Completion, Table, Verdict};
use wsk_host_runner::{Output, find, load};
use wsk_sys::{STATUS_INVALID_PARAMETER, STATUS_NOT_IMPLEMENTED, STATUS_NOT_SUPPORTED};

/// Every row the probe prints on a provider that has everything (no `Peer`).
const ROWS: &[&str] = &[
    "WskRegister+WskCaptureProviderNPI",
    "raw WskRegister+WskCaptureProviderNPI",
    "WskSocket(listen)",
    "WskBind(listen)",
    "WskGetLocalAddress(listen)",
    "WskSocket(connection)",
    "WskBind(connection)",
    "WskConnect",
    "WskAccept",
    "WskGetLocalAddress(connection)",
    "WskGetRemoteAddress",
    "WskSend",
    "WskReceive",
    "WskSend(vectored)",
    "WskReceive(vectored)",
    "WskControlSocket(set SO_RCVBUF)",
    "WskControlSocket(get SO_RCVBUF)",
    "WskDisconnect",
    "raw WskSocketConnect",
    "raw WskCloseSocket(connection)",
    "WskCloseSocket(connection)",
    "WskCloseSocket(listen)",
    "event accept",
    "event receive",
    "event disconnect",
    "WskSocket+WskBind(datagram)",
    "WskGetLocalAddress(datagram)",
    "WskSendTo",
    "WskReceiveFrom",
    "event receive-from",
    "WskCloseSocket(datagram)",
    "WskSocket(stream)",
    "WskBind(stream)",
    "WskListen",
    "WskGetLocalAddress(stream)",
    "WskAccept(stream)",
    "WskCloseSocket(stream)",
    "WskGetAddressInfo(localhost)",
    "WskGetAddressInfo(127.0.0.1)",
    "raw WskSocket(basic)",
    "raw WskControlSocket(basic, get SO_RCVBUF)",
    "raw WskCloseSocket(basic)",
    "raw WskReleaseProviderNPI+WskDeregister",
    "WskReleaseProviderNPI+WskDeregister",
];

/// More IRP allocations than a run of the probe makes.
const IRP_CALLS: u64 = 48;
/// More MDL allocations than a run of the probe makes.
const MDL_CALLS: u64 = 24;
/// More pool allocations than a run of the probe makes.
const POOL_CALLS: u64 = 200;

/// Loads the probe with `parameters`, parses its table, unloads it; the table and how long
/// `DriverEntry` took.
fn probe(parameters: &[(&str, RegValue)]) -> (Table, Duration) {
    let mut output = Output::new();
    let started = Instant::now();
    let loaded = load(find("wsk_probe").unwrap(), parameters).expect("DriverEntry succeeds");
    let took = started.elapsed();
    let table =
        Table::parse(output.text()).unwrap_or_else(|e| panic!("{e}; printed:\n{}", output.text()));
    assert!(loaded.unload(), "the driver has an unload routine");
    output.wait_for("wsk_probe: unloaded", Duration::from_secs(5));
    (table, took)
}

fn show(table: &Table) -> String {
    table
        .rows
        .iter()
        .map(|r| format!("{r:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The lowest port of the system's ephemeral range: ports the kernel picks by itself (a bind
/// to port 0, a connect's local port) come from there. Linux's is in
/// `/proc/sys/net/ipv4/ip_local_port_range` (32768 by default); Windows' starts at 49152.
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// Nine consecutive ports free on 127.0.0.1 (TCP and UDP), for the probe's fixed ports. They
/// are taken below the ephemeral range, where no port is handed out by the kernel to the
/// tests running alongside (which bind port 0 and connect all the time): so ports free when
/// checked stay free until the probe binds them. Each call starts from another place
/// (process and call count), as the tests of this binary run at once.
fn free_ports() -> u16 {
    static CALLS: AtomicU32 = AtomicU32::new(0);
    const FIRST: u32 = 10_000;
    let span = u32::from(ephemeral_low()).saturating_sub(FIRST + 9).max(1);
    let seed = std::process::id().wrapping_mul(7919);
    for _ in 0..200 {
        let call = CALLS.fetch_add(1, Ordering::Relaxed);
        let base = FIRST + (seed.wrapping_add(call.wrapping_mul(613)) % span);
        let base = u16::try_from(base).expect("below the ephemeral range");
        let free = (base..base + 9).all(|port| {
            TcpListener::bind(("127.0.0.1", port)).is_ok()
                && UdpSocket::bind(("127.0.0.1", port)).is_ok()
        });
        if free {
            return base;
        }
    }
    panic!("no 9 free ports in a row on 127.0.0.1 below the ephemeral range");
}

#[test]
fn every_row_passes_on_wsk_host_and_nothing_leaks() {
    let session = Session::start();
    let (table, _) = probe(&[("DeadlineMs", RegValue::Dword(5000))]);
    let names: Vec<&str> = table.rows.iter().map(|r| r.operation.as_str()).collect();
    assert_eq!(names, ROWS, "{}", show(&table));
    assert!(table.not_passed().is_empty(), "{}", show(&table));
    for row in &table.rows {
        assert_eq!(row.completion, Completion::Completed, "{row:?}");
        assert_eq!(row.status, "STATUS_SUCCESS", "{row:?}");
        let raw = row.operation.starts_with("raw ");
        assert_eq!(row.api == Api::Raw, raw, "{row:?}");
    }
    let report = session.finish();
    // The allocation sweep below covers every allocation of a run.
    assert!(report.irps_allocated <= IRP_CALLS, "{report:?}");
    assert!(report.mdls_allocated <= MDL_CALLS, "{report:?}");
    assert!(report.pool_allocations <= POOL_CALLS, "{report:?}");
}

#[test]
fn fixed_ports_work_as_ephemeral_ones() {
    let session = Session::start();
    let base = free_ports();
    let (table, _) = probe(&[("ListenPort", RegValue::Dword(u32::from(base)))]);
    assert!(table.not_passed().is_empty(), "{}", show(&table));
    let listen = table.row("WskGetLocalAddress(listen)").unwrap();
    assert_eq!(listen.note, format!("127.0.0.1:{base}"), "{listen:?}");
    session.finish();
}

#[test]
fn routines_named_unimplemented_skip_their_rows_only() {
    let session = Session::start();
    let (table, _) = probe(&[(
        "Unimplemented",
        RegValue::String("IoBuildPartialMdl".into()),
    )]);
    let names: Vec<&str> = table.rows.iter().map(|r| r.operation.as_str()).collect();
    assert_eq!(names, ROWS, "{}", show(&table));
    let skipped: Vec<&str> = table
        .not_passed()
        .iter()
        .map(|r| r.operation.as_str())
        .collect();
    assert_eq!(
        skipped,
        ["WskSend(vectored)", "WskReceive(vectored)"],
        "{}",
        show(&table)
    );
    for operation in skipped {
        let row = table.row(operation).unwrap();
        assert_eq!(row.verdict, Verdict::Skip, "{row:?}");
        assert_eq!(row.completion, Completion::NotRun, "{row:?}");
        assert!(row.note.contains("IoBuildPartialMdl"), "{row:?}");
    }
    session.finish();
}

#[test]
fn the_peer_gets_its_line() {
    let session = Session::start();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let peer = listener.local_addr().unwrap().to_string();
    let reader = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut received = Vec::new();
        stream.read_to_end(&mut received).unwrap();
        received
    });
    let (table, _) = probe(&[("Peer", RegValue::String(peer))]);
    assert!(table.not_passed().is_empty(), "{}", show(&table));
    for row in ["peer WskConnect", "peer WskSend"] {
        assert_eq!(table.row(row).unwrap().verdict, Verdict::Pass, "{row}");
    }
    assert_eq!(reader.join().unwrap(), b"wsk_probe: hello\n");
    session.finish();
}

#[test]
fn a_failing_operation_fails_its_row_only() {
    let session = Session::start();
    session.set_faults(
        FaultPlan::new(1)
            .fail_requests("WskGetRemoteAddress", STATUS_NOT_SUPPORTED)
            .fail_requests("WskSocket(basic)", STATUS_NOT_SUPPORTED),
    );
    let (table, _) = probe(&[]);
    let failed: Vec<&str> = table
        .rows
        .iter()
        .filter(|r| r.verdict == Verdict::Fail)
        .map(|r| r.operation.as_str())
        .collect();
    assert_eq!(
        failed,
        ["WskGetRemoteAddress", "raw WskSocket(basic)"],
        "{}",
        show(&table)
    );
    let row = table.row("WskGetRemoteAddress").unwrap();
    assert_eq!(row.status, "STATUS_NOT_SUPPORTED");
    assert_eq!(row.completion, Completion::Completed);
    // What needs the basic socket is skipped, not failed.
    let control = table
        .row("raw WskControlSocket(basic, get SO_RCVBUF)")
        .unwrap();
    assert_eq!(control.verdict, Verdict::Skip, "{control:?}");
    session.finish();
}

/// Wine 8's provider, as the probe meets it: `WskSocketConnect`, `WskGetLocalAddress` and
/// `WskDisconnect` return `STATUS_NOT_IMPLEMENTED` without completing the IRP; datagram and
/// stream sockets fail with `STATUS_NOT_IMPLEMENTED` (completed).
fn wine_like() -> FaultPlan {
    FaultPlan::new(2)
        .abandon_requests("WskSocketConnect", STATUS_NOT_IMPLEMENTED)
        .abandon_requests("WskGetLocalAddress", STATUS_NOT_IMPLEMENTED)
        .abandon_requests("WskDisconnect", STATUS_NOT_IMPLEMENTED)
        .fail_requests("WskSocket(datagram)", STATUS_NOT_IMPLEMENTED)
        .fail_requests("WskSocket(stream)", STATUS_NOT_IMPLEMENTED)
}

#[test]
fn requests_the_provider_never_completes_are_reported_and_do_not_hang() {
    let session = Session::start();
    session.set_faults(wine_like());
    let base = free_ports();
    let deadline_ms = 200;
    let (table, took) = probe(&[
        ("DeadlineMs", RegValue::Dword(deadline_ms)),
        ("ListenPort", RegValue::Dword(u32::from(base))),
    ]);
    // Bounded: a few dozen requests, a handful of deadlines and grace periods.
    assert!(took < Duration::from_secs(30), "DriverEntry took {took:?}");
    let not_completed = [
        "WskGetLocalAddress(listen)",
        "WskGetLocalAddress(connection)",
        "WskDisconnect",
        "raw WskSocketConnect",
    ];
    for operation in not_completed {
        let row = table
            .row(operation)
            .unwrap_or_else(|| panic!("no row {operation}:\n{}", show(&table)));
        assert_eq!(row.completion, Completion::NotCompleted, "{row:?}");
        assert_eq!(row.verdict, Verdict::Fail, "{row:?}");
    }
    // The raw row shows what the function returned.
    assert_eq!(
        table.row("raw WskSocketConnect").unwrap().status,
        "STATUS_NOT_IMPLEMENTED"
    );
    for operation in ["WskSocket+WskBind(datagram)", "WskSocket(stream)"] {
        let row = table.row(operation).unwrap();
        assert_eq!(row.completion, Completion::Completed, "{row:?}");
        assert_eq!(row.status, "STATUS_NOT_IMPLEMENTED", "{row:?}");
        assert_eq!(row.verdict, Verdict::Fail, "{row:?}");
    }
    // What works still passes: the fixed ports stand in for WskGetLocalAddress.
    for operation in [
        "WskConnect",
        "WskAccept",
        "WskSend",
        "WskReceive",
        "WskSend(vectored)",
        "WskReceive(vectored)",
        "WskControlSocket(get SO_RCVBUF)",
        "event accept",
        "event receive",
        "event disconnect",
        "WskGetAddressInfo(localhost)",
        "raw WskSocket(basic)",
        "WskReleaseProviderNPI+WskDeregister",
        "raw WskReleaseProviderNPI+WskDeregister",
    ] {
        let row = table.row(operation).unwrap();
        assert_eq!(row.verdict, Verdict::Pass, "{row:?}\n{}", show(&table));
    }
    // Leaked: what the abandoned requests hold (their IRPs and pool), nothing else — no
    // socket, registration or work item.
    let (_, findings) = session.conclude();
    for finding in &findings {
        assert!(
            matches!(finding.rule, Rule::IrpLeaked | Rule::PoolLeaked),
            "{finding}"
        );
    }
    // At least one IRP per abandoned request; an abandoned request of the safe layer keeps
    // its socket's core, and so the socket's whole IRP cache, allocated.
    let irps = findings
        .iter()
        .find(|f| f.rule == Rule::IrpLeaked)
        .expect("the abandoned IRPs are leaked");
    let count: usize = irps
        .details
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(count >= not_completed.len(), "{irps}");
    // None of them is still owned by the provider: they were abandoned, not pended.
    assert!(irps.details.contains("(0 still owned"), "{irps}");
}

#[test]
fn an_abandoned_client_level_request_leaks_the_client_rather_than_hang() {
    let session = Session::start();
    session.set_faults(
        FaultPlan::new(3).abandon_requests("WskSocket(datagram)", STATUS_NOT_IMPLEMENTED),
    );
    let (table, took) = probe(&[("DeadlineMs", RegValue::Dword(200))]);
    assert!(took < Duration::from_secs(30), "DriverEntry took {took:?}");
    let row = table.row("WskSocket+WskBind(datagram)").unwrap();
    assert_eq!(row.completion, Completion::NotCompleted, "{row:?}");
    let teardown = table.row("WskReleaseProviderNPI+WskDeregister").unwrap();
    assert_eq!(teardown.verdict, Verdict::Fail, "{teardown:?}");
    assert_eq!(teardown.completion, Completion::NotRun, "{teardown:?}");
    // Everything else still passed.
    let failed: Vec<&str> = table
        .rows
        .iter()
        .filter(|r| r.verdict == Verdict::Fail)
        .map(|r| r.operation.as_str())
        .collect();
    assert_eq!(
        failed,
        [
            "WskSocket+WskBind(datagram)",
            "WskReleaseProviderNPI+WskDeregister"
        ],
        "{}",
        show(&table)
    );
    // The client stays registered: the verifier sees it, and the abandoned IRP.
    let (_, findings) = session.conclude();
    assert!(
        findings.iter().any(|f| f.rule == Rule::RegistrationLeaked),
        "{findings:?}"
    );
    assert!(
        findings.iter().any(|f| f.rule == Rule::IrpLeaked),
        "{findings:?}"
    );
}

#[test]
fn bad_parameters_fail_driver_entry() {
    let session = Session::start();
    let driver = find("wsk-probe").unwrap();
    let bad = [
        ("DeadlineMs", RegValue::Dword(0)),
        ("DeadlineMs", RegValue::Dword(600_001)),
        ("ListenPort", RegValue::Dword(65_001)),
        ("Peer", RegValue::String("not an address".into())),
    ];
    for (name, value) in bad {
        let status = load(driver, &[(name, value.clone())]).unwrap_err();
        assert_eq!(status, STATUS_INVALID_PARAMETER, "{name}={value:?}");
    }
    session.finish();
}

#[test]
fn closes_the_provider_never_completes_leave_both_clients_registered_rather_than_hang() {
    let session = Session::start();
    session
        .set_faults(FaultPlan::new(4).abandon_requests("WskCloseSocket", STATUS_NOT_IMPLEMENTED));
    let (table, took) = probe(&[("DeadlineMs", RegValue::Dword(100))]);
    assert!(took < Duration::from_secs(30), "DriverEntry took {took:?}");
    for operation in [
        "WskCloseSocket(connection)",
        "WskCloseSocket(listen)",
        "raw WskCloseSocket(connection)",
        "raw WskCloseSocket(basic)",
    ] {
        let row = table.row(operation).unwrap();
        assert_eq!(row.completion, Completion::NotCompleted, "{row:?}");
    }
    for operation in [
        "WskReleaseProviderNPI+WskDeregister",
        "raw WskReleaseProviderNPI+WskDeregister",
    ] {
        let row = table.row(operation).unwrap();
        assert_eq!(
            (row.completion, row.verdict),
            (Completion::NotRun, Verdict::Fail),
            "{row:?}"
        );
    }
    // Everything else passed, but the disconnect event, which the probe provokes by closing
    // the other end.
    for row in table.not_passed() {
        let expected = row.operation.contains("WskCloseSocket")
            || row.operation.contains("Deregister")
            || row.operation == "event disconnect";
        assert!(expected, "{row:?}");
    }
    let (_, findings) = session.conclude();
    assert!(
        findings.iter().any(|f| f.rule == Rule::SocketLeaked),
        "{findings:?}"
    );
    assert!(
        findings.iter().any(|f| f.rule == Rule::RegistrationLeaked),
        "{findings:?}"
    );
}

#[test]
fn allocation_failures_fail_rows_and_leak_nothing() {
    let plans = [
        ("IRP", FaultPlan::new(5).fail_irp_allocation(Nth::Every(4))),
        ("MDL", FaultPlan::new(6).fail_mdl_allocation(Nth::Every(3))),
        (
            "pool",
            FaultPlan::new(7).fail_pool_allocation(Nth::Every(5)),
        ),
        (
            "work item",
            FaultPlan::new(8).fail_work_item_allocation(Nth::Call(1)),
        ),
    ];
    for (what, plan) in plans {
        let session = Session::start();
        session.set_faults(plan);
        let (table, _) = probe(&[("DeadlineMs", RegValue::Dword(2000))]);
        assert!(
            table.count(Verdict::Fail) > 0,
            "{what}: no row failed\n{}",
            show(&table)
        );
        // Failures are reported as completed with a status, never as requests left behind.
        for row in table.not_passed() {
            assert_ne!(row.completion, Completion::NotCompleted, "{what}: {row:?}");
        }
        session.finish();
    }
}

#[test]
fn each_allocation_failing_in_turn_leaks_nothing_and_hangs_nothing() {
    // The probe allocates a few dozen IRPs (the safe layer's per-socket caches, one per raw
    // request), MDLs and pool blocks: make each one fail in turn, the raw closes' included.
    let irps = (1..=IRP_CALLS).map(|n| FaultPlan::new(9).fail_irp_allocation(Nth::Call(n)));
    let mdls = (1..=MDL_CALLS).map(|n| FaultPlan::new(10).fail_mdl_allocation(Nth::Call(n)));
    let pool = (1..=POOL_CALLS).map(|n| FaultPlan::new(11).fail_pool_allocation(Nth::Call(n)));
    for (call, plan) in irps.chain(mdls).chain(pool).enumerate() {
        let session = Session::start();
        session.set_faults(plan);
        let (table, took) = probe(&[("DeadlineMs", RegValue::Dword(500))]);
        assert!(took < Duration::from_secs(30), "call {call}: {took:?}");
        for row in table.not_passed() {
            assert_ne!(
                row.completion,
                Completion::NotCompleted,
                "call {call}: {row:?}"
            );
        }
        session.finish();
    }
}
