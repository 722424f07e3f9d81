//! HTTP/1.x for the example drivers that fetch a URL (`wsk_http_get` over TCP, `wsk_https_get`
//! over TLS): the URL's parsing, the request's head, and the response's strict parsing —
//! streamed, whatever the transport, with the body hashed as it arrives and never kept.
//!
//! The response is parsed strictly: its head's lines end with CRLF and hold no other control
//! character than tab; a chunk size line is hexadecimal digits, optionally an extension
//! (`;...`), then CRLF; a chunk's data is followed by CRLF; the trailer's lines end with
//! CRLF. The head, a chunk size line and the trailer may each be 16 KiB at most.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::net::{Ipv6Addr, SocketAddr};

use wsk::Error;

/// The longest response head (status line and headers) accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// The longest chunk size line (extensions and CRLF included), and the longest trailer (all
/// its lines together).
pub const MAX_CHUNK_LINE: usize = 16 * 1024;

/// The scheme a driver fetches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `http://`, port 80 by default.
    Http,
    /// `https://`, port 443 by default.
    Https,
}

impl Scheme {
    fn prefix(self) -> &'static str {
        match self {
            Scheme::Http => "http://",
            Scheme::Https => "https://",
        }
    }

    fn missing_prefix(self) -> &'static str {
        match self {
            Scheme::Http => "it does not start with http://",
            Scheme::Https => "it does not start with https://",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// A `scheme://host[:port][/path]` URL.
#[derive(Debug, PartialEq, Eq)]
pub struct Url {
    /// The host: a name, an IPv4 address, or an IPv6 address (without its brackets).
    pub host: String,
    /// The port.
    pub port: u16,
    /// The `Host` header's value (the authority as written).
    pub authority: String,
    /// The path and query (`/` at least); the fragment is not kept.
    pub path: String,
}

impl Url {
    /// The request's head, in pieces to write one after the other: an HTTP/1.0 `GET` of the
    /// path, with `Host`, `User-Agent: agent` and `Connection: close`.
    #[must_use]
    pub fn request<'a>(&'a self, agent: &'a str) -> [&'a str; 7] {
        [
            "GET ",
            self.path.as_str(),
            " HTTP/1.0\r\nHost: ",
            self.authority.as_str(),
            "\r\nUser-Agent: ",
            agent,
            "\r\nConnection: close\r\n\r\n",
        ]
    }
}

/// A port: 1 to 5 decimal digits, 1 to 65535 (no sign, no spaces).
pub fn parse_port(text: &str) -> Result<u16, &'static str> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err("the port is not 1 to 5 decimal digits");
    }
    match text.parse::<u16>() {
        Ok(0) | Err(_) => Err("the port is not between 1 and 65535"),
        Ok(port) => Ok(port),
    }
}

/// Parses a URL of `scheme`; the error says what is wrong.
pub fn parse_url(text: &str, scheme: Scheme) -> Result<Url, &'static str> {
    if text
        .bytes()
        .any(|b| b <= b' ' || b == 0x7f || !b.is_ascii())
    {
        return Err("it contains a space, a control character (CR, LF, tab...) or non-ASCII");
    }
    let rest = text
        .strip_prefix(scheme.prefix())
        .ok_or(scheme.missing_prefix())?;
    // The fragment is the client's: not sent.
    let rest = rest.split('#').next().unwrap_or("");
    let (authority, path) = match rest.find(['/', '?']) {
        Some(at) if rest.as_bytes()[at] == b'/' => (&rest[..at], &rest[at..]),
        Some(_) => return Err("a query must follow a path (scheme://host/?query)"),
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
            "" => scheme.default_port(),
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
            None => (authority, scheme.default_port()),
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
pub struct Fnv1a(pub u64);

impl Default for Fnv1a {
    fn default() -> Fnv1a {
        Fnv1a::new()
    }
}

impl Fnv1a {
    /// The hash of nothing.
    #[must_use]
    pub const fn new() -> Fnv1a {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }

    /// Feeds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
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

/// What is wrong with a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseError {
    /// The response is not valid HTTP: why.
    Malformed(&'static str),
    /// The body is over the limit (bytes).
    TooLarge(u64),
    /// The stream ended before the body's end.
    Truncated {
        /// The body bytes received.
        got: u64,
        /// The length announced (`Content-Length`), `None` for a chunked body.
        expected: Option<u64>,
    },
    /// The head could not be kept (no memory).
    OutOfMemory,
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseError::Malformed(why) => write!(f, "malformed response: {why}"),
            ResponseError::TooLarge(max) => write!(
                f,
                "the body is over {max} bytes (MaxBytes): {}",
                Error::from_status(wsk_sys::STATUS_BUFFER_OVERFLOW)
            ),
            ResponseError::Truncated { got, expected } => match expected {
                Some(expected) => write!(
                    f,
                    "the connection closed after {got} of {expected} body bytes"
                ),
                None => write!(
                    f,
                    "the connection closed inside a chunked body, after {got} bytes"
                ),
            },
            ResponseError::OutOfMemory => write!(f, "{}", Error::INSUFFICIENT_RESOURCES),
        }
    }
}

