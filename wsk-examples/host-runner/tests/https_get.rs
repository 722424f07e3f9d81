//! `wsk_https_get` against a TLS 1.3 server in the test process (rustls), whose self-signed
//! ECDSA P-256 certificate is made at test time (rcgen): the page comes back whole when the
//! certificate's SHA-256 is pinned; another pin, or a server that presents the pinned
//! certificate without its key, fails verification before anything is sent, and the driver
//! unloads cleanly; a server that never answers the handshake, goes silent after it, or
//! trickles its response, is stopped by the driver's timeouts and deadline; the driver unloads
//! mid-handshake; the pin is required. Nothing leaks.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use sha2::{Digest, Sha256};
use wsk_host::{RegValue, Session};
use wsk_host_runner::{Output, find, load};

const WAIT: Duration = Duration::from_secs(20);

/// A self-signed certificate for `localhost` and its key (PKCS#8).
struct Identity {
    certificate: CertificateDer<'static>,
    key: Vec<u8>,
}

impl Identity {
    fn new() -> Identity {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        Identity {
            certificate: made.cert.der().clone(),
            key: made.key_pair.serialize_der(),
        }
    }

    /// The certificate's SHA-256 fingerprint in hexadecimal: the `ServerCertSha256` pin.
    fn fingerprint(&self) -> String {
        Sha256::digest(self.certificate.as_ref())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Serves `certificate` with the key `key` (which need not be the certificate's own).
#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}

/// A TLS 1.3-only server configuration presenting `certificate`, signing with `key`.
fn config(certificate: &CertificateDer<'static>, key: &[u8]) -> Arc<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.to_vec()));
    let signing = provider.key_provider.load_private_key(key).unwrap();
    let certified = Arc::new(CertifiedKey::new(vec![certificate.clone()], signing));
    Arc::new(
        ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Fixed(certified))),
    )
}

/// What the server does once the TCP connection is accepted.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Completes the handshake, reads the request, answers `body` and closes (close_notify).
    Serve(&'static [u8]),
    /// Never answers the ClientHello.
    StallHandshake,
    /// Completes the handshake, reads the request, then keeps silent.
    StallAfterHandshake,
    /// Completes the handshake, reads the request, announces 1000 bytes and sends one every
    /// 100 ms (never silent for long, never done soon).
    Trickle,
}

/// A one-connection server on 127.0.0.1; its thread reports what it saw: the request's
/// bytes (empty if none came), or why the TLS session failed.
struct TlsServer {
    port: u16,
    seen: Receiver<Result<Vec<u8>, String>>,
    thread: Option<JoinHandle<()>>,
}

impl TlsServer {
    fn start(config: Arc<ServerConfig>, behaviour: Behaviour) -> TlsServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (report, seen) = channel();
        let thread = std::thread::spawn(move || {
            let (tcp, _) = listener.accept().unwrap();
            tcp.set_read_timeout(Some(WAIT)).unwrap();
            tcp.set_write_timeout(Some(WAIT)).unwrap();
            let _ = report.send(serve(config, tcp, behaviour));
        });
        TlsServer {
            port,
            seen,
            thread: Some(thread),
        }
    }

    /// What the server saw (within `WAIT`).
    fn seen(&self) -> Result<Vec<u8>, String> {
        self.seen.recv_timeout(WAIT).expect("the server reports")
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One connection, as `behaviour` says.
fn serve(
    config: Arc<ServerConfig>,
    mut tcp: TcpStream,
    behaviour: Behaviour,
) -> Result<Vec<u8>, String> {
    if let Behaviour::StallHandshake = behaviour {
        // Holds the connection until the client gives up (its timeout closes it).
        let mut sink = Vec::new();
        let _ = tcp.read_to_end(&mut sink);
        return Ok(Vec::new());
    }
    let connection = ServerConnection::new(config).map_err(|e| e.to_string())?;
    let mut tls = StreamOwned::new(connection, tcp);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .map_err(|e| format!("handshake: {e}"))?;
    }
    let mut request = Vec::new();
    let mut chunk = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match tls.read(&mut chunk) {
            Ok(0) => return Ok(request),
            Ok(n) => request.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("reading the request: {e}")),
        }
    }
    match behaviour {
        Behaviour::Serve(body) => {
            let head = format!(
                "HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n\
                 Content-Length: {}\r\n\r\n",
                body.len()
            );
            tls.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
            tls.write_all(body).map_err(|e| e.to_string())?;
            tls.conn.send_close_notify();
            tls.flush().map_err(|e| e.to_string())?;
            // Waits for the client's close_notify or close.
            let _ = tls.read(&mut chunk);
        }
        Behaviour::StallAfterHandshake => {
            let _ = tls.read(&mut chunk);
        }
        Behaviour::Trickle => {
            let head = "HTTP/1.0 200 OK\r\nContent-Length: 1000\r\n\r\n";
            tls.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
            // Until the client gives up (a write fails) or the body is done.
            for _ in 0..1000 {
                std::thread::sleep(Duration::from_millis(100));
                if tls.write_all(b"x").and_then(|()| tls.flush()).is_err() {
                    break;
                }
            }
        }
        Behaviour::StallHandshake => unreachable!(),
    }
    Ok(request)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Loads the driver with `parameters`, waits for a line containing `expect`, unloads it
