//! `wsk_http_get.sys`: fetches a URL over HTTP — name resolution with `WskGetAddressInfo`, a
//! connection to the first address that answers, an HTTP/1.0 `GET`, the response read to the
//! end — and prints the status line, the body's length and its FNV-1a hash.
//!
//! Parameters (`HKLM\System\CurrentControlSet\Services\wsk_http_get\Parameters`):
//! - `Url` (`REG_SZ`, default `http://localhost:8000/`): an `http://` URL (no TLS in this
//!   example); the host is a name or an address (IPv6 in brackets), the port 1 to 65535 in
//!   decimal digits; no user information, no spaces or control characters, ASCII only.
//! - `MaxBytes` (`REG_DWORD`, default 1 MiB): the largest body accepted.
//! - `ConnectTimeoutMs` (`REG_DWORD`, default 10 000, 1 to 600 000): the resolution and the
//!   connection must be done within it.
//! - `ResponseTimeoutMs` (`REG_DWORD`, default 30 000, 1 to 3 600 000): the longest the
//!   server may keep silent — before it takes the request, or between two parts of the
//!   response.
//! - `ResponseDeadlineMs` (`REG_DWORD`, default 300 000, 0 to 86 400 000; 0: none): the
//!   longest the whole response may take, from the request's sending to the body's end —
//!   a server that trickles bytes is not silent, but is stopped by it.
//!
//! The response is parsed strictly: its head's lines end with CRLF and hold no other control
//! character than tab; a chunk size line is hexadecimal digits, optionally an extension
//! (`;...`), then CRLF; a chunk's data is followed by CRLF; the trailer's lines end with
//! CRLF. A chunk size line and the trailer may each be 16 KiB at most. The status line is
//! printed escaped.
//!
//! The body is not kept: it is decoded as it arrives (chunked transfer coding included) and
//! streamed into its hash, through one 16 KiB buffer, whatever its size. Only the response's
//! head is kept (16 KiB at most).
//!
//! `DriverEntry` starts the fetch as a task and returns; the resolution is issued from
//! `DriverEntry`'s own thread (it needs PASSIVE_LEVEL), the rest runs in completion routines
//! and the runtime's timer work item. `DriverUnload` cancels what is in flight, waits for it
//! and deregisters.
#![no_std]

extern crate alloc;

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::net::{Ipv6Addr, SocketAddr};
use core::pin::pin;

use wsk::task::TaskSet;
use wsk::{Buf, Error, SpinLock, WskClient};
use wsk_driver_runtime::parameters::ParameterError;
use wsk_driver_runtime::timer::{Timers, timeout};
use wsk_driver_runtime::{Parameters, export_driver_entry, kprint};
use wsk_sys::{NTSTATUS, PDRIVER_OBJECT, PUNICODE_STRING, STATUS_SUCCESS};

const DEFAULT_URL: &str = "http://localhost:8000/";
const DEFAULT_MAX_BYTES: u32 = 1024 * 1024;
const DEFAULT_CONNECT_TIMEOUT_MS: u32 = 10_000;
const DEFAULT_RESPONSE_TIMEOUT_MS: u32 = 30_000;
const DEFAULT_RESPONSE_DEADLINE_MS: u32 = 300_000;
/// The receive buffer.
const CHUNK: usize = 16 * 1024;
/// The longest response head (status line and headers) accepted.
const MAX_HEAD: usize = 16 * 1024;
/// The longest chunk size line (extensions and CRLF included), and the longest trailer (all
/// its lines together).
const MAX_CHUNK_LINE: usize = 16 * 1024;

/// What the driver keeps between `DriverEntry` and `DriverUnload`.
/// The tasks drop first (cancelled, waited for), then the timers, then the client (the task
/// held the only other reference).
struct Running {
    _tasks: TaskSet,
    _timers: Arc<Timers>,
    _client: Arc<WskClient>,
}

static RUNNING: SpinLock<Option<Running>> = SpinLock::new(None);

/// An `http://host[:port][/path]` URL.
#[derive(Debug, PartialEq, Eq)]
struct Url {
    host: String,
    port: u16,
    /// The `Host` header's value (the authority as written).
    authority: String,
    path: String,
}

