//! Issue 14, item 10: `wsk_udp_echo` retries a failing receive with a pause that doubles
//! from 1 ms to 1 s (it used to retry at once, spinning a processor for as long as the
//! receive failed), and serves again once the receive works.
//!
//! The failure: the provider's host socket is swapped (`dup2`) for `/dev/null`, so every
//! `recvfrom` of the provider fails (`ENOTSOCK`) — a receive that fails in the provider, every
//! time, at once. (The fault plan's IRP, MDL and pool failures cannot do it: the socket's
//! request blocks, with their IRPs, and the receive buffer are allocated once and reused, so
//! a receive allocates nothing.) The original socket stays open under another descriptor
//! (its datagrams queue up, its readiness still reaches the provider) and is put back to end
//! the failure.
#![cfg(unix)]

use std::fs::File;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use wsk_host::{RegValue, Session};
use wsk_host_runner::{Output, find, load};

const WAIT: Duration = Duration::from_secs(20);

/// How long the receive keeps failing.
const FAILING: Duration = Duration::from_millis(2500);

/// The first pause after a failed receive and the longest (the driver's
/// `RECEIVE_BACKOFF_MS`); the first retry comes without a pause.
const BACKOFF_MS: (u64, u64) = (1, 1000);

/// The most receives that can fail within `elapsed` when the pauses between them double from
/// `BACKOFF_MS.0` to `BACKOFF_MS.1`: the first failure, its immediate retry, then one per pause
/// that fits.
fn most_failures_with_backoff(elapsed: Duration) -> u64 {
    let mut failures = 2;
    let mut slept = 0;
    let mut pause = BACKOFF_MS.0;
    while slept + pause <= elapsed.as_millis() as u64 {
        slept += pause;
        failures += 1;
        pause = (pause * 2).min(BACKOFF_MS.1);
    }
    failures
}

/// The descriptor of the provider's host socket bound to `address` (a datagram socket).
fn host_socket_of(address: SocketAddr) -> RawFd {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit to fill.
    let status = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert_eq!(status, 0);
    let highest = limit.rlim_cur.min(1 << 16) as RawFd;
    (0..highest)
        .find(|&fd| {
            let mut kind: libc::c_int = 0;
            let mut kind_len = size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: `kind` and its length are valid; a descriptor that is no socket fails.
            let is_datagram = unsafe {
                libc::getsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_TYPE,
                    (&raw mut kind).cast(),
                    &mut kind_len,
                )
            } == 0
                && kind == libc::SOCK_DGRAM;
            if !is_datagram {
                return false;
            }
            // SAFETY: zeroed storage is a valid sockaddr_in.
            let mut local: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            let mut len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            // SAFETY: `local` and its length are valid storage for an IPv4 address.
            let named = unsafe { libc::getsockname(fd, (&raw mut local).cast(), &mut len) } == 0;
            named
                && i32::from(local.sin_family) == libc::AF_INET
                && u16::from_be(local.sin_port) == address.port()
                && u32::from_be(local.sin_addr.s_addr) == u32::from(std::net::Ipv4Addr::LOCALHOST)
        })
        .unwrap_or_else(|| panic!("no host datagram socket bound to {address}"))
}

/// A host socket replaced by `/dev/null` under its descriptor; put back on drop.
struct Swapped {
    fd: RawFd,
    original: RawFd,
}

impl Swapped {
    fn new(fd: RawFd) -> Swapped {
        let null = File::open("/dev/null").unwrap();
        // SAFETY: `fd` is an open descriptor; the duplicate keeps its socket open.
        let original = unsafe { libc::dup(fd) };
        assert!(original >= 0, "dup: {}", std::io::Error::last_os_error());
        // SAFETY: both descriptors are open; `fd` now names /dev/null (atomically).
        let swapped = unsafe { libc::dup2(null.as_raw_fd(), fd) };
        assert_eq!(swapped, fd, "dup2: {}", std::io::Error::last_os_error());
        Swapped { fd, original }
    }
}

impl Drop for Swapped {
    fn drop(&mut self) {
        // SAFETY: both descriptors are open; `fd` names the socket again, its duplicate goes.
        unsafe {
            assert_eq!(libc::dup2(self.original, self.fd), self.fd);
            libc::close(self.original);
        }
    }
}

#[test]
fn a_failing_receive_is_retried_with_backoff_and_the_service_recovers() {
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
    client.set_read_timeout(Some(WAIT)).unwrap();
    let mut back = [0u8; 16];
    client.send_to(b"before", server).unwrap();
    let n = client.recv(&mut back).expect("served before the failure");
    assert_eq!(&back[..n], b"before");

    let fd = host_socket_of(server);
    // From here on every receive fails: the time counted is the longest it can have been.
    let failing_since = Instant::now();
    let swapped = Swapped::new(fd);
    // The pending receive is woken by this datagram, and fails: so does every one after it.
    client.send_to(b"during", server).unwrap();
    output.wait_for("retrying with backoff", WAIT);
    std::thread::sleep(FAILING);
    drop(swapped);
    // The next retry (within the longest pause) receives the datagram that waited.
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let n = client
        .recv(&mut back)
        .expect("the datagram sent during the failure comes back once the receive works");
    let elapsed = failing_since.elapsed();
    assert_eq!(&back[..n], b"during");
    let line = output.wait_for("works again after", WAIT);
    let failures: u64 = line
        .split("works again after ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("no failure count in `{line}`"));
    // Two more for a timer that fires a little early.
    let most = most_failures_with_backoff(elapsed) + 2;
    eprintln!(
        "udp-echo: {failures} failed receives in {elapsed:.2?} (at most {most} with the backoff)"
    );
    // Without the pauses the task retries at once, thousands of times in these seconds.
    assert!(
        failures <= most,
        "{failures} receives failed in {elapsed:?}: over the {most} the backoff allows"
    );
    // It kept trying: the pauses (1 + 2 + ... + 256 ms) reached half a second at least.
    assert!(
        failures >= 10,
        "only {failures} receives failed in {elapsed:?}"
    );
    // Served as before.
    client.send_to(b"after", server).unwrap();
    let n = client.recv(&mut back).expect("served after the failure");
    assert_eq!(&back[..n], b"after");
    assert!(loaded.unload());
    output.wait_for("wsk_udp_echo: unloaded", WAIT);
    session.finish();
}
