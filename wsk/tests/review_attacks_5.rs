//! Fifth adversarial review: the partial-transfer rule of `Op::timeout` ("a stream send or
//! receive the provider cancelled — a deadline, or the timeout of `wait_timeout` — or failed
//! after it had moved part of its bytes returns their count (`Ok`); a `receive_exact` fails
//! instead, the bytes it got in the buffer"), and the overall promise that nothing the
//! provider moved is lost or duplicated. Public API only.
//!
//! What is attacked, every byte counted end to end through a loopback peer:
//! - streams of sends and receives with tiny deadlines and `wait_timeout`s racing their
//!   completions in every completion mode, waited, polled then waited, and run by
//!   `task::block_on`, from pool, vector and sliced buffers, receiving into buffers that
//!   already hold data (`receive` and `receive_exact`);
//! - `receive_exact` timed out after part of its bytes, continued by another one;
//! - `send_vectored` timed out part way and a send failed part way (a reset);
//! - `disconnect_with` timed out part way: its output has no count, so a time-out after
//!   bytes left loses them from the caller's accounting (`disconnect_with_timed_out_after_
//!   part_of_its_bytes_left_reports_them` fails: see its doc);
//! - `send_all` under a client dropped from another thread;
//! - datagrams with deadlines: never a partial count;
//! - `AsyncStream` reads and writes whose futures are dropped after a poll.