/// A port: 1 to 5 decimal digits, 1 to 65535 (no sign, no spaces).
fn parse_port(text: &str) -> Result<u16, &'static str> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err("the port is not 1 to 5 decimal digits");
    }
    match text.parse::<u16>() {
        Ok(0) | Err(_) => Err("the port is not between 1 and 65535"),
        Ok(port) => Ok(port),
    }
}

/// Parses an `http://` URL; the error says what is wrong.
fn parse_url(text: &str) -> Result<Url, &'static str> {
    if text
        .bytes()
        .any(|b| b <= b' ' || b == 0x7f || !b.is_ascii())
    {
        return Err("it contains a space, a control character (CR, LF, tab...) or non-ASCII");
    }
    let rest = text
        .strip_prefix("http://")
        .ok_or("it does not start with http://")?;
    // The fragment is the client's: not sent.
    let rest = rest.split('#').next().unwrap_or("");
    let (authority, path) = match rest.find(['/', '?']) {
        Some(at) if rest.as_bytes()[at] == b'/' => (&rest[..at], &rest[at..]),
        Some(_) => return Err("a query must follow a path (http://host/?query)"),
        None => (rest, "/"),
    };
    if authority.contains('@') {
        return Err("it has user information (user@host), which is not supported");
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or("an IPv6 address has no closing bracket")?;
        if host.parse::<Ipv6Addr>().is_err() {
            return Err("the bracketed host is not an IPv6 address");
        }
        let port = match after {
            "" => 80,
            other => parse_port(
                other
                    .strip_prefix(':')
                    .ok_or("something other than :port follows the IPv6 address")?,
            )?,
        };
        (host, port)
    } else {
        if authority.matches(':').count() > 1 {
            return Err("the host is not a name or an IPv4 address (IPv6 goes in brackets)");
        }
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, parse_port(port)?),
            None => (authority, 80),
        };
        if host
            .bytes()
            .any(|b| !(b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_'))
        {
            return Err("the host is not a name or an IPv4 address (IPv6 goes in brackets)");
        }
        (host, port)
    };
    if host.is_empty() {
        return Err("it has no host");
    }
    Ok(Url {
        host: host.into(),
        port,
        authority: authority.into(),
        path: path.into(),
    })
}

/// FNV-1a, 64 bits: a hash the tests can recompute, fed piece by piece.
#[derive(Clone, Copy)]
struct Fnv1a(u64);

impl Fnv1a {
    const fn new() -> Fnv1a {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }

