//! The std side of an echo load: clients that each send a deterministic pseudo-random stream
//! of bytes (its own per connection), read the echo concurrently, and check that exactly the
//! stream comes back, then end of stream.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

/// The bytes a client sends: a splitmix64 hash of (connection, position), so that a stream
/// shifted, repeated or mixed with another connection's is caught, and any range of it can be
/// produced on its own.
pub struct Pattern {
    seed: u64,
    position: u64,
    /// The word of the current position (computed once per 8 bytes).
    word: [u8; 8],
}

impl Pattern {
    /// The stream of connection `index`, from its start.
    pub fn new(index: usize) -> Pattern {
        Pattern {
            seed: (index as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03),
            position: 0,
            word: [0; 8],
        }
    }

    /// Fills `buf` with the next bytes of the stream.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for byte in buf {
            let lane = (self.position % 8) as usize;
            if lane == 0 {
                let mut word = self.seed ^ (self.position / 8).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                word = (word ^ (word >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                word = (word ^ (word >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                self.word = (word ^ (word >> 31)).to_le_bytes();
            }
            *byte = self.word[lane];
            self.position += 1;
        }
    }
}

/// How much each write and read moves.
const CHUNK: usize = 64 * 1024;

/// Echo clients running on their own threads.
pub struct Clients {
    threads: Vec<JoinHandle<u64>>,
}

impl Clients {
    /// Starts `connections` clients against `server`: each connects, sends `bytes` (written
    /// by a thread of its own, then a shutdown of its sending side) and reads the echo back.
    /// A read that waits longer than `timeout` fails the client.
    pub fn start(
        server: SocketAddr,
        connections: usize,
        bytes: usize,
        timeout: Duration,
    ) -> Clients {
        let threads = (0..connections)
            .map(|index| std::thread::spawn(move || client(server, index, bytes, timeout)))
            .collect();
        Clients { threads }
    }

    /// Waits for every client; returns the bytes that came back verified, in all. Panics with
    /// the first client's failure.
    pub fn join(self) -> u64 {
        self.threads
            .into_iter()
            .map(|thread| thread.join().expect("an echo client failed"))
            .sum()
    }
}

fn client(server: SocketAddr, index: usize, bytes: usize, timeout: Duration) -> u64 {
    let mut stream = TcpStream::connect(server).expect("connect");
    stream.set_read_timeout(Some(timeout)).unwrap();
    stream.set_write_timeout(Some(timeout)).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut sending = stream.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let mut pattern = Pattern::new(index);
        let mut chunk = vec![0u8; CHUNK];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(CHUNK);
            pattern.fill(&mut chunk[..n]);
            sending
                .write_all(&chunk[..n])
                .expect("send to the echo server");
            left -= n;
        }
        sending.shutdown(Shutdown::Write).unwrap();
    });
    let mut expected = Pattern::new(index);
    let mut want = vec![0u8; CHUNK];
    let mut got = vec![0u8; CHUNK];
    let mut verified = 0usize;
    while verified < bytes {
        let n = stream
            .read(&mut got[..CHUNK.min(bytes - verified)])
            .unwrap_or_else(|e| panic!("client {index}: read after {verified} bytes: {e}"));
        assert!(
            n > 0,
            "client {index}: end of stream after {verified} of {bytes} bytes"
        );
        expected.fill(&mut want[..n]);
        if let Some(at) = (0..n).find(|&i| got[i] != want[i]) {
            panic!("client {index}: byte {} differs", verified + at);
        }
        verified += n;
    }
    let mut extra = [0u8; 1];
    assert_eq!(
        stream.read(&mut extra).expect("end of stream"),
        0,
        "client {index}: more bytes than were sent"
    );
    writer.join().expect("the writer");
    verified as u64
}