use std::io::{Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wsk::{Buf, BufList, ConnectionSocket, Deadline, Error, IoBuf, IoBufMut, WskClient};
use wsk_host::{CompletionMode, FaultPlan, Session};

mod common;
use common::{
    DEADLINE, completion_plans, connected, connected_with_small_buffers, driver, poll_once, within,
};

// =================================================================================================
// Helpers
// =================================================================================================

fn pattern(i: usize) -> u8 {
    ((i * 7 + i / 251) % 256) as u8
}

fn no_violations(what: &str, session: Session) {
    let (_, violations) = session.conclude();
    assert!(violations.is_empty(), "{what}: violations: {violations:#?}");
}

/// The completion modes, with a delayed one.
fn plans(seed: u64) -> Vec<(&'static str, FaultPlan)> {
    completion_plans(seed, Duration::from_micros(300))
}

/// Waits for `op` with a tiny bound, in one of five ways (every one bounded).
fn tiny<R: wsk::Request>(op: wsk::Op<R>, i: usize) -> R::Output {
    let us = (i * 37 % 400) as u64;
    match i % 5 {
        0 => op.wait_timeout((i % 2) as u32),
        1 => op.timeout(Duration::from_micros(us)).wait(),
        2 => op
            .deadline(Deadline::after(Duration::from_micros(us)))
            .wait(),
        3 => {
            let mut op = op.timeout(Duration::from_micros(us));
            match poll_once(&mut op) {
                Some(output) => output,
                None => op.wait_timeout(1),
            }
        }
        _ => wsk::task::block_on(op.timeout(Duration::from_micros(us)))
            .expect("block_on at PASSIVE_LEVEL"),
    }
}

/// Three bytes every receive buffer holds before its receive.
const PREFIX: &[u8] = b"PFX";

/// A receive into a buffer holding `PREFIX` (a pool buffer, a vector buffer, or a slice of
/// one ending before its capacity), bounded by `tiny`; `exact`: `receive_exact` of
/// `exact` bytes. Returns the result and the bytes received (after the prefix), checking the
/// prefix and that nothing was written past the range.
fn receive_checked(
    socket: &ConnectionSocket,
    cap: usize,
    exact: Option<usize>,
    i: usize,
) -> (wsk::Result<usize>, Vec<u8>) {
    fn go<B: IoBufMut>(
        socket: &ConnectionSocket,
        buf: B,
        exact: Option<usize>,
        i: usize,
    ) -> (wsk::Result<usize>, B) {
        match exact {
            Some(n) => tiny(socket.receive_exact(buf, n), i),
            None => tiny(socket.receive(buf), i),
        }
    }
    let what = ["pool", "vector", "slice"][i % 3];
    let (r, whole) = match i % 3 {
        0 => {
            let mut buf = Buf::with_capacity(PREFIX.len() + cap).unwrap();
            buf.extend_from_slice(PREFIX).unwrap();
            let (r, buf) = go(socket, buf, exact, i);
            (r, buf.to_vec())
        }
        1 => {
            let mut vec = Vec::with_capacity(PREFIX.len() + cap);
            vec.extend_from_slice(PREFIX);
            let (r, buf) = go(socket, Buf::from_vec(vec).unwrap(), exact, i);
            (r, buf.into_vec().expect("the vector back"))
        }
        _ => {
            // The slice covers [1, 3 + cap) of a buffer of 3 + cap + 7 bytes.
            let mut buf = Buf::with_capacity(PREFIX.len() + cap + 7).unwrap();
            buf.extend_from_slice(PREFIX).unwrap();
            let slice = buf
                .slice(1..PREFIX.len() + cap)
                .map_err(|(e, _)| e)
                .unwrap();
            let (r, slice) = go(socket, slice, exact, i);
            let buf = slice.into_inner();
            assert!(
                buf.len() <= PREFIX.len() + cap,
                "{what}: the buffer holds {} bytes, past the slice's end {}",
                buf.len(),
                PREFIX.len() + cap
            );
            (r, buf.to_vec())
        }
    };
    assert_eq!(&whole[..PREFIX.len()], PREFIX, "{what}: the prefix changed");
    let got = whole[PREFIX.len()..].to_vec();
    match (&r, exact) {
        (Ok(n), None) => assert_eq!(*n, got.len(), "{what}: Ok({n}), the buffer holds more"),
        (Ok(n), Some(want)) => {
            assert_eq!(*n, want, "{what}: receive_exact({want}) returned Ok({n})");
            assert_eq!(
                got.len(),
                want,
                "{what}: receive_exact({want}) holds {}",
                got.len()
            );
        }
        (Err(e), None) => assert!(
            got.is_empty(),
            "{what}: a receive failed ({e:?}) with {} bytes in its buffer: by the rule it \
             returns Ok with their count",
            got.len()
        ),
        (Err(_), Some(want)) => assert!(
            got.len() < want,
            "{what}: receive_exact({want}) failed with all {} bytes",
            got.len()
        ),
    }
    (r, got)
}

/// A send buffer holding `chunk`: a pool buffer, a vector buffer, or a slice of a buffer
/// whose first bytes (outside the slice) are junk; returns the bytes the buffer holds after
/// the send (they must be the chunk, untouched).
fn send_checked(
    socket: &ConnectionSocket,
    chunk: &[u8],
    i: usize,
) -> (wsk::Result<usize>, Vec<u8>) {
    match i % 3 {
        0 => {
            let (r, buf) = tiny(socket.send(Buf::from_slice(chunk).unwrap()), i);
            (r, buf.to_vec())
        }
        1 => {
            let (r, buf) = tiny(socket.send(Buf::from_vec(chunk.to_vec()).unwrap()), i);
            (r, buf.into_vec().expect("the vector back"))
        }
        _ => {
            let mut buf = Buf::with_capacity(chunk.len() + 9).unwrap();
            buf.extend_from_slice(b"JUNK!").unwrap();
            buf.extend_from_slice(chunk).unwrap();
            let slice = buf.slice(5..).map_err(|(e, _)| e).unwrap();
            let (r, slice) = tiny(socket.send(slice), i);
            (r, slice.into_inner()[5..].to_vec())
        }
    }
}

/// Reads from `peer` until the end of the stream (or the deadline), checking every byte is
/// the pattern from `0`, in order; returns how many came.
fn read_pattern(mut peer: std::net::TcpStream, slow: bool) -> usize {
    let mut got = 0usize;
    let mut buf = vec![0u8; 1500];
    loop {
        let n = match peer.read(&mut buf) {
            Ok(n) => n,
            Err(e) => panic!("the peer's read failed at {got}: {e}"),
        };
        if n == 0 {
            return got;
        }
        for (k, &b) in buf[..n].iter().enumerate() {
            assert_eq!(
                b,
                pattern(got + k),
                "byte {} the peer read (a byte duplicated or lost)",
                got + k
            );
        }
        got += n;
        if slow {
            std::thread::sleep(Duration::from_micros(150));
        }
    }
}

// =================================================================================================
// 1. Both directions of a stream under tiny bounds, in every completion mode
// =================================================================================================

/// Each send and each receive is bounded by a tiny timeout, deadline or `wait_timeout`, and
/// waited, polled then waited, or run by `block_on`. A send's `Ok(n)` means its first `n`
/// bytes left (the rest goes again); its failure means nothing left (all of it goes again):
/// the peer checks that it reads the pattern, every byte once, in order, and exactly as many
/// as were reported. A receive's bytes (`Ok`, or those a failed `receive_exact` holds) are
/// the stream, in order, behind a prefix that must stay.
#[test]
fn tiny_bounds_on_both_directions_lose_and_duplicate_no_byte_in_every_mode() {
    const TOTAL: usize = 120_000;
    for (mode, plan) in plans(5000) {
        let session = Session::start();
        let client = WskClient::register(driver(&session)).unwrap();
        let (socket, peer) = connected_with_small_buffers(&client);
        session.set_faults(plan);
        let writer = {
            let mut peer = peer.try_clone().unwrap();
            std::thread::spawn(move || {
                let data: Vec<u8> = (0..TOTAL).map(pattern).collect();
                for (k, chunk) in data.chunks(3001).enumerate() {
                    peer.write_all(chunk).unwrap();
                    if k % 3 == 0 {
                        std::thread::sleep(Duration::from_micros(400));
                    }
                }
            })
        };
        let reader = std::thread::spawn(move || read_pattern(peer, true));
        let socket = Arc::new(socket);
        let sender = {
            let socket = Arc::clone(&socket);
            std::thread::spawn(move || {
                let data: Vec<u8> = (0..TOTAL).map(pattern).collect();
                let (mut at, mut i, mut partial, mut failed) = (0usize, 0usize, 0, 0);
                let end = Instant::now() + Duration::from_secs(30);
                while at < TOTAL {
                    assert!(Instant::now() < end, "{mode}: sending stuck at {at}");
                    i += 1;
                    let len = (1 + i * 389 % 7000).min(TOTAL - at);
                    let chunk = &data[at..at + len];
                    let (r, back) = send_checked(&socket, chunk, i);
                    assert!(back == chunk, "{mode}: a sent buffer came back changed");
                    match r {
                        Ok(n) => {
                            assert!(0 < n && n <= len, "{mode}: Ok({n}) for {len} bytes");
                            if n < len {
                                partial += 1;
                            }
                            at += n;
                        }
                        Err(e) => {
                            assert_eq!(e, Error::TIMED_OUT, "{mode}: a send failed");
                            failed += 1;
                        }
                    }
                }
                socket.disconnect().timeout(DEADLINE).wait().0.unwrap();
                (partial, failed)
            })
        };
        let mut stream: Vec<u8> = Vec::with_capacity(TOTAL);
        let (mut i, mut timeouts, mut partial_exact) = (0usize, 0, 0);
        let end = Instant::now() + Duration::from_secs(30);
        while stream.len() < TOTAL {
            assert!(
                Instant::now() < end,
                "{mode}: receiving stuck at {}",
                stream.len()
            );
            i += 1;
            let cap = 1 + i * 613 % 5000;
            let exact = (i % 4 == 0).then(|| (1 + i % 700).min(TOTAL - stream.len()).min(cap));
            let (r, got) = receive_checked(&socket, cap, exact, i);
            if r.is_err() {
                timeouts += 1;
                if !got.is_empty() {
                    partial_exact += 1;
                }
            }
            let at = stream.len();
            stream.extend_from_slice(&got);
            if let Some(k) = (at..stream.len()).find(|&k| stream[k] != pattern(k)) {
                panic!("{mode}: received byte {k} is not the stream's (lost or duplicated)");
            }
        }
        let (partial, failed) = within("the sender", move || sender.join().unwrap());
        let peer_got = within("the peer's reader", move || reader.join().unwrap());
        within("the peer's writer", move || writer.join().unwrap());
        eprintln!(
            "{mode}: sends {partial} partial, {failed} failed; receives {timeouts} failed \
             ({partial_exact} receive_exact with part of their bytes)"
        );
        assert_eq!(
            peer_got, TOTAL,
            "{mode}: the peer read other than what was reported sent"
        );
        drop(socket);
        within("client drop", move || drop(client));
        no_violations(mode, session);
    }
}

// =================================================================================================
// 2. receive_exact timed out part way, then continued
// =================================================================================================

/// The peer sends 10 bytes; a `receive_exact` of 100 times out with them in its buffer
/// (behind a prefix, in a pool, vector or sliced buffer); the peer sends 90 more, and a
/// second `receive_exact` of what is missing completes: the 100 bytes are exact.
#[test]
fn receive_exact_timed_out_after_part_then_continued_is_exact() {
    for (mode, plan) in plans(5100) {
        let session = Session::start();
        let client = WskClient::register(driver(&session)).unwrap();
        let (socket, mut peer) = connected(&client);
        session.set_faults(plan);
        let mut offset = 0usize;
        for i in 0..15usize {
            let what = format!("{mode} #{i}");
            let first: Vec<u8> = (offset..offset + 10).map(pattern).collect();
            peer.write_all(&first).unwrap();
            std::thread::sleep(Duration::from_millis(3));
            let mut buf = Buf::with_capacity(PREFIX.len() + 100).unwrap();
            buf.extend_from_slice(PREFIX).unwrap();
            let op = socket.receive_exact(buf, 100);
            let (r, buf) = match i % 5 {
                0 => op.wait_timeout(20),
                1 => op.timeout(Duration::from_millis(20)).wait(),
                2 => op
                    .deadline(Deadline::after(Duration::from_millis(20)))
                    .wait(),
                3 => {
                    let mut op = op.timeout(Duration::from_millis(20));
                    poll_once(&mut op).unwrap_or_else(|| op.wait_timeout(10_000))
                }
                _ => wsk::task::block_on(op.timeout(Duration::from_millis(20))).unwrap(),
            };
            assert!(
                r.is_err(),
                "{what}: 100 bytes from a peer that sent 10: {r:?}"
            );
            assert_eq!(&buf[..PREFIX.len()], PREFIX, "{what}");
            let held = buf.len() - PREFIX.len();
            assert!(held <= 10, "{what}: holds {held} bytes of 10");
            assert_eq!(&buf[PREFIX.len()..], &first[..held], "{what}");
            // Whatever it did not take is still to come: ask for the rest of the 100.
            let rest: Vec<u8> = (offset + 10..offset + 100).map(pattern).collect();
            peer.write_all(&rest).unwrap();
            let (r, buf) = match i % 3 {
                0 => socket
                    .receive_exact(buf, 100 - held)
                    .timeout(DEADLINE)
                    .wait(),
                1 => {
                    let (r, vec) = {
                        let mut v = Vec::with_capacity(PREFIX.len() + 100);
                        v.extend_from_slice(&buf);
                        let (r, b) = socket
                            .receive_exact(Buf::from_vec(v).unwrap(), 100 - held)
                            .wait_timeout(10_000);
                        (r, b)
                    };
                    (r, vec)
                }
                _ => {
                    let end = buf.len() + 100 - held;
                    let mut whole = Buf::with_capacity(end + 5).unwrap();
                    whole.extend_from_slice(&buf).unwrap();
                    let slice = whole.slice(2..end).map_err(|(e, _)| e).unwrap();
                    let (r, slice) = socket
                        .receive_exact(slice, 100 - held)
                        .deadline(Deadline::after(DEADLINE))
                        .wait();
                    (r, slice.into_inner())
                }
            };
            assert_eq!(r, Ok(100 - held), "{what}: the rest");
            let expected: Vec<u8> = PREFIX
                .iter()
                .copied()
                .chain((offset..offset + 100).map(pattern))
                .collect();
            assert!(
                buf[..] == expected[..],
                "{what}: the 100 bytes after a timed-out receive_exact ({held} held) are not \
                 the stream: {:?}",
                &buf[..]
            );
            offset += 100;
        }
        drop(socket);
        within("client drop", move || drop(client));
        no_violations(mode, session);
    }
}

// =================================================================================================
// 3. send_vectored timed out part way; a send failed part way (a reset)
// =================================================================================================

/// A list of pool and vector buffers sent to a slow peer through small socket buffers, each
/// send timed out within milliseconds: an `Ok(n)` covers exactly the bytes the provider sent
/// (and the next list starts after them), a failure none; the peer reads the pattern once,
/// in order, exactly as many bytes as reported.
#[test]
fn send_vectored_timed_out_part_way_reports_exactly_what_left() {
    for (mode, plan) in [
        ("mixed", FaultPlan::new(5200)),
        (
            "pending",
            FaultPlan::new(5201).completion(CompletionMode::AlwaysPending),
        ),
        (
            "delayed",
            FaultPlan::new(5202).delay_completions(Duration::from_millis(1)),
        ),
    ] {
        let session = Session::start();
        let client = WskClient::register(driver(&session)).unwrap();
        let (socket, peer) = connected_with_small_buffers(&client);
        session.set_faults(plan);
        let reader = std::thread::spawn(move || read_pattern(peer, true));
        const TOTAL: usize = 200_000;
        let data: Vec<u8> = (0..TOTAL).map(pattern).collect();
        let (mut at, mut i, mut partial) = (0usize, 0usize, 0);
        let mut lost = Vec::new();
        let end = Instant::now() + Duration::from_secs(20);
        while at < TOTAL {
            assert!(Instant::now() < end, "{mode}: stuck at {at}");
            i += 1;
            let mut list = BufList::new();
            let mut offered = 0;
            for k in 0..4 {
                let len = (3000 + (i * 131 + k * 977) % 9000).min(TOTAL - at - offered);
                if len == 0 {
                    break;
                }
                let chunk = &data[at + offered..at + offered + len];
                let buf = if k % 2 == 0 {
                    Buf::from_slice(chunk).unwrap()
                } else {
                    Buf::from_vec(chunk.to_vec()).unwrap()
                };
                list.push(buf).unwrap();
                offered += len;
            }
            let before = session.report().bytes_sent;
            let (r, list) = tiny(socket.send_vectored(list), i);
            let moved = (session.report().bytes_sent - before) as usize;
            assert_eq!(
                list.total_len(),
                offered,
                "{mode}: the list came back changed"
            );
            match r {
                Ok(n) => {
                    assert_eq!(n, moved, "{mode}: Ok({n}) but the provider sent {moved}");
                    if n < offered {
                        partial += 1;
                    }
                    at += n;
                }
                Err(e) if moved > 0 => {
                    // The count is lost: the bytes that left go again (the peer sees them
                    // twice); recorded, and the test goes on to show it.
                    lost.push((e, moved, offered));
                }
                Err(_) => {}
            }
        }
        socket.disconnect().timeout(DEADLINE).wait().0.unwrap();
        let peer = within("the reader", move || reader.join());
        eprintln!("{mode}: {i} lists, {partial} partly sent");
        assert!(
            lost.is_empty(),
            "{mode}: send_vectored failed after the provider had sent part of the list, with \
             no count (error, bytes sent, bytes offered): {lost:?}; the peer: {}",
            match &peer {
                Ok(n) => format!("read {n} of {TOTAL}"),
                Err(_) => "read a byte twice (its check failed)".to_string(),
            }
        );
        assert_eq!(peer.unwrap(), TOTAL, "{mode}");
        drop(socket);
        within("client drop", move || drop(client));
        no_violations(mode, session);
    }
}

/// The provider resets the connection after 10 000 bytes, in the middle of a send: the
/// send that crosses the limit returns what left (`Ok`), or fails having sent nothing.
#[test]
fn a_send_failed_part_way_returns_what_left() {
    for (mode, completion) in [
        ("inline", CompletionMode::AlwaysInline),
        ("pending", CompletionMode::AlwaysPending),
        ("mixed", CompletionMode::Mixed),
    ] {
        let session = Session::start();
        let client = WskClient::register(driver(&session)).unwrap();
        let (socket, _peer) = connected(&client);
        session.set_faults(
            FaultPlan::new(5300)
                .completion(completion)
                .reset_connections_after(10_000),
        );
        let mut reported = 0usize;
        let start = session.report().bytes_sent;
        for i in 0..6usize {
            let data: Vec<u8> = (0..4000).map(|k| pattern(k + i)).collect();
            let before = session.report().bytes_sent;
            let (r, _) = socket
                .send(Buf::from_slice(&data).unwrap())
                .wait_timeout(10_000);
            let moved = (session.report().bytes_sent - before) as usize;
            match r {
                Ok(n) => {
                    assert_eq!(n, moved, "{mode} #{i}: Ok({n}), the provider sent {moved}");
                    reported += n;
                }
                Err(e) => assert_eq!(
                    moved, 0,
                    "{mode} #{i}: failed ({e:?}) after {moved} bytes left: their count is lost"
                ),
            }
        }
        let total = (session.report().bytes_sent - start) as usize;
        assert_eq!(reported, total, "{mode}: reported {reported}, sent {total}");
        drop(socket);
        within("client drop", move || drop(client));
        no_violations(mode, session);
    }
}

// =================================================================================================
// 4. disconnect_with timed out part way
// =================================================================================================

/// `disconnect_with` sends its buffer then a FIN, and yields no count: its docs say that a
/// failure — a deadline included — after part of the bytes left does not say how many, the
/// sending side then holding a prefix of the buffer. Timed out part way (a peer that does
/// not read, small socket buffers): the result must be a failure (never `Ok`, which would
/// claim the FIN), the buffer must come back unchanged, and the peer must read a prefix of
/// the data, in order — nothing else, nothing twice.
#[test]
fn disconnect_with_timed_out_part_way_fails_with_a_prefix_sent() {
    for (mode, plan) in [
        ("mixed", FaultPlan::new(5400)),
        (
            "pending",
            FaultPlan::new(5401).completion(CompletionMode::AlwaysPending),
        ),
    ] {
        let session = Session::start();
        let client = WskClient::register(driver(&session)).unwrap();
        let (socket, peer) = connected_with_small_buffers(&client);
        session.set_faults(plan);
        let data: Vec<u8> = (0..1 << 20).map(pattern).collect();
        let before = session.report().bytes_sent;
        let (r, buf) = socket
            .disconnect_with(Buf::from_slice(&data).unwrap())
            .timeout(Duration::from_millis(30))
            .wait();
        let moved = (session.report().bytes_sent - before) as usize;
        let buf = buf.expect("the buffer back");
        assert!(buf[..] == data[..], "{mode}: the buffer came back changed");
        drop(buf);
        // The peer reads what came (then the connection goes).
        let reader = {
            let mut peer = peer;
            peer.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                let mut b = vec![0u8; 8192];
                while let Ok(n) = peer.read(&mut b) {
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&b[..n]);
                }
                got
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        drop(socket);
        let peer_got = within("the reader", move || reader.join().unwrap());
        within("client drop", move || drop(client));
        no_violations(mode, session);
        eprintln!(
            "{mode}: disconnect_with {r:?}, provider sent {moved}, peer read {}",
            peer_got.len()
        );
        assert!(
            r.is_err(),
            "{mode}: a disconnect_with of 1 MiB to a peer that does not read succeeded"
        );
        assert!(
            peer_got.len() <= data.len() && peer_got[..] == data[..peer_got.len()],
            "{mode}: the peer read something other than a prefix of the data ({} bytes)",
            peer_got.len()
        );
        assert_eq!(
            peer_got.len(),
            moved,
            "{mode}: the peer read other than what the provider sent"
        );
    }
}

// =================================================================================================
// 5. send_all under a client dropped from another thread
// =================================================================================================

/// `send_all` of 2 MiB to a slow peer; the client goes from another thread part way. The
/// wait ends (no hang), the buffer comes back unchanged, and the peer got a prefix of the
/// data, in order.
#[test]
fn send_all_under_a_client_dropped_from_another_thread_ends_with_a_prefix() {
    for (mode, plan) in [
        ("mixed", FaultPlan::new(5500)),
        (
            "pending",
            FaultPlan::new(5501).completion(CompletionMode::AlwaysPending),
        ),
        (
            "delayed",
            FaultPlan::new(5502).delay_completions(Duration::from_millis(1)),
        ),
    ] {
        let session = Session::start();
        let client = WskClient::register(driver(&session)).unwrap();
        let (socket, peer) = connected(&client);
        session.set_faults(plan);
        let reader = std::thread::spawn(move || {
            let mut peer = peer;
            peer.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let mut got = 0usize;
            let mut b = vec![0u8; 4096];
            while let Ok(n) = peer.read(&mut b) {
                if n == 0 {
                    break;
                }
                for (k, &x) in b[..n].iter().enumerate() {
                    assert_eq!(
                        x,
                        pattern(got + k),
                        "{mode}: byte {} the peer read",
                        got + k
                    );
                }
                got += n;
                std::thread::sleep(Duration::from_micros(300));
            }
            got
        });
        let data: Vec<u8> = (0..2 << 20).map(pattern).collect();
        let sender = {
            let data = data.clone();
            std::thread::spawn(move || {
                let out = socket.send_all(Buf::from_vec(data).unwrap()).wait();
                drop(socket);
                out
            })
        };
        std::thread::sleep(Duration::from_millis(20));
        within("client drop", move || drop(client));
        let (r, buf) = within("send_all", move || sender.join().unwrap());
        let vec = buf.into_vec().expect("the vector back");
        assert!(vec == data, "{mode}: the vector came back changed");
        let peer_got = within("the reader", move || reader.join().unwrap());
        eprintln!("{mode}: send_all {r:?}, the peer read {peer_got}");
        if r.is_ok() {
            assert_eq!(peer_got, data.len(), "{mode}: send_all Ok, peer read less");
        }
        no_violations(mode, session);
    }
}

// =================================================================================================
// 6. Datagrams with deadlines
// =================================================================================================

/// `send_to` and `receive_from` with tiny bounds in every completion mode: a send's `Ok` is
/// the whole datagram, a failure sends none (the peer gets each datagram whole, at most once
/// per success); a receive's `Ok` is one whole datagram behind the prefix, a failure leaves
/// only the prefix.
#[test]
fn datagrams_with_tiny_bounds_are_whole_or_nothing() {
    for (mode, plan) in plans(5600) {
        let session = Session::start();
        let client = WskClient::register(driver(&session)).unwrap();
        let socket = client
            .bind_datagram("127.0.0.1:0".parse().unwrap())
            .wait()
            .unwrap();
        let local = socket.local_addr().timeout(DEADLINE).wait().unwrap();
        let peer = UdpSocket::bind(SocketAddr::new(local.ip(), 0)).unwrap();
        peer.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let peer_addr = peer.local_addr().unwrap();
        session.set_faults(plan);
        // Sends.
        let mut ok_sent = 0usize;
        for i in 0..120usize {
            let len = 1 + i * 97 % 1400;
            let data: Vec<u8> = (0..len).map(|k| pattern(k + i)).collect();
            let (r, buf) = tiny(
                socket.send_to(Buf::from_slice(&data).unwrap(), peer_addr),
                i,
            );
            assert!(
                buf[..] == data[..],
                "{mode}: a sent datagram's buffer changed"
            );
            match r {
                Ok(n) => {
                    assert_eq!(n, len, "{mode}: send_to reported {n} of {len}");
                    ok_sent += 1;
                }
                Err(e) => assert_eq!(e, Error::TIMED_OUT, "{mode}"),
            }
        }
        let mut got = 0usize;
        let mut b = vec![0u8; 2048];
        while let Ok((n, _)) = peer.recv_from(&mut b) {
            let i = (0..120usize)
                .find(|&i| 1 + i * 97 % 1400 == n && (0..n).all(|k| b[k] == pattern(k + i)))
                .unwrap_or_else(|| panic!("{mode}: a datagram of {n} bytes that was not sent"));
            let _ = i;
            got += 1;
        }
        assert!(
            got >= ok_sent && got <= 120,
            "{mode}: {ok_sent} sends Ok, the peer got {got}"
        );
        // Receives.
        for i in 0..120usize {
            let len = 1 + i * 53 % 900;
            let data: Vec<u8> = (0..len).map(|k| pattern(k * 3 + i)).collect();
            if i % 2 == 0 {
                peer.send_to(&data, local).unwrap();
            }
            let mut buf = Buf::with_capacity(PREFIX.len() + 1000).unwrap();
            buf.extend_from_slice(PREFIX).unwrap();
            let (r, buf) = tiny(socket.receive_from(buf), i);
            assert_eq!(&buf[..PREFIX.len()], PREFIX, "{mode}: the prefix changed");
            match r {
                Ok((n, from)) => {
                    assert_eq!(from, peer_addr, "{mode}");
                    assert_eq!(buf.len(), PREFIX.len() + n, "{mode}: Ok({n})");
                    let body = &buf[PREFIX.len()..];
                    let found = (0..=i).any(|j| {
                        1 + j * 53 % 900 == n && (0..n).all(|k| body[k] == pattern(k * 3 + j))
                    });
                    assert!(
                        found,
                        "{mode}: received {n} bytes that are no whole datagram sent"
                    );
                }
                Err(e) => assert_eq!(
                    buf.len(),
                    PREFIX.len(),
                    "{mode}: a failed receive_from ({e:?}) holds bytes"
                ),
            }
        }
        drop(socket);
        within("client drop", move || drop(client));
        no_violations(mode, session);
    }
}

// =================================================================================================
// 7. AsyncStream with futures dropped after a poll
// =================================================================================================

/// Reads and writes of an `AsyncStream` whose futures are polled once and dropped when
/// pending (what a `select` with a timer does), in every completion mode: what `write`
/// returned `Ok(n)` for reaches the peer once, in order; what `read` returned is the peer's
/// stream, in order, with no gap.
#[test]
fn async_stream_futures_dropped_after_a_poll_lose_and_duplicate_no_byte() {
    use embedded_io_async::{Read as _, Write as _};
    const TOTAL: usize = 60_000;
    for (mode, plan) in plans(5700) {
        let session = Session::start();
        let client = WskClient::register(driver(&session)).unwrap();
        let (socket, peer) = connected(&client);
        session.set_faults(plan);
        let writer = {
            let mut peer = peer.try_clone().unwrap();
            std::thread::spawn(move || {
                let data: Vec<u8> = (0..TOTAL).map(pattern).collect();
                for chunk in data.chunks(1777) {
                    peer.write_all(chunk).unwrap();
                    std::thread::sleep(Duration::from_micros(200));
                }
            })
        };
        let reader = std::thread::spawn(move || read_pattern(peer, false));
        let mut stream = wsk::io::AsyncStream::with_capacity(socket, 3000, 2500).unwrap();
        let data: Vec<u8> = (0..TOTAL).map(pattern).collect();
        let (mut sent, mut got) = (0usize, Vec::with_capacity(TOTAL));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let end = Instant::now() + Duration::from_secs(20);
        let mut i = 0usize;
        while sent < TOTAL || got.len() < TOTAL {
            assert!(
                Instant::now() < end,
                "{mode}: stuck: sent {sent}, read {}",
                got.len()
            );
            i += 1;
            if sent < TOTAL {
                let len = (1 + i * 211 % 4000).min(TOTAL - sent);
                let polled = {
                    let mut fut = std::pin::pin!(stream.write(&data[sent..sent + len]));
                    fut.as_mut().poll(&mut cx)
                };
                if let std::task::Poll::Ready(r) = polled {
                    let n = r.unwrap_or_else(|e| panic!("{mode}: write failed: {e:?}"));
                    assert!(0 < n && n <= len, "{mode}: write took {n} of {len}");
                    sent += n;
                }
            }
            if got.len() < TOTAL {
                let mut dst = vec![0u8; 1 + i * 331 % 3500];
                let polled = {
                    let mut fut = std::pin::pin!(stream.read(&mut dst));
                    fut.as_mut().poll(&mut cx)
                };
                if let std::task::Poll::Ready(r) = polled {
                    let n = r.unwrap_or_else(|e| panic!("{mode}: read failed: {e:?}"));
                    assert!(n > 0, "{mode}: end of stream at {}", got.len());
                    let at = got.len();
                    got.extend_from_slice(&dst[..n]);
                    if let Some(k) = (at..got.len()).find(|&k| got[k] != pattern(k)) {
                        panic!("{mode}: read byte {k} is not the peer's stream");
                    }
                } else {
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
        }
        let closed = wsk::task::block_on(async {
            let mut stream = stream;
            stream.flush().await?;
            stream.socket().disconnect().timeout(DEADLINE).await.0?;
            stream.close().await
        })
        .unwrap();
        assert_eq!(closed, Ok(()), "{mode}: close");
        let peer_got = within("the peer's reader", move || reader.join().unwrap());
        within("the peer's writer", move || writer.join().unwrap());
        assert_eq!(
            peer_got, TOTAL,
            "{mode}: the peer read other than what was written"
        );
        within("client drop", move || drop(client));
        no_violations(mode, session);
    }
}