    fn update(&mut self, bytes: &[u8]) {
        self.0 = bytes.iter().fold(self.0, |hash, &b| {
            (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    }
}

/// Where the decoder is in a chunk size line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SizeAt {
    /// In the hexadecimal digits.
    Digits,
    /// In spaces or tabs after the digits (only `;` may follow).
    Space,
    /// In an extension (after `;`), up to CR.
    Extension,
    /// After the line's CR: LF must follow.
    Cr,
}

/// Where the decoder is in a chunked body.
#[derive(Clone, Copy, Debug)]
enum Chunked {
    /// Reading a chunk's size line: the size so far, its digits, where in the line, and the
    /// line's length so far.
    Size {
        size: u64,
        digits: u32,
        at: SizeAt,
        line: usize,
    },
    /// Reading a chunk's data: this many bytes left.
    Data(u64),
    /// The CRLF after a chunk's data (`true` once CR was seen).
    DataEnd(bool),
    /// The trailer after the last chunk: whether the current line is empty so far, the
    /// trailer's length so far, and whether the line's CR was seen.
    Trailer { empty: bool, total: usize, cr: bool },
    /// The body is complete.
    Done,
}

/// The state at the start of a chunk size line.
const SIZE_LINE: Chunked = Chunked::Size {
    size: 0,
    digits: 0,
    at: SizeAt::Digits,
    line: 0,
};

/// The body decoder: the bytes of the body go to the hash, never kept.
struct Body {
    chunked: Option<Chunked>,
    content_length: Option<u64>,
    length: u64,
    max: u64,
    hash: Fnv1a,
}

/// What went wrong with a fetch.
enum Failure {
    Wsk(Error),
    /// Resolution and connection were not done within the connect timeout (ms).
    ConnectTimeout(u32),
    /// The server kept silent for the response timeout (ms).
    Silent(SocketAddr, u32),
    /// The response was not complete within the response deadline (ms).
    Deadline(SocketAddr, u32),
    /// The body is over `MaxBytes`.
    TooLarge(u64),
    /// The response is not valid HTTP: why.
    Malformed(&'static str),
    /// The connection closed before the body's end.
    Truncated {
        got: u64,
        expected: Option<u64>,
    },
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure::Wsk(error)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Wsk(error) => write!(f, "{error}"),
            Failure::ConnectTimeout(ms) => write!(
                f,
                "not connected within {ms} ms (ConnectTimeoutMs): {}",
                Error::TIMED_OUT
            ),
            Failure::Silent(address, ms) => write!(
                f,
                "the server at {address} sent nothing for {ms} ms (ResponseTimeoutMs): {}",
                Error::TIMED_OUT
            ),
            Failure::Deadline(address, ms) => write!(
                f,
                "the response from {address} was not complete within {ms} ms \
                 (ResponseDeadlineMs): {}",
                Error::TIMED_OUT
            ),
            Failure::TooLarge(max) => write!(
                f,
                "the body is over {max} bytes (MaxBytes): {}",
                Error::from_status(wsk_sys::STATUS_BUFFER_OVERFLOW)
            ),
            Failure::Malformed(why) => write!(f, "malformed response: {why}"),
            Failure::Truncated { got, expected } => match expected {
                Some(expected) => write!(
                    f,
                    "the connection closed after {got} of {expected} body bytes"
                ),
                None => write!(
                    f,
                    "the connection closed inside a chunked body, after {got} bytes"
                ),
            },
        }
    }
}

impl Body {
    /// Takes body bytes off the wire.
    fn feed(&mut self, mut bytes: &[u8]) -> Result<(), Failure> {
        let Some(mut state) = self.chunked else {
            return self.take(bytes);
        };
        while !bytes.is_empty() {
            state = match state {
                Chunked::Data(left) => {
                    let n = left.min(bytes.len() as u64) as usize;
                    let (data, rest) = bytes.split_at(n);
                    bytes = rest;
                    self.take(data)?;
                    match left - n as u64 {
                        0 => Chunked::DataEnd(false),
                        left => Chunked::Data(left),
                    }
                }
                // Bytes after the last chunk: ignored (the connection closes).
                Chunked::Done => break,
                state => {
                    let b = bytes[0];
                    bytes = &bytes[1..];
                    Self::step(state, b)?
                }
            };
        }
        self.chunked = Some(state);
        Ok(())
    }

    /// The framing state after byte `b` (outside a chunk's data).
    fn step(state: Chunked, b: u8) -> Result<Chunked, Failure> {
        let control = (b < 0x20 && b != b'\t') || b == 0x7f;
        Ok(match state {
            Chunked::Size {
                size,
                digits,
                at,
                line,
            } => {
                let line = line + 1;
                if line > MAX_CHUNK_LINE {
                    return Err(Failure::Malformed(
                        "a chunk size line (extensions included) is over 16 KiB",
                    ));
                }
                let next = |at| Chunked::Size {
                    size,
                    digits,
                    at,
                    line,
                };
                match (at, b) {
                    (SizeAt::Digits, b'\r' | b';' | b' ' | b'\t') if digits == 0 => {
                        return Err(Failure::Malformed("a chunk size line has no size"));
                    }
                    (SizeAt::Digits, b'\r') | (SizeAt::Extension, b'\r') => next(SizeAt::Cr),
                    (SizeAt::Digits | SizeAt::Space, b';') => next(SizeAt::Extension),
                    (SizeAt::Digits | SizeAt::Space, b' ' | b'\t') => next(SizeAt::Space),
                    (SizeAt::Space, _) => {
                        return Err(Failure::Malformed(
                            "a chunk size is followed by something other than ;extension",
                        ));
                    }
                    (SizeAt::Cr, b'\n') if size == 0 => Chunked::Trailer {
                        empty: true,
                        total: 0,
                        cr: false,
                    },
                    (SizeAt::Cr, b'\n') => Chunked::Data(size),
                    (SizeAt::Cr, _) | (_, b'\n') => {
                        return Err(Failure::Malformed(
                            "a chunk size line does not end with CRLF",
                        ));
                    }
                    (SizeAt::Extension, _) if control => {
                        return Err(Failure::Malformed(
                            "a chunk extension contains a control character",
                        ));
                    }
                    (SizeAt::Extension, _) => next(SizeAt::Extension),
                    (SizeAt::Digits, _) => {
                        let digit = (b as char)
                            .to_digit(16)
                            .ok_or(Failure::Malformed("a chunk size is not hexadecimal"))?;
                        // 15 significant digits at most (leading zeros count against the
                        // line's length only).
                        if size >> 56 != 0 {
                            return Err(Failure::Malformed("a chunk size is too large"));
                        }
                        Chunked::Size {
                            size: size * 16 + u64::from(digit),
                            digits: digits + 1,
                            at,
                            line,
                        }
                    }
                }
            }
            Chunked::DataEnd(cr) => match (b, cr) {
                (b'\r', false) => Chunked::DataEnd(true),
                (b'\n', true) => SIZE_LINE,
                _ => return Err(Failure::Malformed("a chunk does not end with CRLF")),
            },
            Chunked::Trailer { empty, total, cr } => {
                let total = total + 1;
                if total > MAX_CHUNK_LINE {
                    return Err(Failure::Malformed("the trailer is over 16 KiB"));
                }
                match (b, cr) {
                    (b'\n', true) if empty => Chunked::Done,
                    (b'\n', true) => Chunked::Trailer {
                        empty: true,
                        total,
                        cr: false,
                    },
                    (b'\r', false) => Chunked::Trailer {
                        empty,
                        total,
                        cr: true,
                    },
                    (_, true) | (b'\n', false) => {
                        return Err(Failure::Malformed("a trailer line does not end with CRLF"));
                    }
                    _ if control => {
                        return Err(Failure::Malformed(
                            "a trailer line contains a control character",
                        ));
                    }
                    _ => Chunked::Trailer {
                        empty: false,
                        total,
                        cr: false,
                    },
                }
            }
            Chunked::Data(_) | Chunked::Done => state,
        })
    }

