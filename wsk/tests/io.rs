//! `wsk::io::AsyncStream` (feature `embedded-io-async`) on wsk-host, against std sockets on
//! loopback: round trips through the async and the blocking traits, reads dropped and
//! forgotten in flight (no byte lost, nothing freed under the provider), the end of the
//! stream, failures and their `embedded_io` kinds.

use std::future::Future;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use embedded_io_async::{Read, Write};
use wsk::io::AsyncStream;
use wsk::task::block_on;
use wsk::{ErrorKind, WskClient};
use wsk_host::{FaultPlan, Session};

mod common;
use common::driver;

const DEADLINE: Duration = Duration::from_secs(10);

/// A connected stream and its std peer (with read and write timeouts).
fn connected(client: &WskClient, receive: usize, send: usize) -> (AsyncStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let socket = client
        .connect(listener.local_addr().unwrap())
        .wait()
        .unwrap();
    let peer = listener.accept().unwrap().0;
    peer.set_read_timeout(Some(DEADLINE)).unwrap();
    peer.set_write_timeout(Some(DEADLINE)).unwrap();
    (
        AsyncStream::with_capacity(socket, receive, send).unwrap(),
        peer,
    )
}

/// Runs `future` to completion by polling it (no-op waker) until `DEADLINE`; panics after.
fn within<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Poll::Ready(output) = future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            return output;
        }
        assert!(Instant::now() < deadline, "not done within {DEADLINE:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Polls once: the future must stay pending (its receive in flight).
fn poll_pending<F: Future>(future: Pin<&mut F>) {
    assert!(
        future
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_pending(),
        "nothing was sent yet: the read must wait"
    );
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[test]
fn async_round_trip_larger_than_the_buffers() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    // Small buffers: a write takes at most 1000 bytes, a receive brings at most 700.
    let (mut stream, mut peer) = connected(&client, 700, 1000);
    let echo = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = peer.read(&mut chunk).unwrap();
            if n == 0 {
                return seen;
            }
            seen.extend_from_slice(&chunk[..n]);
            peer.write_all(&chunk[..n]).unwrap();
        }
    });
    let message = pattern(48 * 1024);
    let back = block_on(async {
        assert_eq!(
            stream.write(&message).await.unwrap(),
            1000,
            "one buffer's worth"
        );
        stream.write_all(&message[1000..]).await.unwrap();
        stream.flush().await.unwrap();
        let mut back = vec![0u8; message.len()];
        stream.read_exact(&mut back).await.unwrap();
        stream.close().await.unwrap();
        back
    })
    .unwrap();
    assert_eq!(back, message);
    assert_eq!(echo.join().unwrap(), message);
    drop(client);
    session.finish();
}

#[test]
fn blocking_round_trip() {
    use embedded_io::{Read as BlockingRead, Write as BlockingWrite};
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (mut stream, mut peer) = connected(&client, 64, 64);
    BlockingWrite::write_all(&mut stream, b"ping through embedded-io").unwrap();
    BlockingWrite::flush(&mut stream).unwrap();
    let mut got = [0u8; 24];
    peer.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping through embedded-io");
    peer.write_all(b"pong").unwrap();
    let mut reply = [0u8; 4];
    BlockingRead::read_exact(&mut stream, &mut reply).unwrap();
    assert_eq!(&reply, b"pong");
    // An empty read or write returns 0 without touching the socket.
    assert_eq!(BlockingRead::read(&mut stream, &mut []).unwrap(), 0);
    assert_eq!(BlockingWrite::write(&mut stream, &[]).unwrap(), 0);
    drop((stream, client));
    session.finish();
}

