//! Issue 14, item 8: `wsk_http_get` gives up a connection that does not complete within
//! `ConnectTimeoutMs` and says so (it used to wait as long as the host's TCP retries its
//! SYN: two minutes on Linux).
//!
//! The stalled connect, on loopback: a listener whose backlog (0) is full of connections it
//! never accepts. Linux drops the SYNs a full accept queue cannot take, so a connect to it
//! neither completes nor fails; the listener's owner (the test) decides when it ends.
#![cfg(unix)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use wsk_host::{RegValue, Session};
use wsk_host_runner::{Output, find, load};

const WAIT: Duration = Duration::from_secs(20);

/// A connection closed with a reset (`SO_LINGER` 0): it leaves no `TIME_WAIT` behind.
fn set_abortive_close(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid linger value and its size, on an open socket.
    let status = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(status, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
}

/// A listener on 127.0.0.1 whose accept queue is full (never accepted); with the
/// connections filling it.
fn full_listener() -> (TcpListener, SocketAddr, Vec<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    // Listening again sets the backlog.
    // SAFETY: an open listening socket.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
    let mut fillers = Vec::new();
    loop {
        assert!(
            fillers.len() < 16,
            "the accept queue of backlog 0 never fills"
        );
        match TcpStream::connect_timeout(&address, Duration::from_millis(300)) {
            Ok(stream) => {
                set_abortive_close(&stream);
                fillers.push(stream);
            }
            Err(error) => {
                assert_eq!(
                    error.kind(),
                    std::io::ErrorKind::TimedOut,
                    "a connect to a full queue stalls"
                );
                break;
            }
        }
    }
    (listener, address, fillers)
}

#[test]
fn a_connect_that_stalls_is_reported_after_connect_timeout_ms() {
    let session = Session::start();
    let (listener, address, fillers) = full_listener();
    let mut output = Output::new();
    let started = Instant::now();
    let loaded = load(
        find("http-get").unwrap(),
        &[
            ("Url", RegValue::String(format!("http://{address}/"))),
            ("ConnectTimeoutMs", RegValue::Dword(500)),
        ],
    )
    .expect("DriverEntry succeeds");
    let line = output.wait_for("wsk_http_get: http", WAIT);
    let elapsed = started.elapsed();
    assert!(
        line.contains("not connected within 500 ms (ConnectTimeoutMs)"),
        "{line}"
    );
    assert!(
        elapsed >= Duration::from_millis(450),
        "reported before the deadline: {elapsed:?}"
    );
    // The SYN is retried after 1 s, then 3 s: none gets through before the report.
    assert!(
        elapsed < Duration::from_secs(3),
        "reported late: {elapsed:?}"
    );
    assert!(
        !output.text().contains("connected to"),
        "the connect was cancelled, not completed"
    );
    assert!(loaded.unload());
    output.wait_for("wsk_http_get: unloaded", WAIT);
    drop(fillers);
    drop(listener);
    let report = session.finish();
    assert_eq!(report.sockets_created, report.sockets_closed);
}