    /// Body bytes without transfer coding.
    fn take(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        let length = self.length + bytes.len() as u64;
        if length > self.max {
            return Err(Failure::TooLarge(self.max));
        }
        self.length = length;
        self.hash.update(bytes);
        Ok(())
    }

    /// At the end of the stream: whether the body is whole.
    fn finish(&self) -> Result<(), Failure> {
        match (&self.chunked, self.content_length) {
            (Some(Chunked::Done), _) => Ok(()),
            (Some(_), _) => Err(Failure::Truncated {
                got: self.length,
                expected: None,
            }),
            (None, Some(expected)) if self.length < expected => Err(Failure::Truncated {
                got: self.length,
                expected: Some(expected),
            }),
            _ => Ok(()),
        }
    }
}

/// The response's status line and how its body is framed, from its head.
fn parse_head(head: &[u8], max: u64) -> Result<(String, Body), Failure> {
    // Lines end with CRLF (the last one's was cut off); no other control character than tab.
    for (at, &b) in head.iter().enumerate() {
        match b {
            b'\r' if head.get(at + 1) != Some(&b'\n') => {
                return Err(Failure::Malformed("the head has a CR without LF"));
            }
            b'\n' if at == 0 || head[at - 1] != b'\r' => {
                return Err(Failure::Malformed("the head has an LF without CR"));
            }
            b'\r' | b'\n' | b'\t' => {}
            0..0x20 | 0x7f => {
                return Err(Failure::Malformed("the head contains a control character"));
            }
            _ => {}
        }
    }
    let head =
        core::str::from_utf8(head).map_err(|_| Failure::Malformed("the head is not text"))?;
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or("");
    if !status.starts_with("HTTP/") {
        return Err(Failure::Malformed("no HTTP status line"));
    }
    let mut chunked = false;
    let mut content_length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.trim().eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        } else if name.trim().eq_ignore_ascii_case("content-length") {
            content_length = Some(
                value
                    .parse::<u64>()
                    .map_err(|_| Failure::Malformed("Content-Length is not a number"))?,
            );
        }
    }
    if !chunked && content_length.is_some_and(|length| length > max) {
        return Err(Failure::TooLarge(max));
    }
    let mut status_line = String::new();
    status_line
        .try_reserve(status.len())
        .map_err(|_| Error::INSUFFICIENT_RESOURCES)?;
    status_line.push_str(status);
    Ok((
        status_line,
        Body {
            chunked: chunked.then_some(SIZE_LINE),
            // A chunked body ignores Content-Length (RFC 9112, 6.3).
            content_length: if chunked { None } else { content_length },
            length: 0,
            max,
            hash: Fnv1a::new(),
        },
    ))
}