#[test]
fn a_read_dropped_in_flight_loses_nothing() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (mut stream, mut peer) = connected(&client, 256, 256);
    let mut first = [0u8; 16];
    {
        let read = pin!(stream.read(&mut first));
        poll_pending(read);
        // Dropped here with its receive in flight: the receive stays the stream's.
    }
    assert!(
        session.wait_for_queued_requests(1, DEADLINE),
        "the receive is still queued in the provider"
    );
    // A second read future, polled then forgotten: it borrows the stream, the receive and its
    // buffer are the stream's.
    let mut second = [0u8; 16];
    {
        let mut read = Box::pin(stream.read(&mut second));
        poll_pending(read.as_mut());
        std::mem::forget(read);
    }
    assert_eq!(session.queued_requests(), 1, "no second receive was issued");
    peer.write_all(b"hello, world").unwrap();
    // The next read picks up the receive's bytes, a few at a time.
    let mut got = Vec::new();
    while got.len() < 12 {
        let mut small = [0u8; 5];
        let n = within(stream.read(&mut small)).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&small[..n]);
    }
    assert_eq!(got, b"hello, world");
    assert_eq!(first, [0; 16], "the dropped read's slice was never written");
    assert_eq!(
        second, [0; 16],
        "the forgotten read's slice was never written"
    );
    // Dropping the stream with a receive in flight cancels it; nothing leaks.
    poll_pending(pin!(stream.read(&mut first)));
    drop((stream, client));
    session.finish();
}

#[test]
fn a_read_dropped_after_its_receive_completed_keeps_the_bytes() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (mut stream, mut peer) = connected(&client, 256, 256);
    let mut unused = [0u8; 8];
    poll_pending(pin!(stream.read(&mut unused)));
    peer.write_all(b"arrived while nobody was reading").unwrap();
    // The receive completes with no read future alive.
    std::thread::sleep(Duration::from_millis(50));
    let mut got = vec![0u8; 32];
    within(stream.read_exact(&mut got)).unwrap();
    assert_eq!(&got, b"arrived while nobody was reading");
    drop((stream, client));
    session.finish();
}

#[test]
fn end_of_stream_is_zero_every_time() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (mut stream, mut peer) = connected(&client, 256, 256);
    peer.write_all(b"bye").unwrap();
    peer.shutdown(std::net::Shutdown::Write).unwrap();
    let mut got = [0u8; 3];
    within(stream.read_exact(&mut got)).unwrap();
    assert_eq!(&got, b"bye");
    let mut more = [0u8; 8];
    assert_eq!(within(stream.read(&mut more)).unwrap(), 0);
    assert_eq!(within(stream.read(&mut more)).unwrap(), 0);
    // read_exact past the end says so.
    assert!(matches!(
        within(stream.read_exact(&mut more)),
        Err(embedded_io::ReadExactError::UnexpectedEof)
    ));
    // Our side can still send, and close flushes first.
    within(stream.write_all(b"after your FIN")).unwrap();
    within(stream.close()).unwrap();
    let mut tail = Vec::new();
    peer.read_to_end(&mut tail).unwrap();
    assert_eq!(tail, b"after your FIN");
    drop(client);
    session.finish();
}

#[test]
fn a_failed_send_fails_every_later_write_and_flush() {
    let session = Session::start();
    session.set_faults(FaultPlan::new(3).reset_connections_after(10));
    let client = WskClient::register(driver(&session)).unwrap();
    let (mut stream, _peer) = connected(&client, 256, 256);
    // Write-behind: the write takes the bytes; the reset shows at the flush.
    let taken = within(stream.write(b"twenty bytes of data"));
    let flushed = match taken {
        Ok(n) => {
            assert_eq!(n, 20);
            within(stream.flush())
        }
        // The send completed inline and failed at once.
        Err(error) => Err(error),
    };
    let error = flushed.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ConnectionReset);
    assert_eq!(
        embedded_io::Error::kind(&error),
        embedded_io::ErrorKind::ConnectionReset
    );
    // Sticky: the outgoing bytes are no longer whole.
    assert_eq!(within(stream.write(b"more")).unwrap_err(), error);
    assert_eq!(within(stream.flush()).unwrap_err(), error);
    assert_eq!(within(stream.close()).unwrap_err(), error);
    drop(client);
    session.finish();
}

