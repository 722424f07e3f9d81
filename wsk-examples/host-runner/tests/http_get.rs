//! `wsk_http_get` against Python's `http.server` on loopback: the host name `localhost` is
//! resolved through `WskGetAddressInfo`, the file comes back whole (its length and hash as
//! the server has it); a 404 is reported as such; a response over `MaxBytes` is refused;
//! a server that does not answer is cancelled by the unload, or reported after
//! `ResponseTimeoutMs`; a chunked body is decoded; malformed URLs are refused with the
//! reason. Nothing leaks.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use wsk_host::{RegValue, Session};
use wsk_host_runner::{Output, find, load};

const WAIT: Duration = Duration::from_secs(20);

/// `python3 -m http.server` serving a directory of test files, on 127.0.0.1; stopped on drop.
struct HttpServer {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl HttpServer {
    fn start(files: &[(&str, &[u8])]) -> HttpServer {
        static SERVERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let serial = SERVERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("wsk-http-get-{}-{serial}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, data) in files {
            std::fs::write(dir.join(name), data).unwrap();
        }
        // A free port, released just before the server binds it.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // Windows installs the interpreter as `python`.
        let python = if cfg!(windows) { "python" } else { "python3" };
        let mut child = Command::new(python)
            .args([
                "-u",
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(&dir)
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs http.server");
        // It prints "Serving HTTP on ..." once listening.
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.contains("Serving HTTP"), "http.server said: {line}");
        HttpServer { child, port, dir }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn fetch(url: &str, extra: &[(&str, RegValue)], expect: &str) -> String {
    let mut output = Output::new();
    let mut parameters = vec![("Url", RegValue::String(url.into()))];
    parameters.extend(extra.iter().cloned());
    let loaded = load(find("http-get").unwrap(), &parameters).expect("DriverEntry succeeds");
    let line = output.wait_for(expect, WAIT);
    assert!(loaded.unload());
    line
}

#[test]
fn a_file_comes_back_whole_through_a_resolved_name() {
    let session = Session::start();
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let server = HttpServer::start(&[("data.bin", &body), ("hello.txt", b"hello, kernel\n")]);
    for (path, expected) in [
        ("data.bin", &body[..]),
        ("hello.txt", &b"hello, kernel\n"[..]),
    ] {
        let url = format!("http://localhost:{}/{path}", server.port);
        let line = fetch(&url, &[], "body ");
        assert!(line.contains(" 200 OK"), "{line}");
        assert!(
            line.contains(&format!(
                "body {} bytes, fnv1a64 {:016x}",
                expected.len(),
                fnv1a(expected)
            )),
            "{line}"
        );
    }
    // By address, IPv4.
    let url = format!("http://127.0.0.1:{}/hello.txt", server.port);
    assert!(fetch(&url, &[], "body ").contains("body 14 bytes"));
    session.finish();
}

#[test]
fn a_missing_file_is_a_404_and_an_oversized_response_is_refused() {
    let session = Session::start();
    let big = vec![b'x'; 200_000];
    let server = HttpServer::start(&[("big.txt", &big)]);
    let line = fetch(
        &format!("http://localhost:{}/nothing-here", server.port),
        &[],
        "body ",
    );
    assert!(line.contains(" 404 "), "{line}");
    let line = fetch(
        &format!("http://localhost:{}/big.txt", server.port),
        &[("MaxBytes", RegValue::Dword(100_000))],
        "wsk_http_get: http",
    );
    assert!(
        line.contains("BUFFER_OVERFLOW") || line.contains("0x80000005"),
        "{line}"
    );
    session.finish();
}

#[test]
fn a_silent_server_is_cancelled_by_the_unload() {
    let session = Session::start();
    // Takes the request but never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut output = Output::new();
    let loaded = load(
        find("http-get").unwrap(),
        &[(
            "Url",
            RegValue::String(format!(
                "http://127.0.0.1:{}/",
                silent.local_addr().unwrap().port()
            )),
        )],
    )
    .unwrap();
    output.wait_for("connected to", WAIT);
    // Take the whole request (the driver's send is done), then wait for its receive.
    let (mut server_side, _) = silent.accept().unwrap();
    server_side.set_read_timeout(Some(WAIT)).unwrap();
    let mut request = Vec::new();
    let mut byte = [0u8; 1];
    while !request.ends_with(b"\r\n\r\n") {
        assert_eq!(server_side.read(&mut byte).unwrap(), 1, "the whole request");
        request.push(byte[0]);
    }
    assert!(
        session.wait_for_queued_requests(1, WAIT),
        "the response's receive is pending"
    );
    assert!(loaded.unload());
    output.wait_for("wsk_http_get: unloaded", WAIT);
    assert!(!output.text().contains("body "), "{}", output.text());
    let report = session.finish();
    assert!(report.cancelled >= 1, "the pending receive was cancelled");
}

#[test]
fn bad_urls_fail_driver_entry() {
    let session = Session::start();
    for bad in [
        "https://localhost/",
        "http://",
        "http://host:port/",
        "http://[::1/",
        "ftp://x/",
    ] {
        let status = load(
            find("http-get").unwrap(),
            &[("Url", RegValue::String(bad.into()))],
        )
        .unwrap_err();
        assert_eq!(status, wsk_sys::STATUS_INVALID_PARAMETER, "{bad}");
    }
    session.finish();
}

/// A one-connection HTTP server on 127.0.0.1 run by a thread: it reads the request, then
/// writes `response` (or nothing, when `None`, keeping the connection open until dropped).
struct RawServer {
    port: u16,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RawServer {
    fn start(response: Option<Vec<u8>>, hold: Duration) -> RawServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let thread = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream.set_read_timeout(Some(WAIT)).unwrap();
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") {
                match stream.read(&mut byte) {
                    Ok(1) => request.push(byte[0]),
                    _ => return,
                }
            }
            match response {
                Some(response) => {
                    let _ = stream.write_all(&response);
                }
                None => std::thread::sleep(hold),
            }
        });
        RawServer {
            port,
            thread: Some(thread),
        }
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Issue 14, item 8: a server that takes the request and never answers is reported once
/// `ResponseTimeoutMs` has passed (it used to wait until the unload).
#[test]
fn a_silent_server_is_reported_after_response_timeout_ms() {
    let session = Session::start();
    let server = RawServer::start(None, Duration::from_secs(3));
    let started = Instant::now();
    let line = fetch(
        &format!("http://127.0.0.1:{}/", server.port),
        &[("ResponseTimeoutMs", RegValue::Dword(400))],
        "wsk_http_get: http",
    );
    assert!(
        line.contains("sent nothing for 400 ms (ResponseTimeoutMs)"),
        "{line}"
    );
    assert!(started.elapsed() < Duration::from_secs(3), "reported late");
    drop(server);
    session.finish();
}

/// Issue 14, item 8: a chunked body is decoded (its hash is the decoded body's), and a
/// response that ends inside one is reported as truncated.
#[test]
fn a_chunked_body_is_decoded() {
    let session = Session::start();
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    let mut response =
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    let mut offset = 0;
    for (i, size) in [1usize, 15, 4096, 30_000].iter().cycle().enumerate() {
        if offset == body.len() {
            break;
        }
        let size = (*size).min(body.len() - offset);
        // An extension on some size lines, as the grammar allows.
        let extension = if i % 2 == 0 { ";name=value" } else { "" };
        response.extend_from_slice(format!("{size:X}{extension}\r\n").as_bytes());
        response.extend_from_slice(&body[offset..offset + size]);
        response.extend_from_slice(b"\r\n");
        offset += size;
    }
    response.extend_from_slice(b"0\r\nX-Trailer: yes\r\n\r\n");
    let server = RawServer::start(Some(response.clone()), Duration::ZERO);
    let line = fetch(
        &format!("http://127.0.0.1:{}/chunked", server.port),
        &[],
        "wsk_http_get: http",
    );
    assert!(
        line.contains(&format!(
            "200 OK; body {} bytes (chunked), fnv1a64 {:016x}",
            body.len(),
            fnv1a(&body)
        )),
        "{line}"
    );
    drop(server);
    // Cut inside the body: reported, not hashed as if whole.
    let cut = response[..response.len() / 2].to_vec();
    let server = RawServer::start(Some(cut), Duration::ZERO);
    let line = fetch(
        &format!("http://127.0.0.1:{}/cut", server.port),
        &[],
        "wsk_http_get: http",
    );
    assert!(line.contains("closed inside a chunked body"), "{line}");
    drop(server);
    session.finish();
}

/// Issue 14, item 8: malformed URLs fail DriverEntry, each with the reason.
#[test]
fn malformed_urls_fail_driver_entry_with_the_reason() {
    let session = Session::start();
    for (bad, why) in [
        (
            "http://127.0.0.1:+80/",
            "the port is not 1 to 5 decimal digits",
        ),
        (
            "http://127.0.0.1:/",
            "the port is not 1 to 5 decimal digits",
        ),
        (
            "http://127.0.0.1:99999/",
            "the port is not between 1 and 65535",
        ),
        (
            "http://[127.0.0.1]/",
            "the bracketed host is not an IPv6 address",
        ),
        ("http://[::1]x/", "something other than :port follows"),
        ("http://localhost/\r\nX-Injected: 1", "control character"),
        ("http://local host/", "control character"),
        ("http://user@localhost/", "user information"),
        ("http://::1/", "the host is not a name or an IPv4 address"),
        ("http://:80/", "it has no host"),
    ] {
        let mut output = Output::new();
        let status = load(
            find("http-get").unwrap(),
            &[("Url", RegValue::String(bad.into()))],
        )
        .unwrap_err();
        assert_eq!(status, wsk_sys::STATUS_INVALID_PARAMETER, "{bad:?}");
        let line = output.wait_for("parameter Url", WAIT);
        assert!(line.contains(why), "{bad:?}: {line}");
    }
    session.finish();
}
