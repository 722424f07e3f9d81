//! `WskGetAddressInfo` is cancellable: `IoCancelIrp` completes a resolution that waits for a
//! DNS server with `STATUS_CANCELLED` at once, and the resolver's late answer is dropped.
//!
//! The DNS server that never answers is the test's own, on 127.0.0.1:53 of a private network
//! namespace (with a private mount namespace whose `/etc/resolv.conf` names it): no query
//! leaves the machine — the host's resolver is not on loopback. The test re-runs itself in
//! that namespace with `unshare` (user, network and mount namespaces; util-linux) and `ip`
//! (iproute2, to bring the namespace's loopback up).

mod common;

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::ptr::null_mut;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use common::Registration;
use wsk_host::Session;
use wsk_sys::*;

/// Set in the child that runs inside the namespaces.
const CHILD: &str = "WSK_HOST_RESOLUTION_CHILD";
/// How long the child may take, in all.
const CHILD_DEADLINE: Duration = Duration::from_secs(60);
/// How long a cancelled resolution may take to complete.
const CANCEL_DEADLINE: Duration = Duration::from_secs(1);

/// The completion of the resolution: signals the event of its context.
unsafe extern "system" fn signal(_device: PDEVICE_OBJECT, _irp: PIRP, context: PVOID) -> NTSTATUS {
    // SAFETY: the context is the test's live event, waited for before it goes.
    unsafe { KeSetEvent(context.cast(), 0, FALSE) };
    STATUS_MORE_PROCESSING_REQUIRED
}

/// In the namespaces: a resolution stuck at a DNS server that never answers, cancelled.
fn cancel_a_resolution_stuck_at_a_silent_dns_server() {
    // The silent DNS server: it reports each query and never answers.
    let server = UdpSocket::bind("127.0.0.1:53").expect("port 53 in the private namespace");
    server
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let (query, queried) = channel::<usize>();
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    let silent = std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        let started = Instant::now();
        while started.elapsed() < CHILD_DEADLINE && !stopped.load(Ordering::Relaxed) {
            if let Ok((n, _)) = server.recv_from(&mut buf) {
                if query.send(n).is_err() {
                    return;
                }
            }
        }
    });

    let session = Session::start();
    let registration = Registration::new();
    let name: Vec<u16> = "never-answered.wsk-host.test\0".encode_utf16().collect();
    let mut node = UNICODE_STRING::default();
    let mut result: PADDRINFOEXW = null_mut();
    let mut event = Box::new(KEVENT::default());
    // SAFETY: the name, the result slot, the event and the IRP live until the wait below.
    let irp = unsafe {
        let irp = IoAllocateIrp(1, FALSE);
        assert!(!irp.is_null());
        KeInitializeEvent(&mut *event, NotificationEvent, FALSE);
        IoSetCompletionRoutine(
            irp,
            Some(signal),
            (&raw mut *event).cast(),
            true,
            true,
            true,
        );
        RtlInitUnicodeString(&mut node, name.as_ptr());
        let status = (registration.dispatch().WskGetAddressInfo.unwrap())(
            registration.client(),
            &mut node,
            null_mut(),
            NS_ALL,
            null_mut(),
            null_mut(),
            &mut result,
            null_mut(),
            null_mut(),
            irp,
        );
        assert_eq!(status, STATUS_PENDING);
        irp
    };
    // The resolution waits for the silent server.
    queried
        .recv_timeout(Duration::from_secs(10))
        .expect("the resolver queries the DNS server on 127.0.0.1:53");
    let cancelled_at = Instant::now();
    // SAFETY: the request owns the IRP until it completes; cancelling it is allowed.
    assert_eq!(unsafe { IoCancelIrp(irp) }, TRUE, "a cancel routine is set");
    let mut timeout = LARGE_INTEGER {
        QuadPart: -10_000 * CANCEL_DEADLINE.as_millis() as i64,
    };
    // SAFETY: the live event, signalled by the completion.
    let waited = unsafe {
        KeWaitForSingleObject(
            (&raw mut *event).cast(),
            Executive,
            KernelMode,
            FALSE,
            &mut timeout,
        )
    };
    let elapsed = cancelled_at.elapsed();
    assert_eq!(
        waited, STATUS_SUCCESS,
        "the cancelled resolution completes within {CANCEL_DEADLINE:?}"
    );
    eprintln!("name_resolution: the cancelled resolution completed in {elapsed:.2?}");
    // SAFETY: the IRP completed: it is the test's again.
    unsafe {
        assert_eq!((*irp).IoStatus.u.Status, STATUS_CANCELLED);
        IoFreeIrp(irp);
    }
    assert!(result.is_null(), "no list for a cancelled resolution");
    drop(registration);
    let report = session.finish();
    assert_eq!(report.cancelled, 1);
    stop.store(true, Ordering::Relaxed);
    silent.join().unwrap();
}

#[test]
fn a_resolution_waiting_for_dns_is_cancelled_promptly() {
    if std::env::var_os(CHILD).is_some() {
        cancel_a_resolution_stuck_at_a_silent_dns_server();
        return;
    }
    let directory =
        std::env::temp_dir().join(format!("wsk-host-resolution-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let resolv = directory.join("resolv.conf");
    // One long attempt: before the fix, the resolution (and the unload behind it) waited 30 s.
    std::fs::write(
        &resolv,
        "nameserver 127.0.0.1\noptions timeout:30 attempts:1\n",
    )
    .unwrap();
    let mut child = Command::new("unshare")
        .args(["--user", "--map-root-user", "--net", "--mount", "sh", "-c"])
        .arg("ip link set lo up && mount --bind \"$1\" /etc/resolv.conf && shift && exec \"$@\"")
        .arg("sh")
        .arg(&resolv)
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_resolution_waiting_for_dns_is_cancelled_promptly",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare (util-linux) runs the test in private network and mount namespaces");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > CHILD_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = child.wait_with_output().unwrap();
    let _ = std::fs::remove_dir_all(&directory);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        !stderr.contains("unshare: unshare failed") && !stderr.contains("Operation not permitted"),
        "network namespaces are not available here (unprivileged user namespaces are off?): \
         the test needs them to run a DNS server on a private loopback\n{stderr}"
    );
    match status {
        Some(status) => assert!(status.success(), "{stdout}\n{stderr}"),
        None => panic!("the child did not finish within {CHILD_DEADLINE:?}\n{stdout}\n{stderr}"),
    }
    eprint!("{stderr}");
}
