//! `wsk_http_get` against a hostile server on loopback: endless chunk extensions and
//! trailers are cut off at 16 KiB; a server trickling bytes is stopped by
//! `ResponseDeadlineMs`; a status line cannot forge log lines or terminal escapes (a bare LF
//! or a control character in the head is refused, the status line is printed escaped);
//! malformed chunked framing is refused with the reason. Nothing leaks.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use wsk_host::{RegValue, Session};
use wsk_host_runner::{Output, find, load};

const WAIT: Duration = Duration::from_secs(20);

/// A one-connection server on 127.0.0.1 run by a thread: it reads the request, then hands
/// the connection to `respond`.
struct Server {
    port: u16,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(respond: impl FnOnce(&mut TcpStream) + Send + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let thread = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream.set_read_timeout(Some(WAIT)).unwrap();
            stream.set_write_timeout(Some(WAIT)).unwrap();
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") {
                assert!(request.len() < 4096, "the request is short");
                match stream.read(&mut byte) {
                    Ok(1) => request.push(byte[0]),
                    _ => return,
                }
            }
            respond(&mut stream);
        });
        Server {
            port,
            thread: Some(thread),
        }
    }

    /// A server writing `response` at once, then closing.
    fn writing(response: Vec<u8>) -> Server {
        Server::start(move |stream| {
            let _ = stream.write_all(&response);
        })
    }

    /// A server writing `head`, then `unit` over and over (up to `total` bytes, or until the
    /// driver gives the connection up).
    fn endless(head: &'static [u8], unit: &'static [u8], total: usize) -> Server {
        Server::start(move |stream| {
            if stream.write_all(head).is_err() {
                return;
            }
            let mut block = Vec::new();
            while block.len() < 4096 {
                block.extend_from_slice(unit);
            }
            let mut sent = 0;
            while sent < total {
                if stream.write_all(&block).is_err() {
                    return;
                }
                sent += block.len();
            }
        })
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Loads the driver on `url`, waits for its report line, unloads it; the whole output.
fn fetch(url: &str, extra: &[(&str, RegValue)]) -> (String, String) {
    let mut output = Output::new();
    let mut parameters = vec![("Url", RegValue::String(url.into()))];
    parameters.extend(extra.iter().cloned());
    let loaded = load(find("http-get").unwrap(), &parameters).expect("DriverEntry succeeds");
    let line = output.wait_for("wsk_http_get: http", WAIT);
    assert!(loaded.unload());
    output.wait_for("wsk_http_get: unloaded", WAIT);
    (line, output.text().to_string())
}

const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";

/// Item 1: a chunk size line whose extension (or leading zeros) never ends, and a trailer that never ends
/// (many lines, or one endless line), are refused after 16 KiB.
#[test]
fn endless_chunk_extensions_and_trailers_are_cut_off() {
    let session = Session::start();
    for (head, unit, why) in [
        (
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;"[..],
            &b"eeeeeeee"[..],
            "a chunk size line (extensions included) is over 16 KiB",
        ),
        (
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;a=b\r\nx\r\n"[..],
            &b"0000"[..],
            "a chunk size line (extensions included) is over 16 KiB",
        ),
        (
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"[..],
            &b"X-Trailer: more\r\n"[..],
            "the trailer is over 16 KiB",
        ),
        (
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: "[..],
            &b"tttttttt"[..],
            "the trailer is over 16 KiB",
        ),
    ] {
        let server = Server::endless(head, unit, 4 * 1024 * 1024);
        let started = Instant::now();
        let (line, _) = fetch(&server.url(), &[]);
        assert!(
            line.contains(&format!("malformed response: {why}")),
            "{line}"
        );
        assert!(started.elapsed() < WAIT, "reported late");
        drop(server);
    }
    // Just under the caps: accepted.
    let mut response = CHUNKED.to_vec();
    response.extend_from_slice(b"1;");
    response.extend(std::iter::repeat_n(b'e', 16 * 1024 - 6));
    response.extend_from_slice(b"\r\nx\r\n0\r\n");
    for _ in 0..(16 * 1024 - 2) / 17 {
        response.extend_from_slice(b"X-Trailer: 1234\r\n");
    }
    response.extend_from_slice(b"\r\n");
    let server = Server::writing(response);
    let (line, _) = fetch(&server.url(), &[]);
    assert!(line.contains("200 OK; body 1 bytes (chunked)"), "{line}");
    drop(server);
    let report = session.finish();
    assert_eq!(report.sockets_created, report.sockets_closed);
}

/// Item 2: a server that sends a byte every 200 ms is never silent for `ResponseTimeoutMs`,
/// but is stopped by `ResponseDeadlineMs`, reported by name; 0 disables the deadline.
#[test]
fn a_trickling_server_is_stopped_by_response_deadline_ms() {
    let session = Session::start();
    let trickle = |bytes: usize| {
        Server::start(move |stream| {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {bytes}\r\n\r\n");
            if stream.write_all(head.as_bytes()).is_err() {
                return;
            }
            for _ in 0..bytes {
                std::thread::sleep(Duration::from_millis(200));
                if stream.write_all(b"x").is_err() {
                    return;
                }
            }
        })
    };
    let server = trickle(50);
    let started = Instant::now();
    let (line, _) = fetch(
        &server.url(),
        &[
            ("ResponseDeadlineMs", RegValue::Dword(1000)),
            ("ResponseTimeoutMs", RegValue::Dword(600)),
        ],
    );
    let elapsed = started.elapsed();
    assert!(
        line.contains("not complete within 1000 ms (ResponseDeadlineMs)"),
        "{line}"
    );
    assert!(
        elapsed >= Duration::from_millis(900),
        "reported early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "reported late: {elapsed:?}"
    );
    drop(server);
    // Disabled: the same trickle, shorter, comes back whole.
    let server = trickle(6);
    let (line, _) = fetch(
        &server.url(),
        &[
            ("ResponseDeadlineMs", RegValue::Dword(0)),
            ("ResponseTimeoutMs", RegValue::Dword(600)),
        ],
    );
    assert!(line.contains("200 OK; body 6 bytes,"), "{line}");
    drop(server);
    let report = session.finish();
    assert_eq!(report.sockets_created, report.sockets_closed);
}

/// Item 3: a bare LF or a control character in the head is refused (no forged log line, no
/// terminal escape); what is left of the status line is printed escaped.
#[test]
fn a_status_line_cannot_forge_log_lines_or_escapes() {
    let session = Session::start();
    for (response, why) in [
        (
            &b"HTTP/1.1 200 OK\nwsk_http_get: forged\r\nContent-Length: 0\r\n\r\n"[..],
            "the head has an LF without CR",
        ),
        (
            &b"HTTP/1.1 200 OK\rwsk_http_get: forged\r\nContent-Length: 0\r\n\r\n"[..],
            "the head has a CR without LF",
        ),
        (
            &b"HTTP/1.1 200 \x1b[2J\x1b[31mOK\r\nContent-Length: 0\r\n\r\n"[..],
            "the head contains a control character",
        ),
        (
            &b"HTTP/1.1 200 OK\r\nX-Header: a\x00b\r\nContent-Length: 0\r\n\r\n"[..],
            "the head contains a control character",
        ),
    ] {
        let server = Server::writing(response.to_vec());
        let (line, text) = fetch(&server.url(), &[]);
        assert!(
            line.contains(&format!("malformed response: {why}")),
            "{line}"
        );
        assert!(!text.contains("forged"), "{text}");
        assert!(!text.contains('\x1b'), "{text:?}");
        drop(server);
    }
    // A C1 control (CSI, U+009B) and a right-to-left override are printed escaped.
    let server = Server::writing(
        "HTTP/1.1 200 OK\u{9b}31m\u{202e}\r\nContent-Length: 2\r\n\r\nhi"
            .as_bytes()
            .to_vec(),
    );
    let (line, text) = fetch(&server.url(), &[]);
    assert!(
        line.contains("HTTP/1.1 200 OK\\u{9b}31m\\u{202e}; body 2 bytes"),
        "{line}"
    );
    assert!(
        !text.contains('\u{9b}') && !text.contains('\u{202e}'),
        "{text:?}"
    );
    drop(server);
    let report = session.finish();
    assert_eq!(report.sockets_created, report.sockets_closed);
}

/// Item 4: chunked framing is strict — a size line is hex digits, optionally `;extension`,
/// then CRLF; a chunk's data is followed by CRLF; the trailer's lines end with CRLF.
#[test]
fn malformed_chunked_framing_is_refused_with_the_reason() {
    let session = Session::start();
    for (body, why) in [
        (
            &b"1\na\r\n0\r\n\r\n"[..],
            "a chunk size line does not end with CRLF",
        ),
        (
            &b"1\rxa\r\n0\r\n\r\n"[..],
            "a chunk size line does not end with CRLF",
        ),
        (
            &b"1;ext\na\r\n0\r\n\r\n"[..],
            "a chunk size line does not end with CRLF",
        ),
        (
            &b"1;e\rx\r\na\r\n0\r\n\r\n"[..],
            "a chunk size line does not end with CRLF",
        ),
        (
            &b"1;e\x01\r\na\r\n0\r\n\r\n"[..],
            "a chunk extension contains a control character",
        ),
        (
            &b"1 x\r\na\r\n0\r\n\r\n"[..],
            "followed by something other than ;extension",
        ),
        (
            &b"1 \r\na\r\n0\r\n\r\n"[..],
            "followed by something other than ;extension",
        ),
        (&b"\r\na\r\n0\r\n\r\n"[..], "a chunk size line has no size"),
        (
            &b";x\r\na\r\n0\r\n\r\n"[..],
            "a chunk size line has no size",
        ),
        (
            &b"-1\r\na\r\n0\r\n\r\n"[..],
            "a chunk size is not hexadecimal",
        ),
        (
            &b"0x1\r\na\r\n0\r\n\r\n"[..],
            "a chunk size is not hexadecimal",
        ),
        (&b"10000000000000000\r\n"[..], "a chunk size is too large"),
        (
            &b"1\r\nab\r\n0\r\n\r\n"[..],
            "a chunk does not end with CRLF",
        ),
        (&b"1\r\na\n0\r\n\r\n"[..], "a chunk does not end with CRLF"),
        (&b"1\r\na\r0\r\n\r\n"[..], "a chunk does not end with CRLF"),
        (&b"0\n\r\n"[..], "a chunk size line does not end with CRLF"),
        (&b"0\r\n\n"[..], "a trailer line does not end with CRLF"),
        (
            &b"0\r\nX: y\n\r\n"[..],
            "a trailer line does not end with CRLF",
        ),
        (
            &b"0\r\nX: y\rz\r\n\r\n"[..],
            "a trailer line does not end with CRLF",
        ),
        (
            &b"0\r\nX: \x1b[31m\r\n\r\n"[..],
            "a trailer line contains a control character",
        ),
    ] {
        let mut response = CHUNKED.to_vec();
        response.extend_from_slice(body);
        let server = Server::writing(response);
        let (line, _) = fetch(&server.url(), &[]);
        assert!(
            line.contains("malformed response: ") && line.contains(why),
            "{:?}: {line}",
            String::from_utf8_lossy(body)
        );
        drop(server);
    }
    // The grammar's optional parts are still accepted: extensions (after spaces too), upper
    // and lower case hex digits, leading zeros, a trailer with tabs.
    let mut response = CHUNKED.to_vec();
    response.extend_from_slice(
        b"1;a=b;c\r\nx\r\n0a \t;n=\"v\"\r\n0123456789\r\nA\r\nabcdefghij\r\n000\r\nX:\ty\r\n\r\n",
    );
    let server = Server::writing(response);
    let (line, _) = fetch(&server.url(), &[]);
    assert!(line.contains("200 OK; body 21 bytes (chunked)"), "{line}");
    drop(server);
    let report = session.finish();
    assert_eq!(report.sockets_created, report.sockets_closed);
}
