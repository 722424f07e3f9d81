//! Load figures of `wsk_echo_server` on `wsk-host` (issue 14): how many connections the
//! server holds at once, the p99 echo latency of polite clients while one client saturates
//! the server, and how long the unload takes with 10 000 connections open. Not part of the
//! test suite (it takes a minute or two and about 20 000 descriptors); run it with
//!
//! ```text
//! cargo test -p wsk-host-runner --test load_figures -- --ignored --nocapture
//! ```
//!
//! It prints a table. The limits that apply:
//! - descriptors: the soft `RLIMIT_NOFILE` is raised to the hard limit, in this process (the
//!   server's side of each connection is one host socket) and in the client processes. The
//!   clients run in child processes (this test binary again), so that the server's process
//!   spends its descriptors on the server's side alone;
//! - ephemeral ports: `net.ipv4.ip_local_port_range` (32768–60999 by default, 28 232 ports per
//!   destination), more than the descriptors allow. Every client connection is closed with a
//!   reset (`SO_LINGER` 0) after the server closed or unloaded: no `TIME_WAIT` is left behind;
//! - the server's `MaxConnections` is raised (1 000 000 to measure what the host allows,
//!   20 000 for the unload) and `IdleTimeoutMs` is 0 (no idle timeout).
#![cfg(unix)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use wsk_host::{LoadedDriver, RegValue, Session};
use wsk_host_runner::peers::{polite_tcp, tcp_hog};
use wsk_host_runner::{Output, find, load};

const WAIT: Duration = Duration::from_secs(20);
/// How long a client process may take to open its connections (each is echoed once).
const OPENING: Duration = Duration::from_secs(600);
/// How long one client connection may wait for its echo before the opening stops there.
const ECHO_DEADLINE: Duration = Duration::from_secs(3);

/// Set in a client process: `ADDRESS COUNT`.
const CHILD: &str = "WSK_LOAD_FIGURES_CLIENTS";
/// This test's name (a client process runs it again).
const TEST_NAME: &str = "echo_server_load_figures";

/// Raises the soft descriptor limit to the hard limit; returns it.
fn raise_descriptor_limit() -> libc::rlim_t {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit to fill, then to pass.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    limit.rlim_cur
}

/// Closes `stream` with a reset when dropped (`SO_LINGER` 0): no `TIME_WAIT`.
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

/// Whether `stream` gets `message` echoed within `within`.
fn echoes(stream: &mut TcpStream, message: &[u8; 4], within: Duration) -> bool {
    let mut back = [0u8; 4];
    stream.set_read_timeout(Some(within)).is_ok()
        && stream.write_all(message).is_ok()
        && stream.read_exact(&mut back).is_ok()
        && &back == message
}

/// A client process: on `open`, opens up to `count` connections to `address`, one after the
/// other, each echoed once, stopping at the first that fails; prints `held N (why it
/// stopped) in MS ms`. Then, on `check`, echoes once more on every connection at once and
/// prints `checked N`; on `closed`, waits for the server to close each connection and prints
/// `closed N`; on `close` or the end of its input, resets them all and exits.
fn client_process(spec: &str) {
    let (address, count) = spec.split_once(' ').expect("ADDRESS COUNT");
    let address: SocketAddr = address.parse().unwrap();
    let count: usize = count.parse().unwrap();
    raise_descriptor_limit();
    let mut held: Vec<TcpStream> = Vec::with_capacity(count);
    let mut out = std::io::stdout();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        match line.trim() {
            "open" => {
                let started = Instant::now();
                let mut why = "all opened".to_string();
                while held.len() < count {
                    match TcpStream::connect_timeout(&address, Duration::from_secs(5)) {
                        Ok(mut stream) => {
                            set_abortive_close(&stream);
                            stream.set_nodelay(true).unwrap();
                            if echoes(&mut stream, b"open", ECHO_DEADLINE) {
                                held.push(stream);
                                if held.len() % 1000 == 0 {
                                    eprintln!(
                                        "client process: {} connections in {:.1?}",
                                        held.len(),
                                        started.elapsed()
                                    );
                                }
                            } else {
                                why = format!("no echo within {ECHO_DEADLINE:?}");
                                break;
                            }
                        }
                        Err(error) => {
                            why = format!("connect: {error}");
                            break;
                        }
                    }
                }
                writeln!(
                    out,
                    "held {} ({why}) in {} ms",
                    held.len(),
                    started.elapsed().as_millis()
                )
                .unwrap();
            }
            "check" => {
                // Every connection at once: the server has them all in hand.
                for stream in &mut held {
                    let _ = stream.write_all(b"chck");
                }
                let ok = held
                    .iter()
                    .filter(|stream| {
                        let mut stream: &TcpStream = stream;
                        let mut back = [0u8; 4];
                        stream.set_read_timeout(Some(WAIT)).is_ok()
                            && stream.read_exact(&mut back).is_ok()
                            && &back == b"chck"
                    })
                    .count();
                writeln!(out, "checked {ok}").unwrap();
            }
            "closed" => {
                let closed = held
                    .iter()
                    .filter(|stream| {
                        let mut stream: &TcpStream = stream;
                        let mut byte = [0u8; 1];
                        stream.set_read_timeout(Some(WAIT)).is_ok()
                            && match stream.read(&mut byte) {
                                Ok(n) => n == 0,
                                Err(e) => !matches!(
                                    e.kind(),
                                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                                ),
                            }
                    })
                    .count();
                writeln!(out, "closed {closed}").unwrap();
            }
            _ => break,
        }
        out.flush().unwrap();
    }
    // Dropped: every connection reset.
}