impl Body {
    /// Takes body bytes off the wire.
    fn feed(&mut self, mut bytes: &[u8]) -> Result<(), ResponseError> {
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
    fn step(state: Chunked, b: u8) -> Result<Chunked, ResponseError> {
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
                    return Err(ResponseError::Malformed(
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
                        return Err(ResponseError::Malformed("a chunk size line has no size"));
                    }
                    (SizeAt::Digits, b'\r') | (SizeAt::Extension, b'\r') => next(SizeAt::Cr),
                    (SizeAt::Digits | SizeAt::Space, b';') => next(SizeAt::Extension),
                    (SizeAt::Digits | SizeAt::Space, b' ' | b'\t') => next(SizeAt::Space),
                    (SizeAt::Space, _) => {
                        return Err(ResponseError::Malformed(
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
                        return Err(ResponseError::Malformed(
                            "a chunk size line does not end with CRLF",
                        ));
                    }
                    (SizeAt::Extension, _) if control => {
                        return Err(ResponseError::Malformed(
                            "a chunk extension contains a control character",
                        ));
                    }
                    (SizeAt::Extension, _) => next(SizeAt::Extension),
                    (SizeAt::Digits, _) => {
                        let digit = (b as char)
                            .to_digit(16)
                            .ok_or(ResponseError::Malformed("a chunk size is not hexadecimal"))?;
                        // 15 significant digits at most (leading zeros count against the
                        // line's length only).
                        if size >> 56 != 0 {
                            return Err(ResponseError::Malformed("a chunk size is too large"));
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
                _ => return Err(ResponseError::Malformed("a chunk does not end with CRLF")),
            },
            Chunked::Trailer { empty, total, cr } => {
                let total = total + 1;
                if total > MAX_CHUNK_LINE {
                    return Err(ResponseError::Malformed("the trailer is over 16 KiB"));
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
                        return Err(ResponseError::Malformed(
                            "a trailer line does not end with CRLF",
                        ));
                    }
                    _ if control => {
                        return Err(ResponseError::Malformed(
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
    fn take(&mut self, bytes: &[u8]) -> Result<(), ResponseError> {
        let length = self.length + bytes.len() as u64;
        if length > self.max {
            return Err(ResponseError::TooLarge(self.max));
        }
        self.length = length;
        self.hash.update(bytes);
        Ok(())
    }

    /// At the end of the stream: whether the body is whole.
    fn finish(&self) -> Result<(), ResponseError> {
        match (&self.chunked, self.content_length) {
            (Some(Chunked::Done), _) => Ok(()),
            (Some(_), _) => Err(ResponseError::Truncated {
                got: self.length,
                expected: None,
            }),
            (None, Some(expected)) if self.length < expected => Err(ResponseError::Truncated {
                got: self.length,
                expected: Some(expected),
            }),
            _ => Ok(()),
        }
    }
}

/// The response's status line and how its body is framed, from its head.
fn parse_head(head: &[u8], max: u64) -> Result<(String, Body), ResponseError> {
    // Lines end with CRLF (the last one's was cut off); no other control character than tab.
    for (at, &b) in head.iter().enumerate() {
        match b {
            b'\r' if head.get(at + 1) != Some(&b'\n') => {
                return Err(ResponseError::Malformed("the head has a CR without LF"));
            }
            b'\n' if at == 0 || head[at - 1] != b'\r' => {
                return Err(ResponseError::Malformed("the head has an LF without CR"));
            }
            b'\r' | b'\n' | b'\t' => {}
            0..0x20 | 0x7f => {
                return Err(ResponseError::Malformed(
                    "the head contains a control character",
                ));
            }
            _ => {}
        }
    }
    let head =
        core::str::from_utf8(head).map_err(|_| ResponseError::Malformed("the head is not text"))?;
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or("");
    if !status.starts_with("HTTP/") {
        return Err(ResponseError::Malformed("no HTTP status line"));
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
                    .map_err(|_| ResponseError::Malformed("Content-Length is not a number"))?,
            );
        }
    }
    if !chunked && content_length.is_some_and(|length| length > max) {
        return Err(ResponseError::TooLarge(max));
    }
    let mut status_line = String::new();
    status_line
        .try_reserve(status.len())
        .map_err(|_| ResponseError::OutOfMemory)?;
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

/// What a complete response held: the status line, the body's length and FNV-1a hash, and
/// whether it was chunked.
#[derive(Debug)]
pub struct Fetched {
    /// The status line, as received (print it escaped).
    pub status: String,
    /// The body's length in bytes (decoded).
    pub length: u64,
    /// The body's FNV-1a 64-bit hash.
    pub hash: u64,
    /// Whether the body came chunked.
    pub chunked: bool,
}

/// A response being received: fed the bytes as they arrive, in any pieces; only the head is
/// kept (16 KiB at most), the body goes to its hash.
pub struct Response {
    head: Vec<u8>,
    body: Option<(String, Body)>,
    max_body: u64,
}

impl Response {
    /// A response whose body may be `max_body` bytes at most.
    #[must_use]
    pub fn new(max_body: u64) -> Response {
        Response {
            head: Vec::new(),
            body: None,
            max_body,
        }
    }

    /// Takes the next bytes of the stream.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), ResponseError> {
        if let Some((_, body)) = self.body.as_mut() {
            return body.feed(bytes);
        }
        // The head, kept until its end; what follows it is the body's start.
        let before = self.head.len();
        if self.head.try_reserve(bytes.len()).is_err() {
            return Err(ResponseError::OutOfMemory);
        }
        self.head.extend_from_slice(bytes);
        let from = before.saturating_sub(3);
        match self.head[from..].windows(4).position(|w| w == b"\r\n\r\n") {
            Some(at) => {
                let end = from + at;
                let (status, mut decoder) = parse_head(&self.head[..end], self.max_body)?;
                let step = decoder.feed(&self.head[end + 4..]);
                self.body = Some((status, decoder));
                self.head = Vec::new();
                step
            }
            None if self.head.len() > MAX_HEAD => {
                Err(ResponseError::Malformed("the head is over 16 KiB"))
            }
            None => Ok(()),
        }
    }

    /// At the end of the stream: the response, if it is whole.
    pub fn finish(self) -> Result<Fetched, ResponseError> {
        match self.body {
            Some((status, body)) => body.finish().map(|()| Fetched {
                status,
                length: body.length,
                hash: body.hash.0,
                chunked: body.chunked.is_some(),
            }),
            None => Err(ResponseError::Malformed(
                "the connection closed inside the head",
            )),
        }
    }
}

/// What went wrong with a fetch, in the terms both HTTP drivers report it (their parameter
/// names included).
pub enum FetchFailure {
    /// A WSK request failed.
    Wsk(Error),
    /// Resolution and connection were not done within the connect timeout (ms).
    ConnectTimeout(u32),
    /// The server kept silent for the response timeout (ms).
    Silent(SocketAddr, u32),
    /// The response was not complete within the response deadline (ms).
    Deadline(SocketAddr, u32),
    /// The response is not valid HTTP, too large or cut short.
    Response(ResponseError),
}

impl From<Error> for FetchFailure {
    fn from(error: Error) -> FetchFailure {
        FetchFailure::Wsk(error)
    }
}

impl From<ResponseError> for FetchFailure {
    fn from(error: ResponseError) -> FetchFailure {
        FetchFailure::Response(error)
    }
}

impl fmt::Display for FetchFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchFailure::Wsk(error) => write!(f, "{error}"),
            FetchFailure::ConnectTimeout(ms) => write!(
                f,
                "not connected within {ms} ms (ConnectTimeoutMs): {}",
                Error::TIMED_OUT
            ),
            FetchFailure::Silent(address, ms) => write!(
                f,
                "the server at {address} sent nothing for {ms} ms (ResponseTimeoutMs): {}",
                Error::TIMED_OUT
            ),
            FetchFailure::Deadline(address, ms) => write!(
                f,
                "the response from {address} was not complete within {ms} ms \
                 (ResponseDeadlineMs): {}",
                Error::TIMED_OUT
            ),
            FetchFailure::Response(error) => write!(f, "{error}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_split_anywhere_parses_the_same() {
        let whole: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
            5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n";
        let mut hash = Fnv1a::new();
        hash.update(b"hello world");
        for cut in 0..whole.len() {
            let mut response = Response::new(1024);
            response.push(&whole[..cut]).unwrap();
            response.push(&whole[cut..]).unwrap();
            let fetched = response.finish().unwrap();
            assert_eq!(fetched.status, "HTTP/1.1 200 OK");
            assert_eq!(
                (fetched.length, fetched.hash, fetched.chunked),
                (11, hash.0, true)
            );
        }
    }

    #[test]
    fn truncated_and_oversized_bodies_are_refused() {
        let mut response = Response::new(1024);
        response
            .push(b"HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\nabc")
            .unwrap();
        assert_eq!(
            response.finish().unwrap_err(),
            ResponseError::Truncated {
                got: 3,
                expected: Some(10)
            }
        );
        let mut response = Response::new(4);
        assert_eq!(
            response
                .push(b"HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\n")
                .unwrap_err(),
            ResponseError::TooLarge(4)
        );
    }

    #[test]
    fn urls_of_each_scheme() {
        let url = parse_url("https://127.0.0.1:8443/a?b#c", Scheme::Https).unwrap();
        assert_eq!((url.host.as_str(), url.port), ("127.0.0.1", 8443));
        assert_eq!(url.path, "/a?b");
        assert_eq!(
            parse_url("https://[::1]/", Scheme::Https).unwrap().port,
            443
        );
        assert_eq!(parse_url("http://example/", Scheme::Http).unwrap().port, 80);
        assert_eq!(
            parse_url("http://example/", Scheme::Https).unwrap_err(),
            "it does not start with https://"
        );
    }
}
