//! Loopback peers that the drivers' tests drive the echo server with: a hog that saturates it
//! and a polite client that measures its echo latency.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a polite client waits for one echo before the test fails.
pub const ECHO_DEADLINE: Duration = Duration::from_secs(5);

/// A client that writes 64 KiB blocks as fast as the server takes them, and reads back what
/// it can, until `stop`; yields the bytes echoed to it. `prepare` sees the stream first
/// (socket options of the caller's choice).
pub fn tcp_hog(
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    prepare: fn(&TcpStream),
) -> JoinHandle<u64> {
    std::thread::spawn(move || {
        let stream = TcpStream::connect(address).unwrap();
        prepare(&stream);
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        stream
            .set_write_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut reader = stream.try_clone().unwrap();
        let read_stop = Arc::clone(&stop);
        let echoed = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&echoed);
        let reading = std::thread::spawn(move || {
            let mut buf = vec![0u8; 256 * 1024];
            while !read_stop.load(Ordering::Relaxed) {
                match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        counted.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(e)
                        if e.kind() == std::io::ErrorKind::WouldBlock
                            || e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(_) => break,
                }
            }
        });
        let block = vec![0x5au8; 64 * 1024];
        let mut writer = stream;
        while !stop.load(Ordering::Relaxed) {
            match writer.write(&block) {
                Ok(_) => {}
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => break,
            }
        }
        reading.join().unwrap();
        echoed.load(Ordering::Relaxed)
    })
}

/// A polite client: `rounds` echoes of 64 bytes, one at a time; the latency of each. Panics
/// when an echo takes longer than [`ECHO_DEADLINE`]. `prepare` sees the stream first.
pub fn polite_tcp(address: SocketAddr, rounds: usize, prepare: fn(&TcpStream)) -> Vec<Duration> {
    let mut stream = TcpStream::connect(address).unwrap();
    prepare(&stream);
    stream.set_nodelay(true).unwrap();
    stream.set_read_timeout(Some(ECHO_DEADLINE)).unwrap();
    let message = [0x42u8; 64];
    let mut back = [0u8; 64];
    (0..rounds)
        .map(|round| {
            let started = Instant::now();
            stream.write_all(&message).unwrap();
            stream
                .read_exact(&mut back)
                .unwrap_or_else(|e| panic!("round {round}: no echo within {ECHO_DEADLINE:?}: {e}"));
            assert_eq!(back, message);
            started.elapsed()
        })
        .collect()
}