#[test]
fn a_reset_fails_the_read() {
    let session = Session::start();
    session.set_faults(FaultPlan::new(5).reset_connections_after(1));
    let client = WskClient::register(driver(&session)).unwrap();
    let (mut stream, _peer) = connected(&client, 256, 256);
    let mut buf = [0u8; 8];
    poll_pending(pin!(stream.read(&mut buf)));
    // The send crossing the limit resets the connection; the receive in flight fails.
    let _ = within(async {
        stream.write_all(b"xy").await?;
        stream.flush().await
    });
    let error = within(stream.read(&mut buf)).unwrap_err();
    assert!(
        matches!(
            embedded_io::Error::kind(&error),
            embedded_io::ErrorKind::ConnectionReset
                | embedded_io::ErrorKind::ConnectionAborted
                | embedded_io::ErrorKind::BrokenPipe
                | embedded_io::ErrorKind::NotConnected
        ),
        "{error}"
    );
    drop((stream, client));
    session.finish();
}

#[test]
fn error_kinds_map_to_embedded_io() {
    use embedded_io::ErrorKind as Io;
    let cases = [
        (wsk::Error::INSUFFICIENT_RESOURCES, Io::OutOfMemory),
        (wsk::Error::CANCELLED, Io::Interrupted),
        (wsk::Error::CONNECTION_REFUSED, Io::ConnectionRefused),
        (wsk::Error::CONNECTION_RESET, Io::ConnectionReset),
        (wsk::Error::TIMED_OUT, Io::TimedOut),
        (wsk::Error::INVALID_BUFFER_SIZE, Io::InvalidInput),
        (wsk::Error::INVALID_PARAMETER, Io::InvalidInput),
        (wsk::Error::SOCKET_CLOSED, Io::NotConnected),
        (wsk::Error::NOT_SUPPORTED, Io::Unsupported),
        (wsk::Error::IRQL_TOO_HIGH, Io::Other),
    ];
    for (error, kind) in cases {
        assert_eq!(embedded_io::Error::kind(&error), kind, "{error}");
    }
}

#[test]
fn blocking_io_refuses_dispatch_level() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (mut stream, _peer) = connected(&client, 64, 64);
    let error = {
        let _raised = wsk_host::irql::raise(wsk_sys::DISPATCH_LEVEL);
        embedded_io::Read::read(&mut stream, &mut [0u8; 4]).unwrap_err()
    };
    assert_eq!(error, wsk::Error::IRQL_TOO_HIGH);
    drop((stream, client));
    session.finish();
}

#[test]
fn a_written_request_goes_out_while_its_answer_is_read() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    let (mut stream, mut peer) = connected(&client, 64, 64);
    let answer = std::thread::spawn(move || {
        let mut request = [0u8; 5];
        peer.read_exact(&mut request).unwrap();
        peer.write_all(b"pong!").unwrap();
        request
    });
    // No flush between the write and the read.
    let mut reply = [0u8; 5];
    within(async {
        stream.write_all(b"ping?").await?;
        stream.read_exact(&mut reply).await.map_err(|e| match e {
            embedded_io::ReadExactError::Other(e) => e,
            embedded_io::ReadExactError::UnexpectedEof => wsk::Error::CONNECTION_RESET,
        })
    })
    .unwrap();
    assert_eq!(&reply, b"pong!");
    assert_eq!(&answer.join().unwrap(), b"ping?");
    drop((stream, client));
    session.finish();
}

#[test]
fn no_memory_for_a_buffer_is_an_error_and_leaks_nothing() {
    let session = Session::start();
    let client = WskClient::register(driver(&session)).unwrap();
    for which in [1, 2] {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let socket = client
            .connect(listener.local_addr().unwrap())
            .wait()
            .unwrap();
        // The receive buffer's pool (1), then the send buffer's (2).
        session.set_faults(FaultPlan::new(7).fail_pool_allocation(wsk_host::Nth::Call(which)));
        let error = AsyncStream::new(socket).unwrap_err();
        assert_eq!(
            error,
            wsk::Error::INSUFFICIENT_RESOURCES,
            "allocation {which}"
        );
        session.set_faults(FaultPlan::new(7));
    }
    drop(client);
    session.finish();
}
