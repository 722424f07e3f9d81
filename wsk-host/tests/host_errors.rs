//! Host failures reach the driver as the NTSTATUS Windows would give: a process out of file
//! descriptors (EMFILE) fails `WskSocket` and `WskAccept` with `STATUS_INSUFFICIENT_RESOURCES`
//! (on Windows a WSK socket is no handle: what runs out is pool), not a vague
//! `STATUS_UNSUCCESSFUL`. The test re-runs itself with a low descriptor limit (`ulimit -n`).

mod common;

use std::fs::File;
use std::net::TcpStream;
use std::process::Command;
use std::ptr::null_mut;
use std::time::{Duration, Instant};

use common::{Registration, SyncRequest, accept, close, listen};
use wsk_host::Session;
use wsk_sys::*;

/// Set in the child that runs with the low limit.
const CHILD: &str = "WSK_HOST_HOST_ERRORS_CHILD";

/// `WskSocket` of a listening socket; the status.
fn new_socket(
    registration: &Registration,
    request: &mut SyncRequest,
) -> Result<PWSK_SOCKET, NTSTATUS> {
    let irp = request.irp();
    // SAFETY: the IRP is readied for this call, waited for below.
    unsafe {
        (registration.dispatch().WskSocket.unwrap())(
            registration.client(),
            AF_INET,
            SOCK_STREAM,
            IPPROTO_TCP,
            WSK_FLAG_LISTEN_SOCKET,
            null_mut(),
            null_mut(),
            null_mut(),
            null_mut(),
            null_mut(),
            irp,
        );
    }
    request.wait_for_socket()
}

fn out_of_descriptors() {
    let session = Session::start();
    let registration = Registration::new();
    let mut request = SyncRequest::new().unwrap();
    let (listener, address) = listen(&registration, &mut request, "127.0.0.1:0".parse().unwrap());
    let client = TcpStream::connect(address).unwrap();
    // Every descriptor left is taken.
    let mut files = Vec::new();
    while let Ok(file) = File::open("/dev/null") {
        files.push(file);
        assert!(files.len() < 100_000, "the descriptor limit applies");
    }
    assert_eq!(
        new_socket(&registration, &mut request),
        Err(STATUS_INSUFFICIENT_RESOURCES),
        "WskSocket without a descriptor"
    );
    // SAFETY: the listening socket, open; the call is waited for.
    let accepted = unsafe { accept(listener, &mut request) };
    assert_eq!(
        accepted.err(),
        Some(STATUS_INSUFFICIENT_RESOURCES),
        "WskAccept without a descriptor"
    );
    // With descriptors again, the same connection is accepted.
    drop(files);
    // SAFETY: as above.
    let accepted =
        unsafe { accept(listener, &mut request) }.expect("accepted once descriptors are free");
    // SAFETY: the open sockets, closed once.
    unsafe {
        assert_eq!(close(accepted, &mut request), STATUS_SUCCESS);
        assert_eq!(close(listener, &mut request), STATUS_SUCCESS);
    }
    drop(client);
    drop(request);
    drop(registration);
    session.finish();
}

#[test]
fn out_of_descriptors_is_insufficient_resources() {
    if std::env::var_os(CHILD).is_some() {
        out_of_descriptors();
        return;
    }
    let mut child = Command::new("sh")
        .args(["-c", "ulimit -n 64 && exec \"$0\" \"$@\""])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "out_of_descriptors_is_insufficient_resources",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD, "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