/// (which must succeed); returns the line and everything printed.
fn fetch(parameters: &[(&str, RegValue)], expect: &str) -> (String, String) {
    let mut output = Output::new();
    let loaded = load(find("https-get").unwrap(), parameters).expect("DriverEntry succeeds");
    let line = output.wait_for(expect, WAIT);
    assert!(loaded.unload(), "the driver unloads");
    (line, output.text().to_string())
}

fn url(port: u16, path: &str) -> (&'static str, RegValue) {
    (
        "Url",
        RegValue::String(format!("https://127.0.0.1:{port}{path}")),
    )
}

fn pin(fingerprint: &str) -> (&'static str, RegValue) {
    (
        "ServerCertSha256",
        RegValue::String(fingerprint.to_string()),
    )
}

static PAGE: &[u8] = include_bytes!("https_get.rs");

#[test]
fn the_page_comes_back_whole_from_the_pinned_server() {
    let session = Session::start();
    let identity = Identity::new();
    let server = TlsServer::start(
        config(&identity.certificate, &identity.key),
        Behaviour::Serve(PAGE),
    );
    // The fingerprint as openssl prints it: upper case, colons between bytes.
    let colons = identity
        .fingerprint()
        .to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|pair| std::str::from_utf8(pair).unwrap())
        .collect::<Vec<_>>()
        .join(":");
    let mut output = Output::new();
    let loaded = load(
        find("https-get").unwrap(),
        &[url(server.port, "/page.rs?x=1"), pin(&colons)],
    )
    .expect("DriverEntry succeeds");
    let line = output.wait_for("body ", WAIT);
    assert!(loaded.unload());
    assert!(line.contains("HTTP/1.0 200 OK"), "{line}");
    assert!(
        line.contains(&format!(
            "body {} bytes, fnv1a64 {:016x}",
            PAGE.len(),
            fnv1a(PAGE)
        )),
        "{line}"
    );
    let printed = output.text().to_string();
    assert!(
        printed.contains("the server proved the pinned certificate"),
        "{printed}"
    );
    let request = String::from_utf8(server.seen().unwrap()).unwrap();
    assert!(
        request.starts_with("GET /page.rs?x=1 HTTP/1.0\r\n"),
        "{request}"
    );
    assert!(
        request.contains(&format!("\r\nHost: 127.0.0.1:{}\r\n", server.port)),
        "{request}"
    );
    drop(server);
    session.finish();
}

#[test]
fn another_certificate_fails_verification_before_anything_is_sent() {
    let session = Session::start();
    let served = Identity::new();
    let pinned = Identity::new();
    let server = TlsServer::start(
        config(&served.certificate, &served.key),
        Behaviour::Serve(b"never sent"),
    );
    let (line, printed) = fetch(
        &[url(server.port, "/"), pin(&pinned.fingerprint())],
        "certificate verification failed",
    );
    assert!(line.contains("ServerCertSha256"), "{line}");
    assert!(line.contains("nothing was sent"), "{line}");
    let presented = format!(
        "presented a certificate with SHA-256 {}",
        served.fingerprint()
    );
    assert!(printed.contains(&presented), "{printed}");
    // The server never got a request: its handshake failed or the connection ended.
    // The server's handshake failed (Err), or it saw the connection end (no request).
    if let Ok(request) = server.seen() {
        assert!(request.is_empty(), "a request was sent: {request:?}");
    }
    drop(server);
    session.finish();
}

#[test]
fn the_pinned_certificate_without_its_key_fails_verification() {
    let session = Session::start();
    let pinned = Identity::new();
    let impostor = Identity::new();
    // The impostor presents the pinned certificate (public), but signs the handshake with
    // its own key.
    let server = TlsServer::start(
        config(&pinned.certificate, &impostor.key),
        Behaviour::Serve(b"never sent"),
    );
    let (line, _) = fetch(
        &[url(server.port, "/"), pin(&pinned.fingerprint())],
        "wsk_https_get: https://",
    );
    assert!(line.contains("InvalidSignature"), "{line}");
    assert!(!line.contains("body "), "{line}");
    // The server's handshake failed (Err), or it saw the connection end (no request).
    if let Ok(request) = server.seen() {
        assert!(request.is_empty(), "a request was sent: {request:?}");
    }
    drop(server);
    session.finish();
}