/// The limits of a fetch.
#[derive(Clone, Copy)]
struct Limits {
    max_body: u64,
    connect_timeout_ms: u32,
    response_timeout_ms: u32,
    /// 0: none.
    response_deadline_ms: u32,
}

/// What the fetch found: the status line, the body's length and hash, and whether it was
/// chunked.
struct Fetched {
    status: String,
    length: u64,
    hash: u64,
    chunked: bool,
}

/// Fetches `url`, streaming the body into its hash.
async fn fetch(
    resolve: wsk::ops::Resolve,
    client: Arc<WskClient>,
    timers: Arc<Timers>,
    url: Url,
    limits: Limits,
) -> Result<Fetched, Failure> {
    let connecting = pin!(async {
        let addresses: Vec<SocketAddr> = resolve.await?;
        let mut last_error = Error::from_status(wsk_sys::STATUS_BAD_NETWORK_PATH);
        for address in addresses {
            match client.connect(address).await {
                Ok(socket) => return Ok((socket, address)),
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    });
    let (socket, address) = timeout(timers.sleep(limits.connect_timeout_ms), connecting)
        .await
        .ok_or(Failure::ConnectTimeout(limits.connect_timeout_ms))??;
    kprint!("wsk_http_get: connected to {address}\n");
    let mut request = Buf::with_capacity(url.path.len() + url.authority.len() + 96)?;
    for part in [
        "GET ",
        url.path.as_str(),
        " HTTP/1.0\r\nHost: ",
        url.authority.as_str(),
        "\r\nUser-Agent: wsk-rs-http-get\r\nConnection: close\r\n\r\n",
    ] {
        request.extend_from_slice(part.as_bytes())?;
    }
    // The response, from the request's sending to the body's end; raced against the
    // deadline. Dropped before the socket is closed (it borrows it).
    let outcome = {
        let response = pin!(async {
            let silent = Failure::Silent(address, limits.response_timeout_ms);
            let Some((sent, _request)) = timeout(
                timers.sleep(limits.response_timeout_ms),
                socket.send_all(request),
            )
            .await
            else {
                return Err(silent);
            };
            sent?;
            let mut head: Vec<u8> = Vec::new();
            let mut body: Option<(String, Body)> = None;
            let mut buf = Buf::with_capacity(CHUNK)?;
            loop {
                buf.clear();
                let Some((received, back)) = timeout(
                    timers.sleep(limits.response_timeout_ms),
                    socket.receive(buf),
                )
                .await
                else {
                    break Err(silent);
                };
                buf = back;
                let received = match received {
                    Ok(received) => received,
                    Err(error) => break Err(error.into()),
                };
                if received == 0 {
                    break match body {
                        Some((status, body)) => body.finish().map(|()| Fetched {
                            status,
                            length: body.length,
                            hash: body.hash.0,
                            chunked: body.chunked.is_some(),
                        }),
                        None => Err(Failure::Malformed("the connection closed inside the head")),
                    };
                }
                let step = match body.as_mut() {
                    Some((_, body)) => body.feed(&buf),
                    None => {
                        // The head, kept until its end; what follows it is the body's start.
                        let before = head.len();
                        if head.try_reserve(buf.len()).is_err() {
                            break Err(Error::INSUFFICIENT_RESOURCES.into());
                        }
                        head.extend_from_slice(&buf);
                        let from = before.saturating_sub(3);
                        match head[from..].windows(4).position(|w| w == b"\r\n\r\n") {
                            Some(at) => {
                                let end = from + at;
                                match parse_head(&head[..end], limits.max_body) {
                                    Ok((status, mut decoder)) => {
                                        let step = decoder.feed(&head[end + 4..]);
                                        body = Some((status, decoder));
                                        head = Vec::new();
                                        step
                                    }
                                    Err(failure) => Err(failure),
                                }
                            }
                            None if head.len() > MAX_HEAD => {
                                Err(Failure::Malformed("the head is over 16 KiB"))
                            }
                            None => Ok(()),
                        }
                    }
                };
                if let Err(failure) = step {
                    break Err(failure);
                }
            }
        });
        match limits.response_deadline_ms {
            0 => response.await,
            ms => timeout(timers.sleep(ms), response)
                .await
                .unwrap_or(Err(Failure::Deadline(address, ms))),
        }
    };
    match &outcome {
        Ok(_) => {
            socket.close().await?;
        }
        Err(_) => {
            let _ = socket.abort().await;
        }
    }
    outcome
}

/// The driver's entry point (exported as `DriverEntry` in the image). PASSIVE_LEVEL.
///
/// # Safety
/// Called by the I/O manager (or the host runner) with a valid driver object and registry
/// path.
pub unsafe extern "system" fn driver_entry(
    driver: PDRIVER_OBJECT,
    registry_path: PUNICODE_STRING,
) -> NTSTATUS {
    match start(driver, registry_path) {
        Ok(running) => {
            // Replaced in a statement of its own: whatever it held (nothing, after a proper
            // unload) is dropped after the lock is released, at PASSIVE_LEVEL.
            let previous = RUNNING.lock().replace(running);
            drop(previous);
            // SAFETY: the driver object is valid for the driver's lifetime.
            unsafe { (*driver).DriverUnload = Some(driver_unload) };
            STATUS_SUCCESS
        }
        Err(error) => {
            kprint!("wsk_http_get: not started: {error}\n");
            error.status()
        }
    }
}

/// Prints what is wrong with a parameter; the error `DriverEntry` returns for it.
fn reported(error: ParameterError) -> Error {
    kprint!("wsk_http_get: {error}\n");
    error.into()
}

fn start(driver: PDRIVER_OBJECT, registry_path: PUNICODE_STRING) -> wsk::Result<Running> {
    // SAFETY: the registry path `DriverEntry` was given.
    let parameters = unsafe { Parameters::open(registry_path) }?;
    let text = parameters
        .string("Url")
        .map_err(reported)?
        .unwrap_or_else(|| DEFAULT_URL.into());
    let url = match parse_url(&text) {
        Ok(url) => url,
        Err(why) => {
            kprint!(
                "wsk_http_get: parameter Url: `{}`: {why}\n",
                text.escape_debug()
            );
            return Err(Error::INVALID_PARAMETER);
        }
    };
    let limits = Limits {
        max_body: u64::from(
            parameters
                .dword_in("MaxBytes", DEFAULT_MAX_BYTES, 0..=u32::MAX)
                .map_err(reported)?,
        ),
        connect_timeout_ms: parameters
            .dword_in("ConnectTimeoutMs", DEFAULT_CONNECT_TIMEOUT_MS, 1..=600_000)
            .map_err(reported)?,
        response_timeout_ms: parameters
            .dword_in(
                "ResponseTimeoutMs",
                DEFAULT_RESPONSE_TIMEOUT_MS,
                1..=3_600_000,
            )
            .map_err(reported)?,
        response_deadline_ms: parameters
            .dword_in(
                "ResponseDeadlineMs",
                DEFAULT_RESPONSE_DEADLINE_MS,
                0..=86_400_000,
            )
            .map_err(reported)?,
    };
    drop(parameters);
    // SAFETY: the driver object `DriverEntry` was given.
    let driver =
        unsafe { wsk::DriverObject::from_raw(driver) }.ok_or(wsk::Error::INVALID_PARAMETER)?;
    let client = Arc::new(WskClient::register(driver)?);
    let timers = Arc::new(Timers::new(&client)?);
    let tasks = TaskSet::new(driver)?;
    let resolve = client.resolve(&url.host, url.port);
    let task_client = Arc::clone(&client);
    let task_timers = Arc::clone(&timers);
    let fut = async move {
        match fetch(resolve, task_client, task_timers, url, limits).await {
            Ok(fetched) => kprint!(
                "wsk_http_get: {text}: {}; body {} bytes{}, fnv1a64 {:016x}\n",
                fetched.status.escape_debug(),
                fetched.length,
                if fetched.chunked { " (chunked)" } else { "" },
                fetched.hash
            ),
            Err(failure) => kprint!("wsk_http_get: {text}: {failure}\n"),
        }
    };
    tasks.spawn(fut)?;
    Ok(Running {
        _tasks: tasks,
        _timers: timers,
        _client: client,
    })
}

/// Cancels the fetch if it is still running, waits for it, deregisters. PASSIVE_LEVEL.
unsafe extern "system" fn driver_unload(_driver: PDRIVER_OBJECT) {
    // Taken in a statement of its own: the lock (DISPATCH_LEVEL) is released before waiting.
    let running = RUNNING.lock().take();
    drop(running);
    kprint!("wsk_http_get: unloaded\n");
}

export_driver_entry!(driver_entry);
