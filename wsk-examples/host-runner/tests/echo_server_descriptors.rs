//! Issue 14, item 2: `wsk_echo_server` out of descriptors. An accept that fails because the
//! process has no descriptor left (EMFILE, which `wsk-host` reports as Windows reports
//! running out of memory, `STATUS_INSUFFICIENT_RESOURCES`) is retried with backoff — the
//! server used to drop its listener on the first failed accept and stay loaded serving
//! nothing — the connections already open keep being served meanwhile, and once descriptors
//! are free the waiting connection and new ones are served.
//!
//! The test re-runs itself in a child process whose descriptor limit is low (64), so that
//! exhausting it is quick and disturbs no other test.
#![cfg(unix)]

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wsk_host::{RegValue, Session};
use wsk_host_runner::{Output, find, load};

const WAIT: Duration = Duration::from_secs(20);

/// Set in the child that runs with the low limit.
const CHILD: &str = "WSK_ECHO_SERVER_DESCRIPTORS_CHILD";

/// The child's descriptor limit.
const LIMIT: libc::rlim_t = 64;

/// Lowers this process's soft descriptor limit to `limit`.
fn set_descriptor_limit(limit: libc::rlim_t) {
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `current` is a valid rlimit to fill, then to pass.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut current), 0);
        current.rlim_cur = limit.min(current.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &current), 0);
    }
}

/// A client connection closed with a reset (`SO_LINGER` 0): it leaves no `TIME_WAIT` behind.
fn connect(address: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))?;
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
    Ok(stream)
}

/// Whether `stream` gets `message` echoed within `within`.
fn echoes(stream: &mut TcpStream, message: &[u8; 4], within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut back = [0u8; 4];
    stream.write_all(message).is_ok() && stream.read_exact(&mut back).is_ok() && &back == message
}

fn out_of_descriptors() {
    set_descriptor_limit(LIMIT);
    let session = Session::start();
    let mut output = Output::new();
    let loaded = load(
        find("echo-server").unwrap(),
        &[("Listen", RegValue::String("127.0.0.1:0".into()))],
    )
    .expect("DriverEntry succeeds");
    let line = output.wait_for("listening on 127.0.0.1:", WAIT);
    let address: SocketAddr = line.rsplit(' ').next().unwrap().trim().parse().unwrap();
    let mut served: Vec<TcpStream> = (0..4)
        .map(|i| {
            let mut stream = connect(address).unwrap();
            assert!(echoes(&mut stream, b"open", WAIT), "connection {i} served");
            stream
        })
        .collect();
    // Every descriptor left is taken but one, which the next client takes: the server's
    // accept of that connection finds none.
    let mut files = Vec::new();
    while let Ok(file) = File::open("/dev/null") {
        files.push(file);
        assert!(files.len() < 10_000, "the descriptor limit applies");
    }
    files.pop();
    let mut waiting = connect(address).expect("the last descriptor is the client's");
    waiting.write_all(b"wait").unwrap();
    let line = output.wait_for("accept on 127.0.0.1", WAIT);
    assert!(
        line.contains("STATUS_INSUFFICIENT_RESOURCES") && line.contains("retrying in 10 ms"),
        "{line}"
    );
    // It keeps trying, ever more slowly (10, 20, 40 ms...).
    output.wait_for("retrying in 40 ms", WAIT);
    // The connections open are served meanwhile.
    for (i, stream) in served.iter_mut().enumerate() {
        assert!(
            echoes(stream, b"more", WAIT),
            "connection {i} served while out of descriptors"
        );
    }
    // With descriptors again, the waiting connection is accepted and echoed at the next
    // retry (1 s at most after the last), and a new one is served.
    drop(files);
    let mut back = [0u8; 4];
    waiting.set_read_timeout(Some(WAIT)).unwrap();
    waiting
        .read_exact(&mut back)
        .expect("the waiting connection is served once descriptors are free");
    assert_eq!(&back, b"wait");
    served.push(waiting);
    let mut fresh = connect(address).unwrap();
    assert!(echoes(&mut fresh, b"anew", WAIT), "a new connection served");
    served.push(fresh);
    assert!(loaded.unload());
    output.wait_for("wsk_echo_server: unloaded", WAIT);
    drop(served);
    let report = session.finish();
    assert_eq!(report.sockets_created, report.sockets_closed);
}

#[test]
fn out_of_descriptors_the_echo_server_keeps_its_listener_and_serves_again() {
    if std::env::var_os(CHILD).is_some() {
        out_of_descriptors();
        return;
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "out_of_descriptors_the_echo_server_keeps_its_listener_and_serves_again",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The pipes are read as the child writes (it prints every DbgPrint line).
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    assert!(
        status.is_some_and(|s| s.success()),
        "child: {status:?} (None: killed after 120 s)\n{out}\n{err}"
    );
}