#[test]
fn a_server_that_never_answers_the_handshake_times_out() {
    let session = Session::start();
    let identity = Identity::new();
    let server = TlsServer::start(
        config(&identity.certificate, &identity.key),
        Behaviour::StallHandshake,
    );
    let started = Instant::now();
    let (line, _) = fetch(
        &[
            url(server.port, "/"),
            pin(&identity.fingerprint()),
            ("HandshakeTimeoutMs", RegValue::Dword(300)),
        ],
        "HandshakeTimeoutMs",
    );
    assert!(line.contains("not done within 300 ms"), "{line}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(server.seen().unwrap(), b"");
    drop(server);
    session.finish();
}

#[test]
fn a_server_silent_after_the_handshake_times_out() {
    let session = Session::start();
    let identity = Identity::new();
    let server = TlsServer::start(
        config(&identity.certificate, &identity.key),
        Behaviour::StallAfterHandshake,
    );
    let (line, _) = fetch(
        &[
            url(server.port, "/slow"),
            pin(&identity.fingerprint()),
            ("ResponseTimeoutMs", RegValue::Dword(400)),
        ],
        "ResponseTimeoutMs",
    );
    assert!(line.contains("sent nothing for 400 ms"), "{line}");
    let request = String::from_utf8(server.seen().unwrap()).unwrap();
    assert!(request.starts_with("GET /slow HTTP/1.0"), "{request}");
    drop(server);
    session.finish();
}

#[test]
fn a_trickling_response_is_stopped_by_the_deadline() {
    let session = Session::start();
    let identity = Identity::new();
    let server = TlsServer::start(
        config(&identity.certificate, &identity.key),
        Behaviour::Trickle,
    );
    let started = Instant::now();
    let (line, _) = fetch(
        &[
            url(server.port, "/trickle"),
            pin(&identity.fingerprint()),
            ("ResponseTimeoutMs", RegValue::Dword(1000)),
            ("ResponseDeadlineMs", RegValue::Dword(600)),
        ],
        "ResponseDeadlineMs",
    );
    assert!(line.contains("not complete within 600 ms"), "{line}");
    assert!(started.elapsed() < WAIT);
    let request = String::from_utf8(server.seen().unwrap()).unwrap();
    assert!(request.starts_with("GET /trickle HTTP/1.0"), "{request}");
    drop(server);
    session.finish();
}

#[test]
fn the_pin_is_required_and_checked() {
    let session = Session::start();
    for (parameters, expect) in [
        (
            vec![url(1, "/")],
            "parameter ServerCertSha256: missing: the server's certificate must be pinned",
        ),
        (
            vec![url(1, "/"), pin("abcd")],
            "parameter ServerCertSha256: `abcd`: not 64 hexadecimal digits",
        ),
        (
            vec![url(1, "/"), pin(&"zz".repeat(32))],
            "not 64 hexadecimal digits",
        ),
        (
            vec![
                ("Url", RegValue::String("http://127.0.0.1:1/".into())),
                pin(&"00".repeat(32)),
            ],
            "it does not start with https://",
        ),
    ] {
        let mut output = Output::new();
        let Err(status) = load(find("https-get").unwrap(), &parameters) else {
            panic!("DriverEntry refuses {expect}");
        };
        assert_eq!(status, wsk_sys::STATUS_INVALID_PARAMETER);
        output.wait_for(expect, WAIT);
    }
    session.finish();
}

#[test]
fn unloading_during_the_handshake_cancels_it() {
    let session = Session::start();
    let identity = Identity::new();
    let server = TlsServer::start(
        config(&identity.certificate, &identity.key),
        Behaviour::StallHandshake,
    );
    let mut output = Output::new();
    let loaded = load(
        find("https-get").unwrap(),
        &[url(server.port, "/"), pin(&identity.fingerprint())],
    )
    .expect("DriverEntry succeeds");
    output.wait_for("connected to", WAIT);
    // The handshake waits for the server (10 s by default): the unload cancels it.
    let started = Instant::now();
    assert!(loaded.unload(), "the driver unloads");
    assert!(started.elapsed() < Duration::from_secs(5));
    output.wait_for("wsk_https_get: unloaded", WAIT);
    assert!(!output.text().contains("body "));
    // The connection is closed: the server's read ends.
    assert_eq!(server.seen().unwrap(), b"");
    drop(server);
    session.finish();
}