/// A client process, driven through its standard input, read through its standard output.
struct Clients {
    child: Child,
    input: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Clients {
    fn spawn(address: SocketAddr, count: usize) -> Clients {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                TEST_NAME,
                "--ignored",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD, format!("{address} {count}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Clients {
            input: child.stdin.take(),
            child,
            lines,
        }
    }

    /// Sends `command`; returns what it prints from `answer` on, within `within`.
    fn ask(&mut self, command: &str, answer: &str, within: Duration) -> String {
        let input = self.input.as_mut().unwrap();
        writeln!(input, "{command}").unwrap();
        input.flush().unwrap();
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                // The test harness may have printed the test's name on the same line.
                Ok(line) if line.contains(answer) => {
                    return line[line.find(answer).unwrap()..].to_string();
                }
                Ok(_) => {}
                Err(error) => panic!("client process: no `{answer}` within {within:?}: {error}"),
            }
        }
    }

    /// `open`: the connections held and the line.
    fn open(&mut self) -> (usize, String) {
        let line = self.ask("open", "held ", OPENING);
        (first_number(&line), line)
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        // The end of its input: it resets its connections and exits.
        drop(self.input.take());
        let deadline = Instant::now() + WAIT;
        while self.child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The first number in `line`.
fn first_number(line: &str) -> usize {
    line.split(|c: char| !c.is_ascii_digit())
        .find(|s| !s.is_empty())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no number in `{line}`"))
}

/// Loads the echo server on an ephemeral port of 127.0.0.1 with `extra` parameters.
fn start(extra: &[(&str, RegValue)]) -> (LoadedDriver, Output, SocketAddr) {
    let mut output = Output::new();
    let mut parameters = vec![("Listen", RegValue::String("127.0.0.1:0".into()))];
    parameters.extend(extra.iter().cloned());
    let loaded = load(find("echo-server").unwrap(), &parameters).expect("DriverEntry succeeds");
    let line = output.wait_for("listening on 127.0.0.1:", WAIT);
    let address = line.rsplit(' ').next().unwrap().trim().parse().unwrap();
    (loaded, output, address)
}

/// Unloads, timed; waits for the driver's last line.
fn unload(loaded: LoadedDriver, output: &mut Output) -> Duration {
    let started = Instant::now();
    assert!(loaded.unload(), "unloaded");
    let took = started.elapsed();
    output.wait_for("wsk_echo_server: unloaded", WAIT);
    took
}

/// The `q` quantile of `samples` (sorted).
fn quantile(samples: &[Duration], q: f64) -> Duration {
    samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)]
}

/// `clients` polite clients, `rounds` echoes each, at once; every latency, sorted.
fn polite_latencies(address: SocketAddr, clients: usize, rounds: usize) -> Vec<Duration> {
    let threads: Vec<_> = (0..clients)
        .map(|_| std::thread::spawn(move || polite_tcp(address, rounds, set_abortive_close)))
        .collect();
    let mut latencies: Vec<Duration> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    latencies.sort();
    latencies
}

/// Rows of the table: figure, value, how it was measured.
type Rows = Vec<(String, String, String)>;

/// How many connections the server holds at once: two client processes open connections
/// until the server stops answering new ones.
fn connections_held(limit: libc::rlim_t, rows: &mut Rows) {
    let session = Session::start();
    let (loaded, mut output, address) = start(&[
        ("MaxConnections", RegValue::Dword(1_000_000)),
        ("IdleTimeoutMs", RegValue::Dword(0)),
    ]);
    // Both spawned before the server's process runs out of descriptors (pipes take some).
    let per_process = (limit as usize).saturating_sub(64).min(12_000);
    let mut clients = [
        Clients::spawn(address, per_process),
        Clients::spawn(address, per_process),
    ];
    let started = Instant::now();
    let mut held = 0;
    let mut why = String::new();
    for process in &mut clients {
        let (count, line) = process.open();
        held += count;
        why = line;
        if !line_says_all_opened(&why) {
            break;
        }
    }
    let opening = started.elapsed();
    let checked: usize = clients
        .iter_mut()
        .map(|c| first_number(&c.ask("check", "checked ", Duration::from_secs(120))))
        .sum();
    let refused = output.text().lines().any(|l| l.contains("accept on"));
    let unloading = unload(loaded, &mut output);
    drop(clients);
    let report = session.finish();
    assert_eq!(report.sockets_created, report.sockets_closed);
    eprintln!("held {held}; last client process: {why}; checked {checked}");
    assert_eq!(checked, held, "every connection held still echoes");
    rows.push((
        "connections held at once".into(),
        format!("{held}"),
        format!(
            "opened one by one in {:.1} s, each echoed; all {checked} echoed again at once; \
             the next: {}{}",
            opening.as_secs_f64(),
            why.split_once('(')
                .and_then(|(_, r)| r.split_once(')'))
                .map_or("-", |(r, _)| r),
            if refused {
                " (the server's accept: STATUS_INSUFFICIENT_RESOURCES, EMFILE at \
                 RLIMIT_NOFILE, retried with backoff)"
            } else {
                ""
            }
        ),
    ));
    rows.push((
        format!("unload with {held} connections"),
        format!("{:.0} ms", unloading.as_secs_f64() * 1000.0),
        "DriverUnload: every task cancelled, every socket closed".into(),
    ));
}

