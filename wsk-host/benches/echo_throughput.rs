//! `cargo bench -p wsk-host`: echo throughput of the load of `tests/echo_load.rs` — 64
//! concurrent connections, 1 MiB each, over 127.0.0.1 — through
//! - the raw `wsk-sys` echo server of `tests/common/echo.rs` on wsk-host (completion-routine
//!   chains, one IRP and one 16 KiB buffer per connection), and
//! - a std `TcpStream` echo server doing the same work (a thread per connection, the same
//!   16 KiB buffer size),
//!
//! loaded by the same std clients, measured in the same run, alternating, and reported as
//! MiB echoed per second (the median of the rounds) with the ratio. Every round is
//! byte-checked and every wsk-host round must end with nothing leaked.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::clients::Clients;
use common::echo::EchoServer;
use wsk_host::Session;

const CONNECTIONS: usize = 64;
const BYTES: usize = 1024 * 1024;
const BUFFER: usize = 16 * 1024;
const ROUNDS: usize = 7;
const DEADLINE: Duration = Duration::from_secs(120);

/// One round through the raw WSK echo server; returns its duration.
fn wsk_round() -> Duration {
    let session = Session::start();
    let mut server = EchoServer::start("127.0.0.1:0".parse().unwrap(), BUFFER);
    let started = Instant::now();
    let clients = Clients::start(server.address(), CONNECTIONS, BYTES, DEADLINE);
    server.accept(CONNECTIONS);
    let outcomes = server.wait(DEADLINE);
    let verified = clients.join();
    let elapsed = started.elapsed();
    assert_eq!(verified, (CONNECTIONS * BYTES) as u64);
    assert!(
        outcomes.iter().all(|o| o.echoed == BYTES as u64),
        "{outcomes:?}"
    );
    drop(server);
    session.finish();
    elapsed
}

/// One round through a std echo server: a thread per connection, read then write back.
fn std_round() -> Duration {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address: SocketAddr = listener.local_addr().unwrap();
    let started = Instant::now();
    let clients = Clients::start(address, CONNECTIONS, BYTES, DEADLINE);
    let servers: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (stream, _) = listener.accept().unwrap();
            std::thread::spawn(move || echo(stream))
        })
        .collect();
    let echoed: u64 = servers.into_iter().map(|s| s.join().unwrap()).sum();
    let verified = clients.join();
    let elapsed = started.elapsed();
    assert_eq!(verified, (CONNECTIONS * BYTES) as u64);
    assert_eq!(echoed, (CONNECTIONS * BYTES) as u64);
    elapsed
}

fn echo(mut stream: TcpStream) -> u64 {
    let mut buffer = vec![0u8; BUFFER];
    let mut echoed = 0;
    loop {
        let n = stream.read(&mut buffer).unwrap();
        if n == 0 {
            stream.shutdown(Shutdown::Write).unwrap();
            return echoed;
        }
        stream.write_all(&buffer[..n]).unwrap();
        echoed += n as u64;
    }
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn mib_per_second(time: Duration) -> f64 {
    (CONNECTIONS * BYTES) as f64 / (1024.0 * 1024.0) / time.as_secs_f64()
}

fn main() {
    // `cargo test --benches` runs this too: one round of each is enough there.
    let rounds = if std::env::args().any(|a| a == "--bench") {
        ROUNDS
    } else {
        1
    };
    // A warm-up round of each, not counted.
    wsk_round();
    std_round();
    let mut wsk = Vec::with_capacity(rounds);
    let mut std = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        wsk.push(wsk_round());
        std.push(std_round());
    }
    let (wsk, std) = (median(wsk), median(std));
    println!(
        "echo {CONNECTIONS} connections x {} KiB over 127.0.0.1, median of {rounds} rounds:",
        BYTES / 1024
    );
    println!(
        "  raw wsk-sys echo server on wsk-host: {:8.1} MiB/s ({wsk:?} per round)",
        mib_per_second(wsk)
    );
    println!(
        "  std TcpStream echo server:           {:8.1} MiB/s ({std:?} per round)",
        mib_per_second(std)
    );
    println!(
        "  wsk-host / std: {:.2}",
        mib_per_second(wsk) / mib_per_second(std)
    );
}