fn line_says_all_opened(line: &str) -> bool {
    line.contains("(all opened)")
}

/// The echo latency of polite clients, alone and while one client saturates the server.
fn latency_under_a_hog(rows: &mut Rows) {
    let session = Session::start();
    let (loaded, mut output, address) = start(&[]);
    let (clients, rounds) = (3, 1000);
    let alone = polite_latencies(address, clients, rounds);
    let stop = Arc::new(AtomicBool::new(false));
    let hog = tcp_hog(address, Arc::clone(&stop), set_abortive_close);
    // The hog saturates the server first.
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let hogged = polite_latencies(address, clients, rounds);
    let during = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let hog_bytes = hog.join().unwrap();
    unload(loaded, &mut output);
    session.finish();
    let samples = format!("{clients} polite clients x {rounds} echoes of 64 bytes");
    rows.push((
        "p99 echo latency, no hog".into(),
        format!(
            "{:.2?} (p50 {:.2?}, max {:.2?})",
            quantile(&alone, 0.99),
            quantile(&alone, 0.5),
            alone.last().unwrap()
        ),
        samples.clone(),
    ));
    rows.push((
        "p99 echo latency under a hog".into(),
        format!(
            "{:.2?} (p50 {:.2?}, max {:.2?})",
            quantile(&hogged, 0.99),
            quantile(&hogged, 0.5),
            hogged.last().unwrap()
        ),
        format!(
            "{samples}, while one client sends 64 KiB blocks and reads the echo as fast as it \
             can ({:.0} MB/s echoed to it)",
            hog_bytes as f64 / 1e6 / (during.as_secs_f64() + 0.5)
        ),
    ));
}

/// The unload with 10 000 connections open (each with a receive pending).
fn unload_at_10_000(rows: &mut Rows) {
    const CONNECTIONS: usize = 10_000;
    let session = Session::start();
    let (loaded, mut output, address) = start(&[
        ("MaxConnections", RegValue::Dword(20_000)),
        ("IdleTimeoutMs", RegValue::Dword(0)),
    ]);
    let mut clients = Clients::spawn(address, CONNECTIONS);
    let (held, line) = clients.open();
    assert_eq!(held, CONNECTIONS, "{line}");
    // Each connection's receive and the next accept are pending in the provider.
    assert!(
        session.wait_for_queued_requests(CONNECTIONS + 1, Duration::from_secs(60)),
        "{} requests queued, {} expected",
        session.queued_requests(),
        CONNECTIONS + 1
    );
    let unloading = unload(loaded, &mut output);
    let closed = first_number(&clients.ask("closed", "closed ", Duration::from_secs(300)));
    drop(clients);
    let started = Instant::now();
    let report = session.finish();
    let finishing = started.elapsed();
    assert_eq!(
        closed, CONNECTIONS,
        "every client saw its connection closed"
    );
    assert_eq!(report.sockets_created, report.sockets_closed);
    rows.push((
        format!("unload with {CONNECTIONS} connections"),
        format!("{:.0} ms", unloading.as_secs_f64() * 1000.0),
        format!(
            "{CONNECTIONS} receives and 1 accept pending, all cancelled ({} cancelled in the \
             session); every client saw its connection closed; no leak ({} sockets, the \
             session's end {:.0} ms)",
            report.cancelled,
            report.sockets_closed,
            finishing.as_secs_f64() * 1000.0
        ),
    ));
}

#[test]
#[ignore = "load figures: a minute or two, ~20 000 descriptors; run with --ignored --nocapture"]
fn echo_server_load_figures() {
    if let Ok(spec) = std::env::var(CHILD) {
        client_process(&spec);
        return;
    }
    let limit = raise_descriptor_limit();
    let mut rows: Rows = Vec::new();
    unload_at_10_000(&mut rows);
    latency_under_a_hog(&mut rows);
    connections_held(limit, &mut rows);
    println!(
        "\nwsk_echo_server on wsk-host, 127.0.0.1, {} build, RLIMIT_NOFILE {limit}, {} CPUs",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let value_width = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    for (figure, value, how) in &rows {
        println!("| {figure:<width$} | {value:<value_width$} | {how} |");
    }
}
